"""
An in-memory network of cluster nodes on one L{Clock}, for membership,
readiness and admin tests.

L{FakeNetwork} holds one L{FakeTransport} (an L{IClusterTransport}) per
node.  A call to a reachable node connects the pair (both sides hear
C{nodeUp}) and runs the exported function there at once; a call to a node
that is down or cut off fails with C{BadRpc(nodedown)}; a call to a
B{silent} node (stopped, connection still open) never answers and fails
with C{BadRpc(timeout)} when its timeout passes on the clock.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from vernemq.cluster.membership import LeaveHooks, Membership
from vernemq.cluster.readiness import Readiness
from vernemq.cluster.transport import IClusterTransport
from vernemq.dist.etf import Atom
from vernemq.dist.exports import ErlangException
from vernemq.dist.node import BadRpc, INodeObserver

NODEDOWN = Atom("nodedown")
TIMEOUT = Atom("timeout")


class FakeNetwork:
    """Nodes, their links, and failures."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.transports: dict[str, FakeTransport] = {}
        self.down: set[str] = set()
        self.silent: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.connected: set[frozenset[str]] = set()

    def transport(self, name: str) -> FakeTransport:
        """The transport of node C{name} (created on first use)."""
        if name not in self.transports:
            self.transports[name] = FakeTransport(self, name)
        return self.transports[name]

    def reachable(self, a: str, b: str) -> bool:
        """Whether C{a} can connect to C{b}."""
        return (
            b in self.transports
            and a not in self.down
            and b not in self.down
            and frozenset((a, b)) not in self.cut
        )

    def _disconnect(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self.connected:
            self.connected.discard(pair)
            for this, other in ((a, b), (b, a)):
                if this not in self.down:
                    self.transports[this].fire("nodeDown", other)

    def kill(self, name: str) -> None:
        """The node's process dies: its connections close."""
        for pair in list(self.connected):
            if name in pair:
                (other,) = pair - {name}
                self._disconnect(name, other)
        self.down.add(name)

    def revive(self, name: str) -> None:
        """The node runs again (a restart: give it a new transport first)."""
        self.down.discard(name)

    def restart(self, name: str) -> FakeTransport:
        """A new process for C{name}: a fresh transport, reachable again."""
        self.kill(name)
        self.transports.pop(name, None)
        self.down.discard(name)
        return self.transport(name)

    def partition(self, a: str, b: str) -> None:
        """Cut the link between C{a} and C{b} (connections close)."""
        self.cut.add(frozenset((a, b)))
        self._disconnect(a, b)

    def heal(self, a: str, b: str) -> None:
        """Restore the link between C{a} and C{b}."""
        self.cut.discard(frozenset((a, b)))


@implementer(IClusterTransport)
class FakeTransport:
    """One node's L{IClusterTransport} on a L{FakeNetwork}."""

    def __init__(self, network: FakeNetwork, name: str) -> None:
        self.network = network
        self.name = name
        self.exports: dict[tuple[str, int], Callable[..., Any]] = {}
        self.observers: list[INodeObserver] = []
        self.calls: list[tuple[str, str, list[Any]]] = []

    def fire(self, event: str, peer: str) -> None:
        """Tell the observers C{nodeUp}/C{nodeDown} of C{peer}."""
        for observer in list(self.observers):
            if event == "nodeUp":
                observer.nodeUp(Atom(peer))
            else:
                observer.nodeDown(Atom(peer), "connection closed")

    def apply(self, function: str, args: list[Any]) -> Deferred[Any]:
        """Run exported C{vmq:function(args...)} here."""
        implementation = self.exports.get((function, len(args)))
        if implementation is None:
            return fail(BadRpc((Atom("EXIT"), (Atom("undef"), []))))
        try:
            result = implementation(*args)
        except ErlangException as error:
            return fail(BadRpc((Atom("EXIT"), error.reason)))
        if isinstance(result, Deferred):
            return result
        if inspect.isawaitable(result):
            return Deferred.fromCoroutine(result)  # type: ignore[arg-type]
        return succeed(result)

    def call(self, node: str, function: str, args: list[Any], timeout: float) -> Deferred[Any]:
        """C{rpc:call} over the fake network."""
        self.calls.append((node, function, list(args)))
        if node == self.name:
            return self.apply(function, list(args))
        network = self.network
        if not network.reachable(self.name, node):
            return fail(BadRpc(NODEDOWN))
        pair = frozenset((self.name, node))
        if pair not in network.connected:
            network.connected.add(pair)
            self.fire("nodeUp", node)
            network.transports[node].fire("nodeUp", self.name)
        if node in network.silent:
            d: Deferred[Any] = Deferred()
            network.clock.callLater(timeout, d.errback, BadRpc(TIMEOUT))
            return d
        return network.transports[node].apply(function, list(args))

    def export(self, function: str, implementation: Callable[..., Any]) -> None:
        """Export C{vmq:function}."""
        arity = len(
            [
                p
                for p in inspect.signature(implementation).parameters.values()
                if p.default is p.empty
            ]
        )
        self.exports[(function, arity)] = implementation

    def isConnected(self, node: str) -> bool:
        """Whether the pair is connected."""
        return node == self.name or frozenset((self.name, node)) in self.network.connected

    def disconnect(self, node: str) -> None:
        """Close the connection to C{node}."""
        self.network._disconnect(self.name, node)

    def subscribe(self, observer: INodeObserver) -> Callable[[], None]:
        """Node up/down events."""
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)


class FakeNode:
    """Membership and readiness of one node on a L{FakeNetwork}."""

    def __init__(
        self,
        network: FakeNetwork,
        name: str,
        dataDir: str | None = None,
        history: str | None = None,
        detectionTime: float = 5.0,
    ) -> None:
        self.name = name
        self.transport = network.transport(name)
        self.events: list[tuple[str, Any]] = []
        events = self.events
        self.hooks = LeaveHooks(
            stopListeners=lambda: events.append(("stopListeners", None)),
            killSessions=lambda: events.append(("killSessions", None)),
            migrateQueues=lambda targets: events.append(("migrateQueues", targets)),
            fixDeadQueues=lambda dead, remaining: events.append(
                ("fixDeadQueues", (dead, remaining))
            ),
            stopNode=lambda: events.append(("stopNode", None)),
        )
        self.membership = Membership(
            self.transport,
            network.clock,
            dataDir,
            wallclock=network.clock.seconds,
            historyProbe=lambda: history,
            hooks=self.hooks,
        )
        self.readiness = Readiness(
            self.membership, self.transport, network.clock, detectionTime=detectionTime
        )
        self.membership.startService()
        self.readiness.startService()

    def stop(self) -> None:
        """Stop the services."""
        self.readiness.stopService()
        self.membership.stopService()


def run(d: Deferred[Any]) -> Any:
    """The result of an already fired L{Deferred} (its failure is raised)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def coroutine(c: Any) -> Deferred[Any]:
    """C{Deferred.fromCoroutine}."""
    return Deferred.fromCoroutine(c)
