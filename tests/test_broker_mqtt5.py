"""
MQTT 5.0 features of the broker: outbound and inbound topic aliases, the
client's Maximum Packet Size, Server Keep Alive, pass-through properties,
and enhanced authentication (AUTH, C{on_auth_m5}, re-authentication).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.brokerhelpers import FakeClient, Harness
from vernemq.interfaces import IAuthOnRegisterM5, IOnAuthM5
from vernemq.mqtt.codec import encode
from vernemq.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PubAck,
    Publish,
    Subscription,
    Will,
)
from vernemq.plugins.hooks import NEXT, AllowAllACL, Error, HookChain, Ok

V5 = 5


def reconnect(h: Harness, client_id: str, **props: Any) -> list[Publish]:
    """Connect C{client_id} again (clean start off); the PUBLISHes after CONNACK."""
    c = h.client(V5)
    c.send(Connect(client_id, protocol_level=V5, clean_start=False, keep_alive=0,
                   properties=props))
    packets = c.received()
    assert isinstance(packets[0], ConnAck) and packets[0].reason_code == 0, packets
    return [p for p in packets if isinstance(p, Publish)]


def subscriber(h: Harness, client_id: str, *filters: str | tuple[str, int], **props: Any
               ) -> FakeClient:
    """A connected MQTT 5.0 client with CONNECT C{props}, subscribed to C{filters}."""
    c = h.connected(client_id, V5, properties=props)
    c.subscribe(*filters)
    return c


class OutboundTopicAliasTests(SynchronousTestCase):
    """
    The broker assigns topic aliases to outgoing PUBLISH packets when the
    client allows them (its Topic Alias Maximum), up to
    C{topic_alias_max_broker}.
    """

    def test_assigned_then_used(self) -> None:
        """
        The first message on a topic carries the topic and a new alias; the
        next ones carry only the alias.  Aliases are numbered from 1 up to
        the smaller of both maxima; then topics go out in full.
        """
        h = Harness(topic_alias_max_broker=2)
        sub = subscriber(h, "s", "t/#", topic_alias_maximum=10)
        pub = h.connected("p", V5)
        for topic in ("t/a", "t/a", "t/b", "t/c", "t/b", "t/c"):
            pub.publish(topic, topic.encode())
        got = [(p.topic, p.properties.get("topic_alias"), p.payload) for p in sub.publishes()]
        self.assertEqual(
            got,
            [
                ("t/a", 1, b"t/a"),
                ("", 1, b"t/a"),
                ("t/b", 2, b"t/b"),
                ("t/c", None, b"t/c"),
                ("", 2, b"t/b"),
                ("t/c", None, b"t/c"),
            ],
        )

    def test_client_maximum_bounds(self) -> None:
        """The client's Topic Alias Maximum caps the broker's setting."""
        h = Harness(topic_alias_max_broker=10)
        sub = subscriber(h, "s", "t/#", topic_alias_maximum=1)
        pub = h.connected("p", V5)
        pub.publish("t/a")
        pub.publish("t/b")
        got = [(p.topic, p.properties.get("topic_alias")) for p in sub.publishes()]
        self.assertEqual(got, [("t/a", 1), ("t/b", None)])

    def test_not_without_client_permission(self) -> None:
        """
        A client that announced no Topic Alias Maximum gets no alias, and
        receives the publisher's bytes unchanged (the zero-copy path).
        """
        h = Harness(topic_alias_max_broker=10)
        sub = subscriber(h, "s", "t")
        pub = h.connected("p", V5)
        before = len(sub.transport.value())
        packet = Publish("t", b"payload", properties={"user_property": [("k", "v")]})
        pub.send(packet)
        self.assertEqual(sub.transport.value()[before:], encode(packet, V5))

    def test_not_when_broker_disabled(self) -> None:
        """With C{topic_alias_max_broker = 0} (the default) no alias is sent."""
        h = Harness()
        sub = subscriber(h, "s", "t", topic_alias_maximum=10)
        pub = h.connected("p", V5)
        pub.publish("t")
        pub.publish("t")
        self.assertEqual(
            [(p.topic, p.properties) for p in sub.publishes()], [("t", {}), ("t", {})]
        )

    def test_qos1_and_subscription_identifier(self) -> None:
        """
        QoS 1 deliveries and deliveries with a subscription identifier use
        the aliases too.
        """
        h = Harness(topic_alias_max_broker=5)
        sub = h.connected("s", V5, properties={"topic_alias_maximum": 5})
        sub.subscribe(("t", 1), subscription_identifier=7)
        pub = h.connected("p", V5)
        pub.publish("t", b"1", qos=1)
        pub.publish("t", b"2", qos=1)
        got = sub.publishes()
        self.assertEqual(
            [(p.topic, p.qos, p.properties) for p in got],
            [
                ("t", 1, {"topic_alias": 1, "subscription_identifier": [7]}),
                ("", 1, {"topic_alias": 1, "subscription_identifier": [7]}),
            ],
        )

    def test_fresh_per_connection(self) -> None:
        """Aliases start afresh when a persistent session reconnects."""
        h = Harness(topic_alias_max_broker=5)
        props = {"topic_alias_maximum": 5, "session_expiry_interval": 100}
        sub = h.connected("s", V5, properties=props)
        sub.subscribe(("t", 1))
        pub = h.connected("p", V5)
        pub.publish("t", b"1", qos=1)
        first = sub.publishes()
        self.assertEqual([(p.topic, p.properties) for p in first], [("t", {"topic_alias": 1})])
        sub.lose()
        pub.publish("t", b"2", qos=1)
        self.assertEqual(
            [(p.topic, p.payload, p.dup, p.properties) for p in reconnect(h, "s", **props)],
            [("t", b"1", True, {"topic_alias": 1}), ("", b"2", False, {"topic_alias": 1})],
        )

    def test_v3_subscriber_untouched(self) -> None:
        """An MQTT 3.1.1 subscriber of the same message gets no alias."""
        h = Harness(topic_alias_max_broker=5)
        v5 = subscriber(h, "s5", "t", topic_alias_maximum=5)
        v3 = h.connected("s3", 4)
        v3.subscribe("t")
        pub = h.connected("p", V5)
        pub.publish("t")
        pub.publish("t")
        self.assertEqual([p.topic for p in v3.publishes()], ["t", "t"])
        self.assertEqual([p.topic for p in v5.publishes()], ["t", ""])


class InboundTopicAliasTests(SynchronousTestCase):
    """
    Clients may use aliases 1..C{topic_alias_max_client}, announced in
    CONNACK (VerneMQ's meaning of the key).
    """

    def test_announced_and_resolved(self) -> None:
        """The maximum is announced; an alias set once resolves later."""
        h = Harness(topic_alias_max_client=3)
        sub = h.connected("s", V5)
        sub.subscribe("in/#")
        pub = h.client(V5)
        ack = pub.connect("p")
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.properties["topic_alias_maximum"], 3)
        pub.publish("in/x", b"1", topic_alias=3)
        pub.publish("", b"2", topic_alias=3)
        self.assertEqual(
            [(p.topic, p.payload, p.properties) for p in sub.publishes()],
            [("in/x", b"1", {}), ("in/x", b"2", {})],
        )

    def test_above_maximum(self) -> None:
        """An alias above the maximum is DISCONNECT 0x94."""
        h = Harness(topic_alias_max_client=3, topic_alias_max_broker=10)
        pub = h.connected("p", V5)
        pub.publish("in/x", b"1", topic_alias=4)
        self.assertEqual(pub.received(), [Disconnect(0x94)])
        self.assertTrue(pub.closed)

    def test_not_announced_by_default(self) -> None:
        """Without C{topic_alias_max_client} no maximum is announced."""
        h = Harness(topic_alias_max_broker=10)
        ack = h.client(V5).connect("p")
        assert isinstance(ack, ConnAck)
        self.assertNotIn("topic_alias_maximum", ack.properties)


class MaximumPacketSizeTests(SynchronousTestCase):
    """
    A message larger than a subscriber's Maximum Packet Size is dropped for
    that subscriber only.
    """

    def test_dropped_for_that_subscriber_only(self) -> None:
        """The small client misses the large message, the other gets it."""
        h = Harness()
        small = subscriber(h, "small", ("t", 1), maximum_packet_size=40)
        large = subscriber(h, "large", ("t", 1))
        pub = h.connected("p", V5)
        pub.publish("t", b"x" * 100, qos=1)
        pub.publish("t", b"tiny", qos=1)
        self.assertEqual([p.payload for p in small.publishes()], [b"tiny"])
        self.assertEqual([p.payload for p in large.publishes()], [b"x" * 100, b"tiny"])
        session = h.broker.sessions[("", "small")]
        self.assertEqual(session.dropped, 1)
        self.assertEqual(len(session.inflight), 1)

    def test_qos0_and_exact_size(self) -> None:
        """A QoS 0 packet of exactly the maximum size goes out; one more byte does not."""
        h = Harness()
        # PUBLISH t (QoS 0, v5): 2 fixed + 3 topic + 1 property length + payload.
        small = subscriber(h, "small", "t", maximum_packet_size=26)
        pub = h.connected("p", V5)
        pub.publish("t", b"x" * 20)
        pub.publish("t", b"y" * 21)
        self.assertEqual([p.payload for p in small.publishes()], [b"x" * 20])

    def test_aliased_message_fits(self) -> None:
        """
        A drop leaves no alias behind: the next message on the topic carries
        the topic again.
        """
        h = Harness(topic_alias_max_broker=5)
        small = subscriber(h, "small", "t", maximum_packet_size=30, topic_alias_maximum=5)
        pub = h.connected("p", V5)
        pub.publish("t", b"x" * 40)
        pub.publish("t", b"ok")
        self.assertEqual(
            [(p.topic, p.payload, p.properties) for p in small.publishes()],
            [("t", b"ok", {"topic_alias": 1})],
        )

    def test_queued_message_dropped_on_reconnect(self) -> None:
        """
        An inflight message that no longer fits the maximum announced by the
        client's next connection is dropped instead of resent.
        """
        h = Harness()
        props = {"session_expiry_interval": 100}
        sub = h.connected("s", V5, properties=props)
        sub.subscribe(("t", 1))
        pub = h.connected("p", V5)
        pub.publish("t", b"x" * 100, qos=1)
        self.assertEqual(len(sub.publishes()), 1)
        sub.lose()
        self.assertEqual(reconnect(h, "s", maximum_packet_size=50, **props), [])
        self.assertEqual(h.broker.sessions[("", "s")].inflight, {})


class BrokerMaximumPacketSizeTests(SynchronousTestCase):
    """Packets beyond C{max_message_size} from a client: 0x95."""

    def test_connect_too_large_v5(self) -> None:
        """An MQTT 5.0 CONNECT beyond the maximum is answered CONNACK 0x95."""
        h = Harness(max_message_size=100)
        c = h.client(V5)
        ack = c.connect("c", will=Will("w", b"x" * 200))
        self.assertEqual(ack, ConnAck(False, 0x95))
        self.assertTrue(c.closed)

    def test_connect_too_large_v311(self) -> None:
        """An MQTT 3.1.1 CONNECT beyond the maximum is just closed."""
        h = Harness(max_message_size=100)
        c = h.client(4)
        self.assertIsNone(c.connect("c", will=Will("w", b"x" * 200)))
        self.assertTrue(c.closed)

    def test_publish_too_large(self) -> None:
        """A PUBLISH beyond the maximum is DISCONNECT 0x95."""
        h = Harness(max_message_size=100)
        c = h.connected("c", V5)
        c.publish("t", b"x" * 200)
        self.assertEqual(c.received(), [Disconnect(0x95)])


class PassThroughTests(SynchronousTestCase):
    """
    Request/response and content properties reach MQTT 5.0 subscribers as
    published, user properties in order.
    """

    def test_properties_forwarded(self) -> None:
        """
        Response topic, correlation data, payload format indicator, content
        type and user properties (order and duplicates kept) are forwarded;
        the message expiry interval too.
        """
        h = Harness()
        sub = subscriber(h, "s", "req")
        pub = h.connected("p", V5)
        props = {
            "response_topic": "resp/p",
            "correlation_data": b"\x00\x01",
            "payload_format_indicator": 1,
            "content_type": "text/plain",
            "user_property": [("b", "2"), ("a", "1"), ("b", "3")],
            "message_expiry_interval": 60,
        }
        pub.publish("req", b"hello", **props)
        [got] = sub.publishes()
        self.assertEqual(got.properties, props)

    def test_remaining_expiry_after_queueing(self) -> None:
        """A queued message carries the remaining expiry interval."""
        h = Harness()
        sub = h.connected("s", V5, properties={"session_expiry_interval": 100})
        sub.subscribe(("t", 1))
        sub.lose()
        pub = h.connected("p", V5)
        pub.publish("t", b"m", qos=1, message_expiry_interval=30)
        h.advance(10)
        [got] = reconnect(h, "s", session_expiry_interval=100)
        self.assertEqual(got.properties["message_expiry_interval"], 20)


class ServerKeepAliveTests(SynchronousTestCase):
    """C{max_keepalive} (mosquitto's key) sends Server Keep Alive to MQTT 5.0 clients."""

    def test_no_keepalive_overridden(self) -> None:
        """A client asking for no keep alive gets the maximum and is held to it."""
        h = Harness(max_keepalive=10)
        c = h.client(V5)
        ack = c.connect("c", keep_alive=0)
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.properties["server_keep_alive"], 10)
        h.advance(14)
        self.assertFalse(c.closed)
        h.advance(1.5)
        self.assertEqual(c.received(), [Disconnect(0x8D)])

    def test_longer_keepalive_overridden(self) -> None:
        """A longer keep alive is lowered to the maximum."""
        h = Harness(max_keepalive=10)
        ack = h.client(V5).connect("c", keep_alive=60)
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.properties["server_keep_alive"], 10)

    def test_shorter_keepalive_kept(self) -> None:
        """A keep alive within the maximum is the client's; nothing is sent."""
        h = Harness(max_keepalive=10)
        ack = h.client(V5).connect("c", keep_alive=5)
        assert isinstance(ack, ConnAck)
        self.assertNotIn("server_keep_alive", ack.properties)

    def test_off_by_default(self) -> None:
        """VerneMQ's behaviour by default: the client's value, no property."""
        ack = Harness().client(V5).connect("c", keep_alive=0)
        assert isinstance(ack, ConnAck)
        self.assertNotIn("server_keep_alive", ack.properties)


@implementer(IOnAuthM5)
class Scripted:
    """An C{on_auth_m5} plugin answering from a script, recording its calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Any, ...]] = []

    def on_auth_m5(
        self, username: str | None, subscriber_id: tuple[str, str], properties: dict[str, Any]
    ) -> Any:
        self.calls.append((username, subscriber_id, dict(properties)))
        return self.answers.pop(0)


def cont(data: bytes, method: str = "SCRAM") -> Ok:
    """A hook answer: continue with C{data}."""
    return Ok(
        {"reason_code": 0x18,
         "properties": {"authentication_method": method, "authentication_data": data}}
    )


def done(data: bytes | None = None, **extra: Any) -> Ok:
    """A hook answer: authenticated."""
    props: dict[str, Any] = {"authentication_method": "SCRAM", **extra}
    if data is not None:
        props["authentication_data"] = data
    return Ok({"reason_code": 0, "properties": props})


def auth_connect(c: FakeClient, data: bytes = b"first", **kw: Any) -> list[Any]:
    """Send an MQTT 5.0 CONNECT with method SCRAM; return what came back."""
    props = {"authentication_method": "SCRAM", "authentication_data": data}
    props.update(kw.pop("properties", {}))
    c.send(Connect("c", protocol_level=V5, keep_alive=0, properties=props, **kw))
    return c.received()


class EnhancedAuthConnectTests(SynchronousTestCase):
    """Enhanced authentication of a CONNECT through C{on_auth_m5}."""

    def harness(self, *plugins: object, **config: Any) -> Harness:
        hooks = HookChain()
        for plugin in plugins:
            hooks.register(plugin)
        hooks.register(AllowAllACL())
        return Harness(hooks=hooks, **config)

    def test_no_hook_bad_method(self) -> None:
        """With no C{on_auth_m5} plugin the CONNACK is 0x8C, bad authentication method."""
        c = self.harness().client(V5)
        self.assertEqual(auth_connect(c), [ConnAck(False, 0x8C)])
        self.assertTrue(c.closed)

    def test_all_next_bad_method(self) -> None:
        """Plugins that all say next do not support the method either: 0x8C."""
        c = self.harness(Scripted(NEXT)).client(V5)
        self.assertEqual(auth_connect(c), [ConnAck(False, 0x8C)])

    def test_one_step(self) -> None:
        """
        A hook that accepts at once: CONNACK 0 with the method and the
        hook's data; the hook saw the CONNECT's properties.
        """
        plugin = Scripted(done(b"server-final"))
        c = self.harness(plugin).client(V5)
        [ack] = auth_connect(c, username="u")
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.reason_code, 0)
        self.assertEqual(ack.properties["authentication_method"], "SCRAM")
        self.assertEqual(ack.properties["authentication_data"], b"server-final")
        self.assertEqual(
            plugin.calls,
            [("u", ("", "c"), {"authentication_method": "SCRAM", "authentication_data": b"first"})],
        )

    def test_continue_exchange(self) -> None:
        """AUTH 0x18 goes back and forth until the hook accepts; then CONNACK."""
        plugin = Scripted(cont(b"challenge-1"), cont(b"challenge-2"), done())
        h = self.harness(plugin)
        c = h.client(V5)
        self.assertEqual(
            auth_connect(c),
            [Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"challenge-1"})],
        )
        c.send(Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"r1"}))
        self.assertEqual(
            c.received(),
            [Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"challenge-2"})],
        )
        c.send(Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"r2"}))
        [ack] = c.received()
        assert isinstance(ack, ConnAck)
        self.assertEqual((ack.reason_code, ack.properties["authentication_method"]), (0, "SCRAM"))
        self.assertEqual([call[2].get("authentication_data") for call in plugin.calls],
                         [b"first", b"r1", b"r2"])
        # The session works.
        c.subscribe("t")
        c.publish("t", b"ok")
        self.assertEqual([p.payload for p in c.publishes()], [b"ok"])

    def test_refused_with_reason_code(self) -> None:
        """An Error with a reason code refuses with it."""
        c = self.harness(Scripted(Error("bad", 0x86))).client(V5)
        self.assertEqual(auth_connect(c), [ConnAck(False, 0x86)])

    def test_refused_default(self) -> None:
        """An Error without a reason code is 0x87, not authorized."""
        c = self.harness(Scripted(cont(b"c"), Error("nope"))).client(V5)
        auth_connect(c)
        c.send(Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"r"}))
        self.assertEqual(c.received(), [ConnAck(False, 0x87)])
        self.assertTrue(c.closed)

    def test_other_method_is_protocol_error(self) -> None:
        """An AUTH with another method during the exchange: CONNACK 0x82."""
        c = self.harness(Scripted(cont(b"c"))).client(V5)
        auth_connect(c)
        c.send(Auth(0x18, {"authentication_method": "PLAIN"}))
        self.assertEqual(c.received(), [ConnAck(False, 0x82)])

    def test_other_packet_during_exchange(self) -> None:
        """Only AUTH and DISCONNECT are accepted before CONNACK."""
        c = self.harness(Scripted(cont(b"c"))).client(V5)
        auth_connect(c)
        c.publish("t")
        self.assertEqual(c.received(), [ConnAck(False, 0x82)])
        self.assertTrue(c.closed)

    def test_disconnect_during_exchange(self) -> None:
        """The client may give up with DISCONNECT; no session is created."""
        h = self.harness(Scripted(cont(b"c")))
        c = h.client(V5)
        auth_connect(c, will=Will("w", b"will"))
        c.disconnect()
        self.assertTrue(c.closed)
        self.assertEqual(h.broker.sessions, {})

    def test_exchange_times_out(self) -> None:
        """Each step must come within mqtt_connect_timeout."""
        h = self.harness(Scripted(cont(b"c")))
        c = h.client(V5)
        auth_connect(c)
        h.advance(4.9)
        self.assertFalse(c.closed)
        h.advance(0.2)
        self.assertTrue(c.closed)

    def test_async_hook(self) -> None:
        """A hook answering with a Deferred holds the CONNECT until it fires."""
        d: Deferred[Any] = Deferred()
        c = self.harness(Scripted(d)).client(V5)
        self.assertEqual(auth_connect(c), [])
        d.callback(done())
        h_ack = c.received()
        self.assertEqual([type(p) for p in h_ack], [ConnAck])

    def test_register_hook_still_asked(self) -> None:
        """
        With allow_anonymous off, auth_on_register_m5 runs after the
        exchange, as in VerneMQ.
        """

        @implementer(IAuthOnRegisterM5)
        class Refuse:
            def auth_on_register_m5(self, *args: Any) -> Error:
                return Error("not_allowed", 0x87)

        hooks = HookChain()
        hooks.register(Scripted(done()))
        hooks.register(Refuse())
        h = Harness("listener.tcp.default = 127.0.0.1:1883\n", hooks=hooks)
        c = h.client(V5)
        self.assertEqual(auth_connect(c), [ConnAck(False, 0x87)])

    def test_reason_string_passed_unless_refused(self) -> None:
        """
        A reason string from the hook reaches the client in AUTH, unless the
        client set Request Problem Information to 0.
        """
        answer = Ok({"reason_code": 0x18,
                     "properties": {"authentication_method": "SCRAM", "reason_string": "more"}})
        c = self.harness(Scripted(answer)).client(V5)
        [auth] = auth_connect(c)
        assert isinstance(auth, Auth)
        self.assertEqual(auth.properties.get("reason_string"), "more")
        c = self.harness(Scripted(answer)).client(V5)
        [auth] = auth_connect(c, properties={"request_problem_information": 0})
        assert isinstance(auth, Auth)
        self.assertNotIn("reason_string", auth.properties)


class ReauthenticationTests(SynchronousTestCase):
    """Re-authentication with AUTH 0x19 after CONNACK."""

    def connected(self, *answers: Any) -> tuple[Harness, FakeClient, Scripted]:
        plugin = Scripted(done(), *answers)
        hooks = HookChain()
        hooks.register(plugin)
        hooks.register(AllowAllACL())
        h = Harness(hooks=hooks)
        c = h.client(V5)
        [ack] = auth_connect(c, will=Will("will/c", b"gone"))
        assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
        return h, c, plugin

    def test_success(self) -> None:
        """AUTH 0x19 answered by AUTH 0x00 when the hook accepts."""
        h, c, plugin = self.connected(done(b"ok"))
        c.send(Auth(0x19, {"authentication_method": "SCRAM", "authentication_data": b"again"}))
        self.assertEqual(
            c.received(),
            [Auth(0, {"authentication_method": "SCRAM", "authentication_data": b"ok"})],
        )
        self.assertEqual(plugin.calls[-1][2]["authentication_data"], b"again")
        self.assertFalse(c.closed)

    def test_with_continue(self) -> None:
        """A re-authentication may take several steps (0x18)."""
        h, c, _ = self.connected(cont(b"ch"), done())
        c.send(Auth(0x19, {"authentication_method": "SCRAM"}))
        [step] = c.received()
        assert isinstance(step, Auth)
        self.assertEqual(step.reason_code, 0x18)
        c.publish("t")  # other packets may flow meanwhile
        c.send(Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"r"}))
        [final] = c.received()
        assert isinstance(final, Auth)
        self.assertEqual(final.reason_code, 0)
        # A new re-authentication starts with 0x19 again.
        c.send(Auth(0x18, {"authentication_method": "SCRAM"}))
        self.assertEqual(c.received(), [Disconnect(0x82)])

    def test_failure_disconnects(self) -> None:
        """A refused re-authentication: DISCONNECT with the code; the will goes."""
        h, c, _ = self.connected(Error("expired", 0x87))
        watcher = h.connected("w", V5)
        watcher.subscribe("will/#")
        c.send(Auth(0x19, {"authentication_method": "SCRAM"}))
        self.assertEqual(c.received(), [Disconnect(0x87)])
        self.assertTrue(c.closed)
        self.assertEqual([p.topic for p in watcher.publishes()], ["will/c"])

    def test_other_method(self) -> None:
        """Re-authenticating with another method is a protocol error."""
        h, c, _ = self.connected()
        c.send(Auth(0x19, {"authentication_method": "PLAIN"}))
        self.assertEqual(c.received(), [Disconnect(0x82)])

    def test_without_method_in_connect(self) -> None:
        """AUTH from a client whose CONNECT had no method: DISCONNECT 0x82."""
        h = Harness()
        c = h.connected("c", V5)
        c.send(Auth(0x19, {"authentication_method": "SCRAM"}))
        self.assertEqual(c.received(), [Disconnect(0x82)])
        self.assertTrue(c.closed)


class ClientTopicAliasAndAckTests(SynchronousTestCase):
    """Acknowledgements are unaffected by outbound aliases."""

    def test_puback_releases_window(self) -> None:
        """Aliased QoS 1 deliveries are acknowledged like any other."""
        h = Harness(topic_alias_max_broker=3, max_inflight_messages=1)
        sub = h.connected("s", V5, properties={"topic_alias_maximum": 3})
        sub.subscribe_with([Subscription("t", 1)])
        pub = h.connected("p", V5)
        pub.publish("t", b"1", qos=1)
        pub.publish("t", b"2", qos=1)
        [first] = sub.publishes()
        sub.send(PubAck(first.packet_id or 0))
        [second] = sub.publishes()
        self.assertEqual((first.topic, second.topic, second.payload), ("t", "", b"2"))
