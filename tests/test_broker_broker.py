"""
Tests for L{vernemq.broker.broker}: CONNECT handling (CONNACK per protocol
version, client id rules, allowed protocol versions, anonymous access, the
auth hook chain), session takeover and session present, retained messages,
write batching and node shutdown -- all as an MQTT client sees them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests import brokerhelpers
from tests.brokerhelpers import BASE_CONFIG, FakeClient, Harness
from vernemq.broker.message import Message
from vernemq.interfaces import (
    IAuthOnPublish,
    IAuthOnPublishM5,
    IAuthOnRegister,
    IAuthOnRegisterM5,
    IOnClientLifecycle,
    IOnRegister,
)
from vernemq.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Publish,
    Subscribe,
    Subscription,
    Will,
)
from vernemq.plugins.hooks import NEXT, OK, AllowAllACL, Error, HookChain, Ok

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5

#: Every protocol level a client may speak.
LEVELS = (MQTT_3_1, MQTT_3_1_1, MQTT_5)


def connack(client: FakeClient, *args: Any, **kw: Any) -> ConnAck:
    """Send CONNECT and return the CONNACK (asserted to be one)."""
    ack = client.connect(*args, **kw)
    assert isinstance(ack, ConnAck), ack
    return ack


def connect_all(
    client: FakeClient, client_id: str, clean: bool = True, **props: Any
) -> tuple[ConnAck, list[Publish]]:
    """
    Send CONNECT; return the CONNACK (asserted first) and the PUBLISH
    packets that came with it in the same write.
    """
    client.send(
        Connect(
            client_id,
            protocol_level=client.level,
            clean_start=clean,
            keep_alive=0,
            properties=props,
            protocol_name="MQIsdp" if client.level == MQTT_3_1 else "MQTT",
        )
    )
    packets = client.received()
    ack = packets[0]
    assert isinstance(ack, ConnAck), packets
    return ack, [p for p in packets[1:] if isinstance(p, Publish)]


def pending_publishes(client: FakeClient) -> list[Publish]:
    """The PUBLISH packets that came with the last SUBACK (retained ones)."""
    return [p for p in client.pending if isinstance(p, Publish)]


@implementer(IAuthOnRegister, IAuthOnRegisterM5)
class RegisterAuth:
    """
    An C{auth_on_register}/C{_m5} plugin answering C{answer} (a value or
    a callable taking the hook's arguments) and recording every call.
    """

    def __init__(self, answer: Any = OK) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _answer(self, name: str, args: tuple[Any, ...]) -> Any:
        self.calls.append((name, args))
        if callable(self.answer):
            return self.answer(*args)
        return self.answer

    def auth_on_register(
        self,
        peer: tuple[str, int],
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_session: bool,
    ) -> Any:
        return self._answer(
            "auth_on_register", (peer, subscriber_id, username, password, clean_session)
        )

    def auth_on_register_m5(
        self,
        peer: tuple[str, int],
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_start: bool,
        properties: dict[str, object],
    ) -> Any:
        return self._answer(
            "auth_on_register_m5",
            (peer, subscriber_id, username, password, clean_start, properties),
        )


@implementer(IOnRegister, IOnClientLifecycle)
class LifecycleRecorder:
    """Records the informational register/lifecycle hooks."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_register(
        self, peer: tuple[str, int], subscriber_id: tuple[str, str], username: str | None
    ) -> None:
        self.events.append(("on_register", subscriber_id, username))

    def on_client_wakeup(self, subscriber_id: tuple[str, str]) -> None:
        self.events.append(("on_client_wakeup", subscriber_id))

    def on_client_offline(self, subscriber_id: tuple[str, str]) -> None:
        self.events.append(("on_client_offline", subscriber_id))

    def on_client_gone(self, subscriber_id: tuple[str, str]) -> None:
        self.events.append(("on_client_gone", subscriber_id))

    def on_session_expired(self, subscriber_id: tuple[str, str]) -> None:
        self.events.append(("on_session_expired", subscriber_id))


def chain(*plugins: object) -> HookChain:
    """A hook chain with the default allow-all ACL plus C{plugins}."""
    hooks = HookChain()
    hooks.register(AllowAllACL())
    for plugin in plugins:
        hooks.register(plugin)
    return hooks


class RecordingTransport(StringTransport):
    """A StringTransport that counts C{write} calls."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class ConnAckTests(SynchronousTestCase):
    """A successful CONNECT is answered with CONNACK 0 in every version."""

    def test_accepted_every_version(self) -> None:
        """
        MQTT 3.1, 3.1.1 and 5.0 clients get CONNACK 0 without session
        present; 3.x CONNACKs carry no properties.
        """
        h = Harness()
        for level in LEVELS:
            c = h.client(level)
            ack = connack(c, f"client-{level}")
            self.assertEqual((ack.session_present, ack.reason_code), (False, 0), level)
            self.assertFalse(c.closed)
            if level != MQTT_5:
                self.assertEqual(ack.properties, {})
        self.assertEqual(h.broker.stats()["connects"], 3)

    def test_v5_properties(self) -> None:
        """
        An MQTT 5.0 CONNACK leaves shared subscriptions available (the
        property is absent, which means available) and has no assigned
        client id when the client sent one.
        """
        h = Harness()
        ack = connack(h.client(MQTT_5), "v5")
        self.assertNotIn("shared_subscription_available", ack.properties)
        self.assertNotIn("assigned_client_identifier", ack.properties)
        self.assertNotIn("session_expiry_interval", ack.properties)

    def test_v5_configured_limits(self) -> None:
        """
        The broker's receive maximum, topic alias maximum and maximum
        packet size are announced in an MQTT 5.0 CONNACK.
        """
        h = Harness(receive_max_broker=10, topic_alias_max_client=5, max_message_size=1000)
        ack = connack(h.client(MQTT_5), "v5")
        self.assertEqual(ack.properties["receive_maximum"], 10)
        self.assertEqual(ack.properties["topic_alias_maximum"], 5)
        self.assertEqual(ack.properties["maximum_packet_size"], 1000)

    def test_v5_session_expiry_capped(self) -> None:
        """
        A "never expire" session expiry interval is capped by
        C{persistent_client_expiration}, and the CONNACK says so.
        """
        h = Harness(persistent_client_expiration="1h")
        ack = connack(
            h.client(MQTT_5), "v5", clean=False,
            properties={"session_expiry_interval": 0xFFFFFFFF},
        )
        self.assertEqual(ack.properties["session_expiry_interval"], 3600)

    def test_v5_session_expiry_granted_as_asked(self) -> None:
        """An interval that needs no capping is not echoed."""
        h = Harness(persistent_client_expiration="1h")
        ack = connack(
            h.client(MQTT_5), "v5", clean=False, properties={"session_expiry_interval": 60}
        )
        self.assertNotIn("session_expiry_interval", ack.properties)

    def test_register_hooks_informed(self) -> None:
        """C{on_register} and C{on_client_wakeup} run after the CONNACK."""
        rec = LifecycleRecorder()
        h = Harness(hooks=chain(rec))
        h.connected("c", username="u")
        self.assertEqual(
            rec.events, [("on_register", ("", "c"), "u"), ("on_client_wakeup", ("", "c"))]
        )


class ClientIdTests(SynchronousTestCase):
    """Client identifier rules (MQTT-3.1.3-6..9, VerneMQ's limits)."""

    def test_empty_v311_clean_assigned(self) -> None:
        """
        An MQTT 3.1.1 client with an empty client id and clean session is
        accepted under a fresh VerneMQ-style id; two such clients do not
        take each other over.
        """
        h = Harness()
        a = h.client(MQTT_3_1_1)
        b = h.client(MQTT_3_1_1)
        self.assertEqual(connack(a, "").reason_code, 0)
        self.assertEqual(connack(b, "").reason_code, 0)
        self.assertFalse(a.closed)
        self.assertFalse(b.closed)
        ids = [cid for _, cid in h.broker.sessions]
        self.assertEqual(len(ids), 2)
        self.assertNotEqual(ids[0], ids[1])
        for cid in ids:
            self.assertTrue(cid.startswith("anon-"), cid)

    def test_empty_v5_assigned_identifier(self) -> None:
        """
        An MQTT 5.0 client with an empty client id gets the id the broker
        assigned in the CONNACK (Assigned Client Identifier), and that is
        the session's id.
        """
        h = Harness()
        ack = connack(h.client(MQTT_5), "")
        self.assertEqual(ack.reason_code, 0)
        assigned = ack.properties["assigned_client_identifier"]
        self.assertTrue(assigned.startswith("anon-"))
        self.assertIn(("", assigned), h.broker.sessions)

    def test_empty_v5_clean_start_false_assigned(self) -> None:
        """MQTT 5.0 assigns an id even without clean start."""
        h = Harness()
        ack = connack(h.client(MQTT_5), "", clean=False)
        self.assertEqual(ack.reason_code, 0)
        self.assertIn("assigned_client_identifier", ack.properties)

    def test_empty_v311_persistent_rejected(self) -> None:
        """
        An MQTT 3.1.1 client with an empty client id and clean session 0
        gets CONNACK 0x02 (identifier rejected) and is disconnected.
        """
        h = Harness()
        c = h.client(MQTT_3_1_1)
        ack = connack(c, "", clean=False)
        self.assertEqual((ack.session_present, ack.reason_code), (False, 0x02))
        self.assertTrue(c.closed)
        self.assertEqual(h.broker.sessions, {})

    def test_empty_v31_rejected(self) -> None:
        """MQTT 3.1 requires a client id: CONNACK 0x02."""
        h = Harness()
        c = h.client(MQTT_3_1)
        self.assertEqual(connack(c, "").reason_code, 0x02)
        self.assertTrue(c.closed)

    def test_too_long_v3(self) -> None:
        """A client id over C{max_client_id_size} bytes: CONNACK 0x02 (3.x)."""
        h = Harness(max_client_id_size=5)
        for level in (MQTT_3_1, MQTT_3_1_1):
            c = h.client(level)
            self.assertEqual(connack(c, "abcdef").reason_code, 0x02, level)
            self.assertTrue(c.closed)
        self.assertEqual(h.broker.sessions, {})

    def test_too_long_v5(self) -> None:
        """... and reason 0x85 (client identifier not valid) for MQTT 5.0."""
        h = Harness(max_client_id_size=5)
        c = h.client(MQTT_5)
        self.assertEqual(connack(c, "abcdef").reason_code, 0x85)
        self.assertTrue(c.closed)

    def test_longest_allowed(self) -> None:
        """A client id of exactly C{max_client_id_size} bytes is fine."""
        h = Harness(max_client_id_size=5)
        for level in LEVELS:
            self.assertEqual(connack(h.client(level), "abcde").reason_code, 0, level)

    def test_size_in_bytes(self) -> None:
        """The size limit counts UTF-8 bytes, not characters."""
        h = Harness(max_client_id_size=5)
        self.assertEqual(connack(h.client(MQTT_5), "\u00e9\u00e9\u00e9").reason_code, 0x85)

    def test_v31_longer_than_23(self) -> None:
        """
        Like VerneMQ, the limit is C{max_client_id_size} (100), not MQTT
        3.1's 23 characters.
        """
        h = Harness()
        self.assertEqual(connack(h.client(MQTT_3_1), "x" * 60).reason_code, 0)


class ProtocolVersionTests(SynchronousTestCase):
    """C{listener.*.allowed_protocol_versions}."""

    def harness(self, versions: str) -> Harness:
        return Harness(BASE_CONFIG + f"listener.tcp.allowed_protocol_versions = {versions}\n")

    def test_v5_refused(self) -> None:
        """With C{3,4}, an MQTT 5.0 client gets CONNACK 0x84 and is closed."""
        h = self.harness("3,4")
        c = h.client(MQTT_5)
        ack = connack(c, "v5")
        self.assertEqual(ack.reason_code, 0x84)
        self.assertTrue(c.closed)
        self.assertEqual(h.broker.sessions, {})
        self.assertEqual(connack(h.client(MQTT_3_1_1), "v4").reason_code, 0)
        self.assertEqual(connack(h.client(MQTT_3_1), "v3").reason_code, 0)

    def test_v3_refused(self) -> None:
        """
        With C{5}, MQTT 3.1.1 and 3.1 clients get CONNACK 0x01
        (unacceptable protocol version).
        """
        h = self.harness("5")
        for level in (MQTT_3_1_1, MQTT_3_1):
            c = h.client(level)
            self.assertEqual(connack(c, f"c{level}").reason_code, 0x01, level)
            self.assertTrue(c.closed)
        self.assertEqual(connack(h.client(MQTT_5), "v5").reason_code, 0)

    def test_bridge_level(self) -> None:
        """Level 131 (3.1 bridge) is accepted by default, refused by C{3,4}."""
        self.assertEqual(connack(Harness().client(131), "br").reason_code, 0)
        c = self.harness("3,4").client(131)
        self.assertEqual(connack(c, "br").reason_code, 0x01)


class AnonymousTests(SynchronousTestCase):
    """C{allow_anonymous} and the C{auth_on_register} chain."""

    def test_off_without_auth_plugin_v3(self) -> None:
        """
        With C{allow_anonymous = off} and no plugin implementing
        C{auth_on_register} (C{no_matching_hook_found}), a 3.x client is
        refused with CONNACK 5 (not authorized), with or without
        credentials.
        """
        h = Harness(allow_anonymous=False)
        for level in (MQTT_3_1, MQTT_3_1_1):
            c = h.client(level)
            self.assertEqual(connack(c, "a").reason_code, 0x05, level)
            self.assertTrue(c.closed)
            c = h.client(level)
            ack = connack(c, "b", username="u", password=b"p")
            self.assertEqual(ack.reason_code, 0x05, level)
        self.assertEqual(h.broker.sessions, {})

    def test_off_without_auth_plugin_v5(self) -> None:
        """... and an MQTT 5.0 client with reason 0x87 (not authorized)."""
        h = Harness(allow_anonymous=False)
        c = h.client(MQTT_5)
        self.assertEqual(connack(c, "a").reason_code, 0x87)
        self.assertTrue(c.closed)

    def test_listener_override(self) -> None:
        """C{allow_anonymous_override} on a listener lets clients in."""
        h = Harness(
            "allow_anonymous = off\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.default.allow_anonymous_override = on\n"
        )
        self.assertEqual(connack(h.client(MQTT_3_1_1), "a").reason_code, 0)

    def test_on_skips_hooks(self) -> None:
        """With C{allow_anonymous = on} the auth hooks are not called at all."""
        auth = RegisterAuth(Error())
        h = Harness(hooks=chain(auth))
        self.assertEqual(connack(h.client(MQTT_3_1_1), "a").reason_code, 0)
        self.assertEqual(auth.calls, [])


class RegisterHookTests(SynchronousTestCase):
    """The C{auth_on_register} hooks decide about a CONNECT."""

    def harness(self, *plugins: object) -> Harness:
        return Harness(hooks=chain(*plugins), allow_anonymous=False)

    def test_arguments_v3(self) -> None:
        """The 3.x hook gets peer, subscriber id, credentials and clean session."""
        auth = RegisterAuth()
        h = self.harness(auth)
        c = h.client(MQTT_3_1_1)
        self.assertEqual(connack(c, "id", clean=False, username="u", password=b"pw").reason_code, 0)
        self.assertEqual(
            auth.calls,
            [("auth_on_register", (c.proto.peer, ("", "id"), "u", b"pw", False))],
        )
        self.assertEqual(c.proto.peer[0], "10.0.0.7")

    def test_arguments_v5(self) -> None:
        """The MQTT 5.0 hook is C{auth_on_register_m5} and gets the properties."""
        auth = RegisterAuth()
        h = self.harness(auth)
        c = h.client(MQTT_5)
        props = {"session_expiry_interval": 10}
        self.assertEqual(connack(c, "id", username="u", properties=props).reason_code, 0)
        self.assertEqual(
            auth.calls,
            [("auth_on_register_m5", (c.proto.peer, ("", "id"), "u", None, True, props))],
        )

    def test_error_refuses(self) -> None:
        """
        An C{Error} refuses the CONNECT: CONNACK 5 (3.x) / 0x87 (5.0); no
        session is created.
        """
        h = self.harness(RegisterAuth(Error("not_allowed")))
        for level, code in ((MQTT_3_1, 5), (MQTT_3_1_1, 5), (MQTT_5, 0x87)):
            c = h.client(level)
            self.assertEqual(connack(c, "id").reason_code, code, level)
            self.assertTrue(c.closed)
        self.assertEqual(h.broker.sessions, {})

    def test_invalid_credentials(self) -> None:
        """C{invalid_credentials}: CONNACK 4 (3.x) / 0x86 (5.0)."""
        h = self.harness(RegisterAuth(Error("invalid_credentials")))
        for level, code in ((MQTT_3_1, 4), (MQTT_3_1_1, 4), (MQTT_5, 0x86)):
            c = h.client(level)
            self.assertEqual(connack(c, "id").reason_code, code, level)

    def test_v5_reason_code(self) -> None:
        """An MQTT 5.0 hook error may choose the CONNACK reason code."""
        h = self.harness(RegisterAuth(Error("banned", 0x8A)))
        self.assertEqual(connack(h.client(MQTT_5), "id").reason_code, 0x8A)
        self.assertEqual(connack(h.client(MQTT_3_1_1), "id").reason_code, 5)

    def test_all_next_refuses(self) -> None:
        """If every plugin says next, the client is refused."""
        h = self.harness(RegisterAuth(NEXT), RegisterAuth(NEXT))
        self.assertEqual(connack(h.client(MQTT_3_1_1), "id").reason_code, 5)

    def test_chain_order(self) -> None:
        """
        The first plugin that does not say next decides; later plugins are
        not asked.
        """
        first, second, third = RegisterAuth(NEXT), RegisterAuth(OK), RegisterAuth(Error())
        h = self.harness(first, second, third)
        self.assertEqual(connack(h.client(MQTT_3_1_1), "id").reason_code, 0)
        self.assertEqual((len(first.calls), len(second.calls), third.calls), (1, 1, []))

    def test_raising_hook_refuses(self) -> None:
        """A hook that raises refuses the client (and the failure is logged)."""

        def boom(*args: Any) -> Any:
            raise RuntimeError("boom")

        h = self.harness(RegisterAuth(boom))
        c = h.client(MQTT_3_1_1)
        self.assertEqual(connack(c, "id").reason_code, 5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_clean_session_modifier(self) -> None:
        """
        The C{clean_session} modifier makes a 3.x clean session
        persistent: it survives the connection.
        """
        h = self.harness(RegisterAuth(Ok({"clean_session": False})))
        c = h.connected("id")
        c.subscribe(("t", 1))
        c.disconnect()
        self.assertIn(("", "id"), h.broker.sessions)
        ack = connack(h.client(MQTT_3_1_1), "id", clean=False)
        self.assertTrue(ack.session_present)

    def test_retry_interval_modifier_in_milliseconds(self) -> None:
        """
        A C{retry_interval} register modifier is in milliseconds, as in
        VerneMQ's webhooks: 2000 resends an unacked QoS 1 message after 2 s.
        """
        h = self.harness(RegisterAuth(Ok({"retry_interval": 2000})))
        sub = h.connected("sub")
        sub.subscribe(("t", 1))
        pub = h.connected("pub")
        pub.publish("t", b"m", qos=1)
        first = sub.publishes()
        self.assertEqual([False], [p.dup for p in first])
        h.advance(1.9)
        self.assertEqual([], sub.publishes())
        h.advance(0.2)
        self.assertEqual([(True, first[0].packet_id)],
                         [(p.dup, p.packet_id) for p in sub.publishes()])

    def test_async_pauses_packets(self) -> None:
        """
        While an asynchronous C{auth_on_register} is pending nothing is
        answered, even for packets that arrived in the same read; when it
        fires, CONNACK, SUBACK and the delivery follow in packet order.
        """
        d: Deferred[Any] = Deferred()
        h = self.harness(RegisterAuth(d))
        c = h.client(MQTT_3_1_1)
        c.send(
            Connect("slow", keep_alive=0),
            Subscribe(1, [Subscription("t", 0)]),
            Publish("t", b"first"),
            Publish("t", b"second"),
        )
        self.assertEqual(c.received(), [])
        self.assertEqual(c.transport.producerState, "paused")
        d.callback(OK)
        packets = c.received()
        self.assertEqual([type(p).__name__ for p in packets],
                         ["ConnAck", "SubAck", "Publish", "Publish"])
        self.assertEqual(packets[0], ConnAck(False, 0))
        self.assertEqual([p.payload for p in packets if isinstance(p, Publish)],
                         [b"first", b"second"])
        self.assertEqual(c.transport.producerState, "producing")

    def test_async_already_fired(self) -> None:
        """
        A hook answering with an already fired Deferred behaves like a
        synchronous one: every packet of the read is handled, in order.
        """
        h = self.harness(RegisterAuth(lambda *a: succeed(OK)))
        c = h.client(MQTT_5)
        c.send(
            Connect("quick", protocol_level=MQTT_5, keep_alive=0),
            Subscribe(1, [Subscription("t", 0)]),
            Publish("t", b"1"),
        )
        packets = c.received()
        self.assertEqual([type(p).__name__ for p in packets], ["ConnAck", "SubAck", "Publish"])
        self.assertEqual(c.transport.producerState, "producing")

    def test_async_failure_refuses(self) -> None:
        """A hook whose Deferred fails refuses the client; the failure is logged."""
        d: Deferred[Any] = Deferred()
        h = self.harness(RegisterAuth(d))
        c = h.client(MQTT_3_1_1)
        self.assertIsNone(c.connect("slow"))
        d.errback(RuntimeError("backend down"))
        self.assertEqual(c.received(), [ConnAck(False, 5)])
        self.assertTrue(c.closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(h.broker.sessions, {})

    def test_async_error_refuses(self) -> None:
        """An asynchronous error refuses the client when it fires."""
        d: Deferred[Any] = Deferred()
        h = self.harness(RegisterAuth(d))
        c = h.client(MQTT_5)
        self.assertIsNone(c.connect("slow"))
        self.assertFalse(c.closed)
        d.callback(Error("invalid_credentials"))
        ack = c.received()[0]
        self.assertEqual(ack, ConnAck(False, 0x86))
        self.assertTrue(c.closed)

    def test_async_after_client_left(self) -> None:
        """
        If the client went away while its hook was pending, the late Ok
        registers no session and writes nothing.
        """
        d: Deferred[Any] = Deferred()
        h = self.harness(RegisterAuth(d))
        c = h.client(MQTT_3_1_1)
        self.assertIsNone(c.connect("gone"))
        c.lose()
        d.callback(OK)
        h.advance(0)
        self.assertEqual(h.broker.sessions, {})
        self.assertEqual(c.received(), [])


@implementer(IAuthOnPublish, IAuthOnPublishM5)
class DenyPublish:
    """Refuses every publish to C{topic}, says next for the others."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def auth_on_publish(self, username: Any, sid: Any, qos: int, topic: str,
                        payload: bytes, retain: bool) -> Any:
        return Error() if topic == self.topic else NEXT

    def auth_on_publish_m5(self, username: Any, sid: Any, qos: int, topic: str,
                           payload: bytes, retain: bool, properties: Any) -> Any:
        return Error() if topic == self.topic else NEXT


class WillTests(SynchronousTestCase):
    """The will carried by a CONNECT."""

    def test_not_authorized_refuses(self) -> None:
        """
        A will the publish ACL refuses makes the CONNECT fail: CONNACK 5
        (3.x) / 0x87 (5.0); the will is never published.
        """
        hooks = HookChain()
        hooks.register(DenyPublish("forbidden"), priority=-1)
        hooks.register(AllowAllACL())
        h = Harness(hooks=hooks)
        watcher = h.connected("watcher")
        watcher.subscribe("#")
        for level, code in ((MQTT_3_1, 5), (MQTT_3_1_1, 5), (MQTT_5, 0x87)):
            c = h.client(level)
            ack = connack(c, f"c{level}", will=Will("forbidden", b"x"))
            self.assertEqual(ack.reason_code, code, level)
            self.assertTrue(c.closed)
            c.finish_close()
        self.assertEqual(watcher.publishes(), [])
        self.assertEqual(sorted(cid for _, cid in h.broker.sessions), ["watcher"])

    def test_retained_will(self) -> None:
        """A will with RETAIN becomes the topic's retained message."""
        h = Harness()
        h.connected("dying", will=Will("status/dying", b"offline", retain=True)).lose()
        c = h.connected("late")
        c.subscribe("status/+")
        self.assertEqual([(p.topic, p.payload, p.retain) for p in pending_publishes(c)],
                         [("status/dying", b"offline", True)])

    def test_will_delay_capped(self) -> None:
        """C{max_last_will_delay} caps an MQTT 5.0 will delay."""
        h = Harness(max_last_will_delay="2s")
        watcher = h.connected("watcher")
        watcher.subscribe("w")
        h.connected(
            "c", MQTT_5,
            will=Will("w", b"bye", properties={"will_delay_interval": 100}),
            properties={"session_expiry_interval": 1000},
        ).lose()
        h.advance(1.5)
        self.assertEqual(watcher.publishes(), [])
        h.advance(0.5)
        self.assertEqual([p.payload for p in watcher.publishes()], [b"bye"])

    def test_normal_disconnect_no_will(self) -> None:
        """A DISCONNECT discards the will."""
        h = Harness()
        watcher = h.connected("watcher")
        watcher.subscribe("w")
        c = h.connected("c", will=Will("w", b"bye"))
        c.disconnect()
        c.finish_close()
        self.assertEqual(watcher.publishes(), [])


class TakeoverTests(SynchronousTestCase):
    """A second CONNECT with the same client id takes the session over."""

    def test_old_connection_closed_v3(self) -> None:
        """The old 3.1.1 connection is closed without any packet."""
        h = Harness()
        old = h.connected("same")
        new = h.connected("same")
        self.assertTrue(old.closed)
        self.assertEqual(old.received(), [])
        self.assertFalse(new.closed)

    def test_old_connection_disconnected_v5(self) -> None:
        """An MQTT 5.0 old connection gets DISCONNECT 0x8E (session taken over)."""
        h = Harness()
        old = h.connected("same", MQTT_5)
        h.connected("same", MQTT_5)
        self.assertEqual(old.received(), [Disconnect(0x8E)])
        self.assertTrue(old.closed)

    def test_across_versions(self) -> None:
        """A 3.1.1 client may take over a 5.0 client's id and vice versa."""
        h = Harness()
        old = h.connected("same", MQTT_5)
        mid = h.connected("same", MQTT_3_1_1)
        self.assertEqual(old.received(), [Disconnect(0x8E)])
        h.connected("same", MQTT_5)
        self.assertTrue(mid.closed)
        self.assertEqual(mid.received(), [])

    def test_clean_takeover_not_present(self) -> None:
        """A clean-session takeover starts afresh: session present 0."""
        h = Harness()
        h.connected("same")
        ack = connack(h.client(MQTT_3_1_1), "same")
        self.assertFalse(ack.session_present)

    def test_persistent_subscriptions_survive(self) -> None:
        """
        Taking over a persistent session keeps its subscriptions (session
        present 1); the messages go to the new connection only, and the old
        connection's late close changes nothing.
        """
        for level in (MQTT_3_1_1, MQTT_5):
            h = Harness()
            props = {"session_expiry_interval": 3600} if level == MQTT_5 else None
            old = h.connected("same", level, clean=False, properties=props)
            old.subscribe(("t/#", 1))
            new = h.client(level)
            ack = connack(new, "same", clean=False, properties=props)
            self.assertTrue(ack.session_present, level)
            old.received()
            old.finish_close()
            h.connected("pub").publish("t/1", b"hello", qos=1)
            got = new.publishes()
            self.assertEqual([(p.topic, p.payload, p.qos) for p in got],
                             [("t/1", b"hello", 1)], level)
            self.assertEqual(old.received(), [])

    def test_clean_takeover_drops_subscriptions(self) -> None:
        """A clean-session takeover of a persistent session discards it."""
        h = Harness()
        old = h.connected("same", clean=False)
        old.subscribe("t")
        new = h.connected("same", clean=True)
        h.connected("pub").publish("t", b"x")
        self.assertEqual(new.publishes(), [])
        self.assertEqual(h.broker.stats()["subscriptions"], 0)

    def test_will_published_on_takeover(self) -> None:
        """The old connection's will is published when it is taken over."""
        h = Harness()
        watcher = h.connected("watcher")
        watcher.subscribe("will/#")
        h.connected("same", will=Will("will/same", b"bye"))
        h.connected("same")
        self.assertEqual([(p.topic, p.payload) for p in watcher.publishes()],
                         [("will/same", b"bye")])

    def test_will_suppressed_on_takeover(self) -> None:
        """... unless C{suppress_lwt_on_session_takeover} is on."""
        h = Harness(suppress_lwt_on_session_takeover=True)
        watcher = h.connected("watcher")
        watcher.subscribe("will/#")
        h.connected("same", will=Will("will/same", b"bye"))
        h.connected("same")
        self.assertEqual(watcher.publishes(), [])

    def test_new_will_replaces_old(self) -> None:
        """After a takeover, the new connection's will is the one in force."""
        h = Harness(suppress_lwt_on_session_takeover=True)
        watcher = h.connected("watcher")
        watcher.subscribe("will/#")
        h.connected("same", will=Will("will/old", b"1"))
        new = h.connected("same", will=Will("will/new", b"2"))
        new.lose()
        self.assertEqual([p.topic for p in watcher.publishes()], ["will/new"])

    def test_refused_connect_keeps_old(self) -> None:
        """A CONNECT that is refused does not take over anything."""
        h = Harness(hooks=chain(RegisterAuth(lambda peer, sid, user, *a: (
            OK if user == "good" else Error()))), allow_anonymous=False)
        old = h.connected("same", username="good")
        bad = h.client(MQTT_3_1_1)
        self.assertEqual(connack(bad, "same", username="bad").reason_code, 5)
        self.assertFalse(old.closed)
        old.subscribe("t")
        old.publish("t", b"still here")
        self.assertEqual([p.payload for p in old.publishes()], [b"still here"])


class SessionPresentTests(SynchronousTestCase):
    """Session present after reconnecting."""

    def test_persistent_reconnect(self) -> None:
        """
        A 3.1.1 persistent session is present after a reconnect, and QoS 1
        messages queued while offline are delivered after the CONNACK.
        """
        h = Harness()
        c = h.connected("p", clean=False)
        self.assertTrue(c.subscribe(("t", 1)))
        c.disconnect()
        h.connected("pub").publish("t", b"offline", qos=1)
        ack, queued = connect_all(h.client(MQTT_3_1_1), "p", clean=False)
        self.assertTrue(ack.session_present)
        self.assertEqual([(p.payload, p.qos) for p in queued], [(b"offline", 1)])

    def test_first_connect_not_present(self) -> None:
        """Clean session 0 without a stored session: session present 0."""
        h = Harness()
        for level in LEVELS:
            ack = connack(h.client(level), f"new{level}", clean=False)
            self.assertFalse(ack.session_present, level)

    def test_clean_discards_persistent(self) -> None:
        """
        Clean session 1 discards a stored persistent session: session
        present 0, no old subscriptions, no queued messages.
        """
        for level in LEVELS:
            h = Harness()
            props = {"session_expiry_interval": 3600} if level == MQTT_5 else None
            c = h.connected("p", level, clean=False, properties=props)
            c.subscribe(("t", 1))
            c.disconnect()
            pub = h.connected("pub")
            pub.publish("t", b"offline", qos=1)
            c2 = h.client(level)
            ack, queued = connect_all(c2, "p", clean=True)
            self.assertFalse(ack.session_present, level)
            self.assertEqual(queued, [], level)
            pub.publish("t", b"later")
            self.assertEqual(c2.publishes(), [], level)

    def test_clean_session_gone(self) -> None:
        """A clean session ends with its connection."""
        h = Harness()
        c = h.connected("c")
        c.subscribe("t")
        c.disconnect()
        self.assertEqual(h.broker.sessions, {})
        self.assertFalse(connack(h.client(MQTT_3_1_1), "c", clean=False).session_present)

    def test_v5_session_expiry(self) -> None:
        """
        An MQTT 5.0 session with an expiry interval is present until that
        interval has passed offline.
        """
        h = Harness()
        props = {"session_expiry_interval": 60}
        h.connected("e", MQTT_5, clean=False, properties=props).disconnect()
        h.advance(59)
        c = h.client(MQTT_5)
        self.assertTrue(connack(c, "e", clean=False, properties=props).session_present)
        c.disconnect()
        h.advance(61)
        self.assertEqual(h.broker.sessions, {})
        self.assertFalse(connack(h.client(MQTT_5), "e", clean=False).session_present)

    def test_v5_zero_expiry_not_kept(self) -> None:
        """MQTT 5.0 clean start 0 without an expiry interval keeps nothing."""
        h = Harness()
        h.connected("e", MQTT_5, clean=False).disconnect()
        self.assertFalse(connack(h.client(MQTT_5), "e", clean=False).session_present)


class RetainedTests(SynchronousTestCase):
    """Retained messages as subscribers see them."""

    def setUp(self) -> None:
        self.h = Harness()
        self.pub = self.h.connected("pub")

    def retained_of(self, client: FakeClient, *filters: Any) -> list[tuple[str, bytes, bool]]:
        client.subscribe(*filters)
        return [
            (p.topic, p.payload, p.retain)
            for p in client.pending + client.publishes()
            if isinstance(p, Publish)
        ]

    def test_sent_on_subscribe(self) -> None:
        """A new subscriber gets the retained message with RETAIN set."""
        self.pub.publish("a/b", b"v1", retain=True)
        for level in LEVELS:
            c = self.h.connected(f"s{level}", level)
            self.assertEqual(self.retained_of(c, "a/b"), [("a/b", b"v1", True)], level)

    def test_replaced(self) -> None:
        """A newer retained message replaces the older one."""
        self.pub.publish("a/b", b"v1", retain=True)
        self.pub.publish("a/b", b"v2", retain=True)
        c = self.h.connected("s")
        self.assertEqual(self.retained_of(c, "a/b"), [("a/b", b"v2", True)])
        self.assertEqual(self.h.broker.stats()["retained"], 1)

    def test_cleared_by_empty_payload(self) -> None:
        """A retained message with an empty payload clears the topic."""
        self.pub.publish("a/b", b"v1", retain=True)
        self.pub.publish("a/b", b"", retain=True)
        c = self.h.connected("s")
        self.assertEqual(self.retained_of(c, "a/b"), [])
        self.assertEqual(self.h.broker.stats()["retained"], 0)

    def test_non_retained_does_not_replace(self) -> None:
        """A PUBLISH without RETAIN leaves the retained message alone."""
        self.pub.publish("a/b", b"v1", retain=True)
        self.pub.publish("a/b", b"plain")
        c = self.h.connected("s")
        self.assertEqual(self.retained_of(c, "a/b"), [("a/b", b"v1", True)])

    def test_live_delivery_clears_retain(self) -> None:
        """
        An established subscription receives a retained PUBLISH with
        RETAIN 0 (MQTT-3.3.1-9), also an empty (clearing) one.
        """
        c = self.h.connected("s")
        c.subscribe("a/b")
        self.pub.publish("a/b", b"v1", retain=True)
        self.pub.publish("a/b", b"", retain=True)
        self.assertEqual([(p.payload, p.retain) for p in c.publishes()],
                         [(b"v1", False), (b"", False)])

    def test_wildcards(self) -> None:
        """Wildcard filters get every matching retained message."""
        for topic in ("a/b", "a/c", "a/b/c", "x/b"):
            self.pub.publish(topic, topic.encode(), retain=True)
        c = self.h.connected("s1")
        self.assertEqual(sorted(t for t, _, _ in self.retained_of(c, "a/+")), ["a/b", "a/c"])
        c = self.h.connected("s2")
        self.assertEqual(sorted(t for t, _, _ in self.retained_of(c, "a/#")),
                         ["a/b", "a/b/c", "a/c"])
        c = self.h.connected("s3")
        self.assertEqual(sorted(t for t, _, _ in self.retained_of(c, "+/b")), ["a/b", "x/b"])

    def test_dollar_topics_not_matched_by_wildcard(self) -> None:
        """
        A retained C{$SYS} message (set by the broker) is not sent for
        C{#} or C{+/...}, only for a filter starting with C{$SYS}.
        """
        broker = self.h.broker
        broker.publish(broker.topics(""), Message("$SYS/n/uptime", b"1", retain=True))
        self.pub.publish("a", b"2", retain=True)
        c = self.h.connected("s1")
        self.assertEqual([t for t, _, _ in self.retained_of(c, "#")], ["a"])
        c = self.h.connected("s2")
        self.assertEqual(self.retained_of(c, "+/n/uptime"), [])
        c = self.h.connected("s3")
        self.assertEqual(self.retained_of(c, "$SYS/#"), [("$SYS/n/uptime", b"1", True)])

    def test_qos_downgraded(self) -> None:
        """A retained QoS 1 message goes out at the subscription's QoS."""
        self.pub.publish("q", b"v", qos=1, retain=True)
        c = self.h.connected("s0")
        c.subscribe(("q", 0))
        self.assertEqual([p.qos for p in pending_publishes(c)], [0])
        c = self.h.connected("s1")
        c.subscribe(("q", 2))
        self.assertEqual([(p.qos, p.retain) for p in pending_publishes(c)], [(1, True)])

    def test_mountpoints_isolated(self) -> None:
        """Retained messages of one mountpoint are invisible in another."""
        h = Harness(
            BASE_CONFIG
            + "listener.tcp.other = 127.0.0.1:1884\n"
            + "listener.tcp.other.mountpoint = m1\n"
        )
        h.connected("p", listener="other").publish("a", b"m1", retain=True)
        c = h.connected("s")
        c.subscribe("a")
        self.assertEqual(c.pending + c.publishes(), [])
        c = h.connected("s2", listener="other")
        c.subscribe("a")
        self.assertEqual([p.payload for p in pending_publishes(c)], [b"m1"])

    def subscribe_v5(self, c: FakeClient, **opts: Any) -> list[Publish]:
        c.subscribe_with([Subscription("r/#", 0, **opts)])
        return pending_publishes(c)

    def test_v5_retain_handling(self) -> None:
        """
        Retain handling 0 sends retained messages on every SUBSCRIBE, 1
        only when the subscription is new, 2 never.
        """
        self.pub.publish("r/1", b"v", retain=True)
        c = self.h.connected("v5", MQTT_5)
        self.assertEqual(len(self.subscribe_v5(c, retain_handling=0)), 1)
        self.assertEqual(len(self.subscribe_v5(c, retain_handling=0)), 1)
        c = self.h.connected("v5b", MQTT_5)
        self.assertEqual(len(self.subscribe_v5(c, retain_handling=1)), 1)
        self.assertEqual(len(self.subscribe_v5(c, retain_handling=1)), 0)
        c = self.h.connected("v5c", MQTT_5)
        self.assertEqual(len(self.subscribe_v5(c, retain_handling=2)), 0)

    def test_v5_retain_as_published(self) -> None:
        """
        With retain-as-published an established subscription keeps the
        RETAIN flag of the publisher; without it RETAIN is 0.
        """
        rap = self.h.connected("rap", MQTT_5)
        rap.subscribe_with([Subscription("r", 0, retain_as_published=True)])
        plain = self.h.connected("plain", MQTT_5)
        plain.subscribe_with([Subscription("r", 0)])
        self.pub.publish("r", b"1", retain=True)
        self.pub.publish("r", b"2")
        self.assertEqual([(p.payload, p.retain) for p in rap.publishes()],
                         [(b"1", True), (b"2", False)])
        self.assertEqual([(p.payload, p.retain) for p in plain.publishes()],
                         [(b"1", False), (b"2", False)])


class WriteBatchingTests(SynchronousTestCase):
    """One transport write per connection per batch of input."""

    def setUp(self) -> None:
        self.patch(brokerhelpers, "StringTransport", RecordingTransport)
        self.h = Harness()

    def writes(self, c: FakeClient) -> int:
        transport = c.transport
        assert isinstance(transport, RecordingTransport)
        return transport.writes

    def test_fan_out_one_write_per_subscriber(self) -> None:
        """
        A read with several PUBLISH packets that fans out to N subscribers
        costs exactly one write per subscriber (and one for the
        publisher's acknowledgements).
        """
        subs = [self.h.connected(f"s{i}", level) for i, level in enumerate(LEVELS * 2)]
        for s in subs:
            s.subscribe(("t/#", 1))
        pub = self.h.connected("pub")
        before = [self.writes(s) for s in subs]
        pub_before = self.writes(pub)
        pub.send(*[Publish(f"t/{i}", b"x", 1, False, False, i + 1) for i in range(5)])
        added = [self.writes(s) - b for s, b in zip(subs, before, strict=True)]
        self.assertEqual(added, [1] * len(subs))
        self.assertEqual(self.writes(pub) - pub_before, 1)
        for s in subs:
            self.assertEqual(len(s.publishes()), 5)
        self.assertEqual(len(pub.received()), 5)

    def test_unmatched_no_write(self) -> None:
        """A QoS 0 PUBLISH that matches nobody writes nothing at all."""
        s = self.h.connected("s")
        s.subscribe("other")
        pub = self.h.connected("pub")
        before = self.writes(s), self.writes(pub)
        pub.publish("t")
        self.assertEqual((self.writes(s), self.writes(pub)), before)

    def test_outside_batch_flushed_later(self) -> None:
        """
        Output produced outside client input (here a message the node
        publishes itself) is written on the next reactor turn, once.
        """
        s = self.h.connected("s")
        s.subscribe("t")
        before = self.writes(s)
        topics = self.h.broker.topics("")
        self.h.broker.publish(topics, Message("t", b"1"))
        self.h.broker.publish(topics, Message("t", b"2"))
        self.assertEqual(self.writes(s), before)
        self.h.advance(0)
        self.assertEqual(self.writes(s), before + 1)
        self.assertEqual([p.payload for p in s.publishes()], [b"1", b"2"])

    def test_delayed_will_flushed(self) -> None:
        """A will published by a timer reaches the subscriber."""
        s = self.h.connected("s")
        s.subscribe("w")
        c = self.h.connected(
            "c", MQTT_5,
            will=Will("w", b"late", properties={"will_delay_interval": 5}),
            properties={"session_expiry_interval": 10},
        )
        c.lose()
        self.h.advance(4)
        self.assertEqual(s.publishes(), [])
        self.h.advance(1)
        self.assertEqual([p.payload for p in s.publishes()], [b"late"])


class ShutdownTests(SynchronousTestCase):
    """L{Broker.shutdown}: wills go out, then every connection closes."""

    def test_wills_reach_everyone(self) -> None:
        """
        Every connected client receives the wills of the others before
        its connection closes, whatever the order the broker visits them.
        """
        h = Harness()
        clients = []
        for i, level in enumerate(LEVELS * 2):
            c = h.connected(f"c{i}", level, will=Will(f"will/c{i}", f"bye {i}".encode()))
            c.subscribe("will/#")
            clients.append(c)
        h.broker.shutdown()
        for i, c in enumerate(clients):
            got = sorted(p.topic for p in c.publishes() if p.topic != f"will/c{i}")
            expected = sorted(f"will/c{j}" for j in range(len(clients)) if j != i)
            self.assertEqual(got, expected, f"client {i}")
            self.assertTrue(c.closed)

    def test_v5_disconnect_server_shutting_down(self) -> None:
        """MQTT 5.0 clients get DISCONNECT 0x8B; 3.x clients just a close."""
        h = Harness()
        v5 = h.connected("v5", MQTT_5)
        v4 = h.connected("v4", MQTT_3_1_1)
        h.broker.shutdown()
        self.assertEqual(v5.received(), [Disconnect(0x8B)])
        self.assertEqual(v4.received(), [])
        self.assertTrue(v5.closed)
        self.assertTrue(v4.closed)

    def test_will_before_disconnect(self) -> None:
        """An MQTT 5.0 subscriber gets a will before its DISCONNECT."""
        h = Harness()
        watcher = h.connected("watcher", MQTT_5)
        watcher.subscribe("will")
        h.connected("dying", will=Will("will", b"bye"))
        h.broker.shutdown()
        packets = watcher.received()
        self.assertEqual([type(p).__name__ for p in packets], ["Publish", "Disconnect"])

    def test_new_connections_refused(self) -> None:
        """After shutdown, new connections are dropped at once."""
        h = Harness()
        h.broker.shutdown()
        c = h.client(MQTT_3_1_1)
        self.assertTrue(c.closed)
        self.assertEqual(h.broker.stats()["connections"], 0)

    def test_connections_counted_down(self) -> None:
        """Once the transports report the close, no connection is left."""
        h = Harness()
        clients = [h.connected(f"c{i}") for i in range(3)]
        self.assertEqual(h.broker.stats()["connections"], 3)
        h.broker.shutdown()
        for c in clients:
            c.finish_close()
        self.assertEqual(h.broker.stats()["connections"], 0)
        self.assertEqual(h.broker.stats()["sessions_online"], 0)
