"""
Three real nodes (C{twistd vernemq}) joined with the real C{vmq-admin},
routing real clients' messages across the cluster: subscribe with
C{mosquitto_sub} on node 1, publish with C{mosquitto_pub} on node 3, the
message arrives once (over the C{listener.vmq.clustering} data channel);
a retained message published on node 2 is seen by subscribers on nodes 1
and 3 (replicated through the metadata store over the distribution).
L{TLSClusterRoutingTests} runs the same over C{listener.vmqs} (TLS with
client certificates required).  L{SharedMemberKilledTests}: a shared
subscription member's node is killed while messages enqueued to it are
unanswered, and they reach the member on another node.
"""

from __future__ import annotations

import os
import signal
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


class SharedMemberKilledTests(SynchronousTestCase):
    """
    Acknowledged remote enqueues: with C{shared_subscription_timeout_action
    = requeue}, messages handed to a group member whose node dies before
    answering go to another member.
    """

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        self.names, self.nodes = startJoinedCluster(
            self,
            "k",
            COOKIE,
            [
                [
                    f"listener.vmq.clustering = 127.0.0.1:{freePort()}",
                    "shared_subscription_timeout_action = requeue",
                    # Long: only the node going down may requeue in this test.
                    "remote_enqueue_timeout = 60000",
                    # Node 2 frozen may count as a netsplit before we are done.
                    "allow_publish_during_netsplit = on",
                ]
                for _ in range(3)
            ],
        )

    def test_memberNodeKilled(self) -> None:
        """
        Members of C{$share/g/k/#} on nodes 2 and 3.  Node 2 is frozen
        (SIGSTOP), 10 QoS 1 messages are published on node 1, which spreads
        them over both members; node 2 is then killed (SIGKILL) and node 1
        hands the ones node 2 never answered for to the member on node 3,
        which ends up with all 10.
        """
        n1, n2, n3 = self.nodes
        for node in (n2, n3):
            waitFor(
                lambda node=node: f"data link from {self.names[0]} accepted" in node.log(),
                15,
                f"the data link from node 1 to {node.port}",
            )
        doomed = Subscriber(n2.port, "-t", "$share/g/k/#", "-v", "-q", "1", count=100)
        self.addCleanup(doomed.process.kill)
        survivor = Subscriber(n3.port, "-t", "$share/g/k/#", "-v", "-q", "1", count=10)
        self.addCleanup(survivor.process.kill)
        time.sleep(1.0)  # the subscriptions replicate within milliseconds

        # Connected before node 2 freezes (a CONNECT is coordinated with it).
        publisher = subprocess.Popen(
            [
                requireProgram("stdbuf"), "-oL", requireProgram("mosquitto_pub"),
                "-h", "127.0.0.1", "-p", str(n1.port), "-d", "-t", "k/x", "-q", "1", "-l",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(publisher.kill)
        assert publisher.stdin is not None and publisher.stdout is not None
        output = []
        while not any("CONNACK" in line for line in output):
            line = publisher.stdout.readline().decode("utf-8", "replace")
            self.assertTrue(line, f"mosquitto_pub did not connect: {output}")
            output.append(line)

        assert n2.process is not None
        n2.process.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: n2.process.poll() is None and n2.process.kill())
        publisher.stdin.write("".join(f"m{i}\n" for i in range(10)).encode())
        publisher.stdin.close()
        rest = publisher.stdout.read().decode("utf-8", "replace")
        self.assertEqual(0, publisher.wait(20), output + [rest])
        self.assertEqual(rest.count("PUBACK"), 10, rest)
        time.sleep(0.5)
        n2.process.send_signal(signal.SIGKILL)
        n2.process.wait(10)

        got = [line for line in survivor.messages() if line.startswith("k/")]
        self.assertEqual(
            sorted(got, key=lambda line: int(line.split("m")[1])),
            [f"k/x m{i}" for i in range(10)],
        )
        # Some had gone to node 2 (each of the 10 did with probability 1/2).
        self.assertIn("shared-subscription enqueues outstanding", n1.log())


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
