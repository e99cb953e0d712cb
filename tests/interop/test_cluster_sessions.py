"""
Three real nodes (C{twistd vernemq}) joined with the real C{vmq-admin}: a
paho-mqtt persistent session (C{clean_session} false, a QoS 1
subscription) made on node 1 goes away; ten QoS 1 messages published on
node 2 are queued on node 1; the same client id reconnecting on node 3
finds its session present and gets all ten (the session and its queue
moved from node 1 to node 3, L{vernemq.cluster.sessions}).
"""

from __future__ import annotations

import queue
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.clusternodes import dataListener, startJoinedCluster
from tests.interop.nodeprocess import NodeProcess
from tests.interop.test_paho import Client, mqtt

COOKIE = "cluster-sessions-test-cookie"


class ClusterSessionTests(SynchronousTestCase):
    """A persistent session moves between processes with its queue."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        self.names, self.nodes = startJoinedCluster(
            self, "s", COOKIE, [dataListener(), dataListener(), dataListener()]
        )

    def client(self, node: NodeProcess, clientId: str, clean: bool = True) -> Client:
        c = Client(node.port, clientId, mqtt.MQTTv311, clean=clean)
        self.addCleanup(c.client.loop_stop)
        return c

    def test_persistentSessionMovesWithQueue(self) -> None:
        """
        Subscribe (QoS 1, clean_session false) on node 1, disconnect,
        publish 10 QoS 1 messages on node 2, reconnect on node 3: session
        present, all 10 delivered once.
        """
        n1, n2, n3 = self.nodes
        sub = self.client(n1, "mover", clean=False)
        flags, rc = sub.connect()
        self.assertEqual(0, rc)
        sub.subscribe("m/#", 1)
        pub = self.client(n2, "publisher")
        pub.connect()

        # Wait until node 2 routes m/# to node 1 (subscription replicated,
        # data link up): probe until one arrives.
        deadline = time.monotonic() + 15
        while True:
            self.assertLess(time.monotonic(), deadline, "no probe crossed the cluster")
            pub.publish("m/probe", b"p", 1)
            try:
                sub.receive(timeout=0.3)
                break
            except queue.Empty:
                continue
        sub.close()
        time.sleep(0.3)  # late probes land in node 1's queue too

        for i in range(10):
            pub.publish("m/x", f"q{i}".encode(), 1)
        pub.close()
        time.sleep(0.3)  # the data link delivers them to node 1

        back = self.client(n3, "mover", clean=False)
        flags, rc = back.connect()
        self.assertEqual(0, rc)
        self.assertTrue(flags.session_present)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 10 and time.monotonic() < deadline:
            try:
                message = back.receive(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                break
            if message.topic == "m/x":
                got.append(message.payload)
        self.assertEqual([f"q{i}".encode() for i in range(10)], got)
        # Nothing more (no duplicates) within half a second.
        time.sleep(0.5)
        extra = []
        while True:
            try:
                extra.append(back.receive(timeout=0.01))
            except queue.Empty:
                break
        self.assertEqual([], [m.payload for m in extra if m.topic == "m/x"])
        back.close()
        self.assertRegex(n1.log(), r"handed over to node s3@127\.0\.0\.1: moved with 1\d messages")
