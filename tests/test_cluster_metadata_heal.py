# mypy: disable-error-code="no-untyped-call"
"""
Tests for the parts of the metadata protocol that keep a heal cheap: the
summaries that replace forwarded values (C{md_have} / C{md_pull}), the
entries a responder is already getting from another node (the C{coming}
list of C{md_entries}), and packed acknowledgements.
"""

from __future__ import annotations

from random import Random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from vernemq.cluster.metadata import MergeReport
from vernemq.cluster.metadata.testing import MemoryNetwork
from vernemq.dist.etf import Atom, decode

from .test_cluster_metadata import SUB, Cluster


class Tap:
    """Records the tag, source and destination of every message sent."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self._send = network.send
        network.send = self.send  # type: ignore[method-assign]

    def send(self, source: str, destination: str, message: Any) -> None:
        self.sent.append((str(message[0]), source, destination))
        self._send(source, destination, message)

    def count(self, tag: str, source: str | None = None, destination: str | None = None) -> int:
        return sum(
            1
            for t, s, d in self.sent
            if t == tag and source in (None, s) and destination in (None, d)
        )


def split_changes(c: Cluster, n: int) -> None:
    """
    Shared keys, then a partition a+b | c and changes on both sides: new
    keys, changed keys (some on both sides) and deletes.
    """
    for i in range(n):
        c["a"].put(SUB, b"k%d" % i, i)
    c.settle()
    c.network.partition(["a", "b"], ["c"])
    for i in range(n):
        c["a"].put(SUB, b"left%d" % i, i)
        c["c"].put(SUB, b"right%d" % i, i)
    for i in range(n // 2):
        c["b"].put(SUB, b"k%d" % i, b"left")
    c.clock.advance(0.01)
    for i in range(n // 4, 3 * n // 4):
        c["c"].put(SUB, b"k%d" % i, b"right")
    for i in range(3 * n // 4, n):
        c["b" if i % 2 else "c"].delete(SUB, b"k%d" % i)
    c.settle()


class HealTests(SynchronousTestCase):
    """A partition heal moves each value across once and collects every tombstone."""

    def test_two_exchanges_one_side(self) -> None:
        """
        When both nodes of one side exchange with the other side at once,
        the other side asks only one of them for each entry, and forwards
        are summaries that pull nothing already there; every store ends
        equal, with every tombstone collected, without a periodic round.
        """
        c = Cluster(["a", "b", "c"])
        split_changes(c, 40)
        c.network.heal()
        tap = Tap(c.network)
        received = {n: c[n].stats["received_entries"] for n in "abc"}
        reports: dict[str, list[MergeReport]] = {"a": [], "b": []}
        c["a"].exchange("c", reports["a"].append)
        c["b"].exchange("c", reports["b"].append)
        c.settle()
        c.assertConverged(self)
        for n in "abc":
            self.assertEqual(c[n].tombstones(), {})
        # c took the left side's new keys, changes and deletes from one of a
        # and b only; the other was told they were coming.
        sent = sorted([reports["a"][0].sent, reports["b"][0].sent])
        coming = sorted([reports["a"][0].coming, reports["b"][0].coming])
        self.assertEqual(sent[0], 0)
        self.assertGreater(sent[1], 40)
        self.assertEqual(coming, sent)
        self.assertEqual(tap.count("md_repair"), 1)
        self.assertEqual(c["c"].stats["received_entries"] - received["c"], sent[1])
        # a and b each got the right side's entries once, from c.
        for n in "ab":
            self.assertEqual(tap.count("md_entries", "c", n), 1)
            self.assertEqual(tap.count("md_put", destination=n), 0)
        # Forwards went out as summaries; nothing was missing, nothing pulled.
        self.assertGreater(tap.count("md_have"), 0)
        self.assertEqual(tap.count("md_pull"), 0)

    def test_peer_up_heal(self) -> None:
        """The same through L{MetadataStore.peer_up}, as the cluster service calls it."""
        c = Cluster(["a", "b", "c"])
        split_changes(c, 40)
        c.network.heal()
        for x, y in (("a", "c"), ("b", "c")):
            c[x].peer_up(y)
            c[y].peer_up(x)
        c.settle()
        c.assertConverged(self)
        for n in "abc":
            self.assertEqual(c[n].tombstones(), {})

    def test_forward_pulls_missing(self) -> None:
        """
        A member that missed what an exchange brought gets a summary and
        pulls exactly the entries it lacks from the forwarding node.
        """
        c = Cluster(["a", "b", "c"])
        c.network.partition(["a"], ["b"], ["c"])
        c["c"].put(SUB, b"b0", -1)  # c has only one of b's keys, older
        c.clock.advance(1)
        for i in range(10):
            c["b"].put(SUB, b"b%d" % i, i)
        c.settle()
        c.network.heal()
        c.network.partition(["a", "b"], ["a", "c"])  # b and c cannot talk
        tap = Tap(c.network)
        c["a"].exchange("b")
        c.settle()
        self.assertEqual(tap.count("md_have", "a", "c"), 1)
        self.assertEqual(tap.count("md_pull", "c", "a"), 1)
        for i in range(10):
            self.assertEqual(c["c"].get(SUB, b"b%d" % i), i)
        self.assertEqual(c["a"].snapshot(), c["b"].snapshot())

    def test_forward_acknowledges_tombstone(self) -> None:
        """A summary of a tombstone the member already holds acknowledges it."""
        c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.network.partition(["a", "b"], ["c"])
        c["b"].delete(SUB, b"k")
        c.settle()
        c["c"].delete(SUB, b"k")  # its own, later tombstone
        c.network.heal()
        c.settle()
        c.sync_all()
        c.assertConverged(self)
        for n in "abc":
            self.assertEqual(c[n].tombstones(), {})


class ComingTests(SynchronousTestCase):
    """Entries asked of another node are not asked again, nor taken as held."""

    def setUp(self) -> None:
        self.c = c = Cluster(["a", "b", "c"])
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c.network.partition(["a", "b"], ["c"])
        c["a"].delete(SUB, b"k")
        c["a"].put(SUB, b"new", b"1")
        c.settle()
        c.network.heal()

    def test_lost_repair(self) -> None:
        """
        If the repair from the node asked first is lost, the other node
        does not count the responder as holding the tombstone, and the
        entries are asked again once the pull times out.
        """
        c = self.c
        c["a"].exchange("c")
        c["b"].exchange("c")
        # Deliver digests, buckets, wants and entries, then lose a's repair.
        for _ in range(4):
            c.network.deliver()
        c.network.queue = [m for m in c.network.queue if decode(m[2])[0] != Atom("md_repair")]
        c.settle()
        self.assertIsNone(c["c"].version(SUB, b"new"))
        self.assertNotIn("c", c["b"].tombstones()[(SUB, b"k")])
        self.assertNotIn("c", c["a"].tombstones()[(SUB, b"k")])
        # Within the timeout c still waits for a (as responder).
        reports: list[MergeReport] = []
        c["b"].exchange("c", reports.append)
        c.settle()
        self.assertEqual((reports[0].sent, reports[0].coming), (0, 2))
        self.assertIsNone(c["c"].version(SUB, b"new"))
        # After it, c asks b (the periodic rounds are held off, so that the
        # repair comes from this exchange).
        for service in c.services.values():
            service._sync_call.cancel()  # type: ignore[union-attr]
        c.clock.advance(11)
        c["c"].tick()
        c["b"].exchange("c", reports.append)
        c.settle()
        self.assertEqual((reports[1].sent, reports[1].coming), (2, 0))
        c.assertConverged(self)
        for n in "abc":
            self.assertEqual(c[n].tombstones(), {})

    def test_initiator_unaffected(self) -> None:
        """An exchange c starts itself is answered with values at once."""
        c = self.c
        c["a"].exchange("c")
        for _ in range(4):
            c.network.deliver()
        c.network.queue = [m for m in c.network.queue if decode(m[2])[0] != Atom("md_repair")]
        c.settle()
        c["c"].exchange("b")
        c.settle()
        self.assertEqual(c["c"].get(SUB, b"new"), b"1")
        c.assertConverged(self)


class PackedMessageTests(SynchronousTestCase):
    """Summaries, pulls and acknowledgements are packed records."""

    def test_malformed(self) -> None:
        """Records of the wrong length are dropped as malformed messages."""
        c = Cluster(["a"])
        for bad in [
            (Atom("md_have"), b"x" * 23),
            (Atom("md_pull"), b"x" * 7),
            (Atom("md_ack"), b"x" * 25),
            (Atom("md_have"), [1]),
        ]:
            c["a"].receive("z", bad)
        self.assertEqual(c["a"].stats["bad_messages"], 4)

    def test_unknown_keys_ignored(self) -> None:
        """A pull or an acknowledgement of a key hash we do not hold does nothing."""
        c = Cluster(["a", "b"], network=MemoryNetwork(Random(0)))
        c["a"].put(SUB, b"k", b"v")
        c.settle()
        c["a"].receive("b", (Atom("md_pull"), b"\x00" * 8))
        c["a"].receive("b", (Atom("md_ack"), b"\x00" * 24))
        c.settle()
        self.assertEqual(c["a"].stats["bad_messages"], 0)
        c.assertConverged(self)
