# -*- test-case-name: tests.test_broker_shared -*-
"""
Shared subscriptions: C{$share/<group>/<filter>}, one delivery per group.

A shared subscription is identified by its group name and its filter
(MQTT 5.0 4.8.2); VerneMQ accepts them for MQTT 3.1.1 too.  Each one is a
L{SharedGroup}.  The group itself sits in the mountpoint's trie under the
plain filter, as one more subscriber whose C{deliver} picks one member and
hands the message to it, so the router (L{vernemq.broker.router.route})
does not know shared subscriptions exist and a topic nobody shares pays
nothing for them.  Members join and leave the group without touching the
trie (only the first join and the last leave do), so membership churn does
not invalidate the trie's match cache.

Choosing a member
=================

A L{SharedPolicy} orders the members in tiers of C{(local, online)}
wishes and takes a random member of the first tier that has one,
following VerneMQ's C{vmq_shared_subscriptions}:

  - C{prefer_local}: a node-local member if there is one (online ones
    first), else a remote one (online first);
  - C{local_only}: only node-local members (online first);
  - C{random}: any member, online ones first;
  - C{prefer_online_before_local}: an online member, local ones first,
    and only then an offline one (local first).

A member that is offline is a persistent session without a connection:
it gets the message in its offline queue (QoS 0 is not queued offline)
only when no online member is wanted by the policy, as VerneMQ does.
"Random" is a random starting point in the member list, then the first
member that fits: uniform when every member fits, which is the common
case, and O(1) instead of shuffling the members per message.

The policy is C{shared_subscription_policy}, overridable per publisher
by the C{auth_on_register} modifier of the same name (in VerneMQ the
policy travels with the message: the publisher's session decides).

Remote members
==============

A member is anything with the L{GroupMember} shape: a local
L{vernemq.broker.session.Session}, or, in a cluster, a stand-in for a
subscriber on another node (C{local} false,
L{vernemq.cluster.routing.RemoteMember}), whose C{deliver} sends the
C{enq} frame of VerneMQ's C{remote_enqueue}.  The group holds the members
of the whole cluster and the publisher's node picks one, as in VerneMQ
(the cluster router does not also forward the message to the remote node
for its own shared groups).  A remote enqueue that fails (an error reply,
no reply in time, the member's node down or unreachable) is handed to
another member by L{vernemq.cluster.enqueue}, which chooses with
L{SharedPolicy.choose} and C{excluded}: every member already tried.

Losing a member
===============

A message handed to a member for QoS 1 or 2 is tagged with its group
(L{SharedMessage}: the same message, sharing its encoding cache).  When
the member's connection goes, the session hands the tagged messages it
has not delivered back with L{SharedGroup.redispatch} (see
C{Session._release_shared}), as MQTT 5.0 4.8.2 allows:

  - queued messages (QoS 1 and 2, never sent) and sent but unacknowledged
    QoS 1 messages go to another I{online} member at once; if there is
    none, a persistent session keeps them for its return;
  - when the session ends (clean session, expiry, replaced) they go to
    any other member, online first;
  - a QoS 2 message already sent stays with its member: MQTT 5.0 says the
    delivery must complete with that client [MQTT-4.8.2-4] and must not
    go to another client even if the session ends [MQTT-4.8.2-5].
"""

from __future__ import annotations

import random
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from vernemq.broker.message import Message

if TYPE_CHECKING:
    from vernemq.broker.router import SubOpts
    from vernemq.broker.trie import SubscriptionTrie

__all__ = [
    "POLICIES",
    "GroupMember",
    "SharedGroup",
    "SharedMessage",
    "SharedPolicy",
    "SharedSubscriptions",
]


class GroupMember(Protocol):
    """
    What a shared-subscription group needs from a member.
    """

    @property
    def sid(self) -> tuple[str, str]:
        """The subscriber id (for no-local on bridge subscriptions)."""

    @property
    def local(self) -> bool:
        """Whether the member's session lives on this node."""

    @property
    def online(self) -> bool:
        """Whether the member has a connection now."""

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        """Deliver (or queue) a message, as L{Session.deliver}."""


_Entry = tuple[GroupMember, "SubOpts"]


class SharedPolicy:
    """
    How a member of a group is chosen.

    @ivar name: the C{shared_subscription_policy} value.
    @ivar tiers: C{(local, online)} wishes in order of preference;
        L{None} means "either".
    """

    __slots__ = ("name", "tiers")

    def __init__(self, name: str, tiers: Sequence[tuple[bool | None, bool | None]]) -> None:
        self.name = name
        self.tiers = tuple(tiers)

    def __repr__(self) -> str:
        return f"<SharedPolicy {self.name}>"

    def choose(
        self,
        entries: Sequence[_Entry],
        rng: random.Random,
        origin: object = None,
        exclude: object = None,
        online_only: bool = False,
        excluded: Container[object] = (),
    ) -> _Entry | None:
        """
        Pick one member.

        @param entries: C{(member, options)} pairs, in a stable order.
        @param rng: the source of randomness.
        @param origin: the publisher's subscriber id: a member whose
            subscription has no-local set and that published the message is
            skipped.
        @param exclude: a member not to pick (the one being lost).
        @param online_only: only an online member will do.
        @param excluded: more members not to pick (those a remote enqueue
            already failed for).
        @return: the chosen pair, or L{None} if no member fits.
        """
        n = len(entries)
        if not n:
            return None
        start = int(rng.random() * n)
        if n == 1 or start >= n:
            start = 0
        for local, online in self.tiers:
            if online_only and not online:
                continue
            i = start
            for _ in range(n):
                entry = entries[i]
                i += 1
                if i == n:
                    i = 0
                member, opts = entry
                if member is exclude or member in excluded:
                    continue
                if local is not None and member.local is not local:
                    continue
                if online and not member.online:
                    continue
                if opts.no_local and member.sid == origin:
                    continue
                return entry
        return None


POLICIES: Final[dict[str, SharedPolicy]] = {
    policy.name: policy
    for policy in (
        # A local member if any (online first), else a remote one.
        SharedPolicy("prefer_local", [(True, True), (True, None), (False, True), (False, None)]),
        SharedPolicy("local_only", [(True, True), (True, None)]),
        SharedPolicy("random", [(None, True), (None, None)]),
        SharedPolicy(
            "prefer_online_before_local",
            [(True, True), (False, True), (True, None), (False, None)],
        ),
    )
}
"""The policies by C{shared_subscription_policy} name."""


class SharedMessage(Message):
    """
    A message as handed to one member of a shared subscription: a copy of
    the routed L{Message} (sharing its encoding cache) that remembers the
    group, so the member's session can give it back if the member is lost.
    """

    __slots__ = ("group",)

    group: SharedGroup


#: Every attribute a tagged copy takes over from the message.
_MESSAGE_SLOTS: Final = tuple(
    name
    for cls in Message.__mro__
    for name in getattr(cls, "__slots__", ())
    if not name.startswith("__")
)


def tag(msg: Message, group: SharedGroup) -> SharedMessage:
    """
    C{msg} tagged with C{group} (C{msg} itself if it already is).
    """
    if isinstance(msg, SharedMessage) and msg.group is group:
        return msg
    if msg._cache is None:
        # Share one encoding cache between the message and its copies.
        msg._cache = {}
    copy = SharedMessage.__new__(SharedMessage)
    for name in _MESSAGE_SLOTS:
        setattr(copy, name, getattr(msg, name))
    copy.group = group
    return copy


class SharedGroup:
    """
    One shared subscription: C{$share/<name>/<topic_filter>} in one
    mountpoint, and its members.

    It is the trie's key for the filter; L{deliver} is called by the router
    like a session's.

    @ivar name: the group name.
    @ivar topic_filter: the filter, without C{$share/<name>/}.
    @ivar members: member -> its subscription options (insertion order).
    """

    __slots__ = ("_entries", "members", "name", "registry", "topic_filter")

    def __init__(self, registry: SharedSubscriptions, name: str, topic_filter: str) -> None:
        self.registry = registry
        self.name = name
        self.topic_filter = topic_filter
        self.members: dict[GroupMember, SubOpts] = {}
        self._entries: tuple[_Entry, ...] = ()

    def __repr__(self) -> str:
        return (
            f"<SharedGroup $share/{self.name}/{self.topic_filter} "
            f"members={len(self.members)}>"
        )

    def _changed(self) -> None:
        self._entries = tuple(self.members.items())

    @property
    def entries(self) -> tuple[_Entry, ...]:
        """The C{(member, options)} pairs, in a stable order (for choosing)."""
        return self._entries

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        """
        The router's call: hand C{msg} to one member, chosen by the
        publisher's policy.  The arguments after C{msg} are the router's view
        of the group's trie entry and are ignored: each member's own
        subscription options apply.
        """
        self.dispatch(msg)

    def dispatch(
        self, msg: Message, exclude: object = None, online_only: bool = False
    ) -> bool:
        """
        Hand C{msg} to one member.

        @param exclude: a member not to choose.
        @param online_only: only hand it to an online member.
        @return: whether a member took it.
        """
        registry = self.registry
        entry = registry.policy_for(msg.origin).choose(
            self._entries, registry.rng, msg.origin, exclude, online_only
        )
        if entry is None:
            registry.undelivered += 1
            return False
        member, opts = entry
        if opts.qos and msg.qos:
            msg = tag(msg, self)
        member.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
        return True

    def redispatch(self, msg: Message, lost: object, ending: bool) -> bool:
        """
        Give C{msg}, held by the member C{lost} whose connection is gone, to
        another member: an online one, or (when C{lost}'s session is
        ending) any.

        @return: whether another member took it.
        """
        return self.dispatch(msg, lost, not ending)


class SharedSubscriptions:
    """
    The shared subscriptions of one mountpoint.

    @ivar trie: the mountpoint's subscription trie, where each group is a
        key under its filter.
    @ivar groups: C{(name, filter)} -> L{SharedGroup}.
    @ivar policy: the node's policy (C{shared_subscription_policy}).
    @ivar rng: the random source members are chosen with.
    @ivar overrides: publisher subscriber id -> its policy name, if it has
        its own (from the C{auth_on_register} modifier); or L{None}.
    @ivar undelivered: messages a group had no member to give to.
    """

    __slots__ = ("_group_opts", "groups", "overrides", "policy", "rng", "trie", "undelivered")

    def __init__(
        self,
        trie: SubscriptionTrie[Any, SubOpts],
        policy: str = "prefer_local",
        rng: random.Random | None = None,
        overrides: Callable[[object], str | None] | None = None,
    ) -> None:
        self.trie = trie
        self.groups: dict[tuple[str, str], SharedGroup] = {}
        self.policy = POLICIES[policy]
        self.rng = rng if rng is not None else random.Random()
        self.overrides = overrides
        self.undelivered = 0
        from vernemq.broker.router import SubOpts  # router imports this module

        #: The trie value of every group: QoS 2 and no no-local, so the
        #: router hands every message on; the members' own options apply.
        self._group_opts = SubOpts(2)

    def policy_for(self, origin: object) -> SharedPolicy:
        """The policy for a message published by C{origin}."""
        overrides = self.overrides
        if overrides is not None:
            name = overrides(origin)
            if name is not None:
                policy = POLICIES.get(name)
                if policy is not None:
                    return policy
        return self.policy

    def join(self, name: str, topic_filter: str, member: GroupMember, opts: SubOpts) -> bool:
        """
        Add C{member} to group C{name} of C{topic_filter}, or change its
        options.

        @return: whether it is a new member.
        """
        key = (name, topic_filter)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = SharedGroup(self, name, topic_filter)
            # Validates the filter (ValueError) before the group is kept.
            try:
                self.trie.add(topic_filter, group, self._group_opts)
            except ValueError:
                del self.groups[key]
                raise
        new = member not in group.members
        group.members[member] = opts
        group._changed()
        return new

    def leave(self, name: str, topic_filter: str, member: GroupMember) -> bool:
        """
        Remove C{member} from group C{name} of C{topic_filter}; the last
        member to leave removes the group.

        @return: whether it was a member.
        """
        key = (name, topic_filter)
        group = self.groups.get(key)
        if group is None or group.members.pop(member, None) is None:
            return False
        group._changed()
        if not group.members:
            del self.groups[key]
            self.trie.remove(topic_filter, group)
        return True

    def get(self, name: str, topic_filter: str) -> SharedGroup | None:
        """The group C{name} of C{topic_filter}, if it has members."""
        return self.groups.get((name, topic_filter))

    def __len__(self) -> int:
        """The number of groups."""
        return len(self.groups)

    def member_count(self) -> int:
        """The number of memberships (shared subscriptions) in every group."""
        return sum(len(group.members) for group in self.groups.values())
