"""
Shared subscriptions on a real node, driven by paho-mqtt 2.x: two clients
in one group share a stream, each message reaching exactly one of them.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess
from tests.interop.test_paho import Client

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover - the test extra installs it
    mqtt = None  # type: ignore[assignment]

#: Messages published per test.
COUNT = 200


class SharedSubscriptionTests(SynchronousTestCase):
    """paho-mqtt clients sharing a subscription on a real node."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        self.node = NodeProcess(self.mktemp()).start()
        self.addCleanup(self.node.stop)

    def client(self, clientId: str, version: int, **kwargs: Any) -> Client:
        c = Client(self.node.port, clientId, version, **kwargs)
        self.addCleanup(c.client.loop_stop)
        return c

    def shareOnce(self, version: int, qos: int) -> None:
        members = []
        for name in ("worker-a", "worker-b"):
            member = self.client(name, version)
            member.connect()
            granted = member.subscribe("$share/workers/jobs/+", qos)
            self.assertEqual(qos, getattr(granted[0], "value", granted[0]))
            # A plain subscription to the end marker: every member gets it,
            # after every job the publisher sent before it.
            member.subscribe("jobs-done", qos)
            members.append(member)
        pub = self.client("producer", version)
        pub.connect()
        for i in range(COUNT):
            pub.publish(f"jobs/{i % 7}", b"%d" % i, qos)
        pub.publish("jobs-done", b"end", qos)
        received: list[list[bytes]] = []
        for member in members:
            payloads = []
            while True:
                message = member.receive()
                if message.topic == "jobs-done":
                    break
                self.assertEqual(message.qos, qos)
                payloads.append(message.payload)
            received.append(payloads)
            member.close()
        pub.close()
        counts = Counter(p for payloads in received for p in payloads)
        self.assertEqual(set(counts), {b"%d" % i for i in range(COUNT)})
        self.assertEqual({1}, set(counts.values()), "a message reached two members")
        self.assertTrue(all(received), "one member got every message")

    def test_sharedV5(self) -> None:
        """MQTT 5.0, QoS 1: every job reaches exactly one worker."""
        self.shareOnce(mqtt.MQTTv5, 1)

    def test_sharedV311(self) -> None:
        """MQTT 3.1.1 (VerneMQ allows $share there), QoS 2."""
        self.shareOnce(mqtt.MQTTv311, 2)
