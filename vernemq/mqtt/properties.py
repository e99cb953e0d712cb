# -*- test-case-name: tests.test_mqtt_properties -*-
"""
MQTT 5.0 properties: identifiers, wire types, which packets may carry
which property, and the encoder/decoder of a property block.

A property block is a Variable Byte Integer length followed by
C{(identifier, value)} pairs.  In Python a block is a
L{vernemq.mqtt.packets.Properties} dict keyed by the snake_case name of
the property (see L{vernemq.mqtt.packets} for the list).  Two properties
may appear more than once: C{user_property} (a list of C{(key, value)}
pairs in wire order) and C{subscription_identifier} (a list of ints; only
PUBLISH may carry several, SUBSCRIBE carries at most one).

The decoder enforces the MQTT 5.0 rules that can be checked without
session state:

    - an unknown identifier is a L{MalformedPacket};
    - a property the packet may not carry is a L{ProtocolError};
    - a repeated property (other than the two above) is a
      L{ProtocolError};
    - values the specification calls a Protocol Error: a zero
      C{subscription_identifier}, C{receive_maximum} or
      C{maximum_packet_size}; a zero C{topic_alias} (reason 0x94); a
      value other than 0 or 1 for the boolean-like byte properties.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from vernemq.mqtt.packets import MalformedPacket, Properties, ProtocolError


class PacketType(IntEnum):
    """The MQTT control packet types (the high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


WILL_PROPERTIES: Final = 0
"""
Pseudo packet type for the will properties inside a CONNECT payload
(0 is the reserved packet type, so it never clashes with a real one).
"""


class PropertyType(IntEnum):
    """The data representation of a property value on the wire."""

    BYTE = 1
    TWO_BYTE_INTEGER = 2
    FOUR_BYTE_INTEGER = 3
    VARIABLE_BYTE_INTEGER = 4
    UTF8_STRING = 5
    BINARY_DATA = 6
    UTF8_STRING_PAIR = 7


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """
    One MQTT 5.0 property.

    @ivar identifier: the property identifier byte.
    @ivar name: the snake_case key used in L{Properties} dicts.
    @ivar type: the wire representation of the value.
    @ivar packets: the packet types (and L{WILL_PROPERTIES}) that may
        carry it.
    """

    identifier: int
    name: str
    type: PropertyType
    packets: frozenset[int]


_P = PacketType
_ALL_WITH_PROPERTIES = frozenset(
    {
        _P.CONNECT,
        _P.CONNACK,
        _P.PUBLISH,
        WILL_PROPERTIES,
        _P.PUBACK,
        _P.PUBREC,
        _P.PUBREL,
        _P.PUBCOMP,
        _P.SUBSCRIBE,
        _P.SUBACK,
        _P.UNSUBSCRIBE,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    }
)
_T = PropertyType

PROPERTIES: Final[tuple[PropertySpec, ...]] = (
    PropertySpec(
        0x01,
        "payload_format_indicator",
        _T.BYTE,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x02,
        "message_expiry_interval",
        _T.FOUR_BYTE_INTEGER,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x03,
        "content_type",
        _T.UTF8_STRING,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x08,
        "response_topic",
        _T.UTF8_STRING,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x09,
        "correlation_data",
        _T.BINARY_DATA,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x0B,
        "subscription_identifier",
        _T.VARIABLE_BYTE_INTEGER,
        frozenset({_P.PUBLISH, _P.SUBSCRIBE}),
    ),
    PropertySpec(
        0x11,
        "session_expiry_interval",
        _T.FOUR_BYTE_INTEGER,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    PropertySpec(
        0x12,
        "assigned_client_identifier",
        _T.UTF8_STRING,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x13,
        "server_keep_alive",
        _T.TWO_BYTE_INTEGER,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x15,
        "authentication_method",
        _T.UTF8_STRING,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    PropertySpec(
        0x16,
        "authentication_data",
        _T.BINARY_DATA,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    PropertySpec(
        0x17,
        "request_problem_information",
        _T.BYTE,
        frozenset({_P.CONNECT}),
    ),
    PropertySpec(
        0x18,
        "will_delay_interval",
        _T.FOUR_BYTE_INTEGER,
        frozenset({WILL_PROPERTIES}),
    ),
    PropertySpec(
        0x19,
        "request_response_information",
        _T.BYTE,
        frozenset({_P.CONNECT}),
    ),
    PropertySpec(
        0x1A,
        "response_information",
        _T.UTF8_STRING,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x1C,
        "server_reference",
        _T.UTF8_STRING,
        frozenset({_P.CONNACK, _P.DISCONNECT}),
    ),
    PropertySpec(
        0x1F,
        "reason_string",
        _T.UTF8_STRING,
        frozenset(
            {
                _P.CONNACK,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBACK,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    PropertySpec(
        0x21,
        "receive_maximum",
        _T.TWO_BYTE_INTEGER,
        frozenset({_P.CONNECT, _P.CONNACK}),
    ),
    PropertySpec(
        0x22,
        "topic_alias_maximum",
        _T.TWO_BYTE_INTEGER,
        frozenset({_P.CONNECT, _P.CONNACK}),
    ),
    PropertySpec(
        0x23,
        "topic_alias",
        _T.TWO_BYTE_INTEGER,
        frozenset({_P.PUBLISH}),
    ),
    PropertySpec(
        0x24,
        "maximum_qos",
        _T.BYTE,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x25,
        "retain_available",
        _T.BYTE,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x26,
        "user_property",
        _T.UTF8_STRING_PAIR,
        _ALL_WITH_PROPERTIES,
    ),
    PropertySpec(
        0x27,
        "maximum_packet_size",
        _T.FOUR_BYTE_INTEGER,
        frozenset({_P.CONNECT, _P.CONNACK}),
    ),
    PropertySpec(
        0x28,
        "wildcard_subscription_available",
        _T.BYTE,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x29,
        "subscription_identifier_available",
        _T.BYTE,
        frozenset({_P.CONNACK}),
    ),
    PropertySpec(
        0x2A,
        "shared_subscription_available",
        _T.BYTE,
        frozenset({_P.CONNACK}),
    ),
)
"""Every MQTT 5.0 property, in identifier order."""

BY_ID: Final[Mapping[int, PropertySpec]] = {p.identifier: p for p in PROPERTIES}
"""Property specs keyed by identifier."""

BY_NAME: Final[Mapping[str, PropertySpec]] = {p.name: p for p in PROPERTIES}
"""Property specs keyed by snake_case name."""

BOOLEAN_PROPERTIES: Final = frozenset(
    {
        "request_problem_information",
        "request_response_information",
        "maximum_qos",
        "retain_available",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    }
)
"""Byte properties whose only legal values are 0 and 1."""

NONZERO_PROPERTIES: Final = frozenset(
    {
        "subscription_identifier",
        "receive_maximum",
        "maximum_packet_size",
        "topic_alias",
    }
)
"""Integer properties for which 0 is a Protocol Error."""

MAX_VARIABLE_BYTE_INTEGER: Final = 268_435_455
"""The largest value a Variable Byte Integer can carry."""


def allowed(name: str, packet_type: int) -> bool:
    """
    Whether the property C{name} may appear in a packet of C{packet_type}
    (a L{PacketType} or L{WILL_PROPERTIES}).  Unknown names are not
    allowed anywhere.
    """
    spec = BY_NAME.get(name)
    return spec is not None and packet_type in spec.packets


def repeatable(name: str, packet_type: int) -> bool:
    """
    Whether the property C{name} may appear more than once in a packet of
    C{packet_type}: C{user_property} anywhere, C{subscription_identifier}
    only in PUBLISH.
    """
    if name == "user_property":
        return True
    return name == "subscription_identifier" and packet_type == PacketType.PUBLISH


def encode_variable_byte_integer(value: int) -> bytes:
    """
    Encode C{value} (0 to 268435455) as an MQTT Variable Byte Integer.

    @raise ValueError: if the value is out of range.
    """
    if value < 0x80:
        if value < 0:
            raise ValueError(f"negative variable byte integer {value}")
        return bytes((value,))
    if value > MAX_VARIABLE_BYTE_INTEGER:
        raise ValueError(f"variable byte integer {value} too large")
    out = bytearray()
    while True:
        digit = value & 0x7F
        value >>= 7
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_variable_byte_integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """
    Decode a Variable Byte Integer from C{data[pos:end]}.

    @return: C{(value, position after it)}.
    @raise MalformedPacket: if it runs past C{end} or is longer than four
        bytes.
    """
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise MalformedPacket("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift == 28:
            raise MalformedPacket("variable byte integer longer than 4 bytes")


_pack_bb = struct.Struct("!BB").pack
_pack_bh = struct.Struct("!BH").pack
_pack_bi = struct.Struct("!BI").pack
_pack_h = struct.Struct("!H").pack


def _string(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) > 0xFFFF:
        raise ValueError("string or binary data longer than 65535 bytes")
    return _pack_h(len(raw)) + raw


def _encode_one(spec: PropertySpec, value: object) -> bytes:
    ident = spec.identifier
    kind = spec.type
    if kind is PropertyType.BYTE:
        return _pack_bb(ident, value)
    if kind is PropertyType.TWO_BYTE_INTEGER:
        return _pack_bh(ident, value)
    if kind is PropertyType.FOUR_BYTE_INTEGER:
        return _pack_bi(ident, value)
    if kind is PropertyType.VARIABLE_BYTE_INTEGER:
        assert isinstance(value, int)
        return bytes((ident,)) + encode_variable_byte_integer(value)
    if kind is PropertyType.UTF8_STRING:
        if not isinstance(value, str):
            raise ValueError(f"property {spec.name} needs a str")
        return bytes((ident,)) + _string(value)
    if kind is PropertyType.BINARY_DATA:
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"property {spec.name} needs bytes")
        return bytes((ident,)) + _string(bytes(value))
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"property {spec.name} needs (str, str) pairs")
    key, val = value
    if not isinstance(key, str) or not isinstance(val, str):
        raise ValueError(f"property {spec.name} needs (str, str) pairs")
    return bytes((ident,)) + _string(key) + _string(val)


def encode_properties_body(properties: Properties, packet_type: int) -> bytes:
    """
    Encode the properties of a packet of C{packet_type}, without the
    length prefix, in the dict's order (list-valued properties in list
    order).

    @raise ValueError: for an unknown property, a property the packet may
        not carry, or a value of the wrong type or range.
    """
    parts: list[bytes] = []
    try:
        for name, value in properties.items():
            spec = BY_NAME.get(name)
            if spec is None:
                raise ValueError(f"unknown MQTT property {name!r}")
            if packet_type not in spec.packets:
                raise ValueError(f"property {name!r} not allowed in packet type {packet_type}")
            if spec.type is PropertyType.UTF8_STRING_PAIR or (
                spec.type is PropertyType.VARIABLE_BYTE_INTEGER and not isinstance(value, int)
            ):
                for item in value:
                    parts.append(_encode_one(spec, item))
            else:
                parts.append(_encode_one(spec, value))
    except struct.error as e:
        raise ValueError(str(e)) from e
    return b"".join(parts)


def encode_properties(properties: Properties, packet_type: int) -> bytes:
    """
    Encode a complete property block (length prefix included) for a
    packet of C{packet_type}.  An empty dict encodes as C{b"\\x00"}.

    @raise ValueError: see L{encode_properties_body}.
    """
    if not properties:
        return b"\x00"
    body = encode_properties_body(properties, packet_type)
    return encode_variable_byte_integer(len(body)) + body


def _decode_utf8(data: bytes, pos: int, end: int) -> str:
    try:
        text = data[pos:end].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("invalid UTF-8 string") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in UTF-8 string")
    return text


def decode_properties(data: bytes, pos: int, end: int, packet_type: int) -> tuple[Properties, int]:
    """
    Decode the property block (length prefix included) that starts at
    C{data[pos]} and must end by C{end}.

    @param packet_type: a L{PacketType} or L{WILL_PROPERTIES}, for the
        allowed-property check.
    @return: C{(properties, position after the block)}.
    @raise MalformedPacket: truncated data, unknown identifier, bad UTF-8.
    @raise ProtocolError: a property not allowed here, repeated, or with a
        forbidden value.
    """
    length, pos = decode_variable_byte_integer(data, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length exceeds packet")
    props: Properties = {}
    while pos < stop:
        ident = data[pos]
        spec = BY_ID.get(ident)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{ident:02x}")
        if packet_type not in spec.packets:
            raise ProtocolError(f"property {spec.name} not allowed in packet type {packet_type}")
        pos += 1
        kind = spec.type
        value: object
        if kind is PropertyType.BYTE:
            if pos >= stop:
                raise MalformedPacket("truncated property")
            value = data[pos]
            pos += 1
        elif kind is PropertyType.TWO_BYTE_INTEGER:
            if pos + 2 > stop:
                raise MalformedPacket("truncated property")
            value = data[pos] << 8 | data[pos + 1]
            pos += 2
        elif kind is PropertyType.FOUR_BYTE_INTEGER:
            if pos + 4 > stop:
                raise MalformedPacket("truncated property")
            value = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        elif kind is PropertyType.VARIABLE_BYTE_INTEGER:
            value, pos = decode_variable_byte_integer(data, pos, stop)
        else:
            if pos + 2 > stop:
                raise MalformedPacket("truncated property")
            n = data[pos] << 8 | data[pos + 1]
            pos += 2
            if pos + n > stop:
                raise MalformedPacket("truncated property")
            if kind is PropertyType.BINARY_DATA:
                value = bytes(data[pos : pos + n])
            else:
                value = _decode_utf8(data, pos, pos + n)
            pos += n
            if kind is PropertyType.UTF8_STRING_PAIR:
                if pos + 2 > stop:
                    raise MalformedPacket("truncated property")
                n = data[pos] << 8 | data[pos + 1]
                pos += 2
                if pos + n > stop:
                    raise MalformedPacket("truncated property")
                value = (value, _decode_utf8(data, pos, pos + n))
                pos += n
        name = spec.name
        if name == "user_property":
            props.setdefault(name, []).append(value)
            continue
        if name in NONZERO_PROPERTIES and value == 0:
            raise ProtocolError(
                f"property {name} must not be 0",
                0x94 if name == "topic_alias" else None,
            )
        if name in BOOLEAN_PROPERTIES and value not in (0, 1):
            raise ProtocolError(f"property {name} must be 0 or 1")
        if name == "subscription_identifier":
            ids = props.get(name)
            if ids is None:
                props[name] = [value]
                continue
            if packet_type != PacketType.PUBLISH:
                raise ProtocolError(f"duplicate property {name}")
            ids.append(value)
            continue
        if name in props:
            raise ProtocolError(f"duplicate property {name}")
        props[name] = value
    return props, pos
