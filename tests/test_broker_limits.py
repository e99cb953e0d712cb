"""
Tests for the limits of issue 3, one compact class per limit, each as
VerneMQ enforces it:

  - C{max_message_size}: a larger packet closes the connection (MQTT 5.0:
    DISCONNECT 0x95); advertised in the 5.0 CONNACK; register modifier;
  - C{max_inflight_messages}: QoS 1/2 window; register modifier;
  - C{max_online_messages}: a slow (paused) connection's queue is bounded,
    the rest is dropped and counted; the offline queue is cut to it on
    reconnect unless C{override_max_online_messages};
  - C{max_offline_messages}: QoS 1/2 kept for an offline session;
  - C{max_subscriptions_per_client}: SUBACK 0x80 (3.x) / 0x97 (5.0);
  - C{max_message_rate}: reading is throttled, nothing dropped or refused;
  - C{listener.max_connections}: per listener, cascading;
  - C{max_connection_lifetime}: per listener, cascading; MQTT 5.0 gets
    DISCONNECT 0xA0; register modifier.

Drops are counted in L{vernemq.broker.broker.Broker.stats}, never logged.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.brokerhelpers import BASE_CONFIG, FakeClient, Harness
from tests.test_mqtt_protocol import capture_log
from vernemq.interfaces import IAuthOnPublish, IAuthOnRegister, IAuthOnRegisterM5
from vernemq.mqtt.packets import ConnAck, Connect, Disconnect, Publish, Will
from vernemq.plugins.hooks import AllowAllACL, HookChain, Ok


def payloads(client: FakeClient) -> list[bytes]:
    """The payloads of the PUBLISH packets C{client} received since last asked."""
    return [p.payload for p in client.publishes()]


@implementer(IAuthOnRegister, IAuthOnRegisterM5)
class RegisterModifiers:
    """Accepts every client with the given C{auth_on_register} modifiers."""

    def __init__(self, **modifiers: Any) -> None:
        self.modifiers = modifiers

    def auth_on_register(self, *args: Any) -> Ok:
        return Ok(self.modifiers)

    def auth_on_register_m5(self, *args: Any) -> Ok:
        return Ok(self.modifiers)


@implementer(IAuthOnPublish)
class ThrottlePublish:
    """Accepts every publish and asks for C{ms} milliseconds of throttling."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def auth_on_publish(self, *args: Any) -> Ok:
        return Ok({"throttle": self.ms})


def reconnect(h: Harness, client_id: str) -> FakeClient:
    """A persistent 3.1.1 session reconnects; what follows CONNACK stays unread."""
    c = h.client()
    c.send(Connect(client_id, protocol_level=4, clean_start=False))
    return c


def hooks_with(plugin: object) -> HookChain:
    """An allow-all chain with C{plugin} asked first."""
    hooks = HookChain()
    hooks.register(plugin, priority=-1)
    hooks.register(AllowAllACL())
    return hooks


REGISTER_CONFIG = "allow_anonymous = off\nlistener.tcp.default = 127.0.0.1:1883\n"


class MaxMessageSizeTests(SynchronousTestCase):
    """C{max_message_size}: the largest accepted packet, in bytes."""

    def test_v311_closed(self) -> None:
        """A too large PUBLISH closes a 3.1.1 connection; nothing is routed."""
        h = Harness(max_message_size=100)
        sub = h.connected("sub")
        sub.subscribe("t")
        pub = h.connected("pub")
        pub.publish("t", b"x" * 50)
        pub.publish("t", b"x" * 200)
        self.assertTrue(pub.closed)
        self.assertEqual(payloads(sub), [b"x" * 50])

    def test_v5_disconnect_0x95(self) -> None:
        """MQTT 5.0: CONNACK advertises it; a larger packet gets DISCONNECT 0x95."""
        h = Harness(max_message_size=100)
        c = h.client(5)
        ack = c.connect("c")
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.properties["maximum_packet_size"], 100)
        c.publish("t", b"x" * 200)
        self.assertEqual(c.received(), [Disconnect(0x95)])
        self.assertTrue(c.closed)

    def test_register_modifier(self) -> None:
        """C{auth_on_register} may set it for one client."""
        h = Harness(REGISTER_CONFIG, hooks_with(RegisterModifiers(max_message_size=50)))
        c = h.client(5)
        ack = c.connect("c")
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.properties["maximum_packet_size"], 50)
        c.publish("t", b"x" * 60)
        self.assertEqual(c.received(), [Disconnect(0x95)])


class MaxInflightTests(SynchronousTestCase):
    """C{max_inflight_messages}: unacknowledged QoS 1/2 deliveries per session."""

    def check_window(self, h: Harness, window: int) -> None:
        sub = h.connected("sub")
        sub.subscribe(("t", 1))
        pub = h.connected("pub")
        for i in range(window + 2):
            pub.publish("t", b"%d" % i, qos=1)
        got = sub.publishes()
        self.assertEqual(len(got), window)
        sub.ack(got[0])
        self.assertEqual(payloads(sub), [b"%d" % window])

    def test_window(self) -> None:
        self.check_window(Harness(max_inflight_messages=2), 2)

    def test_register_modifier(self) -> None:
        hooks = hooks_with(RegisterModifiers(max_inflight_messages=3))
        self.check_window(Harness(REGISTER_CONFIG, hooks), 3)


class MaxOnlineMessagesTests(SynchronousTestCase):
    """
    C{max_online_messages}: a connection whose transport asked us to stop
    writing queues at most that many messages; more are dropped (load
    shedding), counted, never logged; other subscribers are not held up.
    """

    def test_slow_consumer_shed(self) -> None:
        h = Harness(max_online_messages=10)
        events = capture_log(self)
        slow = h.connected("slow")
        slow.subscribe("t")
        fast = h.connected("fast")
        fast.subscribe("t")
        pub = h.connected("pub")
        # The protocol is its transport's streaming producer: a full
        # transport buffer pauses it.
        self.assertIs(slow.transport.producer, slow.proto)
        self.assertTrue(slow.transport.streaming)
        slow.proto.pauseProducing()
        del events[:]
        for i in range(100):
            pub.publish("t", b"%d" % i)
        self.assertEqual(len(fast.publishes()), 100)
        self.assertEqual(slow.received(), [])
        self.assertEqual(h.broker.stats()["dropped"], 90)
        self.assertEqual(events, [])
        slow.proto.resumeProducing()
        self.assertEqual(payloads(slow), [b"%d" % i for i in range(10)])

    def offline_then_back(self, **overrides: Any) -> tuple[Harness, FakeClient]:
        """Six QoS 1 messages wait for an offline session, which comes back."""
        h = Harness(max_online_messages=2, max_inflight_messages=1, **overrides)
        sub = h.connected("sub", clean=False)
        sub.subscribe(("t", 1))
        sub.lose()
        pub = h.connected("pub")
        for i in range(6):
            pub.publish("t", b"%d" % i, qos=1)
        return h, reconnect(h, "sub")

    def drain(self, sub: FakeClient) -> list[bytes]:
        got: list[bytes] = []
        while True:
            pubs = sub.publishes()
            if not pubs:
                return got
            for p in pubs:
                got.append(p.payload)
                sub.ack(p)

    def test_offline_queue_cut_on_reconnect(self) -> None:
        """
        The offline queue moves online within the online limit (plus the
        free inflight window): the newest are dropped and counted.
        """
        h, sub = self.offline_then_back()
        self.assertEqual(self.drain(sub), [b"0", b"1", b"2"])
        self.assertEqual(h.broker.stats()["dropped"], 3)

    def test_override(self) -> None:
        """C{override_max_online_messages} moves everything online."""
        h, sub = self.offline_then_back(override_max_online_messages=True)
        self.assertEqual(self.drain(sub), [b"%d" % i for i in range(6)])
        self.assertEqual(h.broker.stats()["dropped"], 0)


class MaxOfflineMessagesTests(SynchronousTestCase):
    """C{max_offline_messages}: QoS 1/2 messages kept for an offline session."""

    def test_bounded(self) -> None:
        h = Harness(max_offline_messages=2)
        sub = h.connected("sub", clean=False)
        sub.subscribe(("t", 1))
        sub.lose()
        pub = h.connected("pub")
        pub.publish("t", b"q0", qos=0)
        for i in range(4):
            pub.publish("t", b"%d" % i, qos=1)
        # QoS 0 is not kept offline, and not counted as a drop.
        self.assertEqual(h.broker.stats()["dropped"], 2)
        self.assertEqual(payloads(reconnect(h, "sub")), [b"0", b"1"])


class MaxSubscriptionsTests(SynchronousTestCase):
    """
    C{max_subscriptions_per_client}: a subscription beyond it is refused
    with 0x80 (3.x) or 0x97 quota exceeded (5.0); the client stays.
    """

    def check(self, level: int, refused: int) -> None:
        h = Harness(max_subscriptions_per_client=2)
        c = h.connected("c", level)
        self.assertEqual(c.subscribe("a", "b", "c").reason_codes, [0, 0, refused])
        # Subscribing again to a filter held is a replacement, not one more.
        self.assertEqual(c.subscribe(("a", 1)).reason_codes, [1])
        c.unsubscribe("b")
        self.assertEqual(c.subscribe("c", "d").reason_codes, [0, refused])
        self.assertFalse(c.closed)
        self.assertEqual(sorted(h.broker.sessions[("", "c")].subscriptions), ["a", "c"])

    def test_v311(self) -> None:
        self.check(4, 0x80)

    def test_v5(self) -> None:
        self.check(5, 0x97)


class MaxMessageRateTests(SynchronousTestCase):
    """
    C{max_message_rate}: inbound PUBLISHes per second per session.  As in
    VerneMQ the publisher is throttled by not reading its socket; nothing
    is dropped, refused or disconnected.
    """

    def check_rate(self, h: Harness, rate: int) -> None:
        sub = h.connected("sub")
        sub.subscribe("t")
        pub = h.connected("pub")
        pub.send(*[Publish("t", b"%d" % i) for i in range(2 * rate + 1)])
        self.assertEqual(len(sub.publishes()), rate)
        self.assertEqual(pub.transport.producerState, "paused")
        h.advance(0.999)
        self.assertEqual(sub.publishes(), [])
        h.advance(0.001)
        self.assertEqual(len(sub.publishes()), rate)
        h.advance(1)
        self.assertEqual(len(sub.publishes()), 1)
        self.assertEqual(pub.transport.producerState, "producing")
        self.assertFalse(pub.closed)
        self.assertEqual(h.broker.stats()["dropped"], 0)

    def test_throttled(self) -> None:
        self.check_rate(Harness(max_message_rate=3), 3)

    def test_register_modifier(self) -> None:
        hooks = hooks_with(RegisterModifiers(max_message_rate=2))
        self.check_rate(Harness(REGISTER_CONFIG, hooks), 2)

    def test_unlimited_by_default(self) -> None:
        h = Harness()
        sub = h.connected("sub")
        sub.subscribe("t")
        h.connected("pub").send(*[Publish("t", b"x") for _ in range(500)])
        self.assertEqual(len(sub.publishes()), 500)

    def test_publish_throttle_modifier(self) -> None:
        """An C{auth_on_publish} C{throttle} modifier pauses reading that long (ms)."""
        h = Harness(hooks=hooks_with(ThrottlePublish(250)))
        sub = h.connected("sub")
        sub.subscribe("t")
        h.connected("pub").send(Publish("t", b"1"), Publish("t", b"2"))
        self.assertEqual(payloads(sub), [b"1"])
        h.advance(0.25)
        self.assertEqual(payloads(sub), [b"2"])

    def test_close_while_throttled(self) -> None:
        """A throttled connection that goes away leaves no timer behind."""
        h = Harness(max_message_rate=1)
        pub = h.connected("pub")
        pub.send(Publish("t", b"1"), Publish("t", b"2"))
        self.assertEqual(len(h.clock.getDelayedCalls()), 1)
        pub.lose()
        self.assertEqual(h.clock.getDelayedCalls(), [])


class MaxConnectionsTests(SynchronousTestCase):
    """
    C{listener.max_connections} is per listener and cascades global ->
    protocol -> named listener (refusal itself: tests.test_mqtt_protocol).
    """

    def test_cascade(self) -> None:
        h = Harness(
            "allow_anonymous = on\n"
            "listener.max_connections = 5\n"
            "listener.tcp.max_connections = 1\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.big = 127.0.0.1:1884\n"
            "listener.tcp.big.max_connections = 2\n"
        )
        self.assertEqual(h.listener("default").settings["max_connections"], 1)
        self.assertEqual(h.listener("big").settings["max_connections"], 2)
        h.connected("a")
        self.assertTrue(h.client().closed)
        h.connected("b", listener="big")
        h.connected("c", listener="big")
        self.assertTrue(h.client(listener="big").closed)
        self.assertEqual(h.broker.stats()["connections"], 3)


class MaxConnectionLifetimeTests(SynchronousTestCase):
    """
    C{max_connection_lifetime} (seconds, per listener, cascading): the
    client is disconnected when it is reached, as an administrative action
    (the will is published); MQTT 5.0 gets DISCONNECT 0xA0.
    """

    CONFIG = (
        BASE_CONFIG
        + "listener.max_connection_lifetime = 10\n"
        + "listener.tcp.short = 127.0.0.1:1884\n"
        + "listener.tcp.short.max_connection_lifetime = 3\n"
    )

    def test_v5_disconnect_0xa0(self) -> None:
        h = Harness(self.CONFIG)
        c = h.connected("c", 5, will=Will("will", b"gone"))
        h.advance(5)
        watcher = h.connected("watcher")
        watcher.subscribe("will")
        h.advance(4.9)
        self.assertFalse(c.closed)
        h.advance(0.1)
        self.assertEqual(c.received(), [Disconnect(0xA0)])
        self.assertTrue(c.closed)
        self.assertEqual(payloads(watcher), [b"gone"])

    def test_v311_and_named_listener(self) -> None:
        h = Harness(self.CONFIG)
        self.assertEqual(h.listener("short").settings["max_connection_lifetime"], 3)
        c = h.connected("c", 4, listener="short")
        h.advance(3)
        self.assertEqual(c.received(), [])
        self.assertTrue(c.closed)

    def test_unlimited_by_default(self) -> None:
        h = Harness()
        c = h.connected("c", 5)
        h.advance(10 * 365 * 86400)
        self.assertFalse(c.closed)

    def test_register_modifier(self) -> None:
        """C{auth_on_register} may set a lifetime; the earlier one wins."""
        hooks = hooks_with(RegisterModifiers(max_connection_lifetime=2))
        h = Harness(REGISTER_CONFIG + "listener.max_connection_lifetime = 10\n", hooks)
        c = h.connected("c", 5)
        h.advance(2)
        self.assertEqual(c.received(), [Disconnect(0xA0)])
