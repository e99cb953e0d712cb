# -*- test-case-name: tests.test_mqtt_reasons -*-
"""
MQTT reason codes.

L{ReasonCode} names every MQTT 5.0 reason code.  Some values have several
names depending on the packet (0x00 is Success, Normal disconnection and
Granted QoS 0); the extra names are enum aliases of the first one.

L{ConnAckReturnCode} is the MQTT 3.1/3.1.1 CONNACK return code, and
L{connack_v3_return_code} maps a v5 CONNACK reason onto it so the broker
can decide in v5 terms and answer either version.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Final

from vernemq.mqtt.properties import PacketType


class ReasonCode(IntEnum):
    """Every MQTT 5.0 reason code (specification section 2.4)."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnAckReturnCode(IntEnum):
    """The MQTT 3.1 / 3.1.1 CONNACK return codes."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_V3_FAILURE: Final = 0x80
"""The single failure return code of an MQTT 3.1.1 SUBACK."""


_R = ReasonCode
_P = PacketType

_CODE_PACKETS: dict[int, tuple[PacketType, ...]] = {
    0x00: (
        _P.CONNACK,
        _P.PUBACK,
        _P.PUBREC,
        _P.PUBREL,
        _P.PUBCOMP,
        _P.SUBACK,
        _P.UNSUBACK,
        _P.DISCONNECT,
        _P.AUTH,
    ),
    0x01: (_P.SUBACK,),
    0x02: (_P.SUBACK,),
    0x04: (_P.DISCONNECT,),
    0x10: (_P.PUBACK, _P.PUBREC),
    0x11: (_P.UNSUBACK,),
    0x18: (_P.AUTH,),
    0x19: (_P.AUTH,),
    0x80: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT),
    0x81: (_P.CONNACK, _P.DISCONNECT),
    0x82: (_P.CONNACK, _P.DISCONNECT),
    0x83: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT),
    0x84: (_P.CONNACK,),
    0x85: (_P.CONNACK,),
    0x86: (_P.CONNACK,),
    0x87: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT),
    0x88: (_P.CONNACK,),
    0x89: (_P.CONNACK, _P.DISCONNECT),
    0x8A: (_P.CONNACK,),
    0x8B: (_P.DISCONNECT,),
    0x8C: (_P.CONNACK, _P.DISCONNECT),
    0x8D: (_P.DISCONNECT,),
    0x8E: (_P.DISCONNECT,),
    0x8F: (_P.SUBACK, _P.UNSUBACK, _P.DISCONNECT),
    0x90: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.DISCONNECT),
    0x91: (_P.PUBACK, _P.PUBREC, _P.SUBACK, _P.UNSUBACK),
    0x92: (_P.PUBREL, _P.PUBCOMP),
    0x93: (_P.DISCONNECT,),
    0x94: (_P.DISCONNECT,),
    0x95: (_P.CONNACK, _P.DISCONNECT),
    0x96: (_P.DISCONNECT,),
    0x97: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.SUBACK, _P.DISCONNECT),
    0x98: (_P.DISCONNECT,),
    0x99: (_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.DISCONNECT),
    0x9A: (_P.CONNACK, _P.DISCONNECT),
    0x9B: (_P.CONNACK, _P.DISCONNECT),
    0x9C: (_P.CONNACK, _P.DISCONNECT),
    0x9D: (_P.CONNACK, _P.DISCONNECT),
    0x9E: (_P.SUBACK, _P.DISCONNECT),
    0x9F: (_P.CONNACK, _P.DISCONNECT),
    0xA0: (_P.DISCONNECT,),
    0xA1: (_P.SUBACK, _P.DISCONNECT),
    0xA2: (_P.SUBACK, _P.DISCONNECT),
}

VALID_REASONS: Final[Mapping[int, frozenset[int]]] = {
    ptype: frozenset(code for code, packets in _CODE_PACKETS.items() if ptype in packets)
    for ptype in PacketType
}
"""
For each packet type, the MQTT 5.0 reason codes it may carry (empty for
packets without a reason code).
"""


def valid_for(code: int, packet_type: int) -> bool:
    """Whether the MQTT 5.0 reason C{code} may be sent in C{packet_type}."""
    codes = VALID_REASONS.get(packet_type)
    return codes is not None and code in codes


_V3_CONNACK: Final[Mapping[int, ConnAckReturnCode]] = {
    _R.SUCCESS: ConnAckReturnCode.ACCEPTED,
    _R.UNSUPPORTED_PROTOCOL_VERSION: ConnAckReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    _R.CLIENT_IDENTIFIER_NOT_VALID: ConnAckReturnCode.IDENTIFIER_REJECTED,
    _R.SERVER_UNAVAILABLE: ConnAckReturnCode.SERVER_UNAVAILABLE,
    _R.SERVER_BUSY: ConnAckReturnCode.SERVER_UNAVAILABLE,
    _R.BAD_USER_NAME_OR_PASSWORD: ConnAckReturnCode.BAD_USER_NAME_OR_PASSWORD,
    _R.NOT_AUTHORIZED: ConnAckReturnCode.NOT_AUTHORIZED,
}


def connack_v3_return_code(reason: int) -> ConnAckReturnCode:
    """
    Map an MQTT 5.0 CONNACK reason code to the MQTT 3.1/3.1.1 return code:
    0x00 -> 0, 0x84 -> 1, 0x85 -> 2, 0x88 and 0x89 -> 3, 0x86 -> 4, and
    0x87 or any other failure -> 5 (not authorized).
    """
    return _V3_CONNACK.get(reason, ConnAckReturnCode.NOT_AUTHORIZED)


def suback_v3_return_code(reason: int) -> int:
    """
    Map an MQTT 5.0 SUBACK reason code to the MQTT 3.1.1 return code:
    granted QoS 0-2 stay as they are, every failure becomes 0x80.
    """
    return reason if reason < 0x80 else SUBACK_V3_FAILURE
