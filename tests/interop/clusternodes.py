"""
Real multi-node clusters for the interop tests: C{vmq-admin} against a node
process, C{cluster show} as a dict, polling, and three (or more) twistd
nodes started and joined the way an operator would.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import CHECKOUT, NodeProcess, freePort


def vmqAdmin(node: NodeProcess, *args: str) -> tuple[int, str, str]:
    """
    Run vmq-admin against C{node} (inside its network namespace, if it has
    one): C{(status, stdout, stderr)}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [*node.prefix, sys.executable, "-m", "vernemq.admin.cli", "-c", node.configPath, *args],
        capture_output=True,
        env=env,
        timeout=90,
        cwd=node.directory,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def jsonTable(node: NodeProcess, *args: str) -> list[dict[str, object]]:
    """The rows of a vmq-admin command's C{--format=json} table."""
    status, out, err = vmqAdmin(node, *args, "--format=json")
    assert status == 0, (status, out, err)
    if out.strip() == "No metadata.":
        return []
    [element] = json.loads(out)
    assert element["type"] == "table", element
    rows: list[dict[str, object]] = element["table"]
    return rows


def clusterStatus(node: NodeProcess) -> dict[str, bool]:
    """C{cluster show} as C{{node: running}}."""
    return {str(row["Node"]): bool(row["Running"]) for row in jsonTable(node, "cluster", "show")}


def waitFor(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> float:
    """Poll C{condition} until it holds; the seconds it took."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)


def startJoinedCluster(
    test: SynchronousTestCase,
    prefix: str,
    cookie: str,
    extra: Sequence[Sequence[str]] = ((), (), ()),
    watchers: int = 1,
) -> tuple[list[str], list[NodeProcess]]:
    """
    Start one node per entry of C{extra} (named C{<prefix><i>@127.0.0.1},
    sharing C{cookie} and one test epmd, each with its own clustering
    listener plus the configuration lines of its C{extra} entry), join them
    all to the first with C{vmq-admin cluster join}, and wait until the
    first C{watchers} nodes show every node running.  Nodes stop at cleanup.

    @return: the node names and the node processes, in order.
    """
    base = test.mktemp()
    epmdPort = freePort()
    names = [f"{prefix}{i}@127.0.0.1" for i in range(1, len(extra) + 1)]
    nodes: list[NodeProcess] = []
    for i, (name, lines) in enumerate(zip(names, extra, strict=True), 1):
        node = NodeProcess(
            os.path.join(base, f"{prefix}{i}"),
            [
                f"nodename = {name}",
                f"distributed_cookie = {cookie}",
                "erlang.epmd.mode = auto",
                f"erlang.epmd.port = {epmdPort}",
                *lines,
            ],
        )
        nodes.append(node)
        test.addCleanup(node.stop)
    for node in nodes:
        node.start()
    for node in nodes[1:]:
        test.assertEqual(
            (0, "Done\n", ""),
            vmqAdmin(node, "cluster", "join", f"discovery-node={names[0]}"),
        )
    everyone = dict.fromkeys(names, True)
    for node in nodes[:watchers]:
        waitFor(lambda node=node: clusterStatus(node) == everyone, 10, "all running")
    return names, nodes


def dataListener() -> list[str]:
    """The configuration line of a plain data channel on a free loopback port."""
    return [f"listener.vmq.clustering = 127.0.0.1:{freePort()}"]


class _Receiver(Protocol):
    def receive(self, timeout: float = ...) -> Any: ...


def collect(client: _Receiver, topic: str, count: int, timeout: float) -> list[bytes]:
    """
    The payloads of the messages on C{topic} a (paho) test client receives
    until it has C{count} of them or C{timeout} seconds passed; messages on
    other topics are skipped.
    """
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = client.receive(timeout=left)
        except queue.Empty:
            break
        if message.topic == topic:
            got.append(message.payload)
    return got


def drain(client: _Receiver, topic: str | None = None, wait: float = 0.0) -> list[bytes]:
    """
    After C{wait} seconds, the payloads of the messages a test client has
    received and not read yet (only those on C{topic}, if given).
    """
    if wait:
        time.sleep(wait)
    got: list[bytes] = []
    while True:
        try:
            message = client.receive(timeout=0.01)
        except queue.Empty:
            return got
        if topic is None or message.topic == topic:
            got.append(message.payload)


def waitForExit(node: NodeProcess, timeout: float) -> int:
    """Wait until C{node}'s process exits by itself; its exit status."""
    assert node.process is not None, "the node was not started"
    try:
        return node.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the node did not exit within {timeout}s") from None
