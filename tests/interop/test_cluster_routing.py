"""
Three real nodes (C{twistd vernemq}) joined with the real C{vmq-admin},
routing real clients' messages across the cluster: subscribe with
C{mosquitto_sub} on node 1, publish with C{mosquitto_pub} on node 3, the
message arrives once (over the C{listener.vmq.clustering} data channel);
a retained message published on node 2 is seen by subscribers on nodes 1
and 3 (replicated through the metadata store over the distribution).
L{TLSClusterRoutingTests} runs the same over C{listener.vmqs} (TLS with
client certificates required).
"""

from __future__ import annotations

import os
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.clusternodes import startJoinedCluster, waitFor
from tests.interop.nodeprocess import freePort, requireProgram
from tests.interop.test_mosquitto_clients import Subscriber, publish
from tests.tlshelpers import Certificates

COOKIE = "cluster-routing-test-cookie"


def retainedLines(port: int, topic_filter: str) -> list[str]:
    """The retained messages a fresh C{mosquitto_sub} gets (waits at most 2 s)."""
    result = subprocess.run(
        [
            requireProgram("mosquitto_sub"),
            "-h", "127.0.0.1", "-p", str(port),
            "-t", topic_filter, "-v", "-C", "1", "-W", "2",
        ],
        capture_output=True,
        timeout=20,
    )
    return result.stdout.decode("utf-8", "replace").splitlines()


class ClusterRoutingTests(SynchronousTestCase):
    """Publish/subscribe and retained messages across three processes."""

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        base = self.mktemp()
        self.names, self.nodes = startJoinedCluster(
            self, "r", COOKIE, [self.dataListener(base) for _ in range(3)]
        )

    def dataListener(self, base: str) -> list[str]:
        """The configuration lines of one node's data channel listener."""
        return [f"listener.vmq.clustering = 127.0.0.1:{freePort()}"]

    def test_publishAcrossNodes(self) -> None:
        """
        Subscribe on node 1, publish on node 3: delivered exactly once; a
        retained message published on node 2 reaches later subscribers on
        nodes 1 and 3.
        """
        n1, n2, n3 = self.nodes

        # Wait until node 3 routes t/# to node 1 (the subscription is
        # replicated and the data link is up): probe until one arrives.
        probe = Subscriber(n1.port, "-t", "t/#", "-v")
        deadline = time.monotonic() + 15
        while probe.process.poll() is None:
            self.assertLess(time.monotonic(), deadline, "no probe crossed the cluster")
            publish(n3.port, "-t", "t/probe", "-m", "p")
            time.sleep(0.3)
        self.assertIn("t/probe p", probe.messages())

        # Now exactly once: a fresh subscriber collects for 3 s.
        once = Subscriber(n1.port, "-t", "t/#", "-v", "-q", "1", "-W", "3", count=2)
        publish(n3.port, "-t", "t/once", "-m", "hello", "-q", "1")
        got = [line for line in once.messages() if line.startswith("t/")]
        self.assertEqual(["t/once hello"], got)

        # Retained on node 2, seen on nodes 1 and 3.
        publish(n2.port, "-t", "r/1", "-m", "kept", "-r", "-q", "1")
        for node in (n1, n3):
            waitFor(
                lambda node=node: retainedLines(node.port, "r/#") == ["r/1 kept"],
                10,
                f"retained message on {node.port}",
                step=0.1,
            )
        # Cleared on node 3, gone on node 1.
        publish(n3.port, "-t", "r/1", "-n", "-r", "-q", "1")
        waitFor(lambda: retainedLines(n1.port, "r/#") == [], 10, "retained cleared", step=0.1)

        self.assertIn("data link from r3@127.0.0.1 accepted", n1.log())

    def test_sharedGroupAcrossNodes(self) -> None:
        """
        Members of one C{$share} group on nodes 1 and 2; 20 messages
        published on node 3 (no member there) are spread over both, each
        delivered once.
        """
        n1, n2, n3 = self.nodes
        members = [
            Subscriber(node.port, "-t", "$share/g/s/#", "-v", "-W", "5", count=100)
            for node in (n1, n2)
        ]
        time.sleep(1.0)  # the subscriptions replicate within milliseconds
        lines = "".join(f"m{i}\n" for i in range(20)).encode()
        result = subprocess.run(
            [
                requireProgram("mosquitto_pub"),
                "-h", "127.0.0.1", "-p", str(n3.port), "-t", "s/x", "-q", "1", "-l",
            ],
            input=lines,
            capture_output=True,
            timeout=20,
        )
        self.assertEqual(0, result.returncode, result.stderr)
        got = [[line for line in m.messages() if line.startswith("s/")] for m in members]
        self.assertEqual(
            sorted(got[0] + got[1], key=lambda line: int(line.split("m")[1])),
            [f"s/x m{i}" for i in range(20)],
        )
        self.assertTrue(got[0] and got[1], got)


class TLSClusterRoutingTests(ClusterRoutingTests):
    """
    The same over C{listener.vmqs}: every node serves (and, as VerneMQ's
    peers do, is dialled on) its TLS data listener, with client
    certificates verified against the CA.
    """

    def dataListener(self, base: str) -> list[str]:
        """A C{vmqs} listener with CA-signed certificates, client certificates required."""
        certs = getattr(self, "certs", None)
        if certs is None:
            certs = self.certs = Certificates(os.path.abspath(os.path.join(base, "certs")))
        return [
            f"listener.vmqs.clustering = 127.0.0.1:{freePort()}",
            *certs.listenerLines("listener.vmqs.clustering", require_certificate="on"),
        ]

    def test_publishAcrossNodes(self) -> None:
        """As over TCP; every node says it serves the data channel over TLS."""
        super().test_publishAcrossNodes()
        for node in self.nodes:
            self.assertIn("vmqs clustering on 127.0.0.1:", node.log())
