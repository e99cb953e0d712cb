"""
Tests for L{vernemq.dist.connection} and L{vernemq.dist.framing}: framing,
the handshake over a transport, ticks, and bad input.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vernemq.dist.connection import (
    AcceptorFactory,
    AcceptorProtocol,
    DistributionProtocol,
    DistributionProtocolError,
    IConnectionOwner,
    InitiatorProtocol,
)
from vernemq.dist.etf import Atom, encode
from vernemq.dist.framing import (
    NO_MESSAGE,
    TICK,
    FramingError,
    PacketDecoder,
    PacketTooLarge,
    decodePassThrough,
    encodePassThrough,
    frame2,
)
from vernemq.dist.handshake import (
    OUR_FLAGS,
    InitiatorHandshake,
    digest,
    encodeChallengeReply,
    encodeSendName,
)


@implementer(IConnectionOwner)
class FakeOwner:
    """Records what connections tell their node."""

    def __init__(self, name: str = "b@vm", cookie: str = "C", tickTime: float = 8.0) -> None:
        self.name = name
        self.cookie = cookie
        self.creation = 7
        self.tickTime = tickTime
        self.setupTime = 7.0
        self.status = "ok"
        self.up: list[DistributionProtocol] = []
        self.down: list[tuple[DistributionProtocol, str]] = []
        self.messages: list[tuple[Any, Any]] = []

    def arbitrate(self, protocol: DistributionProtocol, peerName: str) -> str:
        return self.status

    def connectionUp(self, protocol: DistributionProtocol) -> None:
        self.up.append(protocol)

    def dispatch(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        if control[0] == 99:
            raise DistributionProtocolError("unknown control message 99")
        self.messages.append((control, message))

    def connectionDown(self, protocol: DistributionProtocol, reason: str) -> None:
        self.down.append((protocol, reason))


def accept(
    owner: FakeOwner, reactor: MemoryReactorClock
) -> tuple[AcceptorProtocol, StringTransport]:
    factory = AcceptorFactory(owner, reactor)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    return protocol, transport


def lost(protocol: DistributionProtocol, transport: StringTransport) -> bool:
    """Deliver connectionLost if the protocol closed its transport."""
    if transport.disconnecting or getattr(transport, "disconnected", False):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        protocol.connectionLost(Failure(ConnectionDone()))
        return True
    return False


def clientBytes(cookie: str = "C", after: bytes = b"") -> bytes:
    """
    Everything an initiator C{a@vm} sends to an acceptor whose challenge is
    known in advance (the acceptor here draws 1000).
    """
    return (
        frame2(encodeSendName(OUR_FLAGS, 9, "a@vm"))
        + frame2(encodeChallengeReply(2000, digest(1000, cookie)))
        + after
    )


def fixedAccept(
    owner: FakeOwner, reactor: MemoryReactorClock
) -> tuple[AcceptorProtocol, StringTransport]:
    protocol = AcceptorProtocol(owner, reactor, challenge=lambda: 1000)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
    protocol.makeConnection(transport)
    return protocol, transport


class FramingTests(SynchronousTestCase):
    """L{PacketDecoder} and the pass-through format."""

    def test_chunks(self) -> None:
        """Packets come out whole whatever the chunking."""
        stream = frame2(b"hello") + frame2(b"") + frame2(b"x" * 300)
        for size in range(1, len(stream) + 1):
            decoder = PacketDecoder(2)
            out = []
            for i in range(0, len(stream), size):
                decoder.feed(stream[i : i + size])
                while (packet := decoder.next()) is not None:
                    out.append(packet)
            self.assertEqual([b"hello", b"", b"x" * 300], out, size)
            self.assertEqual(0, decoder.pending())

    def test_switchHeader(self) -> None:
        """The header size can change between two packets of one chunk."""
        decoder = PacketDecoder(2)
        decoder.feed(frame2(b"ab") + TICK + struct.pack(">I", 1) + b"p")
        self.assertEqual(b"ab", decoder.next())
        decoder.headerSize = 4
        self.assertEqual(b"", decoder.next())
        self.assertEqual(b"p", decoder.next())
        self.assertIsNone(decoder.next())

    def test_tooLarge(self) -> None:
        """A length over the limit is refused before its bytes arrive."""
        decoder = PacketDecoder(4, maxLength=10)
        decoder.feed(struct.pack(">I", 11))
        self.assertRaises(PacketTooLarge, decoder.next)

    def test_passThrough(self) -> None:
        """C{'p'}, the control term and the message term, each with 131."""
        packet = encodePassThrough((6, Atom(""), Atom("x")), b"m")
        self.assertEqual(b"p" + encode((6, Atom(""), Atom("x"))) + encode(b"m"), packet[4:])
        self.assertEqual(((6, "", "x"), b"m"), decodePassThrough(packet[4:]))
        self.assertEqual(((5,), NO_MESSAGE), decodePassThrough(encodePassThrough((5,))[4:]))

    def test_badPassThrough(self) -> None:
        """Other packet types, or controls that are not tuples, are refused."""
        self.assertRaises(FramingError, decodePassThrough, b"\x83" + encode(1))
        self.assertRaises(FramingError, decodePassThrough, b"p" + encode(1))
        self.assertRaises(FramingError, decodePassThrough, b"p" + encode(()))
        three = b"p" + encode((1,)) + encode(1) + encode(2)
        self.assertRaises(FramingError, decodePassThrough, three)


class AcceptorTests(SynchronousTestCase):
    """An incoming connection over a L{StringTransport}."""

    def test_interface(self) -> None:
        """The fake owner provides the interface the node provides."""
        self.assertTrue(verifyObject(IConnectionOwner, FakeOwner()))

    def test_handshakeEveryChunkSize(self) -> None:
        """
        Fed in chunks of every size, the handshake completes, the ack is
        written, and a message sent in the same stream reaches the owner.
        """
        message = encodePassThrough((6, Atom(""), Atom(""), Atom("echo")), b"hi")
        stream = clientBytes(after=TICK + message)
        for size in range(1, len(stream) + 1):
            owner = FakeOwner()
            protocol, transport = fixedAccept(owner, MemoryReactorClock())
            for i in range(0, len(stream), size):
                protocol.dataReceived(stream[i : i + size])
            self.assertEqual([protocol], owner.up, size)
            self.assertEqual([((6, "", "", "echo"), b"hi")], owner.messages, size)
            written = transport.value()
            self.assertTrue(written.endswith(frame2(b"a" + digest(2000, "C"))))
            self.assertFalse(transport.disconnecting)

    def test_wrongCookie(self) -> None:
        """A wrong digest: no ack, closed, one warning naming the peer."""
        owner = FakeOwner()
        protocol, transport = fixedAccept(owner, MemoryReactorClock())
        with capturedLogs() as events:
            protocol.dataReceived(clientBytes(cookie="WRONG"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual([], owner.up)
        self.assertEqual(1, len(events))
        self.assertEqual(LogLevel.warn, events[0]["log_level"])
        self.assertIn("invalid challenge reply", events[0]["reason"])
        self.assertNotIn(b"a", transport.value()[-17:-16])
        lost(protocol, transport)
        self.assertEqual(1, len(owner.down))

    def test_junkBeforeHandshake(self) -> None:
        """Junk instead of send_name closes with one log line."""
        owner = FakeOwner()
        protocol, transport = fixedAccept(owner, MemoryReactorClock())
        with capturedLogs() as events:
            protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(1, len(events))

    def test_junkDuringHandshake(self) -> None:
        """Junk after send_name closes with one log line, nothing dispatched."""
        owner = FakeOwner()
        protocol, transport = fixedAccept(owner, MemoryReactorClock())
        with capturedLogs() as events:
            protocol.dataReceived(frame2(encodeSendName(OUR_FLAGS, 9, "a@vm")))
            protocol.dataReceived(frame2(b"junk junk junk junk!!"))
            protocol.dataReceived(encodePassThrough((6, Atom(""), Atom(""), Atom("rex")), 1))
        self.assertTrue(transport.disconnecting)
        self.assertEqual([], owner.messages)
        self.assertEqual(1, len(events))

    def test_unauthenticatedMessageNotDispatched(self) -> None:
        """A pass-through packet instead of the challenge reply is never dispatched."""
        owner = FakeOwner()
        protocol, transport = fixedAccept(owner, MemoryReactorClock())
        with capturedLogs():
            protocol.dataReceived(
                frame2(encodeSendName(OUR_FLAGS, 9, "a@vm"))
                + encodePassThrough((6, Atom(""), Atom(""), Atom("rex")), 1)
            )
        self.assertTrue(transport.disconnecting)
        self.assertEqual([], owner.messages)

    def badAfterHandshake(self, data: bytes, maxPacket: int | None = None) -> tuple[FakeOwner, str]:
        owner = FakeOwner()
        reactor = MemoryReactorClock()
        if maxPacket is None:
            protocol, transport = fixedAccept(owner, reactor)
        else:
            protocol = AcceptorProtocol(owner, reactor, challenge=lambda: 1000, maxPacket=maxPacket)
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
            protocol.makeConnection(transport)
        protocol.dataReceived(clientBytes())
        self.assertEqual([protocol], owner.up)
        with capturedLogs() as events:
            protocol.dataReceived(data)
            self.assertTrue(transport.disconnecting)
            self.assertTrue(lost(protocol, transport))
        self.assertEqual([], events, "the node logs the end, not the connection")
        [(_, reason)] = owner.down
        return owner, reason

    def test_oversizeFrame(self) -> None:
        """A packet over the limit closes the connection."""
        _, reason = self.badAfterHandshake(struct.pack(">I", 1001), maxPacket=1000)
        self.assertIn("exceeds the limit", reason)

    def test_notPassThrough(self) -> None:
        """A packet that is not pass-through (e.g. the atom cache header) closes."""
        _, reason = self.badAfterHandshake(struct.pack(">I", 3) + b"\x83D\x00")
        self.assertIn("pass-through", reason)

    def test_undecodableTerm(self) -> None:
        """A term that does not decode closes."""
        _, reason = self.badAfterHandshake(struct.pack(">I", 4) + b"p\x83\xff\x00")
        self.assertTrue(reason)

    def test_unknownControl(self) -> None:
        """The owner refusing a control message closes the connection."""
        _, reason = self.badAfterHandshake(encodePassThrough((99,)))
        self.assertIn("unknown control message 99", reason)

    def test_othersGoOn(self) -> None:
        """One connection failing leaves another one working."""
        owner = FakeOwner()
        reactor = MemoryReactorClock()
        good, goodTransport = fixedAccept(owner, reactor)
        bad, badTransport = fixedAccept(owner, reactor)
        good.dataReceived(clientBytes())
        bad.dataReceived(clientBytes())
        bad.dataReceived(struct.pack(">I", 2) + b"zz")
        self.assertTrue(badTransport.disconnecting)
        good.dataReceived(encodePassThrough((2, Atom(""), Atom("x")), 1))
        self.assertFalse(goodTransport.disconnecting)
        self.assertEqual([((2, "", "x"), 1)], owner.messages)

    def test_setupTimeout(self) -> None:
        """A handshake not completed within setupTime is abandoned."""
        owner = FakeOwner()
        reactor = MemoryReactorClock()
        protocol, transport = fixedAccept(owner, reactor)
        protocol.dataReceived(frame2(encodeSendName(OUR_FLAGS, 9, "a@vm")))
        with capturedLogs() as events:
            reactor.advance(7)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(1, len(events))
        self.assertIn("in time", events[0]["reason"])

    def test_notAllowed(self) -> None:
        """The owner's refusal is sent as a status before closing."""
        owner = FakeOwner()
        owner.status = "not_allowed"
        protocol, transport = fixedAccept(owner, MemoryReactorClock())
        with capturedLogs():
            protocol.dataReceived(frame2(encodeSendName(OUR_FLAGS, 9, "a@vm")))
        self.assertEqual(frame2(b"snot_allowed"), transport.value())
        self.assertTrue(transport.disconnecting)

    def test_sendBeforeHandshakeDropped(self) -> None:
        """Nothing is written for a connection that is not established."""
        protocol, transport = fixedAccept(FakeOwner(), MemoryReactorClock())
        protocol.send((2, Atom(""), Atom("x")), 1)
        self.assertEqual(b"", transport.value())


class TickTests(SynchronousTestCase):
    """Ticks every net_ticktime/4; silent peers dropped after net_ticktime."""

    def established(
        self,
    ) -> tuple[FakeOwner, MemoryReactorClock, AcceptorProtocol, StringTransport]:
        owner = FakeOwner(tickTime=8.0)
        reactor = MemoryReactorClock()
        protocol, transport = fixedAccept(owner, reactor)
        protocol.dataReceived(clientBytes())
        transport.clear()
        return owner, reactor, protocol, transport

    def test_ticksWhenIdle(self) -> None:
        """An idle connection writes a tick every tickTime/4."""
        owner, reactor, protocol, transport = self.established()
        reactor.advance(1.9)
        self.assertEqual(b"", transport.value())
        reactor.advance(0.1)
        self.assertEqual(TICK, transport.value())

    def test_noTickAfterWrite(self) -> None:
        """No tick is written in an interval in which something else was."""
        owner, reactor, protocol, transport = self.established()
        protocol.send((2, Atom(""), Atom("x")), 1)
        transport.clear()
        reactor.advance(2)
        self.assertEqual(b"", transport.value())
        reactor.advance(2)
        self.assertEqual(TICK, transport.value())

    def test_survivesWithPeerTicks(self) -> None:
        """A peer that ticks is kept however long the connection is idle."""
        owner, reactor, protocol, transport = self.established()
        for _ in range(100):
            reactor.advance(2)
            protocol.dataReceived(TICK)
        self.assertFalse(transport.disconnecting)

    def test_silentPeerDropped(self) -> None:
        """A peer silent for tickTime is dropped; the reason says why."""
        owner, reactor, protocol, transport = self.established()
        reactor.pump([2, 2, 2])
        self.assertFalse(transport.disconnecting)
        reactor.advance(2)
        self.assertTrue(transport.disconnecting)
        lost(protocol, transport)
        self.assertIn("net_ticktime", owner.down[0][1])
        self.assertFalse(reactor.getDelayedCalls())


class InitiatorTests(SynchronousTestCase):
    """Both roles against each other over iosim."""

    def test_bothRoles(self) -> None:
        """An initiator and an acceptor establish and exchange messages."""
        a, b = FakeOwner("a@vm"), FakeOwner("b@vm")
        reactor = MemoryReactorClock()
        client = InitiatorProtocol(a, reactor, "b@vm")
        server = AcceptorFactory(b, reactor).buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=reactor,
        )
        pump.flush()
        self.assertEqual(([client], [server]), (a.up, b.up))
        assert client.result is not None
        self.assertEqual("b@vm", client.result.peerName)
        self.assertTrue(client.established)
        client.send((2, Atom(""), Atom("x")), [1, 2])
        server.send((2, Atom(""), Atom("y")), b"z")
        pump.flush()
        self.assertEqual([((2, "", "x"), [1, 2])], b.messages)
        self.assertEqual([((2, "", "y"), b"z")], a.messages)
        client.disconnect("bye")
        pump.flush()
        self.assertEqual("bye", a.down[0][1])
        self.assertEqual(1, len(b.down))

    def test_initiatorChunks(self) -> None:
        """The initiator completes whatever the chunking of its input."""
        owner = FakeOwner("a@vm")
        peer = InitiatorHandshake("x@vm", "C", 1, 1, "a@vm")  # only for its digest helper
        del peer
        challenge = struct.pack(">BQIIH", 78, OUR_FLAGS, 555, 3, 4) + b"b@vm"
        for size in range(1, 60):
            protocol = InitiatorProtocol(owner, MemoryReactorClock(), "b@vm", challenge=lambda: 42)
            transport = StringTransport()
            protocol.makeConnection(transport)
            stream = frame2(b"sok") + frame2(challenge) + frame2(b"a" + digest(42, "C")) + TICK
            for i in range(0, len(stream), size):
                protocol.dataReceived(stream[i : i + size])
            self.assertTrue(protocol.established, size)
            sent = transport.value()
            self.assertIn(frame2(encodeChallengeReply(42, digest(555, "C"))), sent)

    def test_disconnectedWhileDialling(self) -> None:
        """
        An initiator disconnected before its TCP connection is made (its
        node let the peer's simultaneous connection win) does not fail, and
        aborts the connection when it is made, without a handshake byte.
        """
        owner = FakeOwner("a@vm")
        protocol = InitiatorProtocol(owner, MemoryReactorClock(), "b@vm")
        protocol.disconnect("simultaneous connect: the peer's connection wins")
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(b"", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_simultaneousQuiet(self) -> None:
        """A C{nok} closes the initiator without a warning."""
        owner = FakeOwner("a@vm")
        protocol = InitiatorProtocol(owner, MemoryReactorClock(), "b@vm")
        transport = StringTransport()
        protocol.makeConnection(transport)
        with capturedLogs() as events:
            protocol.dataReceived(frame2(b"snok"))
        self.assertEqual([], events)
        self.assertTrue(protocol.simultaneous)
        self.assertTrue(transport.disconnecting)
