# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.cluster.datachannel}: handshake, membership and name
checks, batching, the bounded buffer, reconnects and the inbound frame cap,
all in memory with a L{MemoryReactorClock} and L{iosim}.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vernemq.cluster.datachannel import (
    DataChannelService,
    DataChannelSettings,
    IDataChannel,
    IDataItemHandler,
    OutgoingDataChannel,
    PeerAddress,
    RoutedMessage,
    address_matches_name,
    cluster_listener_specs,
)
from vernemq.cluster.dataframes import (
    CONNECT_ACK,
    SEND,
    Batch,
    Hello,
    InboundDecoder,
    encode_frame,
    encode_hello,
    encode_item,
)
from vernemq.config.loader import ListenerSpec, config_from_text
from vernemq.dist.etf import Atom, decode, encode

A = "a@127.0.0.1"
B = "b@127.0.0.2"
ADDRESSES = {A: PeerAddress("127.0.0.1", 44053), B: PeerAddress("127.0.0.2", 44054)}


@implementer(IDataItemHandler)
class Recorder:
    """Records the items a node receives."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.fail_on: Any = None

    def on_item(self, from_node: str, item: Any) -> None:
        if item[1] == self.fail_on:
            raise RuntimeError("handler bug")
        self.items.append((from_node, item))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects to a listener of the fake network with iosim."""

    def __init__(self, net: FakeNetwork, source: str, address: PeerAddress) -> None:
        self.net = net
        self.source = source
        self.address = address

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        net = self.net
        net.attempts.append((self.source, self.address, net.reactor.seconds()))
        server_factory = net.listener(self.address)
        if server_factory is None or self.address in net.down:
            return fail(ConnectionRefusedError())
        client_addr = IPv4Address("TCP", self.source, 40000 + len(net.attempts))
        server_addr = IPv4Address("TCP", self.address.host, self.address.port)
        server = server_factory.buildProtocol(client_addr)
        client = protocolFactory.buildProtocol(server_addr)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, True, server_addr, client_addr),
            client,
            iosim.FakeTransport(client, False, client_addr, server_addr),
            greet=False,
        )
        net.pumps.append(pump)
        return succeed(client)


class FakeNetwork:
    """Nodes on one memory reactor, connected through iosim."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.attempts: list[tuple[str, PeerAddress, float]] = []
        self.pumps: list[iosim.IOPump] = []
        self.down: set[PeerAddress] = set()

    def listener(self, address: PeerAddress) -> Any:
        for port, factory, _backlog, interface in self.reactor.tcpServers:
            if (interface, port) == (address.host, address.port):
                return factory
        return None

    def endpoint_factory(self, source: str) -> Any:
        def make(reactor: Any, address: PeerAddress, timeout: float) -> FakeEndpoint:
            return FakeEndpoint(self, source, address)

        return make

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def node(
        self,
        name: str,
        members: set[str],
        settings: DataChannelSettings | None = None,
    ) -> tuple[DataChannelService, Recorder]:
        handler = Recorder()
        address = ADDRESSES[name]
        spec = ListenerSpec("vmq", "clustering", address.host, address.port, None, {})
        service = DataChannelService(
            name,
            handler,
            members.__contains__,
            lambda node: succeed(tuple(ADDRESSES[node][:2])),
            self.reactor,
            listeners=[spec],
            settings=settings,
            client_endpoint_factory=self.endpoint_factory(address.host),
        )
        return service, handler


def frames_of(data: bytes) -> list[Any]:
    """Decode what a link wrote: its hello, then its batches."""
    return InboundDecoder().events(data)


class InterfaceTests(SynchronousTestCase):
    """
    The objects provide their interfaces.
    """

    def test_verify(self) -> None:
        """
        An outgoing link provides L{IDataChannel}; a handler
        L{IDataItemHandler}.
        """
        net = FakeNetwork()
        service, handler = net.node(A, {B})
        self.assertTrue(verifyObject(IDataChannel, service.add_peer(B)))
        self.assertTrue(verifyObject(IDataItemHandler, handler))


class TwoNodeTests(SynchronousTestCase):
    """
    Two services on a fake network.
    """

    def setUp(self) -> None:
        self.net = FakeNetwork()
        self.members = {A, B}
        self.a, self.a_items = self.net.node(A, self.members)
        self.b, self.b_items = self.net.node(B, self.members)
        self.a.startService()
        self.b.startService()
        self.addCleanup(self.a.stopService)
        self.addCleanup(self.b.stopService)

    def connect(self) -> OutgoingDataChannel:
        link = self.a.add_peer(B)
        self.net.flush()
        return link

    def test_handshake(self) -> None:
        """
        The connecting node says hello, the member is accepted and acks,
        and the link is up without waiting for the ack timeout.
        """
        with capturedLogs() as events:
            link = self.connect()
        self.assertTrue(link.reachable)
        self.assertEqual(self.b.inbound_nodes(), [A])
        self.assertEqual(
            [e.get("cluster_event") for e in events if "cluster_event" in e],
            ["data_link_accepted", "data_link_up"],
        )

    def test_items(self) -> None:
        """
        Items sent arrive at the peer's handler, in order, with the sender's
        name; the link is one-way (B has no link to A).
        """
        link = self.connect()
        msg = RoutedMessage("t/1", b"x" * 64, qos=1)
        for i in range(5):
            self.assertTrue(link.send(("enq", i)))
        self.assertTrue(link.send(msg.to_item()))
        self.net.reactor.advance(0)
        self.net.flush()
        self.assertEqual([n for n, _ in self.b_items.items], [A] * 6)
        self.assertEqual([item[1] for _, item in self.b_items.items[:5]], list(range(5)))
        self.assertEqual(RoutedMessage.from_term(self.b_items.items[5][1][1]), msg)
        self.assertEqual(self.a_items.items, [])
        self.assertEqual(self.a.peers(), [B])
        self.assertEqual(self.b.peers(), [])

    def test_counters(self) -> None:
        """
        Bytes sent by A are bytes received by B (hello and frames).
        """
        link = self.connect()
        for i in range(10):
            link.send(("msg", i))
        self.net.reactor.advance(0)
        self.net.flush()
        sent = self.a.counters()["cluster_bytes_sent"]
        self.assertEqual(sent, link.counters.bytes_sent)
        self.assertEqual(self.b.counters()["cluster_bytes_received"], sent)
        self.assertEqual(self.b.totals().items_received, 10)
        self.assertEqual(self.a.totals().items_sent, 10)
        self.assertEqual(self.a.counters()["cluster_bytes_dropped"], 0)

    def test_nonMember(self) -> None:
        """
        A node that is not a member is closed with one log line; the
        connecting side logs once, however often it retries (every second).
        """
        self.members.discard(A)
        with capturedLogs() as events:
            link = self.connect()
            for _ in range(5):
                self.net.reactor.advance(1.0)
                self.net.flush()
        self.assertFalse(link.reachable)
        refused = [e for e in events if e.get("cluster_event") == "data_link_refused"]
        self.assertEqual(len(refused), 6)
        self.assertEqual(refused[0]["reason"], "remote_node_not_available")
        self.assertEqual(refused[0]["node"], A)
        unreachable = [e for e in events if e.get("cluster_event") == "data_link_unreachable"]
        self.assertEqual(len(unreachable), 1)
        retries = [e for e in events if "Scheduling retry" in e.get("log_format", "")]
        self.assertEqual(retries, [])
        self.assertEqual(self.b.totals().links_refused, 6)
        self.assertEqual(self.b_items.items, [])
        self.assertEqual([t for _, _, t in self.net.attempts], [0, 1, 2, 3, 4, 5])

    def test_reconnect(self) -> None:
        """
        A broken link is retried every second, not with a growing backoff,
        and comes back up with its pending items in order.
        """
        link = self.connect()
        link.send(("msg", 1))
        self.net.reactor.advance(0)
        self.net.flush()
        self.net.down.add(ADDRESSES[B])
        self.net.pumps[-1].clientIO.loseConnection()
        self.net.flush()
        self.assertFalse(link.reachable)
        for i in range(2, 5):
            link.send(("msg", i))
        for _ in range(4):
            self.net.reactor.advance(1.0)
        self.assertEqual([t for _, _, t in self.net.attempts], [0, 1, 2, 3, 4])
        self.net.down.clear()
        self.net.reactor.advance(1.0)
        self.net.flush()
        self.assertTrue(link.reachable)
        link.send(("msg", 5))
        self.net.reactor.advance(0)
        self.net.flush()
        self.assertEqual([item[1] for _, item in self.b_items.items], [1, 2, 3, 4, 5])

    def test_batchBySize(self) -> None:
        """
        Pending bytes reaching the flush threshold are written at once, as
        one frame; the rest waits for the reactor to be idle.
        """
        self.a.settings = DataChannelSettings(flush_threshold=100)
        link = self.connect()
        size = len(encode_item("msg", b"x" * 13))  # 26 bytes: 4 reach 100
        for _ in range(5):
            link.send(("msg", b"x" * 13))
        self.net.flush()
        self.assertEqual(len(self.b_items.items), 4)
        self.assertEqual(link.pending_bytes, size)
        self.net.reactor.advance(0)
        self.net.flush()
        self.assertEqual(len(self.b_items.items), 5)
        self.assertEqual(self.b.totals().bytes_received, len(encode_hello(A)) + 5 * size + 2 * 12)

    def test_batchWhenIdle(self) -> None:
        """
        Small items are written together, as one frame, when the reactor is
        next idle (or after C{flush_delay}).
        """
        self.a.settings = DataChannelSettings(flush_delay=0.5)
        link = self.connect()
        before = len(self.b_items.items)
        for i in range(3):
            link.send(("msg", i))
        self.net.reactor.advance(0.4)
        self.net.flush()
        self.assertEqual(len(self.b_items.items), before)
        self.assertEqual(link.pending_bytes, 3 * len(encode_item("msg", 0)))
        self.net.reactor.advance(0.1)
        self.net.flush()
        self.assertEqual([item[1] for _, item in self.b_items.items], [0, 1, 2])
        size = len(encode_item("msg", 0))
        self.assertEqual(self.b.totals().bytes_received, len(encode_hello(A)) + 12 + 3 * size)

    def test_boundedBuffer(self) -> None:
        """
        While the peer is unreachable, items are held up to
        C{buffer_size} bytes; beyond, they are dropped and counted; the held
        ones arrive in order once the link is up.
        """
        self.a.settings = DataChannelSettings(buffer_size=50)
        self.net.down.add(ADDRESSES[B])
        link = self.a.add_peer(B)
        size = len(encode_item("msg", 1))  # 10 bytes: 5 fit in 50
        results = [link.send(("msg", i)) for i in range(8)]
        self.assertEqual(results, [True] * 5 + [False] * 3)
        self.assertEqual(link.pending_bytes, 5 * size)
        self.assertEqual(link.counters.items_dropped, 3)
        self.assertEqual(self.a.counters()["cluster_bytes_dropped"], 3 * size)
        self.net.down.clear()
        self.net.reactor.advance(1.0)
        self.net.flush()
        self.assertTrue(link.reachable)
        self.assertEqual([item[1] for _, item in self.b_items.items], [0, 1, 2, 3, 4])

    def test_oversizeItem(self) -> None:
        """
        An item larger than a frame may be is dropped at once, even while
        the peer is reachable.
        """
        self.a.settings = DataChannelSettings(max_frame=20)
        link = self.connect()
        self.assertFalse(link.send(("msg", b"x" * 20)))
        self.assertEqual(link.counters.items_dropped, 1)

    def test_paused(self) -> None:
        """
        While the transport is full (paused), items wait, bounded like an
        unreachable peer; resuming writes them.
        """
        self.a.settings = DataChannelSettings(buffer_size=20)
        link = self.connect()
        self.net.pumps[-1].clientIO.producer.pauseProducing()
        self.assertEqual([link.send(("msg", i)) for i in range(3)], [True, True, False])
        self.net.reactor.advance(0)
        self.net.flush()
        self.assertEqual(self.b_items.items, [])
        self.net.pumps[-1].clientIO.producer.resumeProducing()
        self.net.flush()
        self.assertEqual([item[1] for _, item in self.b_items.items], [0, 1])

    def test_removePeer(self) -> None:
        """
        Removing a peer stops its link, drops (and counts) what it held and
        closes its inbound link on the other side.
        """
        self.net.down.add(ADDRESSES[B])
        link = self.a.add_peer(B)
        link.send(("msg", 1))
        self.a.remove_peer(B)
        self.assertIsNone(self.a.channel(B))
        self.assertFalse(link.running)
        self.assertEqual(self.a.totals().items_dropped, 1)
        self.assertFalse(self.a.send(B, ("msg", 2)))
        self.net.down.clear()
        self.connect_b_to_a()
        self.assertEqual(self.a.inbound_nodes(), [B])
        self.a.remove_peer(B)
        self.net.flush()
        self.assertEqual(self.a.inbound_nodes(), [])

    def connect_b_to_a(self) -> OutgoingDataChannel:
        link = self.b.add_peer(A)
        self.net.flush()
        return link

    def test_handlerError(self) -> None:
        """
        A handler that raises is logged once per link and counted; the
        items after it are still delivered.
        """
        self.b_items.fail_on = 1
        link = self.connect()
        with capturedLogs() as events:
            for i in range(4):
                link.send(("msg", i))
            link.send(("msg", 1))
            self.net.reactor.advance(0)
            self.net.flush()
        self.assertEqual([item[1] for _, item in self.b_items.items], [0, 2, 3])
        self.assertEqual(self.b.totals().handler_errors, 2)
        self.assertEqual(len([e for e in events if "log_failure" in e]), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_stopFlushes(self) -> None:
        """
        Stopping the service writes what is pending first.
        """
        link = self.connect()
        link.send(("msg", 7))
        self.a.stopService()
        self.net.flush()
        self.assertEqual([item[1] for _, item in self.b_items.items], [7])

    def test_connectParams(self) -> None:
        """
        L{DataChannelService.connect_params} answers the bound address.
        """
        self.assertEqual(self.b.connect_params(), PeerAddress("127.0.0.2", 44054, False))


class InboundTests(SynchronousTestCase):
    """
    The accepting side against hand-written bytes.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.handler = Recorder()
        self.members = {A, B, "c@node.example", "d@10.0.0.1"}
        self.service = DataChannelService(
            B,
            self.handler,
            self.members.__contains__,
            lambda node: succeed(("127.0.0.1", 1)),
            self.reactor,
            listeners=[ListenerSpec("vmq", "clustering", "127.0.0.2", 44054, None, {})],
            settings=DataChannelSettings(max_frame=100),
        )
        self.service.startService()
        self.factory: Any = self.reactor.tcpServers[0][1]

    def accept(self, peer_host: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer_host, 5555))
        protocol.makeConnection(transport)
        return protocol, transport

    def refused(self, data: bytes, peer_host: str = "127.0.0.1") -> tuple[str, StringTransport]:
        protocol, transport = self.accept(peer_host)
        with capturedLogs() as events:
            protocol.dataReceived(data)
            protocol.dataReceived(b"more")
        refusals = [e for e in events if e.get("cluster_event") == "data_link_refused"]
        self.assertEqual(len(refusals), 1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.handler.items, [])
        return refusals[0]["reason"], transport

    def test_accept(self) -> None:
        """
        A member's hello is acked; its items reach the handler.
        """
        protocol, transport = self.accept()
        protocol.dataReceived(encode_hello(A) + encode_frame([encode_item("msg", 1)]))
        self.assertEqual(transport.value(), CONNECT_ACK)
        self.assertEqual(self.handler.items, [(A, ("msg", 1))])
        self.assertEqual(self.service.inbound_nodes(), [A])

    def test_nonMember(self) -> None:
        """
        A non-member is closed without an ack, its frames unread.
        """
        reason, transport = self.refused(
            encode_hello("x@127.0.0.1") + encode_frame([encode_item("msg", 1)])
        )
        self.assertEqual(reason, "remote_node_not_available")
        self.assertEqual(transport.value(), b"")

    def test_lyingAddress(self) -> None:
        """
        A peer claiming a member whose name holds an IP address must come
        from that address (or loopback).
        """
        reason, _ = self.refused(encode_hello("d@10.0.0.1"), peer_host="10.0.0.9")
        self.assertEqual(reason, "peer_address_mismatch")
        protocol, transport = self.accept("10.0.0.1")
        protocol.dataReceived(encode_hello("d@10.0.0.1"))
        self.assertEqual(transport.value(), CONNECT_ACK)

    def test_hostnameTrusted(self) -> None:
        """
        A hostname cannot be checked without DNS: it is taken on trust.
        """
        protocol, transport = self.accept("10.9.9.9")
        protocol.dataReceived(encode_hello("c@node.example"))
        self.assertEqual(transport.value(), CONNECT_ACK)

    def test_ourOwnName(self) -> None:
        """
        A peer claiming to be this node is refused.
        """
        reason, _ = self.refused(encode_hello(B))
        self.assertEqual(reason, "claims_our_own_name")

    def test_notANodeName(self) -> None:
        """
        A name without C{@host} is refused.
        """
        self.members.add("plain")
        reason, _ = self.refused(encode_hello("plain"))
        self.assertEqual(reason, "invalid_node_name")

    def test_junk(self) -> None:
        """
        Junk instead of a hello closes the connection with one line.
        """
        reason, _ = self.refused(b"GET / HTTP/1.1\r\n")
        self.assertEqual(reason, "invalid_cluster_frame")
        self.assertEqual(self.service.totals().links_broken, 1)

    def test_frameCap(self) -> None:
        """
        A frame over C{incoming_clustering_buffer_size} closes the link as
        soon as its header arrives.
        """
        reason, _ = self.refused(encode_hello(A) + SEND + struct.pack(">I", 101))
        self.assertEqual(reason, "cluster_frame_too_large")

    def test_badItem(self) -> None:
        """
        A frame whose items are broken closes the link.
        """
        body = b"msg" + struct.pack(">I", 2) + b"\x83\xff"
        reason, _ = self.refused(encode_hello(A) + SEND + struct.pack(">I", len(body)) + body)
        self.assertEqual(reason, "invalid_cluster_item")

    def test_unknownTag(self) -> None:
        """
        Unknown tags are skipped and counted.
        """
        protocol, _ = self.accept()
        body = b"zzz" + struct.pack(">I", 1) + b"?" + encode_item("msg", 2)
        protocol.dataReceived(encode_hello(A) + SEND + struct.pack(">I", len(body)) + body)
        self.assertEqual(self.handler.items, [(A, ("msg", 2))])
        self.assertEqual(self.service.totals().items_unknown, 1)

    def test_secondLinkReplaces(self) -> None:
        """
        A second link claiming the same node replaces the first (a peer that
        reconnected over a half-open connection), so each ordered pair has
        one link; the old one going away later does not unregister the new.
        """
        first, first_transport = self.accept()
        first.dataReceived(encode_hello(A))
        second, second_transport = self.accept()
        second.dataReceived(encode_hello(A))
        self.assertTrue(first_transport.disconnecting)
        self.assertFalse(second_transport.disconnecting)
        first.connectionLost(None)
        self.assertEqual(self.service.inbound_nodes(), [A])
        second.dataReceived(encode_frame([encode_item("msg", 3)]))
        first.dataReceived(encode_frame([encode_item("msg", 4)]))
        self.assertEqual(self.handler.items, [(A, ("msg", 3))])

    def test_stopClosesConnections(self) -> None:
        """
        Stopping the service closes every inbound connection, greeted or
        not, and waits for them to go.
        """
        greeted, greeted_transport = self.accept()
        greeted.dataReceived(encode_hello(A))
        silent, silent_transport = self.accept()
        d = self.service.stopService()
        self.assertTrue(greeted_transport.disconnecting)
        self.assertTrue(silent_transport.disconnecting)
        self.assertNoResult(d)
        greeted.connectionLost(None)
        silent.connectionLost(None)
        self.successResultOf(d)

    def test_handshakeTimeout(self) -> None:
        """
        A connection that says nothing for C{handshake_timeout} is closed.
        """
        protocol, transport = self.accept()
        protocol.dataReceived(b"vmq-con")
        self.reactor.advance(9.9)
        self.assertFalse(transport.disconnecting)
        with capturedLogs() as events:
            self.reactor.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(events[-1]["reason"], "handshake_timeout")

    def test_lostBeforeHello(self) -> None:
        """
        A connection lost before its hello leaves nothing behind.
        """
        protocol, transport = self.accept()
        protocol.connectionLost(None)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.service.inbound_nodes(), [])


@implementer(IStreamClientEndpoint)
class HeldEndpoint:
    """An endpoint whose connection attempts the test completes by hand."""

    def __init__(self, factories: list[Any], connects: list[Deferred[Any]]) -> None:
        self.factories = factories
        self.connects = connects

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        self.factories.append(protocolFactory)
        d: Deferred[Any] = Deferred()
        self.connects.append(d)
        return d


class OutgoingTests(SynchronousTestCase):
    """
    The connecting side against a hand-driven transport.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.connects: list[Deferred[Any]] = []
        self.factories: list[Any] = []

        self.link = OutgoingDataChannel(
            A,
            B,
            lambda node: ("127.0.0.2", 44054),
            self.reactor,
            DataChannelSettings(),
            lambda reactor, address, timeout: HeldEndpoint(self.factories, self.connects),
        )
        self.link.startService()
        self.addCleanup(self.link.stopService)

    def open(self) -> tuple[Any, StringTransport]:
        protocol = self.factories[-1].buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connects[-1].callback(protocol)
        return protocol, transport

    def test_helloThenWait(self) -> None:
        """
        The link says hello and holds items until the ack.
        """
        protocol, transport = self.open()
        self.link.send(("msg", 1))
        self.reactor.advance(0)
        self.assertEqual(frames_of(transport.value()), [Hello(Atom(A))])
        protocol.dataReceived(CONNECT_ACK[:5])
        self.assertFalse(self.link.reachable)
        protocol.dataReceived(CONNECT_ACK[5:])
        self.assertTrue(self.link.reachable)
        events = frames_of(transport.value())
        self.assertEqual(events[1], Batch([("msg", 1)], [], 22))

    def test_legacyPeer(self) -> None:
        """
        A peer that never acks (VerneMQ before 2.2) counts as connected
        after C{ack_timeout}.
        """
        self.open()
        self.reactor.advance(0.24)
        self.assertFalse(self.link.reachable)
        self.reactor.advance(0.01)
        self.assertTrue(self.link.reachable)

    def test_junkFromPeer(self) -> None:
        """
        Anything but the ack from the peer breaks the link.
        """
        protocol, transport = self.open()
        with capturedLogs() as events:
            protocol.dataReceived(CONNECT_ACK + b"x")
        self.assertTrue(transport.disconnected)
        self.assertEqual(events[-1]["cluster_event"], "data_link_broken")

    def test_connectTimeout(self) -> None:
        """
        An attempt that neither connects nor fails within
        C{outgoing_connect_timeout} is abandoned, then retried a second
        later.
        """
        self.assertEqual(len(self.connects), 1)
        self.reactor.advance(10.0)
        self.assertEqual(len(self.connects), 1)
        self.reactor.advance(1.0)
        self.assertEqual(len(self.connects), 2)


class NoListenerTests(SynchronousTestCase):
    """
    A peer without a data listener.
    """

    def test_unresolvable(self) -> None:
        """
        A resolver answering L{None} (the peer has no listener) fails the
        attempt with a clear log line, and the link keeps retrying.
        """
        reactor = MemoryReactorClock()
        link = OutgoingDataChannel(A, B, lambda node: None, reactor)
        with capturedLogs() as events:
            link.startService()
            reactor.advance(1.0)
        link.stopService()
        (event,) = [e for e in events if e.get("cluster_event") == "data_link_unreachable"]
        self.assertIn("has no data channel listener", event["why"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 0)


class ConfigTests(SynchronousTestCase):
    """
    Building the service from C{vernemq.conf}.
    """

    def test_fromConfig(self) -> None:
        """
        The node name, the C{listener.vmq.*} listeners and the clustering
        settings come from the file.
        """
        config = config_from_text(
            "nodename = n@127.0.0.1\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.vmq.clustering = 127.0.0.1:44053\n"
            "outgoing_clustering_buffer_size = 1000\n"
            "incoming_clustering_buffer_size = 2000\n"
            "outgoing_clustering_flush_threshold = 300\n"
            "outgoing_cluster_handshake_ack_timeout = 500\n"
        )
        self.assertEqual(
            [s.key for s in cluster_listener_specs(config)], ["listener.vmq.clustering"]
        )
        reactor = MemoryReactorClock()
        service = DataChannelService.from_config(
            config, Recorder(), lambda node: True, lambda node: None, reactor
        )
        self.assertEqual(service.node_name, "n@127.0.0.1")
        self.assertEqual(
            service.settings,
            DataChannelSettings(
                buffer_size=1000, flush_threshold=300, max_frame=2000, ack_timeout=0.5
            ),
        )
        service.startService()
        self.assertEqual([(p, i) for p, _f, _b, i in reactor.tcpServers], [(44053, "127.0.0.1")])
        service.stopService()

    def test_tlsNeedsFactory(self) -> None:
        """
        A C{vmqs} listener needs a TLS endpoint factory; one can be passed.
        """
        config = config_from_text("listener.vmqs.clustering = 127.0.0.1:44054\n")
        args = (config, Recorder(), lambda node: True, lambda node: None, MemoryReactorClock())
        self.assertRaises(ValueError, DataChannelService.from_config, *args)
        seen: list[str] = []

        def tls_factory(reactor: Any, spec: ListenerSpec) -> Any:
            seen.append(spec.kind)
            return object()

        DataChannelService.from_config(*args, server_endpoint_factory=tls_factory)
        self.assertEqual(seen, ["vmqs"])


class PeerCheckTests(SynchronousTestCase):
    """
    L{address_matches_name}.
    """

    def test_cases(self) -> None:
        """
        IP names must match the source (IPv4-mapped IPv6 included) unless it
        is loopback; hostnames and non-IP transports pass.
        """

        def check(node: str, host: str) -> bool:
            return address_matches_name(node, IPv4Address("TCP", host, 1))

        self.assertTrue(check("a@10.0.0.1", "10.0.0.1"))
        self.assertFalse(check("a@10.0.0.1", "10.0.0.2"))
        self.assertTrue(check("a@10.0.0.1", "::ffff:10.0.0.1"))
        self.assertTrue(check("a@10.0.0.1", "127.0.0.1"))
        self.assertTrue(check("a@::1", "::1"))
        self.assertTrue(check("a@host.example", "10.0.0.2"))
        self.assertTrue(address_matches_name("a@10.0.0.1", object()))  # type: ignore[arg-type]


class RoutedMessageMountpointTests(SynchronousTestCase):
    """A C{#vmq_msg{}} mountpoint is an Erlang string of code points."""

    def roundTrip(self, mountpoint: str) -> RoutedMessage:
        msg = RoutedMessage("t/1", b"p", 1, False, mountpoint)
        return RoutedMessage.from_term(decode(encode(msg.to_term())))

    def test_nonAscii(self) -> None:
        """Latin-1, BMP and astral mountpoints cross the wire unchanged."""
        for mountpoint in ("", "plain", "caf\u00e9", "\u65e5\u672c/\u30c6", "x\U0001f600"):
            self.assertEqual(self.roundTrip(mountpoint).mountpoint, mountpoint)

    def test_codePoints(self) -> None:
        """On the wire it is the list of code points, as Erlang's C{"caf\u00e9"}."""
        term = RoutedMessage("t", b"p", 0, False, "caf\u00e9").to_term()
        self.assertEqual(decode(encode(term))[7], [99, 97, 102, 0xE9])

    def test_binaryAccepted(self) -> None:
        """A UTF-8 binary mountpoint is read as well."""
        term = list(RoutedMessage("t", b"p").to_term())
        term[7] = "caf\u00e9".encode()
        self.assertEqual(RoutedMessage.from_term(tuple(term)).mountpoint, "caf\u00e9")

    def test_notAString(self) -> None:
        """A mountpoint that is no string is a bad record."""
        term = list(RoutedMessage("t", b"p").to_term())
        for bad in ([0x110000], [-1], 7):
            term[7] = bad
            self.assertRaises(ValueError, RoutedMessage.from_term, tuple(term))
