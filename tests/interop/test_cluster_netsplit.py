"""
Netsplits with real processes (C{twistd vernemq}), joined with the real
C{vmq-admin}, driven by raw-socket MQTT 3.1.1 and 5.0 clients
(L{tests.interop.rawmqtt}) so that a packet the node must I{not} send is
checked too.

L{KilledNodeTests}: three nodes on loopback; one is killed with SIGKILL
(its detection is covered by L{tests.interop.test_cluster_admin}).  On the
node with the default flags CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE are
gated as the spec's table prescribes; on the node whose vernemq.conf turns
the four C{allow_*_during_netsplit} flags on they go ahead.  Restarted, the
killed node rejoins, and what changed during the split (a subscription, a
retained message) is routed and seen everywhere; the replicas of the
metadata are identical (C{vmq-admin cluster metadata}).

L{PartitionTests}: a real partition, every process up.  How: B{network
namespaces}.  Each node runs in its own namespace (C{ip netns}) with two
links:

  - a cluster link, a veth into a bridge in a "hub" namespace, carrying
    everything between nodes: epmd (each namespace runs its own, on 4369,
    as each host of a real cluster does), the Erlang distribution and the
    data channel (C{listener.vmq.clustering});
  - a client link, a veth pair to the test's namespace, on which only the
    node's MQTT listener is reached.

Setting the hub's port of node 3 down cuts node 3 from nodes 1 and 2
silently (packets are lost, no connection is closed), exactly like a
switch failure, while the test still reaches every node's MQTT listener.
A TCP proxy was the alternative; it would need a test epmd answering
proxy ports and a data address advertised through it, and it closes or
stalls connections rather than losing packets.  Namespaces need root and
C{ip} (iproute2): without them the test is skipped, or fails under CI
(C{CI} set), which must run it.

During the split every node accepts operations (the four flags on), and
both sides make conflicting changes: the same client id subscribes on one
side and on the other, one retained topic is written on both sides, one is
deleted on one side, one is deleted on one side and written again on the
other.  After the heal every node must route by the merged state (last
writer wins), serve the same retained messages and hold identical metadata
replicas, within L{CONVERGENCE} seconds.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Sequence

from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from tests.interop.clusternodes import (
    clusterStatus,
    dataListener,
    jsonTable,
    startJoinedCluster,
    vmqAdmin,
    waitFor,
)
from tests.interop.nodeprocess import NodeProcess
from tests.interop.rawmqtt import PUBACK, PUBREC, UNSUBACK, RawClient, retained

#: netsplit_detection_time (s) of the killed-node test: the default.
DETECTION = 5.0
#: netsplit_detection_time (s) of the partition test.
PARTITION_DETECTION = 3.0
#: Seconds within which a healed cluster must have converged.
CONVERGENCE = 20.0

FLAGS_ON = [
    "allow_register_during_netsplit = on",
    "allow_publish_during_netsplit = on",
    "allow_subscribe_during_netsplit = on",
    "allow_unsubscribe_during_netsplit = on",
]


def metadata(node: NodeProcess) -> list[dict[str, object]]:
    """C{cluster metadata}: per prefix, entries, tombstones and digest."""
    return jsonTable(node, "cluster", "metadata")


def connected(node: NodeProcess, clientId: str, version: int = 4) -> RawClient:
    """A client connected to C{node} (CONNACK 0 required)."""
    client = RawClient(node.host, node.port, clientId, version)
    code = client.connect()
    assert code == 0, (clientId, code)
    return client


def subscribed(node: NodeProcess, clientId: str, topicFilter: str) -> RawClient:
    """A client connected to C{node} and subscribed to C{topicFilter} at QoS 1."""
    client = connected(node, clientId)
    assert client.subscribeAck(1, topicFilter) == [1], topicFilter
    return client


def publishOnce(node: NodeProcess, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish one QoS 1 message on C{node} with a short-lived client (PUBACK 0)."""
    client = connected(node, f"pub-{time.monotonic_ns()}")
    try:
        assert client.publishAck(topic, payload, 1, retain) == 0, topic
    finally:
        client.disconnect()


def allConverged(nodes: Sequence[NodeProcess]) -> bool:
    """Whether every node prints the same C{cluster metadata} table."""
    tables = [metadata(node) for node in nodes]
    return all(table == tables[0] for table in tables)


class KilledNodeTests(SynchronousTestCase):
    """A SIGKILLed node: gating per the flags on the others; rejoin and convergence."""

    def setUp(self) -> None:
        # g1: the default flags; g2: the four flags on; g3: killed.
        self.names, self.nodes = startJoinedCluster(
            self,
            "g",
            "netsplit-kill-test-cookie",
            [dataListener(), [*dataListener(), *FLAGS_ON], dataListener()],
            watchers=2,
        )

    def client(self, node: NodeProcess, clientId: str, version: int = 4) -> RawClient:
        client = connected(node, clientId, version)
        self.addCleanup(client.close)
        return client

    def test_gatingAndRejoin(self) -> None:
        """
        Default flags: CONNECT refused (3.1.1 return code 3, 5.0 reason
        0x88), SUBSCRIBE refused (0x80 / 0x87 per topic), PUBLISH not routed
        (3.1.1: no PUBACK, no PUBREC; 5.0: PUBACK 0x83, PUBREC 0x80),
        UNSUBSCRIBE unanswered.  Flags on: all accepted and routed.  After
        the restart the split's changes are everywhere.
        """
        g1, g2, g3 = self.nodes
        name1, name2, name3 = self.names
        v3 = self.client(g1, "g1-v3", 4)
        v5 = self.client(g1, "g1-v5", 5)
        for client in (v3, v5):
            self.assertEqual([1], client.subscribeAck(1, "gate/unsub", 1))
        watch1 = self.client(g1, "g1-watch")
        self.assertEqual([1], watch1.subscribeAck(1, "gate/#", 1))
        watch2 = self.client(g2, "g2-watch")
        self.assertEqual([1], watch2.subscribeAck(1, "gate/#", 1))

        assert g3.process is not None
        g3.process.kill()
        g3.process.wait()
        g3._log.close()
        split = {name1: True, name2: True, name3: False}
        for node in (g1, g2):
            waitFor(lambda node=node: clusterStatus(node) == split, DETECTION + 3, "g3 down")

        # -- g1, default flags: everything gated -----------------------------------
        for version, refused in ((4, 3), (5, 0x88)):
            late = RawClient(g1.host, g1.port, f"g1-late-v{version}", version)
            self.addCleanup(late.close)
            self.assertEqual(refused, late.connect(), f"CONNECT v{version}")
            self.assertTrue(late.isClosed(), f"v{version} refused connection closed")

        self.assertEqual([0x80], v3.subscribeAck(2, "gate/s", 1))
        self.assertEqual([0x87], v5.subscribeAck(2, "gate/s", 1))

        for client in (v3, v5):
            client.publish("gate/p", b"qos0", 0)
            client.publish("gate/p", b"qos1", 1, packetId=3)
            client.publish("gate/p", b"qos2", 2, packetId=4)
            client.unsubscribe(5, "gate/unsub")
        # MQTT 3.1.1: no PUBACK, no PUBREC, no UNSUBACK (the client retries).
        self.assertEqual([], v3.untilPong())
        # MQTT 5.0: PUBACK 0x83, PUBREC 0x80, no UNSUBACK.
        answers = [(first & 0xF0, body[:3]) for first, body in v5.untilPong()]
        self.assertEqual(
            [(PUBACK, b"\x00\x03\x83"), (PUBREC, b"\x00\x04\x80")], answers
        )
        # Not routed: neither the local nor the remote watcher got anything.
        self.assertEqual([], watch1.collect(0.5))
        self.assertEqual([], watch2.collect(0.1))

        # -- g2, the four flags on: everything goes ahead -----------------------------
        during = {}
        for version in (4, 5):
            during[version] = client = self.client(g2, f"g2-split-v{version}", version)
            self.assertEqual([1], client.subscribeAck(1, f"split/v{version}/#", 1))
            self.assertEqual(0, client.publishAck("gate/g2", f"v{version}".encode(), 2))
            client.unsubscribe(3, "nothing/there")
            self.assertEqual(UNSUBACK, client.expect()[0] & 0xF0)
        got = sorted(m.payload for m in watch2.waitMessage(5) + watch2.collect(0.3))
        self.assertEqual([b"v4", b"v5"], got)
        self.assertEqual(0, during[4].publishAck("kept/during", b"split", 4, retain=True))

        # -- g3 restarted: it rejoins, the split's changes reach it ----------------------
        g3.start()
        everyone = dict.fromkeys(self.names, True)
        for node in self.nodes:
            waitFor(lambda node=node: clusterStatus(node) == everyone, 15, "rejoined")

        def routed() -> bool:
            publishOnce(g3, "split/v5/x", b"after-heal")
            return any(m.payload == b"after-heal" for m in during[5].waitMessage(0.5))

        waitFor(routed, CONVERGENCE, "split subscription routed from g3", step=0)
        waitFor(
            lambda: retained(g3.host, g3.port, "kept/#") == {"kept/during": b"split"},
            CONVERGENCE,
            "retained message of the split on g3",
        )
        waitFor(lambda: allConverged(self.nodes), CONVERGENCE, "metadata replicas identical")
        # Ready again: g1 accepts clients.
        self.client(g1, "g1-after", 5)
        self.assertIn("netsplit detected", g1.log())
        self.assertIn("netsplit resolved", g1.log())
        self.assertIn("can't register client 'g1-late-v4' due to reason not_ready", g1.log())


def _requireNamespaces() -> None:
    """Skip (or fail under CI) unless network namespaces can be made here."""
    why = None
    if os.geteuid() != 0:
        why = "network namespaces need root"
    elif shutil.which("ip") is None:
        why = "ip (iproute2) is not installed"
    if why is not None:
        if os.environ.get("CI"):
            raise FailTest(f"CI must run this test: {why}")
        raise SkipTest(why)


class Network:
    """
    Namespaces C{<tag>n1..nN} and C{<tag>hub}: node I{i} has a cluster
    address C{198.19.<net>.i} on the hub's bridge and a client address
    C{198.18.<net>.4i+2}, reached from the test at C{198.18.<net>.4i+1}.
    """

    def __init__(self, count: int) -> None:
        self.tag = f"vq{os.getpid() % 100000}"
        self.net = random.randrange(1, 255)
        self.count = count
        self.namespaces = [f"{self.tag}n{i}" for i in range(1, count + 1)]
        self.hub = f"{self.tag}hub"

    def ip(self, *args: str, netns: str | None = None) -> None:
        """Run C{ip args} (in C{netns}); raise on failure."""
        argv = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
        done = subprocess.run(argv, capture_output=True, timeout=10)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.decode().strip()}")

    def clusterAddress(self, i: int) -> str:
        return f"198.19.{self.net}.{i}"

    def clientAddress(self, i: int) -> str:
        return f"198.18.{self.net}.{4 * i + 2}"

    def create(self) -> None:
        """Make the namespaces, the bridge and the links."""
        self.ip("netns", "add", self.hub)
        self.ip("link", "add", "br0", "type", "bridge", netns=self.hub)
        self.ip("link", "set", "br0", "up", netns=self.hub)
        for i, ns in enumerate(self.namespaces, 1):
            self.ip("netns", "add", ns)
            self.ip("link", "set", "lo", "up", netns=ns)
            # Cluster link: <tag>c<i> in the node's namespace, <tag>b<i> on the bridge.
            cluster, port = f"{self.tag}c{i}", f"{self.tag}b{i}"
            self.ip("link", "add", cluster, "type", "veth", "peer", "name", port)
            self.ip("link", "set", cluster, "netns", ns)
            self.ip("link", "set", port, "netns", self.hub)
            self.ip("link", "set", port, "master", "br0", netns=self.hub)
            self.ip("link", "set", port, "up", netns=self.hub)
            self.ip("addr", "add", f"{self.clusterAddress(i)}/24", "dev", cluster, netns=ns)
            self.ip("link", "set", cluster, "up", netns=ns)
            # Client link: <tag>h<i> here, <tag>m<i> in the node's namespace.
            here, there = f"{self.tag}h{i}", f"{self.tag}m{i}"
            self.ip("link", "add", here, "type", "veth", "peer", "name", there)
            self.ip("link", "set", there, "netns", ns)
            self.ip("addr", "add", f"198.18.{self.net}.{4 * i + 1}/30", "dev", here)
            self.ip("link", "set", here, "up")
            self.ip("addr", "add", f"{self.clientAddress(i)}/30", "dev", there, netns=ns)
            self.ip("link", "set", there, "up", netns=ns)

    def destroy(self) -> None:
        """Remove every namespace (their links go with them)."""
        for ns in [*self.namespaces, self.hub]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def cut(self, i: int) -> None:
        """Node I{i}'s port on the bridge goes down: it is cut off from the others."""
        self.ip("link", "set", f"{self.tag}b{i}", "down", netns=self.hub)

    def heal(self, i: int) -> None:
        """Node I{i}'s port on the bridge is back."""
        self.ip("link", "set", f"{self.tag}b{i}", "up", netns=self.hub)


class PartitionTests(SynchronousTestCase):
    """A real partition between live nodes, conflicting changes, heal, convergence."""

    def setUp(self) -> None:
        _requireNamespaces()
        self.network = network = Network(3)
        self.addCleanup(network.destroy)
        try:
            network.create()
        except RuntimeError as error:
            if os.environ.get("CI"):
                raise
            raise SkipTest(f"cannot make network namespaces here: {error}") from None
        base = self.mktemp()
        cookie = "netsplit-partition-test-cookie"
        self.names = [f"p{i}@{network.clusterAddress(i)}" for i in (1, 2, 3)]
        self.nodes: list[NodeProcess] = []
        for i, name in enumerate(self.names, 1):
            node = NodeProcess(
                os.path.join(base, f"p{i}"),
                [
                    f"nodename = {name}",
                    f"distributed_cookie = {cookie}",
                    # Every namespace is a host of its own: epmd on 4369.
                    "erlang.epmd.mode = auto",
                    f"listener.vmq.clustering = {network.clusterAddress(i)}:44053",
                    f"netsplit_detection_time = {int(PARTITION_DETECTION * 1000)}",
                    *FLAGS_ON,
                ],
                port=1883,
                host=network.clientAddress(i),
                prefix=["ip", "netns", "exec", network.namespaces[i - 1]],
            )
            self.nodes.append(node)
            self.addCleanup(node.stop)
        for node in self.nodes:
            node.start()
        for node in self.nodes[1:]:
            self.assertEqual(
                (0, "Done\n", ""),
                vmqAdmin(node, "cluster", "join", f"discovery-node={self.names[0]}"),
            )
        everyone = dict.fromkeys(self.names, True)
        for node in (self.nodes[0], self.nodes[2]):
            waitFor(lambda node=node: clusterStatus(node) == everyone, 15, "all running")

    def subscriber(self, node: NodeProcess, clientId: str, topicFilter: str) -> RawClient:
        client = subscribed(node, clientId, topicFilter)
        self.addCleanup(client.close)
        return client

    def test_partitionConflictsHeal(self) -> None:
        """
        Node 3 is cut off from nodes 1 and 2; both sides detect it; both
        sides change subscriptions and retained messages in conflicting
        ways; after the heal every node routes by the merged state and the
        replicas are identical.
        """
        p1, p2, p3 = self.nodes
        name1, name2, name3 = self.names

        # Before: routes across the cluster work; two retained messages everywhere.
        before = self.subscriber(p1, "before", "pre/#")
        waitFor(
            lambda: publishOnce(p3, "pre/x", b"probe") is None
            and bool(before.waitMessage(0.3)),
            15,
            "p3 routes to p1",
            step=0,
        )
        publishOnce(p1, "conf/d", b"base", retain=True)
        publishOnce(p1, "conf/e", b"base", retain=True)
        waitFor(
            lambda: retained(p3.host, p3.port, "conf/#") == {"conf/d": b"base", "conf/e": b"base"},
            10,
            "retained on p3",
        )
        u3 = self.subscriber(p3, "u3", "gone/#")

        # Cut node 3 off; both sides see it.
        self.network.cut(3)
        for node, expected in (
            (p1, {name1: True, name2: True, name3: False}),
            (p3, {name1: False, name2: False, name3: True}),
        ):
            waitFor(
                lambda node=node, expected=expected: clusterStatus(node) == expected,
                PARTITION_DETECTION + 5,
                "split detected",
            )
        # A real partition: p3's publishes do not reach p1 any more.
        publishOnce(p3, "pre/x", b"during")
        self.assertEqual([], before.collect(1.0))

        # Conflicting changes on both sides (later writes win).
        s1 = self.subscriber(p1, "s1", "split/one/#")
        s3 = self.subscriber(p3, "s3", "split/three/#")
        # The same client id on both sides: on p1 subscribed then gone
        # (clean session), then on p3, later: p3's subscription wins.
        # (Waiting for the node to close the connection orders the writes.)
        subscribed(p1, "roamer", "roam/one").disconnect(wait=5)
        time.sleep(0.05)
        roamer = self.subscriber(p3, "roamer", "roam/three")
        # And the other way round.
        subscribed(p3, "roamer2", "roam2/three").disconnect(wait=5)
        time.sleep(0.05)
        roamer2 = self.subscriber(p1, "roamer2", "roam2/one")
        # u3 (p3) swaps its subscription.
        u3.unsubscribe(2, "gone/#")
        self.assertEqual(UNSUBACK, u3.expect()[0] & 0xF0)
        self.assertEqual([1], u3.subscribeAck(3, "kept/#"))
        # Retained: written on both sides; deleted on one; deleted then rewritten.
        publishOnce(p1, "conf/r", b"one", retain=True)
        publishOnce(p3, "conf/e", b"", retain=True)
        time.sleep(0.05)
        publishOnce(p3, "conf/r", b"three", retain=True)
        publishOnce(p1, "conf/d", b"", retain=True)
        publishOnce(p1, "conf/e", b"one-again", retain=True)
        self.assertNotEqual(metadata(p1), metadata(p3))

        # Heal; every node must converge.
        healed = time.monotonic()
        self.network.heal(3)
        targets = [
            (s1, "split/one/"),
            (s3, "split/three/"),
            (roamer, "roam/three"),
            (roamer2, "roam2/one"),
            (u3, "kept/"),
        ]
        # Every node publishes to every subscriber's topic until each one
        # got a message from each node.
        pending = {(node.host, topic) for node in self.nodes for _, topic in targets}
        probe = 0

        def routedEverywhere() -> bool:
            nonlocal probe
            for node in self.nodes:
                for _, topic in targets:
                    if (node.host, topic) in pending:
                        probe += 1
                        full = topic + "x" if topic.endswith("/") else topic
                        publishOnce(node, full, f"{node.host} {probe}".encode())
            time.sleep(0.3)
            for client, topic in targets:
                for message in client.collect(0.01):
                    pending.discard((message.payload.decode().split()[0], topic))
            return not pending

        try:
            waitFor(routedEverywhere, CONVERGENCE, "routed by the merged state", step=0)
        except AssertionError as error:
            raise AssertionError(f"{error}; not routed (from, to): {sorted(pending)}") from None
        routedAfter = time.monotonic() - healed
        waitFor(
            lambda: allConverged(self.nodes),
            CONVERGENCE,
            "metadata replicas identical",
            step=0.1,
        )
        convergedAfter = time.monotonic() - healed
        expected = {"conf/r": b"three", "conf/e": b"one-again"}
        for node in self.nodes:
            self.assertEqual(expected, retained(node.host, node.port, "conf/#"), node.host)
        everyone = dict.fromkeys(self.names, True)
        for node in self.nodes:
            self.assertEqual(everyone, clusterStatus(node))
        self.assertLess(convergedAfter, CONVERGENCE)
        # The figures, for docs/performance.md (printed by trial).
        print(
            f"partition healed: routed after {routedAfter:.1f}s, "
            f"replicas identical after {convergedAfter:.1f}s",
            end=" ",
        )
