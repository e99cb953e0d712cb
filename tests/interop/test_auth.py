"""
A real node with C{allow_anonymous = off}, a vmq.passwd written by
C{vmq-passwd} and a vmq.acl, driven by C{mosquitto_pub}/C{mosquitto_sub}
and paho-mqtt: CONNACK refusals per protocol version, allowed and denied
publishes and subscriptions for users and patterns, and an ACL change that
takes effect without a restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess, requireProgram
from tests.interop.test_mosquitto_clients import Subscriber
from tests.interop.test_paho import Client, mqtt

ACL = """\
topic read public/#
user alice
topic alice/#
topic read devices/#
pattern write devices/%c/#
pattern read inbox/%u
"""


def mosquittoPub(port: int, version: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run C{mosquitto_pub}; its exit status is the CONNACK code on refusal."""
    return subprocess.run(
        [requireProgram("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-V", version,
         *args],
        capture_output=True,
        timeout=20,
    )


class AuthTests(SynchronousTestCase):
    """vmq_passwd and vmq_acl on a real node."""

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        directory = os.path.abspath(self.mktemp())
        etc = os.path.join(directory, "etc")
        os.makedirs(etc)
        self.passwd = os.path.join(etc, "vmq.passwd")
        for flag, user, password in [("-c", "alice", "wonderland"), ("", "bob", "builder")]:
            argv = [sys.executable, "-m", "vernemq.auth.passwd_cli"]
            argv += [flag, self.passwd, user] if flag else [self.passwd, user]
            done = subprocess.run(argv, input=f"{password}\n{password}\n".encode(),
                                  capture_output=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stderr)
        self.acl = os.path.join(etc, "vmq.acl")
        with open(self.acl, "w") as f:
            f.write(ACL)
        self.node = NodeProcess(
            directory,
            ["allow_anonymous = off", "vmq_acl.acl_reload_interval = 1"],
        ).start()
        self.addCleanup(self.node.stop)

    def paho(self, clientId: str, user: str, password: str, version: int) -> Client:
        c = Client(self.node.port, clientId, version)
        c.client.username_pw_set(user, password)
        self.addCleanup(c.client.loop_stop)
        return c

    def test_passwordFileIsHashed(self) -> None:
        """vmq-passwd wrote hashes, not passwords."""
        with open(self.passwd) as f:
            text = f.read()
        self.assertNotIn("wonderland", text)
        self.assertIn("alice:$6$", text)

    def test_connackCodes(self) -> None:
        """Wrong password, unknown user, anonymous: VerneMQ's codes per version."""
        port = self.node.port
        for version, ok, bad, refused in [
            ("31", 0, 4, 5), ("311", 0, 4, 5), ("5", 0, 0x86, 0x87),
        ]:
            def status(*creds: str, version: str = version) -> int:
                return mosquittoPub(port, version, *creds, "-t", "public/x", "-m", "hi").returncode

            self.assertEqual(status("-u", "bob", "-P", "builder"), ok, version)
            self.assertEqual(status("-u", "bob", "-P", "wrong"), bad, version)
            self.assertEqual(status("-u", "mallory", "-P", "builder"), refused, version)
            self.assertEqual(status(), refused, version)
        log = self.node.log()
        self.assertNotIn("wrong", log.replace("wrong password", ""))
        self.assertNotIn("builder", log)

    def test_pahoV5BadPassword(self) -> None:
        """paho-mqtt sees reason code 0x86 for a bad password."""
        c = self.paho("p5", "alice", "nope", mqtt.MQTTv5)
        _, rc = c.connect()
        self.assertEqual(rc.value, 0x86)

    def subscribeCodes(self, user: str, password: str, version: int, *topics: str) -> list[Any]:
        c = self.paho(f"s-{user}-{version}", user, password, version)
        _, rc = c.connect()
        self.assertEqual(rc.value, 0)
        c.client.subscribe([(t, 1) for t in topics])
        codes = [getattr(code, "value", code) for code in c.subacks.get(timeout=10)]
        c.close()
        return codes

    def test_subscribe(self) -> None:
        """Denied filters get 0x80 (3.1.1) / 0x87 (5.0), the others their QoS."""
        for version, refused in [(mqtt.MQTTv311, 0x80), (mqtt.MQTTv5, 0x87)]:
            self.assertEqual(
                self.subscribeCodes("alice", "wonderland", version,
                                    "alice/#", "public/news", "bob/#", "inbox/alice"),
                [1, 1, refused, 1],
            )
            self.assertEqual(
                self.subscribeCodes("bob", "builder", version, "alice/#", "inbox/bob", "#"),
                [refused, 1, refused],
            )

    def test_publish(self) -> None:
        """Only authorized publishes arrive; 3.1.1 is disconnected, 5.0 told 0x87."""
        port = self.node.port
        sub = Subscriber(port, "-u", "alice", "-P", "wonderland", "-i", "watcher",
                         "-t", "alice/#", "-t", "devices/#", "-v", "-C", "2")
        bob = ["-u", "bob", "-P", "builder"]
        # Denied: bob may not write alice/...
        denied311 = mosquittoPub(port, "311", *bob, "-q", "1", "-t", "alice/x", "-m", "bob311")
        self.assertNotEqual(denied311.returncode, 0)
        denied5 = mosquittoPub(port, "5", *bob, "-q", "1", "-t", "alice/x", "-m", "bob5")
        self.assertIn(b"Not authorized", denied5.stderr + denied5.stdout)
        # ... nor another client's device topic (the pattern uses the client id).
        mosquittoPub(port, "5", *bob, "-i", "dev1", "-q", "1", "-t", "devices/dev2/t",
                     "-m", "spoof")
        # Allowed: alice's own tree, and bob as client dev1 on devices/dev1.
        ok = mosquittoPub(port, "311", "-u", "alice", "-P", "wonderland", "-q", "1",
                          "-t", "alice/x", "-m", "mine")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        ok = mosquittoPub(port, "311", *bob, "-i", "dev1", "-q", "1", "-t", "devices/dev1/t",
                          "-m", "telemetry")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(sub.messages(), ["alice/x mine", "devices/dev1/t telemetry"])

    def test_reload(self) -> None:
        """A changed ACL file takes effect without a restart."""
        port = self.node.port
        bob = ["-u", "bob", "-P", "builder"]
        denied = mosquittoPub(port, "5", *bob, "-q", "1", "-t", "shared/x", "-m", "1")
        self.assertIn(b"Not authorized", denied.stderr + denied.stdout)
        with open(self.acl, "a") as f:
            f.write("user bob\ntopic shared/#\n")
        deadline = time.monotonic() + 15
        while True:
            result = mosquittoPub(port, "5", *bob, "-q", "1", "-t", "shared/x", "-m", "1")
            if b"Not authorized" not in result.stderr + result.stdout:
                break
            self.assertLess(time.monotonic(), deadline, "the new ACL never took effect")
            time.sleep(0.3)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("vmq_acl: loaded", self.node.log())
