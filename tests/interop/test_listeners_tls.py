"""
A real node's TLS listeners (C{listener.ssl}) with certificates generated
here, driven by C{mosquitto_pub/sub --cafile}, paho-mqtt and raw sockets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.listenerclients import PahoClient, mqtt
from tests.interop.nodeprocess import NodeProcess, freePort, requireProgram
from tests.interop.test_mosquitto_clients import Subscriber, publish
from tests.tlshelpers import Certificates


class TLSListenerTests(SynchronousTestCase):
    """
    C{ssl.plain}: server certificate only.  C{ssl.mutual}: client
    certificates required (checked against the CA and the CRL), the CN
    used as username.
    """

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        directory = self.mktemp()
        self.certs = certs = Certificates(os.path.abspath(directory + "-certs"))
        self.plain, self.mutual = freePort(), freePort()
        self.node = NodeProcess(
            directory,
            [
                f"listener.ssl.plain = 127.0.0.1:{self.plain}",
                f"listener.ssl.mutual = 127.0.0.1:{self.mutual}",
                f"listener.ssl.cafile = {certs.ca}",
                f"listener.ssl.certfile = {certs.server}",
                f"listener.ssl.keyfile = {certs.serverKey}",
                "listener.ssl.tls_handshake_timeout = 700",
                "listener.ssl.mutual.require_certificate = on",
                "listener.ssl.mutual.use_identity_as_username = on",
                f"listener.ssl.mutual.crlfile = {certs.crl}",
            ],
        ).start()
        self.addCleanup(self.node.stop)

    def mosquittoPub(self, port: int, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [requireProgram("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port),
             "--cafile", self.certs.ca, "-t", "t", "-m", "x", *args],
            capture_output=True, timeout=20,
        )

    def waitForLog(self, text: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.node.log():
                return
            time.sleep(0.05)
        self.fail(f"{text!r} not in the node's log:\n{self.node.log()}")

    def test_mosquittoOverTLS(self) -> None:
        """mosquitto_sub and mosquitto_pub with --cafile exchange a message."""
        sub = Subscriber(self.plain, "--cafile", self.certs.ca, "-t", "s/#", "-v")
        publish(self.plain, "--cafile", self.certs.ca, "-t", "s/1", "-m", "secure", "-q", "1")
        self.assertIn("s/1 secure", sub.messages())

    def test_pahoOverTLS(self) -> None:
        """paho-mqtt verifies the server certificate, subscribes and publishes."""
        client = PahoClient(self.plain, "paho-tls", cafile=self.certs.ca)
        self.addCleanup(client.client.loop_stop)
        self.assertEqual(0, client.connect())
        client.subscribe("p/#")
        client.publish("p/1", b"over-tls")
        self.assertEqual(b"over-tls", client.receive().payload)
        client.close()

    def test_certificateRequired(self) -> None:
        """Without a client certificate the handshake fails: refused, logged once."""
        result = self.mosquittoPub(self.mutual)
        self.assertNotEqual(0, result.returncode)
        self.waitForLog("TLS handshake failed")

    def test_cnIsTheUsername(self) -> None:
        """A client certificate for CN alice connects as user alice, whatever it claims."""
        client = PahoClient(
            self.mutual, "cn-client", cafile=self.certs.ca,
            cert=(self.certs.client, self.certs.clientKey), username="claimed",
        )
        self.addCleanup(client.client.loop_stop)
        self.assertEqual(0, client.connect())
        client.close()
        self.waitForLog("client cn-client connected from")
        line = [ln for ln in self.node.log().splitlines() if "client cn-client connected" in ln]
        self.assertIn("username: 'alice'", line[0])

    def test_badCertificatesRefused(self) -> None:
        """Expired, untrusted and revoked client certificates fail the handshake."""
        cases = [
            ((self.certs.expired, self.certs.expiredKey), "has expired"),
            ((self.certs.untrusted, self.certs.untrustedKey), "not issued by a trusted CA"),
            ((self.certs.revoked, self.certs.revokedKey), "revoked"),
        ]
        for (cert, key), reason in cases:
            result = self.mosquittoPub(self.mutual, "--cert", cert, "--key", key)
            self.assertNotEqual(0, result.returncode, reason)
            self.waitForLog(reason)
        result = self.mosquittoPub(
            self.mutual, "--cert", self.certs.client, "--key", self.certs.clientKey
        )
        self.assertEqual(0, result.returncode, result.stderr)

    def test_junkAndSilence(self) -> None:
        """
        TLS garbage is closed; a silent client is dropped after
        tls_handshake_timeout; the listener keeps serving.
        """
        with socket.create_connection(("127.0.0.1", self.plain), timeout=5) as junk:
            junk.sendall(b"\x16\x03\x01\x00\x05hello, not really TLS" * 4)
            self.assertIn(junk.recv(100)[:1], (b"", b"\x15"))
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.plain), timeout=5) as silent:
            try:
                self.assertEqual(b"", silent.recv(100))
            except ConnectionResetError:
                pass  # aborted: as closed
        self.assertLess(time.monotonic() - started, 3)
        self.waitForLog("no TLS handshake within 700 ms")
        self.assertEqual(0, self.mosquittoPub(self.plain).returncode)
