# -*- test-case-name: tests.test_dist_epmd -*-
"""
The epmd server: a thin L{Protocol} per connection over the sans-IO codec,
and a L{Factory} that owns the registry.

Connection model, as in Erlang's epmd: one request per connection.  Every
request but a successful ALIVE2 is answered with one C{write()} and the
connection closed.  A successful ALIVE2 keeps the connection open and the
registration lives exactly as long as it: end of connection, a read error
or any further byte unregisters the node.  A connection that has not
completed a request within C{packetTimeout} seconds of its last byte is
closed.  Bad input (garbage, truncated or oversize requests, NUL bytes in
names, unknown codes) closes that one connection without a reply, with
one log line; ALIVE2, DUMP, KILL and STOP from a peer that is not local
are ignored the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.dist.epmd import codec
from vernemq.dist.epmd.codec import (
    Alive2Request,
    DumpRequest,
    EpmdProtocolError,
    KillRequest,
    NamesRequest,
    NodeEntry,
    PortPlease2Request,
    Request,
    RequestReader,
    StopRequest,
)
from vernemq.dist.epmd.registry import (
    IRegistrationOwner,
    Registration,
    RegistrationRefused,
    Registry,
)

#: Seconds an idle, unregistered connection stays open (epmd's default).
DEFAULT_PACKET_TIMEOUT = 60.0


def _hostOf(address: IAddress) -> str | None:
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def isLocalPeer(peer: IAddress, local: IAddress) -> bool:
    """
    epmd's local-peer rule: a loopback peer (127.x.x.x, C{::1}, or
    IPv4-mapped loopback), or a peer whose address is the socket's own
    local address.
    """
    peerHost = _hostOf(peer)
    if peerHost is None:
        return False
    try:
        address = ip_address(peerHost.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if address.is_loopback or (mapped is not None and mapped.is_loopback):
        return True
    return peerHost == _hostOf(local)


@implementer(IRegistrationOwner)
class EpmdServerProtocol(Protocol):
    """
    One epmd connection.

    @ivar registration: the node this connection registered, if any.
    """

    log = Logger()
    factory: EpmdServerFactory
    transport: Any

    def __init__(self) -> None:
        self._reader = RequestReader()
        self._timer: IDelayedCall | None = None
        self.registration: Registration | None = None
        self._done = False

    # -- Protocol ----------------------------------------------------------

    def connectionMade(self) -> None:
        """Start the idle timer and join the factory's connections."""
        self.factory.connections.add(self)
        self._resetTimer()

    def dataReceived(self, data: bytes) -> None:
        """Frame the request; dispatch it once complete."""
        if self._done:
            return
        if self.registration is not None:
            self._close("data on a registration connection", unregister=True)
            return
        try:
            payload = self._reader.feed(data)
            if payload is None:
                self._resetTimer()
                return
            request = codec.parseRequest(payload)
        except EpmdProtocolError as error:
            self._close(str(error))
            return
        self._cancelTimer()
        self._dispatch(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Unregister the node this connection held, if any."""
        self._done = True
        self._cancelTimer()
        self.factory.connections.discard(self)
        self._unregister()

    # -- IRegistrationOwner -----------------------------------------------

    def evicted(self) -> None:
        """STOP removed our node: close the registration connection."""
        self.registration = None
        self._done = True
        self.transport.loseConnection()

    # -- requests ------------------------------------------------------------

    def _dispatch(self, request: Request) -> None:
        if isinstance(request, codec.LOCAL_ONLY) and not isLocalPeer(
            self.transport.getPeer(), self.transport.getHost()
        ):
            self._close(f"{type(request).__name__} from a non-local peer")
            return
        if isinstance(request, Alive2Request):
            self._alive2(request.entry)
        elif isinstance(request, PortPlease2Request):
            self._reply(codec.encodePort2Reply(self.factory.lookup(request.name)))
        elif isinstance(request, NamesRequest):
            self._reply(self.factory.names())
        elif isinstance(request, DumpRequest):
            self._reply(self.factory.dump())
        elif isinstance(request, KillRequest):
            self._kill()
        elif isinstance(request, StopRequest):
            self._stop(request.name)

    def _alive2(self, entry: NodeEntry) -> None:
        try:
            registration = self.factory.registry.register(entry, self)
        except RegistrationRefused as refused:
            self.log.info(
                "epmd: refused to register {name!r} from {peer}: {reason}",
                name=entry.textName,
                peer=self._peer(),
                reason=str(refused),
            )
            # Like epmd, the refusal leaves the connection open; it is
            # closed by the peer, by any further byte or by the timeout.
            self.transport.write(codec.encodeAlive2Error(entry.highVsn))
            self._reader = RequestReader()
            self._reader.complete = True
            self._resetTimer()
            return
        self.registration = registration
        self.log.debug(
            "epmd: registered {name!r} at port {port} (creation {creation})",
            name=entry.textName,
            port=entry.port,
            creation=registration.creation,
        )
        self.transport.write(
            codec.encodeAlive2Reply(
                0, codec.reportedCreation(registration.creation, entry.highVsn), entry.highVsn
            )
        )

    def _kill(self) -> None:
        if len(self.factory.registry) and not self.factory.relaxed:
            self._reply(codec.KILL_REFUSED)
            return
        self._reply(codec.KILL_OK)
        self.factory.kill()

    def _stop(self, name: bytes) -> None:
        if not self.factory.relaxed:
            self._close("STOP without relaxed command check")
            return
        registration = self.factory.registry.lookup(name)
        if registration is None:
            self._reply(codec.NOEXIST_STOPPED)
            return
        self.factory.registry.unregister(registration)
        registration.owner.evicted()
        self._reply(codec.STOPPED)

    # -- helpers ---------------------------------------------------------------

    def _reply(self, data: bytes) -> None:
        self._done = True
        self.transport.write(data)
        self.transport.loseConnection()

    def _close(self, reason: str, unregister: bool = False) -> None:
        self.log.info(
            "epmd: closing connection from {peer}: {reason}", peer=self._peer(), reason=reason
        )
        self._done = True
        self._cancelTimer()
        if unregister:
            self._unregister()
        self.transport.loseConnection()

    def _unregister(self) -> None:
        registration, self.registration = self.registration, None
        if registration is not None and self.factory.registry.unregister(registration):
            self.log.debug(
                "epmd: unregistered {name!r}", name=registration.entry.textName
            )

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        host = _hostOf(peer)
        port = getattr(peer, "port", None)
        return f"{host}:{port}" if host is not None else str(peer)

    def _resetTimer(self) -> None:
        self._cancelTimer()
        self._timer = self.factory.clock.callLater(self.factory.packetTimeout, self._timedOut)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timedOut(self) -> None:
        self._timer = None
        self._close("no complete request before the packet timeout")


class EpmdServerFactory(Factory[EpmdServerProtocol]):
    """
    An epmd: the registry and the connections that serve it.

    @ivar registry: the nodes.
    @ivar clock: the timer source for packet timeouts.
    @ivar port: the port epmd listens on, reported by NAMES and DUMP.
    @ivar relaxed: C{-relaxed_command_check}: KILL with live nodes and STOP
        are allowed.
    @ivar packetTimeout: seconds an idle connection stays open.
    @ivar connections: the open connections.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        clock: IReactorTime,
        port: int,
        relaxed: bool = False,
        packetTimeout: float = DEFAULT_PACKET_TIMEOUT,
        onKill: Callable[[], None] | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.clock = clock
        self.port = port
        self.relaxed = relaxed
        self.packetTimeout = packetTimeout
        self.registry = registry if registry is not None else Registry(clock)
        self.connections: set[EpmdServerProtocol] = set()
        self._onKill = onKill

    def buildProtocol(self, addr: IAddress | None) -> EpmdServerProtocol:
        """A protocol for one accepted connection."""
        protocol = EpmdServerProtocol()
        protocol.factory = self
        return protocol

    def lookup(self, name: bytes) -> NodeEntry | None:
        """The entry registered as C{name}, if any."""
        registration = self.registry.lookup(name)
        return registration.entry if registration is not None else None

    def names(self) -> bytes:
        """The NAMES reply."""
        return codec.encodeNamesReply(self.port, [r.entry for r in self.registry.live()])

    def dump(self) -> bytes:
        """The DUMP reply."""
        return codec.encodeDumpReply(
            self.port,
            [(r.entry, r.fd) for r in self.registry.live()],
            self.registry.unused(),
        )

    def kill(self) -> None:
        """A KILL was accepted: hand over to whoever runs this epmd."""
        self.log.info("epmd: killed by a KILL request")
        if self._onKill is not None:
            self._onKill()

    def closeAll(self) -> None:
        """Close every connection (their registrations go with them)."""
        for connection in list(self.connections):
            connection.transport.loseConnection()
