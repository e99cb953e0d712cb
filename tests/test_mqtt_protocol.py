"""
Tests for L{vernemq.mqtt.protocol}: what an MQTT client sees of its one
connection (bad input, chunked input, timers, takeover, limits, shutdown,
back-pressure).

Every test drives a real L{vernemq.broker.broker.Broker} on a fake clock
through L{tests.brokerhelpers.FakeClient}s and compares decoded packets.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from typing import cast

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import BASE_CONFIG, FakeClient, Harness
from vernemq.mqtt.codec import encode
from vernemq.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)

_WARNINGS = (LogLevel.warn, LogLevel.error, LogLevel.critical)


def capture_log(case: SynchronousTestCase) -> list[LogEvent]:
    """Collect every log event emitted until the end of the test."""
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


def warnings_in(events: list[LogEvent]) -> list[LogEvent]:
    """The events of level warn or above."""
    return [e for e in events if e.get("log_level") in _WARNINGS]


def protocol_name(level: int) -> str:
    """The protocol name a client of C{level} puts in CONNECT."""
    return "MQIsdp" if level & 0x7F == 3 else "MQTT"


class BadInputTests(SynchronousTestCase):
    """
    A client that breaks the protocol (MQTT 3.1.1 here, see the subclasses
    for 3.1 and 5.0) loses its connection: an MQTT 5.0 client first gets
    a CONNACK (CONNECT not accepted yet) or a DISCONNECT with the reason
    code; the node logs exactly one warning for it, publishes the will of
    an accepted client, and goes on serving everybody else.
    """

    level = 4

    def setUp(self) -> None:
        self.events = capture_log(self)
        self.harness = Harness(max_message_size=1024)
        self.bystander = self.harness.connected("bystander", self.level)
        self.bystander.subscribe("news", "will/#")
        self.bystander.received()

    # -- helpers -------------------------------------------------------------

    def v5(self, packet: Packet) -> list[Packet]:
        """What the bad client receives: C{packet} for MQTT 5.0, else nothing."""
        return [packet] if self.level == 5 else []

    def accepted(self) -> FakeClient:
        """A connected client with a will on C{will/bad}."""
        client = self.harness.connected("bad", self.level, will=Will("will/bad", b"gone"))
        client.received()
        return client

    def encode(self, packet: Packet) -> bytes:
        """C{packet} encoded at this test's protocol level."""
        return encode(packet, self.level)

    def send_bad(self, client: FakeClient, data: bytes) -> None:
        """Feed C{data}, the offending bytes; log events start now."""
        del self.events[:]
        client.send_bytes(data)

    def assertRejected(
        self, client: FakeClient, expected: list[Packet], will_published: bool
    ) -> None:
        """
        C{client} got C{expected} and was closed, with one warning naming
        it; its will went out if C{will_published}; the bystander is
        still connected and still gets messages, and new clients connect.
        """
        self.assertEqual(client.received(), expected)
        self.assertTrue(client.closed)
        logged = [formatEvent(e) for e in self.events]
        warnings = warnings_in(self.events)
        self.assertEqual(len(warnings), 1, logged)
        self.assertEqual(warnings[0]["peer"], client.proto.peer_text)
        about = [e for e in self.events if e.get("peer") == client.proto.peer_text]
        self.assertEqual(len(about), 1, logged)
        client.finish_close()
        will = [Publish("will/bad", b"gone")] if will_published else []
        self.assertEqual(self.bystander.publishes(), will)
        self.assertFalse(self.bystander.closed)
        other = self.harness.connected("other", self.level)
        other.publish("news", b"later")
        self.assertEqual(self.bystander.publishes(), [Publish("news", b"later")])
        self.assertEqual(len(warnings_in(self.events)), 1)

    # -- framing ---------------------------------------------------------------

    def test_remaining_length_too_long(self) -> None:
        """
        A remaining length of more than four bytes is a malformed packet
        (0x81), even before the rest of the packet arrives.
        """
        client = self.accepted()
        self.send_bad(client, b"\xc0\xff\xff\xff\xff\x01")
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    def test_remaining_length_mismatch(self) -> None:
        """
        A packet whose remaining length does not match its content (a
        PINGREQ with a body) is malformed (0x81).
        """
        client = self.accepted()
        self.send_bad(client, b"\xc0\x01\x00")
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    def test_malformed_connect(self) -> None:
        """
        A CONNECT with a byte after its end is malformed: an MQTT 5.0
        client gets CONNACK 0x81.  Its will was never accepted, so it is
        not published.
        """
        client = self.harness.client(self.level)
        raw = self.encode(
            Connect(
                "bad",
                protocol_level=self.level,
                will=Will("will/bad", b"gone"),
                protocol_name=protocol_name(self.level),
            )
        )
        self.assertLess(raw[1], 0x7F)
        self.send_bad(client, raw[:1] + bytes((raw[1] + 1,)) + raw[2:] + b"\x00")
        self.assertRejected(client, self.v5(ConnAck(False, 0x81)), will_published=False)

    def test_truncated_packet_then_connection_lost(self) -> None:
        """
        A connection lost in the middle of a packet: the partial packet is
        not handled, the will is published, one warning is logged.
        """
        client = self.accepted()
        raw = self.encode(Publish("news", b"half", 1, packet_id=1))
        self.send_bad(client, raw[:-1])
        self.assertEqual(warnings_in(self.events), [])
        client.lose()
        self.assertRejected(client, [], will_published=True)

    def test_lost_between_packets_is_quiet(self) -> None:
        """
        A connection lost between two packets is not bad input: the will
        is published, but nothing is logged as a warning.
        """
        client = self.accepted()
        del self.events[:]
        client.lose()
        self.assertEqual(warnings_in(self.events), [])
        self.assertEqual(self.bystander.publishes(), [Publish("will/bad", b"gone")])

    # -- packet order --------------------------------------------------------------

    def test_first_packet_not_connect(self) -> None:
        """
        A connection whose first packet is not CONNECT is closed at once;
        nothing is sent back (the protocol version is not known).
        """
        client = self.harness.client(self.level)
        self.send_bad(client, self.encode(Subscribe(1, [Subscription("news")])))
        self.assertRejected(client, [], will_published=False)

    def test_second_connect(self) -> None:
        """A second CONNECT is a protocol error (0x82)."""
        client = self.accepted()
        self.send_bad(
            client,
            self.encode(
                Connect("bad", protocol_level=self.level, protocol_name=protocol_name(self.level))
            ),
        )
        self.assertRejected(client, self.v5(Disconnect(0x82)), will_published=True)

    # -- reserved bits -------------------------------------------------------------

    def test_subscribe_reserved_flags(self) -> None:
        """
        SUBSCRIBE must carry the header flags 0b0010; anything else is
        malformed (0x81) and subscribes nothing.
        """
        client = self.accepted()
        raw = self.encode(Subscribe(1, [Subscription("news")]))
        self.assertEqual(raw[0], 0x82)
        self.send_bad(client, b"\x80" + raw[1:])
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    def test_pubrel_reserved_flags(self) -> None:
        """PUBREL must carry the header flags 0b0010; 0b0000 is malformed (0x81)."""
        client = self.accepted()
        raw = self.encode(PubRel(1))
        self.assertEqual(raw[0], 0x62)
        self.send_bad(client, b"\x60" + raw[1:])
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    def test_publish_qos_3(self) -> None:
        """A PUBLISH with QoS 3 is malformed (0x81) and is not routed."""
        client = self.accepted()
        raw = self.encode(Publish("news", b"q3", 1, packet_id=1))
        self.send_bad(client, bytes((raw[0] | 0x06,)) + raw[1:])
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    # -- topic names and strings ---------------------------------------------------

    def test_publish_topic_single_level_wildcard(self) -> None:
        """C{+} in a PUBLISH topic name: topic name invalid (0x90)."""
        client = self.accepted()
        self.send_bad(client, self.encode(Publish("news/+", b"w")))
        self.assertRejected(client, self.v5(Disconnect(0x90)), will_published=True)

    def test_publish_topic_multi_level_wildcard(self) -> None:
        """C{#} in a PUBLISH topic name: topic name invalid (0x90)."""
        client = self.accepted()
        self.send_bad(client, self.encode(Publish("news/#", b"w", 1, packet_id=1)))
        self.assertRejected(client, self.v5(Disconnect(0x90)), will_published=True)

    def test_publish_topic_invalid_utf8(self) -> None:
        """A PUBLISH topic that is not UTF-8 is malformed (0x81), not routed."""
        client = self.accepted()
        raw = self.encode(Publish("news", b"u"))
        self.send_bad(client, raw.replace(b"\x00\x04news", b"\x00\x04new\xff"))
        self.assertRejected(client, self.v5(Disconnect(0x81)), will_published=True)

    def test_connect_client_id_invalid_utf8(self) -> None:
        """
        A client id that is not UTF-8 makes the CONNECT malformed: CONNACK
        0x81 for MQTT 5.0.
        """
        client = self.harness.client(self.level)
        raw = self.encode(
            Connect("@@", protocol_level=self.level, protocol_name=protocol_name(self.level))
        )
        self.assertIn(b"\x00\x02@@", raw)
        self.send_bad(client, raw.replace(b"\x00\x02@@", b"\x00\x02\xc3\x28"))
        self.assertRejected(client, self.v5(ConnAck(False, 0x81)), will_published=False)

    # -- sizes ---------------------------------------------------------------------

    def test_packet_too_large(self) -> None:
        """
        A packet larger than C{max_message_size} is refused as soon as its
        fixed header says so (0x95) and is not routed.
        """
        client = self.accepted()
        raw = self.encode(Publish("news", b"x" * 1024))
        self.assertGreater(len(raw), 1024)
        self.send_bad(client, raw[:4])
        self.assertRejected(client, self.v5(Disconnect(0x95)), will_published=True)

    def test_packet_at_size_limit(self) -> None:
        """A packet of exactly C{max_message_size} bytes is accepted."""
        client = self.accepted()
        payload_size = 1024 - len(self.encode(Publish("news", b"")))
        while len(self.encode(Publish("news", b"x" * payload_size))) > 1024:
            payload_size -= 1
        raw = self.encode(Publish("news", b"x" * payload_size))
        self.assertEqual(len(raw), 1024)
        client.send_bytes(raw)
        self.assertFalse(client.closed)
        self.assertEqual(self.bystander.publishes(), [Publish("news", b"x" * payload_size)])
        self.assertEqual(warnings_in(self.events), [])

    # -- protocol version ----------------------------------------------------------

    def test_unknown_protocol_name(self) -> None:
        """
        A CONNECT with an unknown protocol name: CONNACK 0x01 (unacceptable
        protocol version) for MQTT 3.x, CONNACK 0x84 (unsupported protocol
        version) in MQTT 5.0 format for a level 5 CONNECT.
        """
        client = self.harness.client(self.level)
        self.send_bad(
            client, self.encode(Connect("bad", protocol_level=self.level, protocol_name="MQTX"))
        )
        expected = 0x84 if self.level == 5 else 0x01
        self.assertRejected(client, [ConnAck(False, expected)], will_published=False)

    def test_unknown_protocol_level(self) -> None:
        """
        A CONNECT with protocol level 6 gets CONNACK 0x01 in the 3.x format
        (the 4-byte packet every client version understands).
        """
        client = self.harness.client(self.level)
        raw = encode(Connect("bad", protocol_level=4), 4)
        self.assertEqual(raw[8], 4)
        self.send_bad(client, raw[:8] + b"\x06" + raw[9:])
        self.assertEqual(client.transport.value(), b"\x20\x02\x00\x01")
        self.assertRejected(client, [ConnAck(False, 0x01)], will_published=False)


class BadInputMQTT31Tests(BadInputTests):
    """L{BadInputTests} for MQTT 3.1 (C{MQIsdp}, level 3)."""

    level = 3


class BadInputMQTT5Tests(BadInputTests):
    """L{BadInputTests} for MQTT 5.0: the reason codes are sent."""

    level = 5


class ChunkingTests(SynchronousTestCase):
    """
    The bytes of a session give the same result however TCP splits them:
    every chunk size from 1 byte to the whole session in one read.
    """

    def session(self, level: int) -> tuple[bytes, list[Packet]]:
        """
        The bytes of CONNECT, SUBSCRIBE, a QoS 1 PUBLISH with a two-byte
        remaining length, PINGREQ and a QoS 0 PUBLISH, and what the client
        receives (the CONNACK's properties left out).
        """
        big = b"p" * 200
        data = b"".join(
            encode(p, level)
            for p in (
                Connect("chunky", protocol_level=level, protocol_name=protocol_name(level)),
                Subscribe(1, [Subscription("t/+", 1)]),
                Publish("t/big", big, 1, packet_id=7),
                PingReq(),
                Publish("t/small", b"s"),
            )
        )
        expected: list[Packet] = [
            ConnAck(False, 0),
            SubAck(1, [1]),
            Publish("t/big", big, 1, packet_id=1),
            PubAck(7),
            PingResp(),
            Publish("t/small", b"s"),
        ]
        return data, expected

    def check_every_chunk_size(self, level: int) -> None:
        data, expected = self.session(level)
        for size in range(1, len(data) + 1):
            harness = Harness()
            client = harness.client(level)
            client.chunk = size
            client.send_bytes(data)
            received = client.received()
            for packet in received:
                if isinstance(packet, ConnAck):
                    packet.properties = {}
            self.assertEqual(received, expected, f"chunk size {size}")
            self.assertFalse(client.closed, f"chunk size {size}")

    def test_mqtt31(self) -> None:
        self.check_every_chunk_size(3)

    def test_mqtt311(self) -> None:
        self.check_every_chunk_size(4)

    def test_mqtt5(self) -> None:
        self.check_every_chunk_size(5)


class ConnectTimeoutTests(SynchronousTestCase):
    """
    A connection must send CONNECT within C{mqtt_connect_timeout}
    milliseconds.
    """

    def test_default_timeout(self) -> None:
        """By default a silent connection is closed after 5 seconds, not before."""
        harness = Harness()
        client = harness.client()
        harness.advance(4.999)
        self.assertFalse(client.closed)
        harness.advance(0.001)
        self.assertTrue(client.closed)
        self.assertEqual(client.received(), [])

    def test_configured_timeout(self) -> None:
        """C{mqtt_connect_timeout} is in milliseconds."""
        harness = Harness(mqtt_connect_timeout=2500)
        client = harness.client()
        harness.advance(2.499)
        self.assertFalse(client.closed)
        harness.advance(0.001)
        self.assertTrue(client.closed)

    def test_partial_connect_does_not_extend(self) -> None:
        """Part of a CONNECT does not restart the timer."""
        harness = Harness(mqtt_connect_timeout=2500)
        client = harness.client()
        harness.advance(2.0)
        client.send_bytes(encode(Connect("slow"), 4)[:5])
        harness.advance(0.5)
        self.assertTrue(client.closed)
        self.assertEqual(client.received(), [])

    def test_connect_in_time(self) -> None:
        """A CONNECT in time stops the timer: the connection stays open."""
        harness = Harness(mqtt_connect_timeout=2500)
        client = harness.client()
        harness.advance(2.4)
        self.assertEqual(client.connect("quick"), ConnAck(False, 0))
        harness.advance(3600)
        self.assertFalse(client.closed)
        client.ping()
        self.assertEqual(client.received(), [PingResp()])


class KeepaliveTests(SynchronousTestCase):
    """
    A client with keep alive K that sends no byte for 1.5 x K seconds is
    disconnected and its will published (MQTT 3.1.1 here).
    """

    level = 4

    def setUp(self) -> None:
        self.events = capture_log(self)
        self.harness = Harness()
        self.bystander = self.harness.connected("bystander", self.level)
        self.bystander.subscribe("will/#")
        self.client = self.harness.connected(
            "sleepy", self.level, keep_alive=10, will=Will("will/sleepy", b"zzz")
        )
        self.client.received()

    def assertExpired(self) -> None:
        expected: list[Packet] = [Disconnect(0x8D)] if self.level == 5 else []
        self.assertEqual(self.client.received(), expected)
        self.assertTrue(self.client.closed)
        self.assertEqual(self.bystander.publishes(), [Publish("will/sleepy", b"zzz")])
        warnings = warnings_in(self.events)
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["client_id"], "sleepy")

    def test_silence_closes(self) -> None:
        """No byte for 15 s with keep alive 10: closed at 15 s, not before."""
        self.harness.advance(14.999)
        self.assertFalse(self.client.closed)
        self.assertEqual(self.bystander.publishes(), [])
        self.harness.advance(0.001)
        self.assertExpired()

    def test_pingreq_keeps_alive(self) -> None:
        """A PINGREQ is answered and restarts the 1.5 x K period."""
        self.harness.advance(10)
        self.client.ping()
        self.assertEqual(self.client.received(), [PingResp()])
        self.harness.advance(14.999)
        self.assertFalse(self.client.closed)
        self.harness.advance(0.001)
        self.assertExpired()

    def test_any_packet_keeps_alive(self) -> None:
        """Any packet keeps the connection alive, for as long as it comes."""
        for _ in range(10):
            self.harness.advance(14)
            self.client.publish("chat", b"hi")
        self.assertFalse(self.client.closed)
        self.assertEqual(warnings_in(self.events), [])
        self.harness.advance(15)
        self.assertExpired()

    def test_no_keepalive(self) -> None:
        """Keep alive 0 turns the check off."""
        client = self.harness.connected("insomniac", self.level, keep_alive=0)
        self.harness.advance(24 * 3600)
        self.assertFalse(client.closed)


class KeepaliveMQTT5Tests(KeepaliveTests):
    """L{KeepaliveTests} for MQTT 5.0: DISCONNECT 0x8D comes first."""

    level = 5


class TakeoverTests(SynchronousTestCase):
    """
    A CONNECT with the client id of a connected client closes the older
    connection (MQTT 3.1.1 here).
    """

    level = 4

    def test_takeover(self) -> None:
        """
        The old connection is closed (MQTT 5.0: after DISCONNECT 0x8E);
        the new one works, also after the old one is finally gone.
        """
        harness = Harness()
        old = harness.connected("twin", self.level)
        new = harness.connected("twin", self.level)
        expected: list[Packet] = [Disconnect(0x8E)] if self.level == 5 else []
        self.assertEqual(old.received(), expected)
        self.assertTrue(old.closed)
        self.assertFalse(new.closed)
        old.finish_close()
        new.subscribe("t")
        publisher = harness.connected("publisher", self.level)
        publisher.publish("t", b"to the new one")
        self.assertEqual(new.publishes(), [Publish("t", b"to the new one")])
        self.assertEqual(old.received(), [])

    def test_other_client_ids_untouched(self) -> None:
        """Only the connection with the same client id is closed."""
        harness = Harness()
        other = harness.connected("other", self.level)
        harness.connected("twin", self.level)
        harness.connected("twin", self.level)
        self.assertFalse(other.closed)
        self.assertEqual(other.received(), [])


class TakeoverMQTT5Tests(TakeoverTests):
    """L{TakeoverTests} for MQTT 5.0."""

    level = 5


class MaxConnectionsTests(SynchronousTestCase):
    """C{listener.max_connections} refuses connections beyond the limit."""

    def test_refused_beyond_limit(self) -> None:
        """
        With max_connections 2, a third connection is closed at once
        (one warning); once one closes, a new one is accepted.
        """
        events = capture_log(self)
        harness = Harness(
            "allow_anonymous = on\n"
            "listener.max_connections = 2\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
        )
        first = harness.connected("first")
        harness.connected("second")
        del events[:]
        third = harness.client()
        self.assertTrue(third.closed)
        self.assertIsNone(third.connect("third"))
        warnings = warnings_in(events)
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["peer"], third.proto.peer_text)
        third.finish_close()
        self.assertTrue(harness.client().closed)
        first.disconnect()
        first.finish_close()
        harness.connected("fourth")

    def test_per_listener(self) -> None:
        """The limit of one listener does not apply to another."""
        harness = Harness(
            BASE_CONFIG
            + "listener.tcp.default.max_connections = 1\n"
            + "listener.tcp.other = 127.0.0.1:1884\n"
        )
        harness.connected("a")
        self.assertTrue(harness.client().closed)
        harness.connected("b", listener="other")
        harness.connected("c", listener="other")


class ShutdownTests(SynchronousTestCase):
    """
    When the node stops, every client is disconnected (MQTT 3.1.1 here)
    and wills are published.
    """

    level = 4

    def test_shutdown(self) -> None:
        """
        The client is closed, an MQTT 5.0 client after DISCONNECT 0x8B;
        its (retained) will is published.
        """
        harness = Harness()
        client = harness.connected("c", self.level, will=Will("will/c", b"node down", retain=True))
        client.received()
        harness.broker.shutdown()
        expected: list[Packet] = [Disconnect(0x8B)] if self.level == 5 else []
        self.assertEqual(client.received(), expected)
        self.assertTrue(client.closed)
        retained = harness.broker.topics("").retained.get("will/c")
        self.assertIsNotNone(retained)
        assert retained is not None
        self.assertEqual(retained.payload, b"node down")

    def test_no_connection_during_shutdown(self) -> None:
        """A connection arriving while the node stops is refused."""
        events = capture_log(self)
        harness = Harness()
        harness.broker.shutdown()
        client = harness.client(self.level)
        self.assertTrue(client.closed)
        warnings = warnings_in(events)
        self.assertEqual(len(warnings), 1)
        self.assertIn("shutting down", formatEvent(warnings[0]))


class ShutdownMQTT5Tests(ShutdownTests):
    """L{ShutdownTests} for MQTT 5.0."""

    level = 5


class BackPressureTests(SynchronousTestCase):
    """
    The connection is its transport's streaming producer: paused, it
    queues deliveries instead of writing them; resumed, it writes them.
    """

    def setUp(self) -> None:
        self.harness = Harness(max_online_messages=3)
        self.subscriber = self.harness.connected("slow")
        self.subscriber.subscribe(("t", 1))
        self.publisher = self.harness.connected("fast")

    def test_registered_streaming(self) -> None:
        """The protocol registers itself as a streaming producer."""
        self.assertIs(self.subscriber.transport.producer, self.subscriber.proto)
        self.assertTrue(self.subscriber.transport.streaming)

    def test_pause_queues_resume_writes(self) -> None:
        """Nothing is written while paused; everything, in order, on resume."""
        self.subscriber.proto.pauseProducing()
        self.publisher.publish("t", b"zero")
        self.publisher.publish("t", b"one", qos=1)
        self.harness.advance(0)
        self.assertEqual(self.subscriber.received(), [])
        self.subscriber.proto.resumeProducing()
        self.assertEqual(
            self.subscriber.publishes(),
            [Publish("t", b"zero"), Publish("t", b"one", 1, packet_id=1)],
        )

    def test_queue_bounded(self) -> None:
        """While paused at most C{max_online_messages} are kept."""
        self.subscriber.proto.pauseProducing()
        for i in range(5):
            self.publisher.publish("t", b"%d" % i)
        self.subscriber.proto.resumeProducing()
        self.assertEqual([p.payload for p in self.subscriber.publishes()], [b"0", b"1", b"2"])


class NoDelayTests(SynchronousTestCase):
    """Nagle's algorithm is off for every client connection."""

    def test_tcpTransport(self) -> None:
        """A TCP transport gets C{setTcpNoDelay(True)} when the client connects."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        calls: list[bool] = []

        class TCPTransport(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                calls.append(enabled)

        h = Harness()
        transport = TCPTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 5000))
        proto = h.factories["default"].buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        self.assertEqual([True], calls)

    def test_throughWrapper(self) -> None:
        """Under TLS or WebSocket the socket below the wrapper gets it."""
        from vernemq.mqtt.protocol import _noDelay

        calls: list[bool] = []

        class Socket:
            def setTcpNoDelay(self, enabled: bool) -> None:
                calls.append(enabled)

        class Wrapper:
            transport = Socket()

        _noDelay(Wrapper())
        self.assertEqual([True], calls)
