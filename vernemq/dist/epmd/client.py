# -*- test-case-name: tests.test_dist_epmd -*-
"""
A Twisted epmd client.

L{EpmdClient} talks to one epmd (by default C{127.0.0.1:4369}) through a
client endpoint it builds on the reactor it is given:

    - L{EpmdClient.register} sends ALIVE2 and keeps the connection, which
      I{is} the registration; it fires with a L{NodeRegistration} carrying
      the creation, whose L{NodeRegistration.whenLost} fires when the
      connection ends (epmd went away) and whose L{NodeRegistration.close}
      unregisters;
    - L{EpmdClient.portPlease} looks a node up (L{None} when unknown);
    - L{EpmdClient.names} lists the registered nodes;
    - L{EpmdClient.request} sends any framed request and returns the raw
      reply (the CLI's DUMP, KILL and STOP).

Every method returns a L{Deferred}; the work is done by coroutines wrapped
with L{Deferred.fromCoroutine}.  A reply that does not come within
C{timeout} seconds aborts the connection and fails with L{EpmdTimeout}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from vernemq.dist.epmd import codec
from vernemq.dist.epmd.codec import EpmdProtocolError, NodeEntry

#: epmd's well-known port.
EPMD_PORT = 4369


class EpmdTimeout(Exception):
    """epmd did not answer in time."""


class EpmdRegistrationError(Exception):
    """
    epmd refused the registration (Result != 0): Erlang reports this as
    C{duplicate_name}.

    @ivar result: the result byte.
    """

    def __init__(self, name: str, result: int) -> None:
        super().__init__(f"epmd refused to register {name!r} (result {result})")
        self.result = result


class _ReplyTimer:
    """Abort a connection that stays silent for too long."""

    def __init__(self, reactor: Any, timeout: float, protocol: Protocol) -> None:
        self._protocol = protocol
        self.call: IDelayedCall = reactor.callLater(timeout, self._expired)
        self.expired = False

    def _expired(self) -> None:
        self.expired = True
        transport: Any = self._protocol.transport
        if transport is not None:
            transport.abortConnection()

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


class _OneShotProtocol(Protocol):
    """Send one request; collect everything until epmd closes."""

    transport: Any

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._chunks: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(b"".join(self._chunks))


class _AliveProtocol(Protocol):
    """Send ALIVE2; wait for the reply; then hold the connection."""

    transport: Any

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._buffer = b""
        self.reply: Deferred[tuple[int, int]] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        if self.reply.called:
            return
        self._buffer += data
        try:
            parsed = codec.parseAlive2Reply(self._buffer)
        except EpmdProtocolError as error:
            self.transport.abortConnection()
            self.reply.errback(error)
            return
        if parsed is not None:
            self.reply.callback(parsed)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.reply.called:
            self.reply.errback(ConnectionError("epmd closed the connection before replying"))
        self.lost.callback(None)


class NodeRegistration:
    """
    A live registration with epmd: as long as its connection.

    @ivar entry: what was registered.
    @ivar creation: the creation epmd handed out.
    """

    def __init__(self, entry: NodeEntry, creation: int, protocol: _AliveProtocol) -> None:
        self.entry = entry
        self.creation = creation
        self._protocol = protocol
        self._lost = False
        self._waiting: list[Deferred[None]] = []
        protocol.lost.addCallback(self._connectionLost)

    @property
    def active(self) -> bool:
        """Whether the registration connection is still open."""
        return not self._lost

    def _connectionLost(self, _: None) -> None:
        self._lost = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def whenLost(self) -> Deferred[None]:
        """A L{Deferred} that fires when the registration ends."""
        d: Deferred[None] = Deferred()
        if self._lost:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d

    def close(self) -> Deferred[None]:
        """Unregister by closing the connection; fires once it is closed."""
        d = self.whenLost()
        if not self._lost:
            self._protocol.transport.loseConnection()
        return d


class EpmdClient:
    """
    Talk to the epmd at C{host:port}.

    @ivar host: epmd's address (C{127.0.0.1} unless told).
    @ivar port: epmd's port.
    @ivar timeout: seconds to wait for connecting and for each reply.
    """

    def __init__(
        self,
        reactor: Any,
        host: str = "127.0.0.1",
        port: int = EPMD_PORT,
        timeout: float = 5.0,
    ) -> None:
        self._reactor = reactor
        self.host = host
        self.port = port
        self.timeout = timeout

    def _endpoint(self) -> IStreamClientEndpoint:
        if ":" in self.host:
            return TCP6ClientEndpoint(self._reactor, self.host, self.port, timeout=self.timeout)
        return TCP4ClientEndpoint(self._reactor, self.host, self.port, timeout=self.timeout)

    # -- public API ---------------------------------------------------------------

    def register(
        self,
        name: str,
        port: int,
        *,
        nodeType: int = codec.NODE_TYPE_NORMAL,
        protocol: int = 0,
        highVsn: int = 6,
        lowVsn: int = 5,
        extra: bytes = b"",
    ) -> Deferred[NodeRegistration]:
        """
        Register node C{name} listening on C{port}; fires with the
        L{NodeRegistration} (the connection stays open), or fails with
        L{EpmdRegistrationError} for a refusal (a duplicate name), a
        connection error or L{EpmdTimeout}.
        """
        entry = NodeEntry(name.encode("utf-8"), port, nodeType, protocol, highVsn, lowVsn, extra)
        return Deferred.fromCoroutine(self._register(entry))

    def portPlease(self, name: str) -> Deferred[NodeEntry | None]:
        """
        Where node C{name} (the part before C{@}) listens: its L{NodeEntry},
        or L{None} when epmd does not know it.
        """
        return Deferred.fromCoroutine(self._portPlease(name))

    def names(self) -> Deferred[tuple[int, list[tuple[str, int]]]]:
        """
        C{(epmdPort, [(name, port), ...])}, newest registration first.
        """
        return Deferred.fromCoroutine(self._names())

    def request(self, data: bytes) -> Deferred[bytes]:
        """
        Send the framed request C{data}; fire with everything epmd writes
        before it closes the connection.
        """
        return Deferred.fromCoroutine(self._oneShot(data))

    # -- coroutines ---------------------------------------------------------------

    async def _oneShot(self, data: bytes) -> bytes:
        protocol = _OneShotProtocol(data)
        await connectProtocol(self._endpoint(), protocol)
        timer = _ReplyTimer(self._reactor, self.timeout, protocol)
        try:
            reply = await protocol.done
        finally:
            timer.cancel()
        if timer.expired:
            raise EpmdTimeout(f"epmd at {self.host}:{self.port} did not answer")
        return reply

    async def _portPlease(self, name: str) -> NodeEntry | None:
        reply = await self._oneShot(codec.encodePortPlease2Request(name.encode("utf-8")))
        return codec.parsePort2Reply(reply)

    async def _names(self) -> tuple[int, list[tuple[str, int]]]:
        return codec.parseNamesReply(await self._oneShot(codec.encodeNamesRequest()))

    async def _register(self, entry: NodeEntry) -> NodeRegistration:
        protocol = _AliveProtocol(codec.encodeAlive2Request(entry))
        await connectProtocol(self._endpoint(), protocol)
        timer = _ReplyTimer(self._reactor, self.timeout, protocol)
        try:
            result, creation = await protocol.reply
        except ConnectionError:
            if timer.expired:
                raise EpmdTimeout(f"epmd at {self.host}:{self.port} did not answer") from None
            raise
        finally:
            timer.cancel()
        if result != 0:
            protocol.transport.loseConnection()
            raise EpmdRegistrationError(entry.textName, result)
        return NodeRegistration(entry, creation, protocol)
