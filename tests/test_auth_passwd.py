"""
Tests for L{vernemq.auth.passwd}: the vmq.passwd format, the C{vmq_passwd}
plugin, its reloads, and CONNACK refusals through the broker.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.brokerhelpers import Harness
from vernemq.auth import passwd as passwd_module
from vernemq.auth.passwd import (
    SALT_LENGTH,
    VmqPasswd,
    check_password,
    hash_password,
    parse_hash,
    parse_password_file,
)
from vernemq.interfaces import IAuthOnRegister, IAuthOnRegisterM5, IPlugin
from vernemq.mqtt.packets import ConnAck
from vernemq.plugins.hooks import NEXT, OK, Error

#: Written by the real C{mosquitto_passwd -H sha512 -b FILE alice s3cret}
#: (mosquitto 2.0.11), whose C{$6$} format vmq-passwd shares.
MOSQUITTO_ENTRY = (
    "alice:$6$UQmpBrZiNWV0yCIa$PsnaSsmtQxQjCkWJM2vRb1au18P/xHvBjnZG7+XRpVSwWUB/"
    "G7VEVWGywiByjC6O4eamLi91sqOCPHdrrRtaGw=="
)


class LogCapture:
    """Collect log events while alive (use as a context manager)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def text(self) -> str:
        """Every event's format and fields, as one string."""
        return "\n".join(repr(sorted((k, repr(v)) for k, v in e.items())) for e in self.events)


class HashTests(SynchronousTestCase):
    """The C{$6$} entry format of vmq-passwd and mosquitto_passwd 1.x."""

    def test_format(self) -> None:
        """C{$6$<b64 salt>$<b64 sha512(password + salt)>}."""
        salt = bytes(range(SALT_LENGTH))
        expected = hashlib.sha512(b"s3cret" + salt).digest()
        self.assertEqual(
            hash_password("s3cret", salt),
            "$6$"
            + base64.b64encode(salt).decode()
            + "$"
            + base64.b64encode(expected).decode(),
        )

    def test_randomSalt(self) -> None:
        """Each hash gets its own 12-byte salt."""
        a, b = hash_password("x"), hash_password("x")
        self.assertNotEqual(a, b)
        parsed = parse_hash(a)
        assert parsed is not None
        self.assertEqual(len(parsed[0]), SALT_LENGTH)

    def test_mosquittoEntry(self) -> None:
        """An entry written by the real mosquitto_passwd checks out."""
        hashed = MOSQUITTO_ENTRY.split(":", 1)[1]
        self.assertTrue(check_password("s3cret", hashed))
        self.assertFalse(check_password("s3creT", hashed))

    def test_malformed(self) -> None:
        """Anything but a well-formed C{$6$} hash is refused."""
        for hashed in [
            "s3cret",
            "",
            "$5$abc$def",
            "$6$!!!$" + base64.b64encode(b"x" * 64).decode(),
            "$6$" + base64.b64encode(b"salt").decode() + "$" + base64.b64encode(b"x").decode(),
        ]:
            self.assertIsNone(parse_hash(hashed), hashed)
            self.assertFalse(check_password("s3cret", hashed), hashed)


class ParseTests(SynchronousTestCase):
    """L{parse_password_file}."""

    def test_entries(self) -> None:
        """Entries, comments and blank lines; the last entry of a user wins."""
        parsed = parse_password_file(
            (
                "# users\n\n"
                f"{MOSQUITTO_ENTRY}\r\n"
                f"bob:{hash_password('one')}\n"
                f"bob:{hash_password('two')}"
            ).encode()
        )
        self.assertEqual(sorted(parsed.entries), ["alice", "bob"])
        self.assertEqual(parsed.problems, [])
        salt, digest = parsed.entries["bob"]
        self.assertEqual(hashlib.sha512(b"two" + salt).digest(), digest)

    def test_problems(self) -> None:
        """Bad lines are reported by number and reason, never by content."""
        parsed = parse_password_file(b"carol:plain-secret\nno colon here\n:$6$x$y\n")
        self.assertEqual(parsed.entries, {})
        self.assertEqual([n for n, _ in parsed.problems], [1, 2, 3])
        self.assertNotIn("plain-secret", repr(parsed.problems))


class PluginTests(SynchronousTestCase):
    """L{VmqPasswd} answers and reloads."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(f"{MOSQUITTO_ENTRY}\n")
        self.clock = Clock()
        self.plugin = VmqPasswd(self.path, 10, self.clock)

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)
        # Make sure the next change is seen even within one mtime tick.
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * len(text)))

    def register(self, user: str | None, password: bytes | None, m5: bool = False) -> object:
        if m5:
            return self.plugin.auth_on_register_m5(
                ("127.0.0.1", 1), ("", "c"), user, password, True, {}
            )
        return self.plugin.auth_on_register(("127.0.0.1", 1), ("", "c"), user, password, True)

    def test_interfaces(self) -> None:
        """It is a named auth_on_register(_m5) plugin."""
        self.assertTrue(verifyObject(IPlugin, self.plugin))
        self.assertTrue(verifyObject(IAuthOnRegister, self.plugin))
        self.assertTrue(verifyObject(IAuthOnRegisterM5, self.plugin))
        self.assertEqual(self.plugin.name, "vmq_passwd")

    def test_answers(self) -> None:
        """VerneMQ's check/2: ok, invalid_credentials, next."""
        self.plugin.startService()
        self.addCleanup(self.plugin.stopService)
        for m5 in (False, True):
            self.assertIs(self.register("alice", b"s3cret", m5), OK)
            self.assertEqual(self.register("alice", b"wrong", m5), Error("invalid_credentials"))
            self.assertIs(self.register("nobody", b"s3cret", m5), NEXT)
            self.assertIs(self.register(None, None, m5), NEXT)
            self.assertIs(self.register("alice", None, m5), NEXT)
            self.assertIs(self.register(None, b"s3cret", m5), NEXT)

    def test_sameWorkForUnknownUser(self) -> None:
        """
        An unknown user costs one SHA-512 and one constant-time comparison,
        exactly like a known user with a wrong password.
        """
        self.plugin.check()
        calls: list[str] = []
        real_sha, real_compare = passwd_module._sha512, passwd_module.hmac.compare_digest

        def sha(password: bytes, salt: bytes) -> bytes:
            calls.append("sha512")
            return real_sha(password, salt)

        def compare(a: bytes, b: bytes) -> bool:
            calls.append("compare")
            return real_compare(a, b)

        self.patch(passwd_module, "_sha512", sha)
        self.patch(passwd_module.hmac, "compare_digest", compare)
        self.register("alice", b"wrong")
        known = list(calls)
        del calls[:]
        self.register("nobody", b"wrong")
        self.assertEqual(calls, known)
        self.assertEqual(known, ["sha512", "compare"])

    def test_reloadOnChange(self) -> None:
        """Every interval the file is re-read if it changed, only then."""
        self.plugin.startService()
        self.addCleanup(self.plugin.stopService)
        self.assertEqual(self.plugin.loads, 1)
        self.clock.advance(10)
        self.assertEqual(self.plugin.loads, 1)
        self.write(f"bob:{hash_password('pw')}\n")
        self.clock.advance(9)
        self.assertIs(self.register("bob", b"pw"), NEXT)
        self.clock.advance(1)
        self.assertEqual(self.plugin.loads, 2)
        self.assertIs(self.register("bob", b"pw"), OK)
        self.assertIs(self.register("alice", b"s3cret"), NEXT)

    def test_intervalZero(self) -> None:
        """An interval of 0 reads the file once only."""
        plugin = VmqPasswd(self.path, 0, self.clock)
        plugin.startService()
        self.write(f"bob:{hash_password('pw')}\n")
        self.clock.advance(1000)
        self.assertEqual(plugin.loads, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        plugin.stopService()

    def test_stopStopsTimer(self) -> None:
        """Stopping the service cancels the reload timer."""
        self.plugin.startService()
        self.plugin.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unreadableKeepsUsers(self) -> None:
        """A vanished file keeps the users read before, logged once."""
        self.plugin.startService()
        self.addCleanup(self.plugin.stopService)
        os.remove(self.path)
        with LogCapture() as logs:
            self.clock.advance(10)
            self.clock.advance(10)
        errors = [e for e in logs.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIs(self.register("alice", b"s3cret"), OK)
        self.write(f"bob:{hash_password('pw')}\n")
        self.clock.advance(10)
        self.assertIs(self.register("bob", b"pw"), OK)

    def test_missingAtStart(self) -> None:
        """Without a file nobody is known (every user: next)."""
        plugin = VmqPasswd(self.path + ".missing", 10, self.clock)
        plugin.check()
        self.assertEqual(len(plugin), 0)
        self.assertIs(
            plugin.auth_on_register(("h", 1), ("", "c"), "alice", b"s3cret", True), NEXT
        )

    def test_plainTextNotLogged(self) -> None:
        """A plain-text line is skipped with a warning that does not show it."""
        self.write("carol:hunter2-plain\n" + MOSQUITTO_ENTRY + "\n")
        with LogCapture() as logs:
            self.plugin.check()
        self.assertNotIn("hunter2", logs.text())
        warnings = [e for e in logs.events if e["log_level"] == LogLevel.warn]
        self.assertEqual([e["lineno"] for e in warnings], [1])
        self.assertIs(self.register("carol", b"hunter2-plain"), NEXT)
        self.assertIs(self.register("alice", b"s3cret"), OK)


class BrokerTests(SynchronousTestCase):
    """
    C{allow_anonymous = off} with vmq_passwd: the CONNACK of each case, for
    MQTT 3.1, 3.1.1 and 5.0 (VerneMQ's codes).
    """

    def harness(self, extra: str = "") -> Harness:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MOSQUITTO_ENTRY + "\n")
        return Harness(
            "allow_anonymous = off\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.open = 127.0.0.1:1884\n"
            "listener.tcp.open.allow_anonymous_override = on\n"
            f"vmq_passwd.password_file = {path}\n" + extra
        )

    def connack(
        self, h: Harness, level: int, user: str | None, password: bytes | None,
        listener: str = "default",
    ) -> int:
        client = h.client(level, listener)
        ack = client.connect("c", username=user, password=password)
        assert isinstance(ack, ConnAck), ack
        if ack.reason_code:
            self.assertTrue(client.closed)
        return ack.reason_code

    def test_codes(self) -> None:
        """Right password 0; wrong 4 / 0x86; unknown user and anonymous 5 / 0x87."""
        h = self.harness()
        for level, bad, refused in [(3, 4, 5), (4, 4, 5), (5, 0x86, 0x87)]:
            self.assertEqual(self.connack(h, level, "alice", b"s3cret"), 0)
            self.assertEqual(self.connack(h, level, "alice", b"guess"), bad)
            self.assertEqual(self.connack(h, level, "mallory", b"s3cret"), refused)
            self.assertEqual(self.connack(h, level, None, None), refused)

    def test_anonymousOverride(self) -> None:
        """A listener with allow_anonymous_override lets anybody in, unchecked."""
        h = self.harness()
        self.assertEqual(self.connack(h, 4, None, None, "open"), 0)
        self.assertEqual(self.connack(h, 5, "alice", b"guess", "open"), 0)

    def test_allowAnonymousSkipsPasswd(self) -> None:
        """With allow_anonymous = on the password file is not consulted."""
        h = self.harness("allow_anonymous = on\n")
        self.assertEqual(self.connack(h, 4, "alice", b"guess"), 0)

    def test_pluginOff(self) -> None:
        """plugins.vmq_passwd = off: nobody implements auth_on_register."""
        h = self.harness("plugins.vmq_passwd = off\n")
        self.assertFalse(h.broker.hooks.implemented("auth_on_register"))
        self.assertEqual(self.connack(h, 4, "alice", b"s3cret"), 5)

    def test_logsNoPassword(self) -> None:
        """Refusals are logged without the password."""
        h = self.harness()
        with LogCapture() as logs:
            self.connack(h, 4, "alice", b"guess-me-not")
            self.connack(h, 5, "mallory", b"guess-me-not")
        self.assertNotIn("guess-me-not", logs.text())
