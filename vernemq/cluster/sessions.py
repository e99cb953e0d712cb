# -*- test-case-name: tests.test_cluster_sessions -*-
"""
Sessions across nodes: a client id is live on one node at a time, and a
persistent session moves with its client.

VerneMQ keeps a session (its queue) on exactly one node; only the
subscriber entries of the metadata store say which (L{vernemq.cluster.
routing}).  This module does what C{vmq_reg} / C{vmq_reg_sync} /
C{vmq_queue} migration do there, over the distribution (exported C{vmq}
functions through L{IClusterTransport}).

Registration (a CONNECT while clustered)
========================================

Before the broker accepts a CONNECT of C{(mountpoint, client id)} on node
B (L{ClusterSessions.register}, called by L{vernemq.broker.broker.Broker}):

  - C{coordinate_registrations = on} (the default) and the cluster ready:
    the registration is serialized on a B{sync node}, C{crc32(sid) mod N}
    over the sorted running members (VerneMQ's elected leader).  B calls
    C{vmq:session_register(Mountpoint, ClientId, B, CleanStart)} there; the
    sync node, one registration of a client id at a time, asks B{every}
    other running member to hand the session over
    (C{vmq:session_takeover/4}), so a duplicate is found even on a node
    where the session has no subscriber entry (VerneMQ only writes entries
    for sessions with subscriptions here as well).  A failure (the sync
    node or a member does not answer in C{cluster_ready_rpc_timeout}) is
    C{not_ready}: CONNACK 3 / 0x88, as VerneMQ.
  - C{coordinate_registrations = off}: B asks only the node its subscriber
    entry names (if another one); a failure is C{not_ready} too.
  - A netsplit with C{allow_register_during_netsplit = on} (the broker's
    gate already let it through): uncoordinated and local, as VerneMQ;
    we still ask the entry's node when it is connected (a persistent
    session's queue then still moves), and go on locally if it fails.

The takeover (C{vmq:session_takeover(Mountpoint, ClientId, NewNode,
CleanStart)}) on the node A holding the session: its connection is closed
as a local takeover closes it (MQTT 5.0: DISCONNECT 0x8E, session taken
over; the will per C{suppress_lwt_on_session_takeover}); then

  - a persistent session (C{clean_session = false}, an MQTT 5.0 expiry
    other than 0) with a clean start not asked for is B{moved}: its
    subscriptions, unacknowledged (inflight) messages with their packet
    ids, queued messages, inbound QoS 2 ids and next packet id are
    returned to B, which installs them and answers CONNACK with session
    present; the client then gets exactly what a reconnect on A would have
    given it (unacknowledged messages again with DUP), so nothing is lost
    or duplicated beyond what the QoS allows;
  - otherwise the session ends there (its state is not sent).

A never writes the subscriber entry of a session it handed over: B
(which has read A's entry, so its hybrid clock is past A's write) writes
it (L{ClusterRouter.subscriptions_changed}) after CONNACK, pointing at
itself, or deletes it for a clean start.  Messages other nodes route to A
before they see the new entry are caught for C{max_drain_time} by a
stand-in subscribed in A's trie (L{MovedSession}) and sent on to B as
C{enq} items with C{#{migrated => true}} options (VerneMQ's draining old
queue).  Such a straggler can reach B twice in one rare race (a publisher
that already routes to B, while another subscriber on A also matches):
within what QoS 1 allows, not QoS 2.

Expiry of a moved session
=========================

A session that moves (a takeover, C{cluster leave -k}, a dead node's
queues) carries the time it has already spent offline
(L{SessionState.offline}): its expiry on the new node ends when it would
have ended on the old one, not a full expiry later.

C{cluster leave -k}: queues migrate
===================================

After the leaving node disconnected its clients
(L{LeaveHooks.killSessions}), L{ClusterSessions.migrateQueues} moves every
persistent session still on it to a remaining member (C{crc32(sid) mod
N}, so sessions spread) with C{vmq:session_adopt([State])}, in batches of
C{max_msgs_per_drain_step} sessions per call; the target installs each
offline session and writes its subscriber entry, so new messages are
queued there and the client finds its session present wherever it
reconnects (the takeover moves it again if needed).  One log line:
C{migrated A/B queues and C/D messages}.

A dead node (C{cluster leave} of a node that does not answer)
=============================================================

L{ClusterSessions.fixDeadQueues}, on the node running the command once
the remaining members are ready: every subscriber entry of a dead node
that belongs to a persistent session is re-created on a remaining member
(C{crc32(sid) mod N}) as an offline session with the same subscriptions
(C{vmq:session_adopt}, its expiry that member's
C{persistent_client_expiration}, counted from when the dead node's
connection went down), which rewrites the entry; new messages are queued
there.  Its offline messages are lost (VerneMQ's too: message
stores are not replicated).  The entries of the dead node's clean
sessions are deleted.

Not done
========

  - With C{coordinate_registrations = off}, a duplicate session on a node
    that has no subscriber entry for it (no subscriptions) is not
    disconnected.  (One with an entry is, once the entries replicate: a
    node that sees its live session's entry rewritten by another node
    whose session is connected too hands the session over to it,
    L{ClusterSessions._entry_changed}; the same resolves duplicates made
    during a netsplit when it heals.  An entry of a connected session
    deleted elsewhere, or rewritten for a session left offline there, is
    written again by its node.)
  - A dead node's session counts as offline since this node lost its
    connection to the dead node (it may have been offline longer: the
    subscriber entries do not say since when), and its expiry is the new
    node's C{persistent_client_expiration} (its own is not replicated).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.broker.message import Message
from vernemq.broker.router import SubOpts
from vernemq.broker.session import Session, _Inflight
from vernemq.broker.topics import parse_shared
from vernemq.cluster.routing import SUBSCRIBER, ClusterRouter
from vernemq.cluster.transport import IClusterTransport
from vernemq.dist.etf import Atom
from vernemq.dist.exports import ErlangError
from vernemq.dist.node import BadRpc, INodeObserver

if TYPE_CHECKING:
    from vernemq.broker.broker import Broker

__all__ = ["ClusterSessions", "MovedSession", "NotReady", "SessionState", "pick_node"]

_SESSION: Final = Atom("session")
_NONE: Final = Atom("none")
_ENDED: Final = Atom("ended")
_UNDEFINED: Final = Atom("undefined")
_TRUE: Final = Atom("true")
_OK: Final = Atom("ok")
_CLEAN_SESSION: Final = Atom("clean_session")

#: An inflight entry: packet id, QoS, retain, subscription ids, released, message.
InflightEntry = tuple[int, int, bool, tuple[int, ...], bool, Message]
#: A queued entry, as L{Session.pending} holds it.
QueuedEntry = tuple[Message, int, bool, tuple[int, ...]]


class NotReady(Exception):
    """A registration could not be coordinated (VerneMQ's C{not_ready})."""


def _bool(value: Any) -> bool:
    return value is True or value == _TRUE


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8") if not isinstance(value, str) else value


def _sid_key(sid: tuple[str, str]) -> tuple[bytes, bytes]:
    return (sid[0].encode("utf-8"), sid[1].encode("utf-8"))


def pick_node(nodes: Iterable[str], sid: tuple[str, str]) -> str:
    """
    The node of C{nodes} (sorted) that C{sid} maps to, C{crc32(sid) mod N}:
    the sync node of its registrations, the target of its migration.

    @raise ValueError: C{nodes} is empty.
    """
    ordered = sorted(set(nodes))
    if not ordered:
        raise ValueError("no node to pick")
    key = sid[0].encode("utf-8") + b"\x00" + sid[1].encode("utf-8")
    return ordered[zlib.crc32(key) % len(ordered)]


@dataclass
class SessionState:
    """
    What moves with a persistent session.

    @ivar expiry: seconds it outlives its connection, L{None} for never;
        L{None} with C{default_expiry} means the receiving node's
        C{persistent_client_expiration}.
    @ivar inflight: sent, unacknowledged messages, in send order.
    @ivar pending: queued messages, oldest first.
    @ivar offline: seconds it has already been offline (0 if it was
        connected until it moved): its expiry on the new node ends
        C{expiry - offline} seconds after it arrives, when it would have
        ended on the old one.  A duration, not a deadline, so that the
        nodes' clocks need not agree.
    """

    sid: tuple[str, str]
    expiry: int | None
    subscriptions: dict[str, SubOpts] = field(default_factory=dict)
    inflight: list[InflightEntry] = field(default_factory=list)
    pending: list[QueuedEntry] = field(default_factory=list)
    qos2_in: list[int] = field(default_factory=list)
    next_pid: int = 1
    default_expiry: bool = False
    offline: float = 0.0

    def messages(self) -> int:
        """How many messages it carries."""
        return len(self.inflight) + len(self.pending)

    def to_term(self, router: ClusterRouter) -> tuple[Any, ...]:
        """
        C{{session, Mountpoint, ClientId, Expiry, Subs, Inflight, Pending,
        Qos2In, NextPid, OfflineMs}}; C{Expiry} is seconds, C{infinity} or
        C{default}; C{OfflineMs} is L{offline} in milliseconds.
        """
        mountpoint = self.sid[0]
        if self.default_expiry:
            expiry: Any = Atom("default")
        else:
            expiry = Atom("infinity") if self.expiry is None else self.expiry
        subs = [
            (f.encode("utf-8"), o.qos, o.no_local, o.rap, o.retain_handling, list(o.sub_ids))
            for f, o in self.subscriptions.items()
        ]
        inflight = [
            (pid, qos, retain, list(sub_ids), released, router.message_term(mountpoint, msg))
            for pid, qos, retain, sub_ids, released, msg in self.inflight
        ]
        pending = [
            (qos, retain, list(sub_ids), router.message_term(mountpoint, msg))
            for msg, qos, retain, sub_ids in self.pending
        ]
        return (
            _SESSION,
            mountpoint.encode("utf-8"),
            self.sid[1].encode("utf-8"),
            expiry,
            subs,
            inflight,
            pending,
            list(self.qos2_in),
            self.next_pid,
            max(round(self.offline * 1000), 0),
        )

    @classmethod
    def from_term(cls, router: ClusterRouter, term: Any) -> SessionState:
        """
        Read L{to_term}'s form; also the older one without C{OfflineMs}
        (the session then counts as offline since it arrives).

        @raise ValueError: it is not one.
        """
        try:
            if not isinstance(term, tuple) or len(term) not in (9, 10):
                raise ValueError("not a session")
            tag, mountpoint, client_id, expiry, subs, inflight, pending, qos2_in, pid = term[:9]
            offline_ms = term[9] if len(term) == 10 else 0
            if tag != _SESSION:
                raise ValueError("not a session")
            state = cls((_text(mountpoint), _text(client_id)), None)
            if expiry == Atom("default"):
                state.default_expiry = True
            elif expiry != Atom("infinity"):
                state.expiry = int(expiry)
            for raw, qos, no_local, rap, handling, sub_ids in subs:
                state.subscriptions[_text(raw)] = SubOpts(
                    int(qos), _bool(no_local), _bool(rap), int(handling), tuple(sub_ids)
                )
            for ipid, qos, retain, sub_ids, released, record in inflight:
                msg = router.message_from_term(record)
                state.inflight.append(
                    (int(ipid), int(qos), _bool(retain), tuple(sub_ids), _bool(released), msg)
                )
            for qos, retain, sub_ids, record in pending:
                msg = router.message_from_term(record)
                state.pending.append((msg, int(qos), _bool(retain), tuple(sub_ids)))
            state.qos2_in = [int(i) for i in qos2_in]
            state.next_pid = int(pid)
            if isinstance(offline_ms, bool) or not isinstance(offline_ms, int):
                raise ValueError(f"bad offline time {offline_ms!r:.40}")
            state.offline = max(offline_ms, 0) / 1000.0
        except (TypeError, ValueError, IndexError) as error:
            raise ValueError(f"bad session state: {error}") from None
        return state


class MovedSession:
    """
    Stands in the trie, for C{max_drain_time}, for a session that moved
    to another node: what still matches it here is sent there (an C{enq}
    item with C{migrated} options).

    @ivar sid: the session's C{(mountpoint, client_id)} (for no-local).
    @ivar node: where it went.
    """

    __slots__ = ("filters", "node", "sessions", "sid")

    local = True

    def __init__(
        self, sessions: ClusterSessions, sid: tuple[str, str], node: str, filters: list[str]
    ) -> None:
        self.sessions = sessions
        self.sid = sid
        self.node = node
        self.filters = filters

    def __repr__(self) -> str:
        return f"<MovedSession {self.sid[1]!r} to {self.node}>"

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        """Send C{msg} on to the session's new node."""
        self.sessions.forward(self, msg, min(msg.qos, sub_qos), rap and msg.retain)


@implementer(INodeObserver)
class _DownTimes:
    """When each node's distribution connection went down (L{ClusterSessions})."""

    def __init__(self, sessions: ClusterSessions) -> None:
        self.sessions = sessions

    def nodeUp(self, node: Atom) -> None:
        self.sessions._down_since.pop(str(node), None)

    def nodeDown(self, node: Atom, reason: str) -> None:
        self.sessions._down_since.setdefault(str(node), self.sessions.reactor.seconds())


class ClusterSessions:
    """
    Registration coordination, takeover and queue migration for one node;
    see the module docstring.

    @ivar counters: C{takeovers} (sessions handed to another node),
        C{adopted} (sessions received), C{migrated_messages} (messages
        received with them), C{forwarded} (stragglers sent on by a
        L{MovedSession}), C{not_ready} (registrations refused).
    """

    log = Logger()

    def __init__(
        self,
        broker: Broker,
        router: ClusterRouter,
        transport: IClusterTransport,
        reactor: IReactorTime,
        *,
        running: Callable[[], list[str]],
        send: Callable[[str, Any], bool],
        rpcTimeout: float = 5.0,
        drainTime: float = 0.5,
        batch: int = 100,
    ) -> None:
        """
        @param running: the members that answer now, this node included.
        @param send: C{send(node, item)}: the data channel.
        @param drainTime: seconds a L{MovedSession} lingers.
        @param batch: sessions per C{vmq:session_adopt} call.
        """
        self.broker = broker
        self.router = router
        self.transport = transport
        self.node: str = transport.name
        self.reactor = reactor
        self.running = running
        self._send = send
        self.rpcTimeout = rpcTimeout
        self.drainTime = drainTime
        self.batch = max(1, batch)
        self.counters = {
            "takeovers": 0,
            "adopted": 0,
            "migrated_messages": 0,
            "forwarded": 0,
            "not_ready": 0,
        }
        self._locks: dict[tuple[str, str], Deferred[None]] = {}
        self._moved: dict[MovedSession, IDelayedCall] = {}
        #: node -> when (reactor seconds) its distribution connection went
        #: down and has not come back: its clients are offline since.
        self._down_since: dict[str, float] = {}
        self._cancel = router.store.subscribe(SUBSCRIBER, self._entry_changed)
        self._unobserve = transport.subscribe(_DownTimes(self))
        broker.cluster_sessions = self

    def export(self) -> None:
        """
        Export C{vmq:session_takeover/4}, C{session_register/4},
        C{session_adopt/1}, C{session_connected/2}.
        """
        self.transport.export("session_takeover", self._remoteTakeover)
        self.transport.export("session_register", self._remoteRegister)
        self.transport.export("session_adopt", self._remoteAdopt)
        self.transport.export("session_connected", self._remoteConnected)

    def stop(self) -> None:
        """Stop following the store and the nodes; drop the lingering stand-ins."""
        self._cancel()
        self._unobserve()
        for moved, call in list(self._moved.items()):
            if call.active():
                call.cancel()
            self._unlinger(moved)
        self._moved.clear()

    # -- registration (the new node) -------------------------------------------

    def register(self, sid: tuple[str, str], clean_start: bool) -> Deferred[None] | None:
        """
        Coordinate the registration of C{sid} on this node (see the module
        docstring).  L{None}: nothing to ask, register locally now.  Else
        a L{Deferred} that fires once any session elsewhere was handed
        over (and a moved one installed here), or fails with L{NotReady}.
        """
        broker = self.broker
        if not broker.clustered:
            return None
        if broker.netsplit:
            owner = self._owner(sid)
            if owner is None or not self.transport.isConnected(owner):
                return None
            return Deferred.fromCoroutine(
                self._ask(owner, "session_takeover", sid, clean_start, tolerant=True)
            )
        if broker.config["coordinate_registrations"]:
            try:
                sync = pick_node(self.running(), sid)
            except ValueError:
                return None
            return Deferred.fromCoroutine(self._ask(sync, "session_register", sid, clean_start))
        owner = self._owner(sid)
        if owner is None:
            return None
        return Deferred.fromCoroutine(self._ask(owner, "session_takeover", sid, clean_start))

    def _owner(self, sid: tuple[str, str]) -> str | None:
        """The other node the subscriber entry of C{sid} names, if any."""
        value = self.router.store.get(SUBSCRIBER, (sid[0].encode("utf-8"), sid[1].encode("utf-8")))
        if not (isinstance(value, tuple) and value):
            return None
        owner = str(value[0])
        return None if owner == self.node else owner

    async def _ask(
        self,
        node: str,
        function: str,
        sid: tuple[str, str],
        clean_start: bool,
        tolerant: bool = False,
    ) -> None:
        args = [sid[0].encode("utf-8"), sid[1].encode("utf-8"), Atom(self.node), clean_start]
        timeout = self.rpcTimeout * (2 if function == "session_register" else 1)
        try:
            answer = await self.transport.call(node, function, args, timeout)
            state = None
            if isinstance(answer, tuple) and answer and answer[0] == _SESSION:
                state = SessionState.from_term(self.router, answer)
        except (BadRpc, ValueError) as error:
            if tolerant:
                self.log.warn(
                    "registering client {client_id} locally: {peer} did not hand its "
                    "session over ({error})",
                    client_id=sid[1],
                    peer=node,
                    error=str(error),
                )
                return
            self.counters["not_ready"] += 1
            raise NotReady(f"{function} on {node} failed: {error}") from None
        if state is not None:
            self.install(state)

    def install(self, state: SessionState) -> Session | None:
        """
        Install a session that moved here, offline (its expiry running,
        less the time it already spent offline, L{SessionState.offline});
        a live local session of the same id is kept instead (its messages
        are added to its queue).  Writes its subscriber entry.
        """
        broker = self.broker
        sid = state.sid
        self.counters["adopted"] += 1
        self.counters["migrated_messages"] += state.messages()
        existing = broker.sessions.get(sid)
        if existing is not None:
            for _pid, qos, retain, sub_ids, _released, msg in state.inflight:
                existing.deliver(msg, qos, retain, sub_ids)
            for msg, qos, retain, sub_ids in state.pending:
                existing.deliver(msg, qos, retain, sub_ids)
            return existing
        expiry = state.expiry
        if state.default_expiry:
            expiry = broker.config["persistent_client_expiration"]
        session = Session(broker, broker.topics(sid[0]), sid[1], broker.limits(None), expiry)
        for topic_filter, opts in state.subscriptions.items():
            try:
                session.topics.subscribe(topic_filter, session, opts)
            except ValueError:
                continue
            session.subscriptions[topic_filter] = opts
        for pid, qos, retain, sub_ids, released, msg in state.inflight:
            entry = _Inflight(msg, qos, retain, sub_ids, self.reactor.seconds())
            entry.released = released
            session.inflight[pid] = entry
        session.pending.extend(state.pending)
        session.qos2_in.update(state.qos2_in)
        session.next_pid = state.next_pid
        broker.sessions[sid] = session
        session.park(state.offline)
        if broker.clustered:
            self.router.subscriptions_changed(session)
        return session

    # -- the old node ------------------------------------------------------------

    def _remoteTakeover(self, mountpoint: Any, client_id: Any, node: Any, clean: Any) -> Any:
        """C{vmq:session_takeover(Mountpoint, ClientId, NewNode, CleanStart)}."""
        try:
            sid = (_text(mountpoint), _text(client_id))
        except (TypeError, ValueError):
            raise ErlangError(Atom("badarg")) from None
        if not isinstance(node, Atom):
            raise ErlangError(Atom("badarg"))
        session = self.broker.sessions.get(sid)
        if session is None:
            return _NONE
        state = self.hand_over(session, str(node), migrate=not _bool(clean))
        return _ENDED if state is None else state.to_term(self.router)

    def hand_over(self, session: Session, node: str, migrate: bool) -> SessionState | None:
        """
        Take C{session} off this node for C{node}: close its connection
        (taken over), and return its state if C{migrate} and it is
        persistent, else end it.  The subscriber entry is left for the new
        node to write.
        """
        broker = self.broker
        sid = session.sid
        self.counters["takeovers"] += 1
        offline = session.offline_seconds()
        subscriptions = dict(session.subscriptions)
        topics = session.topics
        for topic_filter in subscriptions:
            topics.unsubscribe(topic_filter, session)
        session.subscriptions.clear()
        old = session.conn
        if old is not None:
            self.log.info(
                "client {client_id} (mountpoint {mountpoint!r}) taken over by node {peer}",
                client_id=sid[1],
                mountpoint=sid[0],
                peer=node,
            )
            broker.begin()
            try:
                session.connection_lost(
                    old, send_will=not broker.config["suppress_lwt_on_session_takeover"]
                )
                old.taken_over()
            finally:
                broker.end()
        state: SessionState | None = None
        if migrate and session.expiry != 0 and broker.sessions.get(sid) is session:
            state = SessionState(
                sid,
                session.expiry,
                subscriptions,
                [
                    (pid, e.qos, e.retain, e.sub_ids, e.released, e.msg)
                    for pid, e in session.inflight.items()
                ],
                list(session.pending),
                sorted(session.qos2_in),
                session.next_pid,
                offline=offline,
            )
            session.inflight.clear()
            session.pending.clear()
            session.will = None
        if broker.sessions.get(sid) is session:
            broker.end_session(session, "replaced")
        self.log.info(
            "session of client {client_id} (mountpoint {mountpoint!r}) handed over to node "
            "{peer}: {outcome}",
            client_id=sid[1],
            mountpoint=sid[0],
            peer=node,
            outcome="ended" if state is None else f"moved with {state.messages()} messages",
        )
        if state is not None and node != self.node:
            self._linger(sid, node, list(subscriptions.items()))
        return state

    def _linger(self, sid: tuple[str, str], node: str, subs: list[tuple[str, SubOpts]]) -> None:
        if self.drainTime <= 0:
            return
        plain = [(f, o) for f, o in subs if parse_shared(f)[0] is None]
        if not plain:
            return
        moved = MovedSession(self, sid, node, [f for f, _ in plain])
        topics = self.broker.topics(sid[0])
        for topic_filter, opts in plain:
            topics.subscribe(topic_filter, moved, opts)
        self._moved[moved] = self.reactor.callLater(self.drainTime, self._unlinger, moved)

    def _unlinger(self, moved: MovedSession) -> None:
        self._moved.pop(moved, None)
        topics = self.broker.topics(moved.sid[0])
        for topic_filter in moved.filters:
            topics.unsubscribe(topic_filter, moved)

    def forward(self, moved: MovedSession, msg: Message, qos: int, retain: bool) -> None:
        """A straggler for a moved session: send it on."""
        if self._send(moved.node, self.router.migrated_item(moved.sid, msg, qos, retain)):
            self.counters["forwarded"] += 1

    def _entry_changed(self, key: Any, old: Any, new: Any) -> None:
        """
        The subscriber entry of a session of this node changed elsewhere.

          - Deleted (a tombstone, e.g. written on the other side of a
            netsplit by a clean session of the same client id that ended
            there) while the session is still connected here: the entry is
            written again, newer (L{_reassert}); a deletion never beats a
            live connected session.
          - Now naming another node (an uncoordinated registration there,
            or a netsplit healed): if the session here is connected, that
            node is asked whether its session is connected too
            (C{vmq:session_connected/2}); if it is (or this session is not
            connected), the other registration wins and this session is
            handed over to it; if not (a persistent session that was only
            left offline there), this node re-asserts its entry, and the
            other node, seeing its own entry rewritten, hands its offline
            session (queue) over here.
        """
        if not (isinstance(old, tuple) and old and str(old[0]) == self.node):
            return
        try:
            sid = (_text(key[0]), _text(key[1]))
        except (TypeError, ValueError, IndexError):
            return
        session = self.broker.sessions.get(sid)
        if session is None:
            return
        if new is None:
            if session.conn is not None:
                self.reactor.callLater(0, self._reassert, sid, session, None)
            return
        if not (isinstance(new, tuple) and new):
            return
        target = str(new[0])
        if target == self.node:
            return
        if session.conn is None:
            self._yield(sid, session, target)
            return
        args = [sid[0].encode("utf-8"), sid[1].encode("utf-8")]
        d = self.transport.call(target, "session_connected", args, self.rpcTimeout)

        def answered(connected: Any) -> None:
            if _bool(connected):
                self._yield(sid, session, target)
            else:
                self.reactor.callLater(0, self._reassert, sid, session, target)

        def failed(reason: Any) -> None:
            self.reactor.callLater(0, self._reassert, sid, session, target)

        d.addCallbacks(answered, failed)

    def _yield(self, sid: tuple[str, str], session: Session, target: str) -> None:
        """The registration on C{target} wins: hand C{session} over to it."""
        if self.broker.sessions.get(sid) is not session:
            return
        current = self.router.store.get(SUBSCRIBER, _sid_key(sid))
        if not (isinstance(current, tuple) and current and str(current[0]) == target):
            return
        self.log.info(
            "client {client_id} registered on node {peer} meanwhile",
            client_id=sid[1],
            peer=target,
        )
        state = self.hand_over(session, target, migrate=True)
        if state is not None:
            Deferred.fromCoroutine(self._adopt(target, [state.to_term(self.router)]))

    def _reassert(self, sid: tuple[str, str], session: Session, target: str | None) -> None:
        """
        C{session} is still connected here though its entry was deleted
        (C{target} L{None}) or written by C{target}, whose session is not
        connected: write the entry again, with a newer version.
        """
        if self.broker.sessions.get(sid) is not session or session.conn is None:
            return
        if not self.broker.clustered:
            return
        current = self.router.store.get(SUBSCRIBER, _sid_key(sid))
        if target is None:
            if current is not None:
                return
        elif not (isinstance(current, tuple) and current and str(current[0]) == target):
            return
        self.log.info(
            "client {client_id} is connected here: its subscriber entry, {what}, is written again",
            client_id=sid[1],
            what="deleted" if target is None else f"written by {target}",
        )
        self.router.subscriptions_changed(session)

    def _remoteConnected(self, mountpoint: Any, client_id: Any) -> Any:
        """C{vmq:session_connected(Mountpoint, ClientId)}: whether it is, here."""
        try:
            sid = (_text(mountpoint), _text(client_id))
        except (TypeError, ValueError):
            raise ErlangError(Atom("badarg")) from None
        session = self.broker.sessions.get(sid)
        return session is not None and session.conn is not None

    async def _adopt(self, target: str, terms: list[Any]) -> bool:
        """C{vmq:session_adopt(terms)} on C{target}; whether it worked (failures logged)."""
        try:
            await self.transport.call(target, "session_adopt", [terms], self.rpcTimeout * 4)
        except BadRpc as error:
            self.log.error(
                "moving {n} sessions to {peer} failed: {error}",
                n=len(terms),
                peer=target,
                error=str(error),
            )
            return False
        return True

    # -- the sync node -----------------------------------------------------------

    def _remoteRegister(self, mountpoint: Any, client_id: Any, node: Any, clean: Any) -> Any:
        """
        C{vmq:session_register(Mountpoint, ClientId, Node, CleanStart)} on
        the sync node: one at a time per client id, every other running
        member hands the session over; the answer is the moved state, if
        any, else C{none}.
        """
        try:
            sid = (_text(mountpoint), _text(client_id))
        except (TypeError, ValueError):
            raise ErlangError(Atom("badarg")) from None
        if not isinstance(node, Atom):
            raise ErlangError(Atom("badarg"))
        return Deferred.fromCoroutine(self._registerSync(sid, str(node), _bool(clean)))

    async def _registerSync(self, sid: tuple[str, str], requester: str, clean: bool) -> Any:
        previous = self._locks.get(sid)
        mine: Deferred[None] = Deferred()
        self._locks[sid] = mine
        try:
            if previous is not None:
                await previous
            return await self._collect(sid, requester, clean)
        finally:
            if self._locks.get(sid) is mine:
                del self._locks[sid]
            mine.callback(None)

    async def _collect(self, sid: tuple[str, str], requester: str, clean: bool) -> Any:
        targets = sorted(n for n in self.running() if n != requester)
        args = [sid[0].encode("utf-8"), sid[1].encode("utf-8"), Atom(requester), clean]
        calls = [self.transport.call(n, "session_takeover", args, self.rpcTimeout) for n in targets]
        results = await DeferredList(calls, consumeErrors=True)
        answer: Any = _NONE
        for target, (ok, value) in zip(targets, results, strict=True):
            if not ok:
                raise ErlangError((Atom("not_ready"), Atom(target)))
            if isinstance(value, tuple) and value and value[0] == _SESSION:
                if answer is not _NONE:
                    self.log.warn(
                        "client {client_id} had sessions on several nodes; the one on "
                        "{peer} is dropped",
                        client_id=sid[1],
                        peer=target,
                    )
                    continue
                answer = value
        return answer

    # -- adopt (leave -k, dead nodes) --------------------------------------------

    def _remoteAdopt(self, states: Any) -> Any:
        """C{vmq:session_adopt([State])}: install sessions moved here."""
        if not isinstance(states, list):
            raise ErlangError(Atom("badarg"))
        for term in states:
            try:
                state = SessionState.from_term(self.router, term)
            except ValueError as error:
                self.log.warn("ignoring a bad migrated session: {error}", error=str(error))
                continue
            self.install(state)
        return _OK

    async def migrateQueues(self, targets: list[str]) -> tuple[int, int]:
        """
        This node leaves (C{cluster leave -k}): move every session still
        here that outlives its connection to C{targets}.

        @return: C{(queues, messages)} moved.
        """
        targets = [t for t in targets if t != self.node]
        broker = self.broker
        candidates = [s for s in list(broker.sessions.values()) if s.expiry != 0]
        if not targets:
            if candidates:
                self.log.warn("no member left to migrate {n} queues to", n=len(candidates))
            return (0, 0)
        total_msgs = sum(len(s.pending) + len(s.inflight) for s in candidates)
        batches: dict[str, list[Any]] = {}
        counts: dict[str, tuple[int, int]] = {}
        for session in candidates:
            target = pick_node(targets, session.sid)
            state = self.hand_over(session, target, migrate=True)
            if state is None:
                continue
            batches.setdefault(target, []).append(state.to_term(self.router))
            queues, msgs = counts.get(target, (0, 0))
            counts[target] = (queues + 1, msgs + state.messages())
        moved_queues = moved_msgs = 0
        for target, terms in sorted(batches.items()):
            ok = True
            for start in range(0, len(terms), self.batch):
                try:
                    await self.transport.call(
                        target,
                        "session_adopt",
                        [terms[start : start + self.batch]],
                        self.rpcTimeout * 4,
                    )
                except BadRpc as error:
                    ok = False
                    self.log.error(
                        "migrating queues to {peer} failed: {error}",
                        peer=target,
                        error=str(error),
                    )
                    break
            if ok:
                moved_queues += counts[target][0]
                moved_msgs += counts[target][1]
        self.log.info(
            "migrated {queues}/{total_queues} queues and {messages}/{total_messages} messages",
            queues=moved_queues,
            total_queues=len(candidates),
            messages=moved_msgs,
            total_messages=total_msgs,
        )
        return (moved_queues, moved_msgs)

    def _offline_since(self, node: str) -> float:
        """
        Seconds since the connection to the dead C{node} went down (its
        clients are offline at least that long), 0 if not known here.
        """
        since = self._down_since.get(node)
        if since is None:
            return 0.0
        return max(self.reactor.seconds() - since, 0.0)

    async def fixDeadQueues(self, dead: list[str], remaining: list[str]) -> int:
        """
        C{dead} were removed: recreate their persistent sessions'
        subscriptions on C{remaining}, delete their clean sessions' entries.
        A recreated session's expiry (the target's
        C{persistent_client_expiration}) counts from when this node lost
        its connection to the dead node.

        @return: how many sessions were recreated.
        """
        store = self.router.store
        dead_set = set(dead)
        targets = [n for n in remaining if n not in dead_set]
        batches: dict[str, list[Any]] = {}
        stale: list[Any] = []
        for key, value in list(store.items(SUBSCRIBER)):
            if not (isinstance(value, tuple) and len(value) >= 2):
                continue
            if str(value[0]) not in dead_set:
                continue
            persistent = (
                len(value) >= 3
                and isinstance(value[2], dict)
                and not _bool(value[2].get(_CLEAN_SESSION, True))
            )
            if not persistent or not targets:
                stale.append(key)
                continue
            try:
                sid = (_text(key[0]), _text(key[1]))
                state = SessionState(
                    sid, None, default_expiry=True, offline=self._offline_since(str(value[0]))
                )
                for raw, qos in value[1]:
                    state.subscriptions[_text(raw)] = SubOpts(int(qos))
            except (TypeError, ValueError, IndexError):
                continue
            target = pick_node(targets, sid)
            batches.setdefault(target, []).append(state.to_term(self.router))
        for key in stale:
            store.delete(SUBSCRIBER, key)
        fixed = 0
        for target, terms in sorted(batches.items()):
            for start in range(0, len(terms), self.batch):
                chunk = terms[start : start + self.batch]
                try:
                    await self.transport.call(target, "session_adopt", [chunk], self.rpcTimeout * 4)
                except BadRpc as error:
                    self.log.error(
                        "recreating queues of {dead} on {peer} failed: {error}",
                        dead=", ".join(dead),
                        peer=target,
                        error=str(error),
                    )
                    continue
                fixed += len(chunk)
        self.log.info(
            "recreated {fixed} queues of {dead} on the remaining nodes; {stale} clean "
            "sessions' entries deleted",
            fixed=fixed,
            dead=", ".join(dead),
            stale=len(stale),
        )
        return fixed
