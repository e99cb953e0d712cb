#!/usr/bin/env python3
"""
Run the same MQTT load against vernemq and against Debian's mosquitto in one
run, and print each figure side by side with the ratio vernemq / mosquitto.

Each broker is pinned to CPU 0 and the load generator
(C{../shared/tools/mqtt_bench.py}, dependency-free) to CPU 1, so the broker
gets one core, as mosquitto only ever uses one.

Scenarios (the ones docs/performance.md records):

  - 1->1 QoS 0 flood        delivered msg/s
  - 1->1 QoS 1 flood        delivered msg/s
  - 1->1 QoS 2 flood        delivered msg/s
  - 1->10 fan-out QoS 0     delivered msg/s (each message delivered 10 times)
  - QoS 1 at 1000 msg/s     latency p50 / p99 in ms

Usage::

    python benchmarks/compare.py [--quick] [--markdown] [--only vernemq|mosquitto]

This measures; it asserts nothing.  Speed targets live in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
BENCH = os.path.join(CHECKOUT, "..", "shared", "tools", "mqtt_bench.py")

BROKER_CPU = "0"
LOAD_CPU = "1"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port}")


def pinned(cpu: str, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu, *argv]
    return argv


@contextmanager
def mosquitto(directory: str) -> Iterator[tuple[int, int]]:
    port = freePort()
    conf = os.path.join(directory, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\nmax_inflight_messages 20\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen(pinned(BROKER_CPU, [binary, "-c", conf]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waitForPort(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def vernemq(directory: str) -> Iterator[tuple[int, int]]:
    port = freePort()
    conf = os.path.join(directory, "vernemq.conf")
    acl = os.path.join(directory, "vmq.acl")
    with open(acl, "w") as f:
        f.write("topic #\n")  # VerneMQ's default ACL: everyone may use every topic
    with open(conf, "w") as f:
        f.write(f"nodename = VerneMQ@127.0.0.1\nlistener.tcp.default = 127.0.0.1:{port}\n"
                f"vmq_acl.acl_file = {acl}\n"
                "allow_anonymous = on\nmax_online_messages = 100000\n"
                f"platform_data_dir = {directory}/data\n")
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile", os.path.join(directory, "node.log"),
            "vernemq", "-c", conf]
    proc = subprocess.Popen(pinned(BROKER_CPU, argv), cwd=directory, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waitForPort(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def runBench(port: int, pid: int, label: str, *args: str) -> dict[str, Any]:
    argv = pinned(LOAD_CPU, [sys.executable, BENCH, "--port", str(port), "--broker-pid",
                             str(pid), "--label", label, *args])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def medianRun(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field, the median of several runs of one scenario."""
    merged: dict[str, Any] = dict(results[0])
    for key, value in results[0].items():
        values = [r.get(key) for r in results]
        if isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values):
            median = statistics.median(values)
            merged[key] = round(median, 3) if isinstance(median, float) else median
    return merged


def scenarios(quick: bool) -> list[tuple[str, list[str], str]]:
    n = 1 if not quick else 4
    return [
        ("1->1 QoS 0 flood", ["--count", str(200000 // n), "--qos", "0"], "delivered_msgs_per_s"),
        ("1->1 QoS 1 flood", ["--count", str(50000 // n), "--qos", "1"], "delivered_msgs_per_s"),
        ("1->1 QoS 2 flood", ["--count", str(25000 // n), "--qos", "2"], "delivered_msgs_per_s"),
        ("1->10 fan-out QoS 0", ["--subs", "10", "--count", str(50000 // n), "--qos", "0"],
         "delivered_msgs_per_s"),
        ("QoS 1 @1000/s p50 ms", ["--rate", "1000", "--count", str(10000 // n), "--qos", "1"],
         "lat_ms_p50"),
        ("QoS 1 @1000/s p99 ms", [], "lat_ms_p99"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the messages")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--only", choices=["vernemq", "mosquitto"])
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each scenario per broker, interleaved; the median is shown")
    args = parser.parse_args()

    brokers = {"mosquitto": mosquitto, "vernemq": vernemq}
    if args.only:
        brokers = {args.only: brokers[args.only]}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in brokers}
    # Brokers alternate within each round, so a noisy moment on a shared
    # machine hits both; the median of the rounds is reported.
    for _ in range(max(1, args.repeat)):
        for label, benchArgs, _field in scenarios(args.quick):
            if not benchArgs:  # a second figure of the previous run
                continue
            for name, start in brokers.items():
                # A fresh broker per run so no run inherits another's backlog.
                with tempfile.TemporaryDirectory() as directory, start(directory) as (port, pid):
                    result = runBench(port, pid, f"{name} {label}", *benchArgs)
                runs[name].setdefault(label, []).append(result)
                print(f"{name:10} {label:24} {json.dumps(result)}", file=sys.stderr)
    results: dict[str, dict[str, dict[str, Any]]] = {
        name: {label: medianRun(rs) for label, rs in byLabel.items()}
        for name, byLabel in runs.items()
    }

    rows = []
    previous = ""
    for label, benchArgs, field in scenarios(args.quick):
        source = label if benchArgs else previous
        previous = source if benchArgs else previous
        row = [label]
        values = []
        for name in brokers:
            value = results[name].get(source, {}).get(field)
            values.append(value)
            row.append("-" if value is None else str(value))
        if len(values) == 2 and all(isinstance(v, (int, float)) and v for v in values):
            mos, vmq = values
            row.append(f"{vmq / mos:.2f}")
        rows.append(row)
    header = ["scenario", *brokers]
    if len(brokers) == 2:
        header.append("vernemq/mosquitto")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        table = [header, *rows]
        widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))
    loss = {f"{n} {s}": r.get("loss_pct") for n, rs in results.items() for s, r in rs.items()
            if r.get("loss_pct")}
    if loss:
        print(f"\nloss (%): {json.dumps(loss)}")


if __name__ == "__main__":
    main()
