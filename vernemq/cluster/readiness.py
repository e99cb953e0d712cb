# -*- test-case-name: tests.test_cluster_membership -*-
"""
Readiness: which members answer, and whether the cluster is split.

A member is B{running} when its distribution connection is up and it
answered a probe recently (and, once the data channel reports on it, its
data link is up or still being set up).  The cluster is B{ready} when every
member is running; otherwise it is in a B{netsplit}, and the broker gates
CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE per the four
C{allow_*_during_netsplit} flags (see L{vernemq.broker.broker}).

How fast
========

VerneMQ rechecks every 10 s (2 s while not ready) and relies on Erlang's
C{net_ticktime} (60 s) to notice a silent peer, so its users see about a
minute of uncertainty.  Here:

  - a connection that closes (a killed process, a refused reconnect) marks
    its member not running at once (C{nodedown});
  - every member is probed every C{netsplit_detection_time / 5} (1 s by
    default) with C{vmq:cluster_gossip} (which also spreads membership);
    a member that has not answered for C{netsplit_detection_time -
    interval} is not running at the next tick, so a silent peer is
    detected within C{netsplit_detection_time} (5 s by default);
  - a member that is not running is probed (and so redialled) every
    C{netsplit_detection_time}, and at once when it connects to us.

A transition from ready to not ready counts C{netsplit_detected}; the
reverse counts C{netsplit_resolved} (VerneMQ's metric names).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.cluster.membership import Membership
from vernemq.cluster.transport import IClusterTransport
from vernemq.dist.etf import Atom
from vernemq.dist.node import INodeObserver

#: Data-link states that count as running (VerneMQ: C{up} or C{init}).
LINK_OK = frozenset({"up", "init"})


@implementer(INodeObserver)
class Readiness(Service):
    """
    Probe the members; keep the per-member Running flags, the cluster's
    readiness and the netsplit counters.

    @ivar detectionTime: seconds within which a silent member is detected.
    @ivar interval: seconds between probes of a running member.
    @ivar netsplit_detected: ready -> not ready transitions.
    @ivar netsplit_resolved: not ready -> ready transitions.
    @ivar linkStatus: the data channel's state of the link to a node
        (C{"up"}, C{"init"}, C{"down"}...), or L{None} while there is no
        data channel to ask.
    """

    log = Logger()
    name = "readiness"

    def __init__(
        self,
        membership: Membership,
        transport: IClusterTransport,
        reactor: IReactorTime,
        detectionTime: float = 5.0,
        rpcTimeout: float = 5.0,
        linkStatus: Callable[[str], str | None] | None = None,
    ) -> None:
        self.membership = membership
        self.transport = transport
        self._reactor = reactor
        self.detectionTime = float(detectionTime)
        self.interval = self.detectionTime / 5
        self.rpcTimeout = min(float(rpcTimeout), self.detectionTime)
        self.linkStatus = linkStatus
        self.netsplit_detected = 0
        self.netsplit_resolved = 0
        self._lastAnswer: dict[str, float] = {}
        self._lastProbe: dict[str, float] = {}
        self._probing: set[str] = set()
        self._new: set[str] = set()
        self._running: dict[str, bool] = {}
        self._ready: bool | None = None
        self._splitCounted = False
        self._observers: list[Callable[[bool], None]] = []
        self._tick: IDelayedCall | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        membership.clusterReady = self.cluster_ready

    # -- life cycle -----------------------------------------------------------------

    def startService(self) -> None:
        """Listen to node and membership events; start probing."""
        Service.startService(self)
        self._unsubscribe.append(self.transport.subscribe(self))
        self._unsubscribe.append(self.membership.subscribe(self._membersChanged))
        self.transport.export("cluster_is_ready", self.cluster_ready)
        self.evaluate()
        self.tick()

    def stopService(self) -> None:
        """Stop probing."""
        Service.stopService(self)
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- what others ask ------------------------------------------------------------------

    def cluster_ready(self) -> bool:
        """Whether every member is running (a cluster of one is always ready)."""
        if self._ready is None:
            self.evaluate()
        return bool(self._ready)

    def isRunning(self, node: str) -> bool:
        """Whether member C{node} is running (this node always is)."""
        if node == self.membership.nodeName:
            return True
        return self._running.get(node, False)

    def status(self) -> list[tuple[str, bool]]:
        """C{(node, running)} for every member, sorted by name."""
        return [(node, self.isRunning(node)) for node in self.membership.members()]

    def counters(self) -> dict[str, int]:
        """C{netsplit_detected} and C{netsplit_resolved}."""
        return {
            "netsplit_detected": self.netsplit_detected,
            "netsplit_resolved": self.netsplit_resolved,
        }

    def subscribe(self, observer: Callable[[bool], None]) -> Callable[[], None]:
        """Call C{observer(ready)} on every change of readiness."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    # -- probing --------------------------------------------------------------------------

    def tick(self) -> None:
        """Probe who is due, re-evaluate, schedule the next tick."""
        self._tick = None
        now = self._reactor.seconds()
        for peer in self.membership.peers():
            due = self.interval if self._running.get(peer) else self.detectionTime
            if now - self._lastProbe.get(peer, -1e18) >= due - 1e-9:
                self.probe(peer)
        self.evaluate()
        if self.running:
            self._tick = self._reactor.callLater(self.interval, self.tick)

    def probe(self, peer: str) -> None:
        """Start one probe of C{peer} unless one is under way."""
        if peer in self._probing:
            return
        self._probing.add(peer)
        self._lastProbe[peer] = self._reactor.seconds()
        Deferred.fromCoroutine(self._probe(peer))

    async def _probe(self, peer: str) -> None:
        try:
            answered = await self.membership.exchange(peer, self.rpcTimeout)
        except Exception:
            self.log.failure("probing node {peer} failed", peer=peer)
            answered = False
        finally:
            self._probing.discard(peer)
            self._new.discard(peer)
        if answered:
            self._lastAnswer[peer] = self._reactor.seconds()
        else:
            self._lastAnswer.pop(peer, None)
        self.evaluate()

    # -- INodeObserver ------------------------------------------------------------------

    def nodeUp(self, node: Atom) -> None:
        """A connection came up: probe a member at once."""
        peer = str(node)
        if self.running and self.membership.isMember(peer):
            self.probe(peer)

    def nodeDown(self, node: Atom, reason: str) -> None:
        """A connection ended: that member is not running, now."""
        peer = str(node)
        if self.membership.isMember(peer):
            self._lastAnswer.pop(peer, None)
            self.evaluate()

    def _membersChanged(self, members: list[str]) -> None:
        for gone in set(self._running) - set(members):
            self._running.pop(gone, None)
            self._lastAnswer.pop(gone, None)
            self._lastProbe.pop(gone, None)
            self._new.discard(gone)
        if self.running:
            # A member that just joined answered its join a moment ago: it
            # counts as running until its first probe says otherwise, so
            # that a join is not counted as a netsplit.
            new = [
                peer
                for peer in members
                if peer != self.membership.nodeName and peer not in self._running
            ]
            self._new.update(new)
            for peer in new:
                self.probe(peer)
        self.evaluate()

    # -- evaluation -------------------------------------------------------------------------

    def _isUp(self, peer: str, now: float) -> bool:
        if peer in self._new:
            return True
        last = self._lastAnswer.get(peer)
        if last is None or now - last > self.detectionTime - self.interval + 1e-9:
            return False
        if not self.transport.isConnected(peer):
            return False
        if self.linkStatus is not None:
            status = self.linkStatus(peer)
            if status is not None and status not in LINK_OK:
                return False
        return True

    def evaluate(self) -> None:
        """Recompute every Running flag and the readiness; log and count changes."""
        now = self._reactor.seconds()
        running: dict[str, bool] = {}
        for peer in self.membership.peers():
            up = self._isUp(peer, now)
            running[peer] = up
            was = self._running.get(peer)
            if was is not None and was != up:
                self.log.info(
                    "cluster node {peer} is {state}",
                    peer=peer,
                    state="running" if up else "not running",
                )
        self._running = running
        ready = all(running.values())
        previous, self._ready = self._ready, ready
        if previous == ready:
            return
        down = ", ".join(sorted(n for n, up in running.items() if not up))
        if ready and self._splitCounted:
            self._splitCounted = False
            self.netsplit_resolved += 1
            self.log.info(
                "netsplit resolved: every cluster member answers ({count} resolved)",
                count=self.netsplit_resolved,
            )
        elif ready:
            # Not ready since the start (the members had not answered yet):
            # no netsplit was detected, so none is resolved.
            self.log.info("cluster ready: every member answers")
        elif previous is None:
            self.log.info("cluster not ready yet: waiting for {nodes}", nodes=down)
        else:
            self._splitCounted = True
            self.netsplit_detected += 1
            self.log.warn(
                "netsplit detected: not running: {nodes} ({count} detected)",
                nodes=down,
                count=self.netsplit_detected,
            )
        for observer in list(self._observers):
            try:
                observer(ready)
            except Exception:
                self.log.failure("readiness observer failed")


__all__ = ["LINK_OK", "Readiness"]
