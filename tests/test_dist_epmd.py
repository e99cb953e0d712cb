"""
L{vernemq.dist.epmd}: the codec, the registry, the server and the client.

The server tests re-implement the behaviours of Erlang's C{epmd_SUITE}
(shared notes, C{spec/epmd-and-erlang-distribution.md} section 4) on a
L{StringTransport} and a L{Clock}; every byte sequence is checked against
what OTP 25's epmd writes.
"""

from __future__ import annotations

import struct

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.epmdhelpers import REMOTE, ServerConnection, alive2, completeClient, framed
from vernemq.dist.epmd import codec
from vernemq.dist.epmd.client import (
    EpmdClient,
    EpmdRegistrationError,
    EpmdTimeout,
    NodeRegistration,
)
from vernemq.dist.epmd.codec import EpmdProtocolError, NodeEntry, RequestReader
from vernemq.dist.epmd.registry import (
    IRegistrationOwner,
    NoOwner,
    RegistrationRefused,
    Registry,
    bumpCreation,
)
from vernemq.dist.epmd.server import EpmdServerFactory, EpmdServerProtocol, isLocalPeer

#: The epoch second the test clocks start at (the creation base).
T0 = 1795628449


def names(factory: EpmdServerFactory) -> list[tuple[str, int]]:
    """What a NAMES request answers, parsed."""
    reply = ServerConnection(factory).send(codec.encodeNamesRequest())
    port, nodes = codec.parseNamesReply(reply)
    assert port == factory.port
    return nodes


class ServerTestCase(SynchronousTestCase):
    """An epmd as the SUITE runs it: C{-packet_timeout 1 -port 2243}."""

    relaxed = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.killed: list[bool] = []
        self.factory = EpmdServerFactory(
            self.clock,
            2243,
            relaxed=self.relaxed,
            packetTimeout=1,
            onKill=lambda: self.killed.append(True),
        )

    def connect(self, peer: str = "127.0.0.1") -> ServerConnection:
        return ServerConnection(self.factory, peer)

    def register(self, name: bytes, **kwargs: object) -> tuple[ServerConnection, bytes]:
        conn = self.connect()
        reply = conn.send(alive2(name, **kwargs))  # type: ignore[arg-type]
        return conn, reply


class CodecTests(SynchronousTestCase):
    """The sans-IO codec: frames, requests and replies, byte for byte."""

    def test_alive2RequestCapture(self) -> None:
        """Our ALIVE2 request equals the capture of C{erl -sname a}."""
        self.assertEqual(
            bytes.fromhex("000e7880b34d000006000500016100 00".replace(" ", "")),
            alive2(b"a", port=32947),
        )

    def test_parseAlive2RoundTrip(self) -> None:
        """Parsing an encoded ALIVE2 gives back the entry, extra included."""
        entry = NodeEntry("😈".encode(), 1234, 72, 0, 6, 5, b"ABC\0\0")
        payload = codec.encodeAlive2Request(entry)[2:]
        self.assertEqual(codec.Alive2Request(entry), codec.parseRequest(payload))

    def test_parseSimpleRequests(self) -> None:
        """NAMES, DUMP, KILL ignore trailing bytes as epmd does; STOP keeps its name."""
        self.assertEqual(codec.NamesRequest(), codec.parseRequest(b"n"))
        self.assertEqual(codec.NamesRequest(), codec.parseRequest(b"nX"))
        self.assertEqual(codec.DumpRequest(), codec.parseRequest(b"d"))
        self.assertEqual(codec.KillRequest(), codec.parseRequest(b"k"))
        self.assertEqual(codec.StopRequest(b"foo"), codec.parseRequest(b"sfoo\0"))
        self.assertEqual(codec.PortPlease2Request(b"foo"), codec.parseRequest(b"zfoo\0"))

    def test_garbageCodes(self) -> None:
        """Unknown codes, and the dead R3 codes, are garbage."""
        for payload in (b"a", b"p", b"Y", b"\xff", b"?abc"):
            self.assertRaises(EpmdProtocolError, codec.parseRequest, payload)

    def test_portPleaseNames(self) -> None:
        """Empty, NUL inside, bad UTF-8 or over-long names are refused."""
        for payload in (b"z", b"z\0", b"zfo\0o", b"z\xff\xfe", b"z" + b"x" * 256):
            self.assertRaises(EpmdProtocolError, codec.parseRequest, payload)
        self.assertEqual(
            codec.PortPlease2Request(b"x" * 255), codec.parseRequest(b"z" + b"x" * 255)
        )

    def test_readerLimits(self) -> None:
        """Zero length, 3058+ bytes, and extra bytes are errors; 3057 is fine."""
        self.assertRaises(EpmdProtocolError, RequestReader().feed, b"\x00\x00")
        self.assertRaises(EpmdProtocolError, RequestReader().feed, struct.pack(">H", 3058))
        self.assertRaises(EpmdProtocolError, RequestReader().feed, struct.pack(">H", 63000))
        self.assertRaises(EpmdProtocolError, RequestReader().feed, b"\x00\x01nXX")
        reader = RequestReader()
        self.assertIsNone(reader.feed(struct.pack(">H", 3057)))
        self.assertEqual(b"n" * 3057, reader.feed(b"n" * 3057))

    def test_readerEveryChunking(self) -> None:
        """A request fed in pieces of any size frames the same payload."""
        request = alive2(b"foo", extra=b"xyz")
        for size in range(1, len(request) + 1):
            reader = RequestReader()
            results = [reader.feed(request[i : i + size]) for i in range(0, len(request), size)]
            self.assertEqual([request[2:]], [r for r in results if r is not None])

    def test_aliveReplies(self) -> None:
        """v6 replies are 6 bytes with a u32 creation, v5 4 bytes with u16."""
        self.assertEqual(bytes.fromhex("76006b071d8a"), codec.encodeAlive2Reply(0, 1795628426, 6))
        self.assertEqual(bytes.fromhex("79000003"), codec.encodeAlive2Reply(0, 3, 5))
        self.assertEqual(bytes.fromhex("760100000063"), codec.encodeAlive2Error(6))
        self.assertEqual(bytes.fromhex("79010063"), codec.encodeAlive2Error(5))
        self.assertEqual((0, 1795628426), codec.parseAlive2Reply(bytes.fromhex("76006b071d8a")))
        self.assertEqual((0, 3), codec.parseAlive2Reply(bytes.fromhex("79000003")))
        self.assertIsNone(codec.parseAlive2Reply(bytes.fromhex("76006b07")))
        self.assertRaises(EpmdProtocolError, codec.parseAlive2Reply, b"w")

    def test_port2Reply(self) -> None:
        """PORT2_RESP matches the capture; unknown is C{w 1}; parsing round-trips."""
        entry = NodeEntry(b"foo", 1234)
        data = codec.encodePort2Reply(entry)
        self.assertEqual(bytes.fromhex("770004d24d00000600050003666f6f0000"), data)
        self.assertEqual(entry, codec.parsePort2Reply(data))
        self.assertEqual(b"w\x01", codec.encodePort2Reply(None))
        self.assertIsNone(codec.parsePort2Reply(b"w\x01"))
        self.assertRaises(EpmdProtocolError, codec.parsePort2Reply, data[:-1])
        self.assertRaises(EpmdProtocolError, codec.parsePort2Reply, b"")

    def test_namesReply(self) -> None:
        """NAMES is the u32 port then one line per node; bad lines are skipped."""
        data = codec.encodeNamesReply(14369, [NodeEntry(b"bar", 1236), NodeEntry(b"foo", 1234)])
        self.assertEqual(
            b"\x00\x00\x38\x21name bar at port 1236\nname foo at port 1234\n", data
        )
        self.assertEqual(
            (14369, [("bar", 1236), ("foo", 1234)]),
            codec.parseNamesReply(data + b"junk line\n"),
        )
        self.assertRaises(EpmdProtocolError, codec.parseNamesReply, b"\x00\x00")

    def test_dumpReply(self) -> None:
        """DUMP lines carry epmd's spacing and a trailing NUL each."""
        data = codec.encodeDumpReply(
            24369, [(NodeEntry(b"bar", 1234), 7)], [(NodeEntry(b"foo", 1234), 5)]
        )
        self.assertEqual(
            b"\x00\x00_1active name     <bar> at port 1234, fd = 7\n\x00"
            b"old/unused name <foo>, port = 1234, fd = 5 \n\x00",
            data,
        )

    def test_reportedCreation(self) -> None:
        """v6 nodes get the counter; older ones C{counter % 3 + 1}."""
        self.assertEqual(1795698636, codec.reportedCreation(1795698636, 6))
        self.assertEqual(1, codec.reportedCreation(1795698636, 5))
        self.assertEqual(2, codec.reportedCreation(1795698637, 5))


class RegistryTests(SynchronousTestCase):
    """Registrations, creation numbers and unregistered slots."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.registry = Registry(self.clock)

    def test_ownerInterface(self) -> None:
        """Owners provide L{IRegistrationOwner}."""
        verifyObject(IRegistrationOwner, NoOwner())
        verifyObject(IRegistrationOwner, EpmdServerProtocol())

    def test_creationFromClockThenBumped(self) -> None:
        """A new slot starts at the clock + 1; re-registering bumps it."""
        first = self.registry.register(NodeEntry(b"a", 1), NoOwner())
        self.assertEqual(T0 + 1, first.creation)
        self.registry.unregister(first)
        second = self.registry.register(NodeEntry(b"a", 1), NoOwner())
        self.assertEqual(T0 + 2, second.creation)

    def test_bumpNeverBelowFour(self) -> None:
        """Creation 0 means "unknown" in the handshake: never hand it out."""
        self.assertEqual(4, bumpCreation(0))
        self.assertEqual(4, bumpCreation(0xFFFFFFFF))
        self.assertEqual(11, bumpCreation(10))

    def test_refusals(self) -> None:
        """Duplicates, 256 characters, 1021 bytes, bad UTF-8, long extra are refused."""
        self.registry.register(NodeEntry(b"a", 1), NoOwner())
        for entry in (
            NodeEntry(b"a", 2),
            NodeEntry(b"x" * 256, 1),
            NodeEntry("😈".encode() * 256, 1),
            NodeEntry(b"\xff", 1),
            NodeEntry(b"b", 1, extra=b"e" * 1021),
        ):
            self.assertRaises(RegistrationRefused, self.registry.register, entry, NoOwner())
        self.assertEqual(1, len(self.registry))

    def test_unusedBounded(self) -> None:
        """At most C{maxUnregistered} slots are kept, oldest dropped first."""
        registry = Registry(self.clock, maxUnregistered=5)
        for i in range(8):
            registry.unregister(registry.register(NodeEntry(b"n%d" % i, 1), NoOwner()))
        self.assertEqual(
            [b"n3", b"n4", b"n5", b"n6", b"n7"], [e.name for e, _ in registry.unused()]
        )

    def test_unregisterTwice(self) -> None:
        """Unregistering is idempotent."""
        registration = self.registry.register(NodeEntry(b"a", 1), NoOwner())
        self.assertTrue(self.registry.unregister(registration))
        self.assertFalse(self.registry.unregister(registration))
        self.assertEqual(1, len(self.registry.unused()))


class RegisterTests(ServerTestCase):
    """ALIVE2: the SUITE's register_* cases."""

    def test_registerNameV5(self) -> None:
        """register_name: v5 ALIVE2 at port 1000 gets C{'y', 0, C0, C1}, creation 1..3."""
        conn, reply = self.register(b"foo", highVsn=5, lowVsn=5)
        self.assertEqual(4, len(reply))
        self.assertEqual(b"y\x00", reply[:2])
        self.assertIn(struct.unpack(">H", reply[2:])[0], (1, 2, 3))
        self.assertFalse(conn.closed)

    def test_registerNameV6(self) -> None:
        """A v6 node gets the 6-byte C{'v'} reply with the 32-bit creation."""
        conn, reply = self.register(b"foo")
        self.assertEqual(b"v\x00" + struct.pack(">I", T0 + 1), reply)
        self.assertFalse(conn.closed)

    def test_registerNameIPv6Peer(self) -> None:
        """register_name_ipv6: ::1 is a local peer."""
        from twisted.internet.address import IPv6Address

        self.assertTrue(isLocalPeer(IPv6Address("TCP", "::1", 1), IPv6Address("TCP", "::1", 2)))
        self.assertTrue(
            isLocalPeer(
                IPv6Address("TCP", "::ffff:127.0.0.1", 1), IPv6Address("TCP", "::1", 2)
            )
        )

    def test_registerNamesUnregisterEitherOrder(self) -> None:
        """register_names_1/2: two names; closing either socket unregisters only it."""
        for first in (0, 1):
            a, _ = self.register(b"foo")
            b, _ = self.register(b"bar")
            self.assertEqual({"foo", "bar"}, {n for n, _ in names(self.factory)})
            conns = [a, b]
            conns[first].close()
            remaining = {"foo", "bar"} - {("foo", "bar")[first]}
            self.assertEqual(remaining, {n for n, _ in names(self.factory)})
            conns[1 - first].close()
            self.assertEqual([], names(self.factory))

    def test_registerDuplicateName(self) -> None:
        """register_duplicate_name: the second gets C{v 1 00000063}; the first stays."""
        first, _ = self.register(b"foo", port=1000)
        second, reply = self.register(b"foo", port=2000)
        self.assertEqual(bytes.fromhex("760100000063"), reply)
        self.assertEqual([("foo", 1000)], names(self.factory))
        # Like epmd the refused connection stays open until the timeout.
        self.assertFalse(second.closed)
        self.clock.advance(1)
        second.settle()
        self.assertTrue(second.closed)
        self.assertEqual([("foo", 1000)], names(self.factory))

    def test_duplicateV5(self) -> None:
        """A v5 duplicate gets C{y 1 0063}."""
        self.register(b"foo")
        _, reply = self.register(b"foo", highVsn=5)
        self.assertEqual(bytes.fromhex("79010063"), reply)

    def test_unicodeName(self) -> None:
        """unicode_name: a 4-byte UTF-8 name registers; PORT_PLEASE2 returns its bytes."""
        name = "\U0001f608".encode()
        self.register(name)
        reply = self.connect().send(codec.encodePortPlease2Request(name))
        entry = codec.parsePort2Reply(reply)
        assert entry is not None
        self.assertEqual(name, entry.name)

    def test_longUnicodeName(self) -> None:
        """long_unicode_name: 201 emoji (804 bytes) register; 255 ASCII too."""
        _, reply = self.register("\U0001f608".encode() * 201)
        self.assertEqual(b"v\x00", reply[:2])
        _, reply = self.register(b"x" * 255)
        self.assertEqual(b"v\x00", reply[:2])

    def test_nameTooLong(self) -> None:
        """alive_req_too_large: 256 and 600 characters get C{Result 1}."""
        for length in (256, 600):
            _, reply = self.register(b"x" * length)
            self.assertEqual(bytes.fromhex("760100000063"), reply)
            _, reply = self.register(b"x" * length, highVsn=5)
            self.assertEqual(b"y\x01", reply[:2])
        self.assertEqual([], names(self.factory))

    def test_nameWithNullInside(self) -> None:
        """name_with_null_inside / name_null_terminated: closed, no reply."""
        for name in (b"foo\0bar", b"foobar\0"):
            conn = self.connect()
            self.assertEqual(b"", conn.send(alive2(name)))
            self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_aliveReqTooSmall(self) -> None:
        """alive_req_too_small_1/2: no name, or no Nlen at all: closed, no reply."""
        full = alive2(b"foo")[2:]
        for payload in (full[:11], full[:9], full[:13], b"x\x03\xe8M\x00\x00\x05\x00\x05\x00"):
            conn = self.connect()
            self.assertEqual(b"", conn.send(framed(payload)))
            self.assertTrue(conn.closed, payload)
        self.assertEqual([], names(self.factory))

    def test_bufferOverrun1(self) -> None:
        """buffer_overrun_1: an Elen beyond the packet closes; epmd survives."""
        for elen in (1, 2, 100, 1000, 10000):
            payload = alive2(b"foo")[2:-2] + struct.pack(">H", elen)
            conn = self.connect()
            self.assertEqual(b"", conn.send(framed(payload)))
            self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_bufferOverrun2(self) -> None:
        """buffer_overrun_2: Elen >= 1020 with real data is refused or closed."""
        conn, reply = self.register(b"foo", extra=b"e" * 1021)
        self.assertEqual(bytes.fromhex("760100000063"), reply)
        _, reply = self.register(b"bar", extra=b"e" * 1020)
        self.assertEqual(b"v\x00", reply[:2])
        self.assertEqual([("bar", 1000)], names(self.factory))

    def test_registerOverflow(self) -> None:
        """register_overflow: 1000 names, unregistered in both orders, 10 times."""
        for round_ in range(10):
            conns = [self.register(b"node%d" % i)[0] for i in range(1000)]
            self.assertEqual(1000, len(names(self.factory)))
            if round_ % 2:
                conns.reverse()
            for conn in conns:
                conn.close()
            self.assertEqual(0, len(names(self.factory)))
            self.assertEqual(1000, len(self.factory.registry.unused()))

    def test_creationBumpsOnReuse(self) -> None:
        """The same name registered again gets the next creation."""
        conn, reply = self.register(b"foo")
        conn.close()
        _, again = self.register(b"foo")
        self.assertEqual(
            struct.unpack(">I", reply[2:])[0] + 1, struct.unpack(">I", again[2:])[0]
        )

    def test_extraByteUnregisters(self) -> None:
        """Any byte after the ALIVE2 reply unregisters the node and closes."""
        conn, _ = self.register(b"foo")
        self.assertEqual(b"", conn.send(b"\x00"))
        self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_extraBytesInSameChunk(self) -> None:
        """More bytes than the ALIVE2 length in one read: closed, not registered."""
        conn = self.connect()
        self.assertEqual(b"", conn.send(alive2(b"foo") + b"\x00"))
        self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_registeredConnectionNeverTimesOut(self) -> None:
        """A registration connection is kept however long it stays silent."""
        conn, _ = self.register(b"foo")
        self.clock.advance(3600)
        self.assertFalse(conn.closed)
        self.assertEqual([("foo", 1000)], names(self.factory))

    def test_socketResetBeforeReply(self) -> None:
        """socket_reset_before_alive2_reply_is_written: no zombie entry."""
        conn = self.connect()
        conn.protocol.dataReceived(alive2(b"foo"))
        conn.close(Failure(ConnectionLost("reset by peer")))
        self.assertEqual([], names(self.factory))
        self.assertEqual(0, len(self.factory.registry))

    def test_resetDuringRequest(self) -> None:
        """A reset half-way through a request leaves no trace."""
        conn = self.connect()
        conn.send(alive2(b"foo")[:7])
        conn.close(Failure(ConnectionLost()))
        self.assertEqual([], names(self.factory))
        self.assertEqual(set(), self.factory.connections)

    def test_everyChunking(self) -> None:
        """ALIVE2 written in pieces of every size registers (slow_get_port_nr)."""
        request = alive2(b"foo")
        for size in range(1, len(request) + 1):
            conn = self.connect()
            reply = conn.send(request, chunk=size)
            self.assertEqual(b"v\x00", reply[:2], size)
            conn.close()
        self.assertEqual([], names(self.factory))

    def test_nonLocalRegister(self) -> None:
        """no_nonlocal_register: ALIVE2 from a remote peer is closed silently."""
        conn = self.connect(REMOTE)
        self.assertEqual(b"", conn.send(alive2(b"foo")))
        self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_peerEqualToLocalAddressIsLocal(self) -> None:
        """A peer whose address is the socket's own local address counts as local."""
        from twisted.internet.address import IPv4Address

        self.assertTrue(
            isLocalPeer(IPv4Address("TCP", "10.1.2.3", 1), IPv4Address("TCP", "10.1.2.3", 2))
        )
        self.assertFalse(
            isLocalPeer(IPv4Address("TCP", "10.1.2.3", 1), IPv4Address("TCP", "10.1.2.4", 2))
        )


class PortPleaseTests(ServerTestCase):
    """PORT_PLEASE2: get_port_nr and the extra field."""

    def test_getPortNr(self) -> None:
        """get_port_nr / slow_get_port_nr: every chunking; reply then close."""
        self.register(b"foo", port=1234)
        request = codec.encodePortPlease2Request(b"foo")
        for size in range(1, len(request) + 1):
            conn = self.connect()
            reply = conn.send(request, chunk=size)
            self.assertEqual(bytes.fromhex("770004d24d00000600050003666f6f0000"), reply)
            self.assertTrue(conn.closed)

    def test_trailingNul(self) -> None:
        """C{zfoo\\0} is answered like C{zfoo}."""
        self.register(b"foo", port=1234)
        reply = self.connect().send(framed(b"zfoo\0"))
        self.assertEqual(bytes.fromhex("770004d24d00000600050003666f6f0000"), reply)

    def test_unknown(self) -> None:
        """An unknown name gets C{w 1} and a close."""
        conn = self.connect()
        self.assertEqual(b"w\x01", conn.send(codec.encodePortPlease2Request(b"nope")))
        self.assertTrue(conn.closed)

    def test_returnsValidEmptyExtra(self) -> None:
        """returns_valid_empty_extra: the reply ends with Elen 0."""
        self.register(b"foo")
        reply = self.connect().send(codec.encodePortPlease2Request(b"foo"))
        self.assertEqual(b"\x00\x00", reply[-2:])

    def test_returnsValidPopulatedExtraWithNulls(self) -> None:
        """returns_valid_populated_extra_with_nulls: C{ABC\\0\\0} round-trips."""
        self.register(b"foo", extra=b"ABC\0\0")
        reply = self.connect().send(codec.encodePortPlease2Request(b"foo"))
        self.assertEqual(b"\x00\x05ABC\x00\x00", reply[-7:])

    def test_remotePeerServed(self) -> None:
        """PORT_PLEASE2 and NAMES are served to anyone."""
        self.register(b"foo", port=1234)
        reply = self.connect(REMOTE).send(codec.encodePortPlease2Request(b"foo"))
        self.assertEqual(b"w\x00", reply[:2])
        reply = self.connect(REMOTE).send(codec.encodeNamesRequest())
        self.assertEqual(b"\x00\x00\x08\xc3name foo at port 1234\n", reply)

    def test_badNames(self) -> None:
        """An empty name, a NUL inside or bad UTF-8: closed without a reply."""
        for payload in (b"z", b"z\0", b"zf\0o", b"z\xc3"):
            conn = self.connect()
            self.assertEqual(b"", conn.send(framed(payload)))
            self.assertTrue(conn.closed)


class NamesDumpTests(ServerTestCase):
    """NAMES and DUMP."""

    def test_namesEmpty(self) -> None:
        """No nodes: just the port, in one write, then close."""
        conn = self.connect()
        self.assertEqual(b"\x00\x00\x08\xc3", conn.send(codec.encodeNamesRequest()))
        self.assertTrue(conn.closed)

    def test_namesNewestFirstOneWrite(self) -> None:
        """Newest registration first; the whole reply in a single write."""
        self.register(b"foo", port=1234)
        self.register(b"bar", port=1236)
        conn = self.connect()
        writes: list[bytes] = []
        conn.transport.write = writes.append  # type: ignore[method-assign]
        conn.protocol.dataReceived(codec.encodeNamesRequest())
        self.assertEqual(
            [b"\x00\x00\x08\xc3name bar at port 1236\nname foo at port 1234\n"], writes
        )

    def test_stupidNamesReq(self) -> None:
        """stupid_names_req: 999 live names parse back to exactly that set."""
        for i in range(999):
            self.register(b"n%d" % i, port=1000 + i)
        self.assertEqual(
            {(f"n{i}", 1000 + i) for i in range(999)}, set(names(self.factory))
        )

    def test_dump(self) -> None:
        """DUMP lists active then unused slots with trailing NULs."""
        foo, _ = self.register(b"foo", port=1234)
        bar, _ = self.register(b"bar", port=1234)
        foo.close()
        reply = self.connect().send(codec.encodeDumpRequest())
        fdBar = bar.protocol.registration.fd  # type: ignore[union-attr]
        self.assertEqual(b"\x00\x00\x08\xc3", reply[:4])
        lines = reply[4:].split(b"\0")
        self.assertEqual(f"active name     <bar> at port 1234, fd = {fdBar}\n".encode(), lines[0])
        self.assertTrue(lines[1].startswith(b"old/unused name <foo>, port = 1234, fd = "))
        self.assertTrue(lines[1].endswith(b" \n"))
        self.assertEqual(b"", lines[2])

    def test_dumpNonLocal(self) -> None:
        """DUMP from a remote peer is closed silently."""
        conn = self.connect(REMOTE)
        self.assertEqual(b"", conn.send(codec.encodeDumpRequest()))
        self.assertTrue(conn.closed)


class KillStopTests(ServerTestCase):
    """no_live_killing and unregister_others_name without relaxed mode."""

    def test_noLiveKilling(self) -> None:
        """KILL with a live node: C{NO}; STOP: closed; after unregister KILL: C{OK}."""
        conn, _ = self.register(b"foo")
        self.assertEqual(b"NO", self.connect().send(codec.encodeKillRequest()))
        self.assertEqual([], self.killed)
        stop = self.connect()
        self.assertEqual(b"", stop.send(codec.encodeStopRequest(b"foo")))
        self.assertTrue(stop.closed)
        self.assertEqual([("foo", 1000)], names(self.factory))
        conn.close()
        kill = self.connect()
        self.assertEqual(b"OK", kill.send(codec.encodeKillRequest()))
        self.assertTrue(kill.closed)
        self.assertEqual([True], self.killed)

    def test_noNonlocalKill(self) -> None:
        """no_nonlocal_kill: KILL from a remote peer is closed; epmd survives."""
        conn = self.connect(REMOTE)
        self.assertEqual(b"", conn.send(codec.encodeKillRequest()))
        self.assertEqual([], self.killed)

    def test_closeAll(self) -> None:
        """L{EpmdServerFactory.closeAll} drops every connection and registration."""
        conn, _ = self.register(b"foo")
        idle = self.connect()
        self.factory.closeAll()
        conn.settle()
        idle.settle()
        self.assertEqual(0, len(self.factory.registry))
        self.assertEqual(set(), self.factory.connections)


class RelaxedTests(ServerTestCase):
    """With C{-relaxed_command_check}: unregister_others_name_1/2."""

    relaxed = True

    def test_stopExisting(self) -> None:
        """STOP a registered name: C{STOPPED}, and its registration socket closes."""
        conn, _ = self.register(b"foo")
        stop = self.connect()
        self.assertEqual(b"STOPPED", stop.send(codec.encodeStopRequest(b"foo")))
        self.assertTrue(stop.closed)
        conn.settle()
        self.assertTrue(conn.closed)
        self.assertEqual([], names(self.factory))

    def test_stopUnknown(self) -> None:
        """STOP an unknown name: C{NOEXISTSTOPPED}, OTP 25's exact bytes."""
        self.assertEqual(b"NOEXISTSTOPPED", self.connect().send(codec.encodeStopRequest(b"x")))

    def test_killWithLiveNodes(self) -> None:
        """KILL is allowed with live nodes."""
        self.register(b"foo")
        self.assertEqual(b"OK", self.connect().send(codec.encodeKillRequest()))
        self.assertEqual([True], self.killed)


class BadInputTests(ServerTestCase):
    """Bad input closes that one connection; the registry stays as it was."""

    def setUp(self) -> None:
        super().setUp()
        self.keep, _ = self.register(b"keep", port=4242)

    def assertRegistryIntact(self) -> None:
        self.assertEqual([("keep", 4242)], names(self.factory))
        self.assertFalse(self.keep.closed)

    def assertClosedSilently(self, data: bytes, chunk: int | None = None) -> None:
        conn = self.connect()
        self.assertEqual(b"", conn.send(data, chunk))
        self.clock.advance(1)
        conn.settle()
        self.assertTrue(conn.closed, data[:20])
        self.assertRegistryIntact()

    def test_noData(self) -> None:
        """no_data: a silent client is closed after packet_timeout, not before."""
        conn = self.connect()
        self.clock.advance(0.9)
        self.assertFalse(conn.settle() or conn.closed)
        self.clock.advance(0.1)
        conn.settle()
        self.assertTrue(conn.closed)
        self.assertRegistryIntact()

    def test_oneByteTwoBytesPartial(self) -> None:
        """one_byte / two_bytes / partial_packet: closed after the timeout, no reply."""
        for data in (b"\x00", b"\x00\x03", b"\x00\x03n", alive2(b"foo")[:-1]):
            self.assertClosedSilently(data)

    def test_idleTimerRestartsOnData(self) -> None:
        """The timeout counts from the last byte, as epmd's does."""
        conn = self.connect()
        request = codec.encodePortPlease2Request(b"keep")
        conn.send(request[:2])
        self.clock.advance(0.8)
        conn.send(request[2:3])
        self.clock.advance(0.8)
        self.assertEqual(b"w\x00", conn.send(request[3:])[:2])

    def test_zeroLength(self) -> None:
        """zero_length: C{00 00 ...} closes."""
        self.assertClosedSilently(b"\x00\x00")
        self.assertClosedSilently(b"\x00\x00" + b"x" * 100)

    def test_tooLarge(self) -> None:
        """too_large: a 63000-byte request closes, in any chunking."""
        data = struct.pack(">H", 63000) + b"x" * 62998
        self.assertClosedSilently(data)
        self.assertClosedSilently(data[:5000], chunk=1)
        self.assertClosedSilently(struct.pack(">H", 3058) + b"n" * 3058)

    def test_garbage(self) -> None:
        """Unknown codes and random junk: closed, no reply."""
        for data in (
            framed(b"a"),
            framed(b"p\x00\x00"),
            framed(b"\xff" * 10),
            b"GET / HTTP/1.0\r\n\r\n",
        ):
            self.assertClosedSilently(data)

    def test_nulInName(self) -> None:
        """NUL bytes in names: closed without registering."""
        self.assertClosedSilently(alive2(b"ke\0ep"))
        self.assertClosedSilently(framed(b"zke\0ep"))

    def test_everyChunkingOfGarbage(self) -> None:
        """Garbage in pieces of every size closes the same way."""
        data = framed(b"q" + b"\x01" * 8)
        for size in range(1, len(data) + 1):
            self.assertClosedSilently(data, size)

    def test_resetBeforeReply(self) -> None:
        """A peer gone before the reply: nothing breaks, nothing leaks."""
        conn = self.connect()
        conn.close(Failure(ConnectionLost()))
        conn.protocol.dataReceived(codec.encodeNamesRequest())
        self.assertRegistryIntact()
        self.assertEqual({self.keep.protocol}, self.factory.connections)

    def test_oneLogLinePerBadConnection(self) -> None:
        """Bad input is logged once, naming the peer and the reason."""
        from twisted.logger import LogLevel, globalLogPublisher

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.assertClosedSilently(framed(b"a"))
        closing = [e for e in events if "closing connection" in str(e.get("log_format"))]
        self.assertEqual(1, len(closing))
        self.assertEqual(LogLevel.info, closing[0]["log_level"])
        self.assertEqual("127.0.0.1:50000", closing[0]["peer"])


class ClientTests(SynchronousTestCase):
    """L{EpmdClient} against our server, in memory."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(T0)
        self.server = EpmdServerFactory(self.reactor, 4369, relaxed=True)
        self.client = EpmdClient(self.reactor, port=4369, timeout=5)

    def complete(self) -> object:
        _, _, pump = completeClient(self.reactor, self.server)
        pump.flush()
        return pump

    def test_registerKeepsConnection(self) -> None:
        """register fires with the creation; the node stays until close()."""
        d = self.client.register("foo", 1234)
        self.assertEqual(("127.0.0.1", 4369), self.reactor.tcpClients[0][:2])
        pump = self.complete()
        registration = self.successResultOf(d)
        self.assertIsInstance(registration, NodeRegistration)
        self.assertEqual(T0 + 1, registration.creation)
        self.assertTrue(registration.active)
        self.assertEqual(b"foo", self.server.lookup(b"foo").name)  # type: ignore[union-attr]
        closed = registration.close()
        pump.flush()  # type: ignore[attr-defined]
        self.successResultOf(closed)
        self.assertFalse(registration.active)
        self.assertIsNone(self.server.lookup(b"foo"))
        self.successResultOf(registration.whenLost())

    def test_registerDuplicate(self) -> None:
        """A refused registration fails with L{EpmdRegistrationError}."""
        self.client.register("foo", 1)
        self.complete()
        d = self.client.register("foo", 2)
        self.complete()
        self.assertEqual(1, self.failureResultOf(d, EpmdRegistrationError).value.result)

    def test_whenLostOnServerClose(self) -> None:
        """whenLost fires when epmd closes the registration (STOP, or epmd exits)."""
        d = self.client.register("foo", 1234)
        pump = self.complete()
        registration = self.successResultOf(d)
        lost = registration.whenLost()
        self.server.closeAll()
        pump.flush()  # type: ignore[attr-defined]
        self.successResultOf(lost)

    def test_portPleaseAndNames(self) -> None:
        """portPlease finds the entry (None when unknown); names lists them."""
        self.client.register("foo", 1234, extra=b"ABC\0")
        self.complete()
        d = self.client.portPlease("foo")
        self.complete()
        self.assertEqual(
            NodeEntry(b"foo", 1234, extra=b"ABC\0"), self.successResultOf(d)
        )
        d2 = self.client.portPlease("nope")
        self.complete()
        self.assertIsNone(self.successResultOf(d2))
        d3 = self.client.names()
        self.complete()
        self.assertEqual((4369, [("foo", 1234)]), self.successResultOf(d3))

    def test_rawRequest(self) -> None:
        """request() returns the raw reply (the CLI's STOP)."""
        d = self.client.request(codec.encodeStopRequest(b"x"))
        self.complete()
        self.assertEqual(b"NOEXISTSTOPPED", self.successResultOf(d))

    def test_timeout(self) -> None:
        """A silent epmd fails the call with L{EpmdTimeout} after C{timeout}."""
        d = self.client.names()
        _, _, pump = completeClient(self.reactor, Factory.forProtocol(Protocol))
        pump.flush()
        self.reactor.advance(5)
        pump.flush()
        self.failureResultOf(d, EpmdTimeout)

    def test_registerTimeout(self) -> None:
        """A silent epmd fails register with L{EpmdTimeout}."""
        d = self.client.register("foo", 1)
        _, _, pump = completeClient(self.reactor, Factory.forProtocol(Protocol))
        pump.flush()
        self.reactor.advance(5)
        pump.flush()
        self.failureResultOf(d, EpmdTimeout)

    def test_connectionRefused(self) -> None:
        """No epmd: the Deferred fails with the connection error."""
        from twisted.internet.error import ConnectionRefusedError

        from tests.epmdhelpers import refuseClient

        d = self.client.names()
        refuseClient(self.reactor)
        self.failureResultOf(d, ConnectionRefusedError)

    def test_garbageAliveReply(self) -> None:
        """A reply that is not C{v}/C{y} fails register."""
        class Liar(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(b"w\x01")  # type: ignore[union-attr]

        d = self.client.register("foo", 1)
        _, _, pump = completeClient(self.reactor, Factory.forProtocol(Liar))
        pump.flush()
        self.failureResultOf(d, EpmdProtocolError)

    def test_deferredApi(self) -> None:
        """Every method returns a L{Deferred}."""
        for d in (self.client.names(), self.client.portPlease("x"), self.client.register("x", 1)):
            self.assertIsInstance(d, Deferred)
