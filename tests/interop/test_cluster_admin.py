"""
Three real nodes (C{twistd vernemq}) clustered with the real C{vmq-admin}:
join, show, a killed node detected and rejoining by itself after a
restart, a silent (stopped) node detected within the detection time, and
C{cluster leave} of a dead node.

The nodes share one epmd (the first node serves it on a free port,
C{erlang.epmd.mode = auto}) and a cookie; C{vmq-admin} runs as a
subprocess, C{python -m vernemq.admin.cli -c <conf> ...}.
"""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.clusternodes import clusterStatus, vmqAdmin, waitFor
from tests.interop.nodeprocess import NodeProcess, freePort

COOKIE = "cluster-admin-test-cookie"
#: netsplit_detection_time of the nodes, in seconds (the default).
DETECTION = 5.0


class ClusterAdminTests(SynchronousTestCase):
    """Join, show, netsplit detection, rejoin and leave across three processes."""

    def setUp(self) -> None:
        base = self.mktemp()
        epmdPort = freePort()
        self.names = [f"n{i}@127.0.0.1" for i in (1, 2, 3)]
        self.nodes: list[NodeProcess] = []
        for i, name in enumerate(self.names, 1):
            node = NodeProcess(
                os.path.join(base, f"n{i}"),
                [
                    f"nodename = {name}",
                    f"distributed_cookie = {COOKIE}",
                    "erlang.epmd.mode = auto",
                    f"erlang.epmd.port = {epmdPort}",
                ],
            )
            self.nodes.append(node)
            self.addCleanup(node.stop)
        for node in self.nodes:
            node.start()

    def kill(self, node: NodeProcess) -> None:
        assert node.process is not None
        node.process.kill()
        node.process.wait()
        node._log.close()

    def test_cluster(self) -> None:
        """
        Two nodes join the first with vmq-admin; every node shows all three
        running.  A SIGKILLed node is shown not running within the detection
        time and rejoins by itself when restarted; a stopped (silent) node
        is detected within the detection time too; a dead node removed with
        C{cluster leave} disappears from every node's table.
        """
        n1, n2, n3 = self.nodes
        name1, name2, name3 = self.names

        # Clear refusals: itself, and a node nobody runs.
        status, out, _ = vmqAdmin(n2, "cluster", "join", f"discovery-node={name2}")
        self.assertEqual((1, "Couldn't join cluster due to self_join\n"), (status, out))
        status, out, _ = vmqAdmin(n2, "cluster", "join", "discovery-node=nobody@127.0.0.1")
        self.assertEqual((1, "Couldn't join cluster due to not_reachable\n"), (status, out))

        for node in (n2, n3):
            self.assertEqual(
                (0, "Done\n", ""), vmqAdmin(node, "cluster", "join", f"discovery-node={name1}")
            )
        everyone = {name1: True, name2: True, name3: True}
        for node in self.nodes:
            waitFor(lambda node=node: clusterStatus(node) == everyone, 10, "all running")
        status, table, _ = vmqAdmin(n2, "cluster", "show")
        self.assertEqual(0, status)
        self.assertEqual(
            "+------------+-------+\n"
            "|    Node    |Running|\n"
            "+------------+-------+\n"
            "|n1@127.0.0.1| true  |\n"
            "|n2@127.0.0.1| true  |\n"
            "|n3@127.0.0.1| true  |\n"
            "+------------+-------+\n"
            "\n",
            table,
        )

        # SIGKILL: the others notice within the detection time.
        self.kill(n3)
        took = waitFor(
            lambda: clusterStatus(n1) == {name1: True, name2: True, name3: False},
            DETECTION + 3,
            "killed node shown not running",
        )
        self.assertLess(took, DETECTION + 1)

        # Restarted, it rejoins by itself (its membership is persisted).
        n3.start()
        for node in self.nodes:
            waitFor(lambda node=node: clusterStatus(node) == everyone, 15, "rejoined")

        # A silent node (SIGSTOP: connections stay open, nothing answers).
        assert n3.process is not None
        n3.process.send_signal(signal.SIGSTOP)
        try:
            took = waitFor(
                lambda: clusterStatus(n2)[name3] is False,
                DETECTION + 3,
                "silent node shown not running",
            )
            self.assertLess(took, DETECTION + 1)
        finally:
            n3.process.send_signal(signal.SIGCONT)
        waitFor(lambda: clusterStatus(n2) == everyone, 10, "silent node back")

        # A dead node leaves: removed everywhere.
        self.kill(n3)
        waitFor(lambda: clusterStatus(n1)[name3] is False, DETECTION + 3, "dead again")
        self.assertEqual(
            (0, "Done\n", ""), vmqAdmin(n1, "cluster", "leave", f"node={name3}", "-t", "10")
        )
        for node in (n1, n2):
            waitFor(
                lambda node=node: clusterStatus(node) == {name1: True, name2: True},
                10,
                "left",
            )
        status, out, _ = vmqAdmin(n1, "cluster", "leave", f"node={name3}")
        self.assertEqual((1, f"Node '{name3}' wasn't part of the cluster\n"), (status, out))
        self.assertIn("netsplit detected", n1.log())
