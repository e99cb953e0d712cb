# -*- test-case-name: tests.test_broker_session -*-
"""
MQTT sessions: the state a client keeps across connections.

A L{Session} is one subscriber id C{(mountpoint, client_id)}.  It lives
while its client is connected and, for a persistent session, after that
until it expires.  It holds:

  - the subscriptions (filter -> L{SubOpts}), mirrored in its
    mountpoint's trie with the session itself as the key (a
    C{$share/<group>/<filter>} one makes the session a member of the
    group, which is the trie's key: L{vernemq.broker.shared});
  - the outgoing QoS 1/2 state: the inflight window (packet id ->
    L{_Inflight}, in send order), the next packet id, and one retry timer
    for the whole window (not one per message);
  - the queue of messages waiting for the window, for a paused (slow)
    connection, or for the client to come back (L{Session.pending});
  - the inbound QoS 2 packet ids received but not yet released
    ("method B": the message is routed on PUBLISH, the id is remembered
    until PUBREL, so a DUP PUBLISH is acknowledged but not routed again);
  - the will of the current connection and its delay timer, and the
    session expiry timer.

Packets from the client arrive through the C{handle_*} methods, called by
L{vernemq.mqtt.protocol.MQTTProtocol}.  A handler raises an
L{vernemq.mqtt.packets.MQTTError} for a protocol violation (the protocol
closes the connection with the reason code), and returns a L{Deferred}
when it waits for an asynchronous plugin hook (the protocol handles no
further packet of that client until it fires).

Delivery (L{Session.deliver}) is the fan-out hot path, called by
L{vernemq.broker.router.route} once per matching session: QoS 0 goes
straight into the connection's output batch as the message's cached
bytes; QoS 1/2 takes a packet id if the window has room, else waits in
the queue.  Limits: C{max_inflight_messages} (and an MQTT 5.0 client's
receive maximum) bound the window; C{max_online_messages} bounds the queue
while connected and C{max_offline_messages} while offline (QoS 0 is not
queued offline); a full queue drops the new message and counts it (in
L{Session.dropped} and the broker's C{dropped} counter, never logged per
message).  On reconnect the offline queue is cut to the online limit
unless C{override_max_online_messages} is on, as in VerneMQ.

MQTT 5.0 connections that allow outbound topic aliases or announce a
Maximum Packet Size are "shaped" (L{Session.set_outbound}): their
deliveries go through L{Session._publish_out}, which assigns aliases and
drops, for this subscriber only, a message too large for it.  Every other
connection keeps the cached, zero-copy bytes of L{Message.frame}.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from vernemq.broker.message import Message, pid_bytes
from vernemq.broker.router import SubOpts, Topics
from vernemq.broker.shared import SharedMessage
from vernemq.broker.topics import parse_shared, validate_topic_filter
from vernemq.mqtt.packets import (
    Disconnect,
    MQTTError,
    Packet,
    PingReq,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from vernemq.plugins.hooks import OK, Error, Ok

if TYPE_CHECKING:
    from vernemq.broker.broker import Broker

__all__ = ["Connection", "Limits", "NotAuthorizedError", "Session"]

#: Fixed headers of the two-byte acknowledgements.
_PUBACK = b"\x40\x02"
_PUBREC = b"\x50\x02"
_PUBREL = b"\x62\x02"
_PUBCOMP = b"\x70\x02"
_PINGRESP = b"\xd0\x00"

#: MQTT 5.0 "never expires".
SESSION_NEVER_EXPIRES = 0xFFFFFFFF


class NotAuthorizedError(MQTTError):
    """A client did something a plugin forbade (0x87); the connection closes."""

    reason_code = 0x87


class Connection(Protocol):
    """
    What a session needs from the connection it is attached to
    (L{vernemq.mqtt.protocol.MQTTProtocol} provides it).
    """

    #: The protocol level: 3, 4 or 5 (the bridge bit is stripped).
    level: int
    #: Whether the transport asked us to stop writing (back-pressure).
    paused: bool
    #: MQTT 5.0 topic aliases the client set (alias -> topic).
    aliases: dict[int, str]

    def write(self, data: bytes) -> None:
        """Add bytes to this connection's output batch."""

    def write_parts(self, head: bytes, middle: bytes, tail: bytes) -> None:
        """Add three byte strings to this connection's output batch."""

    def send_packet(self, packet: Packet) -> None:
        """Encode a packet for this connection and add it to the batch."""

    def close(self, send_will: bool) -> None:
        """Close after the pending output; the will goes if C{send_will}."""

    def taken_over(self) -> None:
        """A newer connection took the client id: close this one."""

    def throttle(self, seconds: float) -> None:
        """Read nothing from the client for C{seconds}."""


@dataclass(slots=True)
class Limits:
    """
    Per-session limits, from the configuration, changeable by
    C{auth_on_register} modifiers.

    The last three are enforced by the connection
    (L{vernemq.mqtt.protocol.MQTTProtocol.attach}), not the session:
    C{max_message_size} bytes per inbound packet (0 = unlimited),
    C{max_message_rate} inbound PUBLISHes per second (0 = unlimited) and
    C{max_connection_lifetime} seconds (0 = only the listener's setting).
    """

    max_inflight: int = 20
    max_online: int = 1000
    max_offline: int = 1000
    retry_interval: float = 20.0
    upgrade_qos: bool = False
    lifo: bool = False
    #: This publisher's C{shared_subscription_policy} (a register
    #: modifier), or L{None} for the node's.
    shared_policy: str | None = None
    max_message_size: int = 0
    max_message_rate: int = 0
    max_connection_lifetime: float = 0
    #: C{allow_publish}/C{allow_subscribe}/C{allow_unsubscribe} register
    #: modifiers (netsplit gating overrides), L{None} when none was given.
    netsplit: dict[str, bool] | None = None


class _Inflight:
    """One outgoing QoS 1/2 message waiting for its acknowledgement."""

    __slots__ = ("msg", "qos", "released", "retain", "sent_at", "sub_ids")

    def __init__(
        self, msg: Message, qos: int, retain: bool, sub_ids: tuple[int, ...], sent_at: float
    ) -> None:
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.sent_at = sent_at
        #: QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP.
        self.released = False


_Queued = tuple[Message, int, bool, tuple[int, ...]]


class Session:
    """
    The state of one client id in one mountpoint.

    @ivar sid: C{(mountpoint, client_id)}, VerneMQ's subscriber id.
    @ivar conn: the attached connection, or L{None} while offline.
    @ivar level: the protocol level of the last connection (3, 4 or 5).
    @ivar expiry: seconds the session outlives its connection: 0 ends it
        with the connection, L{None} never expires.
    @ivar subscriptions: filter -> L{SubOpts}.
    @ivar pending: messages waiting for delivery, oldest first.
    @ivar inflight: packet id -> unacknowledged outgoing message.
    @ivar qos2_in: inbound QoS 2 packet ids awaiting PUBREL.
    @ivar dropped: messages this session dropped because a queue was full.
    """

    log = Logger()

    __slots__ = (
        "_clock",
        "_expiry_call",
        "_retry_call",
        "_will_call",
        "broker",
        "bridge",
        "client_id",
        "conn",
        "counters",
        "dropped",
        "expiry",
        "inflight",
        "level",
        "limits",
        "max_depth",
        "mountpoint",
        "next_pid",
        "pending",
        "qos2_in",
        "receive_max_in",
        "sid",
        "subscriptions",
        "topics",
        "username",
        "will",
        "will_delay",
        "window",
        "alias_out",
        "alias_out_max",
        "max_packet_out",
        "shaped",
        "__weakref__",
    )

    def __init__(
        self,
        broker: Broker,
        topics: Topics,
        client_id: str,
        limits: Limits,
        expiry: int | None = 0,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.mountpoint = topics.mountpoint
        self.client_id = client_id
        self.sid = (topics.mountpoint, client_id)
        self.limits = limits
        self.expiry = expiry
        self.conn: Connection | None = None
        self.level = 4
        self.bridge = False
        self.username: str | None = None
        self.subscriptions: dict[str, SubOpts] = {}
        self.pending: deque[_Queued] = deque()
        self.inflight: dict[int, _Inflight] = {}
        self.qos2_in: set[int] = set()
        self.next_pid = 1
        self.window = limits.max_inflight or 65535
        self.receive_max_in = 65535
        self.max_depth = 0
        self.dropped = 0
        self.will: Message | None = None
        self.will_delay = 0
        #: MQTT 5.0 outbound topic aliases of the current connection
        #: (topic -> alias), L{None} when the broker uses none.
        self.alias_out: dict[str, int] | None = None
        self.alias_out_max = 0
        #: The client's Maximum Packet Size (0: no limit).
        self.max_packet_out = 0
        #: Deliveries need per-connection bytes (outbound aliases or a
        #: maximum packet size): they go through L{_publish_out}.
        self.shaped = False
        self.counters = broker.counters
        self._clock = broker.reactor.seconds
        self._retry_call: IDelayedCall | None = None
        self._expiry_call: IDelayedCall | None = None
        self._will_call: IDelayedCall | None = None

    def __repr__(self) -> str:
        state = "online" if self.conn is not None else "offline"
        return (
            f"<Session {self.client_id!r} mountpoint={self.mountpoint!r} {state} "
            f"subscriptions={len(self.subscriptions)} inflight={len(self.inflight)} "
            f"queued={len(self.pending)}>"
        )

    #: A session is a member of shared-subscription groups on this node
    #: (L{vernemq.broker.shared.GroupMember}).
    local = True

    @property
    def online(self) -> bool:
        """Whether a connection is attached."""
        return self.conn is not None

    # -- delivery: the hot path ------------------------------------------

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        """
        Deliver a routed message that matched this session's subscriptions.

        @param sub_qos: the (highest) granted QoS of the matching
            subscriptions.
        @param rap: keep the message's RETAIN flag (MQTT 5.0
            retain-as-published); otherwise it is cleared.
        @param sub_ids: MQTT 5.0 subscription identifiers to send.
        """
        qos = msg.qos
        if sub_qos < qos or (sub_qos > qos and self.limits.upgrade_qos):
            qos = sub_qos
        retain = rap and msg.retain
        conn = self.conn
        # max_online_messages = 0 blocks delivery: everything goes through
        # the (then always full) queue.
        if conn is not None and not conn.paused and self.limits.max_online:
            if qos == 0:
                if self.shaped or (sub_ids and self.level == 5):
                    if self._publish_out(conn, msg, 0, retain, False, 0, sub_ids, None):
                        self.counters.publish_out += 1
                    return
                conn.write(msg.frame(self.level, 0, retain))
                self.counters.publish_out += 1
                return
            if not self.pending and len(self.inflight) < self.window:
                self._send_new(conn, msg, qos, retain, sub_ids, None)
                return
        self._enqueue(msg, qos, retain, sub_ids)

    def _enqueue(self, msg: Message, qos: int, retain: bool, sub_ids: tuple[int, ...]) -> None:
        if self.conn is None:
            if qos == 0:
                return
            limit = self.limits.max_offline
        else:
            limit = self.limits.max_online
        pending = self.pending
        if limit >= 0 and len(pending) >= limit:
            self.dropped += 1
            self.counters.dropped += 1
            return
        if self.limits.lifo:
            pending.appendleft((msg, qos, retain, sub_ids))
        else:
            pending.append((msg, qos, retain, sub_ids))

    def _send_new(
        self,
        conn: Connection,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        expiry: int | None,
    ) -> None:
        """Send a QoS 1/2 message under a new packet id."""
        inflight = self.inflight
        pid = self.next_pid
        while pid in inflight:
            pid = pid % 65535 + 1
        self.next_pid = pid % 65535 + 1
        if self.shaped or (sub_ids and self.level == 5) or expiry is not None:
            if not self._publish_out(conn, msg, qos, retain, False, pid, sub_ids, expiry):
                return
        else:
            head, tail = msg.frame(self.level, qos, retain)
            conn.write_parts(head, pid_bytes(pid), tail)
        now = self._clock()
        inflight[pid] = _Inflight(msg, qos, retain, sub_ids, now)
        self.counters.publish_out += 1
        if self._retry_call is None and self.limits.retry_interval > 0:
            self._retry_call = self.broker.reactor.callLater(
                self.limits.retry_interval, self._retry
            )

    def _publish_out(
        self,
        conn: Connection,
        msg: Message,
        qos: int,
        retain: bool,
        dup: bool,
        pid: int,
        sub_ids: tuple[int, ...],
        expiry: int | None,
    ) -> bool:
        """
        Write a PUBLISH that needs bytes of its own for this connection:
        MQTT 5.0 subscription identifiers, a remaining message expiry
        interval, an outbound topic alias, or a check against the client's
        Maximum Packet Size.  A message too large for this client is
        dropped for this client only (and counted).

        @param pid: the packet id (ignored for QoS 0).
        @return: False if the message was dropped.
        """
        level = self.level
        limit = self.max_packet_out
        if level == 5:
            aliases = self.alias_out
            alias = 0
            known = False
            new = False
            if aliases is not None:
                topic = msg.topic
                alias = aliases.get(topic, 0)
                if alias:
                    known = True
                elif len(aliases) < self.alias_out_max:
                    alias = len(aliases) + 1
                    new = True
            if sub_ids or expiry is not None or alias:
                data = msg.encode_for(5, qos, retain, dup, pid, list(sub_ids), expiry, alias, known)
                if limit and len(data) > limit:
                    self._drop_too_large()
                    return False
                if new and aliases is not None:
                    aliases[msg.topic] = alias
                conn.write(data)
                return True
        frame = msg.frame(level, qos, retain)
        if qos == 0:
            if limit and len(frame) > limit:
                self._drop_too_large()
                return False
            conn.write(frame)
            return True
        head, tail = frame
        if limit and len(head) + 2 + len(tail) > limit:
            self._drop_too_large()
            return False
        if dup:
            head = bytes((head[0] | 0x08,)) + head[1:]
        conn.write_parts(head, pid_bytes(pid), tail)
        return True

    def _drop_too_large(self) -> None:
        """Count a message dropped for exceeding the client's Maximum Packet Size."""
        self.dropped += 1
        self.counters.dropped += 1

    def set_outbound(self, alias_max: int, max_packet: int) -> None:
        """
        The MQTT 5.0 limits of the connection just attached: use topic
        aliases 1..C{alias_max} towards it (0: none) and send no packet
        larger than C{max_packet} bytes (0: no limit).  Aliases start
        afresh with each connection.
        """
        self.alias_out = {} if alias_max > 0 else None
        self.alias_out_max = alias_max
        self.max_packet_out = max_packet
        self.shaped = alias_max > 0 or max_packet > 0

    def drain(self) -> None:
        """Send queued messages while the connection and the window allow."""
        conn = self.conn
        if conn is None or conn.paused:
            return
        pending = self.pending
        inflight = self.inflight
        window = self.window
        level = self.level
        stats = self.counters
        now = self._clock()
        while pending:
            msg, qos, retain, sub_ids = pending[0]
            if qos and len(inflight) >= window:
                break
            pending.popleft()
            expiry: int | None = None
            if msg.expires_at is not None:
                left = msg.expires_at - now
                if left <= 0:
                    stats.expired += 1
                    continue
                expiry = math.ceil(left)
            if qos:
                self._send_new(conn, msg, qos, retain, sub_ids, expiry)
            else:
                if self.shaped or (sub_ids and level == 5) or expiry is not None:
                    if self._publish_out(conn, msg, 0, retain, False, 0, sub_ids, expiry):
                        stats.publish_out += 1
                    continue
                conn.write(msg.frame(level, 0, retain))
                stats.publish_out += 1

    def _resend(self, conn: Connection, pid: int, entry: _Inflight) -> bool:
        """
        Send an inflight message again: PUBLISH with DUP, or PUBREL.  A
        PUBLISH that no longer fits the client's maximum packet size (a
        new connection announced a smaller one) is dropped.

        @return: False if the message was dropped (the caller forgets it).
        """
        if entry.released:
            conn.write(_PUBREL + pid_bytes(pid))
            return True
        msg = entry.msg
        expiry: int | None = None
        if msg.expires_at is not None:
            expiry = max(math.ceil(msg.expires_at - self._clock()), 0)
        if self.shaped or (entry.sub_ids and self.level == 5) or expiry is not None:
            if not self._publish_out(
                conn, msg, entry.qos, entry.retain, True, pid, entry.sub_ids, expiry
            ):
                return False
        else:
            head, tail = msg.frame(self.level, entry.qos, entry.retain)
            conn.write_parts(bytes((head[0] | 0x08,)) + head[1:], pid_bytes(pid), tail)
        self.counters.publish_out += 1
        return True

    def _retry(self) -> None:
        """Resend what has waited C{retry_interval} for an acknowledgement."""
        self._retry_call = None
        conn = self.conn
        if conn is None or not self.inflight:
            return
        now = self._clock()
        interval = self.limits.retry_interval
        earliest: float | None = None
        for pid, entry in list(self.inflight.items()):
            due = entry.sent_at + interval
            if due <= now:
                if not self._resend(conn, pid, entry):
                    del self.inflight[pid]
                    continue
                entry.sent_at = now
                due = now + interval
            if earliest is None or due < earliest:
                earliest = due
        if earliest is not None:
            self._retry_call = self.broker.reactor.callLater(max(earliest - now, 0.0), self._retry)

    def deliver_retained(self, msg: Message, opts: SubOpts) -> None:
        """Deliver a retained message for a new subscription (RETAIN set)."""
        if msg.expires_at is not None and msg.expires_at <= self._clock():
            store = self.topics.retained
            if store.get(msg.topic) is msg:
                store.delete(msg.topic)
            return
        qos = msg.qos
        if opts.qos < qos or (opts.qos > qos and self.limits.upgrade_qos):
            qos = opts.qos
        self._enqueue(msg, qos, True, opts.sub_ids)

    # -- connection life cycle --------------------------------------------

    def attach(self, conn: Connection) -> None:
        """
        Attach a freshly accepted connection: cancel expiry and any pending
        delayed will (the client came back in time).
        """
        self.conn = conn
        self.level = conn.level
        self.set_outbound(0, 0)
        self._cancel_expiry()
        if self._will_call is not None:
            if self._will_call.active():
                self._will_call.cancel()
            self._will_call = None
        self.will = None

    def resume(self) -> None:
        """
        After the CONNACK: resend the unacknowledged messages (PUBLISH with
        DUP, or PUBREL) in their original order, then drain the queue.
        """
        conn = self.conn
        if conn is None:
            return
        now = self._clock()
        dropped = [pid for pid, e in self.inflight.items() if not self._resend(conn, pid, e)]
        for pid in dropped:
            del self.inflight[pid]
        for entry in self.inflight.values():
            entry.sent_at = now
        if self.inflight and self._retry_call is None and self.limits.retry_interval > 0:
            self._retry_call = self.broker.reactor.callLater(
                self.limits.retry_interval, self._retry
            )
        self._fit_online()
        self.drain()

    def _fit_online(self) -> None:
        """
        The offline queue becomes the online queue under the online limit
        (VerneMQ drops what does not fit, unless
        C{override_max_online_messages} is on): keep at most
        C{max_online_messages} (plus one window, which drains at once).
        """
        pending = self.pending
        limit = self.limits.max_online
        if limit < 0 or self.broker.config["override_max_online_messages"]:
            return
        if limit:
            limit += max(self.window - len(self.inflight), 0)
        excess = len(pending) - limit
        if excess > 0:
            for _ in range(excess):
                pending.pop()
            self.dropped += excess
            self.counters.dropped += excess

    def connection_lost(self, conn: Connection, send_will: bool) -> None:
        """
        The connection C{conn} is gone.  Publish or schedule the will, then
        end the session or keep it offline until it expires.
        """
        if self.conn is not conn:
            return
        self.conn = None
        if self._retry_call is not None:
            if self._retry_call.active():
                self._retry_call.cancel()
            self._retry_call = None
        will = self.will
        if will is not None and send_will:
            delay = self.will_delay
            if self.expiry is not None and self.expiry < delay:
                delay = self.expiry
            if delay <= 0:
                self.will = None
                self.broker.publish_will(self, will)
            else:
                self._will_call = self.broker.reactor.callLater(delay, self._will_due)
        else:
            self.will = None
        if self.expiry == 0:
            self.broker.end_session(self, "gone")
            return
        if self.pending or self.inflight:
            self._release_shared(ending=False)
        if self.pending:
            self._keep_offline()
        if self.expiry is not None:
            self._expiry_call = self.broker.reactor.callLater(self.expiry, self._expired)
        self.broker.hooks.all("on_client_offline", self.sid)

    def _release_shared(self, ending: bool) -> None:
        """
        The connection is gone: hand the messages this session got through
        a shared subscription and has not delivered back to their group,
        for another member (see L{vernemq.broker.shared}): queued QoS 1/2
        messages and sent, unacknowledged QoS 1 ones.  A sent QoS 2 message
        stays [MQTT-4.8.2-4, MQTT-4.8.2-5].

        @param ending: the session ends: any other member may take them
            (else only an online one, and what nobody takes stays here).
        """
        inflight = self.inflight
        for pid, entry in list(inflight.items()):
            msg = entry.msg
            if (
                entry.qos == 1
                and isinstance(msg, SharedMessage)
                and msg.group.redispatch(msg, self, ending)
            ):
                del inflight[pid]
        kept: deque[_Queued] = deque()
        moved = False
        for queued in self.pending:
            msg = queued[0]
            if (
                queued[1]
                and isinstance(msg, SharedMessage)
                and msg.group.redispatch(msg, self, ending)
            ):
                moved = True
            else:
                kept.append(queued)
        if moved:
            self.pending = kept

    def _keep_offline(self) -> None:
        """
        What was queued for the connection becomes the offline queue under
        the offline rules (as VerneMQ re-inserts a session's queue into the
        offline queue): QoS 0 messages are not kept, and at most
        C{max_offline_messages} of the others; the rest are dropped.
        """
        kept = [entry for entry in self.pending if entry[1]]
        limit = self.limits.max_offline
        if limit >= 0 and len(kept) > limit:
            dropped = len(kept) - limit
            self.dropped += dropped
            self.counters.dropped += dropped
            del kept[limit:]
        self.pending = deque(kept)

    def _will_due(self) -> None:
        self._will_call = None
        will, self.will = self.will, None
        if will is not None:
            self.broker.publish_will(self, will)

    def _expired(self) -> None:
        self._expiry_call = None
        if self.conn is None:
            self.broker.end_session(self, "expired")

    def park(self, offline: float = 0.0) -> None:
        """
        An offline session that arrived without a connection (moved here
        from another node, L{vernemq.cluster.sessions}): start its expiry
        as if its connection had gone C{offline} seconds ago (it ends at
        once if that is past its expiry).
        """
        if self.conn is None and self.expiry is not None and self._expiry_call is None:
            self._expiry_call = self.broker.reactor.callLater(
                max(self.expiry - offline, 0.0), self._expired
            )

    def offline_seconds(self) -> float:
        """
        Seconds this session has spent offline, as its expiry timer counts
        them (across moves, see L{park}): 0 while connected or when it
        never expires.
        """
        expiry = self.expiry
        call = self._expiry_call
        if self.conn is not None or expiry is None or call is None or not call.active():
            return 0.0
        left = call.getTime() - self.broker.reactor.seconds()
        return min(max(expiry - left, 0.0), float(expiry))

    def _cancel_expiry(self) -> None:
        if self._expiry_call is not None:
            if self._expiry_call.active():
                self._expiry_call.cancel()
            self._expiry_call = None

    def finish(self) -> None:
        """
        End the session: publish a will still waiting for its delay (the
        session ending comes first), drop subscriptions, queues and timers.
        Called by L{Broker.end_session}.
        """
        self._cancel_expiry()
        for call in (self._retry_call, self._will_call):
            if call is not None and call.active():
                call.cancel()
        self._retry_call = None
        if self._will_call is not None:
            self._will_call = None
            will, self.will = self.will, None
            if will is not None:
                self.broker.publish_will(self, will)
        topics = self.topics
        for topic_filter in self.subscriptions:
            topics.unsubscribe(topic_filter, self)
        if self.subscriptions:
            self.subscriptions.clear()
            self._subscriptions_changed()
        if self.pending or self.inflight:
            self._release_shared(ending=True)
        self.pending.clear()
        self.inflight.clear()
        self.qos2_in.clear()

    def _subscriptions_changed(self) -> None:
        """Tell the cluster (replicated subscriptions) when this node has peers."""
        broker = self.broker
        if broker.clustered and broker.cluster_router is not None:
            broker.cluster_router.subscriptions_changed(self)

    # -- packets from the client ------------------------------------------

    def handle_publish(self, pkt: Publish) -> Deferred[None] | None:
        """PUBLISH from the client: authorize, route, acknowledge."""
        broker = self.broker
        self.counters.publish_in += 1
        topic = pkt.topic
        props = pkt.properties
        if props:
            alias = props.get("topic_alias")
            if alias is not None:
                topic = self._resolve_alias(alias, topic)
        if self.max_depth and topic.count("/") >= self.max_depth:
            raise ProtocolError(f"topic {topic!r} deeper than topic_max_depth", 0x90)
        qos = pkt.qos
        if qos == 2:
            pid = pkt.packet_id
            if pid in self.qos2_in:
                # A DUP of a message already routed: acknowledge only.
                self._ack(pkt, 0)
                return None
            if len(self.qos2_in) >= self.receive_max_in:
                raise ProtocolError("receive maximum exceeded", 0x93)
        if topic[:1] == "$":
            # VerneMQ reserves $-topics ($SYS...) for the broker: accept
            # and drop (a QoS 2 id still waits for its PUBREL).
            if qos == 2:
                self.qos2_in.add(pkt.packet_id)  # type: ignore[arg-type]
            self._ack(pkt, 0x10)
            return None
        hooks = broker.hooks
        if hooks.publish_open:
            # Only allow-all ACLs: skip the chain (the per-message hot path).
            self._publish_authorized(OK, pkt, topic)
            return None
        if self.level == 5:
            answer = hooks.all_till_ok(
                "auth_on_publish_m5",
                self.username,
                self.sid,
                qos,
                topic,
                pkt.payload,
                pkt.retain,
                props,
            )
        else:
            answer = hooks.all_till_ok(
                "auth_on_publish", self.username, self.sid, qos, topic, pkt.payload, pkt.retain
            )
        if answer.__class__ is not Ok and isinstance(answer, Deferred):
            return answer.addCallback(self._publish_authorized, pkt, topic)
        self._publish_authorized(answer, pkt, topic)
        return None

    def _resolve_alias(self, alias: int, topic: str) -> str:
        conn = self.conn
        # VerneMQ: topic_alias_max_client bounds the aliases a client may use.
        limit = self.broker.config["topic_alias_max_client"]
        if conn is None or alias > limit:
            raise ProtocolError(f"topic alias {alias} above maximum {limit}", 0x94)
        if topic:
            conn.aliases[alias] = topic
            return topic
        known = conn.aliases.get(alias)
        if known is None:
            raise ProtocolError(f"unknown topic alias {alias}", 0x82)
        return known

    def _publish_authorized(self, answer: Ok | Error, pkt: Publish, topic: str) -> None:
        if answer.__class__ is not Ok:
            self._publish_refused(answer, pkt)
            return
        broker = self.broker
        if broker.netsplit and not broker.netsplit_allows("publish", self.limits.netsplit):
            # VerneMQ: not routed; MQTT 3 gets no PUBACK/PUBREC (the client
            # retries), MQTT 5 PUBACK 0x83 / PUBREC 0x80.
            broker.netsplit_errors["mqtt_publish_error"] += 1
            if self.level == 5 and pkt.qos:
                self._ack(pkt, 0x83 if pkt.qos == 1 else 0x80)
            return
        payload = pkt.payload
        qos = pkt.qos
        retain = pkt.retain
        raw = pkt.raw
        mods = answer.modifiers
        if mods:
            topic = mods.get("topic", topic)
            payload = mods.get("payload", payload)
            qos = mods.get("qos", qos)
            retain = mods.get("retain", retain)
            raw = None
            throttle = mods.get("throttle")
            if throttle and self.conn is not None:
                # VerneMQ: stop reading from this publisher for that many ms.
                self.conn.throttle(int(throttle) / 1000.0)
        props = pkt.properties
        expires_at = None
        if props:
            interval = props.get("message_expiry_interval")
            if interval is not None:
                expires_at = self._clock() + interval
        msg = Message(topic, payload, qos, retain, props, raw, self.level, self.sid, expires_at)
        n = self.broker.publish(self.topics, msg, self)
        if pkt.qos:
            if pkt.qos == 2:
                self.qos2_in.add(pkt.packet_id)  # type: ignore[arg-type]
            self._ack(pkt, 0 if n else 0x10)

    def _publish_refused(self, answer: Ok | Error, pkt: Publish) -> None:
        if self.level == 5:
            if pkt.qos:
                code = 0x87
                if isinstance(answer, Error) and answer.reason_code:
                    code = answer.reason_code
                self._ack(pkt, code)
            return
        if self.level == 4 or self.broker.config["disconnect_on_unauthorized_publish_v3"]:
            # VerneMQ closes MQTT 3.1.1 connections, bridges (132) included,
            # and MQTT 3.1 ones when disconnect_on_unauthorized_publish_v3
            # (the will is published).
            raise NotAuthorizedError(f"publish to {pkt.topic!r} not authorized")
        # MQTT 3.1 (and its bridges, 131): acknowledge and drop, as VerneMQ.
        self._ack(pkt, 0)

    def _ack(self, pkt: Publish, code: int) -> None:
        """PUBACK/PUBREC for an inbound PUBLISH (nothing for QoS 0)."""
        conn = self.conn
        if conn is None or not pkt.qos:
            return
        pid = pid_bytes(pkt.packet_id)
        if self.level == 5 and code:
            head = b"\x40\x03" if pkt.qos == 1 else b"\x50\x03"
            conn.write(head + pid + bytes((code,)))
        else:
            conn.write((_PUBACK if pkt.qos == 1 else _PUBREC) + pid)

    def handle_puback(self, pkt: PubAck) -> None:
        """PUBACK: a QoS 1 delivery is done."""
        entry = self.inflight.get(pkt.packet_id)
        if entry is not None and entry.qos == 1:
            del self.inflight[pkt.packet_id]
            if self.pending:
                self.drain()

    def handle_pubrec(self, pkt: PubRec) -> None:
        """PUBREC: answer PUBREL (QoS 2 step 2)."""
        pid = pkt.packet_id
        conn = self.conn
        entry = self.inflight.get(pid)
        if entry is None or entry.qos != 2:
            if conn is not None:
                if self.level == 5:
                    conn.write(b"\x62\x03" + pid_bytes(pid) + b"\x92")
                else:
                    conn.write(_PUBREL + pid_bytes(pid))
            return
        if pkt.reason_code >= 0x80:
            del self.inflight[pid]
            if self.pending:
                self.drain()
            return
        entry.released = True
        entry.sent_at = self._clock()
        if conn is not None:
            conn.write(_PUBREL + pid_bytes(pid))

    def handle_pubrel(self, pkt: PubRel) -> None:
        """PUBREL: forget the inbound QoS 2 id, answer PUBCOMP."""
        pid = pkt.packet_id
        conn = self.conn
        if pid in self.qos2_in:
            self.qos2_in.discard(pid)
        elif self.level == 5:
            if conn is not None:
                conn.write(b"\x70\x03" + pid_bytes(pid) + b"\x92")
            return
        if conn is not None:
            conn.write(_PUBCOMP + pid_bytes(pid))

    def handle_pubcomp(self, pkt: PubComp) -> None:
        """PUBCOMP: a QoS 2 delivery is done."""
        entry = self.inflight.get(pkt.packet_id)
        if entry is not None and entry.released:
            del self.inflight[pkt.packet_id]
            if self.pending:
                self.drain()

    def handle_pingreq(self, pkt: PingReq) -> None:
        """PINGREQ: PINGRESP."""
        if self.conn is not None:
            self.conn.write(_PINGRESP)

    def handle_subscribe(self, pkt: Subscribe) -> Deferred[None] | None:
        """SUBSCRIBE: validate, authorize, subscribe, SUBACK, retained."""
        v5 = self.level == 5
        sub_ids: tuple[int, ...] = ()
        if v5:
            ids = pkt.properties.get("subscription_identifier")
            if ids:
                sub_ids = tuple(ids) if isinstance(ids, list) else (ids,)
        codes: list[int] = [0] * len(pkt.subscriptions)
        wanted: list[int] = []
        limit = self.broker.config["max_subscriptions_per_client"]
        count = len(self.subscriptions)
        for i, sub in enumerate(pkt.subscriptions):
            topic_filter = sub.topic_filter
            if not validate_topic_filter(topic_filter, self.max_depth):
                codes[i] = 0x8F if v5 else 0x80
                continue
            if v5 and sub.no_local and parse_shared(topic_filter)[0] is not None:
                raise ProtocolError(f"no local on the shared subscription {topic_filter!r}", 0x82)
            if limit and topic_filter not in self.subscriptions:
                if count >= limit:
                    codes[i] = 0x97 if v5 else 0x80
                    continue
                count += 1
            wanted.append(i)
        if not wanted:
            self._suback(pkt, codes, [])
            return None
        topics = [(pkt.subscriptions[i].topic_filter, pkt.subscriptions[i].qos) for i in wanted]
        hooks = self.broker.hooks
        if v5:
            answer = hooks.all_till_ok(
                "auth_on_subscribe_m5", self.username, self.sid, topics, pkt.properties
            )
        else:
            answer = hooks.all_till_ok("auth_on_subscribe", self.username, self.sid, topics)
        if isinstance(answer, Deferred):
            return answer.addCallback(self._subscribe_authorized, pkt, codes, wanted, sub_ids)
        self._subscribe_authorized(answer, pkt, codes, wanted, sub_ids)
        return None

    def _subscribe_authorized(
        self,
        answer: Ok | Error,
        pkt: Subscribe,
        codes: list[int],
        wanted: list[int],
        sub_ids: tuple[int, ...],
    ) -> None:
        v5 = self.level == 5
        refused = 0x87 if v5 else 0x80
        broker = self.broker
        if (
            isinstance(answer, Ok)
            and broker.netsplit
            and not broker.netsplit_allows("subscribe", self.limits.netsplit)
        ):
            # VerneMQ: SUBACK 0x80 (MQTT 3) / 0x87 (MQTT 5) for every topic.
            broker.netsplit_errors["mqtt_subscribe_error"] += 1
            answer = Error("not_ready")
        if not isinstance(answer, Ok):
            for i in wanted:
                codes[i] = refused
            self._suback(pkt, codes, [])
            return
        rewritten: Any = answer.modifiers.get("topics") if answer.modifiers else None
        if rewritten is not None and len(rewritten) != len(wanted):
            rewritten = None
        topics = self.topics
        granted: list[tuple[str, SubOpts, bool]] = []
        for n, i in enumerate(wanted):
            sub = pkt.subscriptions[i]
            topic_filter, qos = sub.topic_filter, sub.qos
            if rewritten is not None:
                topic_filter, qos = rewritten[n]
                if qos is None or qos > 2 or not validate_topic_filter(topic_filter):
                    codes[i] = refused
                    continue
            if self.bridge:
                opts = SubOpts(qos, True, True, sub.retain_handling, sub_ids)
            else:
                opts = SubOpts(
                    qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub_ids
                )
            existed = topic_filter in self.subscriptions
            self.subscriptions[topic_filter] = opts
            topics.subscribe(topic_filter, self, opts)
            codes[i] = qos
            granted.append((topic_filter, opts, existed))
        if granted:
            self._subscriptions_changed()
        self._suback(pkt, codes, granted)

    def _suback(
        self, pkt: Subscribe, codes: list[int], granted: list[tuple[str, SubOpts, bool]]
    ) -> None:
        conn = self.conn
        if conn is not None:
            conn.send_packet(SubAck(pkt.packet_id, codes))
        if not granted:
            return
        retained = self.topics.retained
        for topic_filter, opts, existed in granted:
            if opts.retain_handling == 2 or (opts.retain_handling == 1 and existed):
                continue
            if parse_shared(topic_filter)[0] is not None:
                # No retained messages on a shared subscription (MQTT 5.0 4.8.2).
                continue
            for _, msg in retained.match(topic_filter):
                self.deliver_retained(msg, opts)
        self.drain()
        self.broker.hooks.all(
            "on_subscribe", self.username, self.sid, [(f, o.qos) for f, o, _ in granted]
        )

    def handle_unsubscribe(self, pkt: Unsubscribe) -> None:
        """UNSUBSCRIBE: remove the filters, UNSUBACK."""
        broker = self.broker
        if broker.netsplit and not broker.netsplit_allows("unsubscribe", self.limits.netsplit):
            # VerneMQ: nothing done and no UNSUBACK, so the client retries.
            broker.netsplit_errors["mqtt_unsubscribe_error"] += 1
            return
        topics = self.topics
        codes = []
        for topic_filter in pkt.topic_filters:
            if self.subscriptions.pop(topic_filter, None) is not None:
                topics.unsubscribe(topic_filter, self)
                codes.append(0)
            else:
                codes.append(0x11)
        if 0 in codes:
            self._subscriptions_changed()
        if self.conn is not None:
            self.conn.send_packet(UnsubAck(pkt.packet_id, codes if self.level == 5 else []))
        self.broker.hooks.all("on_unsubscribe", self.username, self.sid, list(pkt.topic_filters))

    def handle_disconnect(self, pkt: Disconnect) -> None:
        """
        DISCONNECT: close without the will, unless an MQTT 5.0 client asks
        for it with reason 0x04.  MQTT 5.0 may change the session expiry
        here, but not from 0 (protocol error 0x82).
        """
        conn = self.conn
        send_will = False
        if self.level == 5:
            interval = pkt.properties.get("session_expiry_interval")
            if interval is not None:
                if self.expiry == 0 and interval != 0:
                    raise ProtocolError(
                        "DISCONNECT sets a session expiry after CONNECT set 0", 0x82
                    )
                self.expiry = self.broker.session_expiry(interval)
            send_will = pkt.reason_code == 0x04
        if conn is not None:
            conn.close(send_will)
