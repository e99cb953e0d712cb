"""
Acknowledged remote enqueues to shared-subscription members
(L{vernemq.cluster.enqueue}), on the in-memory cluster of
C{tests.test_cluster_routing} plus an in-memory Erlang distribution that
carries the replies (as ETF bytes) and can report a node down.

Every test has a group with member C{m1} on A and C{m2} on B, a publisher
on C (no member there), and C's choice starting at C{m1}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from tests.test_cluster_routing import FakeCluster, RoutingNode, payloads
from vernemq.broker.message import Message
from vernemq.cluster.dataframes import TAG_ENQ
from vernemq.cluster.enqueue import ENQUEUE_REPLIES, RemoteEnqueues
from vernemq.cluster.routing import RemoteMember
from vernemq.dist.etf import Atom, Pid, Reference, decode, encode
from vernemq.dist.node import INodeObserver

A, B, C = "a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"


class FakeMailbox:
    """A mailbox of a L{FakeDistNode}."""

    def __init__(self, pid: Pid, handler: Callable[[Any], object]) -> None:
        self.pid = pid
        self.handler = handler
        self.closed = False

    def close(self, reason: Any = None) -> None:
        self.closed = True


class FakeDistNode:
    """One node's side of L{FakeDist} (the L{vernemq.cluster.enqueue.ReplyNode} shape)."""

    def __init__(self, dist: FakeDist, name: str) -> None:
        self.dist = dist
        self.name = Atom(name)
        self.mailboxes: dict[Pid, FakeMailbox] = {}
        self.names: dict[str, FakeMailbox] = {}
        self.observers: list[INodeObserver] = []
        self._counter = 0

    def spawn(
        self, handler: Callable[[Any], object] | None = None, name: str | None = None
    ) -> FakeMailbox:
        assert handler is not None
        self._counter += 1
        mailbox = FakeMailbox(Pid(self.name, self._counter, 0, 1), handler)
        self.mailboxes[mailbox.pid] = mailbox
        if name is not None:
            self.names[name] = mailbox
        return mailbox

    def unregister(self, name: str) -> None:
        self.names.pop(name, None)

    def makeRef(self) -> Reference:
        self._counter += 1
        return Reference(self.name, 1, (self._counter, 0, 7))

    def send(self, destination: Any, message: Any, sender: Pid | None = None) -> None:
        assert isinstance(destination, Pid)
        self.dist.queue.append((str(self.name), destination, encode(message)))

    def subscribe(self, observer: INodeObserver) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)


class FakeDist:
    """Messages between nodes' mailboxes, delivered by L{deliver}."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeDistNode] = {}
        self.queue: list[tuple[str, Pid, bytes]] = []
        #: Nodes whose messages are lost.
        self.mute: set[str] = set()

    def node(self, name: str) -> FakeDistNode:
        return self.nodes.setdefault(name, FakeDistNode(self, name))

    def deliver(self) -> bool:
        """Deliver what was sent; whether anything was."""
        queue, self.queue = self.queue, []
        for source, pid, payload in queue:
            if source in self.mute:
                continue
            mailbox = self.nodes[str(pid.node)].mailboxes.get(pid)
            if mailbox is not None and not mailbox.closed:
                mailbox.handler(decode(payload))
        return bool(queue)

    def node_down(self, name: str) -> None:
        """The connections to C{name} close: every other node hears it."""
        for other, node in self.nodes.items():
            if other != name:
                for observer in list(node.observers):
                    observer.nodeDown(Atom(name), "connection closed")


class AckedCluster(FakeCluster):
    """L{FakeCluster} whose routers acknowledge enqueues over a L{FakeDist}."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.dist = FakeDist()
        #: Nodes that receive nothing on their data channel (frozen).
        self.frozen: set[str] = set()
        #: Data items held for frozen nodes.
        self.held: list[tuple[str, str, bytes, str]] = []
        #: C{(from, to)} data links that are down.
        self.unreachable: set[tuple[str, str]] = set()
        for name, node in self.nodes.items():
            node.router.enqueues.attach(
                self.dist.node(name),
                lambda peer, name=name: (name, peer) not in self.unreachable,  # type: ignore[misc]
            )

    def settle(self) -> None:
        """Deliver metadata, data items and distribution messages until nothing moves."""
        for _ in range(100):
            held = [entry for entry in self.data if entry[1] in self.frozen]
            self.held += held
            self.data = [entry for entry in self.data if entry[1] not in self.frozen]
            super().settle()
            if not self.dist.deliver() and not self.data:
                return
        raise AssertionError("the cluster did not settle")


class _First:
    """A random source that makes a group try its first member first."""

    def random(self) -> float:
        return 0.0


class AckedEnqueueTests(SynchronousTestCase):
    """What a subscriber notices when a remote enqueue fails (or does not)."""

    def setUp(self) -> None:
        self.cluster = AckedCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))
        self.cluster.form()
        self.m1 = self.a.client("m1")
        self.m1.subscribe(("$share/g/t", 1))
        self.cluster.settle()
        self.m2 = self.b.client("m2")
        self.m2.subscribe(("$share/g/t", 1))
        self.cluster.settle()
        self.c.broker.topics("").shared.rng = _First()  # type: ignore[assignment]
        group = self.c.broker.topics("").shared.get("g", "t")
        assert group is not None
        self.assertEqual([m.sid[1] for m in group.members], ["m1", "m2"])
        self.publisher = self.c.client("p")
        self.events: list[dict[str, Any]] = []
        self.patch(RemoteEnqueues, "log", Logger(observer=self.events.append))

    @property
    def clock(self) -> Clock:
        return self.c.harness.clock

    def counters(self) -> dict[str, int]:
        return self.c.router.counters

    def action(self, value: str) -> None:
        """Set C's C{shared_subscription_timeout_action}."""
        broker = self.c.broker
        broker.config = broker.config.replace(shared_subscription_timeout_action=value)

    def publish(self, payload: bytes = b"m") -> None:
        self.publisher.publish("t", payload, qos=1)

    def test_enqAcknowledged(self) -> None:
        """
        The enq carries C's reply mailbox and a reference; A delivers to m1
        and answers ok, after which nothing is redone: not at the timeout,
        not when A goes down.
        """
        self.publish()
        [(peer, (tag, term))] = [(p, i) for p, i in self.c.sent if i[0] == TAG_ENQ]
        self.assertEqual(peer, A)
        caller, ref, _request = term
        self.assertEqual(caller, self.cluster.dist.node(C).names[ENQUEUE_REPLIES].pid)
        self.assertIsInstance(ref, Reference)
        self.assertEqual(len(self.c.router.enqueues.outstanding), 1)
        self.cluster.settle()
        self.assertEqual(payloads(self.m1), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_acked"], 1)
        self.assertEqual(self.c.router.enqueues.outstanding, {})
        self.action("requeue")
        self.clock.advance(60)
        self.cluster.dist.node_down(A)
        self.cluster.settle()
        self.assertEqual(payloads(self.m1) + payloads(self.m2), [])
        self.assertEqual(self.counters()["enqueue_requeued"], 0)

    def test_errorReplyRequeued(self) -> None:
        """
        m1 unsubscribed on A before the enq arrived and A has no other
        member: A answers an error and C hands the message to m2 on B at
        once, whatever the timeout action.
        """
        self.m1.unsubscribe("$share/g/t")  # C does not know yet
        self.publish()
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(payloads(self.m1), [])
        self.assertEqual(self.counters()["enqueue_failed"], 1)
        self.assertEqual(self.counters()["enqueue_requeued"], 1)
        self.assertEqual(self.counters()["enqueue_acked"], 1)  # B's answer
        self.assertEqual(self.a.router.counters["enqueue_undelivered"], 1)

    def test_timeoutRequeued(self) -> None:
        """
        A is frozen (receives, answers nothing): with C{requeue}, m2 gets
        the message when C{remote_enqueue_timeout} passes, not before.
        """
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        self.cluster.settle()
        self.clock.advance(4.9)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [])
        self.clock.advance(0.1)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_timeouts"], 1)
        self.assertEqual(self.counters()["enqueue_requeued"], 1)

    def test_timeoutConfigured(self) -> None:
        """C{remote_enqueue_timeout} is read in milliseconds."""
        broker = self.c.broker
        broker.config = broker.config.replace(remote_enqueue_timeout=1000)
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        self.clock.advance(1.0)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])

    def test_timeoutIgnored(self) -> None:
        """
        With C{ignore} (the default) the message is dropped at the timeout:
        nobody else gets it, it is counted and logged once.
        """
        self.cluster.frozen.add(A)
        self.publish()
        self.cluster.settle()
        self.clock.advance(5)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [])
        self.assertEqual(self.counters()["enqueue_timeouts"], 1)
        self.assertEqual(self.counters()["enqueue_lost"], 1)
        self.assertEqual(self.counters()["enqueue_requeued"], 0)
        self.assertEqual(self.c.router.enqueues.outstanding, {})
        [event] = self.events
        self.assertEqual(event["topic"], "t")
        self.assertIn("ignore", event["log_format"])

    def test_lateReplyIgnored(self) -> None:
        """An answer after the timeout requeued the message changes nothing."""
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        self.clock.advance(5)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.cluster.frozen.clear()  # A wakes up, delivers and answers
        self.cluster.data += self.cluster.held
        self.cluster.settle()
        self.assertEqual(payloads(self.m1), [("t", b"m")])  # the possible duplicate
        self.assertEqual(payloads(self.m2), [])
        self.assertEqual(self.counters()["enqueue_acked"], 1)  # B's only

    def test_nodeDownRequeued(self) -> None:
        """
        A goes down while the message is outstanding: with C{requeue}, m2
        gets it at once, and the timeout later does nothing more.
        """
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        self.cluster.settle()
        self.cluster.dist.node_down(A)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_node_down"], 1)
        self.clock.advance(10)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [])
        self.assertEqual(self.counters()["enqueue_requeued"], 1)

    def test_nodeDownIgnored(self) -> None:
        """
        With C{ignore}, a node going down drops its outstanding messages,
        with one log line however many there are.
        """
        self.cluster.frozen.add(A)
        self.publish(b"1")
        self.publish(b"2")
        self.cluster.dist.node_down(A)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [])
        self.assertEqual(self.counters()["enqueue_lost"], 2)
        [event] = self.events
        self.assertEqual((event["node"], event["count"]), (A, 2))

    def test_otherNodeDown(self) -> None:
        """Another node going down leaves the outstanding enqueue alone."""
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        self.cluster.dist.node_down(B)
        self.cluster.settle()
        self.assertEqual(len(self.c.router.enqueues.outstanding), 1)
        self.assertEqual(payloads(self.m2), [])

    def test_unreachableChoosesAnother(self) -> None:
        """
        C's data link to A is down at publish time: nothing is sent to A,
        m2 gets the message at once.
        """
        self.cluster.unreachable.add((C, A))
        self.publish()
        self.assertEqual([peer for peer, _ in self.c.sent], [B])
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_unreachable"], 1)
        self.assertEqual(self.counters()["enqueue_acked"], 1)

    def test_unreachableLastResort(self) -> None:
        """
        When every member's link is down the message is buffered on the
        link of the last member tried (delivered when it comes back), not
        dropped.
        """
        self.cluster.unreachable.update({(C, A), (C, B)})
        self.publish()
        self.assertEqual([peer for peer, _ in self.c.sent], [B])
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_unreachable"], 2)
        self.assertEqual(self.counters()["enqueue_lost"], 0)

    def test_noOtherMember(self) -> None:
        """An error answer with no other member left: counted lost, logged once."""
        self.m2.unsubscribe("$share/g/t")
        self.cluster.settle()
        self.m1.unsubscribe("$share/g/t")  # C does not know yet
        self.publish()
        self.cluster.settle()
        self.assertEqual(self.counters()["enqueue_failed"], 1)
        self.assertEqual(self.counters()["enqueue_lost"], 1)
        self.assertEqual(len(self.events), 1)

    def test_requeueSkipsTriedMembers(self) -> None:
        """
        Three members: m1 and m3 on frozen A, m2 on B.  A timeout on m1
        hands the message on without ever going back to m1, and the next
        timeout (m3) again: it ends with m2.
        """
        m3 = self.a.client("m3")
        m3.subscribe(("$share/g/t", 1))
        self.cluster.settle()
        group = self.c.broker.topics("").shared.get("g", "t")
        assert group is not None
        self.assertEqual([m.sid[1] for m in group.members], ["m1", "m2", "m3"])
        # m2 is the last choice: it comes after m3 from the starting point.
        self.c.broker.topics("").shared.rng = _Start(2 / 3)  # type: ignore[assignment]
        self.action("requeue")
        self.cluster.frozen.add(A)
        self.publish()
        [entry] = self.c.router.enqueues.outstanding.values()
        self.assertEqual(entry.member.sid[1], "m3")
        self.clock.advance(5)  # m3 timed out: m1 next (m3 excluded)
        self.cluster.settle()
        [entry] = self.c.router.enqueues.outstanding.values()
        self.assertEqual(entry.member.sid[1], "m1")
        self.clock.advance(5)
        self.cluster.settle()
        self.assertEqual(payloads(self.m2), [("t", b"m")])
        self.assertEqual(self.counters()["enqueue_timeouts"], 2)
        self.assertEqual(self.counters()["enqueue_requeued"], 2)


class _Start:
    """A random source with a fixed starting point."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


class ReceiverTests(SynchronousTestCase):
    """The receiving side of an enq."""

    def setUp(self) -> None:
        self.cluster = AckedCluster(A, C)
        self.a, self.c = self.cluster[A], self.cluster[C]
        self.cluster.form()
        self.m1 = self.a.client("m1")
        self.m1.subscribe(("$share/g/t", 1))
        self.cluster.settle()

    def member(self, node: RoutingNode) -> RemoteMember:
        group = node.broker.topics("").shared.get("g", "t")
        assert group is not None
        [member] = [m for m in group.members if isinstance(m, RemoteMember)]
        return member

    def test_undefinedCaller(self) -> None:
        """An enq with caller C{undefined} (an older sender) is delivered, unanswered."""
        router = self.c.router
        router.enqueues.stop()  # C sends as a node that does not acknowledge
        router.remote_enqueue(self.member(self.c), Message("t", b"old", 1))
        [(_, (_, term))] = self.c.sent
        self.assertEqual(term[0], Atom("undefined"))
        self.cluster.data, data = [], self.cluster.data
        for source, destination, payload, tag in data:
            self.cluster[destination].router.on_item(source, (tag, decode(payload)))
        self.a.harness.clock.advance(0)
        self.assertEqual(payloads(self.m1), [("t", b"old")])
        self.assertEqual(self.cluster.dist.queue, [])
        self.assertEqual(router.enqueues.outstanding, {})

    def test_malformedAnswered(self) -> None:
        """A malformed request with a caller is answered with an error, and counted."""
        pid = self.cluster.dist.node(C).names[ENQUEUE_REPLIES].pid
        received: list[Any] = []
        self.cluster.dist.node(C).mailboxes[pid].handler = received.append
        ref = Reference(Atom(C), 1, (1, 2, 3))
        self.a.router.on_item(
            C, (TAG_ENQ, (pid, ref, (Atom("enqueue_many"), (b"", b"m1"), [], None)))
        )
        self.cluster.dist.deliver()
        self.assertEqual(received, [(ref, (Atom("error"), Atom("badarg")))])
        self.assertEqual(self.a.router.counters["bad_items"], 1)
        self.flushLoggedErrors()
