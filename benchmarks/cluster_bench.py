#!/usr/bin/env python3
"""
Cross-node throughput of a vernemq cluster, against one node, in one run.

Nodes are real processes (C{twistd -n vernemq}), clustered with the real
C{vmq-admin}, on loopback with a data channel (C{listener.vmq.clustering})
each.  The load comes from C{../shared/tools/mqtt_bench.py}
(dependency-free): its subscriber and publisher halves are imported and run
as separate processes, so that the subscribers may connect to another node
than the publishers (the tool's own C{main} takes a single C{--port}).

Scenarios:

  - single node 1->1 QoS 0 flood: publisher and subscriber on node A;
  - cross-node 1->1 QoS 0 flood: publisher on node A, subscriber on node
    B (each message crosses the data channel once); the issue's target is
    >= 0.5x the single-node rate;
  - fan-out across 3 nodes: one publisher on A, N subscribers on each of
    A, B and C (each message delivered 3N times, one copy per remote node
    on the data channel).

With C{taskset} and more than one core, the cluster nodes share CPU 0 and the
load generator gets CPU 1 (like benchmarks/compare.py), so the cluster has
one core in total, as the single node has.  This measures; it asserts
nothing.

Usage::

    python benchmarks/cluster_bench.py [--quick] [--count N] [--runs R]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
sys.path.insert(0, CHECKOUT)

from tests.interop.nodeprocess import NodeProcess, freePort  # noqa: E402

BENCH = os.path.join(CHECKOUT, "..", "shared", "tools", "mqtt_bench.py")
NODE_CPU = "0"
LOAD_CPU = "1"
COOKIE = "cluster-bench-cookie"


def loadBench() -> ModuleType:
    """Import mqtt_bench.py from the shared tools."""
    spec = importlib.util.spec_from_file_location("mqtt_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Set by C{--no-pin}: let the OS schedule nodes and load anywhere.
NO_PIN = False


def pinned(cpu: str) -> list[str]:
    """The command prefix pinning a process to C{cpu}, if possible."""
    if not NO_PIN and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu]
    return []


def startCluster(base: str, count: int) -> list[NodeProcess]:
    """Start C{count} nodes and join them into one cluster."""
    epmd = freePort()
    names = [f"bench{i}@127.0.0.1" for i in range(1, count + 1)]
    nodes = []
    for i, name in enumerate(names, 1):
        node = NodeProcess(
            os.path.join(base, f"node{i}"),
            [
                f"nodename = {name}",
                f"distributed_cookie = {COOKIE}",
                "erlang.epmd.mode = auto",
                f"erlang.epmd.port = {epmd}",
                f"listener.vmq.clustering = 127.0.0.1:{freePort()}",
                "log.console.level = warning",
            ],
            prefix=pinned(NODE_CPU),
        )
        nodes.append(node.start())
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    for node in nodes[1:]:
        subprocess.run(
            [sys.executable, "-m", "vernemq.admin.cli", "-c", node.configPath,
             "cluster", "join", f"discovery-node={names[0]}"],
            check=True, capture_output=True, env=env, timeout=60,
        )
    return nodes


class _Collect:
    """Stands in for a pipe end: keeps what mqtt_bench sends to it."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def send(self, item: Any) -> None:
        self.items.append(item)


def _subs(bench: ModuleType, args: Any, ports: list[int], ready: Any, result: Any) -> None:
    """Subscriber process: C{args.subs} subscribers on each of C{ports}."""
    import asyncio

    # mqtt_bench names subscribers after the run only; a client id must be
    # unique across the cluster, so add the port (this process only).
    plain = bench.Conn.open.__func__

    async def openUnique(cls: Any, host: str, port: int, cid: str) -> Any:
        return await plain(cls, host, port, f"{cid}-{port}")

    bench.Conn.open = classmethod(openUnique)

    async def main() -> None:
        readies = [_Collect() for _ in ports]
        results = [_Collect() for _ in ports]
        tasks = []
        for port, r, rr in zip(ports, readies, results, strict=True):
            a = argparse.Namespace(**vars(args))
            a.port = port
            tasks.append(asyncio.create_task(bench.sub_main(a, r, rr)))
        while not all(r.items for r in readies):
            await asyncio.sleep(0.01)
        ready.send("ready")
        await asyncio.gather(*tasks)
        merged = [
            {k: v for k, v in rr.items[0].items() if k != "lat"} for rr in results
        ]
        result.send(merged)

    asyncio.run(main())


def flood(
    bench: ModuleType, pubPort: int, subPorts: list[int], subs: int, count: int, size: int
) -> dict[str, Any]:
    """
    One QoS 0 flood: 1 publisher on C{pubPort}, C{subs} subscribers on each
    of C{subPorts}; delivered msg/s over all subscribers, and the loss.
    """
    args = argparse.Namespace(
        host="127.0.0.1", port=pubPort, pubs=1, subs=subs, count=count, size=max(12, size),
        qos=0, rate=0, inflight=20, batch=100, idle=3.0, broker_pid=0, label="",
        run="%x" % (os.getpid() ^ time.monotonic_ns()),
    )
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    sres_r, sres_w = ctx.Pipe(False)
    pres_r, pres_w = ctx.Pipe(False)
    sp = ctx.Process(target=_subs, args=(bench, args, subPorts, ready_w, sres_w))
    sp.start()
    assert ready_r.poll(30), "subscribers not ready"
    ready_r.recv()
    # Let the subscriptions replicate to the publisher's node.
    time.sleep(1.0)
    import asyncio

    pp = ctx.Process(target=lambda: asyncio.run(bench.pub_main(args, pres_w)))
    pp.start()
    pres = pres_r.recv()
    sres = sres_r.recv()
    pp.join()
    sp.join()
    received = sum(r["received"] for r in sres)
    expected = sum(r["expected"] for r in sres)
    last = max((r["last"] or 0) for r in sres) or pres["end"]
    span = (last - pres["start"]) / 1e9
    return {
        "delivered": round(received / span) if span > 0 else 0,
        "loss_pct": round(100.0 * (1 - received / expected), 2),
        "received": received,
        "expected": expected,
    }


def waitForRoute(bench: ModuleType, pub: int, sub: int) -> None:
    """Flood a little until messages cross from C{pub}'s node to C{sub}'s."""
    for _ in range(20):
        if flood(bench, pub, [sub], 1, 200, 64)["received"]:
            return
    raise RuntimeError("no message crossed the cluster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages, one run each")
    ap.add_argument("--count", type=int, default=200_000, help="messages per 1->1 run")
    ap.add_argument("--fanout-subs", type=int, default=2, help="subscribers per node in fan-out")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario (median kept)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--no-pin", action="store_true", help="no CPU pinning")
    opts = ap.parse_args()
    global NO_PIN
    NO_PIN = opts.no_pin
    if opts.quick:
        opts.count, opts.runs = 50_000, 1
    bench = loadBench()
    base = tempfile.mkdtemp(prefix="cluster-bench-")
    nodes: list[NodeProcess] = []
    if pinned(LOAD_CPU):
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        nodes = startCluster(base, 3)
        a, b, c = (n.port for n in nodes)
        waitForRoute(bench, a, b)
        waitForRoute(bench, a, c)
        fanCount = max(1, opts.count // (3 * opts.fanout_subs))
        scenarios = [
            ("single node 1->1 QoS 0 (A->A)", a, [a], 1, opts.count),
            ("cross-node 1->1 QoS 0 (A->B)", a, [b], 1, opts.count),
            (f"fan-out 1->{3 * opts.fanout_subs} QoS 0 over A, B, C", a, [a, b, c],
             opts.fanout_subs, fanCount),
        ]
        results: dict[str, list[dict[str, Any]]] = {s[0]: [] for s in scenarios}
        for _ in range(opts.runs):
            # Interleaved, so that a slow moment of the machine hits every scenario.
            for label, pub, subPorts, subs, count in scenarios:
                results[label].append(flood(bench, pub, subPorts, subs, count, opts.size))
        print("| scenario | delivered msg/s (median) | runs | loss % (max) |")
        print("|---|---:|---|---:|")
        medians = {}
        for label, runs in results.items():
            rates = [r["delivered"] for r in runs]
            medians[label] = statistics.median(rates)
            print(
                f"| {label} | {medians[label]:,.0f} | {', '.join(f'{x:,}' for x in rates)} "
                f"| {max(r['loss_pct'] for r in runs)} |"
            )
        single, cross = list(medians.values())[:2]
        singles, crosses = (results[label] for label in list(results)[:2])
        ratios = [c["delivered"] / s["delivered"] for s, c in zip(singles, crosses, strict=True)]
        print()
        print(f"cross-node / single-node: {cross / single:.2f}x (target >= 0.5x)")
        print(
            "per round (each pair run back to back): "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + f"; median {statistics.median(ratios):.2f}x"
        )
        print(json.dumps({"medians": medians, "cpus": os.cpu_count(),
                          "pinned": bool(pinned(NODE_CPU))}))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
