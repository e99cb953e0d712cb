# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.mqtt.codec}.

(trial's assertion methods are untyped, hence the mypy comment above.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from twisted.python.reflect import requireModule
from twisted.trial.unittest import SynchronousTestCase

from tests import mqtt_strategies as ms
from vernemq.mqtt.codec import Decoder, encode, encode_publish
from vernemq.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MalformedPacket,
    MQTTError,
    Packet,
    PacketTooLarge,
    PingReq,
    PingResp,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
)

h = bytes.fromhex

CONNECT_V3 = h("10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00")
CONNECT_V4 = h("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00")
CONNECT_V5 = h("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00")
CONNECTS = {3: CONNECT_V3, 4: CONNECT_V4, 5: CONNECT_V5}


def at_levels(
    factory: Callable[[int], SearchStrategy[Any]], levels: tuple[int, ...] = ms.LEVELS
) -> SearchStrategy[tuple[int, Any]]:
    """Pairs of (level, value drawn from C{factory(level)})."""
    return st.sampled_from(levels).flatmap(lambda lv: st.tuples(st.just(lv), factory(lv)))


def paho(module: str) -> Any:
    """Import a paho-mqtt module, untyped (the tests use its internals)."""
    return importlib.import_module(f"paho.mqtt.{module}")


def decode_all(data: bytes, **kwargs: Any) -> list[Packet]:
    """Feed C{data} to a new L{Decoder} and return every packet."""
    decoder = Decoder(**kwargs)
    decoder.feed(data)
    return list(decoder)


def from_client(level: int, body: bytes) -> Decoder:
    """A server-side decoder that has seen a CONNECT at C{level}, fed C{body}."""
    decoder = Decoder()
    decoder.feed(CONNECTS[level] + body)
    first = decoder.next_packet()
    assert isinstance(first, Connect)
    return decoder


def from_server(level: int, body: bytes) -> Decoder:
    """A client-side decoder at C{level}, fed C{body}."""
    decoder = Decoder(protocol_level=level, server=False)
    decoder.feed(body)
    return decoder


class RoundTripTests(SynchronousTestCase):
    """
    Decoding what L{encode} produced gives back an equal packet, for every
    packet type at every level where it exists.
    """

    def assert_round_trip(self, packet: Packet, level: int, server: bool) -> bytes:
        """
        Encode C{packet} at C{level}, decode it on the given side, and
        check the result equals C{packet} and nothing is left over.
        """
        data = encode(packet, level)
        if isinstance(packet, Connect):
            decoder = Decoder()
        elif server:
            decoder = Decoder(protocol_level=level)
        else:
            decoder = Decoder(protocol_level=level, server=False)
        decoder.feed(data)
        self.assertEqual(list(decoder), [packet])
        return data

    @given(at_levels(ms.connects))
    def test_connect(self, case: tuple[int, Connect]) -> None:
        """CONNECT round-trips at its own level, bridge levels included."""
        level, packet = case
        self.assert_round_trip(packet, level, True)

    @given(at_levels(ms.connacks))
    def test_connack(self, case: tuple[int, ConnAck]) -> None:
        """CONNACK round-trips on the client side."""
        self.assert_round_trip(case[1], case[0], False)

    @given(at_levels(ms.publishes))
    def test_publish_from_client(self, case: tuple[int, Publish]) -> None:
        """
        A client's PUBLISH round-trips, and C{raw} is the exact bytes of
        the packet.
        """
        level, packet = case
        decoder = Decoder(protocol_level=level)
        data = encode(packet, level)
        decoder.feed(data)
        decoded = decoder.next_packet()
        self.assertEqual(decoded, packet)
        assert isinstance(decoded, Publish)
        self.assertEqual(decoded.raw, data)

    @given(at_levels(lambda lv: ms.publishes(lv, from_client=False)))
    def test_publish_from_server(self, case: tuple[int, Publish]) -> None:
        """A server's PUBLISH round-trips, subscription identifiers included."""
        self.assert_round_trip(case[1], case[0], False)

    @given(at_levels(ms.publishes))
    def test_encode_publish_matches_encode(self, case: tuple[int, Publish]) -> None:
        """L{encode_publish} gives the same bytes as L{encode} of a Publish."""
        level, p = case
        self.assertEqual(
            encode_publish(
                p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties, level
            ),
            encode(p, level),
        )

    @given(at_levels(ms.pubacks), st.booleans())
    def test_puback(self, case: tuple[int, PubAck], server: bool) -> None:
        """PUBACK round-trips in both directions."""
        self.assert_round_trip(case[1], case[0], server)

    @given(at_levels(ms.pubrecs), st.booleans())
    def test_pubrec(self, case: tuple[int, PubRec], server: bool) -> None:
        """PUBREC round-trips in both directions."""
        self.assert_round_trip(case[1], case[0], server)

    @given(at_levels(ms.pubrels), st.booleans())
    def test_pubrel(self, case: tuple[int, PubRel], server: bool) -> None:
        """PUBREL round-trips in both directions."""
        self.assert_round_trip(case[1], case[0], server)

    @given(at_levels(ms.pubcomps), st.booleans())
    def test_pubcomp(self, case: tuple[int, PubComp], server: bool) -> None:
        """PUBCOMP round-trips in both directions."""
        self.assert_round_trip(case[1], case[0], server)

    @given(at_levels(ms.subscribes))
    def test_subscribe(self, case: tuple[int, Subscribe]) -> None:
        """SUBSCRIBE round-trips on the server side."""
        self.assert_round_trip(case[1], case[0], True)

    @given(at_levels(ms.subacks))
    def test_suback(self, case: tuple[int, SubAck]) -> None:
        """SUBACK round-trips on the client side."""
        self.assert_round_trip(case[1], case[0], False)

    @given(at_levels(ms.unsubscribes))
    def test_unsubscribe(self, case: tuple[int, Unsubscribe]) -> None:
        """UNSUBSCRIBE round-trips on the server side."""
        self.assert_round_trip(case[1], case[0], True)

    @given(at_levels(ms.unsubacks))
    def test_unsuback(self, case: tuple[int, UnsubAck]) -> None:
        """UNSUBACK round-trips on the client side."""
        self.assert_round_trip(case[1], case[0], False)

    @given(ms.levels())
    def test_pingreq(self, level: int) -> None:
        """PINGREQ round-trips on the server side."""
        self.assert_round_trip(PingReq(), level, True)

    @given(ms.levels())
    def test_pingresp(self, level: int) -> None:
        """PINGRESP round-trips on the client side."""
        self.assert_round_trip(PingResp(), level, False)

    @given(at_levels(ms.disconnects))
    def test_disconnect_from_client(self, case: tuple[int, Disconnect]) -> None:
        """DISCONNECT round-trips on the server side."""
        self.assert_round_trip(case[1], case[0], True)

    @given(ms.disconnects(5))
    def test_disconnect_from_server(self, packet: Disconnect) -> None:
        """A v5 server's DISCONNECT round-trips on the client side."""
        self.assert_round_trip(packet, 5, False)

    @given(ms.auths(5), st.booleans())
    def test_auth(self, packet: Auth, server: bool) -> None:
        """AUTH round-trips in both directions in MQTT 5."""
        self.assert_round_trip(packet, 5, server)


class StreamTests(SynchronousTestCase):
    """
    However a byte stream is cut into chunks, the decoder yields the same
    packets.
    """

    @settings(max_examples=100)
    @given(
        at_levels(lambda lv: st.lists(ms.client_packets(lv), min_size=1, max_size=6)),
        st.data(),
    )
    def test_arbitrary_chunking_from_client(
        self, case: tuple[int, list[Packet]], data: st.DataObject
    ) -> None:
        """A client's stream, cut anywhere, decodes to the packets sent."""
        level, packets = case
        stream = CONNECTS[level] + b"".join(encode(p, level) for p in packets)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        decoder = Decoder()
        received: list[Packet] = []
        start = 0
        for cut in [*cuts, len(stream)]:
            decoder.feed(stream[start:cut])
            received.extend(decoder)
            start = cut
        self.assertIsInstance(received[0], Connect)
        self.assertEqual(received[1:], packets)

    @settings(max_examples=100)
    @given(
        at_levels(lambda lv: st.lists(ms.server_packets(lv), min_size=1, max_size=6)),
        st.data(),
    )
    def test_arbitrary_chunking_from_server(
        self, case: tuple[int, list[Packet]], data: st.DataObject
    ) -> None:
        """A server's stream, cut anywhere, decodes to the packets sent."""
        level, packets = case
        stream = b"".join(encode(p, level) for p in packets)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        decoder = Decoder(protocol_level=level, server=False)
        received: list[Packet] = []
        start = 0
        for cut in [*cuts, len(stream)]:
            decoder.feed(stream[start:cut])
            received.extend(decoder)
            start = cut
        self.assertEqual(received, packets)

    @settings(max_examples=25)
    @given(at_levels(lambda lv: st.lists(ms.client_packets(lv), min_size=1, max_size=4)))
    def test_one_byte_at_a_time(self, case: tuple[int, list[Packet]]) -> None:
        """Feeding one byte at a time yields every packet, each exactly once."""
        level, packets = case
        stream = CONNECTS[level] + b"".join(encode(p, level) for p in packets)
        decoder = Decoder()
        received: list[Packet] = []
        for i in range(len(stream)):
            decoder.feed(stream[i : i + 1])
            received.extend(decoder)
        self.assertEqual(received[1:], packets)

    def test_large_packet_in_small_chunks(self) -> None:
        """
        A 1 MiB PUBLISH fed in 1000-byte chunks decodes once, complete,
        with the packet after it.
        """
        payload = bytes(range(256)) * 4096
        data = encode(Publish("big", payload, 1, packet_id=3), 4) + b"\xc0\x00"
        decoder = from_client(4, b"")
        received: list[Packet] = []
        for i in range(0, len(data), 1000):
            decoder.feed(data[i : i + 1000])
            received.extend(decoder)
        self.assertEqual(received, [Publish("big", payload, 1, packet_id=3), PingReq()])
        assert isinstance(received[0], Publish)
        self.assertEqual(received[0].raw, data[:-2])

    def test_incomplete_packet(self) -> None:
        """
        L{Decoder.next_packet} returns None until the whole packet is
        buffered, then returns it.
        """
        data = encode(Publish("a/b", b"payload"), 4)
        decoder = from_client(4, data[:1])
        self.assertIsNone(decoder.next_packet())
        decoder.feed(data[1:5])
        self.assertIsNone(decoder.next_packet())
        decoder.feed(data[5:])
        self.assertEqual(decoder.next_packet(), Publish("a/b", b"payload"))
        self.assertIsNone(decoder.next_packet())

    def test_buffered(self) -> None:
        """
        L{Decoder.buffered} counts the bytes received but not decoded yet,
        including the chunks of a partial packet, and is 0 after a
        violation.
        """
        data = encode(Publish("a/b", b"p" * 300), 4)
        decoder = from_client(4, b"")
        self.assertEqual(decoder.buffered, 0)
        decoder.feed(data[:10])
        self.assertIsNone(decoder.next_packet())
        self.assertEqual(decoder.buffered, 10)
        decoder.feed(data[10:20])
        self.assertEqual(decoder.buffered, 20)
        decoder.feed(data[20:] + b"\xc0")
        self.assertEqual(decoder.buffered, len(data) + 1)
        self.assertEqual(decoder.next_packet(), Publish("a/b", b"p" * 300))
        self.assertEqual(decoder.buffered, 1)
        decoder.feed(b"\x01\x00")
        self.assertRaises(MalformedPacket, decoder.next_packet)
        self.assertEqual(decoder.buffered, 0)

    def test_feed_buffer_types(self) -> None:
        """L{Decoder.feed} accepts bytearray and memoryview chunks too."""
        data = encode(Publish("a", b"xy"), 4)
        decoder = from_client(4, b"")
        decoder.feed(bytearray(data[:3]))
        decoder.feed(memoryview(data[3:]))
        self.assertEqual(list(decoder), [Publish("a", b"xy")])

    def test_many_packets_in_one_chunk(self) -> None:
        """Every packet of a chunk is yielded, in order."""
        packets = [
            Publish(f"t/{i}", bytes([i]) * i, i % 3, packet_id=i + 1 if i % 3 else None)
            for i in range(50)
        ]
        decoder = from_client(5, b"".join(encode(p, 5) for p in packets))
        self.assertEqual(list(decoder), packets)


class VectorTests(SynchronousTestCase):
    """
    Byte-exact encodings, from the examples of the MQTT 3.1.1 and 5.0
    specifications where they give one.
    """

    def assert_vector(self, packet: Packet, level: int, hex_bytes: str, server: bool) -> None:
        """C{packet} encodes to C{hex_bytes} at C{level} and decodes back."""
        data = h(hex_bytes)
        self.assertEqual(encode(packet, level).hex(" "), data.hex(" "))
        if isinstance(packet, Connect):
            self.assertEqual(decode_all(data), [packet])
        elif server:
            self.assertEqual(list(from_client(level, data)), [packet])
        else:
            self.assertEqual(list(from_server(level, data)), [packet])

    def test_connect_v311(self) -> None:
        """
        The MQTT 3.1.1 CONNECT variable header example (section 3.1.2.10):
        name "MQTT", level 4, flags 0xCE, keep alive 10.
        """
        packet = Connect("abc", 4, True, 10, Will("w", b"x", 1, False), "u", b"p")
        self.assert_vector(
            packet,
            4,
            "10 1b 00 04 4d 51 54 54 04 ce 00 0a 00 03 61 62 63"
            " 00 01 77 00 01 78 00 01 75 00 01 70",
            True,
        )

    def test_connect_v5(self) -> None:
        """
        The MQTT 5.0 CONNECT variable header example (section 3.1.2.11):
        level 5, flags 0xCE, keep alive 10, properties length 5, session
        expiry interval (0x11) 10.
        """
        packet = Connect(
            "abc",
            5,
            True,
            10,
            Will("w", b"x", 1, False),
            "u",
            b"p",
            {"session_expiry_interval": 10},
        )
        self.assert_vector(
            packet,
            5,
            "10 22 00 04 4d 51 54 54 05 ce 00 0a 05 11 00 00 00 0a 00 03 61 62 63"
            " 00 00 01 77 00 01 78 00 01 75 00 01 70",
            True,
        )

    def test_connect_v31(self) -> None:
        """An MQTT 3.1 CONNECT carries the protocol name "MQIsdp" and level 3."""
        packet = Connect("c", 3, True, 60, protocol_name="MQIsdp")
        self.assert_vector(packet, 3, "10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 63", True)

    def test_connect_v5_will_properties(self) -> None:
        """Will properties sit between the client id and the will topic."""
        packet = Connect("c", 5, False, 0, Will("w", b"", 0, True, {"will_delay_interval": 7}))
        self.assert_vector(
            packet,
            5,
            "10 19 00 04 4d 51 54 54 05 24 00 00 00 00 01 63 05 18 00 00 00 07 00 01 77 00 00",
            True,
        )

    def test_connack(self) -> None:
        """CONNACK is 4 bytes in v3; v5 adds a property block."""
        self.assert_vector(ConnAck(True, 0), 4, "20 02 01 00", False)
        self.assert_vector(ConnAck(False, 0x86), 5, "20 03 00 86 00", False)
        self.assert_vector(
            ConnAck(False, 0, {"receive_maximum": 10}), 5, "20 06 00 00 03 21 00 0a", False
        )

    def test_publish(self) -> None:
        """A QoS 1 PUBLISH: topic, packet identifier, payload."""
        self.assert_vector(
            Publish("a/b", b"hi", 1, packet_id=10), 4, "32 09 00 03 61 2f 62 00 0a 68 69", True
        )
        self.assert_vector(
            Publish("a", b"", 0, True, properties={"payload_format_indicator": 1}),
            5,
            "31 06 00 01 61 02 01 01",
            True,
        )
        self.assert_vector(Publish("a", b"", 2, False, True, 1), 5, "3c 06 00 01 61 00 01 00", True)

    def test_subscribe_v311(self) -> None:
        """
        The MQTT 3.1.1 SUBSCRIBE payload example (section 3.8.3): "a/b"
        QoS 1 and "c/d" QoS 2, packet identifier 10.
        """
        packet = Subscribe(10, [Subscription("a/b", 1), Subscription("c/d", 2)])
        self.assert_vector(packet, 4, "82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02", True)

    def test_subscribe_v5_options(self) -> None:
        """v5 subscription options pack no local, RAP and retain handling."""
        packet = Subscribe(
            1, [Subscription("a", 2, True, True, 2)], {"subscription_identifier": [5]}
        )
        self.assert_vector(packet, 5, "82 09 00 01 02 0b 05 00 01 61 2e", True)

    def test_suback(self) -> None:
        """
        The MQTT 3.1.1 SUBACK example (section 3.9.3): granted QoS 0,
        QoS 2 and failure 0x80; v5 adds an empty property block.
        """
        self.assert_vector(SubAck(10, [0, 2, 0x80]), 4, "90 05 00 0a 00 02 80", False)
        self.assert_vector(SubAck(10, [0, 2, 0x87]), 5, "90 06 00 0a 00 00 02 87", False)

    def test_unsubscribe_unsuback(self) -> None:
        """UNSUBSCRIBE lists filters; UNSUBACK has reason codes only in v5."""
        self.assert_vector(Unsubscribe(2, ["a/b"]), 4, "a2 07 00 02 00 03 61 2f 62", True)
        self.assert_vector(UnsubAck(2), 4, "b0 02 00 02", False)
        self.assert_vector(UnsubAck(2, [0, 0x11]), 5, "b0 05 00 02 00 00 11", False)

    def test_acks(self) -> None:
        """
        v3 PUBACK/PUBREC/PUBREL/PUBCOMP are 4 bytes; v5 omits the reason
        code when it is 0 and there are no properties, and the property
        length when there are no properties.
        """
        self.assert_vector(PubAck(7), 4, "40 02 00 07", True)
        self.assert_vector(PubRec(7), 4, "50 02 00 07", True)
        self.assert_vector(PubRel(7), 4, "62 02 00 07", True)
        self.assert_vector(PubComp(7), 4, "70 02 00 07", True)
        self.assert_vector(PubAck(7), 5, "40 02 00 07", True)
        self.assert_vector(PubAck(7, 0x10), 5, "40 03 00 07 10", True)
        self.assert_vector(PubRel(7, 0x92), 5, "62 03 00 07 92", False)
        self.assert_vector(
            PubRec(7, 0x80, {"reason_string": "x"}), 5, "50 08 00 07 80 04 1f 00 01 78", False
        )

    def test_v5_ack_with_explicit_empty_properties(self) -> None:
        """A v5 PUBACK may carry reason 0 and an empty property block."""
        self.assertEqual(list(from_client(5, h("40 04 00 07 00 00"))), [PubAck(7)])

    def test_ping(self) -> None:
        """PINGREQ and PINGRESP are two bytes, remaining length 0."""
        self.assert_vector(PingReq(), 4, "c0 00", True)
        self.assert_vector(PingResp(), 5, "d0 00", False)

    def test_disconnect(self) -> None:
        """
        v3 DISCONNECT is 2 bytes; v5 carries a reason code (0x8E session
        taken over) and properties when present.
        """
        self.assert_vector(Disconnect(), 4, "e0 00", True)
        self.assert_vector(Disconnect(), 5, "e0 00", True)
        self.assert_vector(Disconnect(0x8E), 5, "e0 01 8e", False)
        self.assert_vector(
            Disconnect(0x8E, {"reason_string": "bye"}),
            5,
            "e0 08 8e 06 1f 00 03 62 79 65",
            False,
        )

    def test_auth(self) -> None:
        """AUTH: reason 0x18 with an authentication method."""
        self.assert_vector(Auth(), 5, "f0 00", True)
        self.assert_vector(
            Auth(0x18, {"authentication_method": "m"}), 5, "f0 06 18 04 15 00 01 6d", True
        )

    def test_remaining_length_boundaries(self) -> None:
        """
        The remaining-length examples of the specification (section
        2.2.3 / 1.5.5): 127, 128, 16383, 16384, 2097151 and 2097152 bytes
        take 1, 2, 2, 3, 3 and 4 bytes, and decode back.
        """
        vectors = {
            127: "7f",
            128: "80 01",
            16383: "ff 7f",
            16384: "80 80 01",
            2097151: "ff ff 7f",
            2097152: "80 80 80 01",
        }
        for remaining, encoded in vectors.items():
            payload = b"\xaa" * (remaining - 3)
            data = encode(Publish("t", payload), 4)
            self.assertEqual(data[1 : 1 + len(h(encoded))], h(encoded))
            self.assertEqual(data[1 + len(h(encoded)) : 4 + len(h(encoded))], b"\x00\x01t")
            self.assertEqual(len(data), 1 + len(h(encoded)) + remaining)
            self.assertEqual(list(from_client(4, data)), [Publish("t", payload)])

    def test_remaining_length_zero(self) -> None:
        """A remaining length of 0 is the single byte 0x00."""
        self.assertEqual(encode(PingReq(), 4), h("c0 00"))

    def test_remaining_length_maximum(self) -> None:
        """
        The largest remaining length, 268435455 (FF FF FF 7F), is read
        from the header alone: with a maximum packet size of exactly
        1 + 4 + 268435455 the decoder waits for the body, one byte less
        and it is too large.
        """
        header = h("30 ff ff ff 7f")
        decoder = from_client(4, header)
        decoder.max_packet_size = 268435460
        self.assertIsNone(decoder.next_packet())
        decoder = from_client(4, header)
        decoder.max_packet_size = 268435459
        self.assertRaises(PacketTooLarge, decoder.next_packet)


class ConnectValidationTests(SynchronousTestCase):
    """The server-side decoder's rules for CONNECT."""

    def test_first_packet_must_be_connect(self) -> None:
        """Anything but CONNECT first is a protocol error."""
        decoder = Decoder()
        decoder.feed(h("c0 00"))
        self.assertRaises(ProtocolError, decoder.next_packet)

    def test_publish_before_connect(self) -> None:
        """A PUBLISH before CONNECT is a protocol error."""
        decoder = Decoder()
        decoder.feed(encode(Publish("a", b""), 4))
        self.assertRaises(ProtocolError, decoder.next_packet)

    def test_second_connect(self) -> None:
        """A second CONNECT is a protocol error."""
        decoder = from_client(4, CONNECT_V4)
        self.assertRaises(ProtocolError, decoder.next_packet)

    def test_sets_protocol_level(self) -> None:
        """The CONNECT sets L{Decoder.protocol_level}; bridge bits are dropped."""
        for level, connect, expected in [
            (3, Connect("a", 3, protocol_name="MQIsdp"), 3),
            (4, Connect("a", 4), 4),
            (5, Connect("a", 5), 5),
            (131, Connect("a", 131, protocol_name="MQIsdp"), 3),
            (132, Connect("a", 132), 4),
        ]:
            decoder = Decoder()
            self.assertIsNone(decoder.protocol_level)
            decoder.feed(encode(connect, level))
            packet = decoder.next_packet()
            self.assertEqual(packet, connect)
            self.assertEqual(decoder.protocol_level, expected)
        self.assertTrue(Connect("a", 132).bridge)

    def test_unsupported_protocol(self) -> None:
        """
        An unknown protocol level, or a name that does not go with the
        level, raises L{UnsupportedProtocolVersion} carrying what was seen.
        """
        for name, level in [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQIsdp", 5), ("HTTP", 4)]:
            decoder = Decoder()
            decoder.feed(encode(Connect("a", level, protocol_name=name), 4))
            exc = self.assertRaises(UnsupportedProtocolVersion, decoder.next_packet)
            self.assertEqual((exc.protocol_name, exc.protocol_level), (name, level))
            self.assertEqual(exc.reason_code, 0x84)
            self.assertIsNone(decoder.protocol_level)

    def test_reserved_flag(self) -> None:
        """The reserved CONNECT flag bit 0 must be 0."""
        data = bytearray(CONNECT_V4)
        data[9] |= 1
        self.assertRaises(MalformedPacket, decode_all, bytes(data))

    def test_fixed_header_flags(self) -> None:
        """CONNECT's fixed-header flags must be 0."""
        self.assertRaises(MalformedPacket, decode_all, b"\x11" + CONNECT_V4[1:])

    def test_will_flags_without_will(self) -> None:
        """Will QoS or will retain without the will flag is malformed."""
        for flag in (0x08, 0x10, 0x20):
            data = bytearray(CONNECT_V4)
            data[9] |= flag
            self.assertRaises(MalformedPacket, decode_all, bytes(data))

    def test_will_qos_3(self) -> None:
        """A will with QoS 3 is malformed."""
        data = bytearray(encode(Connect("a", 4, will=Will("w", b"")), 4))
        data[9] |= 0x18
        self.assertRaises(MalformedPacket, decode_all, bytes(data))

    def test_will_topic_wildcard(self) -> None:
        """A will topic with a wildcard is invalid (reason 0x90)."""
        data = encode(Connect("a", 5, will=Will("w/#", b"")), 5)
        exc = self.assertRaises(ProtocolError, decode_all, data)
        self.assertEqual(exc.reason_code, 0x90)

    def test_password_without_username(self) -> None:
        """
        A password without a user name is malformed in MQTT 3.1 and
        3.1.1 but allowed in MQTT 5.
        """
        for packet in (
            Connect("a", 4, password=b"pw"),
            Connect("a", 3, password=b"pw", protocol_name="MQIsdp"),
        ):
            self.assertRaises(MalformedPacket, decode_all, encode(packet, 4))
        packet = Connect("a", 5, password=b"pw")
        self.assertEqual(decode_all(encode(packet, 5)), [packet])

    def test_trailing_bytes(self) -> None:
        """Bytes after the CONNECT payload, inside its length, are malformed."""
        data = bytearray(CONNECT_V4 + b"\x00")
        data[1] += 1
        self.assertRaises(MalformedPacket, decode_all, bytes(data))

    def test_truncated_client_id(self) -> None:
        """A client id longer than the packet is malformed."""
        data = bytearray(CONNECT_V4)
        data[-1] = 5
        self.assertRaises(MalformedPacket, decode_all, bytes(data))

    def test_invalid_utf8_client_id(self) -> None:
        """A client id that is not UTF-8 is malformed."""
        data = h("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 c3 28")
        self.assertRaises(MalformedPacket, decode_all, data)

    def test_authentication_data_without_method(self) -> None:
        """Authentication data without a method is a protocol error."""
        data = encode(Connect("a", 5, properties={"authentication_data": b"x"}), 5)
        self.assertRaises(ProtocolError, decode_all, data)

    def test_level_known_when_rest_is_bad(self) -> None:
        """
        The level is set as soon as it is read, so a server can answer a
        malformed v5 CONNECT in the v5 format.
        """
        data = bytearray(CONNECT_V5)
        data[9] |= 1
        decoder = Decoder()
        decoder.feed(bytes(data))
        self.assertRaises(MalformedPacket, decoder.next_packet)
        self.assertEqual(decoder.protocol_level, 5)


class PublishValidationTests(SynchronousTestCase):
    """Rules for PUBLISH."""

    def test_qos_3(self) -> None:
        """QoS 3 is malformed."""
        self.assertRaises(MalformedPacket, list, from_client(4, h("36 05 00 01 61 00 01")))

    def test_dup_on_qos_0(self) -> None:
        """DUP on a QoS 0 PUBLISH is malformed."""
        self.assertRaises(MalformedPacket, list, from_client(4, h("38 03 00 01 61")))

    def test_wildcards(self) -> None:
        """A topic name with + or # is a protocol error with reason 0x90."""
        for topic in ("a/+", "#", "a/#/b", "x+y"):
            decoder = from_client(5, encode(Publish(topic, b"x"), 5))
            exc = self.assertRaises(ProtocolError, decoder.next_packet)
            self.assertEqual(exc.reason_code, 0x90)

    def test_empty_topic(self) -> None:
        """
        An empty topic name is a protocol error, except in v5 with a topic
        alias.
        """
        self.assertRaises(ProtocolError, list, from_client(4, h("30 02 00 00")))
        self.assertRaises(ProtocolError, list, from_client(5, h("30 03 00 00 00")))
        self.assertEqual(
            list(from_client(5, h("30 06 00 00 03 23 00 01"))),
            [Publish("", b"", properties={"topic_alias": 1})],
        )

    def test_topic_alias_zero(self) -> None:
        """Topic alias 0 is a protocol error with reason 0x94."""
        exc = self.assertRaises(
            ProtocolError, list, from_client(5, h("30 07 00 01 61 03 23 00 00"))
        )
        self.assertEqual(exc.reason_code, 0x94)

    def test_invalid_utf8(self) -> None:
        """
        Invalid UTF-8, an encoded surrogate, an overlong encoding, or U+0000
        in a topic name is malformed.
        """
        for bad in ("c3 28", "ed a0 80", "c0 af", "61 00"):
            raw = h(bad)
            data = bytes([0x30, 2 + len(raw), 0, len(raw)]) + raw
            self.assertRaises(MalformedPacket, list, from_client(4, data))

    def test_packet_id_zero(self) -> None:
        """A QoS 1 or 2 PUBLISH with packet identifier 0 is a protocol error."""
        self.assertRaises(ProtocolError, list, from_client(4, h("32 05 00 01 61 00 00")))
        self.assertRaises(ProtocolError, list, from_client(4, h("34 05 00 01 61 00 00")))

    def test_truncated(self) -> None:
        """A topic or packet identifier running past the remaining length is malformed."""
        self.assertRaises(MalformedPacket, list, from_client(4, h("30 03 00 05 61")))
        self.assertRaises(MalformedPacket, list, from_client(4, h("32 04 00 01 61 00")))
        self.assertRaises(MalformedPacket, list, from_client(4, h("30 01 00")))
        self.assertRaises(MalformedPacket, list, from_client(5, h("30 03 00 01 61")))

    def test_subscription_identifier_from_client(self) -> None:
        """
        A client must not send a subscription identifier (protocol error);
        a server may, several times.
        """
        data = h("30 08 00 01 61 04 0b 01 0b 02")
        self.assertRaises(ProtocolError, list, from_client(5, data))
        self.assertEqual(
            list(from_server(5, data)),
            [Publish("a", b"", properties={"subscription_identifier": [1, 2]})],
        )

    def test_raw(self) -> None:
        """C{raw} is the whole packet, fixed header included, and not compared."""
        data = h("31 06 00 01 61 00 01 58")
        packet = from_client(4, data).next_packet()
        assert isinstance(packet, Publish)
        self.assertEqual(packet.raw, data)
        self.assertEqual(packet, Publish("a", b"\x00\x01X", retain=True))
        self.assertEqual(encode(packet, 4), data)


class FixedHeaderTests(SynchronousTestCase):
    """Fixed-header, length and framing rules."""

    def test_reserved_flags(self) -> None:
        """
        PUBREL, SUBSCRIBE and UNSUBSCRIBE need flags 0b0010, every other
        non-PUBLISH packet 0.
        """
        valid = {
            4: (encode(PubAck(1), 5), True),
            5: (encode(PubRec(1), 5), True),
            6: (encode(PubRel(1), 5), True),
            7: (encode(PubComp(1), 5), True),
            8: (encode(Subscribe(1, [Subscription("a")]), 5), True),
            10: (encode(Unsubscribe(1, ["a"]), 5), True),
            12: (encode(PingReq(), 5), True),
            14: (encode(Disconnect(), 5), True),
            15: (encode(Auth(), 5), True),
            2: (encode(ConnAck(), 5), False),
            9: (encode(SubAck(1, [0]), 5), False),
            11: (encode(UnsubAck(1, [0]), 5), False),
            13: (encode(PingResp(), 5), False),
        }
        for ptype, (data, server) in valid.items():
            decode = from_client if server else from_server
            self.assertEqual(len(list(decode(5, data))), 1)
            for flags in range(16):
                if flags == data[0] & 0x0F:
                    continue
                bad = bytes([ptype << 4 | flags]) + data[1:]
                self.assertRaises(MalformedPacket, list, decode(5, bad))

    def test_reserved_type(self) -> None:
        """Packet type 0 is malformed."""
        self.assertRaises(MalformedPacket, list, from_client(4, h("00 00")))

    def test_auth_before_v5(self) -> None:
        """AUTH on a v3 connection is malformed."""
        for level in (3, 4):
            self.assertRaises(MalformedPacket, list, from_client(level, h("f0 00")))
            self.assertRaises(MalformedPacket, list, from_server(level, h("f0 00")))

    def test_wrong_direction(self) -> None:
        """A server-to-client packet sent by a client (and vice versa) is a protocol error."""
        self.assertRaises(ProtocolError, list, from_client(4, encode(SubAck(1, [0]), 4)))
        self.assertRaises(ProtocolError, list, from_client(4, encode(ConnAck(), 4)))
        self.assertRaises(
            ProtocolError, list, from_server(4, encode(Subscribe(1, [Subscription("a")]), 4))
        )
        self.assertRaises(ProtocolError, list, from_server(4, CONNECT_V4))

    def test_remaining_length_too_long(self) -> None:
        """A remaining length of more than 4 bytes is malformed, from the 5th byte."""
        decoder = from_client(4, h("30 ff ff ff ff"))
        self.assertRaises(MalformedPacket, decoder.next_packet)
        self.assertIsNone(from_client(4, h("30 ff ff ff")).next_packet())

    def test_stays_failed(self) -> None:
        """After an error every call raises the same error, whatever is fed."""
        decoder = from_client(4, h("00 00"))
        exc = self.assertRaises(MalformedPacket, decoder.next_packet)
        decoder.feed(h("c0 00"))
        self.assertIs(self.assertRaises(MalformedPacket, decoder.next_packet), exc)
        self.assertIs(self.assertRaises(MalformedPacket, list, decoder), exc)

    def test_wrong_lengths(self) -> None:
        """Content shorter or longer than the remaining length is malformed."""
        cases: list[tuple[int, bool, str]] = [
            (4, True, "40 01 00"),  # PUBACK too short
            (4, True, "40 03 00 01 00"),  # v3 PUBACK too long
            (4, True, "c0 01 00"),  # PINGREQ with a body
            (4, True, "e0 01 00"),  # v3 DISCONNECT with a body
            (5, True, "e0 03 00 05 00"),  # property length past the end
            (5, True, "40 05 00 01 00 00 00"),  # byte after the properties
            (4, False, "20 03 00 00 00"),  # v3 CONNACK too long
            (4, False, "20 01 00"),  # CONNACK too short
            (4, False, "b0 03 00 01 00"),  # v3 UNSUBACK with a payload
            (4, False, "d0 01 00"),  # PINGRESP with a body
            (4, True, "82 05 00 01 00 01 61"),  # SUBSCRIBE without options
            (4, True, "a2 05 00 01 00 05 61"),  # UNSUBSCRIBE filter too long
        ]
        for level, server, hex_bytes in cases:
            decode = from_client if server else from_server
            self.assertRaises(MalformedPacket, list, decode(level, h(hex_bytes)))

    def test_connack_reserved_flags(self) -> None:
        """CONNACK acknowledge flags other than session present are malformed."""
        self.assertRaises(MalformedPacket, list, from_server(4, h("20 02 02 00")))

    def test_packet_id_zero(self) -> None:
        """Packet identifier 0 in acks and (un)subscriptions is a protocol error."""
        for hex_bytes in (
            "40 02 00 00",
            "62 02 00 00",
            "82 06 00 00 00 01 61 00",
            "a2 05 00 00 00 01 61",
        ):
            self.assertRaises(ProtocolError, list, from_client(4, h(hex_bytes)))
        self.assertRaises(ProtocolError, list, from_server(4, h("90 03 00 00 00")))

    def test_client_decoder_needs_level(self) -> None:
        """A client-side decoder cannot guess the protocol level."""
        self.assertRaises(ValueError, Decoder, server=False)


class MaxPacketSizeTests(SynchronousTestCase):
    """L{Decoder.max_packet_size} limits whole packets, fixed header included."""

    def test_limit_checked_before_body(self) -> None:
        """
        A packet over the limit is refused as soon as its remaining length
        is known, before the body arrives.
        """
        decoder = from_client(5, h("30 80 01"))
        decoder.max_packet_size = 130
        exc = self.assertRaises(PacketTooLarge, decoder.next_packet)
        self.assertEqual(exc.reason_code, 0x95)

    def test_exact_limit_allowed(self) -> None:
        """A packet exactly at the limit is accepted, one byte more is not."""
        data = encode(Publish("t", b"x" * 10), 4)
        decoder = Decoder(max_packet_size=len(data))
        decoder.feed(encode(Connect("", 4), 4) + data)
        self.assertEqual(len(list(decoder)), 2)
        decoder = Decoder(max_packet_size=len(data) - 1)
        decoder.feed(encode(Connect("", 4), 4) + data)
        decoder.next_packet()
        self.assertRaises(PacketTooLarge, decoder.next_packet)

    def test_unlimited(self) -> None:
        """0 means no limit."""
        data = encode(Publish("t", b"x" * 100_000), 4)
        self.assertEqual(len(list(from_client(4, data))), 1)

    def test_changed_after_connect(self) -> None:
        """The broker may lower the limit after CONNECT; it applies to later packets."""
        decoder = from_client(5, encode(Publish("t", b"x" * 100), 5))
        decoder.max_packet_size = 50
        self.assertRaises(PacketTooLarge, decoder.next_packet)


class SubscribeValidationTests(SynchronousTestCase):
    """Rules for SUBSCRIBE and UNSUBSCRIBE."""

    def test_empty_subscribe(self) -> None:
        """A SUBSCRIBE without subscriptions is a protocol error."""
        self.assertRaises(ProtocolError, list, from_client(4, h("82 02 00 01")))
        self.assertRaises(ProtocolError, list, from_client(5, h("82 03 00 01 00")))

    def test_empty_unsubscribe(self) -> None:
        """An UNSUBSCRIBE without topic filters is a protocol error."""
        self.assertRaises(ProtocolError, list, from_client(4, h("a2 02 00 01")))
        self.assertRaises(ProtocolError, list, from_client(5, h("a2 03 00 01 00")))

    def test_option_bits(self) -> None:
        """
        Reserved option bits (2-7 before v5, 6-7 in v5), QoS 3 and retain
        handling 3 are malformed.
        """
        cases = [(4, 0x04), (4, 0x80), (4, 0x03), (5, 0x40), (5, 0x80), (5, 0x03), (5, 0x30)]
        for level, options in cases:
            props = b"\x00" if level == 5 else b""
            body = b"\x00\x01" + props + b"\x00\x01a" + bytes([options])
            data = bytes([0x82, len(body)]) + body
            self.assertRaises(MalformedPacket, list, from_client(level, data))

    def test_v5_options_accepted(self) -> None:
        """In v5 bits 2-5 are no local, retain as published and retain handling."""
        data = h("82 07 00 01 00 00 01 61 2e")
        self.assertEqual(
            list(from_client(5, data)),
            [Subscribe(1, [Subscription("a", 2, True, True, 2)])],
        )


class PropertyValidationTests(SynchronousTestCase):
    """Property rules, as the decoder applies them to whole packets."""

    def test_duplicate(self) -> None:
        """A repeated property is a protocol error."""
        data = h("30 0e 00 01 61 0a 02 00 00 00 01 02 00 00 00 02")
        self.assertRaises(ProtocolError, list, from_client(5, data))

    def test_repeated_user_property(self) -> None:
        """User properties may repeat and keep their order."""
        data = h("e0 0e 00 0c 26 00 01 62 00 00 26 00 01 61 00 00")
        self.assertEqual(
            list(from_client(5, data)),
            [Disconnect(0, {"user_property": [("b", ""), ("a", "")]})],
        )

    def test_subscription_identifier_twice_in_subscribe(self) -> None:
        """SUBSCRIBE carries at most one subscription identifier."""
        data = h("82 0b 00 01 04 0b 01 0b 02 00 01 61 00")
        self.assertRaises(ProtocolError, list, from_client(5, data))

    def test_subscription_identifier_zero(self) -> None:
        """A subscription identifier of 0 is a protocol error."""
        data = h("82 09 00 01 02 0b 00 00 01 61 00")
        self.assertRaises(ProtocolError, list, from_client(5, data))

    def test_not_allowed(self) -> None:
        """A property the packet may not carry is a protocol error."""
        data = h("e0 05 00 03 23 00 01")  # topic alias in DISCONNECT
        self.assertRaises(ProtocolError, list, from_client(5, data))

    def test_unknown(self) -> None:
        """An unknown property identifier is malformed."""
        data = h("e0 04 00 02 05 00")
        self.assertRaises(MalformedPacket, list, from_client(5, data))


class EncodeTests(SynchronousTestCase):
    """What L{encode} and L{encode_publish} do with v3 and bad input."""

    def test_v3_drops_v5_fields(self) -> None:
        """Before v5, properties and reason codes are left out."""
        props = {"reason_string": "x"}
        self.assertEqual(encode(PubAck(5, 0x10, props), 4), h("40 02 00 05"))
        self.assertEqual(encode(Disconnect(0x8E, props), 4), h("e0 00"))
        self.assertEqual(encode(UnsubAck(5, [0x11], props), 4), h("b0 02 00 05"))
        self.assertEqual(
            encode(Publish("a", b"", properties={"content_type": "t"}), 4), h("30 03 00 01 61")
        )
        self.assertEqual(
            encode(Subscribe(1, [Subscription("a", 1, True, True, 2)]), 4),
            h("82 06 00 01 00 01 61 01"),
        )

    def test_v3_maps_failure_codes(self) -> None:
        """A v5 CONNACK reason becomes the v3 return code, SUBACK failures 0x80."""
        self.assertEqual(encode(ConnAck(False, 0x86), 4), h("20 02 00 04"))
        self.assertEqual(encode(ConnAck(False, 0x88), 3), h("20 02 00 03"))
        self.assertEqual(encode(ConnAck(False, 2), 4), h("20 02 00 02"))
        self.assertEqual(encode(SubAck(1, [1, 0x87, 0x8F]), 4), h("90 05 00 01 01 80 80"))

    def test_bridge_levels(self) -> None:
        """The bridge levels 131 and 132 encode like 3 and 4."""
        for packet in (Publish("a", b"x", 1, packet_id=1), PubAck(1, 0x10), Disconnect(4)):
            self.assertEqual(encode(packet, 131), encode(packet, 3))
            self.assertEqual(encode(packet, 132), encode(packet, 4))

    def test_auth_before_v5(self) -> None:
        """AUTH cannot be encoded before v5."""
        self.assertRaises(ValueError, encode, Auth(), 4)

    def test_not_a_packet(self) -> None:
        """Encoding something that is not a packet is a TypeError."""
        self.assertRaises(TypeError, encode, object(), 4)

    def test_missing_packet_id(self) -> None:
        """A QoS 1 or 2 PUBLISH needs a packet identifier."""
        self.assertRaises(ValueError, encode_publish, "a", b"", 1, False, False, None, None, 4)
        self.assertRaises(ValueError, encode_publish, "a", b"", 2, False, False, None, None, 5)

    def test_bad_properties(self) -> None:
        """Unknown, misplaced or out-of-range properties are refused."""
        self.assertRaises(ValueError, encode, PubAck(1, 0, {"nonsense": 1}), 5)
        self.assertRaises(ValueError, encode, PubAck(1, 0, {"topic_alias": 1}), 5)
        self.assertRaises(ValueError, encode, ConnAck(False, 0, {"receive_maximum": 70000}), 5)

    def test_oversized(self) -> None:
        """Strings over 65535 bytes and packet ids over 65535 are refused."""
        self.assertRaises(
            ValueError, encode_publish, "a" * 65536, b"", 0, False, False, None, None, 4
        )
        self.assertRaises(ValueError, encode, Connect("a" * 65536), 4)
        self.assertRaises(ValueError, encode, PubAck(65536), 4)

    def test_encode_publish_flags(self) -> None:
        """retain, dup and QoS land in the first byte."""
        self.assertEqual(encode_publish("a", b"", 2, True, True, 1, None, 4)[0], 0x3D)
        self.assertEqual(encode_publish("a", b"", 0, False, False, None, {}, 5)[0], 0x30)


class PahoCrossCheckTests(SynchronousTestCase):
    """
    paho-mqtt, a real client, and this codec understand each other: what
    paho writes decodes to the expected packets, and what this codec
    encodes, paho reads.
    """

    if requireModule("paho.mqtt.client") is None:
        skip = "paho-mqtt is not installed"

    def make_client(self, protocol: int) -> tuple[Any, Any]:
        """A paho client wired to an in-memory socket (paho internals)."""
        mqtt = paho("client")

        class FakeSocket:
            def __init__(self) -> None:
                self.sent = bytearray()
                self.inbox = bytearray()

            def send(self, data: bytes) -> int:
                self.sent += data
                return len(data)

            def recv(self, size: int) -> bytes:
                out = bytes(self.inbox[:size])
                del self.inbox[:size]
                if not out:
                    raise BlockingIOError()
                return out

            def close(self) -> None:
                pass

            def fileno(self) -> int:
                return -1

            def setblocking(self, flag: bool) -> None:
                pass

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho", protocol=protocol)
        sock = FakeSocket()
        client._sock = sock
        return client, sock

    def test_paho_to_codec_v5(self) -> None:
        """A paho v5 session's packets decode as the packets paho meant."""
        mqtt = paho("client")
        PacketTypes = paho("packettypes").PacketTypes
        PahoProperties = paho("properties").Properties

        client, sock = self.make_client(mqtt.MQTTv5)
        client.username_pw_set("user", "pw")
        will_props = PahoProperties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 5
        client.will_set("w/t", b"bye", 1, True, properties=will_props)
        connect_props = PahoProperties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 30
        connect_props.UserProperty = ("k", "v")
        client._connect_properties = connect_props
        client._send_connect(45)
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
        publish_props = PahoProperties(PacketTypes.PUBLISH)
        publish_props.MessageExpiryInterval = 9
        publish_props.ContentType = "text/plain"
        client.publish("a/b", b"hello", 1, properties=publish_props)
        options = mqtt.SubscribeOptions(
            qos=2, noLocal=True, retainAsPublished=True, retainHandling=1
        )
        client.subscribe([("x/+", options)])
        client.unsubscribe(["x/+", "y"])
        client._send_pingreq()
        client.disconnect()
        self.assertEqual(
            decode_all(bytes(sock.sent)),
            [
                Connect(
                    "paho",
                    5,
                    True,
                    45,
                    Will("w/t", b"bye", 1, True, {"will_delay_interval": 5}),
                    "user",
                    b"pw",
                    {"session_expiry_interval": 30, "user_property": [("k", "v")]},
                ),
                Publish(
                    "a/b",
                    b"hello",
                    1,
                    packet_id=1,
                    properties={"message_expiry_interval": 9, "content_type": "text/plain"},
                ),
                Subscribe(2, [Subscription("x/+", 2, True, True, 1)]),
                Unsubscribe(3, ["x/+", "y"]),
                PingReq(),
                Disconnect(),
            ],
        )

    def test_paho_to_codec_v311(self) -> None:
        """A paho 3.1.1 session's packets decode as the packets paho meant."""
        mqtt = paho("client")
        client, sock = self.make_client(mqtt.MQTTv311)
        client._send_connect(10)
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
        client.publish("a/b", b"x" * 200, 2, retain=True)
        client.subscribe("s/#", 1)
        self.assertEqual(
            decode_all(bytes(sock.sent)),
            [
                Connect("paho", 4, True, 10),
                Publish("a/b", b"x" * 200, 2, True, packet_id=1),
                Subscribe(2, [Subscription("s/#", 1)]),
            ],
        )

    def test_codec_to_paho_v5(self) -> None:
        """paho reads this codec's CONNACK, PUBLISH and SUBACK, and acks the PUBLISH."""
        mqtt = paho("client")
        client, sock = self.make_client(mqtt.MQTTv5)
        client._send_connect(45)
        del sock.sent[:]
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECT_ASYNC
        events: list[tuple[Any, ...]] = []
        client.on_connect = lambda c, u, flags, rc, props: events.append(
            ("connect", flags.session_present, rc.value, props.AssignedClientIdentifier)
        )
        client.on_message = lambda c, u, m: events.append(
            ("message", m.topic, m.payload, m.qos, m.retain, m.properties.ContentType)
        )
        client.on_subscribe = lambda c, u, mid, rcs, props: events.append(
            ("subscribe", mid, [r.value for r in rcs])
        )
        sock.inbox += encode(ConnAck(True, 0, {"assigned_client_identifier": "abc"}), 5)
        sock.inbox += encode(Publish("t/1", b"pay", 1, True, False, 9, {"content_type": "ct"}), 5)
        sock.inbox += encode(SubAck(1, [1, 0x87]), 5)
        for _ in range(3):
            client.loop_read()
        self.assertEqual(
            events,
            [
                ("connect", True, 0, "abc"),
                ("message", "t/1", b"pay", 1, True, "ct"),
                ("subscribe", 1, [1, 0x87]),
            ],
        )
        self.assertEqual(list(from_client(5, bytes(sock.sent))), [PubAck(9)])


class ErrorClassTests(SynchronousTestCase):
    """The exception classes carry their v5 reason codes."""

    def test_reason_codes(self) -> None:
        """Each error class has its default reason code, overridable."""
        self.assertEqual(MalformedPacket("x").reason_code, 0x81)
        self.assertEqual(ProtocolError("x").reason_code, 0x82)
        self.assertEqual(ProtocolError("x", 0x90).reason_code, 0x90)
        self.assertEqual(PacketTooLarge("x").reason_code, 0x95)
        self.assertTrue(issubclass(UnsupportedProtocolVersion, MQTTError))
