# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.cluster.durable_config}: durable config overrides in
the replicated metadata store, applied to the broker.

Multi-node tests run stores on a L{MemoryNetwork} (every message through
the ETF codec), each node with its own broker from L{Harness}.
"""

from __future__ import annotations

from random import Random
from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import Harness
from tests.clusterhelpers import coroutine, run
from vernemq.broker.shared import POLICIES
from vernemq.cluster.durable_config import (
    CONFIG,
    DurableConfig,
    DurableValue,
    from_term,
    to_term,
)
from vernemq.cluster.metadata import MetadataService, MetadataStore, SqliteMetadataStorage
from vernemq.cluster.metadata.testing import MemoryNetwork
from vernemq.config import config_from_text
from vernemq.dist.etf import Atom
from vernemq.mqtt.packets import ConnAck
from vernemq.node import makeNodeService

APP = "vmq_server"
NAMES = ("a@h", "b@h", "c@h")


class Node:
    """One node: a store on the shared network, a broker, its durable config."""

    def __init__(self, network: MemoryNetwork, name: str, text: str | None = None) -> None:
        self.harness = Harness() if text is None else Harness(text)
        self.broker = self.harness.broker
        self.store = MetadataStore(name, network.transport(name), lambda: 1000.0, Random(0))
        network.attach(name, self.store.receive)
        self.durable = DurableConfig(self.store, self.broker)
        self.durable.startService()


class DurableConfigTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.nodes = {name: Node(self.network, name) for name in NAMES}
        for node in self.nodes.values():
            node.store.set_members(NAMES)
        self.a, self.b, self.c = (self.nodes[n] for n in NAMES)
        self.events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def sync(self) -> None:
        stores = [node.store for node in self.nodes.values()]

        def flush() -> None:
            for store in stores:
                store.flush()

        self.network.run(flush)

    def applied(self) -> list[tuple[str, str, str]]:
        """The C{(key, value, source)} of every "applied" log line so far."""
        return [
            (e["key"], e["value"], e["source"])
            for e in self.events
            if e.get("log_namespace", "").endswith("DurableConfig")
            and e.get("event_id") == "vmq.config.applied"
        ]

    def config(self, node: Node, key: str) -> Any:
        return node.broker.config[key]


class ReplicationTests(DurableConfigTestCase):
    """Values replicate; per-node values win on their node."""

    def test_setSeenOnPeer(self) -> None:
        """A global value written on a is stored, seen and applied on every node."""
        self.a.durable.set(APP, "max_inflight_messages", 5)
        self.assertEqual(5, self.config(self.a, "max_inflight_messages"))
        self.assertEqual(20, self.config(self.b, "max_inflight_messages"))
        self.sync()
        for node in self.nodes.values():
            self.assertEqual(5, node.durable.get(APP, "max_inflight_messages"))
            self.assertEqual(5, self.config(node, "max_inflight_messages"))
            self.assertEqual(5, node.broker.limits().max_inflight)
        self.assertEqual(self.b.store.get(CONFIG, (Atom(APP), Atom("max_inflight_messages"))), 5)

    def test_perNodeBeatsGlobal(self) -> None:
        """A per-node value wins over the global one on that node only."""
        self.a.durable.set(APP, "max_online_messages", 50)
        self.a.durable.set(APP, "max_online_messages", 7, node="b@h")
        self.sync()
        self.assertEqual(50, self.config(self.a, "max_online_messages"))
        self.assertEqual(7, self.config(self.b, "max_online_messages"))
        self.assertEqual(50, self.config(self.c, "max_online_messages"))
        self.assertEqual(
            DurableValue(APP, "max_online_messages", "node", "b@h", 7),
            self.b.durable.lookup(APP, "max_online_messages"),
        )
        self.assertEqual(
            DurableValue(APP, "max_online_messages", "global", None, 50),
            self.c.durable.lookup(APP, "max_online_messages"),
        )
        # The global value changes: b keeps its own.
        self.c.durable.set(APP, "max_online_messages", 60)
        self.sync()
        self.assertEqual(
            [60, 7, 60], [self.config(n, "max_online_messages") for n in self.nodes.values()]
        )
        # b's own value goes: the global one applies there too.
        self.assertTrue(self.a.durable.unset(APP, "max_online_messages", node="b@h"))
        self.assertFalse(self.a.durable.unset(APP, "max_online_messages", node="b@h"))
        self.sync()
        self.assertEqual(60, self.config(self.b, "max_online_messages"))

    def test_entries(self) -> None:
        """C{entries} lists an app's values of every node, global first."""
        self.a.durable.set(APP, "retry_interval", 30, node="b@h")
        self.a.durable.set(APP, "retry_interval", 10)
        self.a.durable.set("vmq_acl", "acl_file", "/etc/acl")
        self.sync()
        self.assertEqual(
            [
                DurableValue(APP, "retry_interval", "global", None, 10),
                DurableValue(APP, "retry_interval", "node", "b@h", 30),
            ],
            self.c.durable.entries(APP),
        )
        self.assertEqual(
            [DurableValue("vmq_acl", "acl_file", "global", None, "/etc/acl")],
            self.c.durable.entries("vmq_acl"),
        )
        self.assertEqual(3, len(self.c.durable.entries()))

    def test_resetLocalVsGlobal(self) -> None:
        """
        A local reset deletes this node's per-node values only; a global one
        the global values; other nodes' and other apps' values stay.
        """
        for node in self.nodes.values():
            node.durable.set(APP, "max_offline_messages", 11, node=node.durable.node)
        self.a.durable.set(APP, "max_offline_messages", 5)
        self.a.durable.set(APP, "retry_interval", 9)
        self.a.durable.set(APP, "retry_interval", 8, node="a@h")
        self.a.durable.set("vmq_acl", "acl_file", "/x")
        self.sync()
        self.assertEqual(
            [11, 11, 11], [self.config(n, "max_offline_messages") for n in self.nodes.values()]
        )

        # --local --key: a's own max_offline_messages only.
        self.assertEqual(
            1, self.a.durable.reset(APP, "max_offline_messages", local=True, globally=False)
        )
        self.sync()
        self.assertEqual(
            [5, 11, 11], [self.config(n, "max_offline_messages") for n in self.nodes.values()]
        )
        self.assertEqual(8, self.config(self.a, "retry_interval"))

        # --global (whole app): the global values, everywhere; per-node ones stay.
        self.assertEqual(2, self.b.durable.reset(APP, local=False, globally=True))
        self.sync()
        self.assertEqual(
            [1000, 11, 11], [self.config(n, "max_offline_messages") for n in self.nodes.values()]
        )
        self.assertEqual(
            [8, 20, 20], [self.config(n, "retry_interval") for n in self.nodes.values()]
        )
        self.assertEqual("/x", self.c.durable.get("vmq_acl", "acl_file"))

        # Both (the default): what is left of b's and the global ones.
        self.assertEqual(1, self.b.durable.reset(APP))
        self.sync()
        self.assertEqual(
            [1000, 1000, 11], [self.config(n, "max_offline_messages") for n in self.nodes.values()]
        )
        self.assertEqual(0, self.b.durable.reset(APP))

    def test_listener(self) -> None:
        """Listeners hear about changes of the value in force on their node."""
        seen: list[tuple[str, str, DurableValue | None]] = []
        cancel = self.b.durable.subscribe(lambda app, key, value: seen.append((app, key, value)))
        self.a.durable.set("myapp", "k", [1, "two"])
        self.sync()
        self.assertEqual(
            [("myapp", "k", DurableValue("myapp", "k", "global", None, [1, "two"]))], seen
        )
        del seen[:]
        self.a.durable.set("myapp", "k", 3, node="c@h")  # not b's
        self.a.durable.set("myapp", "k", [1, "two"], node="b@h")  # same value, other scope
        self.sync()
        self.assertEqual(
            [("myapp", "k", DurableValue("myapp", "k", "node", "b@h", [1, "two"]))], seen
        )
        del seen[:]
        self.a.durable.reset("myapp")
        self.a.durable.unset("myapp", "k", node="b@h")
        self.sync()
        self.assertEqual([("myapp", "k", None)], seen)
        cancel()
        self.a.durable.set("myapp", "k", 4)
        self.sync()
        self.assertEqual([("myapp", "k", None)], seen)


class ApplyTests(DurableConfigTestCase):
    """Overrides apply to the running broker, one log line per change."""

    def setUp(self) -> None:
        super().setUp()
        self.network = MemoryNetwork()
        text = "allow_anonymous = off\nlistener.tcp.default = 127.0.0.1:1883\n"
        self.nodes = {name: Node(self.network, name, text) for name in NAMES[:2]}
        for node in self.nodes.values():
            node.store.set_members(NAMES[:2])
        self.a, self.b = self.nodes["a@h"], self.nodes["b@h"]

    def connect(self, node: Node) -> int:
        """CONNECT an MQTT 3.1.1 client without credentials: its return code (5: refused)."""
        client = node.harness.client()
        ack = client.connect("anon")
        assert isinstance(ack, ConnAck)
        return ack.reason_code

    def test_allowAnonymousLive(self) -> None:
        """
        allow_anonymous set durably on a lets anonymous clients in on both
        nodes at once; one log line per node; resetting goes back to the file.
        """
        self.assertEqual(5, self.connect(self.a))
        self.a.durable.set(APP, "allow_anonymous", True)
        self.assertEqual([("allow_anonymous", "on", "durable, global")], self.applied())
        self.sync()
        self.assertEqual([("allow_anonymous", "on", "durable, global")] * 2, self.applied())
        self.assertEqual(0, self.connect(self.a))
        self.assertEqual(0, self.connect(self.b))
        # The same value again (or from another scope): nothing changes, no log.
        self.a.durable.set(APP, "allow_anonymous", "on")
        self.b.durable.set(APP, "allow_anonymous", True, node="b@h")
        self.sync()
        self.assertEqual(2, len(self.applied()))
        # Reset: back to vernemq.conf's off.
        self.a.durable.reset(APP, "allow_anonymous")
        self.sync()
        self.assertEqual(("allow_anonymous", "off", "configuration file"), self.applied()[-1])
        self.assertEqual(5, self.connect(self.a))
        self.assertEqual(0, self.connect(self.b))  # b's own value stays
        self.assertEqual({"allow_anonymous": True}, self.b.durable.overrides)
        self.assertEqual({}, self.a.durable.overrides)
        # The base configuration is untouched.
        self.assertFalse(self.a.durable.base["allow_anonymous"])  # type: ignore[index]

    def test_netsplitFlags(self) -> None:
        """The netsplit flags decide the next operation."""
        broker = self.a.broker
        self.assertFalse(broker.netsplit_allows("publish"))
        self.a.durable.set(APP, "allow_publish_during_netsplit", True)
        self.assertTrue(broker.netsplit_allows("publish"))
        self.assertFalse(broker.netsplit_allows("subscribe"))

    def test_sharedPolicy(self) -> None:
        """Existing topic trees take a new shared subscription policy."""
        topics = self.a.broker.topics("")
        self.a.durable.set(APP, "shared_subscription_policy", "random")
        self.assertIs(POLICIES["random"], topics.shared.policy)
        self.assertIs(POLICIES["random"], self.a.broker.topics("mp").shared.policy)
        self.a.durable.reset(APP)
        self.assertIs(POLICIES["prefer_local"], topics.shared.policy)

    def test_invalidValueIgnored(self) -> None:
        """
        A stored value that does not fit its key (written by a peer) is
        logged and skipped: the next scope applies.
        """
        self.a.durable.set(APP, "max_inflight_messages", 3)
        self.b.store.put(CONFIG, (Atom("a@h"), Atom(APP), Atom("max_inflight_messages")), b"x")
        self.sync()
        self.assertEqual(3, self.config(self.a, "max_inflight_messages"))
        warnings = [
            e
            for e in self.events
            if e["log_level"] is LogLevel.warn and "ignoring" in e["log_format"]
        ]
        self.assertEqual(1, len(warnings))
        self.assertEqual(
            [DurableValue(APP, "max_inflight_messages", "global", None, 3)],
            self.a.durable.entries(APP),
        )

    def test_startup(self) -> None:
        """A node whose store is loaded with values applies them when it starts."""
        self.a.durable.set(APP, "retry_interval", 7)
        self.a.durable.set(APP, "max_message_rate", 9, node="n@h")
        self.a.durable.set(APP, "max_inflight_messages", 4, node="other@h")
        rows = [
            (prefix, key, (v[0], v[1], str(v[2])), value)
            for (prefix, key), (v, value) in self.a.store.snapshot().items()
        ]
        store = MetadataStore("n@h", self.network.transport("n@h"), lambda: 1000.0, Random(0))
        store.load(rows, (0, 0))
        harness = Harness()
        durable = DurableConfig(store, harness.broker)
        before = len(self.applied())
        durable.startService()
        self.addCleanup(durable.stopService)
        self.assertEqual(7, harness.broker.config["retry_interval"])
        self.assertEqual(9, harness.broker.config["max_message_rate"])
        self.assertEqual(20, harness.broker.config["max_inflight_messages"])
        self.assertEqual(
            [
                ("max_message_rate", "9", "durable, this node"),
                ("retry_interval", "7", "durable, global"),
            ],
            self.applied()[before:],
        )
        durable.stopService()
        store.put(CONFIG, (Atom(APP), Atom("retry_interval")), 8)  # not followed any more
        self.assertEqual(7, harness.broker.config["retry_interval"])

    def test_notOverridable(self) -> None:
        """A vmq_server key that is not overridable is stored (warned), not applied."""
        self.a.durable.set(APP, "listener.tcp.default", "127.0.0.1:1")
        self.assertEqual("127.0.0.1:1", self.a.durable.get(APP, "listener.tcp.default"))
        self.assertTrue(any("not applied" in e["log_format"] for e in self.events))


class ConversionTests(SynchronousTestCase):
    """Typed values become terms that replicate unchanged, and back."""

    def test_overridable(self) -> None:
        cases = [
            ("allow_anonymous", True, Atom("true")),
            ("allow_anonymous", "off", Atom("false")),
            ("retry_interval", "1m", 60),
            ("remote_enqueue_timeout", 100, 100),
            ("max_online_messages", -1, -1),
            ("persistent_client_expiration", None, Atom("undefined")),
            ("persistent_client_expiration", "1w", 604800),
            ("max_last_will_delay", "client", Atom("undefined")),
            ("shared_subscription_policy", "local_only", Atom("local_only")),
            ("queue_type", "lifo", Atom("lifo")),
        ]
        for key, value, term in cases:
            self.assertEqual(term, to_term(APP, key, value), key)
            self.assertIs(type(term), type(to_term(APP, key, value)), key)
        self.assertEqual(True, from_term(APP, "allow_anonymous", Atom("true")))
        self.assertIsNone(from_term(APP, "persistent_client_expiration", Atom("undefined")))
        self.assertEqual("lifo", from_term(APP, "queue_type", Atom("lifo")))

    def test_refused(self) -> None:
        for key, value in [
            ("allow_anonymous", 1),
            ("allow_anonymous", "maybe"),
            ("max_inflight_messages", -1),
            ("max_inflight_messages", True),
            ("max_inflight_messages", 1.5),
            ("max_client_id_size", 0),
            ("retry_interval", None),
            ("persistent_client_expiration", -5),
            ("queue_type", "stack"),
            ("queue_type", 3),
        ]:
            self.assertRaises(ValueError, to_term, APP, key, value)
        for key, term in [
            ("allow_anonymous", b"true"),
            ("max_inflight_messages", Atom("undefined")),
            ("queue_type", b"lifo"),
            ("queue_type", Atom("stack")),
            ("max_client_id_size", 0),
        ]:
            self.assertRaises(ValueError, from_term, APP, key, term)
        self.assertRaises(TypeError, to_term, "app", "k", {1.0: 2})

    def test_generic(self) -> None:
        """Other apps' values: text as binaries, flags and None as atoms."""
        value = {Atom("a"): ("text", True, None, [1, 2.5, b"\xff"])}
        term = to_term("vmq_webhooks", "hooks", value)
        self.assertEqual(
            {Atom("a"): (b"text", Atom("true"), Atom("undefined"), [1, 2.5, b"\xff"])}, term
        )
        self.assertEqual(value, from_term("vmq_webhooks", "hooks", term))


class CompositionTests(SynchronousTestCase):
    """A node composes its durable config; a restarted node applies it at start."""

    def node(self, dataDir: str) -> Any:
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.vmq.clustering = 0.0.0.0:44053\n"
            f"platform_data_dir = {dataDir}\n"
            "nodename = n1@127.0.0.1\n"
        )
        node = makeNodeService(config, MemoryReactorClock())
        node.privilegedStartService()
        node.startService()
        return node

    def test_restart(self) -> None:
        dataDir = self.mktemp()
        node = self.node(dataDir)
        durable = node.cluster.durable_config
        self.assertIsInstance(durable, DurableConfig)
        durable.set(APP, "max_inflight_messages", 3, node="n1@127.0.0.1")
        self.assertEqual(3, node.broker.config["max_inflight_messages"])
        status, out = run(
            coroutine(
                node.cluster.admin.run(
                    ["config", "show", "app=vmq_server", "--key=max_inflight_messages"]
                )
            )
        )
        self.assertEqual("Scope: node\nValue: 3\n", out)
        self.assertEqual(0, status)
        node.stopService()
        again = self.node(dataDir)
        self.addCleanup(again.stopService)
        self.assertEqual(3, again.broker.config["max_inflight_messages"])
        self.assertEqual(
            3, again.cluster.durable_config.get(APP, "max_inflight_messages", node="n1@127.0.0.1")
        )


class StorageTests(SynchronousTestCase):
    """Through the metadata service and its SQLite file."""

    def test_persisted(self) -> None:
        path = self.mktemp() + "/meta.sqlite3"
        network = MemoryNetwork()
        reactor = MemoryReactorClock()
        store = MetadataStore("a@h", network.transport("a@h"), reactor.seconds, Random(0))
        service = MetadataService(store, SqliteMetadataStorage(path), reactor, Random(0))
        service.startService()
        DurableConfig(store).set(APP, "allow_anonymous", True)
        service.stopService()

        store = MetadataStore("a@h", network.transport("a@h"), reactor.seconds, Random(0))
        service = MetadataService(store, SqliteMetadataStorage(path), reactor, Random(0))
        harness = Harness("allow_anonymous = off\nlistener.tcp.default = 127.0.0.1:1883\n")
        durable = DurableConfig(store, harness.broker)
        service.startService()
        durable.startService()
        self.addCleanup(service.stopService)
        self.assertTrue(harness.broker.config["allow_anonymous"])
