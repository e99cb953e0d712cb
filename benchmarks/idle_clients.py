#!/usr/bin/env python3
"""
Memory per idle connection: connect N MQTT clients that stay idle, and read
the broker's resident set size (VmRSS) before and after.

Runs this node (and, unless C{--only vernemq}, Debian's mosquitto for
comparison) in a subprocess, raises the open-file limit for both, connects
N clients with raw sockets (MQTT 3.1.1 CONNECT, keepalive 0, each with its
own client id), waits for every CONNACK, and prints KiB per connection::

    python benchmarks/idle_clients.py [--clients 10000] [--only vernemq|mosquitto]

This measures; it asserts nothing.  Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import mosquitto, vernemq  # noqa: E402


def rss_kib(pid: int) -> int:
    """The resident set size of process C{pid} in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with clean session and keepalive 0."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    return bytes((0x10, len(body))) + body


def connect_idle(port: int, count: int, timeout: float = 120.0) -> list[socket.socket]:
    """Open C{count} connections, each CONNECTed and acknowledged."""
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    waiting = 0
    batch = 200
    deadline = time.monotonic() + timeout
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(connect_packet(f"idle-{i}"))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
            waiting += 1
        while waiting > batch:  # at most one batch of CONNECTs outstanding
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for CONNACKs")
            for key, _ in sel.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(16)
                if not data.startswith(b"\x20\x02"):
                    raise RuntimeError(f"unexpected answer {data!r}")
                sel.unregister(sock)
                waiting -= 1
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for CONNACKs")
        for key, _ in sel.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sock.recv(16)
            sel.unregister(sock)
            waiting -= 1
    return socks


def measure(name: str, start: object, clients: int) -> tuple[int, int]:
    """Return (RSS before, RSS after) in KiB for broker C{name}."""
    with tempfile.TemporaryDirectory() as directory, start(directory) as (port, pid):  # type: ignore[operator]
        time.sleep(0.5)
        before = rss_kib(pid)
        socks = connect_idle(port, clients)
        time.sleep(1.0)
        after = rss_kib(pid)
        for s in socks:
            s.close()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--only", choices=["vernemq", "mosquitto"])
    args = parser.parse_args()
    # This process and the broker each hold one descriptor per client.
    want = args.clients + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"need {want} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    brokers = {"mosquitto": mosquitto, "vernemq": vernemq}
    if args.only:
        brokers = {args.only: brokers[args.only]}
    print(f"| broker | RSS before (MiB) | RSS with {args.clients} idle clients (MiB) "
          "| KiB per connection |")
    print("|---|---|---|---|")
    for name, start in brokers.items():
        before, after = measure(name, start, args.clients)
        per = (after - before) / args.clients
        print(f"| {name} | {before / 1024:.1f} | {after / 1024:.1f} | {per:.1f} |")


if __name__ == "__main__":
    main()
