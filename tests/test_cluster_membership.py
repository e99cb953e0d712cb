"""
Tests for L{vernemq.cluster.membership}, L{vernemq.cluster.readiness} and
the netsplit gating of the broker: in-memory nodes on one clock
(L{tests.clusterhelpers}).
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.brokerhelpers import Harness
from tests.clusterhelpers import FakeNetwork, FakeNode, coroutine, run
from vernemq.cluster.membership import (
    JoinRefused,
    LeaveRefused,
    MemberSet,
    entriesFromTerm,
    entriesToTerm,
)
from vernemq.cluster.transport import DistTransport, IClusterTransport
from vernemq.dist.etf import Atom
from vernemq.dist.node import Node
from vernemq.mqtt.packets import (
    ConnAck,
    PubAck,
    Publish,
    PubRec,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)

A, B, C = "a@h", "b@h", "c@h"


def cluster(network: FakeNetwork, *names: str) -> list[FakeNode]:
    """Nodes C{names}, every one after the first joined to the first."""
    nodes = [FakeNode(network, name) for name in names]
    for node in nodes[1:]:
        run(coroutine(node.membership.join(names[0])))
    return nodes


class MemberSetTests(SynchronousTestCase):
    """The last-writer-wins set."""

    def test_mergeGreaterStampWins(self) -> None:
        """Per node, the entry with the greater stamp wins; merging is idempotent."""
        mine = MemberSet({A: (1, True), B: (5, True)})
        self.assertTrue(mine.merge({B: (6, False), C: (2, True)}))
        self.assertEqual([A, C], mine.members())
        self.assertFalse(mine.merge({B: (4, True), C: (2, True)}))
        self.assertEqual([A, C], mine.members())

    def test_removalWinsTie(self) -> None:
        """Equal stamps: the removal wins."""
        mine = MemberSet({A: (3, True)})
        mine.merge({A: (3, False)})
        self.assertEqual([], mine.members())

    def test_term(self) -> None:
        """The wire form round-trips; junk is refused with ValueError."""
        entries = {A: (10, True), B: (11, False)}
        term = entriesToTerm(entries)
        self.assertEqual([(Atom(A), 10, True), (Atom(B), 11, False)], term)
        self.assertEqual(entries, entriesFromTerm([(Atom(A), 10, Atom("true")), term[1]]))
        for junk in [b"x", [(A, 1, True)], [(Atom(A), "1", True)], [(Atom("nohost"), 1, True)]]:
            self.assertRaises(ValueError, entriesFromTerm, junk)


class TransportTests(SynchronousTestCase):
    """The transports provide L{IClusterTransport}."""

    def test_interfaces(self) -> None:
        """The distribution adapter and the fake both verify."""
        from twisted.internet.task import Clock

        verifyObject(IClusterTransport, DistTransport(Node("x@h", "c", Clock())))
        verifyObject(IClusterTransport, FakeNetwork().transport(A))

    def test_localCall(self) -> None:
        """A call to this node itself is served locally."""
        from twisted.internet.task import Clock

        transport = DistTransport(Node("x@h", "c", Clock()))
        transport.export("double", lambda n: n * 2)
        self.assertEqual(42, run(transport.call("x@h", "double", [21], 5)))
        self.assertTrue(transport.isConnected("x@h"))


class JoinTests(SynchronousTestCase):
    """C{join}: every member learns the new one."""

    def test_threeNodes(self) -> None:
        """B joins A, C joins B: all three know all three."""
        network = FakeNetwork()
        a, b, c = FakeNode(network, A), FakeNode(network, B), FakeNode(network, C)
        outcome = run(coroutine(b.membership.join(A)))
        self.assertEqual([A, B], outcome.members)
        self.assertIsNone(outcome.history)
        run(coroutine(c.membership.join(B)))
        for node in (a, b, c):
            self.assertEqual([A, B, C], node.membership.members())
            self.assertTrue(node.readiness.cluster_ready())
            self.assertEqual(
                {"netsplit_detected": 0, "netsplit_resolved": 0}, node.readiness.counters()
            )

    def test_refusals(self) -> None:
        """Joining itself, an unreachable node or a bad name is refused clearly."""
        network = FakeNetwork()
        a = FakeNode(network, A)
        for target, reason in [(A, "self_join"), ("z@h", "not_reachable"), ("z", "invalid_node")]:
            refused = self.failureResultOf(coroutine(a.membership.join(target)), JoinRefused)
            self.assertEqual(reason, refused.value.reason)
        self.assertEqual([A], a.membership.members())

    def test_history(self) -> None:
        """A node with local history is merged, and the outcome says why."""
        network = FakeNetwork()
        FakeNode(network, A)
        b = FakeNode(network, B, history="3 sessions")
        outcome = run(coroutine(b.membership.join(A)))
        self.assertEqual("3 sessions", outcome.history)
        self.assertEqual([A, B], outcome.members)

    def test_mergeClusters(self) -> None:
        """Joining with members of another cluster merges both clusters."""
        network = FakeNetwork()
        a, b = cluster(network, A, B)
        c, d = cluster(network, C, "d@h")
        outcome = run(coroutine(c.membership.join(A)))
        self.assertIn("a member of a cluster with d@h", outcome.history or "")
        for node in (a, b, c, d):
            self.assertEqual([A, B, C, "d@h"], node.membership.members())

    def test_persistedAndRejoinedAfterRestart(self) -> None:
        """
        The set is persisted under platform_data_dir; a restarted node loads
        it and reconnects to its members by itself.
        """
        network = FakeNetwork()
        dirs = {name: self.mktemp() for name in (A, B)}
        a = FakeNode(network, A, dirs[A])
        b = FakeNode(network, B, dirs[B])
        run(coroutine(b.membership.join(A)))
        with open(os.path.join(dirs[B], "cluster", "members.json")) as f:
            self.assertEqual(B, json.load(f)["node"])
        b.stop()
        network.kill(B)
        self.assertFalse(a.readiness.isRunning(B))
        network.restart(B)
        b = FakeNode(network, B, dirs[B])
        self.assertEqual([A, B], b.membership.members())
        network.clock.advance(1)
        self.assertTrue(b.readiness.cluster_ready())
        self.assertTrue(a.readiness.isRunning(B))

    def test_otherNodesFile(self) -> None:
        """A file written by another node name is not taken (the name changed)."""
        network = FakeNetwork()
        directory = self.mktemp()
        b = FakeNode(network, B, directory)
        FakeNode(network, A)
        run(coroutine(b.membership.join(A)))
        network.restart("x@h")
        x = FakeNode(network, "x@h", directory)
        self.assertEqual(["x@h"], x.membership.members())


class LeaveTests(SynchronousTestCase):
    """C{leave}: dead and live nodes."""

    def test_deadNode(self) -> None:
        """A dead node is removed everywhere, then its queues are fixed."""
        network = FakeNetwork()
        a, b, c = cluster(network, A, B, C)
        network.kill(C)
        text = run(coroutine(a.membership.leave(C)))
        self.assertEqual("Done", text)
        for node in (a, b):
            self.assertEqual([A, B], node.membership.members())
            self.assertTrue(node.readiness.cluster_ready())
        self.assertIn(("fixDeadQueues", ([C], [A, B])), a.events)

    def test_inconsistent(self) -> None:
        """The remaining cluster not ready in time: the queues are not fixed."""
        network = FakeNetwork()
        a, b, c = cluster(network, A, B, C)
        network.kill(C)
        network.partition(A, B)
        d = coroutine(a.membership.leave(C, timeout=3))
        network.clock.pump([1, 1, 1, 1])
        failure = self.failureResultOf(d, LeaveRefused)
        self.assertEqual(
            "Can't fix queues because cluster is inconsistent, retry!", str(failure.value)
        )
        self.assertNotIn("fixDeadQueues", [e for e, _ in a.events])

    def test_notAMember(self) -> None:
        """Leaving a node that is not a member is refused."""
        network = FakeNetwork()
        (a,) = cluster(network, A)
        failure = self.failureResultOf(coroutine(a.membership.leave(B)), LeaveRefused)
        self.assertEqual("Node 'b@h' wasn't part of the cluster", str(failure.value))

    def test_liveNode(self) -> None:
        """Without kill, a live node only stops its listeners and stays."""
        network = FakeNetwork()
        a, b = cluster(network, A, B)
        text = run(coroutine(a.membership.leave(B)))
        self.assertEqual("Done! Use -k to teardown and migrate existing sessions!", text)
        self.assertEqual([("stopListeners", None)], b.events)
        self.assertEqual([A, B], a.membership.members())

    def test_liveNodeKill(self) -> None:
        """
        With kill, the node stops its listeners, disconnects its sessions,
        migrates its queues, leaves everywhere and stops.
        """
        network = FakeNetwork()
        a, b, c = cluster(network, A, B, C)
        text = run(coroutine(a.membership.leave(C, kill=True)))
        self.assertEqual("Done", text)
        network.clock.advance(1)
        self.assertEqual(
            ["stopListeners", "killSessions", "migrateQueues", "stopNode"],
            [e for e, _ in c.events],
        )
        self.assertEqual(("migrateQueues", [A, B]), c.events[2])
        for node in (a, b):
            self.assertEqual([A, B], node.membership.members())
        self.assertEqual([C], c.membership.members())

    def test_liveNodeKillAnswersBeforeStopping(self) -> None:
        """
        With kill, the leaving node pushes its removal to the others, keeps
        its connections until it stops (the member that asked gets its
        answer), ignores member sets arriving meanwhile, and stays a
        cluster of one after a restart.
        """
        network = FakeNetwork()
        directory = self.mktemp()
        a = FakeNode(network, A)
        b = FakeNode(network, B)
        c = FakeNode(network, C, directory)
        run(coroutine(b.membership.join(A)))
        run(coroutine(c.membership.join(A)))
        original = c.membership.broadcast

        async def gossipFirst(nodes: list[str] | None = None) -> None:
            # A member's set (still listing C) arrives while C leaves.
            c.membership.merge(entriesToTerm(a.membership.set.entries))
            await original(nodes)

        c.membership.broadcast = gossipFirst  # type: ignore[method-assign]
        text = run(coroutine(a.membership.leave(C, kill=True)))
        self.assertEqual("Done", text)
        for node in (a, b):
            self.assertEqual([A, B], node.membership.members())
        self.assertEqual([C], c.membership.members())
        self.assertTrue(network.transports[C].isConnected(A))
        self.assertNotIn("stopNode", [e for e, _ in c.events])
        network.clock.advance(c.membership.stopDelay)
        self.assertEqual("stopNode", c.events[-1][0])
        self.assertFalse(network.transports[C].isConnected(A))
        c.stop()
        network.restart(C)
        c = FakeNode(network, C, directory)
        network.clock.advance(10)
        self.assertEqual([C], c.membership.members())
        for node in (a, b):
            self.assertEqual([A, B], node.membership.members())
            self.assertTrue(node.readiness.cluster_ready())

    def test_removedWhileOffline(self) -> None:
        """
        A node removed while it was down learns it when it comes back, and
        becomes a cluster of one without adding itself back.
        """
        network = FakeNetwork()
        directory = self.mktemp()
        a = FakeNode(network, A)
        b = FakeNode(network, B)
        c = FakeNode(network, C, directory)
        run(coroutine(b.membership.join(A)))
        run(coroutine(c.membership.join(A)))
        c.stop()
        network.kill(C)
        run(coroutine(a.membership.leave(C)))
        network.restart(C)
        c = FakeNode(network, C, directory)
        network.clock.advance(1)
        self.assertEqual([C], c.membership.members())
        network.clock.advance(10)
        for node in (a, b):
            self.assertEqual([A, B], node.membership.members())
            self.assertTrue(node.readiness.cluster_ready())


class ReadinessTests(SynchronousTestCase):
    """Running flags, netsplit detection and the counters."""

    def test_killedDetectedAtOnce(self) -> None:
        """A connection that closes makes its member not running at once."""
        network = FakeNetwork()
        a, b, c = cluster(network, A, B, C)
        seen: list[bool] = []
        a.readiness.subscribe(seen.append)
        network.kill(C)
        self.assertEqual([(A, True), (B, True), (C, False)], a.readiness.status())
        self.assertFalse(a.readiness.cluster_ready())
        self.assertEqual([False], seen)
        self.assertEqual(1, a.readiness.netsplit_detected)

    def test_silentDetectedWithinDetectionTime(self) -> None:
        """
        A member that stops answering (its connection stays up) is detected
        within netsplit_detection_time, not before the probes could miss.
        """
        network = FakeNetwork()
        a, b = cluster(network, A, B)
        network.clock.advance(0.5)
        network.silent.add(B)
        elapsed = 0.0
        while a.readiness.isRunning(B):
            network.clock.advance(0.1)
            elapsed += 0.1
            self.assertLessEqual(elapsed, 5.0 + 1e-6)
        self.assertGreaterEqual(elapsed, 3.0)
        self.assertEqual({"netsplit_detected": 1, "netsplit_resolved": 0}, a.readiness.counters())

    def test_configurableDetectionTime(self) -> None:
        """The detection time is a setting."""
        network = FakeNetwork()
        a = FakeNode(network, A, detectionTime=2.0)
        FakeNode(network, B, detectionTime=2.0)
        run(coroutine(a.membership.join(B)))
        network.silent.add(B)
        network.clock.pump([0.1] * 20)
        self.assertFalse(a.readiness.isRunning(B))

    def test_partitionAndHeal(self) -> None:
        """A partition is detected on both sides and resolved after the heal."""
        network = FakeNetwork()
        a, b, c = cluster(network, A, B, C)
        network.partition(A, C)
        for node in (a, c):
            self.assertFalse(node.readiness.cluster_ready())
        self.assertTrue(b.readiness.cluster_ready())
        network.heal(A, C)
        network.clock.pump([1] * 5)
        for node in (a, b, c):
            self.assertTrue(node.readiness.cluster_ready(), node.name)
        self.assertEqual({"netsplit_detected": 1, "netsplit_resolved": 1}, a.readiness.counters())

    def test_linkStatus(self) -> None:
        """A data link that is down makes the member not running."""
        network = FakeNetwork()
        a, b = cluster(network, A, B)
        links = {B: "up"}
        a.readiness.linkStatus = links.get
        network.clock.advance(1)
        self.assertTrue(a.readiness.isRunning(B))
        links[B] = "down"
        network.clock.advance(1)
        self.assertFalse(a.readiness.isRunning(B))

    def test_aloneIsReady(self) -> None:
        """A cluster of one is ready."""
        (a,) = cluster(FakeNetwork(), A)
        self.assertTrue(a.readiness.cluster_ready())
        self.assertEqual([(A, True)], a.readiness.status())


class GatingTests(SynchronousTestCase):
    """
    The broker while the cluster is not ready (spec section 2): the four
    C{allow_*_during_netsplit} flags, for MQTT 3 and 5.
    """

    def harness(self, **flags: bool) -> Harness:
        harness = Harness(**flags)
        return harness

    def test_connectRefused(self) -> None:
        """CONNECT: CONNACK 3 (MQTT 3) / 0x88 (MQTT 5), connection closed."""
        for level, code in [(3, 3), (4, 3), (5, 0x88)]:
            harness = self.harness()
            harness.broker.netsplit = True
            client = harness.client(level)
            ack = client.connect("c")
            assert isinstance(ack, ConnAck)
            self.assertEqual(code, ack.reason_code)
            self.assertTrue(client.closed)
            self.assertEqual(1, harness.broker.netsplit_errors["mqtt_connect_error"])

    def test_connectAllowed(self) -> None:
        """With allow_register_during_netsplit (or trade_consistency) it goes on."""
        for flags in [{"allow_register_during_netsplit": True}, {"trade_consistency": True}]:
            harness = self.harness(**flags)
            harness.broker.netsplit = True
            harness.connected("c")

    def test_publish(self) -> None:
        """
        PUBLISH: not routed; MQTT 3 gets no PUBACK/PUBREC, MQTT 5 PUBACK
        0x83 / PUBREC 0x80.
        """
        for level in (4, 5):
            harness = self.harness()
            sub = harness.connected("sub", level)
            sub.send(Subscribe(1, [Subscription("t", 1)]))
            sub.received()
            pub = harness.connected("pub", level)
            harness.broker.netsplit = True
            pub.send(Publish("t", b"1", 1, packet_id=1), Publish("t", b"2", 2, packet_id=2))
            acks = pub.received()
            if level == 5:
                self.assertEqual([0x83, 0x80], [p.reason_code for p in acks])  # type: ignore[attr-defined]
                self.assertIsInstance(acks[0], PubAck)
                self.assertIsInstance(acks[1], PubRec)
            else:
                self.assertEqual([], acks)
            self.assertEqual([], sub.publishes())
            self.assertEqual(2, harness.broker.netsplit_errors["mqtt_publish_error"])
            harness.broker.netsplit = False
            pub.send(Publish("t", b"3", 1, packet_id=3))
            self.assertEqual([b"3"], [p.payload for p in sub.publishes()])

    def test_publishAllowed(self) -> None:
        """With allow_publish_during_netsplit the message is routed."""
        harness = self.harness(allow_publish_during_netsplit=True)
        sub = harness.connected("sub")
        sub.send(Subscribe(1, [Subscription("t", 0)]))
        sub.received()
        pub = harness.connected("pub")
        harness.broker.netsplit = True
        pub.send(Publish("t", b"x", 0))
        self.assertEqual([b"x"], [p.payload for p in sub.publishes()])

    def test_subscribe(self) -> None:
        """SUBSCRIBE: SUBACK 0x80 (MQTT 3) / 0x87 (MQTT 5) for every topic."""
        for level, code in [(4, 0x80), (5, 0x87)]:
            harness = self.harness()
            client = harness.connected("c", level)
            harness.broker.netsplit = True
            client.send(Subscribe(1, [Subscription("a", 0), Subscription("b", 1)]))
            [ack] = client.received()
            assert isinstance(ack, SubAck)
            self.assertEqual([code, code], list(ack.reason_codes))
            self.assertEqual(1, harness.broker.netsplit_errors["mqtt_subscribe_error"])

    def test_subscribeAllowed(self) -> None:
        """With allow_subscribe_during_netsplit the subscription is made."""
        harness = self.harness(allow_subscribe_during_netsplit=True)
        client = harness.connected("c")
        harness.broker.netsplit = True
        client.send(Subscribe(1, [Subscription("a", 1)]))
        [ack] = client.received()
        assert isinstance(ack, SubAck)
        self.assertEqual([1], list(ack.reason_codes))

    def test_unsubscribe(self) -> None:
        """UNSUBSCRIBE: no UNSUBACK (the client retries), unless allowed."""
        for allowed in (False, True):
            harness = self.harness(allow_unsubscribe_during_netsplit=allowed)
            client = harness.connected("c", 5)
            client.send(Subscribe(1, [Subscription("a", 0)]))
            client.received()
            harness.broker.netsplit = True
            client.send(Unsubscribe(2, ["a"]))
            acks = client.received()
            if allowed:
                self.assertIsInstance(acks[0], UnsubAck)
            else:
                self.assertEqual([], acks)
                self.assertEqual(1, harness.broker.netsplit_errors["mqtt_unsubscribe_error"])

    def test_registerModifiers(self) -> None:
        """C{allow_*} register modifiers override the flags per session."""
        harness = self.harness()
        limits = harness.broker.limits({"allow_publish": True, "allow_subscribe": False})
        self.assertEqual({"allow_publish": True, "allow_subscribe": False}, limits.netsplit)
        self.assertTrue(harness.broker.netsplit_allows("publish", limits.netsplit))
        self.assertFalse(harness.broker.netsplit_allows("unsubscribe", limits.netsplit))
        self.assertTrue(harness.broker.netsplit_allows("register", {"allow_register": True}))
