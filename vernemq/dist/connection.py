# -*- test-case-name: tests.test_dist_connection -*-
"""
Distribution connections: thin Protocols around the sans-IO parts.

L{DistributionProtocol} frames bytes (L{vernemq.dist.framing}), feeds the
handshake machine (L{vernemq.dist.handshake}) until it completes, then
hands every pass-through message to its owner (the node, see
L{IConnectionOwner}) and keeps the connection alive with ticks:

    - the handshake must complete within the owner's C{setupTime}
      (Erlang's C{net_setuptime}, 7 s);
    - every C{tickTime / 4} seconds (C{net_ticktime}) a tick (an empty
      packet) is written if nothing else was, and a peer from which
      nothing was read for four such intervals in a row is dropped.

Nothing reaches the owner before the peer has proved it knows the cookie.
Bad input (junk, a wrong digest, an oversize packet, an undecodable term,
an unknown control message) closes that connection only, with one log
line: the connection logs handshake failures; the owner logs the end of an
established connection with the reason.

L{AcceptorProtocol} is the listening side, built by L{AcceptorFactory};
L{InitiatorProtocol} dials one node by name.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from vernemq.dist.etf import EtfError
from vernemq.dist.framing import (
    DEFAULT_MAX_PACKET,
    NO_MESSAGE,
    TICK,
    FramingError,
    PacketDecoder,
    decodePassThrough,
    encodePassThrough,
    frame2,
)
from vernemq.dist.handshake import (
    OUR_FLAGS,
    AcceptorHandshake,
    HandshakeError,
    HandshakeResult,
    InitiatorHandshake,
    SimultaneousConnect,
)

#: Tick intervals per C{net_ticktime} (Erlang's C{TICK_INTERVALS}).
TICKS_PER_TICKTIME = 4

#: The largest handshake packet accepted: a name is at most 1020 bytes.
MAX_HANDSHAKE_PACKET = 2048


class DistributionProtocolError(Exception):
    """A peer sent something the protocol does not allow; close the connection."""


class IConnectionOwner(Interface):
    """
    What a distribution connection needs from its node.
    """

    name = Attribute("This node's name, alive@host (str).")
    cookie = Attribute("The cookie (str).")
    creation = Attribute("This node's creation (int).")
    tickTime = Attribute("net_ticktime in seconds (float).")
    setupTime = Attribute("Seconds a handshake may take (float).")

    def arbitrate(protocol: DistributionProtocol, peerName: str) -> str:  # noqa: N805
        """
        The status to answer node C{peerName} with when it connects:
        C{ok}, C{ok_simultaneous}, C{nok}, C{alive} or C{not_allowed}.
        """

    def connectionUp(protocol: DistributionProtocol) -> None:  # noqa: N805
        """C{protocol} completed its handshake and may carry messages."""

    def dispatch(
        protocol: DistributionProtocol,  # noqa: N805
        control: tuple[Any, ...],
        message: Any,
    ) -> None:
        """
        One message from an established connection (C{message} is
        L{vernemq.dist.framing.NO_MESSAGE} when absent).

        @raise DistributionProtocolError: the message is not acceptable.
        """

    def connectionDown(protocol: DistributionProtocol, reason: str) -> None:  # noqa: N805
        """
        C{protocol} ended, after its handshake or not
        (C{protocol.result} tells).
        """


class DistributionProtocol(Protocol):
    """
    One distribution connection, in either role.

    @ivar result: the L{HandshakeResult} once established.
    @ivar peerName: the peer's node name once known.
    @ivar reason: why the connection ended (or is ending).
    """

    log = Logger()
    transport: Any

    #: The role, for log lines.
    role = "distribution"

    def __init__(
        self,
        owner: IConnectionOwner,
        reactor: Any,
        handshake: AcceptorHandshake | InitiatorHandshake,
        maxPacket: int = DEFAULT_MAX_PACKET,
    ) -> None:
        self._owner = owner
        self._reactor = reactor
        self._handshake = handshake
        self._decoder = PacketDecoder(2, MAX_HANDSHAKE_PACKET)
        self._maxPacket = maxPacket
        self._setupTimer: IDelayedCall | None = None
        self._ticker: LoopingCall | None = None
        self._read = False
        self._wrote = False
        self._silentIntervals = 0
        self._closing = False
        self.result: HandshakeResult | None = None
        self.reason: str | None = None
        #: The peer answered C{nok}: its own connection to us wins.
        self.simultaneous = False

    # -- introspection ------------------------------------------------------------

    @property
    def peerName(self) -> str | None:
        """The peer's node name, once it is known."""
        return self._handshake.peerName

    @property
    def established(self) -> bool:
        """Whether the handshake completed and the connection is open."""
        return self.result is not None and not self._closing

    def peerAddress(self) -> str:
        """The peer's address as C{host:port}, for log lines."""
        peer = self.transport.getPeer() if self.transport is not None else None
        host = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        return f"{host}:{port}" if host is not None else str(peer)

    # -- Protocol ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Start the setup timer; the initiator opens the handshake."""
        if self._closing:
            # Disconnected while its TCP connection was still being made.
            self.transport.abortConnection()
            return
        # Erlang's distribution sockets run without Nagle (dist_nodelay).
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        self._setupTimer = self._reactor.callLater(self._owner.setupTime, self._setupExpired)
        for packet in self._handshake.start():
            self.transport.write(frame2(packet))

    def dataReceived(self, data: bytes) -> None:
        """Frame, then run the handshake or dispatch messages."""
        if self._closing:
            return
        self._read = True
        decoder = self._decoder
        decoder.feed(data)
        try:
            while not self._closing:
                packet = decoder.next()
                if packet is None:
                    return
                if self.result is None:
                    self._handshakePacket(packet)
                elif packet:
                    control, message = decodePassThrough(packet)
                    self._owner.dispatch(self, control, message)
        except HandshakeError as error:
            if error.reply is not None:
                self.transport.write(frame2(error.reply))
            self.simultaneous = isinstance(error, SimultaneousConnect)
            self._handshakeFailed(error.reason, quiet=self.simultaneous)
        except (FramingError, EtfError, DistributionProtocolError) as error:
            self._fail(str(error))
        except Exception:
            self.log.failure(
                "distribution connection {peer} ({peerName}): unexpected error",
                peer=self.peerAddress(),
                peerName=self.peerName,
            )
            self._fail("internal error")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop the timers and tell the owner."""
        self._closing = True
        if self._setupTimer is not None and self._setupTimer.active():
            self._setupTimer.cancel()
        self._setupTimer = None
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        if self.reason is None:
            self.reason = "connection closed" if self.result is not None else "closed in handshake"
        self._owner.connectionDown(self, self.reason)

    # -- handshake --------------------------------------------------------------------

    def _handshakePacket(self, packet: bytes) -> None:
        for reply in self._handshake.receive(packet):
            self.transport.write(frame2(reply))
        result = self._handshake.result
        if result is None:
            return
        self.result = result
        self._decoder.headerSize = 4
        self._decoder.maxLength = self._maxPacket
        if self._setupTimer is not None and self._setupTimer.active():
            self._setupTimer.cancel()
        self._setupTimer = None
        self._startTicking()
        self._owner.connectionUp(self)

    def _handshakeFailed(self, reason: str, quiet: bool = False) -> None:
        self.reason = reason
        if not quiet:
            self.log.warn(
                "{role} handshake with {peer} failed: {reason}",
                role=self.role,
                peer=self.peerAddress(),
                peerName=self.peerName,
                reason=reason,
            )
        self._close()

    def _setupExpired(self) -> None:
        self._setupTimer = None
        if self.result is None and not self._closing:
            self._handshakeFailed("handshake not completed in time")

    # -- connected phase --------------------------------------------------------------

    def _startTicking(self) -> None:
        ticker = self._ticker = LoopingCall(self._tick)
        ticker.clock = self._reactor
        self._read = self._wrote = False
        ticker.start(self._owner.tickTime / TICKS_PER_TICKTIME, now=False)

    def _tick(self) -> None:
        if not self._wrote:
            self.transport.write(TICK)
        self._wrote = False
        if self._read:
            self._silentIntervals = 0
        else:
            self._silentIntervals += 1
            if self._silentIntervals >= TICKS_PER_TICKTIME:
                self._fail(f"nothing received for {self._owner.tickTime:g} s (net_ticktime)")
                return
        self._read = False

    def send(self, control: tuple[Any, ...], message: Any = NO_MESSAGE) -> None:
        """
        Send one control message (and its message term) if established;
        otherwise drop it, as Erlang drops messages to a node that is down.
        """
        if self.result is None or self._closing:
            return
        self._wrote = True
        self.transport.write(encodePassThrough(control, message))

    def disconnect(self, reason: str = "disconnected") -> None:
        """Close the connection (C{erlang:disconnect_node/1})."""
        if not self._closing:
            self.reason = reason
            self._close()

    def _fail(self, reason: str) -> None:
        if self.result is None:
            self._handshakeFailed(reason)
            return
        self.reason = reason
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.transport is not None:
            self.transport.abortConnection()
        # else still dialling (an attempt that lost a simultaneous connect,
        # or failed): connectionMade aborts it.


class AcceptorProtocol(DistributionProtocol):
    """The listening side of a distribution connection."""

    role = "incoming"

    def __init__(
        self,
        owner: IConnectionOwner,
        reactor: Any,
        challenge: Callable[[], int] | None = None,
        maxPacket: int = DEFAULT_MAX_PACKET,
    ) -> None:
        draw = challenge or _randomChallenge
        handshake = AcceptorHandshake(
            owner.name,
            owner.cookie,
            owner.creation,
            draw(),
            lambda peerName: owner.arbitrate(self, peerName),
        )
        super().__init__(owner, reactor, handshake, maxPacket)


class InitiatorProtocol(DistributionProtocol):
    """The dialling side of a distribution connection, towards C{peerName}."""

    role = "outgoing"

    def __init__(
        self,
        owner: IConnectionOwner,
        reactor: Any,
        peerName: str,
        challenge: Callable[[], int] | None = None,
        maxPacket: int = DEFAULT_MAX_PACKET,
        flags: int = OUR_FLAGS,
    ) -> None:
        draw = challenge or _randomChallenge
        handshake = InitiatorHandshake(
            owner.name, owner.cookie, owner.creation, draw(), peerName, flags
        )
        super().__init__(owner, reactor, handshake, maxPacket)


def _randomChallenge() -> int:
    return secrets.randbits(32)


class AcceptorFactory(Factory):
    """Builds an L{AcceptorProtocol} per incoming connection."""

    noisy = False

    def __init__(
        self,
        owner: IConnectionOwner,
        reactor: Any,
        maxPacket: int = DEFAULT_MAX_PACKET,
    ) -> None:
        self.owner = owner
        self._reactor = reactor
        self.maxPacket = maxPacket

    def buildProtocol(self, addr: Any) -> AcceptorProtocol:
        """A new acceptor for the node."""
        protocol = AcceptorProtocol(self.owner, self._reactor, maxPacket=self.maxPacket)
        protocol.factory = self
        return protocol
