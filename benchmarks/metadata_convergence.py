"""
Convergence of the replicated metadata store after a partition heals.

Run: C{python benchmarks/metadata_convergence.py [--quick] [--profile] [--runs N]}
(with C{--runs}, N runs, each in a fresh interpreter, and the medians).

Each run builds a cluster of stores (L{vernemq.cluster.metadata}) on an
in-memory network that encodes and decodes every message with the real ETF
codec (L{vernemq.dist.etf}), as the distribution would.  The stores first
share C{BASE} subscriptions; the network is then cut in two and each side
makes 10 000 subscription changes (6 000 new clients, 3 000 changed, 1 000
unsubscribed; 1 500 of the changed keys are changed on both sides, so they
conflict).  Then the network heals, each reconnected link reports
C{peer_up}, and the clock stops when every store is identical (same
digest, same snapshot).

Two figures: the wall time of the whole heal in one process, where every
node's work (encoding, decoding, merging, hashing) runs on the same core
one after the other (an upper bound), and the busiest node's share of it,
which is what a real cluster with a core per node approaches (plus the
LAN's few round trips).  The issue's aim is <= 2 s.  The time the cyclic
garbage collector spent in full collections during the heal is shown
apart: it is part of the whole figure, but depends on everything the
process holds (here the replicas of every node), not only on the store.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task  # noqa: E402

from vernemq.cluster.metadata import MetadataStore  # noqa: E402
from vernemq.cluster.metadata.testing import MemoryNetwork, MemoryTransport  # noqa: E402
from vernemq.dist.etf import Atom, decode, encode  # noqa: E402

SUB = (Atom("vmq"), Atom("subscriber"))
sent_bytes = [0]


class EncodingTransport:
    """Encodes each message with the ETF codec at the sender."""

    def __init__(self, inner: MemoryTransport) -> None:
        self._inner = inner

    def send(self, peer: str, message: object) -> None:
        data = encode(message)
        sent_bytes[0] += len(data)
        self._inner.send(peer, data)


def subscription(node: str, i: int, qos: int) -> list[object]:
    """A VerneMQ-shaped subscriber value: [{Node, CleanSession, [{Topic, QoS}]}]."""
    return [(Atom(node), Atom("true"), [(b"devices/%d/cmd/#" % i, qos), (b"broadcast", 0)])]


def run(
    names: list[str], sides: tuple[list[str], list[str]], base: int, profile: bool = False
) -> dict[str, float]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    # Encoding is done here rather than in the network, so that the time
    # spent encoding and decoding is charged to the node doing it.
    network = MemoryNetwork(Random(0), encoding=False)
    stores: dict[str, MetadataStore] = {}
    busy: dict[str, float] = {}
    counting = [False]

    def timed(name: str, fn: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object) -> None:
            start = time.perf_counter()
            fn(*args)
            if counting[0]:
                busy[name] += time.perf_counter() - start

        return call

    for i, short in enumerate(names):
        name = f"{short}@127.0.0.1"
        transport = network.transport(name)
        store = MetadataStore(name, EncodingTransport(transport), clock.seconds, Random(i))
        stores[name] = store
        busy[name] = 0.0
        network.attach(name, timed(name, lambda src, data, s=store: s.receive(src, decode(data))))
        store.flush = timed(name, store.flush)  # type: ignore[method-assign]
    for store in stores.values():
        store.set_members(stores)

    def flush_all() -> None:
        for store in stores.values():
            store.flush()

    def settle() -> None:
        while True:
            flush_all()
            if not network.queue:
                return
            network.deliver()

    left, right = ([f"{n}@127.0.0.1" for n in side] for side in sides)
    writer_l, writer_r = stores[left[0]], stores[right[0]]
    for i in range(base):
        writer_l.put(SUB, (b"", b"client-%d" % i), subscription(left[0], i, 1))
    settle()

    network.partition(left, right)
    for side, writer, offset, changed in (
        ("L", writer_l, 0, range(0, 3000)),
        ("R", writer_r, 1_000_000, range(1500, 4500)),
    ):
        node = str(writer.node)
        for i in range(6000):
            writer.put(SUB, (b"", b"new-%s-%d" % (side.encode(), i)), subscription(node, i, 1))
        for i in changed:
            writer.put(SUB, (b"", b"client-%d" % i), subscription(node, offset + i, 2))
        for i in range(5000 + offset // 1000, 6000 + offset // 1000):
            writer.delete(SUB, (b"", b"client-%d" % (i % base)))
        clock.advance(0.01)
    settle()

    network.heal()
    delivered_before = network.delivered
    sent_bytes[0] = 0
    full_gc = [0.0, 0.0]  # start, total

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2 and counting[0]:
            if phase == "start":
                full_gc[0] = time.perf_counter()
            else:
                full_gc[1] += time.perf_counter() - full_gc[0]

    gc.callbacks.append(gc_timer)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    counting[0] = True
    start = time.perf_counter()
    for a in left:
        for b in right:
            stores[a].peer_up(b)
            stores[b].peer_up(a)
    settle()
    elapsed = time.perf_counter() - start
    counting[0] = False
    gc.callbacks.remove(gc_timer)
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    snapshots = [s.snapshot(tombstones=False) for s in stores.values()]
    digests = {s.digest() for s in stores.values()}
    if len(digests) != 1 or any(snap != snapshots[0] for snap in snapshots):
        raise SystemExit("stores did not converge")
    return {
        "seconds": elapsed,
        "megabytes": sent_bytes[0] / 1e6,
        "messages": network.delivered - delivered_before,
        "busiest": max(busy.values()),
        "full_gc": full_gc[1],
        "entries": len(snapshots[0]),
    }


CLUSTERS = (
    (["a", "b"], (["a"], ["b"])),
    (["a", "b", "c"], (["a", "b"], ["c"])),
)


def measure(base: int, profile: bool) -> list[dict[str, float]]:
    """One run of each cluster, in this process (as a plain run does)."""
    return [run(names, sides, base, profile=profile) for names, sides in CLUSTERS]


def main() -> None:
    quick = "--quick" in sys.argv
    base = 10_000 if quick else 20_000
    if "--json" in sys.argv:  # one run of each, for --runs
        print(json.dumps(measure(base, profile=False)))
        return
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
    print(f"metadata convergence after a partition heals ({base} shared subscriptions,")
    print("10 000 changes on each side, every message ETF-encoded):")
    if runs == 1:
        all_runs = [measure(base, profile="--profile" in sys.argv)]
    else:
        # Each run in a fresh interpreter: what the collector does depends on
        # the history of the process, so runs in one process are not alike.
        command = [sys.executable, __file__, "--json"] + (["--quick"] if quick else [])
        all_runs = []
        for _ in range(runs):
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            all_runs.append(json.loads(output))
    for i, (names, sides) in enumerate(CLUSTERS):
        label = f"{len(names)} nodes, {'+'.join(sides[0])} | {'+'.join(sides[1])}"
        results = [one[i] for one in all_runs]
        if runs > 1:
            for result in results:
                print(
                    f"    {label}: {result['seconds']:.3f} s"
                    f" (busiest node {result['busiest']:.3f} s,"
                    f" full GC {result['full_gc']:.3f} s)"
                )
        median = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"  {label:<24} converged in {median['seconds']:.3f} s on one core"
            f" (busiest node {median['busiest']:.3f} s; full GC {median['full_gc']:.3f} s);"
            f" {median['messages']:.0f} messages, {median['megabytes']:.1f} MB,"
            f" {median['entries']:.0f} live entries each"
            + (f" (medians of {runs} runs)" if runs > 1 else "")
        )


if __name__ == "__main__":
    main()
