"""
Bad input on a real node's data port (C{listener.vmq.clustering}): junk, a
hello from a node that is not a member, and an oversize frame from a
connection claiming a member's name.  Each gets VerneMQ's refusal reason,
one log line and a closed connection; the node and its real data link go
on routing messages between real clients.
"""

from __future__ import annotations

import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.clusternodes import startJoinedCluster
from tests.interop.nodeprocess import NodeProcess, freePort, requireProgram
from tests.interop.test_mosquitto_clients import Subscriber, publish
from vernemq.cluster.dataframes import CONNECT_ACK, SEND, encode_hello

COOKIE = "cluster-badinput-test-cookie"


def closedAfter(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """
    Send C{data} to C{port} on loopback and read until the node closes the
    connection; what it sent back.
    """
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(4096)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
    raise AssertionError(f"the node did not close the connection within {timeout}s")


class DataPortBadInputTests(SynchronousTestCase):
    """Junk on the data port of a node in a two-node cluster."""

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        self.dataPorts = [freePort(), freePort()]
        self.names, self.nodes = startJoinedCluster(
            self,
            "b",
            COOKIE,
            [[f"listener.vmq.clustering = 127.0.0.1:{port}"] for port in self.dataPorts],
        )

    def crossing(self, source: NodeProcess, target: NodeProcess, topic: str) -> None:
        """A message published on C{source} reaches a subscriber on C{target}."""
        sub = Subscriber(target.port, "-t", topic, "-v")
        deadline = time.monotonic() + 15
        while sub.process.poll() is None:
            self.assertLess(time.monotonic(), deadline, f"nothing crossed to {target.port}")
            publish(source.port, "-t", topic, "-m", "x")
            time.sleep(0.3)
        self.assertIn(f"{topic} x", sub.messages())

    def test_refusals(self) -> None:
        """
        Junk, a non-member's hello and an oversize frame are each refused
        with one log line naming the reason, and the connection is closed;
        afterwards messages still cross between the nodes both ways.
        """
        n1, n2 = self.nodes
        self.crossing(n1, n2, "before/1")
        port = self.dataPorts[1]

        self.assertEqual(b"", closedAfter(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        self.assertEqual(b"", closedAfter(port, encode_hello("intruder@127.0.0.1")))
        # A connection claiming node 1's name (the address matches: both are
        # on loopback) that then announces a frame over the 64 MiB cap.
        answer = closedAfter(
            port, encode_hello(self.names[0]) + SEND + (1 << 31).to_bytes(4, "big")
        )
        self.assertEqual(CONNECT_ACK, answer)

        time.sleep(0.5)
        log = n2.log()
        for reason in (
            "invalid_cluster_frame",
            "remote_node_not_available",
            "cluster_frame_too_large",
        ):
            lines = [line for line in log.splitlines() if reason in line]
            self.assertEqual(1, len(lines), f"{reason}: {lines}")
            self.assertIn("closing data link from 127.0.0.1:", lines[0])

        # Both nodes are alive and route both ways (node 1's real link to
        # node 2 reconnects if the impostor displaced it).
        self.crossing(n1, n2, "after/1")
        self.crossing(n2, n1, "after/2")
        for node in self.nodes:
            self.assertIsNone(node.process.poll() if node.process else 0)
