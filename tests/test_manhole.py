"""
Tests for L{vernemq.manhole}: credentials, host key, binding, the REPL, and
real SSH logins over a loopback socket with Twisted Conch's own client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.conch.error import ValidPublicKey
from twisted.conch.ssh import session
from twisted.conch.ssh.channel import SSHChannel
from twisted.conch.ssh.connection import SSHConnection
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.transport import SSHClientTransport
from twisted.conch.ssh.userauth import SSHUserAuthClient
from twisted.cred.credentials import SSHPrivateKey, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import CannotListenError
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    RaisingMemoryReactor,
)
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from vernemq.manhole import (
    AuthorizedKeysFile,
    ManholeConfigError,
    ManholeFactory,
    ManholeInterpreter,
    ManholeService,
    PasswordFileChecker,
    check_password,
    hash_password,
    load_or_create_host_key,
    makeManholeService,
)

USER = "vernemq"


def _newKey() -> Key:
    """
    A fresh Ed25519 private key.
    """
    return Key(Ed25519PrivateKey.generate())


def _authorizedLine(key: Key, prefix: bytes = b"") -> bytes:
    """
    An authorized_keys line for C{key}.
    """
    return prefix + key.public().toString("openssh") + b" test@example\n"


class _Files:
    """
    Credential and host key files in a fresh temporary directory.
    """

    def __init__(self, case: unittest.SynchronousTestCase) -> None:
        self.dir = case.mktemp()
        os.makedirs(self.dir)
        self.hostKey = os.path.join(self.dir, "host", "ssh_host_key")

    def write(self, name: str, content: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def authorizedKeys(self, *keys: Key) -> str:
        return self.write("authorized_keys", b"".join(_authorizedLine(k) for k in keys))

    def passwords(self, **users: str) -> str:
        lines = "".join(f"{u}:{hash_password(p)}\n" for u, p in users.items())
        return self.write("vmq.passwd", lines.encode("utf-8"))


def _signedCredentials(key: Key, username: bytes) -> SSHPrivateKey:
    """
    Public key credentials for C{username}, signed with C{key} as a client
    would.
    """
    sigData = b"session id and request"
    return SSHPrivateKey(
        username,
        b"ssh-ed25519",
        key.public().blob(),
        sigData,
        key.sign(sigData),
    )


class PasswordHashTests(unittest.SynchronousTestCase):
    """
    L{hash_password} and L{check_password} speak vmq.passwd's C{$6$} format.
    """

    def test_format(self) -> None:
        """
        The hash is C{$6$<base64 salt>$<base64 sha512(password + salt)>}, as
        mosquitto_passwd writes it.
        """
        salt = b"0123456789ab"
        expected = hashlib.sha512(b"s3cret" + salt).digest()
        self.assertEqual(
            hash_password("s3cret", salt),
            "$6$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(expected).decode(),
        )

    def test_randomSalt(self) -> None:
        """
        Without a salt, each hash gets a fresh 12-byte salt.
        """
        a, b = hash_password("x"), hash_password("x")
        self.assertNotEqual(a, b)
        self.assertEqual(len(base64.b64decode(a.split("$")[2])), 12)

    def test_goodPassword(self) -> None:
        """
        The right password matches its hash.
        """
        self.assertTrue(check_password("s3cret", hash_password("s3cret")))
        self.assertTrue(check_password(b"s3cret", hash_password(b"s3cret")))

    def test_badPassword(self) -> None:
        """
        A wrong password does not match.
        """
        self.assertFalse(check_password("guess", hash_password("s3cret")))

    def test_malformedHash(self) -> None:
        """
        Anything not in the C{$6$salt$hash} format matches nothing, including
        an empty string and the C{x} placeholder of /etc/passwd.
        """
        for hashed in ["", "x", "s3cret", "$1$abc$def", "$6$!!$!!", "$6$YWJj$YWJj"]:
            self.assertFalse(check_password("s3cret", hashed), hashed)
            self.assertFalse(check_password("", hashed), hashed)
            self.assertFalse(check_password("x", hashed), hashed)


class PasswordFileCheckerTests(unittest.SynchronousTestCase):
    """
    L{PasswordFileChecker} checks one user's password against a vmq.passwd
    file.
    """

    def setUp(self) -> None:
        self.files = _Files(self)
        self.path = self.files.passwords(vernemq="s3cret", root="rootpw")
        self.checker = PasswordFileChecker(self.path, USER)

    def test_good(self) -> None:
        """
        The configured user with the right password gets in.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"vernemq", b"s3cret"))
        self.assertEqual(self.successResultOf(d), b"vernemq")

    def test_badPassword(self) -> None:
        """
        A wrong password is refused.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"vernemq", b"guess"))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_otherUser(self) -> None:
        """
        Another user in the same file is refused even with that user's right
        password: only the configured user name is accepted.
        """
        d = self.checker.requestAvatarId(UsernamePassword(b"root", b"rootpw"))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_rereadsFile(self) -> None:
        """
        A changed password takes effect at the next attempt.
        """
        self.files.passwords(vernemq="n3w")
        self.failureResultOf(
            self.checker.requestAvatarId(UsernamePassword(b"vernemq", b"s3cret")),
            UnauthorizedLogin,
        )
        self.successResultOf(self.checker.requestAvatarId(UsernamePassword(b"vernemq", b"n3w")))

    def test_fileGone(self) -> None:
        """
        When the file can no longer be read, logins are refused.
        """
        os.remove(self.path)
        d = self.checker.requestAvatarId(UsernamePassword(b"vernemq", b"s3cret"))
        self.failureResultOf(d, UnauthorizedLogin)
        self.flushLoggedErrors()


class AuthorizedKeysTests(unittest.SynchronousTestCase):
    """
    L{AuthorizedKeysFile} with Conch's L{SSHPublicKeyChecker} accepts the
    listed keys for the configured user only.
    """

    def setUp(self) -> None:
        from twisted.conch.checkers import SSHPublicKeyChecker

        self.files = _Files(self)
        self.key = _newKey()
        self.path = self.files.authorizedKeys(self.key)
        self.checker = SSHPublicKeyChecker(AuthorizedKeysFile(self.path, USER))

    def test_goodKey(self) -> None:
        """
        A listed key, signed, for the configured user gets in.
        """
        d = self.checker.requestAvatarId(_signedCredentials(self.key, b"vernemq"))
        self.assertEqual(self.successResultOf(d), b"vernemq")

    def test_wrongUser(self) -> None:
        """
        A listed key is refused for any other user name.
        """
        for name in [b"root", b"vernemq2", b"VERNEMQ", b""]:
            d = self.checker.requestAvatarId(_signedCredentials(self.key, name))
            self.failureResultOf(d, UnauthorizedLogin)

    def test_unknownKey(self) -> None:
        """
        A key that is not listed is refused.
        """
        d = self.checker.requestAvatarId(_signedCredentials(_newKey(), b"vernemq"))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_unsignedQuery(self) -> None:
        """
        A query without a signature ("would you accept this key?") is
        answered but does not log anyone in.
        """
        creds = _signedCredentials(self.key, b"vernemq")
        creds.signature = None
        self.failureResultOf(self.checker.requestAvatarId(creds), ValidPublicKey)

    def test_optionsAndComments(self) -> None:
        """
        Comment lines, blank lines, garbage and per-key options (ignored) are
        all understood.
        """
        other = _newKey()
        self.files.write(
            "authorized_keys",
            b"# a comment\n\nnot a key at all\n"
            + _authorizedLine(other, b'from="127.0.0.1",command="echo hi there" '),
        )
        keys = list(AuthorizedKeysFile(self.path, USER).getAuthorizedKeys(b"vernemq"))
        self.assertEqual(keys, [other.public()])


class HostKeyTests(unittest.SynchronousTestCase):
    """
    L{load_or_create_host_key} creates a private host key once, safely, and
    then reuses it.
    """

    def test_createdOnce(self) -> None:
        """
        A missing key is generated, with its parent directory, mode 0600, and
        loaded unchanged next time.
        """
        path = os.path.join(self.mktemp(), "a", "b", "host_key")
        key = load_or_create_host_key(path)
        self.assertFalse(key.isPublic())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_host_key(path), key)

    def test_garbage(self) -> None:
        """
        A host key file that is not a key is a config error.
        """
        path = _Files(self).write("host_key", b"not a key")
        self.assertRaises(ManholeConfigError, load_or_create_host_key, path)

    def test_publicKey(self) -> None:
        """
        A public key is not a host key.
        """
        path = _Files(self).write("host_key", _authorizedLine(_newKey()))
        self.assertRaises(ManholeConfigError, load_or_create_host_key, path)


class MakeServiceConfigTests(unittest.SynchronousTestCase):
    """
    L{makeManholeService} refuses to start without credentials of its own.
    """

    def setUp(self) -> None:
        self.files = _Files(self)
        self.reactor = MemoryReactorClock()

    def make(self, **kw: Any) -> ManholeService:
        args: dict[str, Any] = dict(
            host="127.0.0.1",
            port=6022,
            user=USER,
            authorized_keys_file=None,
            password_file=None,
            host_key_file=self.files.hostKey,
            namespace={},
            reactor=self.reactor,
        )
        args.update(kw)
        svc = makeManholeService(**args)
        assert isinstance(svc, ManholeService)
        return svc

    def test_noCredentials(self) -> None:
        """
        With neither an authorized_keys file nor a password file, building the
        manhole fails (it never falls back to /etc/passwd).
        """
        self.assertRaises(ManholeConfigError, self.make)
        self.assertFalse(os.path.exists(self.files.hostKey))

    def test_unreadableKeysFile(self) -> None:
        """
        A missing authorized_keys file is a config error.
        """
        missing = os.path.join(self.files.dir, "nope")
        self.assertRaises(ManholeConfigError, self.make, authorized_keys_file=missing)

    def test_unreadablePasswordFile(self) -> None:
        """
        A missing password file is a config error, even with good keys.
        """
        self.assertRaises(
            ManholeConfigError,
            self.make,
            authorized_keys_file=self.files.authorizedKeys(_newKey()),
            password_file=os.path.join(self.files.dir, "nope"),
        )

    def test_noUsableCredential(self) -> None:
        """
        Files that give the configured user nothing to log in with (no key;
        no line for that user, or no valid hash) are a config error.
        """
        emptyKeys = self.files.write("authorized_keys", b"# nobody\n")
        otherUser = self.files.passwords(root="x")
        plaintext = self.files.write("plain", b"vernemq:s3cret\n")
        self.assertRaises(ManholeConfigError, self.make, authorized_keys_file=emptyKeys)
        self.assertRaises(ManholeConfigError, self.make, password_file=otherUser)
        self.assertRaises(ManholeConfigError, self.make, password_file=plaintext)
        self.assertRaises(
            ManholeConfigError,
            self.make,
            authorized_keys_file=emptyKeys,
            password_file=otherUser,
        )

    def test_emptyUser(self) -> None:
        """
        An empty user name is a config error.
        """
        self.assertRaises(
            ManholeConfigError,
            self.make,
            user="",
            authorized_keys_file=self.files.authorizedKeys(_newKey()),
        )

    def test_onlyOffersConfiguredMethods(self) -> None:
        """
        Key-only configuration offers only public key authentication, and a
        password file adds password authentication.
        """
        from twisted.cred.credentials import ISSHPrivateKey, IUsernamePassword

        keysOnly = self.make(authorized_keys_file=self.files.authorizedKeys(_newKey()))
        ifaces = keysOnly.factory.portal.listCredentialsInterfaces()
        self.assertIn(ISSHPrivateKey, ifaces)
        self.assertNotIn(IUsernamePassword, ifaces)
        both = self.make(
            authorized_keys_file=self.files.authorizedKeys(_newKey()),
            password_file=self.files.passwords(vernemq="s3cret"),
        )
        ifaces = both.factory.portal.listCredentialsInterfaces()
        self.assertIn(ISSHPrivateKey, ifaces)
        self.assertIn(IUsernamePassword, ifaces)


class BindTests(unittest.SynchronousTestCase):
    """
    The manhole listens on the configured interface and port, and says so.
    """

    def setUp(self) -> None:
        self.files = _Files(self)
        self.reactor = MemoryReactorClock()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def start(self, host: str, port: int = 6022) -> ManholeService:
        svc = makeManholeService(
            host=host,
            port=port,
            user=USER,
            authorized_keys_file=self.files.authorizedKeys(_newKey()),
            password_file=None,
            host_key_file=self.files.hostKey,
            namespace={},
            reactor=self.reactor,
        )
        assert isinstance(svc, ManholeService)
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["log_level"] >= LogLevel.warn]

    def test_loopback(self) -> None:
        """
        The default 127.0.0.1:6022 binds exactly there, logs it, and does not
        warn.
        """
        svc = self.start("127.0.0.1")
        [(port, factory, _backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (6022, "127.0.0.1"))
        self.assertIs(factory, svc.factory)
        self.assertIsInstance(factory, ManholeFactory)
        self.assertIsNotNone(svc.port)
        self.assertEqual(self.warnings(), [])
        self.assertTrue(any("manhole: SSH listening" in e["log_format"] for e in self.events))

    def test_ipv6Loopback(self) -> None:
        """
        An IPv6 interface (colons and all) is passed through intact.
        """
        self.start("::1", 7022)
        [(port, _f, _b, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (7022, "::1"))
        self.assertEqual(self.warnings(), [])

    def test_notLoopback(self) -> None:
        """
        Listening beyond loopback works but logs a warning.
        """
        self.start("0.0.0.0")
        [(_p, _f, _b, interface)] = self.reactor.tcpServers
        self.assertEqual(interface, "0.0.0.0")
        [warning] = self.warnings()
        self.assertIn("not a loopback", warning["log_format"])

    def test_stop(self) -> None:
        """
        Stopping the service completes at once when no session is open.
        """
        svc = self.start("127.0.0.1")
        self.successResultOf(svc.stopService())
        self.assertFalse(svc.running)

    def test_bindFailure(self) -> None:
        """
        When the port cannot be bound, starting the service raises instead of
        only logging, so a misconfigured node does not start half-way.
        """
        failing = RaisingMemoryReactor(CannotListenError("127.0.0.1", 6022, None))
        svc = makeManholeService(
            host="127.0.0.1",
            port=6022,
            user=USER,
            authorized_keys_file=self.files.authorizedKeys(_newKey()),
            password_file=None,
            host_key_file=self.files.hostKey,
            namespace={},
            reactor=failing,
        )
        self.assertRaises(CannotListenError, svc.startService)


class _Output:
    """
    Stands in for a L{Manhole} as the interpreter's output handler.
    """

    def __init__(self) -> None:
        self.written: list[str] = []

    def addOutput(self, data: str, isAsync: bool | None = None) -> None:
        self.written.append(data)


class InterpreterTests(unittest.SynchronousTestCase):
    """
    L{ManholeInterpreter} shows values, Deferreds and coroutines.
    """

    def test_value(self) -> None:
        """
        An expression's repr is shown.
        """
        out = _Output()
        ManholeInterpreter(out, {"x": [1, 2]}).push(b"x")
        self.assertEqual(out.written, ["[1, 2]"])

    def test_coroutine(self) -> None:
        """
        An expression that evaluates to a coroutine is run, and its result is
        shown when it arrives.
        """
        gate: Deferred[int] = Deferred()

        async def later() -> int:
            return await gate + 1

        out = _Output()
        ManholeInterpreter(out, {"later": later}).push(b"later()")
        self.assertEqual(out.written, ["<Deferred #0>"])
        gate.callback(41)
        self.assertEqual(out.written[-1], "Deferred #0 called back: 42")


# ---------------------------------------------------------------------------
# A minimal interactive SSH client, built from Conch's public classes
# ---------------------------------------------------------------------------


class _ShellChannel(SSHChannel):
    """
    A session channel that asks for a pty and a shell and records the
    terminal output.
    """

    name = b"session"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.output = b""
        self.ready: Deferred[_ShellChannel] = Deferred()
        self.closedD: Deferred[None] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[bytes]]] = []

    def channelOpen(self, specificData: bytes) -> None:
        conn = self.conn
        assert conn is not None
        pty = session.packRequest_pty_req(b"xterm", (24, 80, 0, 0), b"")
        d = conn.sendRequest(self, b"pty-req", pty, wantReply=True)
        d.addCallback(lambda _: conn.sendRequest(self, b"shell", b"", wantReply=True))
        d.addCallback(lambda _: self)
        d.chainDeferred(self.ready)

    def dataReceived(self, data: bytes) -> None:
        self.output += data
        for item in list(self._waiting):
            needle, d = item
            if needle in self.output:
                self._waiting.remove(item)
                d.callback(self.output)

    def waitFor(self, needle: bytes, timeout: float = 10) -> Deferred[bytes]:
        """
        Fire with all the output so far once C{needle} has appeared in it.
        """
        if needle in self.output:
            return defer.succeed(self.output)
        d: Deferred[bytes] = Deferred()
        self._waiting.append((needle, d))
        return d.addTimeout(timeout, reactor)

    def type(self, text: bytes) -> None:
        """
        Send keystrokes.
        """
        self.write(text)

    def resize(self, rows: int, cols: int) -> Deferred[object]:
        conn = self.conn
        assert conn is not None
        data = session.packRequest_window_change((rows, cols, 0, 0))
        d: Deferred[object] = conn.sendRequest(self, b"window-change", data, wantReply=True)
        return d

    def sendEOF(self) -> None:
        conn = self.conn
        assert conn is not None
        conn.sendEOF(self)

    def closed(self) -> None:
        self.loseConnection()
        self.closedD.callback(None)


class _ClientConnection(SSHConnection):
    def __init__(self, channel: _ShellChannel) -> None:
        super().__init__()
        self.channel = channel

    def serviceStarted(self) -> None:
        super().serviceStarted()
        self.channel.conn = self
        self.openChannel(self.channel)


class _ClientAuth(SSHUserAuthClient):
    """
    Offers one key and/or one password, once each.
    """

    def __init__(
        self, user: bytes, instance: SSHConnection, key: Key | None, password: bytes | None
    ) -> None:
        super().__init__(user, instance)
        self._key = key
        self._password = password
        self.refusals = 0

    def ssh_USERAUTH_FAILURE(self, packet: bytes) -> Any:
        self.refusals += 1
        return super().ssh_USERAUTH_FAILURE(packet)

    def getPublicKey(self) -> Key | None:
        key, self._key = self._key, None
        if key is None:
            return None
        self._lastKey = key
        return key.public()

    def getPrivateKey(self) -> Deferred[Key]:
        return defer.succeed(self._lastKey)

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:
        password, self._password = self._password, None
        if password is None:
            return None
        return defer.succeed(password)


class _ClientTransport(SSHClientTransport):
    """
    Accepts exactly the expected host key, then authenticates and opens a
    shell channel.
    """

    def __init__(self, hostKey: Key, user: bytes, key: Key | None, password: bytes | None) -> None:
        self.hostKey = hostKey.public()
        self.user = user
        self.key = key
        self.password = password
        self.channel = _ShellChannel()
        self.lost: Deferred[None] = Deferred()

    def verifyHostKey(self, pubKey: bytes, fingerprint: str) -> Deferred[bool]:
        if Key.fromString(pubKey) == self.hostKey:
            return defer.succeed(True)
        return defer.fail(AssertionError("unexpected host key"))

    def connectionSecure(self) -> None:
        self.auth = _ClientAuth(self.user, _ClientConnection(self.channel), self.key, self.password)
        self.requestService(self.auth)

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        if not self.channel.ready.called:
            self.channel.ready.errback(AssertionError("connection lost before the shell opened"))
        self.lost.callback(None)


class Live:
    """
    A live object for the namespace; the test changes it while connected.
    """

    def __init__(self) -> None:
        self.value = "live-value-1"


class SSHLoginTests(unittest.TestCase):
    """
    Log in to a real manhole over a loopback socket with Conch's client.
    """

    timeout = 60

    def setUp(self) -> None:
        self.files = _Files(self)
        self.key = _newKey()
        self.live = Live()

        async def later() -> str:
            from twisted.internet.task import deferLater

            return await deferLater(reactor, 0, lambda: "coroutine-result")

        svc = makeManholeService(
            host="127.0.0.1",
            port=0,
            user=USER,
            authorized_keys_file=self.files.authorizedKeys(self.key),
            password_file=self.files.passwords(vernemq="s3cret"),
            host_key_file=self.files.hostKey,
            namespace={"answer": self.live, "later": later},
            reactor=reactor,
        )
        assert isinstance(svc, ManholeService)
        self.service = svc
        svc.startService()
        self.addCleanup(lambda: svc.stopService() if svc.running else None)
        assert svc.port is not None
        self.portNumber = svc.port.getHost().port  # type: ignore[attr-defined]
        self.hostKey = load_or_create_host_key(self.files.hostKey)

    async def connect(
        self, user: bytes = b"vernemq", key: Key | None = None, password: bytes | None = None
    ) -> _ClientTransport:
        client = _ClientTransport(self.hostKey, user, key, password)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.portNumber)
        await connectProtocol(endpoint, client)

        def disconnect() -> Deferred[None]:
            if client.transport is not None and client.transport.connected:
                client.transport.loseConnection()
            return client.lost

        self.addCleanup(disconnect)
        return client

    async def shell(self, **kw: Any) -> _ShellChannel:
        client = await self.connect(**kw)
        channel = await client.channel.ready
        await channel.waitFor(b">>> ")
        return channel

    def test_keyLoginReadsLiveValue(self) -> Deferred[None]:
        """
        Logging in with an authorized key gives a Python prompt whose
        namespace holds the live objects: typing C{answer.value} shows the
        current value, and a change made meanwhile by the broker is seen.
        """

        async def go() -> None:
            channel = await self.shell(key=self.key)
            channel.type(b"answer.value\r")
            await channel.waitFor(b"'live-value-1'")
            self.live.value = "live-value-2"
            channel.type(b"answer.value\r")
            await channel.waitFor(b"'live-value-2'")
            # Built from two literals, so the echo of the typed line never
            # contains the value we then wait for.
            channel.type(b"answer.value = 'set' + '-from-ssh'\r")
            channel.type(b"answer.value\r")
            await channel.waitFor(b"'set-from-ssh'")
            self.assertEqual(self.live.value, "set-from-ssh")
            channel.type(b"\x04")  # ^D ends the session
            await channel.closedD

        return defer.ensureDeferred(go())

    def test_coroutineAndResize(self) -> Deferred[None]:
        """
        A coroutine's result is shown when it completes, a terminal resize
        is accepted, and end-of-file closes the session.
        """

        async def go() -> None:
            channel = await self.shell(key=self.key)
            await channel.resize(40, 120)
            channel.type(b"later()\r")
            await channel.waitFor(b"called back: 'coroutine-result'")
            channel.sendEOF()
            await channel.closedD

        return defer.ensureDeferred(go())

    def test_passwordLogin(self) -> Deferred[None]:
        """
        The password from the password file logs in too.
        """

        async def go() -> None:
            channel = await self.shell(password=b"s3cret")
            channel.type(b"answer.value\r")
            await channel.waitFor(b"'live-value-1'")

        return defer.ensureDeferred(go())

    async def assertRefused(self, **kw: Any) -> None:
        client = await self.connect(**kw)
        await client.lost
        self.failureResultOf(client.channel.ready, AssertionError)
        self.assertEqual(client.channel.output, b"")
        # Refused by authentication (not, say, a host key mismatch): the
        # server answered every attempt with a failure.
        self.assertGreater(client.auth.refusals, 0)

    def test_wrongKeyRefused(self) -> Deferred[None]:
        """
        A key that is not in the authorized_keys file is refused.
        """
        return defer.ensureDeferred(self.assertRefused(key=_newKey()))

    def test_wrongUserRefused(self) -> Deferred[None]:
        """
        The authorized key and the right password are refused for any user
        name but the configured one.
        """
        return defer.ensureDeferred(
            self.assertRefused(user=b"root", key=self.key, password=b"s3cret")
        )

    def test_wrongPasswordRefused(self) -> Deferred[None]:
        """
        A wrong password is refused.
        """
        return defer.ensureDeferred(self.assertRefused(password=b"guess"))

    def test_stopDisconnectsSessions(self) -> Deferred[None]:
        """
        Stopping the service closes open manhole sessions.
        """

        async def go() -> None:
            channel = await self.shell(key=self.key)
            await self.service.stopService()
            await channel.closedD

        return defer.ensureDeferred(go())
