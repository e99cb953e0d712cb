# mypy: disable-error-code="no-untyped-call"
"""
L{vernemq.cluster.datatls}: the data channel's TLS endpoint factories, on
a memory reactor (a TLS handshake pumped in memory included), and the
connecting side's wait for the TLS handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.test_listeners_tls import certificates
from tests.tlshelpers import Certificates
from vernemq.cluster.datachannel import (
    DataChannelSettings,
    OutgoingDataChannel,
    OutgoingDataProtocol,
    PeerAddress,
)
from vernemq.cluster.dataframes import encode_hello
from vernemq.cluster.datatls import (
    DataChannelTLS,
    TLSClientEndpoint,
    TLSServerEndpoint,
    certificate_matches_host,
    checks_node_names,
    describe_names,
)
from vernemq.config.loader import ListenerSpec
from vernemq.listeners.tls import (
    ClientTLS,
    ServerTLS,
    TLSHandshakeGuardFactory,
    describe_handshake_failure,
)

A = "a@127.0.0.1"
B = "b@127.0.0.1"

_NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class NodeCertificates:
    """
    A CA and node certificates it signs with chosen names: C{subjectAltName}
    DNS and IP entries, and a subject CN.  L{certificate} makes one in
    memory; L{files} writes one with its key as PEM files.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name("vernemq cluster test CA")
        ca = self._build(self.name, self.key, self.key.public_key(), ca=True).sign(
            self.key, hashes.SHA256()
        )
        self.ca = self._write("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    def _build(
        self, subject: x509.Name, issuerKey: Any, public: Any, ca: bool = False
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def certificate(
        self,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        cn: str = "vernemq node",
        key: Any = None,
    ) -> x509.Certificate:
        """A certificate the CA signs for these names."""
        key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        builder = self._build(_name(cn), self.key, key.public_key())
        entries: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        entries += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if entries:
            builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def files(
        self, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), cn: str = "vernemq node"
    ) -> tuple[str, str]:
        """C{(certfile, keyfile)} for a certificate with these names."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.certificate(dns, ips, cn, key)
        self._count += 1
        certfile = self._write(
            f"node{self._count}.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
        keyfile = self._write(
            f"node{self._count}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        )
        return certfile, keyfile

    def settings(
        self, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), **extra: Any
    ) -> dict[str, Any]:
        """The settings of a C{vmqs} listener with a certificate for these names."""
        certfile, keyfile = self.files(dns, ips)
        settings: dict[str, Any] = {
            "certfile": certfile,
            "keyfile": keyfile,
            "cafile": self.ca,
            "require_certificate": True,
            "verify_nodename": True,
            "tls_version": "tlsv1.2",
            "depth": 1,
            "tls_handshake_timeout": 5000,
        }
        settings.update(extra)
        return settings


def tlsSettings(certs: Certificates, trusted: bool = True, **extra: Any) -> dict[str, Any]:
    """
    The settings of a C{vmqs} listener: the CA-signed server certificate,
    or (C{trusted=False}) one from another CA; the test CA as cafile.
    """
    settings: dict[str, Any] = {
        "certfile": certs.server if trusted else certs.untrusted,
        "keyfile": certs.serverKey if trusted else certs.untrustedKey,
        "cafile": certs.ca,
        "require_certificate": True,
        "tls_version": "tlsv1.2",
        "depth": 1,
        "tls_handshake_timeout": 5000,
    }
    settings.update(extra)
    return settings


def contexts(settings: dict[str, Any], name: str = "clustering") -> dict[str, Any]:
    """C{NodeService.cluster_tls} for one C{vmqs} listener."""
    label = f"listener.vmqs.{name}"
    return {name: (ServerTLS(settings, label), ClientTLS(settings, label))}


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Records bytes, the handshake and the loss reason."""

    def __init__(self) -> None:
        self.data = b""
        self.handshake = False
        self.lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        self.handshake = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason if reason is not None else Failure(Exception("lost"))


class Recorders(Factory):
    """
    Builds L{Recorder}s and keeps them; C{peer}, the node dialled, as the
    data channel's link factories have it.
    """

    def __init__(self, peer: str | None = None) -> None:
        self.built: list[Recorder] = []
        if peer is not None:
            self.peer = peer

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder()
        self.built.append(protocol)
        return protocol


class EndpointFactoryTests(SynchronousTestCase):
    """L{DataChannelTLS.server_endpoint} and L{DataChannelTLS.client_endpoint}."""

    def setUp(self) -> None:
        self.certs = certificates(self)
        self.reactor = MemoryReactorClock()

    def test_plainListenerStaysTCP(self) -> None:
        """A C{vmq} listener listens in plain TCP, even with TLS contexts present."""
        tls = DataChannelTLS(contexts(tlsSettings(self.certs)))
        spec = ListenerSpec("vmq", "clustering", "127.0.0.1", 44053, None, {})
        factory = Factory.forProtocol(Recorder)
        tls.server_endpoint(self.reactor, spec).listen(factory)
        [(port, listening, _backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (44053, "127.0.0.1"))
        self.assertIs(listening, factory)

    def test_vmqsListenerServesTLS(self) -> None:
        """
        A C{vmqs} listener listens on plain TCP under TLS with its own
        context and handshake deadline.
        """
        tls = DataChannelTLS(contexts(tlsSettings(self.certs)))
        settings = tlsSettings(self.certs, tls_handshake_timeout=2500)
        spec = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44054, None, settings)
        endpoint = tls.server_endpoint(self.reactor, spec)
        self.assertIsInstance(endpoint, TLSServerEndpoint)
        factory = Factory.forProtocol(Recorder)
        endpoint.listen(factory)
        [(port, listening, _backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (44054, "127.0.0.1"))
        assert isinstance(listening, TLSMemoryBIOFactory)
        guard = listening.wrappedFactory
        self.assertIsInstance(guard, TLSHandshakeGuardFactory)
        self.assertEqual(guard.timeout, 2.5)
        self.assertEqual(guard.label, "listener.vmqs.clustering")
        # require_certificate: the protocols get the node name check.
        self.assertIs(guard.wrappedFactory.wrappedFactory, factory)
        protocol = guard.wrappedFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        self.assertIsNotNone(protocol.certificate_check)

    def test_verifyNodenameOff(self) -> None:
        """
        With C{verify_nodename = off} (or without C{require_certificate})
        the listener's protocols get no node name check, and the client
        side checks the chain only.
        """
        for extra in ({"verify_nodename": False}, {"require_certificate": False}):
            settings = tlsSettings(self.certs, **extra)
            tls = DataChannelTLS(contexts(settings))
            spec = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44054, None, settings)
            factory = Factory.forProtocol(Recorder)
            endpoint = tls.server_endpoint(self.reactor, spec)
            assert isinstance(endpoint, TLSServerEndpoint)
            self.assertIsNone(endpoint.check)
            endpoint.listen(factory)
            self.assertIs(self.reactor.tcpServers[-1][1].wrappedFactory.wrappedFactory, factory)
            self.assertFalse(tls.checks_node_names("clustering"))
            client = tls.client_endpoint(self.reactor, PeerAddress("127.0.0.1", 1, True), 1.0)
            assert isinstance(client, TLSClientEndpoint)
            self.assertFalse(client.check_names)

    def test_clientFollowsItsListener(self) -> None:
        """
        The client side checks node names as the listener whose context it
        dials with does: before that listener's endpoint is built, as its
        context requires certificates (C{verify_nodename}'s default).
        """
        tls = DataChannelTLS(contexts(tlsSettings(self.certs)))
        self.assertTrue(tls.checks_node_names("clustering"))
        client = tls.client_endpoint(self.reactor, PeerAddress("127.0.0.1", 1, True), 1.0)
        assert isinstance(client, TLSClientEndpoint)
        self.assertTrue(client.check_names)
        settings = tlsSettings(self.certs, verify_nodename=False)
        spec = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44054, None, settings)
        tls.server_endpoint(self.reactor, spec)
        self.assertFalse(tls.checks_node_names("clustering"))

    def test_vmqsWithoutContext(self) -> None:
        """A C{vmqs} listener the node built no context for is a bug: refused."""
        spec = ListenerSpec("vmqs", "other", "127.0.0.1", 44054, None, {})
        tls = DataChannelTLS(contexts(tlsSettings(self.certs)))
        self.assertRaises(ValueError, tls.server_endpoint, self.reactor, spec)

    def test_clientPlain(self) -> None:
        """A peer answering plain TCP is dialled in plain TCP."""
        tls = DataChannelTLS(contexts(tlsSettings(self.certs)))
        factory = Recorders()
        tls.client_endpoint(self.reactor, PeerAddress("127.0.0.1", 44053), 3.0).connect(factory)
        [(host, port, wrapping, timeout, _bind)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 44053, 3.0))
        protocol = wrapping.buildProtocol(IPv4Address("TCP", host, port))
        assert protocol is not None
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"plain")
        self.assertEqual(factory.built[0].data, b"plain")

    def test_clientNeedsAVmqsListener(self) -> None:
        """
        A node without a C{vmqs} listener has no certificate to dial a TLS
        peer with: the attempt fails, naming why.
        """
        tls = DataChannelTLS({})
        self.assertIsNone(tls.client)
        error = self.assertRaises(
            ValueError, tls.client_endpoint, self.reactor, PeerAddress("10.0.0.2", 44054, True), 1
        )
        self.assertIn("no listener.vmqs", str(error))

    def handshake(
        self, server: dict[str, Any], client: dict[str, Any], peer: str | None = None
    ) -> tuple[Recorder, Recorder]:
        """
        Serve with C{server}'s settings, dial C{peer} with C{client}'s,
        pump the TLS handshake in memory.  (Application bytes are flushed on the
        global reactor's next turn: the real-socket tests carry them.)
        """
        serverTLS = DataChannelTLS(contexts(server))
        spec = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44054, None, server)
        serverApps, clientApps = Recorders(), Recorders(peer)
        serverTLS.server_endpoint(self.reactor, spec).listen(serverApps)
        clientTLS = DataChannelTLS(contexts(client))
        # As a node does: its listener's endpoint is built before it dials.
        own = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44055, None, client)
        clientTLS.server_endpoint(self.reactor, own)
        address = PeerAddress("127.0.0.1", 44054, True)
        clientTLS.client_endpoint(self.reactor, address, 3.0).connect(clientApps)
        serverFactory = self.reactor.tcpServers[0][1]
        clientFactory = self.reactor.tcpClients[0][2]
        serverProtocol = serverFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        clientProtocol = clientFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 44054))
        pump = iosim.connect(
            serverProtocol,
            iosim.makeFakeServer(serverProtocol),
            clientProtocol,
            iosim.makeFakeClient(clientProtocol),
        )
        pump.flush()
        [clientApp], [serverApp] = clientApps.built, serverApps.built
        return serverApp, clientApp

    def test_trustedBothWays(self) -> None:
        """
        Both certificates verify against the CA: the handshake completes
        on both sides.
        """
        settings = tlsSettings(self.certs)
        serverApp, clientApp = self.handshake(settings, settings)
        self.assertTrue(clientApp.handshake)
        self.assertTrue(serverApp.handshake)
        self.assertIsNone(clientApp.lost)
        self.assertIsNone(serverApp.lost)

    def test_untrustedServer(self) -> None:
        """
        A peer whose certificate does not verify against our cafile is
        refused by our client side.
        """
        with capturedLogs() as events:
            serverApp, clientApp = self.handshake(
                tlsSettings(self.certs, trusted=False), tlsSettings(self.certs)
            )
        self.assertFalse(clientApp.handshake)
        self.assertFalse(serverApp.handshake)
        self.assertIsNotNone(clientApp.lost)
        # The refused server logs its failed handshake once.
        self.assertEqual(
            len([e for e in events if "TLS handshake failed" in e.get("log_format", "")]), 1
        )

    def test_untrustedClient(self) -> None:
        """
        With C{require_certificate}, a peer whose certificate does not
        verify against the listener's cafile is refused with one log line
        naming why.
        """
        with capturedLogs() as events:
            serverApp, clientApp = self.handshake(
                tlsSettings(self.certs), tlsSettings(self.certs, trusted=False)
            )
        self.assertFalse(serverApp.handshake)
        self.assertIsNotNone(serverApp.lost)
        self.assertIsNotNone(clientApp.lost)
        [refusal] = [e for e in events if "TLS handshake failed" in e.get("log_format", "")]
        self.assertEqual(refusal["listener"], "listener.vmqs.clustering")
        self.assertEqual(refusal["why"], "client certificate not issued by a trusted CA")


class CertificateNameTests(SynchronousTestCase):
    """L{certificate_matches_host}: which node name hosts a certificate names."""

    def setUp(self) -> None:
        self.ca = NodeCertificates(self.mktemp())

    def assertNames(self, cert: x509.Certificate, yes: list[str], no: list[str]) -> None:
        for host in yes:
            self.assertTrue(certificate_matches_host(cert, host), host)
        for host in no:
            self.assertFalse(certificate_matches_host(cert, host), host)

    def test_sanDNS(self) -> None:
        """A DNS entry names its host, ignoring case and a trailing dot."""
        cert = self.ca.certificate(dns=("node1.example.com", "node1"), cn="node2.example.com")
        self.assertNames(
            cert,
            ["node1.example.com", "NODE1.Example.COM", "node1.example.com.", "node1"],
            ["node2.example.com", "example.com", "node10.example.com", "127.0.0.1", ""],
        )

    def test_sanIP(self) -> None:
        """
        An IP entry names its address, however written: IPv6 with or
        without brackets, IPv4 as IPv4-mapped IPv6.
        """
        cert = self.ca.certificate(ips=("10.0.0.1", "fd00::1"))
        self.assertNames(
            cert,
            ["10.0.0.1", "fd00::1", "[fd00:0::1]", "::ffff:10.0.0.1"],
            ["10.0.0.2", "fd00::2", "localhost"],
        )

    def test_ipNotByDNSEntry(self) -> None:
        """An IP address is named by IP entries only, not by a DNS entry spelling it."""
        cert = self.ca.certificate(dns=("10.0.0.1",))
        self.assertNames(cert, [], ["10.0.0.1"])

    def test_cnWithoutSAN(self) -> None:
        """
        A certificate without DNS or IP entries is matched on its CN, a
        DNS name or an IP address.
        """
        self.assertNames(
            self.ca.certificate(cn="Node1.example.com"),
            ["node1.example.com"],
            ["node2.example.com", "10.0.0.1"],
        )
        self.assertNames(self.ca.certificate(cn="10.0.0.1"), ["10.0.0.1"], ["10.0.0.2"])
        self.assertNames(self.ca.certificate(cn="*.example.com"), ["n1.example.com"], [])

    def test_cnIgnoredWithSAN(self) -> None:
        """A certificate with DNS or IP entries is not matched on its CN."""
        self.assertNames(self.ca.certificate(dns=("other",), cn="node1"), ["other"], ["node1"])
        self.assertNames(
            self.ca.certificate(ips=("10.0.0.9",), cn="10.0.0.1"), ["10.0.0.9"], ["10.0.0.1"]
        )

    def test_wildcard(self) -> None:
        """
        C{*.rest} names exactly one more leftmost label; C{rest} needs two
        labels; no partial-label wildcards.
        """
        self.assertNames(
            self.ca.certificate(dns=("*.cluster.example.com",)),
            ["n1.cluster.example.com", "N2.Cluster.Example.com"],
            ["cluster.example.com", "a.n1.cluster.example.com", ".cluster.example.com"],
        )
        self.assertNames(self.ca.certificate(dns=("*.com",)), [], ["example.com"])
        self.assertNames(self.ca.certificate(dns=("n*.example.com",)), [], ["n1.example.com"])
        self.assertNames(self.ca.certificate(dns=("*.0.0.1",)), [], ["10.0.0.1"])

    def test_mismatch(self) -> None:
        """A certificate for another host does not name ours; what it names is shown."""
        cert = self.ca.certificate(dns=("node-e.example.com",), ips=("10.0.0.5",))
        self.assertNames(cert, [], ["node-b.example.com", "10.0.0.2"])
        self.assertEqual(describe_names(cert), "DNS:node-e.example.com, IP:10.0.0.5")
        self.assertEqual(describe_names(self.ca.certificate(cn="eve")), "CN eve")

    def test_checksNodeNames(self) -> None:
        """
        A C{vmqs} listener ties certificates to node names when it
        requires certificates, unless C{verify_nodename = off}.
        """
        self.assertTrue(checks_node_names({"require_certificate": True}))
        self.assertTrue(checks_node_names({"require_certificate": True, "verify_nodename": True}))
        self.assertFalse(checks_node_names({"require_certificate": True, "verify_nodename": False}))
        self.assertFalse(checks_node_names({"require_certificate": False}))
        self.assertFalse(checks_node_names({}))


class NodeNameHandshakeTests(SynchronousTestCase):
    """
    The node name checks on a TLS handshake pumped in memory: the server
    side's check for the hello, the client side's in the handshake.
    """

    def setUp(self) -> None:
        self.ca = NodeCertificates(self.mktemp())
        self.reactor = MemoryReactorClock()

    def handshake(
        self, server: dict[str, Any], client: dict[str, Any], peer: str
    ) -> tuple[Recorder, Recorder]:
        return EndpointFactoryTests.handshake(self, server, client, peer)  # type: ignore[arg-type]

    def test_inboundCheck(self) -> None:
        """
        The accepted protocol's C{certificate_check} finds nothing against
        a node its certificate names, and says why for one it does not.
        """
        server = self.ca.settings(dns=("node-a.example.com",))
        client = self.ca.settings(dns=("node-b.example.com",))
        serverApp, clientApp = self.handshake(server, client, "a@node-a.example.com")
        self.assertTrue(serverApp.handshake)
        self.assertTrue(clientApp.handshake)
        check = serverApp.certificate_check  # type: ignore[attr-defined]
        self.assertIsNone(check("b@node-b.example.com", serverApp.transport))
        self.assertEqual(
            check("c@node-c.example.com", serverApp.transport),
            "its certificate names DNS:node-b.example.com, not node-c.example.com"
            " (listener.vmqs.clustering.verify_nodename = off skips this check)",
        )

    def test_outboundMatch(self) -> None:
        """A peer whose certificate names the node dialled completes the handshake."""
        server = self.ca.settings(dns=("node-a.example.com",))
        client = self.ca.settings(dns=("node-b.example.com",))
        serverApp, clientApp = self.handshake(server, client, "a@node-a.example.com")
        self.assertTrue(clientApp.handshake)
        self.assertIsNone(clientApp.lost)
        self.assertIsNone(serverApp.lost)

    def test_outboundMismatch(self) -> None:
        """
        A peer whose certificate does not name the node dialled is dropped
        during the handshake, with an OpenSSL-shaped reason naming why.
        """
        server = self.ca.settings(dns=("node-e.example.com",))
        client = self.ca.settings(dns=("node-b.example.com",))
        serverApp, clientApp = self.handshake(server, client, "a@node-a.example.com")
        assert clientApp.lost is not None
        error = clientApp.lost.value
        self.assertIsInstance(error, SSL.Error)
        self.assertIn(
            "the peer's certificate names DNS:node-e.example.com, not node-a.example.com",
            describe_handshake_failure(clientApp.lost),
        )

    def test_outboundOptOut(self) -> None:
        """With C{verify_nodename = off} the client side checks the chain only."""
        server = self.ca.settings(dns=("node-e.example.com",))
        client = self.ca.settings(dns=("node-b.example.com",), verify_nodename=False)
        serverApp, clientApp = self.handshake(server, client, "a@node-a.example.com")
        self.assertTrue(clientApp.handshake)
        self.assertIsNone(clientApp.lost)


class HandshakeFirstTests(SynchronousTestCase):
    """
    Over TLS the connecting side says hello only once the handshake is done.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.link = OutgoingDataChannel(
            A, B, lambda node: None, self.reactor, DataChannelSettings(connect_timeout=4.0)
        )

    def test_helloAfterHandshake(self) -> None:
        """
        Nothing is written before C{handshakeCompleted}; the ack timeout
        starts only then.
        """
        protocol = OutgoingDataProtocol(self.link, tls=True)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(1.0)
        self.assertFalse(self.link.reachable)
        protocol.handshakeCompleted()
        self.assertEqual(transport.value(), encode_hello(A))
        self.reactor.advance(0.25)
        self.assertTrue(self.link.reachable)

    def test_plainSaysHelloAtOnce(self) -> None:
        """Without TLS the hello goes out on connect, as before."""
        protocol = OutgoingDataProtocol(self.link)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), encode_hello(A))

    def test_handshakeTimeout(self) -> None:
        """
        A peer that does not finish the handshake within C{connect_timeout}
        is dropped with one log line.
        """
        protocol = OutgoingDataProtocol(self.link, tls=True)
        transport = StringTransport()
        protocol.makeConnection(transport)
        with capturedLogs() as events:
            self.reactor.advance(4.0)
            protocol.connectionLost(Failure(Exception("aborted")))
        self.assertTrue(transport.disconnecting)
        [event] = [e for e in events if e.get("cluster_event") == "data_link_unreachable"]
        self.assertEqual(event["why"], "no TLS handshake within 4 s")
        self.assertEqual(self.reactor.getDelayedCalls(), [])
