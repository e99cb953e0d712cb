# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.cluster.metadata}: the replicated metadata store.

Every multi-node test runs several stores on one L{task.Clock} over a
L{MemoryNetwork} that encodes each message with the ETF codec and can
partition, drop and reorder.
"""

from __future__ import annotations

import os
import sqlite3
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vernemq.cluster.metadata import (
    IMetadataStorage,
    IMetadataTransport,
    MergeReport,
    MetadataService,
    MetadataStore,
    SqliteMetadataStorage,
    check_value,
)
from vernemq.cluster.metadata.testing import MemoryNetwork
from vernemq.dist.etf import Atom

SUB = (Atom("vmq"), Atom("subscriber"))
RETAIN = (Atom("vmq"), Atom("retain"))
START = 1_700_000_000.0


class Cluster:
    """Stores and their services on one clock and one memory network."""

    def __init__(
        self,
        names: list[str],
        *,
        skews: dict[str, float] | None = None,
        network: MemoryNetwork | None = None,
        storages: dict[str, Any] | None = None,
        members: list[str] | None = None,
    ) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.network = network if network is not None else MemoryNetwork(Random(7))
        self.names = list(names)
        self.stores: dict[str, MetadataStore] = {}
        self.services: dict[str, MetadataService] = {}
        for i, name in enumerate(names):
            self.add(
                name,
                skew=(skews or {}).get(name, 0.0),
                storage=(storages or {}).get(name),
                seed=i,
            )
        for store in self.stores.values():
            store.set_members(members if members is not None else names)

    def add(self, name: str, skew: float = 0.0, storage: Any = None, seed: int = 0) -> None:
        clock = self.clock
        store = MetadataStore(
            name, self.network.transport(name), lambda: clock.seconds() + skew, Random(seed)
        )
        self.network.attach(name, store.receive)
        service = MetadataService(store, storage, clock, Random(seed))
        service.startService()
        self.stores[name] = store
        self.services[name] = service

    def __getitem__(self, name: str) -> MetadataStore:
        return self.stores[name]

    def settle(self) -> None:
        """Flush and deliver until the network is quiet."""
        self.network.run(step=lambda: self.clock.advance(0))

    def sync_all(self, rounds: int = 2) -> None:
        """Every node exchanges with every other node it can reach."""
        for _ in range(rounds):
            for a in self.names:
                for b in self.names:
                    if a != b and self.network.connected(a, b):
                        self.stores[a].exchange(b)
                        self.settle()

    def snapshots(self, tombstones: bool = True) -> list[dict[Any, Any]]:
        return [self.stores[n].snapshot(tombstones) for n in self.names]

    def assertConverged(self, case: SynchronousTestCase) -> None:
        first, *rest = self.snapshots()
        for other in rest:
            case.assertEqual(first, other)
        digests = {self.stores[n].digest() for n in self.names}
        case.assertEqual(len(digests), 1)


class Recorder:
    """Collects change events."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, Any, Any]] = []

    def __call__(self, key: Any, old: Any, new: Any) -> None:
        self.events.append((key, old, new))


class InterfaceTests(SynchronousTestCase):
    """The fakes and the storage provide the interfaces they claim."""

    def test_transport(self) -> None:
        """L{MemoryNetwork} transports provide L{IMetadataTransport}."""
        self.assertTrue(verifyObject(IMetadataTransport, MemoryNetwork().transport("a")))

    def test_storage(self) -> None:
        """L{SqliteMetadataStorage} provides L{IMetadataStorage}."""
        storage = SqliteMetadataStorage(os.path.join(self.mktemp(), "m.sqlite3"))
        self.addCleanup(storage.close)
        self.assertTrue(verifyObject(IMetadataStorage, storage))


class ValueTests(SynchronousTestCase):
    """Only terms that survive an ETF round trip unchanged are stored."""

    def test_refused(self) -> None:
        """Plain text, booleans and None are refused, in values and keys."""
        store = MetadataStore("a", MemoryNetwork().transport("a"), lambda: START, Random(0))
        for bad in ["text", True, None, [b"ok", "text"], {b"k": None}, float("nan")]:
            self.assertRaises(TypeError, store.put, SUB, b"k", bad)
        self.assertRaises(TypeError, store.put, SUB, "k", b"v")
        self.assertRaises(TypeError, store.put, SUB, (b"m", [1]), b"v")
        self.assertRaises(TypeError, store.delete, ("vmq", "subscriber"), b"k")
        self.assertRaises(TypeError, check_value, {(1, 2.0): b"v"})

    def test_accepted(self) -> None:
        """Atoms, bytes, numbers, tuples, lists and dicts are stored as they are."""
        store = MetadataStore("a", MemoryNetwork().transport("a"), lambda: START, Random(0))
        value = [(Atom("a@h"), Atom("true"), [(b"t/#", 1)]), {b"x": 1.5, 2: (b"",)}, -(2**70)]
        store.put(SUB, (b"", b"client"), value)
        self.assertEqual(store.get(SUB, (b"", b"client")), value)
        self.assertEqual(list(store.items(SUB)), [((b"", b"client"), value)])


class ReplicationTests(SynchronousTestCase):
    """Writes are broadcast at once; subscribers see local and remote changes."""

    def test_broadcast(self) -> None:
        """A put on one node is on every node after one reactor turn."""
        c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, (b"", b"c1"), [(Atom("a"), [(b"x/y", 0)])])
        c.settle()
        for n in "bc":
            self.assertEqual(c[n].get(SUB, (b"", b"c1")), [(Atom("a"), [(b"x/y", 0)])])
        c.assertConverged(self)

    def test_one_message_per_peer(self) -> None:
        """Writes made in one reactor turn travel together, in batches."""
        c = Cluster(["a", "b"])
        for i in range(5000):
            c["a"].put(SUB, (b"", b"%d" % i), 1)
        c.clock.advance(0)
        self.assertEqual(len(c.network.queue), 3)  # 2000 + 2000 + 1000 entries
        c.settle()
        self.assertEqual(len(list(c["b"].items(SUB))), 5000)

    def test_events(self) -> None:
        """Subscribers get (key, old, new) for local and remote changes of their prefix."""
        c = Cluster(["a", "b"])
        on_a, on_b, other = Recorder(), Recorder(), Recorder()
        c["a"].subscribe(SUB, on_a)
        cancel = c["b"].subscribe(SUB, on_b)
        c["b"].subscribe(RETAIN, other)
        c["a"].put(SUB, b"k", b"1")
        c.settle()
        c["b"].put(SUB, b"k", b"2")
        c.settle()
        c["a"].put(SUB, b"k", b"2")  # same value: no event
        c.settle()
        c["a"].delete(SUB, b"k")
        c.settle()
        expected = [(b"k", None, b"1"), (b"k", b"1", b"2"), (b"k", b"2", None)]
        self.assertEqual(on_a.events, expected)
        self.assertEqual(on_b.events, expected)
        self.assertEqual(other.events, [])
        cancel()
        c["a"].put(SUB, b"k", b"3")
        c.settle()
        self.assertEqual(len(on_b.events), 3)

    def test_failing_subscriber(self) -> None:
        """A subscriber that raises is logged; others and replication go on."""
        c = Cluster(["a", "b"])
        seen = Recorder()

        def broken(key: Any, old: Any, new: Any) -> None:
            raise RuntimeError("boom")

        c["b"].subscribe(SUB, broken)
        c["b"].subscribe(SUB, seen)
        c["a"].put(SUB, b"k", b"1")
        c.settle()
        self.assertEqual(seen.events, [(b"k", None, b"1")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_malformed(self) -> None:
        """A malformed message is dropped with one log line, nothing else changes."""
        c = Cluster(["a"])
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        for bad in [
            (),
            (Atom("nope"),),
            (Atom("md_put"), [(1, 2)]),
            5,
            (Atom("md_digest"), 1, b"x"),
        ]:
            c["a"].receive("z", bad)
        self.assertEqual(c["a"].stats["bad_messages"], 5)
        self.assertEqual(
            len([e for e in events if e.get("event_id") == "vmq.metadata.bad_message"]), 5
        )
        self.assertEqual(c["a"].snapshot(), {})


class AntiEntropyTests(SynchronousTestCase):
    """Anti-entropy repairs whatever broadcast missed."""

    def test_repair_missed(self) -> None:
        """Writes lost to a partition arrive by the periodic exchange once healed."""
        c = Cluster(["a", "b", "c"])
        c.network.partition(["a"], ["b", "c"])
        for i in range(100):
            c["a"].put(SUB, b"%d" % i, i)
        c["b"].delete(SUB, b"7")
        c.settle()
        self.assertEqual(c["b"].get(SUB, b"1"), None)
        c.network.heal()
        for _ in range(6):  # a few 5 s +- 2.5 s rounds
            c.clock.advance(7.5)
            c.settle()
        c.assertConverged(self)
        self.assertEqual(c["c"].get(SUB, b"99"), 99)

    def test_peer_up(self) -> None:
        """A peer coming back is repaired at once, without waiting for the timer."""
        c = Cluster(["a", "b"])
        c.network.partition(["a"], ["b"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.network.heal()
        c["b"].peer_up("a")  # the node sorting first starts the exchange
        c.settle()
        self.assertIsNone(c["b"].get(SUB, b"k"))
        c["a"].peer_up("b")
        c.settle()
        self.assertEqual(c["b"].get(SUB, b"k"), b"v")

    def test_in_sync(self) -> None:
        """Equal stores exchange two small messages and nothing else."""
        c = Cluster(["a", "b"])
        for i in range(1000):
            c["a"].put(SUB, b"%d" % i, i)
        c.settle()
        reports: list[MergeReport] = []
        c["a"].exchange("b", reports.append)
        before = c.network.delivered
        c.settle()
        self.assertEqual(c.network.delivered - before, 2)
        self.assertTrue(reports[0].in_sync)

    def test_large_divergence(self) -> None:
        """10 000 keys changed on each side converge with one exchange."""
        c = Cluster(["a", "b"])
        c.network.partition(["a"], ["b"])
        for i in range(10_000):
            c["a"].put(SUB, (b"", b"a%d" % i), [(Atom("a"), [(b"t/%d" % i, 1)])])
            c["b"].put(SUB, (b"", b"b%d" % i), [(Atom("b"), [(b"t/%d" % i, 1)])])
        c.settle()
        c.network.heal()
        reports: list[MergeReport] = []
        c["a"].exchange("b", reports.append)
        c.settle()
        c.assertConverged(self)
        self.assertEqual((reports[0].received, reports[0].sent), (10_000, 10_000))

    def test_reordered_and_lossy(self) -> None:
        """With a lossy, reordering network, anti-entropy still converges once healed."""
        c = Cluster(["a", "b", "c"], network=MemoryNetwork(Random(3), drop_rate=0.3, reorder=True))
        rng = Random(5)
        for _ in range(300):
            node = rng.choice("abc")
            key = b"%d" % rng.randrange(30)
            if rng.random() < 0.3:
                c[node].delete(SUB, key)
            else:
                c[node].put(SUB, key, rng.randrange(1000))
            c.clock.advance(rng.random() / 10)
            c.network.deliver(rng.randrange(5))
        c.network.drop_rate = 0.0
        c.settle()
        c.sync_all()
        c.assertConverged(self)

    def test_exchange_timeout(self) -> None:
        """An exchange the peer never answers is forgotten after the timeout."""
        clock = task.Clock()
        network = MemoryNetwork()
        store = MetadataStore("a", network.transport("a"), clock.seconds, Random(0))
        store.set_members(["a", "b"])
        store.exchange("b")
        self.assertIsNone(store.anti_entropy())  # b is busy
        clock.advance(61)
        store.tick()
        self.assertEqual(store.anti_entropy(), "b")
        self.assertEqual(store.stats["exchanges"], 2)


class ConflictTests(SynchronousTestCase):
    """Conflicts resolve last-writer-wins, the same way on every node."""

    def test_partition_conflict(self) -> None:
        """Writes on both sides of a partition converge to the later one everywhere."""
        c = Cluster(["a", "b", "c", "d"])
        c["a"].put(SUB, b"k", b"before")
        c.settle()
        c.network.partition(["a", "b"], ["c", "d"])
        c["a"].put(SUB, b"k", b"left")
        c.clock.advance(1)
        c["d"].put(SUB, b"k", b"right")
        c["b"].put(SUB, b"only-left", b"1")
        c["c"].delete(SUB, b"k2")
        c.settle()
        self.assertEqual(c["b"].get(SUB, b"k"), b"left")
        c.network.heal()
        c.sync_all()
        c.assertConverged(self)
        for n in "abcd":
            self.assertEqual(c[n].get(SUB, b"k"), b"right")

    def test_skewed_clock_concurrent(self) -> None:
        """Concurrent writes are ordered by (HLC) time: a node 10 s behind loses."""
        c = Cluster(["a", "b"], skews={"b": -10.0})
        c.network.partition(["a"], ["b"])
        c["a"].put(SUB, b"k", b"a")
        c.clock.advance(1)
        c["b"].put(SUB, b"k", b"b")
        c.settle()
        c.network.heal()
        c.sync_all()
        self.assertEqual(c["b"].get(SUB, b"k"), b"a")
        c.assertConverged(self)

    def test_skewed_clock_causal(self) -> None:
        """A write made after seeing another wins over it, even from a clock 10 s behind."""
        c = Cluster(["a", "b"], skews={"b": -10.0})
        c["a"].put(SUB, b"k", b"a")
        c.settle()
        c["b"].put(SUB, b"k", b"b")
        c.settle()
        self.assertEqual(c["a"].get(SUB, b"k"), b"b")
        c.assertConverged(self)

    def test_tie_break(self) -> None:
        """Writes stamped with the same time are ordered by node name."""
        c = Cluster(["a", "b"])
        c.network.partition(["a"], ["b"])
        va = c["a"].put(SUB, b"k", b"a")
        vb = c["b"].put(SUB, b"k", b"b")
        self.assertEqual(va[:2], vb[:2])
        c.settle()  # the broadcasts are lost
        c.network.heal()
        c.sync_all()
        self.assertEqual(c["a"].get(SUB, b"k"), b"b")
        c.assertConverged(self)
        # The same when the two writes cross as broadcasts.
        c["a"].put(SUB, b"k2", b"a")
        c["b"].put(SUB, b"k2", b"b")
        c.settle()
        self.assertEqual((c["a"].get(SUB, b"k2"), c["b"].get(SUB, b"k2")), (b"b", b"b"))

    def test_drift_logged(self) -> None:
        """A timestamp far ahead is accepted, counted and logged."""
        c = Cluster(["a", "b"], skews={"b": 3600.0})
        c["b"].put(SUB, b"k", b"v")
        c.settle()
        self.assertEqual(c["a"].get(SUB, b"k"), b"v")
        self.assertEqual(c["a"].clock.drift_warnings, 1)


class TombstoneTests(SynchronousTestCase):
    """Deletes are tombstones until every member has seen them."""

    def test_beats_older_write(self) -> None:
        """A late, older put does not undo a delete."""
        c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, b"k", b"v")
        c.clock.advance(0)
        old_put = [m for m in c.network.queue if m[1] == "c"]
        c.network.queue = [m for m in c.network.queue if m[1] != "c"]
        c.settle()
        c["b"].delete(SUB, b"k")
        c.settle()
        c.network.queue.extend(old_put)  # the put arrives at c after the delete
        c.settle()
        self.assertIsNone(c["c"].get(SUB, b"k"))
        c.sync_all()
        c.assertConverged(self)
        for n in "abc":
            self.assertIsNone(c[n].get(SUB, b"k"))

    def test_collected_after_all_saw(self) -> None:
        """The tombstone stays while one member has not seen it, then goes everywhere."""
        c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.network.partition(["a", "b"], ["c"])
        c["a"].delete(SUB, b"k")
        c.settle()
        c.sync_all()
        for n in "ab":
            self.assertEqual(c[n].tombstones(), {(SUB, b"k"): frozenset({"a", "b"})})
        self.assertEqual(c["c"].get(SUB, b"k"), b"v")
        c.network.heal()
        c.clock.advance(8)
        c.settle()
        c.sync_all()
        for n in "abc":
            self.assertEqual(c[n].tombstones(), {})
            self.assertIsNone(c[n].version(SUB, b"k"))
            self.assertIsNone(c[n].get(SUB, b"k"))
        c.assertConverged(self)

    def test_removed_member_unblocks(self) -> None:
        """Removing an unreachable member lets the waiting tombstones go."""
        c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.network.partition(["a", "b"], ["c"])
        c["b"].delete(SUB, b"k")
        c.settle()
        self.assertEqual(len(c["a"].tombstones()), 1)
        for n in "ab":
            c[n].set_members(["a", "b"])
            self.assertEqual(c[n].tombstones(), {})
            self.assertEqual(c[n].stats["tombstones_collected"], 1)

    def test_purged_memory(self) -> None:
        """After collection, an older write of the key is still refused for a while."""
        c = Cluster(["a", "b"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.clock.advance(0)
        ms, cnt, node = c["a"].version(SUB, b"k")[0]  # type: ignore[index]
        c["b"].delete(SUB, b"k")
        c.settle()
        self.assertEqual(c["a"].tombstones(), {})
        old = (Atom("md_put"), [(SUB, b"k", ms, cnt, node, b"v")])
        c["a"].receive("b", old)
        self.assertIsNone(c["a"].get(SUB, b"k"))
        c.clock.advance(3601)
        c["a"].tick()
        c["a"].receive("b", old)
        self.assertEqual(c["a"].get(SUB, b"k"), b"v")

    def test_no_stale_evidence(self) -> None:
        """
        An exchange does not count a peer as holding a tombstone written
        after our digest left.
        """
        c = Cluster(["a", "b"])
        c["a"].exchange("b")
        c.network.deliver()  # b answers "in sync", the answer is in flight
        c.network.partition(["a"], ["b"])
        c["a"].delete(SUB, b"k")
        c.clock.advance(0)  # the broadcast is lost
        c.network.heal()
        c.network.deliver()
        self.assertEqual(c["a"].tombstones(), {(SUB, b"k"): frozenset({"a"})})

    def test_single_node(self) -> None:
        """A node alone collects its tombstones at once."""
        c = Cluster(["a"])
        c["a"].put(SUB, b"k", b"v")
        c["a"].delete(SUB, b"k")
        self.assertEqual(c["a"].snapshot(), {})


class CountingStorage(SqliteMetadataStorage):
    """Counts transactions."""

    writes = 0

    def write(self, changes: Any, clock: tuple[int, int]) -> None:
        self.writes += 1
        super().write(changes, clock)


class PersistenceTests(SynchronousTestCase):
    """The store survives a restart, from its SQLite file."""

    def test_reload(self) -> None:
        """Values, tombstones and the clock come back after a restart."""
        data_dir = self.mktemp()
        c = Cluster(["a"], storages={"a": SqliteMetadataStorage.in_data_dir(data_dir)})
        c["a"].put(SUB, (b"", b"c1"), [(Atom("a"), [(b"t", 1)])])
        c["a"].put(RETAIN, (b"", b"t"), {b"payload": b"x", b"qos": 1})
        c["a"].set_members(["a", "b"])  # keep the tombstone
        c["a"].delete(SUB, (b"", b"gone"))
        c["a"].put(SUB, b"drop", b"x")
        c["a"].delete(SUB, b"drop")
        before = c["a"].snapshot()
        last = c["a"].clock.last
        c.services["a"].stopService()
        path = os.path.join(data_dir, "meta", "metadata.sqlite3")
        self.assertTrue(os.path.exists(path))

        # Restart with a clock that went back one hour.
        clock = task.Clock()
        clock.advance(START - 3600)
        store = MetadataStore("a", MemoryNetwork().transport("a"), clock.seconds, Random(0))
        service = MetadataService(store, SqliteMetadataStorage(path), clock, Random(0))
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(store.snapshot(), before)
        self.assertEqual(store.get(RETAIN, (b"", b"t")), {b"payload": b"x", b"qos": 1})
        self.assertEqual(store.version(SUB, (b"", b"gone"))[1], True)  # type: ignore[index]
        self.assertGreater(store.put(SUB, b"new", b"1")[:2], last)

    def test_batched(self) -> None:
        """10 000 changes in one flush interval are one transaction."""
        path = os.path.join(self.mktemp(), "m.sqlite3")
        storage = CountingStorage(path)
        c = Cluster(["a"], storages={"a": storage})
        for i in range(10_000):
            c["a"].put(SUB, (b"", b"%d" % i), [(Atom("a"), [(b"t/%d" % i, 1)])])
        c.clock.advance(1.0)
        self.assertEqual(storage.writes, 1)
        c.clock.advance(1.0)
        self.assertEqual(storage.writes, 1)  # nothing new, no transaction
        db = sqlite3.connect(path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT count(*) FROM entries").fetchone()[0], 10_000)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        c.services["a"].stopService()

    def test_collected_rows_removed(self) -> None:
        """A collected tombstone is removed from the file as well."""
        path = os.path.join(self.mktemp(), "m.sqlite3")
        c = Cluster(["a", "b"], storages={"a": SqliteMetadataStorage(path)})
        c["a"].put(SUB, b"k", b"v")
        c["a"].delete(SUB, b"k")
        c.settle()
        c.services["a"].stopService()
        storage = SqliteMetadataStorage(path)
        self.addCleanup(storage.close)
        rows, clock = storage.load()
        self.assertEqual(rows, [])
        self.assertGreater(clock, (0, 0))

    def test_write_failure_retried(self) -> None:
        """A failed transaction is logged and its changes written by the next one."""
        path = os.path.join(self.mktemp(), "m.sqlite3")
        storage = SqliteMetadataStorage(path)
        c = Cluster(["a"], storages={"a": storage})
        c["a"].put(SUB, b"k", b"v")
        real_write = storage.write

        def failing(changes: Any, clock: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        storage.write = failing  # type: ignore[method-assign]
        c.clock.advance(1.0)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        storage.write = real_write  # type: ignore[method-assign]
        c.clock.advance(1.0)
        c.services["a"].stopService()
        check = SqliteMetadataStorage(path)
        self.addCleanup(check.close)
        self.assertEqual(len(check.load()[0]), 1)


class JoinTests(SynchronousTestCase):
    """A node with local history merges it when it joins."""

    def test_join_merge(self) -> None:
        """Both histories are merged LWW, and the report says what moved."""
        c = Cluster(["a", "b", "d"], members=[])
        for n in "ab":
            c[n].set_members(["a", "b"])
        c["a"].put(SUB, b"shared", b"cluster-old")
        c["a"].put(SUB, b"cluster-only", b"1")
        c["a"].put(RETAIN, b"t", b"r")
        c.clock.advance(1)
        c["d"].put(SUB, b"shared", b"joiner-new")
        c["d"].put(SUB, b"joiner-only", b"2")
        c.clock.advance(1)
        c["b"].put(SUB, b"later", b"cluster-new")
        c["d"].put(SUB, b"later", b"joiner-old")
        c.settle()
        c.clock.advance(1)
        c["b"].put(SUB, b"later", b"cluster-newest")
        c.settle()

        for n in "abd":
            c[n].set_members(["a", "b", "d"])
        d = c.services["d"].join("a")
        c.settle()
        report = self.successResultOf(d)
        self.assertTrue(report.join)
        self.assertEqual((report.received, report.replaced, report.kept, report.sent), (2, 1, 1, 2))
        self.assertEqual(report.by_prefix[SUB], [1, 1, 1, 2])
        self.assertEqual(report.by_prefix[RETAIN], [1, 0, 0, 0])
        c.settle()
        c.assertConverged(self)
        self.assertEqual(c["b"].get(SUB, b"shared"), b"joiner-new")
        self.assertEqual(c["b"].get(SUB, b"joiner-only"), b"2")
        self.assertEqual(c["d"].get(SUB, b"later"), b"cluster-newest")


KEYS = [b"k%d" % i for i in range(6)]
NODES = ["n0", "n1", "n2"]

operation = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(NODES), st.sampled_from(KEYS), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.sampled_from(NODES), st.sampled_from(KEYS)),
    st.tuples(st.just("partition"), st.lists(st.booleans(), min_size=3, max_size=3)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("deliver"), st.integers(0, 6)),
    st.tuples(st.just("advance"), st.floats(0, 3)),
    st.tuples(st.just("sync"), st.sampled_from(NODES)),
    st.tuples(st.just("up"), st.sampled_from(NODES), st.sampled_from(NODES)),
    st.tuples(st.just("remove"), st.sampled_from(NODES)),
)


class PropertyTests(SynchronousTestCase):
    """Whatever happens, healing and anti-entropy make every store equal."""

    @settings(max_examples=150)
    @given(
        ops=st.lists(operation, max_size=40),
        skews=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
        drop=st.sampled_from([0.0, 0.2]),
        reorder=st.booleans(),
    )
    def test_converge(
        self, ops: list[tuple[Any, ...]], skews: list[float], drop: float, reorder: bool
    ) -> None:
        """
        After random writes, deletes, partitions, losses and reorderings,
        every store holds the same entries and every key the value of its
        greatest-version write; no tombstone outlives the sync.
        """
        network = MemoryNetwork(Random(1), drop_rate=drop, reorder=reorder)
        c = Cluster(NODES, skews=dict(zip(NODES, skews, strict=True)), network=network)
        writes: dict[bytes, list[tuple[Any, Any]]] = {}
        for op in ops:
            kind = op[0]
            if kind == "put":
                version = c[op[1]].put(SUB, op[2], op[3])
                writes.setdefault(op[2], []).append((version, op[3]))
            elif kind == "delete":
                version = c[op[1]].delete(SUB, op[2])
                writes.setdefault(op[2], []).append((version, None))
            elif kind == "partition":
                side = [n for n, s in zip(NODES, op[1], strict=True) if s]
                c.network.partition(side, [n for n in NODES if n not in side])
            elif kind == "heal":
                c.network.heal()
            elif kind == "deliver":
                c.clock.advance(0)
                c.network.deliver(op[1])
            elif kind == "advance":
                c.clock.advance(op[1])
            elif kind == "sync":
                c[op[1]].anti_entropy()
            elif kind == "up":
                # A link came up: concurrent exchanges, pulls, summaries.
                if op[1] != op[2]:
                    c[op[1]].peer_up(op[2])
                    c[op[2]].peer_up(op[1])
            elif kind == "remove":
                # A membership hiccup: the node is dropped, then comes back.
                for n in NODES:
                    c[n].set_members([m for m in NODES if m != op[1]])
                c.clock.advance(0)
                for n in NODES:
                    c[n].set_members(NODES)
        c.network.heal()
        c.network.drop_rate = 0.0
        c.settle()
        c.sync_all(rounds=3)
        c.assertConverged(self)
        for key, history in writes.items():
            _, value = max(history, key=lambda w: w[0])
            self.assertEqual(c[NODES[0]].get(SUB, key), value)
        for n in NODES:
            self.assertEqual(c[n].tombstones(), {})
