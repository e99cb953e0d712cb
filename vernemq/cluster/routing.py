# -*- test-case-name: tests.test_cluster_routing -*-
"""
Cluster-wide routing: which remote nodes get a PUBLISH, and what a node
does with a PUBLISH another node routed to it.

This is VerneMQ's C{vmq_reg} / C{vmq_reg_trie} over the replicated
metadata store (L{vernemq.cluster.metadata}) and the data channel
(L{vernemq.cluster.datachannel}).

What is replicated
==================

  - C{(vmq, subscriber)}: key C{(Mountpoint, ClientId)} (both binaries),
    value C{{Node, [{Filter, QoS}]}}: the node hosting the session and its
    filters, sorted; a persistent session's value has a third element,
    C{#{clean_session => false}} (what C{cluster leave} of a dead node
    recreates, see L{vernemq.cluster.sessions}).  Written by the node
    hosting the session whenever its subscriptions change (or a client
    registers there); deleted when it has none left (or the session
    ended).  Only the hosting node writes an entry (it owns it).
  - C{(vmq, retain)}: key C{(Mountpoint, Topic)}, value
    C{{Payload, QoS, Properties}} with the MQTT 5.0 properties as in a
    C{msg} item (see L{properties_to_term}); a retained message cleared
    with an empty payload is a delete.

Every node keeps, per mountpoint, a I{remote-node trie}: a
L{SubscriptionTrie} whose keys are node names, one entry per
C{(filter, node)} however many of that node's clients use the filter
(reference counted).  It is fed by the store's change events for entries
of other nodes.

Routing
=======

A publish is matched once on its node: the local trie for local sessions
(L{vernemq.broker.router.route}), then the remote-node trie; each remote
member with at least one match gets B{one} C{msg} item on the data
channel (L{RoutedMessage}), however many of its clients match.  The
receiving node matches again, against its local trie only, and never
forwards (L{ClusterRouter.on_item}).  A retained message is stored locally
at once and written to the metadata store; every other node applies it
to its local retained store from the store's change event, so a
subscriber on any node gets it on subscribe (a C{msg} item never touches
the receiver's retained store: its order relative to the store's
replication is not defined, and the store is the single source).

Shared subscriptions
====================

A C{$share/<group>/<filter>} subscription of another node is not put in
the remote-node trie: it joins this node's L{SharedGroup} of that
mountpoint as a L{RemoteMember} (C{local} false), so each group holds the
members of the whole cluster and the publisher's node picks one with the
publisher's C{shared_subscription_policy}, as VerneMQ does.  A remote
member that is chosen gets the message as an C{enq} item addressed to its
session, C{{CallerPid, Ref, {enqueue_many, {Mountpoint, ClientId},
[{deliver, QoS, VmqMsg}], #{shared => Filter}}}}; the receiving node
delivers it to that session with the session's own options, or, if the
session or its subscription is gone by then, to another member of the
group on that node (never back across the cluster), and answers
C{{Ref, ok}} (or C{{Ref, {error, no_session}}} when no member there took
it) to C{CallerPid} over the Erlang distribution.  The sender keeps the
message until then and, on an error, no answer within
C{remote_enqueue_timeout}, the member's node going down or its data link
being down, hands it to another member (L{vernemq.cluster.enqueue}, per
C{shared_subscription_timeout_action}).  A C{msg} item is
routed to plain subscriptions only (L{route_forwarded}), so a group never
gets a message twice.  Remote members count as online while their node is
a peer; they are in the groups only while it is.

The single-node hot path
========================

While this node has no peer, L{Broker.clustered} is false and nothing
here runs: not for a publish, a retained message, or a subscription.
When the first peer appears, L{ClusterRouter.set_peers} I{reconciles}:
this node's own subscriber entries are rewritten from its live sessions
(its stale ones deleted) and its retained messages that the store lacks
or holds differently are written, so a node that ran alone (or joins
with history) brings its state into the cluster.  A reconcile never
deletes a retained message (a tombstone would delete it cluster-wide);
the price is that a retained message cleared while the node ran alone
comes back from the store when it is clustered again.

Sessions moving between nodes (takeover, queue migration, C{cluster
leave -k}, a dead node's queues) are L{vernemq.cluster.sessions}; an
C{enq} item with C{#{migrated => true}} options carries a message that
reached a session's old node after the session moved (delivered to the
session as is).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from twisted.logger import Logger
from zope.interface import implementer

from vernemq.broker.message import ForwardedMessage, Message
from vernemq.broker.router import Stats, SubOpts
from vernemq.broker.shared import POLICIES, SharedGroup, tag
from vernemq.broker.topics import parse_shared
from vernemq.broker.trie import SubscriptionTrie
from vernemq.cluster.datachannel import IDataItemHandler, RoutedMessage
from vernemq.cluster.dataframes import (
    TAG_ENQ,
    TAG_MSG,
    Item,
    PlainMsg,
    PlainMsgEncoder,
    encode_msg_item,
)
from vernemq.cluster.enqueue import RemoteEnqueues, enqueue_result
from vernemq.cluster.metadata.store import MetadataStore
from vernemq.dist.etf import Atom
from vernemq.mqtt.codec import encode_publish

if TYPE_CHECKING:
    from vernemq.broker.broker import Broker
    from vernemq.broker.router import Topics
    from vernemq.broker.session import Session

__all__ = [
    "RETAIN",
    "SUBSCRIBER",
    "ClusterRouter",
    "RemoteMember",
    "route_forwarded",
    "properties_from_term",
    "properties_to_term",
]

#: The metadata prefix of subscriptions.
SUBSCRIBER: Final = (Atom("vmq"), Atom("subscriber"))
#: The metadata prefix of retained messages.
RETAIN: Final = (Atom("vmq"), Atom("retain"))

_EXPIRE_AFTER: Final = Atom("expire_after")
_UNDEFINED: Final = Atom("undefined")
_ENQUEUE_MANY: Final = Atom("enqueue_many")
_DELIVER: Final = Atom("deliver")
_SHARED: Final = Atom("shared")
_MIGRATED: Final = Atom("migrated")
_CLEAN_SESSION: Final = Atom("clean_session")
_FALSE: Final = Atom("false")
_LOCAL_ONLY: Final = POLICIES["local_only"]
_UTF8: Final = Atom("utf8")
_UNSPECIFIED: Final = Atom("unspecified")
#: Properties that belong to one hop (never forwarded).
_HOP: Final = frozenset({"topic_alias", "subscription_identifier"})
#: Text properties (binaries on the wire).
_TEXT: Final = frozenset({"content_type", "response_topic"})


def properties_to_term(props: Mapping[str, Any]) -> dict[Atom, Any]:
    """
    MQTT 5.0 message properties as VerneMQ's map (C{p_content_type} ...):
    text as binaries, user properties as a list of binary pairs, the
    payload format indicator as C{utf8}/C{unspecified}; per-hop properties
    are left out.
    """
    out: dict[Atom, Any] = {}
    for name, value in props.items():
        if name in _HOP:
            continue
        if name == "user_property":
            value = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in value]
        elif name == "payload_format_indicator":
            value = _UTF8 if value else _UNSPECIFIED
        elif isinstance(value, str):
            value = value.encode("utf-8")
        out[Atom("p_" + name)] = value
    return out


def properties_from_term(term: Mapping[Any, Any]) -> dict[str, Any]:
    """The inverse of L{properties_to_term}; unknown entries are ignored."""
    out: dict[str, Any] = {}
    for key, value in term.items():
        if not (isinstance(key, str) and key.startswith("p_")):
            continue
        name = key[2:]
        try:
            if name == "user_property":
                value = [(bytes(k).decode("utf-8"), bytes(v).decode("utf-8")) for k, v in value]
            elif name == "payload_format_indicator":
                value = 1 if value == _UTF8 else 0
            elif name in _TEXT:
                value = bytes(value).decode("utf-8")
        except (TypeError, ValueError):
            continue
        out[name] = value
    return out


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8") if not isinstance(value, str) else value


class RemoteMember:
    """
    A shared-subscription member whose session lives on another node
    (L{vernemq.broker.shared.GroupMember}); delivering to it sends an
    C{enq} item there.

    @ivar node: the node hosting the session.
    @ivar sid: the session's C{(mountpoint, client_id)}.
    @ivar shared_filter: the full C{$share/<group>/<filter>}.
    @ivar opts: its options as replicated (QoS only).
    @ivar joined: whether it is in its group now (its node is a peer).
    """

    __slots__ = ("joined", "node", "opts", "router", "shared_filter", "sid")

    local = False

    def __init__(
        self,
        router: ClusterRouter,
        node: str,
        sid: tuple[str, str],
        shared_filter: str,
        qos: int,
    ) -> None:
        self.router = router
        self.node = node
        self.sid = sid
        self.shared_filter = shared_filter
        self.opts = SubOpts(qos)
        self.joined = False

    def __repr__(self) -> str:
        return f"<RemoteMember {self.sid[1]!r} on {self.node} {self.shared_filter}>"

    @property
    def online(self) -> bool:
        """Whether its node is a peer now (its session's state is not replicated)."""
        return self.node in self.router.peers

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        """Send C{msg} to the session on its node (an C{enq} item)."""
        self.router.remote_enqueue(self, msg)


@implementer(IDataItemHandler)
class ClusterRouter:
    """
    Routing across nodes for one broker; see the module docstring.

    @ivar node: this node's name.
    @ivar broker: the local broker (its C{clustered} flag is ours).
    @ivar store: the replicated metadata store.
    @ivar peers: the members this node routes to (itself excluded).
    @ivar counters: C{forwarded} (items sent), C{forward_dropped} (items a
        link refused), C{received} (C{msg} items routed here),
        C{bad_items}; C{enqueue_received} and C{enqueue_undelivered} for
        C{enq} items received, and the sender's C{enqueue_*} counters of
        L{vernemq.cluster.enqueue}.
    @ivar enqueues: the remote enqueues to shared-subscription members
        (acknowledged once L{RemoteEnqueues.attach}ed to the distribution).
    """

    log = Logger()

    def __init__(
        self,
        node: str,
        broker: Broker,
        store: MetadataStore,
        send: Callable[[str, Item], bool],
        now: Callable[[], float],
    ) -> None:
        """
        @param send: C{send(node, item)}: hand an item to the data channel
            (L{vernemq.cluster.datachannel.DataChannelService.send}).
        @param now: the broker's clock (C{reactor.seconds}), for expiry.
        """
        self.node = node
        self.broker = broker
        self.store = store
        self.peers: frozenset[str] = frozenset()
        self.counters = {
            "forwarded": 0,
            "forward_dropped": 0,
            "received": 0,
            "enqueued": 0,
            "enqueue_received": 0,
            "enqueue_undelivered": 0,
            "bad_items": 0,
        }
        #: C{(mountpoint, node, client_id, shared filter)} -> its stand-in.
        self.remote_members: dict[tuple[str, str, str, str], RemoteMember] = {}
        self._send = send
        self._now = now
        self._remote: dict[str, SubscriptionTrie[str, str]] = {}
        self._refs: dict[tuple[str, str, str], int] = {}
        self._writing = False
        self._plain = PlainMsgEncoder(os.urandom(8))
        self._cancels = [
            store.subscribe(SUBSCRIBER, self._subscriber_changed),
            store.subscribe(RETAIN, self._retain_changed),
        ]
        self.enqueues = RemoteEnqueues(self)
        broker.cluster_router = self

    def send(self, node: str, item: Item) -> bool:
        """Hand C{item} to the data channel for C{node}; C{False} if dropped."""
        return self._send(node, item)

    def set_sender(self, send: Callable[[str, Item], bool]) -> None:
        """
        Hand items to C{send} from now on (the data channel's own C{send},
        once it exists: one call less per forwarded message than a
        forwarding function).
        """
        self._send = send

    # -- life cycle --------------------------------------------------------

    def start(self, peers: Iterable[str]) -> None:
        """
        Index what the (loaded) store holds, then take the current peers.
        Sessions do not survive a restart, so this node's own subscriber
        entries from an earlier run are deleted by the reconcile.
        """
        for key, value in self.store.items(SUBSCRIBER):
            self._subscriber_changed(key, None, value)
        self.set_peers(peers)
        if self.peers:
            for key, value in self.store.items(RETAIN):
                self._retain_changed(key, None, value)

    def stop(self) -> None:
        """Stop listening to the store; the broker routes locally again."""
        for cancel in self._cancels:
            cancel()
        self._cancels = []
        self.enqueues.stop()
        self.broker.clustered = False
        if self.broker.cluster_router is self:
            self.broker.cluster_router = None

    def set_peers(self, peers: Iterable[str]) -> None:
        """
        The members other than this node changed.  The first peer turns
        cluster routing on (after a reconcile); the last one leaving turns
        it off.
        """
        peers = frozenset(p for p in peers if p != self.node)
        was = bool(self.peers)
        self.peers = peers
        if peers and not was:
            self.reconcile()
        for member in list(self.remote_members.values()):
            self._place(member)
        self.broker.clustered = bool(peers)

    def reconcile(self) -> None:
        """
        Make the store hold this node's live state: its own subscriber
        entries rewritten from the sessions, its retained messages written
        where the store differs (never deleted; see the module docstring).
        """
        store = self.store
        me = Atom(self.node)
        self._writing = True
        try:
            stale = {key for key, value in store.items(SUBSCRIBER) if _owner(value) == me}
            for sid, session in list(self.broker.sessions.items()):
                key = _sid_key(sid)
                value = self._subscriber_value(session)
                if value is None:
                    continue
                stale.discard(key)
                if store.get(SUBSCRIBER, key) != value:
                    store.put(SUBSCRIBER, key, value)
            for key in stale:
                store.delete(SUBSCRIBER, key)
            for mountpoint in self.broker.mountpoints():
                retained = self.broker.topics(mountpoint).retained
                for topic, msg in list(retained.items()):
                    rkey = (mountpoint.encode("utf-8"), topic.encode("utf-8"))
                    rvalue = _retain_value(msg)
                    if store.get(RETAIN, rkey) != rvalue:
                        store.put(RETAIN, rkey, rvalue)
        finally:
            self._writing = False

    # -- local changes -----------------------------------------------------

    def _subscriber_value(self, session: Session) -> tuple[Any, ...] | None:
        if not session.subscriptions:
            return None
        filters = sorted(
            (topic_filter.encode("utf-8"), opts.qos)
            for topic_filter, opts in session.subscriptions.items()
        )
        if session.expiry != 0:
            return (Atom(self.node), filters, {_CLEAN_SESSION: _FALSE})
        return (Atom(self.node), filters)

    def subscriptions_changed(self, session: Session) -> None:
        """
        C{session} (hosted here) subscribed, unsubscribed or ended: write
        its subscriber entry.  Called only while clustered.
        """
        key = _sid_key(session.sid)
        value = self._subscriber_value(session)
        self._writing = True
        try:
            if value is None:
                if self.store.get(SUBSCRIBER, key) is not None:
                    self.store.delete(SUBSCRIBER, key)
            elif self.store.get(SUBSCRIBER, key) != value:
                self.store.put(SUBSCRIBER, key, value)
        finally:
            self._writing = False

    def forward(self, topics: Topics, msg: Message) -> int:
        """
        A publish of this node, already routed locally: replicate it if
        retained, and send one copy to each peer with a matching
        subscription.  Called by L{Broker.publish} only while clustered.

        @return: how many nodes it was sent to.
        """
        if msg.retain:
            self._write_retained(topics.mountpoint, msg)
        index = self._remote.get(topics.mountpoint)
        if index is None:
            return 0
        matches = index.match(msg.topic)
        if not matches:
            return 0
        peers = self.peers
        if len(matches) == 1:
            node = matches[0][0]
            if node not in peers:
                return 0
            if not msg.properties and msg.expires_at is None:
                item: Item = self._plain.encode(  # type: ignore[assignment]
                    msg.topic, msg.payload, msg.qos, msg.retain, topics.mountpoint
                )
            else:
                item = self._item(topics.mountpoint, msg)
            if self._send(node, item):
                self.counters["forwarded"] += 1
            else:
                self.counters["forward_dropped"] += 1
            return 1
        shared: Item | None = None
        sent: set[str] = set()
        for node, _ in matches:
            if node in sent or node not in peers:
                continue
            sent.add(node)
            if shared is None:
                shared = self._item(topics.mountpoint, msg)
            if self._send(node, shared):
                self.counters["forwarded"] += 1
            else:
                self.counters["forward_dropped"] += 1
        return len(sent)

    def message_term(self, mountpoint: str, msg: Message) -> tuple[Any, ...]:
        """C{msg} as a C{#vmq_msg{}} record (the remaining expiry included)."""
        return self._routed(mountpoint, msg).to_term()

    def message_from_term(self, term: Any) -> Message:
        """
        The broker's message for a C{#vmq_msg{}} record.

        @raise ValueError: C{term} is not such a record.
        """
        return self._message(RoutedMessage.from_term(term))

    def migrated_item(self, sid: tuple[str, str], msg: Message, qos: int, retain: bool) -> Item:
        """
        The C{enq} item that hands C{msg} (for C{qos}, with C{retain}) to
        session C{sid} on another node, as it is: no subscription or group
        is consulted there.
        """
        routed = dataclasses.replace(self._routed(sid[0], msg), retain=retain)
        return (
            TAG_ENQ,
            (
                _UNDEFINED,
                routed.msg_ref,
                (
                    _ENQUEUE_MANY,
                    (sid[0].encode("utf-8"), sid[1].encode("utf-8")),
                    [(_DELIVER, qos, routed.to_term())],
                    {_MIGRATED: True},
                ),
            ),
        )

    def _item(self, mountpoint: str, msg: Message) -> Item:
        # What self._routed(mountpoint, msg).to_item() is, encoded once
        # (not per peer) straight from cached fragments.
        if not msg.properties and msg.expires_at is None:
            return self._plain.encode(  # type: ignore[return-value]
                msg.topic, msg.payload, msg.qos, msg.retain, mountpoint
            )
        expiry: Any = None
        if msg.expires_at is not None:
            expiry = (_EXPIRE_AFTER, max(int(msg.expires_at - self._now()), 0))
        return encode_msg_item(  # type: ignore[return-value]
            self._plain.next_ref(),
            msg.topic,
            msg.payload,
            msg.retain,
            False,
            msg.qos,
            mountpoint,
            False,
            "prefer_local",
            properties_to_term(msg.properties) if msg.properties else None,
            expiry,
        )

    def _routed(self, mountpoint: str, msg: Message) -> RoutedMessage:
        expiry: Any = None
        if msg.expires_at is not None:
            expiry = (_EXPIRE_AFTER, max(int(msg.expires_at - self._now()), 0))
        ref = self._plain.next_ref()
        return RoutedMessage(
            msg.topic,
            msg.payload,
            msg.qos,
            msg.retain,
            mountpoint,
            msg_ref=ref,
            properties=properties_to_term(msg.properties) if msg.properties else {},
            expiry_ts=expiry,
        )

    def _message(self, routed: RoutedMessage) -> Message:
        """The broker's message for a record received from a peer."""
        properties = properties_from_term(routed.properties) if routed.properties else None
        expires_at = None
        expiry = routed.expiry_ts
        if isinstance(expiry, tuple) and len(expiry) == 2 and isinstance(expiry[1], int):
            expires_at = self._now() + expiry[1]
        return Message(
            routed.topic,
            routed.payload,
            routed.qos,
            routed.retain,
            properties,
            None,
            0,
            None,
            expires_at,
        )

    def _write_retained(self, mountpoint: str, msg: Message) -> None:
        key = (mountpoint.encode("utf-8"), msg.topic.encode("utf-8"))
        self._writing = True
        try:
            if msg.payload:
                self.store.put(RETAIN, key, _retain_value(msg))
            elif self.store.get(RETAIN, key) is not None:
                self.store.delete(RETAIN, key)
        finally:
            self._writing = False

    # -- remote changes ----------------------------------------------------

    def _subscriber_changed(self, key: Any, old: Any, new: Any) -> None:
        """A C{(vmq, subscriber)} entry changed: update the remote-node trie."""
        try:
            mountpoint = _text(key[0])
            before = _filters(old)
            after = _filters(new)
        except (TypeError, ValueError, IndexError):
            self.log.warn("ignoring a malformed subscriber entry {key!r}", key=key)
            return
        client_id = _text(key[1])
        for node, topic_filter in before - after:
            if topic_filter.startswith("$share/"):
                self._shared_gone(mountpoint, node, client_id, topic_filter)
            else:
                self._unref(mountpoint, topic_filter, node)
        for node, topic_filter in after - before:
            if topic_filter.startswith("$share/"):
                qos = _qos_of(new, topic_filter)
                self._shared_new(mountpoint, node, client_id, topic_filter, qos)
            else:
                self._ref(mountpoint, topic_filter, node)

    def _shared_new(
        self, mountpoint: str, node: str, client_id: str, shared_filter: str, qos: int
    ) -> None:
        if node == self.node:
            return
        key = (mountpoint, node, client_id, shared_filter)
        member = self.remote_members.get(key)
        if member is None:
            member = RemoteMember(self, node, (mountpoint, client_id), shared_filter, qos)
            self.remote_members[key] = member
        self._place(member)

    def _shared_gone(self, mountpoint: str, node: str, client_id: str, shared_filter: str) -> None:
        member = self.remote_members.pop((mountpoint, node, client_id, shared_filter), None)
        if member is not None and member.joined:
            self._leave(member)

    def _place(self, member: RemoteMember) -> None:
        """Put C{member} in its group while its node is a peer, else take it out."""
        wanted = member.node in self.peers
        if wanted and not member.joined:
            topics = self.broker.topics(member.sid[0])
            try:
                topics.subscribe(member.shared_filter, member, member.opts)
            except ValueError:
                return
            member.joined = True
        elif member.joined and not wanted:
            self._leave(member)

    def _leave(self, member: RemoteMember) -> None:
        self.broker.topics(member.sid[0]).unsubscribe(member.shared_filter, member)
        member.joined = False

    def remote_enqueue(self, member: RemoteMember, msg: Message) -> None:
        """
        Send C{msg} to a remote shared-subscription member (an C{enq}
        item), acknowledged: see L{vernemq.cluster.enqueue}.
        """
        self.enqueues.send(member, msg)

    def _ref(self, mountpoint: str, topic_filter: str, node: str) -> None:
        if node == self.node or topic_filter.startswith("$share/"):
            return
        ref = (mountpoint, topic_filter, node)
        count = self._refs.get(ref, 0)
        self._refs[ref] = count + 1
        if count == 0:
            index = self._remote.get(mountpoint)
            if index is None:
                index = self._remote[mountpoint] = SubscriptionTrie()
            try:
                index.add(topic_filter, node, node)
            except ValueError:
                del self._refs[ref]

    def _unref(self, mountpoint: str, topic_filter: str, node: str) -> None:
        ref = (mountpoint, topic_filter, node)
        count = self._refs.get(ref)
        if count is None:
            return
        if count > 1:
            self._refs[ref] = count - 1
            return
        del self._refs[ref]
        index = self._remote.get(mountpoint)
        if index is not None:
            index.remove(topic_filter, node)

    def remote_nodes(self, mountpoint: str, topic: str) -> list[str]:
        """The peers a publish to C{topic} would be sent to (for tests and debugging)."""
        index = self._remote.get(mountpoint)
        if index is None:
            return []
        return sorted({node for node, _ in index.match(topic) if node in self.peers})

    def _retain_changed(self, key: Any, old: Any, new: Any) -> None:
        """A C{(vmq, retain)} entry changed on another node: apply it here."""
        if self._writing:
            return
        try:
            mountpoint, topic = _text(key[0]), _text(key[1])
            retained = self.broker.topics(mountpoint).retained
            if new is None:
                retained.delete(topic)
                return
            payload, qos, props = new
            properties = properties_from_term(props)
            expires_at = None
            interval = properties.get("message_expiry_interval")
            if interval is not None:
                expires_at = self._now() + interval
            msg = Message(
                topic, bytes(payload), int(qos), True, properties, None, 0, None, expires_at
            )
        except (TypeError, ValueError, IndexError):
            self.log.warn("ignoring a malformed retained entry {key!r}", key=key)
            return
        retained.set(topic, msg)

    # -- the data channel --------------------------------------------------

    def on_item(self, from_node: str, item: Item) -> None:
        """
        An item from a peer's data link: a C{msg} is routed to this node's
        plain subscriptions only (never forwarded, never retained here, no
        shared group); an C{enq} is delivered to the session it names.
        """
        tag_, term = item
        if term.__class__ is ForwardedMessage:
            # The usual record (only ever a msg item's), made by
            # plain_message while the frame was decoded.
            self.counters["received"] += 1
            broker = self.broker
            route_forwarded(broker.topics(term.mountpoint), term, broker.counters)
            return
        try:
            if tag_ == TAG_MSG:
                if term.__class__ is PlainMsg:
                    self.counters["received"] += 1
                    broker = self.broker
                    forwarded = self.plain_message(
                        term.topic, term.payload, term.retain, term.qos, term.mountpoint
                    )
                    route_forwarded(broker.topics(term.mountpoint), forwarded, broker.counters)
                    return
                routed = RoutedMessage.from_term(term)
                msg = self._message(routed)
                self.counters["received"] += 1
                broker = self.broker
                route_forwarded(broker.topics(routed.mountpoint), msg, broker.counters)
            elif tag_ == TAG_ENQ:
                self._enqueue(term)
            else:
                raise ValueError(f"unknown item tag {tag_!r}")
        except (ValueError, TypeError, IndexError) as error:
            self.counters["bad_items"] += 1
            self.log.warn(
                "ignoring a bad {tag} item from {peer}: {error}",
                tag=tag_,
                peer=from_node,
                error=str(error),
            )

    def plain_message(
        self, topic: str, payload: bytes, retain: bool, qos: int, mountpoint: str
    ) -> ForwardedMessage:
        """
        The message for a plain C{#vmq_msg{}} record (no properties, no
        expiry), made while the frame is decoded
        (L{vernemq.cluster.dataframes.PlainMessageFactory}).  Its PUBLISH
        for 3.1/3.1.1 subscribers is encoded here once, so that they get
        it as it is (L{Message.frame}), as a local publish's received bytes
        are.
        """
        return ForwardedMessage(
            topic,
            payload,
            qos,
            retain,
            encode_publish(topic, payload, qos, retain, False, 1 if qos else None, None, 4),
            mountpoint,
        )

    def _enqueue(self, term: Any) -> None:
        """
        An C{enq} item: deliver, then answer C{CallerPid} (unless
        C{undefined}) with C{{Ref, ok}} or C{{Ref, {error, Reason}}}; a
        malformed request is answered C{{error, badarg}} and reported.
        """
        caller, ref, request = term
        try:
            delivered = self._enqueue_request(request)
        except (ValueError, TypeError, IndexError):
            self.enqueues.reply(caller, ref, (Atom("error"), Atom("badarg")))
            raise
        self.enqueues.reply(caller, ref, enqueue_result(delivered))

    def _enqueue_request(self, request: Any) -> bool:
        """Deliver an C{enqueue_many} request; whether every message was taken."""
        op, (rawMountpoint, rawClientId), msgs, opts = request
        if op != _ENQUEUE_MANY or not isinstance(opts, dict):
            raise ValueError("not an enqueue_many request")
        sid = (_text(rawMountpoint), _text(rawClientId))
        if _MIGRATED in opts:
            return self._enqueue_migrated(sid, msgs)
        shared_filter = _text(opts.get(_SHARED, b""))
        group_name, topic_filter = parse_shared(shared_filter)
        topics = self.broker.topics(sid[0])
        group = None if group_name is None else topics.shared.get(group_name, topic_filter)
        session = self.broker.sessions.get(sid)
        delivered = True
        for _deliver, _qos, record in msgs:
            msg = self._message(RoutedMessage.from_term(record))
            self.counters["enqueue_received"] += 1
            sub_opts = None if session is None else session.subscriptions.get(shared_filter)
            if session is not None and sub_opts is not None:
                if group is not None and sub_opts.qos and msg.qos:
                    msg = tag(msg, group)
                session.deliver(msg, sub_opts.qos, sub_opts.rap, sub_opts.sub_ids)
                continue
            # The member is gone: another member of the group on this node.
            entry = None
            if group is not None:
                entry = _LOCAL_ONLY.choose(tuple(group.members.items()), topics.shared.rng)
            if entry is None:
                self.counters["enqueue_undelivered"] += 1
                delivered = False
                continue
            member, member_opts = entry
            if member_opts.qos and msg.qos and group is not None:
                msg = tag(msg, group)
            member.deliver(msg, member_opts.qos, member_opts.rap, member_opts.sub_ids)
        return delivered

    def _enqueue_migrated(self, sid: tuple[str, str], msgs: Any) -> bool:
        """Messages a session's old node got after it moved here."""
        session = self.broker.sessions.get(sid)
        delivered = True
        for _deliver, qos, record in msgs:
            msg = self._message(RoutedMessage.from_term(record))
            self.counters["enqueue_received"] += 1
            if session is None:
                self.counters["enqueue_undelivered"] += 1
                delivered = False
                continue
            session.deliver(msg, int(qos), True, ())
        return delivered


def route_forwarded(topics: Topics, msg: Message, stats: Stats) -> int:
    """
    Route a message another node forwarded here: to this node's plain
    subscriptions only, once per session at the highest QoS of its
    matching filters (as L{vernemq.broker.router.route}); shared groups
    are skipped (the publisher's node chose their member) and the retained
    store is not touched (the metadata store replicates it).

    @return: the number of sessions it was handed to.
    """
    matches = topics.trie.match(msg.topic)
    if len(matches) == 1:
        sub, opts = matches[0]
        if sub.__class__ is not SharedGroup:
            sub.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
            stats.routed += 1
            return 1
        stats.unrouted += 1
        return 0
    merged: dict[Any, SubOpts] = {}
    for sub, opts in matches:
        if sub.__class__ is SharedGroup:
            continue
        prev = merged.get(sub)
        merged[sub] = opts if prev is None else prev.merged(opts)
    for sub, opts in merged.items():
        sub.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
    if merged:
        stats.routed += 1
    else:
        stats.unrouted += 1
    return len(merged)


def _sid_key(sid: tuple[str, str]) -> tuple[bytes, bytes]:
    return (sid[0].encode("utf-8"), sid[1].encode("utf-8"))


def _owner(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and value else None


def _qos_of(value: Any, topic_filter: str) -> int:
    for raw, qos in value[1]:
        if _text(raw) == topic_filter:
            return int(qos)
    return 0


def _filters(value: Any) -> set[tuple[str, str]]:
    """C{{(node, filter)}} of a subscriber entry (empty for C{None})."""
    if value is None:
        return set()
    node, filters = str(value[0]), value[1]
    return {(node, _text(topic_filter)) for topic_filter, _qos in filters}


def _retain_value(msg: Message) -> tuple[bytes, int, dict[Atom, Any]]:
    return (msg.payload, msg.qos, properties_to_term(msg.properties) if msg.properties else {})
