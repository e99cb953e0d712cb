# -*- test-case-name: tests.test_mqtt_codec -*-
"""
The MQTT wire codec for MQTT 3.1, 3.1.1 and 5.0: sans-IO, bytes in and
L{vernemq.mqtt.packets} values out, and back.

    - L{encode} turns any packet into bytes for a protocol level (3, 4 or
      5; the bridge levels 131/132 encode like 3/4).
    - L{encode_publish} is the per-delivery fast path for PUBLISH.
    - L{Decoder} is fed bytes as they arrive and yields complete packets,
      validating them on the way.  A protocol violation is terminal: the
      decoder raises the same L{MQTTError} for every later call
      (MQTT-4.8.0-1, close the connection on a violation).

Buffering.  The decoder keeps a single C{bytes} buffer and a read offset.
Slicing C{bytes} gives C{bytes} in one copy, where a C{bytearray} needs a
second copy to make the immutable C{Publish.raw} and payload (measured
about 130 ns more per PUBLISH on CPython 3.11).  When a feed arrives and
everything buffered was consumed, the new chunk becomes the buffer with
no copy at all, which is the common case of whole packets per read.
Only an unconsumed tail is copied, and once the remaining length of a
partial packet is known, further chunks are collected in a list and
joined once when the packet is complete, so a large packet arriving in
many small reads costs linear, not quadratic, time.

Validation follows the MQTT 3.1.1 and 5.0 specifications; the exception
class says which reason code a v5 server sends (see
L{vernemq.mqtt.packets.MQTTError}):

    - L{MalformedPacket}: reserved fixed-header flags, a remaining length
      longer than 4 bytes or not matching the content, PUBLISH QoS 3 or
      DUP on QoS 0, bad UTF-8 / U+0000 / surrogates, reserved CONNECT or
      SUBSCRIBE option bits, SUBSCRIBE QoS 3 or retain handling 3, will
      flags without a will, v3.1.1 password without user name, unknown
      property, AUTH outside v5, packet type 0.
    - L{ProtocolError}: the first packet is not CONNECT, a second CONNECT,
      a packet sent in the wrong direction, packet identifier 0, an empty
      SUBSCRIBE/UNSUBSCRIBE, wildcards in a topic name (reason 0x90), an
      empty topic name without a topic alias, property rules (see
      L{vernemq.mqtt.properties}), a subscription identifier in a PUBLISH
      from a client, authentication data without a method.
    - L{PacketTooLarge}: the packet is larger than C{max_packet_size}.
    - L{UnsupportedProtocolVersion}: a CONNECT with an unknown protocol
      name/level pair; carries C{protocol_level} and C{protocol_name}.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Final

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
    Properties,
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
from vernemq.mqtt.properties import (
    WILL_PROPERTIES,
    decode_properties,
    encode_properties,
    encode_variable_byte_integer,
)
from vernemq.mqtt.reasons import connack_v3_return_code, suback_v3_return_code

__all__ = ["Decoder", "encode", "encode_publish", "ACCEPTED_PROTOCOLS"]

ACCEPTED_PROTOCOLS: Final = frozenset(
    {("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5), ("MQIsdp", 131), ("MQTT", 132)}
)
"""The (protocol name, protocol level) pairs a CONNECT may carry."""

MAX_REMAINING_LENGTH: Final = 268_435_455

# Packet types a server accepts from a client, and a client from a server.
_FROM_CLIENT: Final = frozenset({1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15})
_FROM_SERVER: Final = frozenset({2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 15})

_pack_h = struct.Struct("!H").pack
_pack_bbh = struct.Struct("!BBH").pack
_pack_bbhb = struct.Struct("!BBHB").pack
_pack_hb = struct.Struct("!HB").pack


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def _read_utf8(buf: bytes, p: int, end: int) -> tuple[str, int]:
    """Read a length-prefixed UTF-8 string at C{buf[p]}."""
    if p + 2 > end:
        raise MalformedPacket("truncated UTF-8 string length")
    q = p + 2 + (buf[p] << 8 | buf[p + 1])
    if q > end:
        raise MalformedPacket("UTF-8 string runs past the packet")
    try:
        text = buf[p + 2 : q].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("invalid UTF-8 string") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in UTF-8 string")
    return text, q


def _read_binary(buf: bytes, p: int, end: int) -> tuple[bytes, int]:
    """Read length-prefixed binary data at C{buf[p]}."""
    if p + 2 > end:
        raise MalformedPacket("truncated binary data length")
    q = p + 2 + (buf[p] << 8 | buf[p + 1])
    if q > end:
        raise MalformedPacket("binary data runs past the packet")
    return buf[p + 2 : q], q


def _read_packet_id(buf: bytes, p: int, end: int) -> int:
    """Read a non-zero packet identifier at C{buf[p]}."""
    if p + 2 > end:
        raise MalformedPacket("truncated packet identifier")
    packet_id = buf[p] << 8 | buf[p + 1]
    if not packet_id:
        raise ProtocolError("packet identifier 0")
    return packet_id


def _check_topic_name(topic: str) -> None:
    if "+" in topic or "#" in topic:
        raise ProtocolError(f"wildcard in topic name {topic!r}", 0x90)


def _check_publish_properties(props: Properties, server: bool) -> None:
    if server and "subscription_identifier" in props:
        raise ProtocolError("subscription identifier in a PUBLISH from a client")


class Decoder:
    """
    An incremental MQTT packet decoder.

    Feed it bytes with L{feed}, take packets with L{next_packet} or by
    iterating.  After a violation it stays failed: every later
    L{next_packet} raises the same exception.

    @ivar protocol_level: the protocol version in force (3, 4 or 5; the
        bridge levels 131/132 are stored as 3/4).  A server-side decoder
        sets it from the CONNECT as soon as the level byte is read and
        accepted, so it is known even if the rest of the CONNECT is bad.
    @ivar max_packet_size: the largest packet (fixed header included)
        accepted; 0 means unlimited.  May be changed at any time.
    """

    __slots__ = (
        "protocol_level",
        "max_packet_size",
        "_server",
        "_connected",
        "_buf",
        "_pos",
        "_need",
        "_chunks",
        "_chunks_len",
        "_failed",
    )

    def __init__(
        self,
        *,
        protocol_level: int | None = None,
        max_packet_size: int = 0,
        server: bool = True,
    ) -> None:
        """
        @param protocol_level: for a client-side decoder (C{server=False})
            the protocol level of the connection (required).  Given to a
            server-side decoder it means the CONNECT was already handled
            elsewhere, so no CONNECT is expected.
        @param max_packet_size: see L{max_packet_size}.
        @param server: True to decode what a client sends (the first
            packet must be CONNECT), False to decode what a server sends.
        """
        if protocol_level is not None:
            protocol_level &= 0x7F
        elif not server:
            raise ValueError("a client-side Decoder needs a protocol_level")
        self.protocol_level: int | None = protocol_level
        self.max_packet_size = max_packet_size
        self._server = server
        self._connected = protocol_level is not None
        self._buf = b""
        self._pos = 0
        self._need = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._failed: MQTTError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer received bytes.  Ignored once the decoder has failed."""
        if self._failed is not None:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._need:
            self._chunks.append(data)
            self._chunks_len += len(data)
            if len(self._buf) - self._pos + self._chunks_len >= self._need:
                self._chunks.insert(0, self._buf[self._pos :])
                self._buf = b"".join(self._chunks)
                self._pos = 0
                self._need = 0
                self._chunks = []
                self._chunks_len = 0
            return
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            self._buf = data
        elif pos:
            self._buf = buf[pos:] + data
        else:
            self._buf = buf + data
        self._pos = 0

    @property
    def buffered(self) -> int:
        """
        The number of received bytes not decoded yet (the start of an
        incomplete packet, or whole packets not taken yet); 0 once the
        decoder has failed.
        """
        if self._failed is not None:
            return 0
        return len(self._buf) - self._pos + self._chunks_len

    def __iter__(self) -> Iterator[Packet]:
        """Yield every complete buffered packet."""
        return iter(self.next_packet, None)

    def next_packet(self) -> Packet | None:
        """
        Decode the next complete packet.

        @return: the packet, or None when no complete packet is buffered.
        @raise MQTTError: a subclass for the violation found.
        """
        if self._need:  # waiting for the rest of a packet, or failed
            if self._failed is not None:
                raise self._failed
            return None
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if size - pos < 2:
            return None
        try:
            b0 = buf[pos]
            rl = buf[pos + 1]
            hs = 2
            if rl & 0x80:
                rl &= 0x7F
                shift = 7
                while True:
                    if pos + hs >= size:
                        return None
                    byte = buf[pos + hs]
                    hs += 1
                    rl |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    if hs == 5:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                    shift += 7
            total = hs + rl
            limit = self.max_packet_size
            if limit and total > limit:
                if not self._connected and self._server:
                    self._peek_level(buf, pos + hs, size)
                raise PacketTooLarge(f"packet of {total} bytes exceeds maximum of {limit}")
            end = pos + total
            if end > size:
                self._need = total
                return None
            self._pos = end

            if b0 & 0xF0 != 0x30 or not self._connected:
                if total == 4 and self._connected:
                    # Fast path for the 4-byte PUBACK, PUBREC, PUBREL and
                    # PUBCOMP of every QoS 1/2 delivery.
                    short_ack = _SHORT_ACKS.get(b0)
                    if short_ack is not None:
                        acked = buf[pos + 2] << 8 | buf[pos + 3]
                        if acked:
                            return short_ack(acked)
                return self._decode_other(b0, buf, pos + hs, end)

            # PUBLISH fast path.
            qos = (b0 >> 1) & 3
            if qos == 0:
                if b0 & 8:
                    raise MalformedPacket("DUP flag on a QoS 0 PUBLISH")
            elif qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3")
            p = pos + hs
            if p + 2 > end:
                raise MalformedPacket("truncated PUBLISH topic")
            tend = p + 2 + (buf[p] << 8 | buf[p + 1])
            if tend > end:
                raise MalformedPacket("PUBLISH topic runs past the packet")
            try:
                topic = buf[p + 2 : tend].decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedPacket("invalid UTF-8 in topic name") from None
            if "\x00" in topic:
                raise MalformedPacket("U+0000 in topic name")
            if "+" in topic or "#" in topic:
                raise ProtocolError(f"wildcard in topic name {topic!r}", 0x90)
            p = tend
            packet_id: int | None
            if qos:
                if p + 2 > end:
                    raise MalformedPacket("truncated packet identifier")
                packet_id = buf[p] << 8 | buf[p + 1]
                if not packet_id:
                    raise ProtocolError("packet identifier 0")
                p += 2
            else:
                packet_id = None
            props: Properties
            if self.protocol_level == 5:
                if p >= end:
                    raise MalformedPacket("missing PUBLISH property length")
                if buf[p]:
                    props, p = decode_properties(buf, p, end, 3)
                    _check_publish_properties(props, self._server)
                else:
                    props = {}
                    p += 1
            else:
                props = {}
            if not topic and "topic_alias" not in props:
                raise ProtocolError("empty topic name")
            raw = buf[pos:end]
            return Publish(
                topic,
                raw[p - pos :],
                qos,
                (b0 & 1) == 1,
                (b0 & 8) == 8,
                packet_id,
                props,
                raw,
            )
        except MQTTError as e:
            self._failed = e
            self._need = -1
            raise

    def _peek_level(self, buf: bytes, p: int, size: int) -> None:
        """
        Set L{protocol_level} to 5 from the start of a CONNECT too large to
        decode, so that the server can answer CONNACK 0x95 in MQTT 5.0.
        """
        if size >= p + 7 and buf[p : p + 6] == b"\x00\x04MQTT" and buf[p + 6] == 5:
            self.protocol_level = 5

    def _decode_other(self, b0: int, buf: bytes, p: int, end: int) -> Packet:
        """Decode anything but a PUBLISH after CONNECT (the slow path)."""
        ptype = b0 >> 4
        flags = b0 & 0x0F
        if not self._connected:
            if ptype != 1:
                raise ProtocolError("the first packet must be CONNECT")
            if flags:
                raise MalformedPacket("reserved CONNECT header flags set")
            packet = self._decode_connect(buf, p, end)
            self._connected = True
            return packet
        if ptype == 0:
            raise MalformedPacket("reserved packet type 0")
        v5 = self.protocol_level == 5
        if ptype == 15 and not v5:
            raise MalformedPacket("AUTH before MQTT 5")
        if ptype == 1:
            raise ProtocolError("second CONNECT" if self._server else "CONNECT from a server")
        if ptype not in (_FROM_CLIENT if self._server else _FROM_SERVER):
            raise ProtocolError(f"unexpected packet type {ptype}")
        if flags != (2 if ptype in (6, 8, 10) else 0):
            raise MalformedPacket(f"reserved header flags 0x{flags:x} for type {ptype}")
        if ptype == 3:  # pragma: no cover - handled by the fast path
            raise AssertionError("PUBLISH reached the slow path")
        return _DECODERS[ptype](self, buf, p, end, v5)

    def _decode_connect(self, buf: bytes, p: int, end: int) -> Connect:
        name, p = _read_utf8(buf, p, end)
        if p >= end:
            raise MalformedPacket("truncated CONNECT")
        level = buf[p]
        if (name, level) not in ACCEPTED_PROTOCOLS:
            raise UnsupportedProtocolVersion(
                f"unsupported protocol {name!r} level {level}",
                protocol_level=level,
                protocol_name=name,
            )
        version = level & 0x7F
        self.protocol_level = version
        if p + 4 > end:
            raise MalformedPacket("truncated CONNECT")
        flags = buf[p + 1]
        keep_alive = buf[p + 2] << 8 | buf[p + 3]
        p += 4
        if flags & 1:
            raise MalformedPacket("reserved CONNECT flag set")
        will_flag = flags & 4
        will_qos = (flags >> 3) & 3
        will_retain = (flags & 0x20) == 0x20
        if not will_flag and (will_qos or will_retain):
            raise MalformedPacket("will QoS/retain without a will")
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")
        has_username = flags & 0x80
        has_password = flags & 0x40
        if has_password and not has_username and version != 5:
            raise MalformedPacket("password without user name")
        props: Properties = {}
        if version == 5:
            props, p = decode_properties(buf, p, end, 1)
            if "authentication_data" in props and "authentication_method" not in props:
                raise ProtocolError("authentication data without a method")
        client_id, p = _read_utf8(buf, p, end)
        will = None
        if will_flag:
            will_props: Properties = {}
            if version == 5:
                will_props, p = decode_properties(buf, p, end, WILL_PROPERTIES)
            will_topic, p = _read_utf8(buf, p, end)
            if not will_topic:
                raise ProtocolError("empty will topic", 0x90)
            _check_topic_name(will_topic)
            will_payload, p = _read_binary(buf, p, end)
            will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
        username = None
        if has_username:
            username, p = _read_utf8(buf, p, end)
        password = None
        if has_password:
            password, p = _read_binary(buf, p, end)
        if p != end:
            raise MalformedPacket("bytes after the end of CONNECT")
        return Connect(
            client_id,
            level,
            (flags & 2) == 2,
            keep_alive,
            will,
            username,
            password,
            props,
            name,
        )

    def _decode_connack(self, buf: bytes, p: int, end: int, v5: bool) -> ConnAck:
        if p + 2 > end:
            raise MalformedPacket("truncated CONNACK")
        flags = buf[p]
        if flags & 0xFE:
            raise MalformedPacket("reserved CONNACK flags set")
        code = buf[p + 1]
        p += 2
        props: Properties = {}
        if v5 and p < end:
            props, p = decode_properties(buf, p, end, 2)
        if p != end:
            raise MalformedPacket("bytes after the end of CONNACK")
        return ConnAck(flags == 1, code, props)

    def _decode_puback(self, buf: bytes, p: int, end: int, v5: bool) -> PubAck:
        return PubAck(*_ack(buf, p, end, v5, 4))

    def _decode_pubrec(self, buf: bytes, p: int, end: int, v5: bool) -> PubRec:
        return PubRec(*_ack(buf, p, end, v5, 5))

    def _decode_pubrel(self, buf: bytes, p: int, end: int, v5: bool) -> PubRel:
        return PubRel(*_ack(buf, p, end, v5, 6))

    def _decode_pubcomp(self, buf: bytes, p: int, end: int, v5: bool) -> PubComp:
        return PubComp(*_ack(buf, p, end, v5, 7))

    def _decode_subscribe(self, buf: bytes, p: int, end: int, v5: bool) -> Subscribe:
        packet_id = _read_packet_id(buf, p, end)
        p += 2
        props: Properties = {}
        if v5:
            props, p = decode_properties(buf, p, end, 8)
        subscriptions: list[Subscription] = []
        reserved = 0xC0 if v5 else 0xFC
        while p < end:
            topic_filter, p = _read_utf8(buf, p, end)
            if p >= end:
                raise MalformedPacket("missing subscription options")
            options = buf[p]
            p += 1
            if options & reserved:
                raise MalformedPacket("reserved subscription option bits set")
            qos = options & 3
            if qos == 3:
                raise MalformedPacket("subscription QoS 3")
            retain_handling = (options >> 4) & 3
            if retain_handling == 3:
                raise MalformedPacket("retain handling 3")
            subscriptions.append(
                Subscription(
                    topic_filter,
                    qos,
                    (options & 4) == 4,
                    (options & 8) == 8,
                    retain_handling,
                )
            )
        if not subscriptions:
            raise ProtocolError("SUBSCRIBE without subscriptions")
        return Subscribe(packet_id, subscriptions, props)

    def _decode_suback(self, buf: bytes, p: int, end: int, v5: bool) -> SubAck:
        packet_id = _read_packet_id(buf, p, end)
        p += 2
        props: Properties = {}
        if v5:
            props, p = decode_properties(buf, p, end, 9)
        return SubAck(packet_id, list(buf[p:end]), props)

    def _decode_unsubscribe(self, buf: bytes, p: int, end: int, v5: bool) -> Unsubscribe:
        packet_id = _read_packet_id(buf, p, end)
        p += 2
        props: Properties = {}
        if v5:
            props, p = decode_properties(buf, p, end, 10)
        filters: list[str] = []
        while p < end:
            topic_filter, p = _read_utf8(buf, p, end)
            filters.append(topic_filter)
        if not filters:
            raise ProtocolError("UNSUBSCRIBE without topic filters")
        return Unsubscribe(packet_id, filters, props)

    def _decode_unsuback(self, buf: bytes, p: int, end: int, v5: bool) -> UnsubAck:
        packet_id = _read_packet_id(buf, p, end)
        p += 2
        if not v5:
            if p != end:
                raise MalformedPacket("bytes after the end of UNSUBACK")
            return UnsubAck(packet_id, [], {})
        props, p = decode_properties(buf, p, end, 11)
        return UnsubAck(packet_id, list(buf[p:end]), props)

    def _decode_pingreq(self, buf: bytes, p: int, end: int, v5: bool) -> PingReq:
        if p != end:
            raise MalformedPacket("PINGREQ with a body")
        return PingReq()

    def _decode_pingresp(self, buf: bytes, p: int, end: int, v5: bool) -> PingResp:
        if p != end:
            raise MalformedPacket("PINGRESP with a body")
        return PingResp()

    def _decode_disconnect(self, buf: bytes, p: int, end: int, v5: bool) -> Disconnect:
        return Disconnect(*_reason_and_properties(buf, p, end, v5, 14))

    def _decode_auth(self, buf: bytes, p: int, end: int, v5: bool) -> Auth:
        return Auth(*_reason_and_properties(buf, p, end, v5, 15))


#: First byte of a QoS 1/2 acknowledgement -> its packet class.
_SHORT_ACKS: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
    0x40: PubAck,
    0x50: PubRec,
    0x62: PubRel,
    0x70: PubComp,
}


def _ack(buf: bytes, p: int, end: int, v5: bool, ptype: int) -> tuple[int, int, Properties]:
    """Decode the body of PUBACK, PUBREC, PUBREL or PUBCOMP."""
    packet_id = _read_packet_id(buf, p, end)
    p += 2
    code = 0
    props: Properties = {}
    if v5 and p < end:
        code = buf[p]
        p += 1
        if p < end:
            props, p = decode_properties(buf, p, end, ptype)
    if p != end:
        raise MalformedPacket("bytes after the end of the packet")
    return packet_id, code, props


def _reason_and_properties(
    buf: bytes, p: int, end: int, v5: bool, ptype: int
) -> tuple[int, Properties]:
    """Decode the body of DISCONNECT or AUTH (empty before MQTT 5)."""
    code = 0
    props: Properties = {}
    if v5 and p < end:
        code = buf[p]
        p += 1
        if p < end:
            props, p = decode_properties(buf, p, end, ptype)
    if p != end:
        raise MalformedPacket("bytes after the end of the packet")
    return code, props


_DECODERS: dict[int, Callable[[Decoder, bytes, int, int, bool], Packet]] = {
    2: Decoder._decode_connack,
    4: Decoder._decode_puback,
    5: Decoder._decode_pubrec,
    6: Decoder._decode_pubrel,
    7: Decoder._decode_pubcomp,
    8: Decoder._decode_subscribe,
    9: Decoder._decode_suback,
    10: Decoder._decode_unsubscribe,
    11: Decoder._decode_unsuback,
    12: Decoder._decode_pingreq,
    13: Decoder._decode_pingresp,
    14: Decoder._decode_disconnect,
    15: Decoder._decode_auth,
}


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


def _header(b0: int, remaining: int) -> bytes:
    """The fixed header for a packet with C{remaining} bytes after it."""
    if remaining < 0x80:
        return bytes((b0, remaining))
    return bytes((b0,)) + encode_variable_byte_integer(remaining)


def _utf8(text: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("UTF-8 string longer than 65535 bytes")
    return _pack_h(len(raw)) + raw


def _binary(data: bytes) -> bytes:
    """Length-prefixed binary data."""
    if len(data) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return _pack_h(len(data)) + bytes(data)


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Properties | None,
    protocol_level: int,
) -> bytes:
    """
    Encode a PUBLISH: the per-delivery fast path.

    @param packet_id: required for QoS 1 and 2, ignored for QoS 0.
    @param properties: ignored before MQTT 5.
    @param protocol_level: 5 for MQTT 5.0; anything else encodes v3.
    @raise ValueError: a missing packet identifier, a topic longer than
        65535 bytes, a packet over 268435455 bytes, or bad properties.
    """
    t = topic.encode("utf-8")
    tl = len(t)
    if tl > 0xFFFF:
        raise ValueError("topic longer than 65535 bytes")
    b0 = 0x30 | qos << 1
    if retain:
        b0 |= 1
    if dup:
        b0 |= 8
    if protocol_level == 5:
        props = encode_properties(properties, 3) if properties else b"\x00"
        if qos:
            if packet_id is None:
                raise ValueError("QoS > 0 PUBLISH needs a packet_id")
            rl = 4 + tl + len(props) + len(payload)
            if rl < 0x80:
                return b"".join((_pack_bbh(b0, rl, tl), t, _pack_h(packet_id), props, payload))
            return b"".join((_header(b0, rl), _pack_h(tl), t, _pack_h(packet_id), props, payload))
        rl = 2 + tl + len(props) + len(payload)
        if rl < 0x80:
            return b"".join((_pack_bbh(b0, rl, tl), t, props, payload))
        return b"".join((_header(b0, rl), _pack_h(tl), t, props, payload))
    if qos:
        if packet_id is None:
            raise ValueError("QoS > 0 PUBLISH needs a packet_id")
        rl = 4 + tl + len(payload)
        if rl < 0x80:
            return b"".join((_pack_bbh(b0, rl, tl), t, _pack_h(packet_id), payload))
        return b"".join((_header(b0, rl), _pack_h(tl), t, _pack_h(packet_id), payload))
    rl = 2 + tl + len(payload)
    if rl < 0x80:
        return _pack_bbh(b0, rl, tl) + t + payload
    return b"".join((_header(b0, rl), _pack_h(tl), t, payload))


def _encode_connect(packet: Connect, _level: int) -> bytes:
    version = packet.protocol_level & 0x7F
    v5 = version == 5
    flags = 0
    if packet.clean_start:
        flags |= 2
    parts = [
        _utf8(packet.protocol_name),
        b"",  # level, flags, keep alive: filled in below
    ]
    if v5:
        parts.append(encode_properties(packet.properties, 1))
    parts.append(_utf8(packet.client_id))
    will = packet.will
    if will is not None:
        flags |= 4 | will.qos << 3
        if will.retain:
            flags |= 0x20
        if v5:
            parts.append(encode_properties(will.properties, WILL_PROPERTIES))
        parts.append(_utf8(will.topic))
        parts.append(_binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        parts.append(_utf8(packet.username))
    if packet.password is not None:
        flags |= 0x40
        parts.append(_binary(packet.password))
    parts[1] = bytes((packet.protocol_level, flags)) + _pack_h(packet.keep_alive)
    body = b"".join(parts)
    return _header(0x10, len(body)) + body


def _encode_connack(packet: ConnAck, level: int) -> bytes:
    flags = 1 if packet.session_present else 0
    if level == 5:
        props = encode_properties(packet.properties, 2)
        return _header(0x20, 2 + len(props)) + bytes((flags, packet.reason_code)) + props
    code = packet.reason_code
    if code >= 0x80:
        code = connack_v3_return_code(code)
    return bytes((0x20, 2, flags, code))


def _ack_encoder(b0: int, ptype: int) -> Callable[[PubAck | PubRec | PubRel | PubComp, int], bytes]:
    def encode_ack(packet: PubAck | PubRec | PubRel | PubComp, level: int) -> bytes:
        if level == 5:
            if packet.properties:
                props = encode_properties(packet.properties, ptype)
                return (
                    _header(b0, 3 + len(props))
                    + _pack_hb(packet.packet_id, packet.reason_code)
                    + props
                )
            if packet.reason_code:
                return _pack_bbhb(b0, 3, packet.packet_id, packet.reason_code)
        return _pack_bbh(b0, 2, packet.packet_id)

    return encode_ack


def _encode_subscribe(packet: Subscribe, level: int) -> bytes:
    v5 = level == 5
    parts = [_pack_h(packet.packet_id)]
    if v5:
        parts.append(encode_properties(packet.properties, 8))
    for sub in packet.subscriptions:
        parts.append(_utf8(sub.topic_filter))
        options = sub.qos
        if v5:
            if sub.no_local:
                options |= 4
            if sub.retain_as_published:
                options |= 8
            options |= sub.retain_handling << 4
        parts.append(bytes((options,)))
    body = b"".join(parts)
    return _header(0x82, len(body)) + body


def _encode_suback(packet: SubAck, level: int) -> bytes:
    if level == 5:
        body = (
            _pack_h(packet.packet_id)
            + encode_properties(packet.properties, 9)
            + bytes(packet.reason_codes)
        )
    else:
        body = _pack_h(packet.packet_id) + bytes(
            suback_v3_return_code(c) for c in packet.reason_codes
        )
    return _header(0x90, len(body)) + body


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    parts = [_pack_h(packet.packet_id)]
    if level == 5:
        parts.append(encode_properties(packet.properties, 10))
    parts.extend(_utf8(f) for f in packet.topic_filters)
    body = b"".join(parts)
    return _header(0xA2, len(body)) + body


def _encode_unsuback(packet: UnsubAck, level: int) -> bytes:
    if level != 5:
        return _pack_bbh(0xB0, 2, packet.packet_id)
    body = (
        _pack_h(packet.packet_id)
        + encode_properties(packet.properties, 11)
        + bytes(packet.reason_codes)
    )
    return _header(0xB0, len(body)) + body


def _encode_pingreq(packet: PingReq, level: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(packet: PingResp, level: int) -> bytes:
    return b"\xd0\x00"


def _encode_disconnect(packet: Disconnect, level: int) -> bytes:
    if level != 5:
        return b"\xe0\x00"
    return _encode_reason_and_properties(0xE0, 14, packet.reason_code, packet.properties)


def _encode_auth(packet: Auth, level: int) -> bytes:
    if level != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    return _encode_reason_and_properties(0xF0, 15, packet.reason_code, packet.properties)


def _encode_reason_and_properties(b0: int, ptype: int, code: int, properties: Properties) -> bytes:
    if properties:
        props = encode_properties(properties, ptype)
        return _header(b0, 1 + len(props)) + bytes((code,)) + props
    if code:
        return bytes((b0, 1, code))
    return bytes((b0, 0))


def _encode_publish_packet(packet: Publish, level: int) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.properties,
        level,
    )


_ENCODERS: dict[type, Callable[[object, int], bytes]] = {
    Connect: _encode_connect,  # type: ignore[dict-item]
    ConnAck: _encode_connack,  # type: ignore[dict-item]
    Publish: _encode_publish_packet,  # type: ignore[dict-item]
    PubAck: _ack_encoder(0x40, 4),  # type: ignore[dict-item]
    PubRec: _ack_encoder(0x50, 5),  # type: ignore[dict-item]
    PubRel: _ack_encoder(0x62, 6),  # type: ignore[dict-item]
    PubComp: _ack_encoder(0x70, 7),  # type: ignore[dict-item]
    Subscribe: _encode_subscribe,  # type: ignore[dict-item]
    SubAck: _encode_suback,  # type: ignore[dict-item]
    Unsubscribe: _encode_unsubscribe,  # type: ignore[dict-item]
    UnsubAck: _encode_unsuback,  # type: ignore[dict-item]
    PingReq: _encode_pingreq,  # type: ignore[dict-item]
    PingResp: _encode_pingresp,  # type: ignore[dict-item]
    Disconnect: _encode_disconnect,  # type: ignore[dict-item]
    Auth: _encode_auth,  # type: ignore[dict-item]
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """
    Encode C{packet} for a connection at C{protocol_level} (3, 4, 5, or the
    bridge levels 131/132).  A L{Connect} is encoded at its own level.

    Before MQTT 5, properties are dropped, PUBACK/PUBREC/PUBREL/PUBCOMP
    and DISCONNECT lose their reason code, UNSUBACK has no payload, a
    CONNACK reason of 0x80 or more is mapped to the v3 return code and a
    SUBACK failure code to 0x80.

    @raise ValueError: a value that cannot be encoded (AUTH before MQTT 5,
        bad properties, oversized strings or packets).
    """
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    try:
        return encoder(packet, protocol_level)
    except struct.error as e:
        raise ValueError(str(e)) from e
