# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.mqtt.properties}.

(trial's assertion methods are untyped, hence the mypy comment above.)
"""

from __future__ import annotations

import importlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.python.reflect import requireModule
from twisted.trial.unittest import SynchronousTestCase

from tests import mqtt_strategies as ms
from vernemq.mqtt.packets import MalformedPacket, Properties, ProtocolError
from vernemq.mqtt.properties import (
    BY_ID,
    BY_NAME,
    PROPERTIES,
    WILL_PROPERTIES,
    PacketType,
    PropertyType,
    allowed,
    decode_properties,
    decode_variable_byte_integer,
    encode_properties,
    encode_variable_byte_integer,
    repeatable,
)

h = bytes.fromhex
P = PacketType
T = PropertyType

# The property table of the MQTT 5.0 specification, section 2.2.2.2.
SPEC_TABLE: dict[int, tuple[str, PropertyType, set[int]]] = {
    0x01: ("payload_format_indicator", T.BYTE, {P.PUBLISH, WILL_PROPERTIES}),
    0x02: ("message_expiry_interval", T.FOUR_BYTE_INTEGER, {P.PUBLISH, WILL_PROPERTIES}),
    0x03: ("content_type", T.UTF8_STRING, {P.PUBLISH, WILL_PROPERTIES}),
    0x08: ("response_topic", T.UTF8_STRING, {P.PUBLISH, WILL_PROPERTIES}),
    0x09: ("correlation_data", T.BINARY_DATA, {P.PUBLISH, WILL_PROPERTIES}),
    0x0B: ("subscription_identifier", T.VARIABLE_BYTE_INTEGER, {P.PUBLISH, P.SUBSCRIBE}),
    0x11: ("session_expiry_interval", T.FOUR_BYTE_INTEGER, {P.CONNECT, P.CONNACK, P.DISCONNECT}),
    0x12: ("assigned_client_identifier", T.UTF8_STRING, {P.CONNACK}),
    0x13: ("server_keep_alive", T.TWO_BYTE_INTEGER, {P.CONNACK}),
    0x15: ("authentication_method", T.UTF8_STRING, {P.CONNECT, P.CONNACK, P.AUTH}),
    0x16: ("authentication_data", T.BINARY_DATA, {P.CONNECT, P.CONNACK, P.AUTH}),
    0x17: ("request_problem_information", T.BYTE, {P.CONNECT}),
    0x18: ("will_delay_interval", T.FOUR_BYTE_INTEGER, {WILL_PROPERTIES}),
    0x19: ("request_response_information", T.BYTE, {P.CONNECT}),
    0x1A: ("response_information", T.UTF8_STRING, {P.CONNACK}),
    0x1C: ("server_reference", T.UTF8_STRING, {P.CONNACK, P.DISCONNECT}),
    0x1F: (
        "reason_string",
        T.UTF8_STRING,
        {
            P.CONNACK,
            P.PUBACK,
            P.PUBREC,
            P.PUBREL,
            P.PUBCOMP,
            P.SUBACK,
            P.UNSUBACK,
            P.DISCONNECT,
            P.AUTH,
        },
    ),
    0x21: ("receive_maximum", T.TWO_BYTE_INTEGER, {P.CONNECT, P.CONNACK}),
    0x22: ("topic_alias_maximum", T.TWO_BYTE_INTEGER, {P.CONNECT, P.CONNACK}),
    0x23: ("topic_alias", T.TWO_BYTE_INTEGER, {P.PUBLISH}),
    0x24: ("maximum_qos", T.BYTE, {P.CONNACK}),
    0x25: ("retain_available", T.BYTE, {P.CONNACK}),
    0x26: (
        "user_property",
        T.UTF8_STRING_PAIR,
        set(P) - {P.PINGREQ, P.PINGRESP} | {WILL_PROPERTIES},
    ),
    0x27: ("maximum_packet_size", T.FOUR_BYTE_INTEGER, {P.CONNECT, P.CONNACK}),
    0x28: ("wildcard_subscription_available", T.BYTE, {P.CONNACK}),
    0x29: ("subscription_identifier_available", T.BYTE, {P.CONNACK}),
    0x2A: ("shared_subscription_available", T.BYTE, {P.CONNACK}),
}

WITH_PROPERTIES = sorted(set(P) - {P.PINGREQ, P.PINGRESP} | {WILL_PROPERTIES})


def decode(data: bytes, packet_type: int) -> Properties:
    """Decode a whole property block and check it used all of C{data}."""
    props, pos = decode_properties(data, 0, len(data), packet_type)
    assert pos == len(data), (pos, len(data))
    return props


class TableTests(SynchronousTestCase):
    """The property table matches the MQTT 5.0 specification."""

    def test_matches_specification(self) -> None:
        """Every identifier has the specification's name, type and packets."""
        self.assertEqual(
            {p.identifier: (p.name, p.type, set(p.packets)) for p in PROPERTIES}, SPEC_TABLE
        )

    def test_lookups(self) -> None:
        """L{BY_ID} and L{BY_NAME} find every property."""
        for spec in PROPERTIES:
            self.assertIs(BY_ID[spec.identifier], spec)
            self.assertIs(BY_NAME[spec.name], spec)
        self.assertEqual(len(BY_ID), 27)

    def test_allowed(self) -> None:
        """L{allowed} answers from the table; unknown names are never allowed."""
        self.assertTrue(allowed("topic_alias", P.PUBLISH))
        self.assertFalse(allowed("topic_alias", P.CONNECT))
        self.assertTrue(allowed("will_delay_interval", WILL_PROPERTIES))
        self.assertFalse(allowed("will_delay_interval", P.CONNECT))
        self.assertTrue(allowed("user_property", P.AUTH))
        self.assertFalse(allowed("user_property", P.PINGREQ))
        self.assertFalse(allowed("nonsense", P.PUBLISH))

    def test_repeatable(self) -> None:
        """
        User properties repeat anywhere; subscription identifiers only in
        PUBLISH; nothing else repeats.
        """
        self.assertTrue(repeatable("user_property", P.CONNECT))
        self.assertTrue(repeatable("subscription_identifier", P.PUBLISH))
        self.assertFalse(repeatable("subscription_identifier", P.SUBSCRIBE))
        self.assertFalse(repeatable("content_type", P.PUBLISH))


class VariableByteIntegerTests(SynchronousTestCase):
    """Variable Byte Integers, as in the specification's section 1.5.5 table."""

    VECTORS = {
        0: "00",
        127: "7f",
        128: "80 01",
        16383: "ff 7f",
        16384: "80 80 01",
        2097151: "ff ff 7f",
        2097152: "80 80 80 01",
        268435455: "ff ff ff 7f",
    }

    def test_encode(self) -> None:
        """Each boundary value encodes in the minimum number of bytes."""
        for value, encoded in self.VECTORS.items():
            self.assertEqual(encode_variable_byte_integer(value), h(encoded))

    def test_decode(self) -> None:
        """Each vector decodes back, reporting the position after it."""
        for value, encoded in self.VECTORS.items():
            data = h(encoded) + b"\xee"
            self.assertEqual(
                decode_variable_byte_integer(data, 0, len(data)), (value, len(h(encoded)))
            )

    def test_out_of_range(self) -> None:
        """Negative values and values over 268435455 cannot be encoded."""
        self.assertRaises(ValueError, encode_variable_byte_integer, -1)
        self.assertRaises(ValueError, encode_variable_byte_integer, 268435456)

    def test_too_long(self) -> None:
        """A fifth byte is malformed."""
        data = h("80 80 80 80 01")
        self.assertRaises(MalformedPacket, decode_variable_byte_integer, data, 0, 5)

    def test_truncated(self) -> None:
        """A continuation bit on the last available byte is malformed."""
        self.assertRaises(MalformedPacket, decode_variable_byte_integer, h("80 80"), 0, 2)
        self.assertRaises(MalformedPacket, decode_variable_byte_integer, h("80 01"), 0, 1)

    @given(st.integers(0, 268435455))
    def test_round_trip(self, value: int) -> None:
        """Every value in range round-trips."""
        data = encode_variable_byte_integer(value)
        self.assertEqual(decode_variable_byte_integer(data, 0, len(data)), (value, len(data)))


class RoundTripTests(SynchronousTestCase):
    """Property blocks round-trip for every packet type that has them."""

    @given(st.sampled_from(WITH_PROPERTIES).flatmap(
        lambda t: st.tuples(st.just(t), ms.properties(t))
    ))
    def test_round_trip(self, case: tuple[int, Properties]) -> None:
        """decode(encode(props)) == props."""
        packet_type, props = case
        self.assertEqual(decode(encode_properties(props, packet_type), packet_type), props)

    def test_vector(self) -> None:
        """A PUBLISH property block, byte for byte, in dict order."""
        props = {
            "payload_format_indicator": 1,
            "message_expiry_interval": 300,
            "subscription_identifier": [200, 1],
            "user_property": [("a", "b"), ("c", "")],
            "correlation_data": b"\x01",
        }
        data = h("1d 01 01 02 00 00 01 2c 0b c8 01 0b 01 26 00 01 61 00 01 62 26 00 01 63 00 00"
                 " 09 00 01 01")
        self.assertEqual(encode_properties(props, P.PUBLISH), data)
        self.assertEqual(decode(data, P.PUBLISH), props)

    def test_empty(self) -> None:
        """No properties is the single byte 0."""
        self.assertEqual(encode_properties({}, P.CONNACK), b"\x00")
        self.assertEqual(decode(b"\x00", P.CONNACK), {})


class DecodeValidationTests(SynchronousTestCase):
    """What L{decode_properties} refuses."""

    def test_duplicate(self) -> None:
        """A property that may not repeat, repeated, is a protocol error."""
        self.assertRaises(ProtocolError, decode, h("04 01 00 01 01"), P.PUBLISH)
        self.assertRaises(ProtocolError, decode, h("04 0b 01 0b 02"), P.SUBSCRIBE)

    def test_allowed_repeats(self) -> None:
        """User properties and PUBLISH subscription identifiers accumulate."""
        self.assertEqual(
            decode(h("04 0b 01 0b 02"), P.PUBLISH), {"subscription_identifier": [1, 2]}
        )
        self.assertEqual(
            decode(h("0c 26 00 01 61 00 00 26 00 01 61 00 00"), P.AUTH),
            {"user_property": [("a", ""), ("a", "")]},
        )

    def test_not_allowed(self) -> None:
        """A property the packet may not carry is a protocol error."""
        self.assertRaises(ProtocolError, decode, h("02 24 01"), P.CONNECT)
        self.assertRaises(ProtocolError, decode, h("05 18 00 00 00 01"), P.CONNECT)
        self.assertEqual(decode(h("05 18 00 00 00 01"), WILL_PROPERTIES),
                         {"will_delay_interval": 1})

    def test_unknown(self) -> None:
        """An unknown identifier is malformed."""
        for ident in (0x00, 0x04, 0x2B, 0x80):
            self.assertRaises(MalformedPacket, decode, bytes([2, ident, 0]), P.PUBLISH)

    def test_zero_values(self) -> None:
        """
        Subscription identifier, receive maximum and maximum packet size 0
        are protocol errors; topic alias 0 too, with reason 0x94.
        """
        self.assertRaises(ProtocolError, decode, h("02 0b 00"), P.SUBSCRIBE)
        self.assertRaises(ProtocolError, decode, h("03 21 00 00"), P.CONNECT)
        self.assertRaises(ProtocolError, decode, h("05 27 00 00 00 00"), P.CONNACK)
        exc = self.assertRaises(ProtocolError, decode, h("03 23 00 00"), P.PUBLISH)
        self.assertEqual(exc.reason_code, 0x94)

    def test_boolean_values(self) -> None:
        """The 0-or-1 byte properties refuse 2 with a protocol error."""
        for ident, ptype in [(0x17, P.CONNECT), (0x19, P.CONNECT), (0x24, P.CONNACK),
                             (0x25, P.CONNACK), (0x28, P.CONNACK), (0x29, P.CONNACK),
                             (0x2A, P.CONNACK)]:
            self.assertRaises(ProtocolError, decode, bytes([2, ident, 2]), ptype)
            self.assertEqual(decode(bytes([2, ident, 1]), ptype), {BY_ID[ident].name: 1})

    def test_truncated(self) -> None:
        """A value cut off by the property length is malformed."""
        for block in ("01 01", "02 02 00", "04 02 00 00 00", "03 23 00", "01 0b", "02 0b 80",
                      "03 03 00 02", "04 03 00 02 61", "06 26 00 01 61 00 01",
                      "05 26 00 01 61 00", "06 09 00 05 00 00 00"):
            data = h(block)
            self.assertRaises(MalformedPacket, decode_properties, data, 0, len(data), P.PUBLISH
                              if block[3:5] != "26" else P.AUTH)

    def test_length_past_end(self) -> None:
        """A property length longer than the packet is malformed."""
        self.assertRaises(MalformedPacket, decode_properties, h("05 01 01"), 0, 3, P.PUBLISH)

    def test_bad_utf8(self) -> None:
        """Strings and string pairs must be valid UTF-8 without U+0000."""
        for block in ("05 03 00 02 c3 28", "04 03 00 01 00", "09 26 00 01 61 00 03 ed a0 80"):
            data = h(block)
            ptype = P.AUTH if block[3:5] == "26" else P.PUBLISH
            self.assertRaises(MalformedPacket, decode, data, ptype)


class EncodeTests(SynchronousTestCase):
    """What L{encode_properties} refuses."""

    def test_unknown(self) -> None:
        """An unknown property name is a ValueError."""
        self.assertRaises(ValueError, encode_properties, {"colour": 1}, P.PUBLISH)

    def test_not_allowed(self) -> None:
        """A property the packet may not carry is a ValueError."""
        self.assertRaises(ValueError, encode_properties, {"topic_alias": 1}, P.CONNECT)

    def test_wrong_types(self) -> None:
        """Values of the wrong type or range are ValueErrors."""
        for props in [
            {"content_type": b"bytes"},
            {"correlation_data": "text"},
            {"user_property": [("a",)]},
            {"user_property": [("a", 1)]},
            {"receive_maximum": 65536},
            {"session_expiry_interval": -1},
            {"subscription_identifier": [268435456]},
        ]:
            ptype = P.PUBLISH if "subscription_identifier" in props else P.CONNECT
            if "content_type" in props or "correlation_data" in props:
                ptype = P.PUBLISH
            self.assertRaises(ValueError, encode_properties, props, ptype)

    def test_long_string(self) -> None:
        """Strings over 65535 bytes cannot be encoded."""
        self.assertRaises(ValueError, encode_properties, {"content_type": "x" * 65536},
                          P.PUBLISH)


class PahoCrossCheckTests(SynchronousTestCase):
    """paho-mqtt's property blocks and ours are the same thing."""

    if requireModule("paho.mqtt.properties") is None:
        skip = "paho-mqtt is not installed"

    def paho_publish_properties(self) -> Any:
        """A paho PUBLISH property block with one of each PUBLISH property."""
        packet_types: Any = importlib.import_module("paho.mqtt.packettypes").PacketTypes
        paho_properties: Any = importlib.import_module("paho.mqtt.properties").Properties
        props = paho_properties(packet_types.PUBLISH)
        props.PayloadFormatIndicator = 1
        props.MessageExpiryInterval = 300
        props.ContentType = "text"
        props.ResponseTopic = "r/t"
        props.CorrelationData = b"\x01\x02"
        props.SubscriptionIdentifier = 200
        props.TopicAlias = 4
        props.UserProperty = ("a", "b")
        props.UserProperty = ("c", "d")
        return props

    EXPECTED = {
        "payload_format_indicator": 1,
        "message_expiry_interval": 300,
        "content_type": "text",
        "response_topic": "r/t",
        "correlation_data": b"\x01\x02",
        "subscription_identifier": [200],
        "topic_alias": 4,
        "user_property": [("a", "b"), ("c", "d")],
    }

    def test_paho_to_ours(self) -> None:
        """We decode paho's block to the expected dict."""
        self.assertEqual(decode(self.paho_publish_properties().pack(), P.PUBLISH), self.EXPECTED)

    def test_ours_to_paho(self) -> None:
        """paho decodes our block to the same values."""
        packet_types: Any = importlib.import_module("paho.mqtt.packettypes").PacketTypes
        paho_properties: Any = importlib.import_module("paho.mqtt.properties").Properties
        data = encode_properties(self.EXPECTED, P.PUBLISH)
        theirs = paho_properties(packet_types.PUBLISH)
        _, length = theirs.unpack(data)
        self.assertEqual(length, len(data))
        self.assertEqual(theirs.json(), self.paho_publish_properties().json())
