# mypy: disable-error-code="no-untyped-call"
"""
L{vernemq.cluster.datatls}: the data channel's TLS endpoint factories, on
a memory reactor (a TLS handshake pumped in memory included), and the
connecting side's wait for the TLS handshake.
"""

from __future__ import annotations

from typing import Any

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
from vernemq.cluster.datatls import DataChannelTLS, TLSServerEndpoint
from vernemq.config.loader import ListenerSpec
from vernemq.listeners.tls import ClientTLS, ServerTLS, TLSHandshakeGuardFactory

A = "a@127.0.0.1"
B = "b@127.0.0.1"


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
    """Builds L{Recorder}s and keeps them."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []

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
        self.assertIs(guard.wrappedFactory, factory)

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
        self, server: dict[str, Any], client: dict[str, Any]
    ) -> tuple[Recorder, Recorder]:
        """
        Serve with C{server}'s settings, dial with C{client}'s, pump the
        TLS handshake in memory.  (Application bytes are flushed on the
        global reactor's next turn: the real-socket tests carry them.)
        """
        serverTLS = DataChannelTLS(contexts(server))
        spec = ListenerSpec("vmqs", "clustering", "127.0.0.1", 44054, None, server)
        serverApps, clientApps = Recorders(), Recorders()
        serverTLS.server_endpoint(self.reactor, spec).listen(serverApps)
        clientTLS = DataChannelTLS(contexts(client))
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
