"""
C{vmq-admin cluster leave} of an online node, with three real nodes
(C{twistd vernemq}) and paho-mqtt clients:

  - without C{-k}: the node stops its MQTT listeners (a new connection is
    refused) but stays a member, and its established connections keep
    working (VerneMQ: "Use -k to teardown and migrate existing sessions");
  - with C{-k}: it disconnects its clients, migrates the queues of its
    persistent sessions to the remaining nodes, leaves and its process
    exits; the remaining nodes list two members; each client reconnecting
    (C{clean_session} false) on a remaining node finds its session and
    gets every QoS 1 message queued for it, once.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.clusternodes import (
    clusterStatus,
    collect,
    dataListener,
    drain,
    startJoinedCluster,
    vmqAdmin,
    waitFor,
    waitForExit,
)
from tests.interop.nodeprocess import NodeProcess, portIsFree
from tests.interop.test_paho import Client, mqtt

COOKIE = "cluster-leave-test-cookie"


class ClusterLeaveTests(SynchronousTestCase):
    """An online node leaves: listeners first, then sessions and queues with -k."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        self.names, self.nodes = startJoinedCluster(
            self, "l", COOKIE, [dataListener(), dataListener(), dataListener()]
        )

    def client(self, node: NodeProcess, clientId: str, clean: bool = True) -> Client:
        c = Client(node.port, clientId, mqtt.MQTTv311, clean=clean)
        self.addCleanup(c.client.loop_stop)
        return c

    def test_leaveOnlineNode(self) -> None:
        """
        Node 2 hosts an offline persistent session ("away", ten QoS 1
        messages queued) and an online one ("stays"); C{cluster leave}
        without C{-k}, then with C{-k}, run on node 1.
        """
        n1, n2, n3 = self.nodes
        name1, name2, name3 = self.names
        queued = [f"q{i}".encode() for i in range(10)]
        later = [f"r{i}".encode() for i in range(3)]

        away = self.client(n2, "away", clean=False)
        self.assertEqual(0, away.connect()[1])
        away.subscribe("l/#", 1)
        stays = self.client(n2, "stays", clean=False)
        self.assertEqual(0, stays.connect()[1])
        stays.subscribe("l/#", 1)
        pub = self.client(n1, "publisher")
        pub.connect()

        # Until node 1 routes l/# to node 2 (subscriptions replicated, data
        # link up): probe until one arrives at both.
        deadline = time.monotonic() + 15
        seen: set[str] = set()
        while seen != {"away", "stays"}:
            self.assertLess(time.monotonic(), deadline, "no probe crossed the cluster")
            pub.publish("l/probe", b"p", 1)
            for name, c in (("away", away), ("stays", stays)):
                if collect(c, "l/probe", 1, 0.3):
                    seen.add(name)
        away.close()
        time.sleep(0.3)  # late probes land in node 2's queue too

        for payload in queued:
            pub.publish("l/x", payload, 1)

        # Phase 1, without -k: the listeners stop, the node stays a member,
        # its established connection keeps working.
        self.assertEqual(
            (0, "Done! Use -k to teardown and migrate existing sessions!\n", ""),
            vmqAdmin(n1, "cluster", "leave", f"node={name2}"),
        )
        self.assertTrue(portIsFree(n2.port), "node 2 still accepts MQTT connections")
        self.assertEqual({name1: True, name2: True, name3: True}, clusterStatus(n1))
        self.assertEqual(queued, collect(stays, "l/x", 10, 10))

        # Phase 2, -k: sessions killed, queues migrated, node 2 leaves and
        # its process exits.
        started = time.monotonic()
        self.assertEqual(
            (0, "Done\n", ""),
            vmqAdmin(n1, "cluster", "leave", f"node={name2}", "-k", "-t", "20"),
        )
        waitForExit(n2, 15)
        self.assertLess(time.monotonic() - started, 20)
        stays.disconnects.get(timeout=5)  # its connection was closed
        everyone = {name1: True, name3: True}
        waitFor(lambda: clusterStatus(n1) == everyone, 10, "node 1 shows two nodes")
        waitFor(lambda: clusterStatus(n3) == everyone, 10, "node 3 shows two nodes")
        log2 = n2.log()
        self.assertRegex(log2, r"migrated 2/2 queues and 1\d/1\d messages")
        self.assertIn("left the cluster; stopping", log2)

        # Published after the leave: queued on the nodes that took the
        # sessions over (the subscriber entries name them now).
        for payload in later:
            pub.publish("l/x", payload, 1)
        pub.close()
        time.sleep(0.3)

        back = self.client(n3, "away", clean=False)
        flags, rc = back.connect()
        self.assertEqual(0, rc)
        self.assertTrue(flags.session_present)
        self.assertEqual(queued + later, collect(back, "l/x", 13, 10))

        again = self.client(n1, "stays", clean=False)
        flags, rc = again.connect()
        self.assertEqual(0, rc)
        self.assertTrue(flags.session_present)
        self.assertEqual(later, collect(again, "l/x", 3, 10))

        # Nothing more (no duplicates) within half a second.
        self.assertEqual([], drain(back, "l/x", wait=0.5))
        self.assertEqual([], drain(again, "l/x"))
        back.close()
        again.close()

    def test_leaveKillDirectly(self) -> None:
        """
        C{cluster leave -k} at once (run on node 2, for node 3): node 3
        stops listening and exits; its offline session's five queued QoS 1
        messages reach the client reconnecting on node 1.
        """
        n1, n2, n3 = self.nodes
        name1, name2, name3 = self.names
        queued = [f"k{i}".encode() for i in range(5)]
        away = self.client(n3, "gone", clean=False)
        self.assertEqual(0, away.connect()[1])
        away.subscribe("k/#", 1)
        pub = self.client(n2, "publisher")
        pub.connect()
        deadline = time.monotonic() + 15
        while not collect(away, "k/probe", 1, 0.3):
            self.assertLess(time.monotonic(), deadline, "no probe crossed the cluster")
            pub.publish("k/probe", b"p", 1)
        away.close()
        time.sleep(0.3)
        for payload in queued:
            pub.publish("k/x", payload, 1)
        time.sleep(0.3)  # the data link delivers them to node 3

        self.assertEqual(
            (0, "Done\n", ""),
            vmqAdmin(n2, "cluster", "leave", f"node={name3}", "-k", "-i", "1"),
        )
        self.assertEqual(0, waitForExit(n3, 15))
        self.assertTrue(portIsFree(n3.port))
        everyone = {name1: True, name2: True}
        waitFor(lambda: clusterStatus(n1) == everyone, 10, "node 1 shows two nodes")
        self.assertRegex(n3.log(), r"migrated 1/1 queues and \d+/\d+ messages")

        back = self.client(n1, "gone", clean=False)
        flags, rc = back.connect()
        self.assertEqual(0, rc)
        self.assertTrue(flags.session_present)
        self.assertEqual(queued, collect(back, "k/x", 5, 10))
        self.assertEqual([], drain(back, "k/x", wait=0.5))
        back.close()
        pub.close()
