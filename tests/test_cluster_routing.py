"""
Cluster-wide routing (L{vernemq.cluster.routing}), in memory and
deterministic: several brokers on fake clocks, their metadata stores on a
L{MemoryNetwork}, and their data channels replaced by a queue that carries
every item as ETF bytes (so what crosses is proven encodable).
"""

from __future__ import annotations

from random import Random
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import FakeClient, Harness
from vernemq.broker.message import Message
from vernemq.cluster.datachannel import PeerAddress
from vernemq.cluster.dataframes import Item, decode_items
from vernemq.cluster.metadata.store import MergeReport, MetadataStore
from vernemq.cluster.metadata.testing import MemoryNetwork
from vernemq.cluster.routing import (
    RETAIN,
    SUBSCRIBER,
    ClusterRouter,
    properties_from_term,
    properties_to_term,
)
from vernemq.cluster.service import dataAddressResolver, describeMerge
from vernemq.cluster.transport import METADATA_MAILBOX
from vernemq.config import config_from_text
from vernemq.dist.etf import Atom, decode, encode
from vernemq.mqtt.packets import Publish
from vernemq.node import makeNodeService


class RoutingNode:
    """One broker with its store and router."""

    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.name = name
        self.cluster = cluster
        self.harness = Harness()
        self.broker = self.harness.broker
        self.store = MetadataStore(
            name,
            cluster.metadata.attach(name, self._receive),
            self.harness.clock.seconds,
            Random(1),
        )
        self.router = ClusterRouter(
            name, self.broker, self.store, self._send, self.harness.clock.seconds
        )
        self.sent: list[tuple[str, Item]] = []

    def _receive(self, peer: str, message: Any) -> None:
        self.store.receive(peer, message)

    def _send(self, peer: str, item: Item) -> bool:
        self.sent.append((peer, item))
        self.cluster.data.append((self.name, peer, encode(item[1]), item[0]))
        return True

    def client(self, client_id: str, level: int = 4, **kw: Any) -> FakeClient:
        """A connected client on this node."""
        return self.harness.connected(client_id, level, **kw)


class FakeCluster:
    """Nodes, the metadata network and the data-channel queue."""

    def __init__(self, *names: str) -> None:
        self.metadata = MemoryNetwork(Random(0))
        self.data: list[tuple[str, str, bytes, str]] = []
        self.nodes = {name: RoutingNode(self, name) for name in names}

    def __getitem__(self, name: str) -> RoutingNode:
        return self.nodes[name]

    def form(self, *names: str) -> None:
        """Make C{names} (default: every node) the members, and start routing."""
        members = list(names or self.nodes)
        for name in members:
            node = self.nodes[name]
            node.store.set_members(members)
            node.router.start([m for m in members if m != name])
        self.settle()

    def settle(self) -> None:
        """Deliver metadata and data items until nothing moves."""
        for _ in range(100):
            for node in self.nodes.values():
                node.store.flush()
            moved = self.metadata.deliver()
            data, self.data = self.data, []
            for source, destination, payload, tag in data:
                # Through the data channel's decoder, as the service wires it.
                router = self.nodes[destination].router
                body = tag.encode("ascii") + len(payload).to_bytes(4, "big") + payload
                for item in decode_items(body, plain=router.plain_message).items:
                    router.on_item(source, item)
            for node in self.nodes.values():
                node.harness.clock.advance(0)
            if not moved and not data and not self.metadata.queue:
                return
        raise AssertionError("the cluster did not settle")


def payloads(client: FakeClient) -> list[tuple[str, bytes]]:
    """The (topic, payload) of every PUBLISH the client received."""
    return [(p.topic, p.payload) for p in client.publishes()]


class RoutingTests(SynchronousTestCase):
    """Publishes reach subscribers on other nodes exactly once."""

    def setUp(self) -> None:
        self.cluster = FakeCluster("a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1")
        self.a, self.b, self.c = (self.cluster[n] for n in sorted(self.cluster.nodes))
        self.cluster.form()

    def test_subscriptionReplicated(self) -> None:
        """A local subscription is written with its node; others index it."""
        sub = self.a.client("s1")
        sub.subscribe(("x/+", 1))
        self.cluster.settle()
        for node in (self.a, self.b, self.c):
            self.assertEqual(
                node.store.get(SUBSCRIBER, (b"", b"s1")), (Atom("a@127.0.0.1"), [(b"x/+", 1)])
            )
        self.assertEqual(self.c.router.remote_nodes("", "x/1"), ["a@127.0.0.1"])
        self.assertEqual(self.a.router.remote_nodes("", "x/1"), [])

    def test_publishOnOtherNode(self) -> None:
        """Subscribe on A, publish on C: delivered once, one item sent."""
        sub = self.a.client("s1")
        sub.subscribe("t/#")
        self.cluster.settle()
        pub = self.c.client("p1")
        pub.publish("t/1", b"hello")
        self.cluster.settle()
        self.assertEqual(payloads(sub), [("t/1", b"hello")])
        self.assertEqual([peer for peer, _ in self.c.sent], ["a@127.0.0.1"])
        self.assertEqual(self.a.router.counters["received"], 1)

    def test_oneCopyPerNode(self) -> None:
        """
        Three matching subscriptions on A (two overlapping filters of one
        client, another client) and one on B: one item to each node, each
        client gets the message once.
        """
        s1 = self.a.client("s1")
        s1.subscribe("t/#", "t/+")
        s2 = self.a.client("s2")
        s2.subscribe("t/1")
        s3 = self.b.client("s3")
        s3.subscribe("#")
        self.cluster.settle()
        self.c.client("p").publish("t/1", b"m")
        self.cluster.settle()
        self.assertEqual(sorted(peer for peer, _ in self.c.sent), ["a@127.0.0.1", "b@127.0.0.1"])
        for client in (s1, s2, s3):
            self.assertEqual(payloads(client), [("t/1", b"m")])

    def test_localAndRemote(self) -> None:
        """A subscriber on the publisher's node and one elsewhere; never re-forwarded."""
        local = self.a.client("l")
        local.subscribe("t")
        remote = self.b.client("r")
        remote.subscribe("t")
        self.cluster.settle()
        self.a.client("p").publish("t", b"m")
        self.cluster.settle()
        self.assertEqual(payloads(local), [("t", b"m")])
        self.assertEqual(payloads(remote), [("t", b"m")])
        self.assertEqual([peer for peer, _ in self.a.sent], ["b@127.0.0.1"])
        self.assertEqual(self.b.sent, [])
        self.assertEqual(self.c.sent, [])

    def test_noMatchNoItem(self) -> None:
        """A publish nobody elsewhere wants sends nothing."""
        self.a.client("s").subscribe("other")
        self.cluster.settle()
        self.c.client("p").publish("t", b"m")
        self.cluster.settle()
        self.assertEqual(self.c.sent, [])

    def test_unsubscribe(self) -> None:
        """After UNSUBSCRIBE of the last filter the entry is deleted everywhere."""
        sub = self.a.client("s")
        sub.subscribe("t", "u")
        self.cluster.settle()
        sub.unsubscribe("t")
        self.cluster.settle()
        self.assertEqual(self.c.router.remote_nodes("", "t"), [])
        self.assertEqual(self.c.router.remote_nodes("", "u"), ["a@127.0.0.1"])
        sub.unsubscribe("u")
        self.cluster.settle()
        self.assertIsNone(self.c.store.get(SUBSCRIBER, (b"", b"s")))
        self.c.client("p").publish("u", b"m")
        self.cluster.settle()
        self.assertEqual(self.c.sent, [])

    def test_sessionEnds(self) -> None:
        """A clean session that disconnects takes its subscriptions with it."""
        sub = self.a.client("s")
        sub.subscribe("t")
        self.cluster.settle()
        sub.disconnect()
        self.cluster.settle()
        self.assertEqual(self.b.router.remote_nodes("", "t"), [])
        self.assertEqual(list(self.b.store.items(SUBSCRIBER)), [])

    def test_sharedFilterCounted(self) -> None:
        """Two clients of one node with one filter: one trie entry, refcounted."""
        s1 = self.a.client("s1")
        s1.subscribe("t")
        s2 = self.a.client("s2")
        s2.subscribe("t")
        self.cluster.settle()
        s1.unsubscribe("t")
        self.cluster.settle()
        self.assertEqual(self.c.router.remote_nodes("", "t"), ["a@127.0.0.1"])
        s2.unsubscribe("t")
        self.cluster.settle()
        self.assertEqual(self.c.router.remote_nodes("", "t"), [])

    def test_mountpointsIsolated(self) -> None:
        """A subscription under one mountpoint does not attract another's publishes."""
        self.b.broker.topics("mp1")
        self.a.client("s").subscribe("t")
        self.cluster.settle()
        self.assertEqual(self.b.router.remote_nodes("mp1", "t"), [])
        self.assertEqual(self.b.router.remote_nodes("", "t"), ["a@127.0.0.1"])

    def test_qosAndProperties(self) -> None:
        """QoS 1 and MQTT 5.0 properties cross the data channel."""
        sub = self.a.client("s", level=5)
        sub.subscribe(("t", 1))
        self.cluster.settle()
        pub = self.c.client("p", level=5)
        pub.publish(
            "t",
            b"m",
            qos=1,
            content_type="text/plain",
            user_property=[("k", "v")],
            correlation_data=b"\x01",
        )
        self.cluster.settle()
        [received] = sub.publishes()
        self.assertEqual(received.qos, 1)
        self.assertEqual(received.properties["content_type"], "text/plain")
        self.assertEqual(received.properties["user_property"], [("k", "v")])
        self.assertEqual(received.properties["correlation_data"], b"\x01")

    def test_messageExpiryCrosses(self) -> None:
        """The remaining expiry interval travels as VerneMQ's expire_after."""
        sub = self.a.client("s", level=5)
        sub.subscribe(("t", 1))
        self.cluster.settle()
        self.c.client("p", level=5).publish("t", b"m", qos=1, message_expiry_interval=60)
        self.cluster.settle()
        [received] = sub.publishes()
        self.assertLessEqual(received.properties["message_expiry_interval"], 60)
        [(_, (_, record))] = self.c.sent
        self.assertEqual(record[11], (Atom("expire_after"), 60))

    def test_nonMemberIgnored(self) -> None:
        """Entries of a node that is no longer a peer attract nothing."""
        self.a.client("s").subscribe("t")
        self.cluster.settle()
        self.c.router.set_peers(["b@127.0.0.1"])
        self.c.client("p").publish("t", b"m")
        self.cluster.settle()
        self.assertEqual(self.c.sent, [])

    def test_badItem(self) -> None:
        """A malformed or unknown item is counted and dropped."""
        self.a.router.on_item("b@127.0.0.1", ("msg", (Atom("nope"),)))
        self.a.router.on_item("b@127.0.0.1", ("enq", ()))
        self.assertEqual(self.a.router.counters["bad_items"], 2)
        self.flushLoggedErrors()


class SharedSubscriptionTests(SynchronousTestCase):
    """Shared subscription groups span the cluster."""

    def setUp(self) -> None:
        self.cluster = FakeCluster("a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1")
        self.a, self.b, self.c = (self.cluster[n] for n in sorted(self.cluster.nodes))
        self.cluster.form()

    def test_remoteMembersJoinGroups(self) -> None:
        """Members on A and B are one group on C; not in the node trie."""
        self.a.client("m1").subscribe("$share/g/t")
        self.b.client("m2").subscribe("$share/g/t")
        self.cluster.settle()
        group = self.c.broker.topics("").shared.get("g", "t")
        assert group is not None
        self.assertEqual(sorted(m.sid[1] for m in group.members), ["m1", "m2"])
        self.assertEqual(self.c.router.remote_nodes("", "t"), [])
        group_a = self.a.broker.topics("").shared.get("g", "t")
        assert group_a is not None
        self.assertEqual(len(group_a.members), 2)

    def test_oneMemberPerMessage(self) -> None:
        """Publishes on C are spread over members on A and B, each once."""
        m1 = self.a.client("m1")
        m1.subscribe(("$share/g/t", 1))
        m2 = self.b.client("m2")
        m2.subscribe(("$share/g/t", 1))
        self.cluster.settle()
        pub = self.c.client("p")
        for i in range(40):
            # QoS 1 to at most 20 in flight per member (nothing acks here).
            pub.publish("t", str(i).encode(), qos=1 if i < 20 else 0)
        self.cluster.settle()
        got1 = [p.payload for p in m1.publishes()]
        got2 = [p.payload for p in m2.publishes()]
        self.assertEqual(sorted(got1 + got2, key=int), [str(i).encode() for i in range(40)])
        self.assertTrue(got1 and got2, (got1, got2))
        self.assertEqual(self.c.router.counters["enqueued"], 40)
        self.assertEqual(self.c.router.counters["forwarded"], 0)

    def test_preferLocal(self) -> None:
        """The default policy keeps the message on the publisher's node."""
        local = self.c.client("local")
        local.subscribe("$share/g/t")
        remote = self.a.client("remote")
        remote.subscribe("$share/g/t")
        self.cluster.settle()
        pub = self.c.client("p")
        for _ in range(10):
            pub.publish("t", b"m")
        self.cluster.settle()
        self.assertEqual(len(local.publishes()), 10)
        self.assertEqual(remote.publishes(), [])

    def test_groupNotFedTwice(self) -> None:
        """
        A plain subscriber and a group member on A: a publish on C is
        forwarded once for the plain one, and the group gets it once.
        """
        plain = self.a.client("plain")
        plain.subscribe("t")
        member = self.a.client("member")
        member.subscribe("$share/g/t")
        self.cluster.settle()
        self.c.client("p").publish("t", b"m")
        self.cluster.settle()
        self.assertEqual(payloads(plain), [("t", b"m")])
        self.assertEqual(payloads(member), [("t", b"m")])

    def test_memberGoneFallsBackLocally(self) -> None:
        """An enq for a session that left goes to another member of that node."""
        m1 = self.a.client("m1")
        m1.subscribe("$share/g/t")
        m2 = self.a.client("m2")
        m2.subscribe("$share/g/t")
        self.cluster.settle()
        group = self.c.broker.topics("").shared.get("g", "t")
        assert group is not None
        gone = next(m for m in group.members if m.sid[1] == "m1")
        m1.unsubscribe("$share/g/t")  # not settled: C still has it
        gone.deliver(Message("t", b"late"), 0, False, ())
        self.cluster.settle()
        self.assertEqual(payloads(m2), [("t", b"late")])

    def test_peerGoneLeavesGroups(self) -> None:
        """Members of a node that is no longer a peer leave the groups."""
        self.a.client("m1").subscribe("$share/g/t")
        self.cluster.settle()
        self.c.router.set_peers(["b@127.0.0.1"])
        self.assertIsNone(self.c.broker.topics("").shared.get("g", "t"))
        self.c.router.set_peers(["a@127.0.0.1", "b@127.0.0.1"])
        self.assertIsNotNone(self.c.broker.topics("").shared.get("g", "t"))

    def test_unsubscribeLeaves(self) -> None:
        """A member that unsubscribes leaves the group on every node."""
        m1 = self.a.client("m1")
        m1.subscribe("$share/g/t")
        self.cluster.settle()
        m1.unsubscribe("$share/g/t")
        self.cluster.settle()
        self.assertIsNone(self.c.broker.topics("").shared.get("g", "t"))
        self.assertEqual(self.c.router.remote_members, {})


class RetainedTests(SynchronousTestCase):
    """Retained messages are replicated through the metadata store."""

    def setUp(self) -> None:
        self.cluster = FakeCluster("a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1")
        self.a, self.b, self.c = (self.cluster[n] for n in sorted(self.cluster.nodes))
        self.cluster.form()

    def test_retainedSeenEverywhere(self) -> None:
        """Retained on B; later subscribers on A and C get it."""
        self.b.client("p").publish("r/1", b"kept", qos=1, retain=True)
        self.cluster.settle()
        for node in (self.a, self.c):
            sub = node.client("s")
            sub.subscribe(("r/#", 1))
            [pub] = [p for p in sub.pending if isinstance(p, Publish)]
            self.assertEqual((pub.topic, pub.payload, pub.retain), ("r/1", b"kept", True))
        self.assertEqual(self.a.store.get(RETAIN, (b"", b"r/1"))[0], b"kept")

    def test_retainedCleared(self) -> None:
        """An empty retained payload clears it on every node."""
        pub = self.b.client("p")
        pub.publish("r", b"kept", retain=True)
        self.cluster.settle()
        pub.publish("r", b"", retain=True)
        self.cluster.settle()
        for node in (self.a, self.b, self.c):
            self.assertIsNone(node.broker.topics("").retained.get("r"))

    def test_receivedNotRetainedTwice(self) -> None:
        """
        A retained publish routed to a node with a subscriber is delivered
        there, and its retained copy comes from the store only.
        """
        sub = self.a.client("s")
        sub.subscribe("r")
        self.cluster.settle()
        self.b.client("p").publish("r", b"v1", retain=True)
        self.cluster.settle()
        self.assertEqual(payloads(sub), [("r", b"v1")])
        self.assertEqual(self.a.broker.topics("").retained.get("r").payload, b"v1")

    def test_lastWriterWins(self) -> None:
        """Two nodes retain on one topic: every node ends with the later one."""
        self.a.client("p1").publish("r", b"first", retain=True)
        for node in self.cluster.nodes.values():
            node.harness.clock.advance(1)
        self.c.client("p2").publish("r", b"second", retain=True)
        self.cluster.settle()
        for node in (self.a, self.b, self.c):
            self.assertEqual(node.broker.topics("").retained.get("r").payload, b"second")


class SingleNodeTests(SynchronousTestCase):
    """Without peers the router is never called; joining reconciles."""

    def setUp(self) -> None:
        self.cluster = FakeCluster("a@127.0.0.1", "b@127.0.0.1")
        self.a, self.b = (self.cluster[n] for n in sorted(self.cluster.nodes))
        for node in (self.a, self.b):
            node.router.start([])

    def test_aloneDoesNothing(self) -> None:
        """Alone: no store write, no forward; the flag is off."""
        self.assertFalse(self.a.broker.clustered)

        def boom(*args: Any) -> int:
            raise AssertionError("cluster work on a single node")

        self.a.router.forward = boom  # type: ignore[method-assign]
        self.a.router.subscriptions_changed = boom  # type: ignore[method-assign]
        sub = self.a.client("s")
        sub.subscribe("t")
        self.a.client("p").publish("t", b"m", retain=True)
        self.assertEqual(payloads(sub), [("t", b"m")])
        self.assertEqual(self.a.store.snapshot(), {})

    def test_joinReconciles(self) -> None:
        """A node with history brings its subscriptions and retained messages in."""
        sub = self.a.client("s")
        sub.subscribe("t/#")
        self.a.client("p").publish("r", b"kept", retain=True)
        self.cluster.form()
        self.assertTrue(self.a.broker.clustered)
        self.assertEqual(self.b.router.remote_nodes("", "t/x"), ["a@127.0.0.1"])
        self.assertEqual(self.b.broker.topics("").retained.get("r").payload, b"kept")
        self.b.client("p").publish("t/x", b"m")
        self.cluster.settle()
        self.assertEqual(payloads(sub), [("t/x", b"m")])

    def test_staleOwnEntriesDeleted(self) -> None:
        """
        Entries this node wrote in an earlier run (its sessions are gone)
        are deleted when it starts clustered.
        """
        self.a.store.put(SUBSCRIBER, (b"", b"old"), (Atom("a@127.0.0.1"), [(b"t", 0)]))
        self.b.client("bs").subscribe("u")
        self.cluster.form()
        for node in (self.a, self.b):
            self.assertIsNone(node.store.get(SUBSCRIBER, (b"", b"old")))
        self.assertEqual(self.a.router.remote_nodes("", "u"), ["b@127.0.0.1"])

    def test_lastPeerLeaves(self) -> None:
        """When the last peer goes the node routes locally only again."""
        self.cluster.form()
        self.a.router.set_peers([])
        self.assertFalse(self.a.broker.clustered)

    def test_stop(self) -> None:
        """Stopping the router detaches it from the broker."""
        self.cluster.form()
        self.a.router.stop()
        self.assertFalse(self.a.broker.clustered)
        self.assertIsNone(self.a.broker.cluster_router)


class PropertiesTests(SynchronousTestCase):
    """MQTT 5.0 properties in VerneMQ's map form."""

    def test_roundTrip(self) -> None:
        """Every forwarded property survives; per-hop ones are dropped."""
        props = {
            "content_type": "a/b",
            "response_topic": "r",
            "correlation_data": b"\x00",
            "user_property": [("k", "v"), ("k", "w")],
            "payload_format_indicator": 1,
            "message_expiry_interval": 5,
            "topic_alias": 3,
            "subscription_identifier": [1],
        }
        term = decode(encode(properties_to_term(props)))
        self.assertIn(Atom("p_content_type"), term)
        back = properties_from_term(term)
        expected = dict(props)
        del expected["topic_alias"], expected["subscription_identifier"]
        self.assertEqual(back, expected)

    def test_unknownIgnored(self) -> None:
        """Keys that are not C{p_*} atoms are skipped."""
        self.assertEqual(properties_from_term({Atom("other"): 1, 5: 2}), {})

    def test_messageProperties(self) -> None:
        """A message's own properties convert (smoke test for the record)."""
        msg = Message("t", b"p", 0, False, {"content_type": "x"})
        self.assertEqual(properties_to_term(msg.properties), {Atom("p_content_type"): b"x"})


class CompositionTests(SynchronousTestCase):
    """The node composes the store, the data channel and the router."""

    def node(self, extra: str = "") -> Any:
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.vmq.clustering = 0.0.0.0:44053\n"
            f"platform_data_dir = {self.mktemp()}\n"
            "nodename = n1@127.0.0.1\n" + extra
        )
        reactor = MemoryReactorClock()
        node = makeNodeService(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        return node, reactor

    def test_composed(self) -> None:
        """Alone: the router is attached, the flag off, the data port bound."""
        node, reactor = self.node()
        cluster = node.cluster
        self.assertIs(node.broker.cluster_router, cluster.router)
        self.assertFalse(node.broker.clustered)
        self.assertIn(44053, [port for port, *_ in reactor.tcpServers])
        self.assertIsNotNone(node.dist.whereis(METADATA_MAILBOX))

    def test_membersFeedEverything(self) -> None:
        """A membership change reaches the store, the data channel and the router."""
        node, _ = self.node()
        cluster = node.cluster
        cluster.membership.add("n2@127.0.0.1")
        self.assertEqual(cluster.datachannel.peers(), ["n2@127.0.0.1"])
        self.assertEqual(
            cluster.metadata.store.members, frozenset({"n1@127.0.0.1", "n2@127.0.0.1"})
        )
        self.assertTrue(node.broker.clustered)
        cluster.membership.remove("n2@127.0.0.1")
        self.assertEqual(cluster.datachannel.peers(), [])
        self.assertFalse(node.broker.clustered)

    def test_dataAddressExported(self) -> None:
        """vmq:cluster_data_address() answers the bound data listener."""
        node, _ = self.node()
        result = self.successResultOf(
            node.cluster.transport.call("n1@127.0.0.1", "cluster_data_address", [], 1.0)
        )
        self.assertEqual(result, (Atom("tcp"), b"0.0.0.0", 44053))


class ResolverTests(SynchronousTestCase):
    """The data-address probe."""

    def resolve(self, answer: Any, peerHost: str | None) -> Any:
        class Transport:
            def call(self, node: str, function: str, args: list[Any], timeout: float) -> Any:
                assert function == "cluster_data_address"
                return succeed(answer)

            def peerHost(self, node: str) -> str | None:
                return peerHost

        resolver = dataAddressResolver(Transport(), 1.0)  # type: ignore[arg-type]
        return self.successResultOf(resolver("n2@10.0.0.2"))

    def test_specificAddress(self) -> None:
        """A specific bind address is used as answered."""
        self.assertEqual(
            self.resolve((Atom("tcp"), b"10.1.1.1", 44053), "10.0.0.9"),
            PeerAddress("10.1.1.1", 44053, False),
        )

    def test_wildcardReplaced(self) -> None:
        """0.0.0.0 becomes the address the distribution reached the peer at."""
        self.assertEqual(
            self.resolve((Atom("tcp"), b"0.0.0.0", 44053), "10.0.0.9"),
            PeerAddress("10.0.0.9", 44053, False),
        )

    def test_wildcardFallsBackToName(self) -> None:
        """Without a connection, the host part of the node name."""
        self.assertEqual(
            self.resolve((Atom("tcp"), b"::", 44053), None), PeerAddress("10.0.0.2", 44053, False)
        )

    def test_noListener(self) -> None:
        """A peer without a data listener answers undefined: None."""
        self.assertIsNone(self.resolve(Atom("undefined"), None))


class DescribeMergeTests(SynchronousTestCase):
    """The join output's merge line."""

    def test_inSync(self) -> None:
        """Equal stores: nothing to say."""
        self.assertIsNone(describeMerge(MergeReport("n2@h")))

    def test_merged(self) -> None:
        """Counts are reported."""
        report = MergeReport("n2@h", join=True, received=3, replaced=1, kept=2, sent=4)
        self.assertEqual(
            describeMerge(report),
            "metadata merged with n2@h: 3 entries received, 1 replaced by newer ones, "
            "2 kept (ours newer), 4 sent",
        )
