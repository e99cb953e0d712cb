"""
MQTT 5.0 features of a real node, driven by paho-mqtt 2.x: session and
message expiry, topic aliases both ways, subscription identifiers and
options, flow control and size limits, request/response properties, will
delay, enhanced authentication's answer without a plugin, Server Keep
Alive.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # pragma: no cover - the test extra installs it
    mqtt = None

#: The node's configuration for this file.
NODE_CONFIG = [
    "topic_alias_max_client = 10",
    "topic_alias_max_broker = 10",
    "max_message_size = 20000",
    "receive_max_broker = 1",
    "max_keepalive = 20",
]


def props(packetType: int, **values: Any) -> Any:
    """A paho Properties object of C{packetType} with C{values}."""
    p = Properties(packetType)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class V5Client:
    """A paho MQTT 5.0 client on its own network thread, with blocking helpers."""

    def __init__(self, port: int, clientId: str) -> None:
        self.port = port
        self.messages: queue.Queue[Any] = queue.Queue()
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[Any] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=clientId,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc, p))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)

    def connect(self, cleanStart: bool = True, keepalive: int = 10, **connectProps: Any) -> Any:
        """Connect; return C{(flags, reason code, CONNACK properties)}."""
        properties = props(PacketTypes.CONNECT, **connectProps) if connectProps else None
        self.client.connect(
            "127.0.0.1", self.port, keepalive=keepalive, clean_start=cleanStart,
            properties=properties,
        )
        self.client.loop_start()
        return self.connacks.get(timeout=10)

    def subscribe(self, topic: str, qos: int = 1, subId: int | None = None, **options: Any
                  ) -> Any:
        """Subscribe with MQTT 5.0 options; return the reason codes."""
        properties = None
        if subId is not None:
            properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subId)
        self.client.subscribe(topic, options=SubscribeOptions(qos=qos, **options),
                              properties=properties)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                **publishProps: Any) -> None:
        """Publish and wait until the QoS flow is complete."""
        properties = props(PacketTypes.PUBLISH, **publishProps) if publishProps else None
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        if qos:
            info.wait_for_publish(10)

    def receive(self, timeout: float = 10) -> Any:
        """The next message."""
        return self.messages.get(timeout=timeout)

    def nothing(self, timeout: float = 0.3) -> bool:
        """True if no message arrives within C{timeout}."""
        try:
            self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self, **disconnectProps: Any) -> None:
        """DISCONNECT (with properties) and stop the network thread."""
        properties = (
            props(PacketTypes.DISCONNECT, **disconnectProps) if disconnectProps else None
        )
        self.client.disconnect(properties=properties)
        self.client.loop_stop()


def code(rc: Any) -> int:
    """The integer value of a paho ReasonCode (or int)."""
    return int(getattr(rc, "value", rc))


class PahoV5Tests(SynchronousTestCase):
    """paho-mqtt 2.x, MQTT 5.0, against one real node."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        self.node = NodeProcess(self.mktemp(), NODE_CONFIG).start()
        self.addCleanup(self.node.stop)

    def client(self, clientId: str) -> V5Client:
        c = V5Client(self.node.port, clientId)
        self.addCleanup(c.client.loop_stop)
        return c

    # -- sessions ----------------------------------------------------------------

    def test_sessionExpiryChangedOnDisconnect(self) -> None:
        """
        A session with an expiry interval is kept, unless the DISCONNECT
        sets the interval to 0; clean start discards a kept session.
        """
        c = self.client("se-1")
        c.connect(SessionExpiryInterval=300)
        c.subscribe("se/1", 1)
        c.close()
        back = self.client("se-1")
        flags, _, _ = back.connect(cleanStart=False, SessionExpiryInterval=300)
        self.assertTrue(flags.session_present)
        back.close(SessionExpiryInterval=0)
        again = self.client("se-1")
        flags, _, _ = again.connect(cleanStart=False, SessionExpiryInterval=300)
        self.assertFalse(flags.session_present)
        again.close()
        fresh = self.client("se-1")
        flags, _, _ = fresh.connect(cleanStart=True, SessionExpiryInterval=300)
        self.assertFalse(flags.session_present)
        fresh.close(SessionExpiryInterval=0)

    def test_messageExpiry(self) -> None:
        """
        While a subscriber is away its queued messages count down: an
        expired one is dropped, the other arrives with the remaining
        interval.
        """
        sub = self.client("me-sub")
        sub.connect(SessionExpiryInterval=60)
        sub.subscribe("me/t", 1)
        sub.close()
        pub = self.client("me-pub")
        pub.connect()
        pub.publish("me/t", b"short", 1, MessageExpiryInterval=1)
        pub.publish("me/t", b"long", 1, MessageExpiryInterval=100)
        pub.close()
        time.sleep(2.1)
        back = self.client("me-sub")
        back.connect(cleanStart=False, SessionExpiryInterval=60)
        message = back.receive()
        self.assertEqual(message.payload, b"long")
        self.assertLessEqual(message.properties.MessageExpiryInterval, 98)
        self.assertGreaterEqual(message.properties.MessageExpiryInterval, 90)
        self.assertTrue(back.nothing())
        back.close(SessionExpiryInterval=0)

    def test_assignedClientIdentifier(self) -> None:
        """An empty client id gets an Assigned Client Identifier."""
        c = self.client("")
        _, rc, properties = c.connect()
        self.assertEqual(code(rc), 0)
        self.assertTrue(properties.AssignedClientIdentifier.startswith("anon-"))
        c.close()

    def test_serverKeepAlive(self) -> None:
        """A keep alive above C{max_keepalive} is answered with Server Keep Alive."""
        c = self.client("ska")
        _, _, properties = c.connect(keepalive=60)
        self.assertEqual(properties.ServerKeepAlive, 20)
        c.close()

    # -- topic aliases -----------------------------------------------------------

    def test_topicAliasesBothWays(self) -> None:
        """
        The client publishes with an alias (then with the alias alone); the
        broker, allowed by the subscriber's Topic Alias Maximum, sends the
        topic with an alias once, then the alias alone.
        """
        sub = self.client("ta-sub")
        _, _, properties = sub.connect(TopicAliasMaximum=5)
        self.assertEqual(properties.TopicAliasMaximum, 10)
        sub.subscribe("ta/t", 0)
        pub = self.client("ta-pub")
        pub.connect()
        pub.publish("ta/t", b"1", 0, TopicAlias=1)
        pub.publish("", b"2", 0, TopicAlias=1)
        first, second = sub.receive(), sub.receive()
        self.assertEqual((first.topic, first.payload, first.properties.TopicAlias),
                         ("ta/t", b"1", 1))
        self.assertEqual((second.topic, second.payload, second.properties.TopicAlias),
                         ("", b"2", 1))
        plain = self.client("ta-plain")
        plain.connect()
        plain.subscribe("ta/t", 0)
        pub.publish("ta/t", b"3", 0)
        message = plain.receive()
        self.assertEqual(message.topic, "ta/t")
        self.assertFalse(hasattr(message.properties, "TopicAlias"))
        for c in (sub, pub, plain):
            c.close()

    # -- subscriptions -----------------------------------------------------------

    def test_subscriptionIdentifiers(self) -> None:
        """One delivery carries the identifiers of every matching subscription."""
        sub = self.client("sid")
        sub.connect()
        sub.subscribe("sid/+", 1, subId=11)
        sub.subscribe("sid/#", 0, subId=22)
        pub = self.client("sid-pub")
        pub.connect()
        pub.publish("sid/x", b"m", 1)
        message = sub.receive()
        self.assertEqual(sorted(message.properties.SubscriptionIdentifier), [11, 22])
        self.assertEqual(message.qos, 1)
        self.assertTrue(sub.nothing())
        sub.close()
        pub.close()

    def test_noLocal(self) -> None:
        """With no-local a client does not get its own messages."""
        c = self.client("nl")
        c.connect()
        c.subscribe("nl/t", 0, noLocal=True)
        other = self.client("nl-other")
        other.connect()
        c.publish("nl/t", b"own", 0)
        other.publish("nl/t", b"theirs", 0)
        self.assertEqual(c.receive().payload, b"theirs")
        self.assertTrue(c.nothing())
        c.close()
        other.close()

    def test_retainAsPublishedAndRetainHandling(self) -> None:
        """
        Retain-as-published keeps RETAIN on live deliveries; retain handling
        0 sends retained messages on every subscribe, 1 only on a new
        subscription, 2 never.
        """
        pub = self.client("rh-pub")
        pub.connect()
        pub.publish("rh/t", b"kept", 1, retain=True)
        for handling, expected in ((0, [True, True]), (1, [True, False]), (2, [False, False])):
            c = self.client(f"rh-{handling}")
            c.connect()
            got = []
            for _ in range(2):
                c.subscribe("rh/t", 1, retainHandling=handling)
                got.append(not c.nothing(0.5))
            self.assertEqual(got, expected, f"retain handling {handling}")
            c.close()
        rap = self.client("rh-rap")
        rap.connect()
        rap.subscribe("rh/live", 0, retainAsPublished=True)
        plain = self.client("rh-plain")
        plain.connect()
        plain.subscribe("rh/live", 0)
        pub.publish("rh/live", b"x", 1, retain=True)
        self.assertTrue(rap.receive().retain)
        self.assertFalse(plain.receive().retain)
        pub.publish("rh/live", b"", 1, retain=True)
        pub.publish("rh/t", b"", 1, retain=True)
        for c in (pub, rap, plain):
            c.close()

    # -- properties ----------------------------------------------------------------

    def test_requestResponseProperties(self) -> None:
        """
        Response topic, correlation data, payload format, content type and
        user properties (in order) reach the subscriber as published.
        """
        responder = self.client("rr-resp")
        responder.connect()
        responder.subscribe("rr/req", 1)
        requester = self.client("rr-req")
        requester.connect()
        requester.subscribe("rr/resp", 1)
        requester.publish(
            "rr/req", "héllo".encode(), 1,
            ResponseTopic="rr/resp", CorrelationData=b"\x01\x02",
            PayloadFormatIndicator=1, ContentType="text/plain",
            UserProperty=[("b", "2"), ("a", "1"), ("b", "3")],
        )
        request = responder.receive()
        p = request.properties
        self.assertEqual(
            (p.ResponseTopic, p.CorrelationData, p.PayloadFormatIndicator, p.ContentType,
             p.UserProperty),
            ("rr/resp", b"\x01\x02", 1, "text/plain", [("b", "2"), ("a", "1"), ("b", "3")]),
        )
        responder.publish(p.ResponseTopic, b"answer", 1, CorrelationData=p.CorrelationData)
        response = requester.receive()
        self.assertEqual((response.payload, response.properties.CorrelationData),
                         (b"answer", b"\x01\x02"))
        responder.close()
        requester.close()

    # -- limits --------------------------------------------------------------------

    def test_maximumPacketSize(self) -> None:
        """
        A message too large for a subscriber's Maximum Packet Size is dropped
        for it only; a packet larger than the broker's maximum is
        DISCONNECT 0x95.
        """
        small = self.client("mps-small")
        small.connect(MaximumPacketSize=200)
        small.subscribe("mps/t", 1)
        large = self.client("mps-large")
        large.connect()
        large.subscribe("mps/t", 1)
        pub = self.client("mps-pub")
        pub.connect()
        pub.publish("mps/t", b"x" * 1000, 1)
        pub.publish("mps/t", b"small", 1)
        self.assertEqual(small.receive().payload, b"small")
        self.assertEqual([large.receive().payload, large.receive().payload],
                         [b"x" * 1000, b"small"])
        pub.client.publish("mps/t", b"y" * 30000, 0)
        self.assertEqual(code(pub.disconnects.get(timeout=10)), 0x95)
        small.close()
        large.close()

    def test_receiveMaximumExceeded(self) -> None:
        """
        QoS 2 PUBLISHes beyond the broker's Receive Maximum (1 here) are a
        protocol error: DISCONNECT 0x93.  paho holds messages back to honour
        the Receive Maximum, so a raw socket breaks the rule on purpose.
        """
        import socket

        from vernemq.mqtt.codec import Decoder, encode
        from vernemq.mqtt.packets import ConnAck, Connect, Disconnect, Publish

        with socket.create_connection(("127.0.0.1", self.node.port), timeout=10) as s:
            s.sendall(encode(Connect("rm", protocol_level=5), 5))
            decoder = Decoder(protocol_level=5, server=False)
            packets: list[Any] = []
            while not any(isinstance(p, Disconnect) for p in packets):
                data = s.recv(4096)
                if not data:
                    break
                decoder.feed(data)
                packets.extend(decoder)
                if packets and isinstance(packets[0], ConnAck) and len(packets) == 1:
                    self.assertEqual(1, packets[0].properties.get("receive_maximum"))
                    s.sendall(b"".join(
                        encode(Publish("rm/t", b"%d" % i, 2, False, False, i + 1, {}), 5)
                        for i in range(2)
                    ))
            disconnects = [p for p in packets if isinstance(p, Disconnect)]
            self.assertEqual([0x93], [d.reason_code for d in disconnects])

    # -- will, authentication ------------------------------------------------------

    def test_willDelayEndsWithSession(self) -> None:
        """
        A will delayed by 30 s on a session expiring after 1 s is published
        when the session ends.
        """
        watcher = self.client("wd-watch")
        watcher.connect()
        watcher.subscribe("wd/will", 1)
        dying = self.client("wd-dying")
        dying.client.will_set(
            "wd/will", b"gone", 1,
            properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=30),
        )
        dying.connect(SessionExpiryInterval=1)
        started = time.monotonic()
        # DISCONNECT 0x04: disconnect with will message.
        dying.client.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        dying.client.loop_stop()
        message = watcher.receive(timeout=10)
        self.assertEqual(message.payload, b"gone")
        self.assertGreaterEqual(time.monotonic() - started, 0.8)
        self.assertLess(time.monotonic() - started, 10)
        watcher.close()

    def test_enhancedAuthWithoutPlugin(self) -> None:
        """A node with no on_auth_m5 plugin answers CONNACK 0x8C."""
        c = self.client("ea")
        _, rc, _ = c.connect(AuthenticationMethod="SCRAM-SHA-1", AuthenticationData=b"x")
        self.assertEqual(code(rc), 0x8C)
