# -*- test-case-name: tests.test_cluster_enqueue -*-
"""
Acknowledged remote enqueues: a message handed to a shared-subscription
member on another node is remembered until that node says what became of
it, as VerneMQ's C{vmq_cluster_node:enqueue} does.

The request
===========

L{RemoteEnqueues.send} sends the member's node an C{enq} item on the data
channel::

    {CallerPid, Ref, {enqueue_many, {Mountpoint, ClientId},
                      [{deliver, QoS, VmqMsg}], #{shared => Filter}}}

C{CallerPid} is the pid of this node's C{vmq_enqueue_replies} mailbox on
the Erlang distribution and C{Ref} a fresh reference of this node.  The
receiving node delivers the message (L{vernemq.cluster.routing}) and sends
C{{Ref, ok}} or C{{Ref, {error, Reason}}} to C{CallerPid} over the
distribution, not over the data channel (which is one-way).  An C{enq}
whose C{CallerPid} is C{undefined} gets no reply (what this node sent
before acknowledgements existed, and what queue migration still sends).

What happens when it fails
==========================

Until the reply arrives the message is I{outstanding}, for at most
C{remote_enqueue_timeout} milliseconds on the broker's clock.

  - C{{Ref, ok}}: done.
  - C{{Ref, {error, Reason}}}: the member's node did not deliver it, so it
    goes to another member of the group at once (local or remote, chosen
    with the publisher's policy, never a member already tried).
  - No reply in time, or the member's node goes down (its distribution
    connection closes) while the message is outstanding: whether it was
    delivered is unknown, and C{shared_subscription_timeout_action}
    decides: C{requeue} hands it to another member (the client may get it
    twice), C{ignore} counts it and drops it (it may be lost), with one
    log line per timeout and one per node going down.
  - The data link to the member's node is not up at send time (VerneMQ's
    C{BufferIfUnreachable = false}): another member is chosen at once.
    Only if no other member can take it is it buffered on that link
    anyway, to be delivered when the link comes back (or decided by the
    timeout).

When no other member is left the message is given up (counted in
C{enqueue_lost}, one log line).

Until L{RemoteEnqueues.attach} gives it this node's distribution, the
router sends C{undefined} callers and tracks nothing (the unit tests of
routing run that way).

Counters (in the router's C{counters}): C{enqueued} (items handed to a
link), C{enqueue_acked}, C{enqueue_failed} (error replies),
C{enqueue_timeouts}, C{enqueue_node_down}, C{enqueue_unreachable},
C{enqueue_requeued} (handed to another member), C{enqueue_lost},
C{forward_dropped} (items a link refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.broker.message import Message
from vernemq.broker.shared import SharedGroup, tag
from vernemq.broker.topics import parse_shared
from vernemq.cluster.dataframes import TAG_ENQ, Item
from vernemq.dist.etf import Atom, Pid
from vernemq.dist.node import INodeObserver

if TYPE_CHECKING:
    from vernemq.cluster.routing import ClusterRouter, RemoteMember

__all__ = [
    "ENQUEUE_REPLIES",
    "ReplyMailbox",
    "ReplyNode",
    "RemoteEnqueues",
    "enqueue_result",
]

#: The registered name of the mailbox enqueue replies come to.
ENQUEUE_REPLIES: Final = "vmq_enqueue_replies"

_OK: Final = Atom("ok")
_ERROR: Final = Atom("error")
_UNDEFINED: Final = Atom("undefined")
_ENQUEUE_MANY: Final = Atom("enqueue_many")
_DELIVER: Final = Atom("deliver")
_SHARED: Final = Atom("shared")
_REQUEUE: Final = "requeue"

_COUNTERS: Final = (
    "enqueue_acked",
    "enqueue_failed",
    "enqueue_timeouts",
    "enqueue_node_down",
    "enqueue_unreachable",
    "enqueue_requeued",
    "enqueue_lost",
)


class ReplyMailbox(Protocol):
    """A mailbox of this node (L{vernemq.dist.node.Mailbox})."""

    @property
    def pid(self) -> Pid:
        """Its pid (it may change until the node's creation is settled)."""

    def close(self, reason: Any = ...) -> None:
        """Exit."""


class ReplyNode(Protocol):
    """What acknowledgements need of this node's L{vernemq.dist.node.Node}."""

    def spawn(
        self, handler: Callable[[Any], object] | None = None, name: str | None = None
    ) -> ReplyMailbox:
        """A mailbox whose messages go to C{handler}."""

    def unregister(self, name: str) -> None:
        """Remove a registered name."""

    def makeRef(self) -> Any:
        """A new reference of this node."""

    def send(self, destination: Any, message: Any, sender: Pid | None = None) -> None:
        """Send C{message} to a pid (of any node) over the distribution."""

    def subscribe(self, observer: INodeObserver) -> Callable[[], None]:
        """Hear about distribution connections going up and down."""


def enqueue_result(delivered: bool) -> Any:
    """The reply term to an enqueue: C{ok}, or C{{error, no_session}}."""
    return _OK if delivered else (_ERROR, Atom("no_session"))


class _Outstanding:
    """An enqueue waiting for its reply."""

    __slots__ = ("excluded", "member", "msg", "timer")

    def __init__(
        self,
        member: RemoteMember,
        msg: Message,
        excluded: frozenset[object],
        timer: IDelayedCall,
    ) -> None:
        self.member = member
        self.msg = msg
        self.excluded = excluded
        self.timer = timer


@implementer(INodeObserver)
class RemoteEnqueues:
    """
    The remote enqueues of one node's router: sending them, tracking the
    outstanding ones, and answering those this node receives.  See the
    module docstring.

    @ivar router: the router (its C{counters}, broker, C{send}).
    @ivar outstanding: C{Ref} -> the enqueue waiting for its reply.
    """

    log = Logger()

    def __init__(self, router: ClusterRouter) -> None:
        self.router = router
        self.counters = router.counters
        for name in _COUNTERS:
            self.counters.setdefault(name, 0)
        self.outstanding: dict[Any, _Outstanding] = {}
        self._node: ReplyNode | None = None
        self._mailbox: ReplyMailbox | None = None
        self._reachable: Callable[[str], bool] = lambda node: True
        self._unsubscribe: Callable[[], None] | None = None

    # -- life cycle --------------------------------------------------------

    def attach(self, node: ReplyNode, reachable: Callable[[str], bool] | None = None) -> None:
        """
        Acknowledge from now on: replies come to a mailbox of C{node}
        registered as L{ENQUEUE_REPLIES}; C{node}'s connection events tell
        which members' nodes went down.

        @param reachable: C{reachable(node)}: whether the data link to a
            peer is up now.
        """
        self._node = node
        self._mailbox = node.spawn(self.on_reply, ENQUEUE_REPLIES)
        self._unsubscribe = node.subscribe(self)
        if reachable is not None:
            self._reachable = reachable

    def stop(self) -> None:
        """Forget the outstanding enqueues and stop listening."""
        for entry in self.outstanding.values():
            if entry.timer.active():
                entry.timer.cancel()
        self.outstanding.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._node is not None and self._mailbox is not None:
            self._node.unregister(ENQUEUE_REPLIES)
            self._mailbox.close()
        self._node = self._mailbox = None

    # -- the sender --------------------------------------------------------

    def send(
        self, member: RemoteMember, msg: Message, excluded: frozenset[object] = frozenset()
    ) -> None:
        """
        Enqueue C{msg} to C{member}'s session on its node.

        @param excluded: the members already tried for C{msg}.
        """
        router = self.router
        peer = member.node
        if not self._reachable(peer):
            self.counters["enqueue_unreachable"] += 1
            if self._requeue(member, msg, excluded):
                return
            # Nobody else: the link buffers it until it reconnects.
        mountpoint, client_id = member.sid
        record = router.message_term(mountpoint, msg)
        node, mailbox = self._node, self._mailbox
        caller: Any = _UNDEFINED
        ref: Any = record[1]  # the #vmq_msg{} record's msg_ref
        if node is not None and mailbox is not None:
            caller = mailbox.pid
            ref = node.makeRef()
        item: Item = (
            TAG_ENQ,
            (
                caller,
                ref,
                (
                    _ENQUEUE_MANY,
                    (mountpoint.encode("utf-8"), client_id.encode("utf-8")),
                    [(_DELIVER, member.opts.qos, record)],
                    {_SHARED: member.shared_filter.encode("utf-8")},
                ),
            ),
        )
        if not router.send(peer, item):
            self.counters["forward_dropped"] += 1
            if caller is not _UNDEFINED and not self._requeue(member, msg, excluded):
                self._lost(member, msg, "its data link dropped it")
            return
        self.counters["enqueued"] += 1
        if caller is _UNDEFINED:
            return
        config = router.broker.config
        timeout = config["remote_enqueue_timeout"] / 1000.0
        timer = router.broker.reactor.callLater(timeout, self._timed_out, ref)
        self.outstanding[ref] = _Outstanding(member, msg, excluded, timer)

    def on_reply(self, message: Any) -> None:
        """A message to the reply mailbox: C{{Ref, ok | {error, Reason}}}."""
        if not (isinstance(message, tuple) and len(message) == 2):
            self.log.warn("ignoring a malformed enqueue reply {reply!r}", reply=message)
            return
        ref, result = message
        entry = self.outstanding.pop(ref, None)
        if entry is None:
            return  # too late: it timed out or its node went down
        if entry.timer.active():
            entry.timer.cancel()
        if isinstance(result, Atom) and result == _OK:
            self.counters["enqueue_acked"] += 1
            return
        self.counters["enqueue_failed"] += 1
        reason = result[1] if isinstance(result, tuple) and len(result) == 2 else result
        if not self._requeue(entry.member, entry.msg, entry.excluded):
            self._lost(entry.member, entry.msg, f"{entry.member.node} answered {reason}")

    def _timed_out(self, ref: Any) -> None:
        entry = self.outstanding.pop(ref, None)
        if entry is None:
            return
        self.counters["enqueue_timeouts"] += 1
        self._timed_out_action(entry)

    def nodeUp(self, node: Atom) -> None:
        """Nothing to do."""

    def nodeDown(self, node: Atom, reason: str) -> None:
        """
        The distribution connection to C{node} closed: its replies cannot
        come any more, so its outstanding enqueues are decided now.
        """
        peer = str(node)
        gone = [ref for ref, entry in self.outstanding.items() if entry.member.node == peer]
        if not gone:
            return
        action = self.router.broker.config["shared_subscription_timeout_action"]
        self.log.info(
            "{node} went down with {count} shared-subscription enqueues outstanding; "
            "{outcome} (shared_subscription_timeout_action = {action})",
            node=peer,
            count=len(gone),
            outcome="requeueing them" if action == _REQUEUE else "they may be lost",
            action=action,
        )
        for ref in gone:
            entry = self.outstanding.pop(ref)
            if entry.timer.active():
                entry.timer.cancel()
            self.counters["enqueue_node_down"] += 1
            if action != _REQUEUE:
                self.counters["enqueue_lost"] += 1  # logged above, once
            elif not self._requeue(entry.member, entry.msg, entry.excluded):
                self._lost(entry.member, entry.msg, f"{peer} went down")

    def _timed_out_action(self, entry: _Outstanding) -> None:
        """Whether it was delivered is unknown: the timeout action decides."""
        action = self.router.broker.config["shared_subscription_timeout_action"]
        why = "no reply within remote_enqueue_timeout"
        if action == _REQUEUE:
            if not self._requeue(entry.member, entry.msg, entry.excluded):
                self._lost(entry.member, entry.msg, why)
            return
        self.counters["enqueue_lost"] += 1
        self.log.warn(
            "shared-subscription message on {topic!r} for {member}: {why}; not requeued "
            "(shared_subscription_timeout_action = ignore), it may be lost",
            topic=entry.msg.topic,
            member=entry.member,
            why=why,
        )

    def _requeue(self, failed: RemoteMember, msg: Message, excluded: frozenset[object]) -> bool:
        """
        Hand C{msg} to a member of C{failed}'s group other than C{failed}
        and those in C{excluded}.

        @return: whether one took it.
        """
        excluded = excluded | {failed}
        group = self._group(failed)
        if group is None:
            return False
        registry = group.registry
        entry = registry.policy_for(msg.origin).choose(
            group.entries, registry.rng, msg.origin, None, False, excluded
        )
        if entry is None:
            return False
        member, opts = entry
        self.counters["enqueue_requeued"] += 1
        if opts.qos and msg.qos:
            msg = tag(msg, group)
        from vernemq.cluster.routing import RemoteMember  # routing imports this module

        if isinstance(member, RemoteMember):
            self.send(member, msg, excluded)
        else:
            member.deliver(msg, opts.qos, opts.rap, opts.sub_ids)
        return True

    def _group(self, member: RemoteMember) -> SharedGroup | None:
        name, topic_filter = parse_shared(member.shared_filter)
        if name is None:
            return None
        return self.router.broker.topics(member.sid[0]).shared.get(name, topic_filter)

    def _lost(self, member: RemoteMember, msg: Message, why: str) -> None:
        self.counters["enqueue_lost"] += 1
        self.log.warn(
            "shared-subscription message on {topic!r} for {member}: {why}, and no other "
            "member of the group can take it; dropped",
            topic=msg.topic,
            member=member,
            why=why,
        )

    # -- the receiver ------------------------------------------------------

    def reply(self, caller: Any, ref: Any, result: Any) -> None:
        """
        Answer an enqueue this node received: C{{Ref, Result}} to
        C{caller} over the distribution (nothing for C{undefined}).
        """
        if isinstance(caller, Pid) and self._node is not None:
            self._node.send(caller, (ref, result))
