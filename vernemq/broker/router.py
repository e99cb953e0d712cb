# -*- test-case-name: tests.test_broker_broker -*-
"""
The local router: per-mountpoint topic trees and the fan-out of a message
to the sessions whose subscriptions match.

Each mountpoint has its own L{Topics}: a
L{vernemq.broker.trie.SubscriptionTrie} keyed by subscriber (a
L{vernemq.broker.session.Session} or a
L{vernemq.broker.shared.SharedGroup}, later also a remote node) with
L{SubOpts} values, the L{vernemq.broker.shared.SharedSubscriptions} of the
mountpoint, and a L{vernemq.broker.retain.RetainedStore} of
L{vernemq.broker.message.Message}.  Topics inside a tree carry no
mountpoint prefix: the tree is the isolation.  A subscriber is anything
with the C{deliver} method of a session; a shared group is one more
subscriber whose C{deliver} picks a member, so routing has no special case
(and no cost) for shared subscriptions.

L{route} is the hot path.  It asks the trie once (the trie caches the
answer per distinct topic), merges overlapping subscriptions of one
subscriber into one delivery at the highest QoS carrying every
subscription identifier, and calls each subscriber's C{deliver}.  The
common single-match case allocates nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vernemq.broker.message import Message
from vernemq.broker.retain import RetainedStore
from vernemq.broker.shared import SharedSubscriptions
from vernemq.broker.topics import parse_shared
from vernemq.broker.trie import SubscriptionTrie

if TYPE_CHECKING:
    from vernemq.broker.session import Session

__all__ = ["Stats", "SubOpts", "Topics", "route"]


class SubOpts:
    """
    The options of one subscription (one filter of one subscriber).

    @ivar qos: the granted QoS.
    @ivar no_local: MQTT 5.0: do not deliver the subscriber's own messages.
    @ivar rap: MQTT 5.0 retain-as-published: keep the RETAIN flag on
        normal deliveries (otherwise it is cleared).
    @ivar retain_handling: MQTT 5.0: 0 send retained messages on subscribe,
        1 only for a new subscription, 2 never.
    @ivar sub_ids: MQTT 5.0 subscription identifiers to send (empty or one;
        a merge of overlapping subscriptions may hold several).
    """

    __slots__ = ("no_local", "qos", "rap", "retain_handling", "sub_ids")

    def __init__(
        self,
        qos: int,
        no_local: bool = False,
        rap: bool = False,
        retain_handling: int = 0,
        sub_ids: tuple[int, ...] = (),
    ) -> None:
        self.qos = qos
        self.no_local = no_local
        self.rap = rap
        self.retain_handling = retain_handling
        self.sub_ids = sub_ids

    def __repr__(self) -> str:
        return (
            f"SubOpts(qos={self.qos}, no_local={self.no_local}, rap={self.rap}, "
            f"retain_handling={self.retain_handling}, sub_ids={self.sub_ids})"
        )

    def merged(self, other: SubOpts) -> SubOpts:
        """One delivery for two overlapping subscriptions."""
        return SubOpts(
            max(self.qos, other.qos),
            False,
            self.rap or other.rap,
            0,
            self.sub_ids + other.sub_ids,
        )


class Stats:
    """
    Node-wide counters, incremented on the hot path (plain int attributes).
    """

    __slots__ = (
        "connects",
        "connections",
        "dropped",
        "expired",
        "publish_in",
        "publish_out",
        "routed",
        "unrouted",
    )

    def __init__(self) -> None:
        #: Currently open MQTT connections (all listeners).
        self.connections = 0
        #: CONNECTs accepted since start.
        self.connects = 0
        #: PUBLISH packets received from clients.
        self.publish_in = 0
        #: PUBLISH packets sent to clients (retries included).
        self.publish_out = 0
        #: Messages that reached at least one subscriber.
        self.routed = 0
        #: Messages that matched no subscription.
        self.unrouted = 0
        #: Messages dropped (queue full, offline QoS 0 excluded).
        self.dropped = 0
        #: Messages dropped because their MQTT 5.0 expiry passed in a queue.
        self.expired = 0

    def as_dict(self) -> dict[str, int]:
        """A snapshot."""
        return {name: getattr(self, name) for name in self.__slots__}


class Topics:
    """
    The topic tree of one mountpoint.

    @ivar trie: subscriber -> L{SubOpts} per filter.
    @ivar shared: the shared subscriptions (their groups are in C{trie}).
    @ivar retained: topic -> retained L{Message}.

    @param shared_policy: the C{shared_subscription_policy}.
    @param rng: the random source shared groups choose members with.
    @param policy_overrides: publisher subscriber id -> its own shared
        subscription policy name, or L{None}.
    """

    __slots__ = ("mountpoint", "retained", "shared", "trie")

    def __init__(
        self,
        mountpoint: str,
        shared_policy: str = "prefer_local",
        rng: random.Random | None = None,
        policy_overrides: Callable[[object], str | None] | None = None,
    ) -> None:
        self.mountpoint = mountpoint
        self.trie: SubscriptionTrie[Any, SubOpts] = SubscriptionTrie()
        self.shared = SharedSubscriptions(self.trie, shared_policy, rng, policy_overrides)
        self.retained: RetainedStore[Message] = RetainedStore()

    def subscribe(self, topic_filter: str, subscriber: Any, opts: SubOpts) -> bool:
        """
        Add or change C{subscriber}'s subscription to C{topic_filter}, a
        plain or a C{$share/<group>/<filter>} filter.

        @return: whether the subscription is new.
        @raise ValueError: if the filter is invalid.
        """
        group, real = parse_shared(topic_filter)
        if group is None:
            return self.trie.add(topic_filter, subscriber, opts)
        return self.shared.join(group, real, subscriber, opts)

    def unsubscribe(self, topic_filter: str, subscriber: Any) -> bool:
        """
        Remove C{subscriber}'s subscription to C{topic_filter} (plain or
        shared).

        @return: whether there was one.
        """
        group, real = parse_shared(topic_filter)
        if group is None:
            return self.trie.remove(topic_filter, subscriber)
        return self.shared.leave(group, real, subscriber)

    def subscription_count(self) -> int:
        """Plain subscriptions plus shared-group memberships."""
        return len(self.trie) - len(self.shared) + self.shared.member_count()


def route(topics: Topics, msg: Message, stats: Stats) -> int:
    """
    Store or clear C{msg} as retained if it carries RETAIN, then hand it to
    every matching subscriber once.

    @return: the number of subscribers it was handed to.
    """
    if msg.retain:
        if msg.payload:
            topics.retained.set(msg.topic, msg)
        else:
            topics.retained.delete(msg.topic)
    matches = topics.trie.match(msg.topic)
    n = len(matches)
    if n == 1:
        sub, opts = matches[0]
        if opts.no_local and sub.sid == msg.origin:
            stats.unrouted += 1
            return 0
        sub.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
        stats.routed += 1
        return 1
    if n == 0:
        stats.unrouted += 1
        return 0
    origin = msg.origin
    merged: dict[Session, SubOpts] = {}
    get = merged.get
    for sub, opts in matches:
        if opts.no_local and sub.sid == origin:
            continue
        prev = get(sub)
        merged[sub] = opts if prev is None else prev.merged(opts)
    for sub, opts in merged.items():
        sub.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
    if merged:
        stats.routed += 1
    else:
        stats.unrouted += 1
    return len(merged)
