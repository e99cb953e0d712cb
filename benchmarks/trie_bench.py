"""
Throughput of L{vernemq.broker.trie.SubscriptionTrie} and
L{vernemq.broker.retain.RetainedStore}.

Run: C{python benchmarks/trie_bench.py [--quick]}.  Prints operations per
second for:

  (a) one topic matched repeatedly with 10 and 10 000 subscribers (spread
      over an exact filter, C{+} and C{#} filters), with the cache and
      without it;
  (b) 10 000 distinct topics against 10 000 filters (exact and wildcard):
      a cold pass (every match a cache miss), warm passes (every match a
      hit), and with the cache disabled;
  (c) subscription churn: devices re-subscribing to C{devices/<id>/#}
      between publishes, showing that invalidation is selective;
  (d) add/remove rate, and retained matches for wildcard filters.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vernemq.broker.retain import RetainedStore  # noqa: E402
from vernemq.broker.trie import SubscriptionTrie  # noqa: E402


def rate(fn: Callable[[], int], min_seconds: float) -> float:
    """Run C{fn} (which returns how many operations it did) repeatedly for
    at least C{min_seconds}; return the best operations per second."""
    best = 0.0
    spent = 0.0
    while spent < min_seconds:
        start = time.perf_counter()
        ops = fn()
        elapsed = time.perf_counter() - start
        spent += elapsed
        best = max(best, ops / elapsed)
    return best


def report(label: str, per_second: float, unit: str = "matches/s") -> None:
    print(f"  {label:<58} {per_second:>14,.0f} {unit}")


def repeat_match(trie: SubscriptionTrie[int, int], topic: str,
                 loops: int) -> Callable[[], int]:
    """A benchmark body matching C{topic} C{loops} times."""
    match = trie.match

    def run() -> int:
        for _ in range(loops):
            match(topic)
        return loops

    return run


def match_all(trie: SubscriptionTrie[int, int], topics: list[str],
              clear: bool) -> Callable[[], int]:
    """A benchmark body matching every topic once, after clearing the
    cache if C{clear}."""
    match = trie.match

    def run() -> int:
        if clear:
            trie.clear_cache()
        for t in topics:
            match(t)
        return len(topics)

    return run


def bench_one_topic(nsubs: int, min_seconds: float) -> None:
    patterns = ["bench/room1/temp", "bench/+/temp", "bench/#", "+/room1/+"]
    topic = "bench/room1/temp"
    for cache_size in (100_000, 0):
        trie: SubscriptionTrie[int, int] = SubscriptionTrie(cache_size)
        for i in range(nsubs):
            trie.add(patterns[i % len(patterns)], i, 1)
        assert len(trie.match(topic)) == nsubs
        loops = 200_000 if nsubs <= 100 else 20_000
        label = f"(a) 1 topic, {nsubs} subscribers, " + (
            "cached" if cache_size else "no cache")
        report(label, rate(repeat_match(trie, topic, loops), min_seconds))


def make_workload(nfilters: int, ntopics: int,
                  seed: int = 1) -> tuple[list[str], list[str]]:
    rnd = random.Random(seed)
    sites = [f"site{i}" for i in range(20)]
    kinds = ["temp", "hum", "co2", "status", "cmd"]
    topics = [f"{rnd.choice(sites)}/dev{rnd.randrange(2000)}/"
              f"{rnd.choice(kinds)}" for _ in range(ntopics)]
    topics = list(dict.fromkeys(topics))
    while len(topics) < ntopics:
        topics.append(f"extra/{len(topics)}/x")
    filters = []
    for _ in range(nfilters):
        roll = rnd.random()
        site, dev, kind = (rnd.choice(sites), f"dev{rnd.randrange(2000)}",
                           rnd.choice(kinds))
        if roll < 0.6:
            filters.append(f"{site}/{dev}/{kind}")
        elif roll < 0.75:
            filters.append(f"{site}/{dev}/#")
        elif roll < 0.9:
            filters.append(f"{site}/+/{kind}")
        elif roll < 0.97:
            filters.append(f"+/{dev}/+")
        else:
            filters.append(f"{site}/#")
    return filters, topics


def bench_many_topics(min_seconds: float) -> None:
    filters, topics = make_workload(10_000, 10_000)
    for cache_size in (100_000, 0):
        trie: SubscriptionTrie[int, int] = SubscriptionTrie(cache_size)
        for i, topic_filter in enumerate(filters):
            trie.add(topic_filter, i, 1)
        if cache_size:
            report("(b) 10k topics x 10k filters, cold (all misses)",
                   rate(match_all(trie, topics, True), min_seconds))
            report("(b) 10k topics x 10k filters, warm (all hits)",
                   rate(match_all(trie, topics, False), min_seconds))
        else:
            report("(b) 10k topics x 10k filters, no cache",
                   rate(match_all(trie, topics, False), min_seconds))
    hits = sum(len(trie.match(t)) for t in topics)
    print(f"      ({hits:,} (filter, key) matches over the 10k topics)")


def bench_churn(min_seconds: float) -> None:
    ndev = 10_000
    trie: SubscriptionTrie[str, int] = SubscriptionTrie()
    trie.add("devices/+/status", "dash", 0)
    for d in range(ndev):
        trie.add(f"devices/{d}/#", f"c{d}", 1)
    topics = [f"devices/{d}/telemetry" for d in range(ndev)]
    match = trie.match
    for t in topics:
        match(t)
    counter = [0]

    def run() -> int:
        # 100 publishes per re-subscription of one device.
        ops = 0
        for _ in range(100):
            d = counter[0] % ndev
            counter[0] += 1
            trie.remove(f"devices/{d}/#", f"c{d}")
            trie.add(f"devices/{d}/#", f"c{d}", 1)
            for t in topics[d:d + 100]:
                match(t)
                ops += 1
        return ops

    report("(c) 1 device re-subscribes devices/<id>/# per 100 matches",
           rate(run, min_seconds))
    print(f"      (cache still holds {trie.cache_len():,} of "
          f"{ndev:,} topics)")


def bench_changes(min_seconds: float) -> None:
    filters, _ = make_workload(10_000, 0)
    trie: SubscriptionTrie[int, int] = SubscriptionTrie()

    def run() -> int:
        for i, topic_filter in enumerate(filters):
            trie.add(topic_filter, i, 1)
        for i, topic_filter in enumerate(filters):
            trie.remove(topic_filter, i)
        return 2 * len(filters)

    report("(d) add + remove, 10k mixed filters", rate(run, min_seconds),
           "ops/s")
    store: RetainedStore[bytes] = RetainedStore()
    _, topics = make_workload(0, 10_000)
    for t in topics:
        store.set(t, b"x")
    queries = ["site3/+/temp", "site7/dev12/#", "+/dev5/+", "site1/#"]

    def run_retained() -> int:
        for q in queries:
            store.match(q)
        return len(queries)

    report("(d) retained match, 10k topics, wildcard filters",
           rate(run_retained, min_seconds), "matches/s")


def main() -> None:
    quick = "--quick" in sys.argv
    min_seconds = 0.2 if quick else 1.0
    print(f"Python {sys.version.split()[0]}")
    bench_one_topic(10, min_seconds)
    bench_one_topic(10_000, min_seconds)
    bench_many_topics(min_seconds)
    bench_churn(min_seconds)
    bench_changes(min_seconds)


if __name__ == "__main__":
    main()
