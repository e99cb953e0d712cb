"""
A real node driven by paho-mqtt 2.x, MQTT 3.1.1 and 5.0: QoS flows,
persistent sessions, wills, takeover.
"""

from __future__ import annotations

import queue
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError:  # pragma: no cover - the test extra installs it
    mqtt = None


class Client:
    """A paho client on its own network thread, with blocking helpers."""

    def __init__(self, port: int, clientId: str, version: int, clean: bool = True,
                 will: tuple[str, bytes, int] | None = None,
                 sessionExpiry: int | None = None) -> None:
        self.port = port
        self.version = version
        self.messages: queue.Queue[Any] = queue.Queue()
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[Any] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        kwargs: dict[str, Any] = {}
        if version != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=clientId,
                                  protocol=version, reconnect_on_failure=False,
                                  **kwargs)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc, p))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        if will is not None:
            self.client.will_set(will[0], will[1], will[2])
        self.clean = clean
        self.sessionExpiry = sessionExpiry

    def connect(self) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {}
        if self.version == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean
            if self.sessionExpiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.sessionExpiry
                kwargs["properties"] = props
        self.client.connect("127.0.0.1", self.port, keepalive=30, **kwargs)
        self.client.loop_start()
        flags, rc, _ = self.connacks.get(timeout=10)
        return flags, rc

    def subscribe(self, topic: str, qos: int) -> Any:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def receive(self, timeout: float = 10) -> Any:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the will should fire)."""
        sock = self.client.socket()
        self.client.loop_stop()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class PahoTests(SynchronousTestCase):
    """paho-mqtt against a real node."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        self.node = NodeProcess(self.mktemp()).start()
        self.addCleanup(self.node.stop)

    def client(self, clientId: str, version: int, **kwargs: Any) -> Client:
        c = Client(self.node.port, clientId, version, **kwargs)
        self.addCleanup(c.client.loop_stop)
        return c

    def qosFlows(self, version: int) -> None:
        sub = self.client("sub", version)
        sub.connect()
        granted = sub.subscribe("t/#", 2)
        self.assertEqual(2, getattr(granted[0], "value", granted[0]))
        pub = self.client("pub", version)
        pub.connect()
        for qos in (0, 1, 2):
            pub.publish(f"t/{qos}", f"m{qos}".encode(), qos)
            message = sub.receive()
            self.assertEqual((f"t/{qos}", f"m{qos}".encode(), qos),
                             (message.topic, message.payload, message.qos))
        pub.close()
        sub.close()

    def test_qosFlowsV311(self) -> None:
        """QoS 0, 1 and 2 messages arrive once at their QoS (MQTT 3.1.1)."""
        self.qosFlows(mqtt.MQTTv311)

    def test_qosFlowsV5(self) -> None:
        """QoS 0, 1 and 2 messages arrive once at their QoS (MQTT 5.0)."""
        self.qosFlows(mqtt.MQTTv5)

    def test_persistentSessionV311(self) -> None:
        """
        A clean_session=0 subscriber that went away gets the QoS 1 messages
        published meanwhile, with session-present set.
        """
        sub = self.client("keeper", mqtt.MQTTv311, clean=False)
        flags, _ = sub.connect()
        sub.subscribe("p/q", 1)
        sub.close()
        pub = self.client("pub", mqtt.MQTTv311)
        pub.connect()
        pub.publish("p/q", b"while-away", 1)
        pub.close()
        back = self.client("keeper", mqtt.MQTTv311, clean=False)
        flags, rc = back.connect()
        self.assertTrue(flags.session_present)
        message = back.receive()
        self.assertEqual(b"while-away", message.payload)
        back.close()

    def test_persistentSessionV5(self) -> None:
        """A v5 session with an expiry interval survives a disconnect."""
        sub = self.client("keeper5", mqtt.MQTTv5, clean=True, sessionExpiry=300)
        sub.connect()
        sub.subscribe("p5", 1)
        sub.close()
        pub = self.client("pub5", mqtt.MQTTv5)
        pub.connect()
        pub.publish("p5", b"queued", 1)
        pub.close()
        back = self.client("keeper5", mqtt.MQTTv5, clean=False, sessionExpiry=300)
        flags, _ = back.connect()
        self.assertTrue(flags.session_present)
        self.assertEqual(b"queued", back.receive().payload)
        back.close()

    def test_willOnConnectionLoss(self) -> None:
        """A client that drops its connection has its will published."""
        watcher = self.client("watcher", mqtt.MQTTv311)
        watcher.connect()
        watcher.subscribe("wills/#", 1)
        dying = self.client("dying", mqtt.MQTTv311, will=("wills/dying", b"gone", 1))
        dying.connect()
        dying.drop()
        message = watcher.receive()
        self.assertEqual(("wills/dying", b"gone"), (message.topic, message.payload))
        watcher.close()

    def test_noWillAfterDisconnect(self) -> None:
        """A normal DISCONNECT discards the will."""
        watcher = self.client("watcher", mqtt.MQTTv311)
        watcher.connect()
        watcher.subscribe("wills/#", 1)
        polite = self.client("polite", mqtt.MQTTv311, will=("wills/polite", b"gone", 1))
        polite.connect()
        polite.close()
        watcher.subscribe("sync", 0)
        watcher.publish("sync", b"marker", 0)
        self.assertEqual("sync", watcher.receive().topic)
        watcher.close()

    def test_takeoverV5(self) -> None:
        """A second connection with the same client id takes over (0x8E)."""
        first = self.client("twin", mqtt.MQTTv5)
        first.connect()
        second = self.client("twin", mqtt.MQTTv5)
        second.connect()
        reason = first.disconnects.get(timeout=10)
        self.assertEqual(0x8E, reason.value)
        second.close()
