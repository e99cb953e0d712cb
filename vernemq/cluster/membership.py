# -*- test-case-name: tests.test_cluster_membership -*-
"""
Cluster membership: which nodes form this node's cluster.

The member set
==============

The set is a last-writer-wins element set: for every node name ever seen,
a C{(stamp, present)} pair.  Adding or removing a node writes a new stamp;
merging two sets keeps, per node, the entry with the greater stamp (a
removal wins a tie).  Removed nodes stay as tombstones, so a removal can
never be undone by an old copy of the set that still lists the node; only
a newer write (an explicit join) brings a node back.  Stamps are wall-clock
microseconds, bumped above every stamp this node has seen, so that a
removal written after a join always wins even between nodes whose clocks
disagree a little (a hybrid logical clock).

This is VerneMQ's behaviour (an OR-Set CRDT in C{vmq_swc_peer_service})
with two differences, both so that users are not surprised later:

  - joining with local history (the node already had members, sessions or
    retained messages) merges instead of refusing with C{non_empty_node},
    and the command says so;
  - a node that learns it was removed (its own entry is a newer
    tombstone, e.g. it was offline during C{cluster leave}) goes back to
    being a cluster of one instead of looking for its old peers forever
    (VerneMQ asks you to delete its data directory).

Persistence
===========

The set is written to C{<platform_data_dir>/cluster/members.json} on every
change (write to a temporary file, then rename).  A restarted node loads
it and, through the readiness probes (L{vernemq.cluster.readiness}),
reconnects to its members by itself.

Propagation
===========

Over the Erlang distribution, as exported C{vmq} functions:

  - C{vmq:cluster_join(Node, Set)}: a joining node hands its set to the
    discovery node, which merges it, adds C{Node}, pushes the result to
    every member and answers with it;
  - C{vmq:cluster_update(Set)}: a pushed set, merged;
  - C{vmq:cluster_gossip(From, Set)}: merge and answer with our set; the
    readiness probe of every member is one such exchange, so the sets
    converge within one probe interval (anti-entropy);
  - C{vmq:cluster_leave_local(Kill)}: run on a node that is asked to leave
    while online (stop its MQTT listeners; with C{Kill}, disconnect its
    sessions, migrate its queues, leave and stop).

A set travels as a list of C{{NodeAtom, Stamp, Present}} tuples.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vernemq.cluster.transport import IClusterTransport
from vernemq.dist.etf import Atom
from vernemq.dist.exports import ErlangError
from vernemq.dist.handshake import splitNodeName
from vernemq.dist.node import BadRpc

#: What a set looks like in memory: node -> (stamp, present).
Entries = dict[str, tuple[int, bool]]

OK = Atom("ok")
TRUE = Atom("true")

#: The file under C{platform_data_dir}.
MEMBERS_FILE = os.path.join("cluster", "members.json")


class JoinRefused(Exception):
    """
    A join did not happen.

    @ivar reason: VerneMQ's reason atom as text (C{self_join},
        C{not_reachable}, C{invalid_node}) or a description.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaveRefused(Exception):
    """A leave could not be done; the message is what the CLI prints."""


@dataclass(frozen=True)
class JoinOutcome:
    """
    A successful join.

    @ivar members: the members afterwards.
    @ivar history: why this node counted as having local history (its
        state was merged into the cluster), or L{None} for a fresh node.
    @ivar merged: what the metadata merge with the discovery node did
        (L{Membership.metadataJoin}), or L{None} without one.
    """

    members: list[str]
    history: str | None = None
    merged: str | None = None


def _nothing(*args: Any) -> None:
    return None


@dataclass
class LeaveHooks:
    """
    What C{cluster leave} needs from the rest of the node; each may return
    a L{Deferred} or an awaitable.

    @ivar stopListeners: stop accepting MQTT connections (every MQTT
        listener, WebSockets included).
    @ivar killSessions: disconnect every MQTT client of this node.
    @ivar migrateQueues: move this node's queues to the given nodes
        (routing; called on the leaving node with the remaining members).
    @ivar fixDeadQueues: recreate, on the remaining nodes, the queues and
        subscriptions of clients that lived on the given dead nodes
        (routing; called after an offline node was removed).
    @ivar stopNode: stop this node (after it left the cluster).
    """

    stopListeners: Callable[[], object] = _nothing
    killSessions: Callable[[], object] = _nothing
    migrateQueues: Callable[[list[str]], object] = _nothing
    fixDeadQueues: Callable[[list[str], list[str]], object] = _nothing
    stopNode: Callable[[], object] = _nothing


async def _settle(result: object) -> Any:
    if isinstance(result, Deferred):
        return await result
    if isinstance(result, Awaitable):
        return await result
    return result


# -- the set --------------------------------------------------------------------


def _wins(new: tuple[int, bool], old: tuple[int, bool] | None) -> bool:
    """Whether entry C{new} replaces C{old}: the greater stamp; removal wins a tie."""
    if old is None:
        return True
    return (new[0], not new[1]) > (old[0], not old[1])


def entriesToTerm(entries: Mapping[str, tuple[int, bool]]) -> list[tuple[Atom, int, bool]]:
    """The wire form of a set."""
    return [(Atom(n), stamp, present) for n, (stamp, present) in sorted(entries.items())]


def entriesFromTerm(term: Any) -> Entries:
    """
    Read a set in wire form.

    @raise ValueError: it is not a list of C{{Atom, Stamp, Present}}.
    """
    if not isinstance(term, list):
        raise ValueError("a member set is a list")
    out: Entries = {}
    for item in term:
        if not (isinstance(item, tuple) and len(item) == 3):
            raise ValueError(f"bad member entry {item!r:.80}")
        node, stamp, present = item
        if not isinstance(node, Atom) or not isinstance(stamp, int) or isinstance(stamp, bool):
            raise ValueError(f"bad member entry {item!r:.80}")
        splitNodeName(node)
        flag = present is True or present == TRUE
        entry = (stamp, flag)
        if _wins(entry, out.get(str(node))):
            out[str(node)] = entry
    return out


class MemberSet:
    """A last-writer-wins set of node names (see the module docstring)."""

    def __init__(self, entries: Mapping[str, tuple[int, bool]] | None = None) -> None:
        self.entries: Entries = dict(entries or {})

    def members(self) -> list[str]:
        """The present nodes, sorted."""
        return sorted(n for n, (_, present) in self.entries.items() if present)

    def isMember(self, node: str) -> bool:
        """Whether C{node} is present."""
        entry = self.entries.get(node)
        return entry is not None and entry[1]

    def maxStamp(self) -> int:
        """The greatest stamp in the set (0 when empty)."""
        return max((stamp for stamp, _ in self.entries.values()), default=0)

    def write(self, node: str, present: bool, stamp: int) -> None:
        """Set C{node}'s entry."""
        self.entries[node] = (stamp, present)

    def merge(self, other: Mapping[str, tuple[int, bool]]) -> bool:
        """Take every entry of C{other} that wins; whether anything changed."""
        changed = False
        for node, entry in other.items():
            if _wins(entry, self.entries.get(node)):
                if self.entries.get(node) != entry:
                    changed = True
                self.entries[node] = entry
        return changed


# -- the service ----------------------------------------------------------------


class Membership(Service):
    """
    This node's view of its cluster; see the module docstring.

    @ivar name: this node's name.
    @ivar set: the L{MemberSet}.
    @ivar hooks: the L{LeaveHooks}.
    @ivar clusterReady: whether every member answers (set by
        L{vernemq.cluster.readiness.Readiness}); C{cluster leave} waits
        for it before fixing the queues of a dead node.
    @ivar rpcTimeout: seconds allowed for one membership call to a peer.
    @ivar stopDelay: seconds between leaving (C{cluster leave -k} of this
        node) and stopping: the answer to the member that asked goes out.
    """

    log = Logger()
    name = "membership"
    stopDelay = 0.5

    def __init__(
        self,
        transport: IClusterTransport,
        reactor: IReactorTime,
        dataDir: str | None = None,
        *,
        wallclock: Callable[[], float] = time.time,
        historyProbe: Callable[[], str | None] | None = None,
        hooks: LeaveHooks | None = None,
        rpcTimeout: float = 5.0,
    ) -> None:
        self.transport = transport
        self.nodeName: str = transport.name
        self._reactor = reactor
        self._path = None if dataDir is None else os.path.join(dataDir, MEMBERS_FILE)
        self._wallclock = wallclock
        self._historyProbe = historyProbe
        self.hooks = hooks or LeaveHooks()
        self.rpcTimeout = rpcTimeout
        self.clusterReady: Callable[[], bool] = lambda: True
        #: Merge the replicated metadata with the discovery node of a join
        #: (set by the node's composition); answers one line for the CLI.
        self.metadataJoin: Callable[[str], Awaitable[str | None]] | None = None
        self.set = MemberSet()
        self._observers: list[Callable[[list[str]], None]] = []
        self._loaded = False
        #: Leaving the cluster (C{cluster leave -k} of this node): member
        #: sets from others are no longer merged.
        self._leaving = False

    # -- life cycle -------------------------------------------------------------

    def startService(self) -> None:
        """Load the persisted set (or start a cluster of one); export the functions."""
        Service.startService(self)
        self.load()
        self.exportFunctions()

    def load(self) -> None:
        """Read the persisted set, once."""
        if self._loaded:
            return
        self._loaded = True
        entries: Entries = {}
        if self._path is not None and os.path.exists(self._path):
            try:
                with open(self._path, encoding="utf-8") as f:
                    data = json.load(f)
                if data.get("node") != self.nodeName:
                    self.log.warn(
                        "{path} belongs to node {other}, not {nodename}: starting as a "
                        "cluster of one (a node name must not change once clustered)",
                        path=self._path,
                        other=data.get("node"),
                        nodename=self.nodeName,
                    )
                else:
                    for node, (stamp, present) in data["members"].items():
                        entries[str(node)] = (int(stamp), bool(present))
            except (OSError, ValueError, KeyError, TypeError) as error:
                self.log.error(
                    "cannot read the member set {path}: {error}; starting as a cluster of one",
                    path=self._path,
                    error=str(error),
                )
                entries = {}
        self.set = MemberSet(entries)
        if not self.set.isMember(self.nodeName):
            self.set.write(self.nodeName, True, self._stamp())
            self._persist()
        others = [m for m in self.set.members() if m != self.nodeName]
        if others:
            self.log.info(
                "member of a cluster with {members}; reconnecting to them",
                members=", ".join(others),
            )

    def exportFunctions(self) -> None:
        """Export the C{vmq:cluster_*} functions other members call."""
        export = self.transport.export
        export("cluster_join", self._remoteJoin)
        export("cluster_update", self._remoteUpdate)
        export("cluster_gossip", self._remoteGossip)
        export("cluster_leave_local", self._remoteLeaveLocal)
        export("cluster_members", lambda: [Atom(m) for m in self.members()])

    # -- reading --------------------------------------------------------------------

    def members(self) -> list[str]:
        """The members, sorted (this node included)."""
        return self.set.members()

    def peers(self) -> list[str]:
        """The members other than this node."""
        return [m for m in self.set.members() if m != self.nodeName]

    def isMember(self, node: str) -> bool:
        """Whether C{node} is a member."""
        return self.set.isMember(node)

    def subscribe(self, observer: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call C{observer(members)} after every change; returns an unsubscriber."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    # -- writing ----------------------------------------------------------------------

    def _stamp(self) -> int:
        return max(int(self._wallclock() * 1_000_000), self.set.maxStamp() + 1)

    def _persist(self) -> None:
        if self._path is None:
            return
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        data = {
            "node": self.nodeName,
            "members": {n: [s, p] for n, (s, p) in sorted(self.set.entries.items())},
        }
        temporary = self._path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self._path)

    def _changed(self, before: list[str]) -> None:
        self._persist()
        after = self.set.members()
        if after == before:
            return
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        self.log.info(
            "cluster members now {members} (added: {added}; removed: {removed})",
            members=", ".join(after),
            added=", ".join(added) or "none",
            removed=", ".join(removed) or "none",
        )
        for observer in list(self._observers):
            try:
                observer(after)
            except Exception:
                self.log.failure("membership observer failed")

    def add(self, node: str) -> None:
        """Make C{node} a member (a new write)."""
        before = self.set.members()
        self.set.write(node, True, self._stamp())
        self._changed(before)

    def remove(self, node: str) -> None:
        """Remove C{node} (a tombstone)."""
        before = self.set.members()
        self.set.write(node, False, self._stamp())
        self._changed(before)

    def merge(self, term: Any, *, keepSelf: bool = False) -> bool:
        """
        Merge a set in wire form; whether anything changed.  If it says this
        node was removed, this node becomes a cluster of one (or, with
        C{keepSelf}, re-adds itself: it is joining).

        @raise ValueError: C{term} is not a set.
        """
        entries = entriesFromTerm(term)
        if self._leaving:
            return False
        before = self.set.members()
        changed = self.set.merge(entries)
        if not self.set.isMember(self.nodeName):
            if keepSelf:
                self.set.write(self.nodeName, True, self._stamp())
            else:
                self._removedByPeers(before)
                return True
        if changed:
            self._changed(before)
        return changed

    def _removedByPeers(self, before: list[str]) -> None:
        self.log.warn(
            "this node was removed from the cluster ({members}); it now runs as a cluster of one",
            members=", ".join(m for m in before if m != self.nodeName) or "no other members",
        )
        self._resetAlone(before)

    def _resetAlone(self, before: list[str]) -> None:
        stamp = self._stamp()
        self.set = MemberSet({self.nodeName: (stamp, True)})
        for node in before:
            if node != self.nodeName:
                self.transport.disconnect(node)
        self._changed(before)

    async def broadcast(self, nodes: Iterable[str] | None = None) -> None:
        """Push the set to C{nodes} (default: every peer); failures are ignored."""
        targets = list(self.peers() if nodes is None else nodes)
        term = entriesToTerm(self.set.entries)
        calls: list[Deferred[Any]] = [
            self.transport.call(node, "cluster_update", [term], self.rpcTimeout)
            for node in targets
            if node != self.nodeName
        ]
        if calls:
            await DeferredList(calls, consumeErrors=True)

    async def exchange(self, peer: str, timeout: float) -> bool:
        """
        One gossip round with C{peer}: send our set, merge its answer.
        Whether it answered.
        """
        term = entriesToTerm(self.set.entries)
        try:
            reply = await self.transport.call(
                peer, "cluster_gossip", [Atom(self.nodeName), term], timeout
            )
            if self.isMember(peer):
                self.merge(reply)
        except BadRpc:
            return False
        except ValueError as error:
            self.log.warn(
                "node {peer} answered the membership probe with a bad set: {error}",
                peer=peer,
                error=str(error),
            )
            return False
        return True

    # -- join -------------------------------------------------------------------------

    def history(self) -> str | None:
        """Why this node has local history, or L{None} for a fresh node."""
        reasons: list[str] = []
        others = self.peers()
        if others:
            reasons.append(f"it was a member of a cluster with {', '.join(others)}")
        if self._historyProbe is not None:
            extra = self._historyProbe()
            if extra:
                reasons.append(extra)
        return "; ".join(reasons) or None

    async def join(self, discovery: str) -> JoinOutcome:
        """
        Join the cluster of C{discovery} (any of its members).

        @raise JoinRefused: C{self_join}, C{invalid_node}, C{not_reachable},
            or the discovery node's failure.
        """
        if discovery == self.nodeName:
            raise JoinRefused("self_join")
        try:
            splitNodeName(discovery)
        except ValueError:
            raise JoinRefused("invalid_node") from None
        history = self.history()
        before = self.set.members()
        self.set.write(self.nodeName, True, self._stamp())
        term = entriesToTerm(self.set.entries)
        try:
            reply = await self.transport.call(
                discovery, "cluster_join", [Atom(self.nodeName), term], self.rpcTimeout
            )
        except BadRpc as failure:
            reason = failure.reason
            if reason in (Atom("nodedown"), Atom("timeout")):
                raise JoinRefused("not_reachable") from None
            raise JoinRefused(f"{{badrpc,{reason!r}}}") from None
        try:
            entries = entriesFromTerm(reply)
        except ValueError:
            raise JoinRefused(f"unexpected answer from {discovery}: {reply!r:.100}") from None
        self.set.merge(entries)
        if not self.set.isMember(self.nodeName):
            self.set.write(self.nodeName, True, self._stamp())
        self._changed(before)
        self.log.info(
            "joined the cluster of {discovery}{merged}",
            discovery=discovery,
            merged="" if history is None else f" (local history merged: {history})",
        )
        await self.broadcast()
        merged = None
        if self.metadataJoin is not None:
            merged = await self.metadataJoin(discovery)
            if merged is not None:
                self.log.info("join: {merged}", merged=merged)
        return JoinOutcome(self.members(), history, merged)

    def _remoteJoin(self, node: Any, term: Any) -> Any:
        """C{vmq:cluster_join(Node, Set)} on the discovery node."""
        if not isinstance(node, Atom):
            raise ErlangError(Atom("badarg"))
        if self._leaving:
            raise ErlangError(Atom("leaving"))
        try:
            self.merge(term, keepSelf=True)
        except ValueError:
            raise ErlangError(Atom("badarg")) from None
        if not self.isMember(str(node)):
            self.add(str(node))
        self.log.info("node {peer} joins the cluster", peer=str(node))
        Deferred.fromCoroutine(self.broadcast([m for m in self.peers() if m != str(node)]))
        return entriesToTerm(self.set.entries)

    def _remoteUpdate(self, term: Any) -> Any:
        """C{vmq:cluster_update(Set)}."""
        try:
            self.merge(term)
        except ValueError:
            raise ErlangError(Atom("badarg")) from None
        return OK

    def _remoteGossip(self, sender: Any, term: Any) -> Any:
        """
        C{vmq:cluster_gossip(From, Set)}: merge (only a member's set: a node
        that was removed learns it from our answer, its stale set is not
        taken), answer with our set.
        """
        if not isinstance(sender, Atom):
            raise ErlangError(Atom("badarg"))
        if self.isMember(str(sender)):
            try:
                self.merge(term)
            except ValueError:
                raise ErlangError(Atom("badarg")) from None
        return entriesToTerm(self.set.entries)

    # -- leave ------------------------------------------------------------------------

    async def _alive(self, node: str) -> bool:
        if node == self.nodeName:
            return True
        try:
            await self.transport.call(node, "cluster_members", [], min(self.rpcTimeout, 5.0))
        except BadRpc as failure:
            # Only an unreachable node is dead; a failed call got an answer.
            return failure.reason not in (Atom("nodedown"), Atom("timeout"))
        return True

    async def waitUntilReady(self, timeout: float, step: float = 1.0) -> bool:
        """Poll L{clusterReady} every C{step} seconds for up to C{timeout}."""
        deadline = self._reactor.seconds() + timeout
        while not self.clusterReady():
            if self._reactor.seconds() >= deadline:
                return False
            d: Deferred[None] = Deferred()
            self._reactor.callLater(step, d.callback, None)
            await d
        return True

    async def leave(self, node: str, kill: bool = False, timeout: float = 60.0) -> str:
        """
        Make C{node} leave the cluster, as C{vmq-admin cluster leave}:

          - C{node} does not answer: it is removed everywhere; once the
            remaining members are all ready (up to C{timeout} seconds) the
            queues of its clients are recreated (L{LeaveHooks.fixDeadQueues});
          - C{node} answers, without C{kill}: it stops its MQTT listeners
            and stays a member;
          - with C{kill}: it stops its listeners, disconnects its sessions,
            migrates its queues, leaves and stops.

        @return: the text the CLI prints.
        @raise LeaveRefused: C{node} is not a member, or the cluster did not
            become consistent in time.
        """
        if not self.isMember(node):
            raise LeaveRefused(f"Node '{node}' wasn't part of the cluster")
        if not await self._alive(node):
            remaining = [m for m in self.members() if m != node]
            self.log.info("removing node {peer}, which does not answer", peer=node)
            self.remove(node)
            self.transport.disconnect(node)
            await self.broadcast()
            if not await self.waitUntilReady(timeout):
                raise LeaveRefused("Can't fix queues because cluster is inconsistent, retry!")
            await _settle(self.hooks.fixDeadQueues([node], remaining))
            return "Done"
        if not kill:
            await self.transport.call(node, "cluster_leave_local", [False], timeout)
            return "Done! Use -k to teardown and migrate existing sessions!"
        if not await self.waitUntilReady(timeout):
            raise LeaveRefused("Can't migrate queues because cluster is inconsistent, retry!")
        await self.transport.call(node, "cluster_leave_local", [True], timeout)
        return "Done"

    async def leaveLocal(self, kill: bool) -> None:
        """
        This node is asked to leave while online: stop the MQTT listeners;
        with C{kill}, also disconnect every session, migrate the queues to
        the remaining members, leave the cluster and stop the node.

        Leaving, the node writes its own tombstone and pushes it to the
        remaining members, then becomes a cluster of one (persisted, so
        that a restart does not look for its old peers).  Member sets that
        arrive meanwhile are ignored (they would only say what this node
        wrote).  Its distribution connections stay up until it stops, a
        moment later: the member that asked gets its answer.
        """
        self.log.info(
            "leaving the cluster: stopping the MQTT listeners{more}",
            more=", disconnecting sessions, migrating queues" if kill else "",
        )
        await _settle(self.hooks.stopListeners())
        if not kill:
            return
        await _settle(self.hooks.killSessions())
        remaining = self.peers()
        await _settle(self.hooks.migrateQueues(remaining))
        before = self.set.members()
        self._leaving = True
        self.set.write(self.nodeName, False, self._stamp())
        self._persist()
        await self.broadcast(remaining)
        self.set = MemberSet({self.nodeName: (self._stamp(), True)})
        self._changed(before)
        self.log.info("left the cluster; stopping")
        self._reactor.callLater(self.stopDelay, self._stopAfterLeave, remaining)

    def _stopAfterLeave(self, peers: list[str]) -> None:
        for node in peers:
            self.transport.disconnect(node)
        self.hooks.stopNode()

    def _remoteLeaveLocal(self, kill: Any) -> Deferred[Any]:
        """C{vmq:cluster_leave_local(Kill)}."""
        flag = kill is True or kill == TRUE

        async def run() -> Any:
            await self.leaveLocal(flag)
            return OK

        return Deferred.fromCoroutine(run())


__all__ = [
    "JoinOutcome",
    "JoinRefused",
    "LeaveHooks",
    "LeaveRefused",
    "MemberSet",
    "Membership",
    "entriesFromTerm",
    "entriesToTerm",
]
