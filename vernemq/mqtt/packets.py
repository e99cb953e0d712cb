# -*- test-case-name: tests.test_mqtt_codec -*-
"""
MQTT control packets as plain value objects, for MQTT 3.1, 3.1.1 and 5.0.

These classes are the shared vocabulary of the codec (L{vernemq.mqtt.codec}),
the protocol (L{vernemq.mqtt.protocol}) and the broker.  They hold no
transport and know nothing about bytes; the codec turns them into bytes and
back.

Protocol levels: 3 is MQTT 3.1 (protocol name C{MQIsdp}), 4 is MQTT 3.1.1,
5 is MQTT 5.0.  The bridge variants 131 and 132 (level | 0x80) are kept in
L{Connect.protocol_level}; L{Connect.bridge} is then true.

Properties (MQTT 5.0 only) are a C{dict[str, object]} keyed by the
snake_case property name:

    payload_format_indicator (int), message_expiry_interval (int),
    content_type (str), response_topic (str), correlation_data (bytes),
    subscription_identifier (list[int]; PUBLISH may carry several,
    SUBSCRIBE carries at most one), session_expiry_interval (int),
    assigned_client_identifier (str), server_keep_alive (int),
    authentication_method (str), authentication_data (bytes),
    request_problem_information (int), will_delay_interval (int),
    request_response_information (int), response_information (str),
    server_reference (str), reason_string (str), receive_maximum (int),
    topic_alias_maximum (int), topic_alias (int), maximum_qos (int),
    retain_available (int), user_property (list[tuple[str, str]], in
    wire order), maximum_packet_size (int),
    wildcard_subscription_available (int),
    subscription_identifier_available (int),
    shared_subscription_available (int).

Reason codes are plain ints; their names live in L{vernemq.mqtt.reasons}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Properties = dict[str, Any]

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5


class MQTTError(Exception):
    """
    A violation of the MQTT protocol found in received bytes.

    @ivar reason_code: the MQTT 5.0 reason code to send in CONNACK or
        DISCONNECT before closing (v3 connections just close).
    """

    reason_code = 0x81

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class MalformedPacket(MQTTError):
    """The bytes cannot be parsed as the packet they claim to be (0x81)."""

    reason_code = 0x81


class ProtocolError(MQTTError):
    """The packet parses but breaks a protocol rule (0x82)."""

    reason_code = 0x82


class PacketTooLarge(MQTTError):
    """The packet is bigger than the maximum packet size (0x95)."""

    reason_code = 0x95


class UnsupportedProtocolVersion(MQTTError):
    """
    A CONNECT with an unknown protocol name or level.  The server answers
    CONNACK 0x01 (v3) or 0x84 (v5) and closes.

    @ivar protocol_level: the protocol level byte the CONNECT carried (the
        server answers in v5 format when it is 5, else in v3 format).
    @ivar protocol_name: the protocol name the CONNECT carried.
    """

    reason_code = 0x84
    protocol_level: int | None = None
    protocol_name: str | None = None

    def __init__(
        self,
        message: str,
        reason_code: int | None = None,
        *,
        protocol_level: int | None = None,
        protocol_name: str | None = None,
    ) -> None:
        super().__init__(message, reason_code)
        self.protocol_level = protocol_level
        self.protocol_name = protocol_name


@dataclass(slots=True)
class Will:
    """The last will carried by a CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    """CONNECT (packet type 1)."""

    client_id: str
    protocol_level: int = MQTT_3_1_1
    clean_start: bool = True
    keep_alive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = field(default_factory=dict)
    protocol_name: str = "MQTT"

    @property
    def bridge(self) -> bool:
        """True for the bridge protocol levels 131/132."""
        return self.protocol_level & 0x80 != 0

    @property
    def version(self) -> int:
        """The protocol level without the bridge bit: 3, 4 or 5."""
        return self.protocol_level & 0x7F


@dataclass(slots=True)
class ConnAck:
    """CONNACK (packet type 2). For v3, reason_code is the return code 0-5."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    """
    PUBLISH (packet type 3).

    @ivar packet_id: None for QoS 0.
    @ivar raw: when decoded, the exact bytes of the whole packet as
        received (fixed header included); the broker may forward them
        unchanged.  Not part of equality.
    """

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=dict)
    raw: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class PubAck:
    """PUBACK (packet type 4)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubRec:
    """PUBREC (packet type 5)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubRel:
    """PUBREL (packet type 6)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PubComp:
    """PUBCOMP (packet type 7)."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    """SUBSCRIBE (packet type 8)."""

    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    """SUBACK (packet type 9): one return/reason code per subscription."""

    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    """UNSUBSCRIBE (packet type 10)."""

    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    """UNSUBACK (packet type 11).  reason_codes is empty for v3."""

    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class PingReq:
    """PINGREQ (packet type 12)."""


@dataclass(slots=True)
class PingResp:
    """PINGRESP (packet type 13)."""


@dataclass(slots=True)
class Disconnect:
    """DISCONNECT (packet type 14).  v3 ignores reason and properties."""

    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    """AUTH (packet type 15, MQTT 5.0 only)."""

    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
