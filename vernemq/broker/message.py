# -*- test-case-name: tests.test_broker_message -*-
"""
The in-broker message, with its encoded PUBLISH bytes cached.

A L{Message} is created once per routed PUBLISH (or will, or retained
delivery) and shared by every subscriber it reaches.  Encoding is the
expensive part of fan-out, so a message caches its encoded PUBLISH per
C{(wire format, qos, retain)}:

  - MQTT 3.1 and 3.1.1 PUBLISH packets are byte-identical, so they share
    one wire format; MQTT 5.0 is the other.
  - For QoS 0 the cache holds the whole packet.  For QoS 1/2 the packet id
    differs per subscriber, so the cache holds the bytes before and after
    the two packet-id bytes; a delivery writes C{head, pid, tail}, which
    the transport joins with the rest of the batch (no copy of the payload
    per subscriber).
  - A decoded PUBLISH keeps C{raw}, its bytes as received.  When a
    delivery has the wire format and QoS of the original, the cache entry
    is cut out of C{raw} instead of re-encoding (fixing only the first
    byte if the retain or DUP flag differs): a QoS 0 message forwarded to
    QoS 0 subscribers of the same protocol family is written exactly as
    received.  MQTT 5.0 messages that used a topic alias are re-encoded
    (the alias means nothing to the receiver).

Deliveries that need per-subscriber bytes (MQTT 5.0 subscription
identifiers, a message expiry interval that has run down while queued,
an outbound topic alias) use L{Message.encode_for}, which does not cache.
"""

from __future__ import annotations

import struct
from typing import Any

from vernemq.mqtt.codec import encode_publish
from vernemq.mqtt.packets import Properties

__all__ = ["ForwardedMessage", "Message", "pid_bytes", "split_publish"]

pid_bytes = struct.Struct(">H").pack
"""Encode a packet id as its two wire bytes."""

_NO_PROPS: Properties = {}

#: Properties a server never forwards as received.
_HOP_PROPERTIES = frozenset({"topic_alias", "subscription_identifier"})


def split_publish(packet: bytes) -> tuple[bytes, bytes]:
    """
    Split an encoded QoS 1/2 PUBLISH around its packet id.

    @return: C{(head, tail)} with C{packet == head + pid + tail}.
    """
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1
    offset = i + 2 + ((packet[i] << 8) | packet[i + 1])
    return packet[:offset], packet[offset + 2 :]


class Message:
    """
    One application message inside the broker.

    @ivar topic: the topic name, without mountpoint.
    @ivar payload: the payload bytes.
    @ivar qos: the QoS it was published with.
    @ivar retain: the RETAIN flag it was published with.
    @ivar properties: MQTT 5.0 properties from the publisher (empty for
        3.x publishers); forwarded to MQTT 5.0 subscribers without
        C{topic_alias} and C{subscription_identifier}.
    @ivar raw: the PUBLISH exactly as received, or L{None}.
    @ivar raw_level: the protocol level C{raw} was encoded for.
    @ivar origin: the subscriber id C{(mountpoint, client_id)} of the
        publisher (for MQTT 5.0 C{no_local}, compared by value), or
        L{None}.
    @ivar expires_at: reactor time after which the message must not be
        delivered (MQTT 5.0 message expiry), or L{None}.
    """

    __slots__ = (
        "_cache",
        "_out_props",
        "expires_at",
        "origin",
        "payload",
        "properties",
        "qos",
        "raw",
        "raw_level",
        "retain",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        raw: bytes | None = None,
        raw_level: int = 0,
        origin: object = None,
        expires_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties if properties else _NO_PROPS
        if raw is not None and "topic_alias" in self.properties:
            raw = None
        self.raw = raw
        self.raw_level = raw_level
        self.origin = origin
        self.expires_at = expires_at
        self._cache: dict[int, Any] | None = None
        self._out_props: Properties | None = None

    def __repr__(self) -> str:
        return (
            f"<Message topic={self.topic!r} qos={self.qos} retain={self.retain} "
            f"payload={self.payload[:32]!r}{'...' if len(self.payload) > 32 else ''}>"
        )

    def out_properties(self) -> Properties:
        """The properties an MQTT 5.0 subscriber receives."""
        props = self._out_props
        if props is None:
            props = self.properties
            if props and not _HOP_PROPERTIES.isdisjoint(props):
                props = {k: v for k, v in props.items() if k not in _HOP_PROPERTIES}
            self._out_props = props
        return props

    def frame(self, level: int, qos: int, retain: bool) -> Any:
        """
        The cached encoding of this message as a PUBLISH.

        @param level: the receiver's protocol level (3, 4 or 5; the bridge
            bit is ignored).
        @return: for C{qos} 0 the whole packet as C{bytes}; else a
            C{(head, tail)} pair to write around the packet id.  DUP is
            clear.
        """
        raw = self.raw
        if (
            raw is not None
            and qos == 0
            and raw[0] == 0x30 | retain
            and ((self.raw_level & 0x7F) == 5) == (level == 5)
        ):
            # Zero copy: a QoS 0 subscriber of the publisher's protocol
            # family gets the received bytes (no cache dict needed).
            return raw
        key = ((level == 5) << 3) | (qos << 1) | retain
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        else:
            hit = cache.get(key)
            if hit is not None:
                return hit
        hit = self._build(level == 5, qos, retain)
        cache[key] = hit
        return hit

    def _build(self, v5: bool, qos: int, retain: bool) -> Any:
        raw = self.raw
        first = 0x30 | (qos << 1) | retain
        if raw is not None and ((self.raw_level & 0x7F) == 5) == v5 and (raw[0] >> 1) & 3 == qos:
            if qos == 0:
                if raw[0] == first:
                    return raw
                return bytes((first,)) + raw[1:]
            head, tail = split_publish(raw)
            if head[0] != first:
                head = bytes((first,)) + head[1:]
            return head, tail
        packet = encode_publish(
            self.topic,
            self.payload,
            qos,
            retain,
            False,
            1 if qos else None,
            self.out_properties() if v5 else _NO_PROPS,
            5 if v5 else 4,
        )
        if qos == 0:
            return packet
        return split_publish(packet)

    def encode_for(
        self,
        level: int,
        qos: int,
        retain: bool,
        dup: bool,
        packet_id: int | None,
        subscription_ids: list[int] | None = None,
        expiry_interval: int | None = None,
        topic_alias: int = 0,
        alias_only: bool = False,
    ) -> bytes:
        """
        Encode a PUBLISH of this message for one receiver (no cache).

        @param subscription_ids: MQTT 5.0 subscription identifiers of the
            receiver's matching subscriptions.
        @param expiry_interval: the remaining MQTT 5.0 message expiry
            interval in seconds.
        @param topic_alias: an MQTT 5.0 topic alias to send (0: none).
        @param alias_only: send the alias with an empty topic name (the
            receiver already knows the alias).
        """
        props: Properties = _NO_PROPS
        topic = self.topic
        if (level & 0x7F) == 5:
            props = self.out_properties()
            if subscription_ids or expiry_interval is not None or topic_alias:
                props = dict(props)
                if subscription_ids:
                    props["subscription_identifier"] = list(subscription_ids)
                if expiry_interval is not None:
                    props["message_expiry_interval"] = expiry_interval
                if topic_alias:
                    props["topic_alias"] = topic_alias
                    if alias_only:
                        topic = ""
        return encode_publish(
            topic,
            self.payload,
            qos,
            retain,
            dup,
            packet_id if qos else None,
            props,
            5 if (level & 0x7F) == 5 else 4,
        )


class ForwardedMessage(Message):
    """
    A message another node forwarded here, with the mountpoint it was
    published in (L{vernemq.cluster.routing.ClusterRouter.plain_message}).
    """

    __slots__ = ("mountpoint",)

    def __init__(
        self, topic: str, payload: bytes, qos: int, retain: bool, raw: bytes, mountpoint: str
    ) -> None:
        # Message.__init__'s fields (keep the two in step), set without its
        # checks, once per forwarded message: no properties, no expiry, a
        # 3.1.1 encoding.
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = _NO_PROPS
        self.raw = raw
        self.raw_level = 4
        self.origin = None
        self.expires_at = None
        self._cache = None
        self._out_props = None
        self.mountpoint = mountpoint
