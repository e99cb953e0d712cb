"""
L{vernemq.listeners.tls}: contexts from listener settings, the handshake
guard, and the client certificate's CN as username.
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import Harness
from tests.tlshelpers import Certificates
from vernemq.config import ConfigError, config_from_text
from vernemq.listeners.compose import certificate_username, serverTLS
from vernemq.listeners.tls import (
    ClientTLS,
    ServerTLS,
    TLSConfigError,
    client_identity,
    tlsFactory,
)
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import ConnAck, Connect
from vernemq.mqtt.protocol import MQTTFactory

_CERTS: Certificates | None = None


def certificates(testCase: SynchronousTestCase) -> Certificates:
    """One set of generated certificates for the whole module."""
    global _CERTS
    if _CERTS is None:
        _CERTS = Certificates(testCase.mktemp())
    return _CERTS


class ServerTLSTests(SynchronousTestCase):
    """L{ServerTLS} and L{ClientTLS} validate the settings at once."""

    def setUp(self) -> None:
        self.certs = certificates(self)
        self.settings = {
            "certfile": self.certs.server,
            "keyfile": self.certs.serverKey,
            "cafile": self.certs.ca,
            "tls_version": "tlsv1.2",
            "depth": 1,
        }

    def test_good(self) -> None:
        """Certificate, key, CA, CRL and ciphers load; flags are kept."""
        tls = ServerTLS(
            dict(self.settings, require_certificate=True, crlfile=self.certs.crl,
                 ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", use_identity_as_username=True),
            "listener.ssl.default",
        )
        self.assertTrue(tls.require_certificate)
        self.assertTrue(tls.use_identity_as_username)
        self.assertIsNotNone(tls.serverConnectionForTLS(None))
        client = ClientTLS(self.settings, "listener.vmqs.x")
        self.assertIsNotNone(client.clientConnectionForTLS(None))

    def test_errors(self) -> None:
        """Each unusable setting names its key."""
        cases = [
            ({"certfile": None}, "listener.ssl.default: a TLS listener needs certfile"),
            ({"keyfile": self.certs.clientKey}, "listener.ssl.default.keyfile: "),
            ({"certfile": "/nonexistent.pem"}, "listener.ssl.default.certfile: "),
            ({"cafile": None, "require_certificate": True}, "need a cafile"),
            ({"ciphers": "NOPE-NOTHING"}, "listener.ssl.default.ciphers: "),
            ({"crlfile": self.certs.server}, "listener.ssl.default.crlfile: "),
        ]
        for change, message in cases:
            with self.assertRaises(TLSConfigError) as raised:
                ServerTLS(dict(self.settings, **change), "listener.ssl.default")
            self.assertIn(message, str(raised.exception))
        self.assertRaises(TLSConfigError, ClientTLS, {}, "listener.vmqs.x")

    def test_configErrorNamesTheLine(self) -> None:
        """Composing reports a bad file as a config error on the line that set it."""
        config = config_from_text(
            "listener.ssl.default = 127.0.0.1:8883\n"
            f"listener.ssl.certfile = {self.certs.server}\n"
            "listener.ssl.default.keyfile = /nonexistent.key\n"
        )
        with self.assertRaises(ConfigError) as raised:
            serverTLS(config, config.listeners[0])
        self.assertEqual(raised.exception.line, 3)
        self.assertEqual(raised.exception.key, "listener.ssl.default.keyfile")


class _CertTransport(StringTransport):
    def __init__(self, cert: x509.Certificate | None) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "10.0.0.2", 5000))
        self.cert = cert

    def getPeerCertificate(self) -> crypto.X509 | None:
        return None if self.cert is None else crypto.X509.from_cryptography(self.cert)


class IdentityTests(SynchronousTestCase):
    """C{use_identity_as_username}: the certificate's CN replaces the username."""

    def setUp(self) -> None:
        self.certs = certificates(self)
        with open(self.certs.client, "rb") as f:
            self.alice = x509.load_pem_x509_certificate(f.read())
        self.harness = Harness()
        self.mqtt = MQTTFactory(
            self.harness.broker, self.harness.listener(), self.harness.clock,
            certificate_username,
        )

    def connect(self, cert: x509.Certificate | None, clientId: str) -> ConnAck:
        proto = self.mqtt.buildProtocol(None)
        transport = _CertTransport(cert)
        proto.makeConnection(transport)
        proto.dataReceived(encode(Connect(clientId, username="claimed", password=b"pw"), 4))
        decoder = Decoder(protocol_level=4, server=False)
        decoder.feed(transport.value())
        pkt = decoder.next_packet()
        assert isinstance(pkt, ConnAck)
        return pkt

    def test_cnIsTheUsername(self) -> None:
        """The session (and every hook) sees the CN, not the CONNECT's username."""
        self.assertEqual(client_identity(_CertTransport(self.alice)), "alice")
        self.assertEqual(self.connect(self.alice, "c1").reason_code, 0)
        self.assertEqual(self.harness.broker.sessions[("", "c1")].username, "alice")

    def test_noCertificateRefused(self) -> None:
        """Without a certificate the CONNECT is refused: not authorized (3.1.1 code 5)."""
        self.assertIsNone(client_identity(_CertTransport(None)))
        self.assertIsNone(client_identity(object()))
        self.assertEqual(self.connect(None, "c2").reason_code, 5)
        self.assertNotIn(("", "c2"), self.harness.broker.sessions)


class GuardTests(SynchronousTestCase):
    """The handshake deadline and the one line per failed handshake."""

    def setUp(self) -> None:
        certs = certificates(self)
        self.harness = Harness()
        self.mqtt = MQTTFactory(self.harness.broker, self.harness.listener(), self.harness.clock)
        tls = ServerTLS(
            {"certfile": certs.server, "keyfile": certs.serverKey}, "listener.ssl.default"
        )
        self.factory = tlsFactory(self.mqtt, tls, self.harness.clock, 5.0)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self) -> tuple:
        proto = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.3", 6000))
        proto.makeConnection(transport)
        return proto, transport

    def warnings(self, text: str) -> list:
        return [e for e in self.events if text in e.get("log_format", "")]

    def test_silentClientTimesOut(self) -> None:
        """No handshake within tls_handshake_timeout: aborted, one warning."""
        proto, transport = self.connect()
        self.assertEqual(1, self.mqtt.count)
        self.harness.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(1, len(self.warnings("no TLS handshake within")))
        self.assertEqual("10.0.0.3:6000", self.warnings("no TLS handshake")[0]["peer"])
        proto.connectionLost(None)
        self.assertEqual(0, self.mqtt.count)

    def test_garbage(self) -> None:
        """Bytes that are not TLS fail the handshake: closed, one warning, slot freed."""
        proto, transport = self.connect()
        proto.dataReceived(b"\x10\x20" + b"garbage" * 20)
        self.assertTrue(transport.disconnecting)
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(1, len(self.warnings("TLS handshake failed")))
        self.assertEqual(0, self.mqtt.count)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])
