# -*- test-case-name: tests.test_dist_epmd_service -*-
"""
The node's epmd service: serve epmd, or register with the one that runs.

Modes (C{erlang.epmd.mode}):

    - C{auto} (default): if nothing answers on the epmd port, serve epmd
      here; otherwise register this node's publications with the epmd
      there.  If that epmd goes away, take over: serve epmd if the port is
      free, else register with whoever took it first.  A host's nodes are
      findable again within a second or two (Erlang's nodes, by contrast,
      stay unregistered until restarted).
    - C{serve}: always serve; if the port is busy, log it once and keep
      retrying in the background.
    - C{client}: never serve; register with the running epmd and register
      again whenever it comes back.
    - C{off}: nothing.

What is published.  The distribution listener arrives with issue 5; it
will call L{EpmdService.publish} with the node's short name and its
distribution port, and receives every creation epmd hands out through
the callback it passes (creation changes when epmd is replaced).  Until
then a node publishes nothing, rather than registering its name with a
placeholder port that Erlang nodes would try to connect to.  So today a
node in C{auto} or C{serve} mode serves epmd (real Erlang nodes on the
host can register with it), and a node in C{auto} mode with nothing to
publish checks once every L{EpmdService.probeInterval} seconds that an
epmd still answers, so that it takes over serving when the serving node
stops.  With publications it needs no polling: the end of a registration
connection is the signal.

Nothing here blocks or fails the node's start: C{startService} only
schedules the first attempt, and a busy port is a condition that is
retried, never an error.  A KILL request accepted by the epmd this node
serves (no node registered, or C{-relaxed_command_check}) stops serving
for the rest of the node's life; the node keeps its publications
registered with whichever epmd is started later.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.dist.epmd.client import EPMD_PORT, EpmdClient, EpmdRegistrationError, NodeRegistration
from vernemq.dist.epmd.codec import NODE_TYPE_NORMAL, NodeEntry, reportedCreation
from vernemq.dist.epmd.registry import IRegistrationOwner, Registration, RegistrationRefused
from vernemq.dist.epmd.server import EpmdServerFactory

#: The modes of L{EpmdService}.
MODES = ("auto", "serve", "client", "off")


@implementer(IRegistrationOwner)
@dataclass(eq=False)
class Publication:
    """
    A node this process wants epmd to know.

    @ivar entry: what to register.
    @ivar onCreation: called with the creation after every registration.
    @ivar remote: the registration with another epmd, if any.
    @ivar local: the registration in the epmd we serve, if any.
    @ivar refused: an operator removed it (C{epmd -stop}); not registered again.
    @ivar warned: a "name in use" refusal was logged already.
    @ivar waiting: L{Deferred}s waiting for the first creation.
    """

    entry: NodeEntry
    onCreation: Callable[[int], None] | None = None
    remote: NodeRegistration | None = None
    local: Registration | None = None
    refused: bool = False
    warned: bool = False
    waiting: list[Deferred[int]] = field(default_factory=list)

    def registered(self) -> bool:
        """Whether some epmd knows this node right now."""
        if self.local is not None and self.local.active:
            return True
        return self.remote is not None and self.remote.active

    def evicted(self) -> None:
        """An operator forcibly unregistered it (STOP): keep it off."""
        self.local = None
        self.refused = True

    def created(self, creation: int) -> None:
        """Tell whoever waits about a new creation."""
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(creation)
        if self.onCreation is not None:
            self.onCreation(creation)


class EpmdService(Service):
    """
    Serve epmd or register with it, as L{MODES} describe.

    @ivar mode: one of L{MODES}.
    @ivar port: the epmd port.
    @ivar addresses: where to listen when serving.
    @ivar server: the epmd factory while serving, else L{None}.
    @ivar retryInterval: seconds between attempts after a failure.
    @ivar probeInterval: seconds between liveness checks of a foreign epmd
        when nothing is registered with it.
    """

    log = Logger()
    name = "epmd"

    def __init__(
        self,
        reactor: Any,
        mode: str = "auto",
        port: int = EPMD_PORT,
        addresses: tuple[str, ...] = ("0.0.0.0",),
        clientHost: str = "127.0.0.1",
        retryInterval: float = 0.5,
        probeInterval: float = 1.0,
        servePortBusyInterval: float = 5.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown epmd mode {mode!r}")
        self._reactor = reactor
        self.mode = mode
        self.port = port
        self.addresses = addresses
        self.retryInterval = retryInterval
        self.probeInterval = probeInterval
        self.servePortBusyInterval = servePortBusyInterval
        self.client = EpmdClient(reactor, clientHost, port, timeout=2.0)
        self.server: EpmdServerFactory | None = None
        self._ports: list[IListeningPort] = []
        self._publications: dict[bytes, Publication] = {}
        self._scheduled: IDelayedCall | None = None
        self._working: Deferred[float | None] | None = None
        self._again = False
        self._killed = False
        self._busyLogged = False

    # -- public API -------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether this process serves epmd right now."""
        return self.server is not None

    def publish(
        self,
        name: str,
        port: int,
        *,
        nodeType: int = NODE_TYPE_NORMAL,
        highVsn: int = 6,
        lowVsn: int = 5,
        extra: bytes = b"",
        onCreation: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        Keep node C{name} at distribution port C{port} registered with
        epmd, across epmd restarts and takeovers.  Fires with the first
        creation; C{onCreation} is called with every creation.  In mode
        C{off} nothing is registered and the L{Deferred} never fires.
        """
        entry = NodeEntry(name.encode("utf-8"), port, nodeType, 0, highVsn, lowVsn, extra)
        publication = Publication(entry, onCreation)
        self._publications[entry.name] = publication
        d: Deferred[int] = Deferred()
        publication.waiting.append(d)
        self._kick()
        return d

    def unpublish(self, name: str) -> None:
        """Stop publishing node C{name} and unregister it."""
        publication = self._publications.pop(name.encode("utf-8"), None)
        if publication is not None:
            self._release(publication)

    def publications(self) -> list[Publication]:
        """What this process publishes."""
        return list(self._publications.values())

    # -- IService ---------------------------------------------------------------

    def startService(self) -> None:
        """Schedule the first attempt; never block the node's start."""
        super().startService()
        if self.mode != "off":
            self._kick()

    def stopService(self) -> Deferred[None] | None:
        """Unregister everything and stop serving."""
        super().stopService()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        if self._working is not None:
            self._working.cancel()
        for publication in self._publications.values():
            self._release(publication)
        return self._stopServing()

    # -- the loop ------------------------------------------------------------------

    def _kick(self, delay: float = 0.0) -> None:
        """Run L{_converge} after C{delay} seconds (or sooner if asked)."""
        if not self.running or self.mode == "off":
            return
        if self._working is not None:
            self._again = True
            return
        if self._scheduled is not None and self._scheduled.active():
            if self._scheduled.getTime() <= self._reactor.seconds() + delay:
                return
            self._scheduled.cancel()
        self._scheduled = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        self._scheduled = None
        self._again = False
        working = self._working = Deferred.fromCoroutine(self._converge())
        working.addCallbacks(self._ran, self._failed)

    def _failed(self, failure: Failure) -> None:
        self._ran(self._unexpected(failure))

    def _unexpected(self, failure: Failure) -> float | None:
        if failure.check(CancelledError):
            return None
        self.log.failure("epmd service: unexpected error", failure)
        return self.retryInterval

    def _ran(self, delay: float | None) -> None:
        self._working = None
        if self._again:
            self._kick()
        elif delay is not None:
            self._kick(delay)

    async def _converge(self) -> float | None:
        """
        One step towards "every publication is registered with an epmd";
        returns the delay before the next step, or L{None} to wait for an
        event (a lost registration, a new publication).
        """
        if self.server is not None:
            self._registerLocally()
            return None
        if self.mode == "serve" and not self._killed:
            return self._serveOrRetry(self.servePortBusyInterval)
        try:
            await self.client.names()
        except Exception:
            if not self.running:
                return None
            if self.mode == "auto" and not self._killed:
                return self._serveOrRetry(self.retryInterval)
            return self.retryInterval
        if not self.running:
            return None
        pending = [p for p in self._publications.values() if not p.registered() and not p.refused]
        if pending:
            results = await DeferredList(
                [Deferred.fromCoroutine(self._registerRemotely(p)) for p in pending],
                consumeErrors=True,
            )
            if not all(ok and done for ok, done in results):
                return self.retryInterval
        if any(p.remote is not None and p.remote.active for p in self._publications.values()):
            return None
        return self.probeInterval if self.mode == "auto" and not self._killed else None

    async def _registerRemotely(self, publication: Publication) -> bool:
        entry = publication.entry
        try:
            registration = await self.client.register(
                entry.textName,
                entry.port,
                nodeType=entry.nodeType,
                highVsn=entry.highVsn,
                lowVsn=entry.lowVsn,
                extra=entry.extra,
            )
        except EpmdRegistrationError:
            if not publication.warned:
                publication.warned = True
                self.log.warn(
                    "epmd on port {port} refused {name!r}: the name is in use; retrying",
                    port=self.port,
                    name=entry.textName,
                )
            return False
        except Exception as error:
            self.log.info(
                "epmd on port {port}: could not register {name!r}: {error}",
                port=self.port,
                name=entry.textName,
                error=str(error),
            )
            return False
        if not self.running or self._publications.get(entry.name) is not publication:
            registration.close()
            return True
        publication.remote = registration
        publication.warned = False
        registration.whenLost().addCallback(lambda _: self._remoteLost(publication))
        self.log.info(
            "registered {name!r} (port {nodePort}) with the epmd on port {port}",
            name=entry.textName,
            nodePort=entry.port,
            port=self.port,
        )
        publication.created(registration.creation)
        return True

    def _remoteLost(self, publication: Publication) -> None:
        if not self.running or self._publications.get(publication.entry.name) is not publication:
            return
        self.log.info(
            "lost the epmd registration of {name!r}; registering again",
            name=publication.entry.textName,
        )
        self._kick()

    def _registerLocally(self) -> None:
        server = self.server
        assert server is not None
        for publication in self._publications.values():
            if publication.registered() or publication.refused:
                continue
            try:
                registration = server.registry.register(publication.entry, publication)
            except RegistrationRefused as refused:
                self.log.warn(
                    "cannot register {name!r} with our own epmd: {reason}",
                    name=publication.entry.textName,
                    reason=str(refused),
                )
                continue
            publication.local = registration
            publication.created(
                reportedCreation(registration.creation, publication.entry.highVsn)
            )

    def _release(self, publication: Publication) -> None:
        remote, publication.remote = publication.remote, None
        if remote is not None:
            remote.close()
        local, publication.local = publication.local, None
        if local is not None and self.server is not None:
            self.server.registry.unregister(local)

    # -- serving -----------------------------------------------------------------

    def _serveOrRetry(self, retry: float) -> float | None:
        """Start serving now, or say when to try again."""
        server = EpmdServerFactory(self._reactor, self.port, onKill=self._killedByRequest)
        ports: list[IListeningPort] = []
        try:
            for address in self.addresses:
                ports.append(self._reactor.listenTCP(self.port, server, interface=address))
        except CannotListenError as error:
            for port in ports:
                port.stopListening()
            inUse = getattr(error.socketError, "errno", None) == errno.EADDRINUSE
            if self.mode == "serve" and not self._busyLogged:
                self._busyLogged = True
                self.log.error(
                    "cannot serve epmd on port {port}: {error}; retrying",
                    port=self.port,
                    error=str(error.socketError),
                )
            elif not inUse:
                self.log.warn(
                    "cannot serve epmd on port {port}: {error}",
                    port=self.port,
                    error=str(error.socketError),
                )
            return retry
        for publication in self._publications.values():
            remote, publication.remote = publication.remote, None
            if remote is not None:
                remote.close()
        self.server = server
        self._ports = ports
        self._busyLogged = False
        self.log.info(
            "serving epmd on port {port} ({addresses})",
            port=self.port,
            addresses=", ".join(self.addresses),
        )
        self._registerLocally()
        return None

    def _stopServing(self) -> Deferred[None] | None:
        server, self.server = self.server, None
        ports, self._ports = self._ports, []
        if server is None:
            return None
        server.closeAll()
        for publication in self._publications.values():
            publication.local = None
        stopped = [d for d in (p.stopListening() for p in ports) if d is not None]
        if not stopped:
            return None
        return DeferredList(stopped).addCallback(lambda _: None)

    def _killedByRequest(self) -> None:
        self.log.warn("epmd on port {port} was killed by a local KILL request", port=self.port)
        self._killed = True
        self._stopServing()
        self._kick(self.retryInterval)


def _atoi(text: str) -> int:
    digits = ""
    for ch in text.strip():
        if not (ch.isascii() and ch.isdigit()):
            break
        digits += ch
    return int(digits) if digits else 0


def epmdSettings(
    config: Mapping[str, Any], lineOf: Callable[[str], int | None], environ: Mapping[str, str]
) -> tuple[str, int, tuple[str, ...]]:
    """
    C{(mode, port, addresses)} for the node: the vernemq.conf keys
    C{erlang.epmd.mode}, C{erlang.epmd.port} and C{erlang.epmd.address};
    a port or address the file does not set comes from C{ERL_EPMD_PORT} /
    C{ERL_EPMD_ADDRESS}, as for Erlang's own programs.  Addresses given
    explicitly are served together with C{127.0.0.1}, as epmd does.
    """
    port: int = config["erlang.epmd.port"]
    if lineOf("erlang.epmd.port") is None and environ.get("ERL_EPMD_PORT"):
        fromEnv = _atoi(environ["ERL_EPMD_PORT"])
        if 0 < fromEnv < 65536:
            port = fromEnv
    rawAddress: str | None = config["erlang.epmd.address"]
    if lineOf("erlang.epmd.address") is None and environ.get("ERL_EPMD_ADDRESS"):
        rawAddress = environ["ERL_EPMD_ADDRESS"]
    addresses: tuple[str, ...] = ("0.0.0.0",)
    if rawAddress:
        listed = [a for a in rawAddress.replace(",", " ").split() if a]
        if listed:
            addresses = tuple(dict.fromkeys([*listed, "127.0.0.1"]))
    return config["erlang.epmd.mode"], port, addresses


def epmdServiceFromConfig(
    config: Any, reactor: Any, environ: Mapping[str, str] | None = None
) -> EpmdService | None:
    """
    The node's L{EpmdService} as C{config} (a L{vernemq.config.Config})
    describes it, or L{None} when C{erlang.epmd.mode = off}.
    """
    mode, port, addresses = epmdSettings(
        config, config.line_of, os.environ if environ is None else environ
    )
    if mode == "off":
        return None
    return EpmdService(reactor, mode=mode, port=port, addresses=addresses)
