"""
Hypothesis strategies for MQTT packets, for every packet type and
protocol level (3 = MQTT 3.1, 4 = MQTT 3.1.1, 5 = MQTT 5.0).

Every strategy generates packets the codec can round-trip exactly at the
given level: no properties or reason codes where that level has none,
valid property values, packet identifiers 1-65535, UTF-8 strings without
U+0000 or surrogates, topic names without wildcards.

Entry points:

    - L{connects}, L{connacks}, L{publishes}, L{pubacks}, L{pubrecs},
      L{pubrels}, L{pubcomps}, L{subscribes}, L{subacks},
      L{unsubscribes}, L{unsubacks}, L{pingreqs}, L{pingresps},
      L{disconnects}, L{auths}: one packet type at a level;
    - L{client_packets} / L{server_packets}: anything a client / server
      sends after CONNECT;
    - L{properties}: a property dict for a packet type;
    - L{utf8_strings}, L{topic_names}, L{topic_filters}, L{packet_ids}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from vernemq.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
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
    Will,
)
from vernemq.mqtt.properties import (
    BOOLEAN_PROPERTIES,
    NONZERO_PROPERTIES,
    PROPERTIES,
    WILL_PROPERTIES,
    PacketType,
    PropertySpec,
    PropertyType,
)
from vernemq.mqtt.reasons import VALID_REASONS, ConnAckReturnCode

LEVELS = (3, 4, 5)
"""The protocol levels a connection can have."""

_chars = st.characters(codec="utf-8", exclude_characters="\x00")
_topic_chars = st.characters(codec="utf-8", exclude_characters="\x00+#/")


def utf8_strings(min_size: int = 0, max_size: int = 12) -> SearchStrategy[str]:
    """Strings that are valid MQTT UTF-8 strings."""
    return st.text(alphabet=_chars, min_size=min_size, max_size=max_size)


def topic_names() -> SearchStrategy[str]:
    """Non-empty topic names without wildcards, often with levels."""
    level = st.text(alphabet=_topic_chars, max_size=6)
    return st.lists(level, min_size=1, max_size=4).map("/".join).filter(bool)


def topic_filters() -> SearchStrategy[str]:
    """Non-empty topic filters (the codec does not check their syntax)."""
    level = st.one_of(st.just("+"), st.just("#"), st.text(alphabet=_topic_chars, max_size=6))
    return st.one_of(
        st.lists(level, min_size=1, max_size=4).map("/".join).filter(bool),
        utf8_strings(min_size=1),
    )


def packet_ids() -> SearchStrategy[int]:
    """Valid (non-zero) packet identifiers."""
    return st.integers(min_value=1, max_value=0xFFFF)


def _value(spec: PropertySpec, packet_type: int) -> SearchStrategy[Any]:
    name = spec.name
    kind = spec.type
    low = 1 if name in NONZERO_PROPERTIES else 0
    if name in BOOLEAN_PROPERTIES or name == "payload_format_indicator":
        return st.integers(0, 1)
    if kind is PropertyType.BYTE:
        return st.integers(0, 0xFF)
    if kind is PropertyType.TWO_BYTE_INTEGER:
        return st.integers(low, 0xFFFF)
    if kind is PropertyType.FOUR_BYTE_INTEGER:
        return st.integers(low, 0xFFFFFFFF)
    if kind is PropertyType.VARIABLE_BYTE_INTEGER:
        most = 3 if packet_type == PacketType.PUBLISH else 1
        return st.lists(st.integers(low, 268_435_455), min_size=1, max_size=most)
    if kind is PropertyType.UTF8_STRING:
        return utf8_strings()
    if kind is PropertyType.BINARY_DATA:
        return st.binary(max_size=12)
    return st.lists(st.tuples(utf8_strings(), utf8_strings()), min_size=1, max_size=3)


def properties(
    packet_type: int, exclude: frozenset[str] = frozenset()
) -> SearchStrategy[Properties]:
    """
    A property dict for C{packet_type} (a L{PacketType} or
    L{WILL_PROPERTIES}): any subset of the allowed properties, minus
    C{exclude}.
    """
    optional = {
        spec.name: _value(spec, packet_type)
        for spec in PROPERTIES
        if packet_type in spec.packets and spec.name not in exclude
    }
    return st.fixed_dictionaries({}, optional=optional)


def _props(level: int, packet_type: int) -> SearchStrategy[Properties]:
    return properties(packet_type) if level == 5 else st.just({})


def _reason(level: int, packet_type: int) -> SearchStrategy[int]:
    if level != 5:
        return st.just(0)
    return st.sampled_from(sorted(VALID_REASONS[packet_type]))


def _drop_orphan_auth_data(props: Properties) -> Properties:
    if "authentication_method" not in props:
        props.pop("authentication_data", None)
    return props


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    """CONNECT at C{level}, sometimes with the bridge bit set (3 and 4)."""
    if level == 5:
        protocol_level, name = 5, "MQTT"
    elif level == 4:
        protocol_level, name = draw(st.sampled_from([4, 132])), "MQTT"
    else:
        protocol_level, name = draw(st.sampled_from([3, 131])), "MQIsdp"
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names()),
            draw(st.binary(max_size=16)),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(_props(level, WILL_PROPERTIES)),
        )
    username = draw(st.none() | utf8_strings())
    if username is None and level != 5:
        password = None
    else:
        password = draw(st.none() | st.binary(max_size=16))
    props = draw(_props(level, PacketType.CONNECT).map(_drop_orphan_auth_data))
    return Connect(
        client_id=draw(utf8_strings()),
        protocol_level=protocol_level,
        clean_start=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        will=will,
        username=username,
        password=password,
        properties=props,
        protocol_name=name,
    )


def connacks(level: int) -> SearchStrategy[ConnAck]:
    """CONNACK at C{level}: v3 return codes 0-5, v5 CONNACK reasons."""
    if level == 5:
        code = _reason(5, PacketType.CONNACK)
    else:
        code = st.sampled_from([int(c) for c in ConnAckReturnCode])
    return st.builds(ConnAck, st.booleans(), code, _props(level, PacketType.CONNACK))


@st.composite
def publishes(draw: st.DrawFn, level: int, from_client: bool = True) -> Publish:
    """
    PUBLISH at C{level}.  From a client it never carries a subscription
    identifier; in v5 the topic may be empty when a topic alias is set.
    """
    qos = draw(st.integers(0, 2))
    exclude = frozenset({"subscription_identifier"}) if from_client else frozenset()
    props = draw(properties(PacketType.PUBLISH, exclude)) if level == 5 else {}
    topic = draw(topic_names())
    if "topic_alias" in props and draw(st.booleans()):
        topic = ""
    return Publish(
        topic=topic,
        payload=draw(st.binary(max_size=64)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids()) if qos else None,
        properties=props,
    )


def pubacks(level: int) -> SearchStrategy[PubAck]:
    """PUBACK at C{level}."""
    return st.builds(
        PubAck,
        packet_ids(),
        _reason(level, PacketType.PUBACK),
        _props(level, PacketType.PUBACK),
    )


def pubrecs(level: int) -> SearchStrategy[PubRec]:
    """PUBREC at C{level}."""
    return st.builds(
        PubRec,
        packet_ids(),
        _reason(level, PacketType.PUBREC),
        _props(level, PacketType.PUBREC),
    )


def pubrels(level: int) -> SearchStrategy[PubRel]:
    """PUBREL at C{level}."""
    return st.builds(
        PubRel,
        packet_ids(),
        _reason(level, PacketType.PUBREL),
        _props(level, PacketType.PUBREL),
    )


def pubcomps(level: int) -> SearchStrategy[PubComp]:
    """PUBCOMP at C{level}."""
    return st.builds(
        PubComp,
        packet_ids(),
        _reason(level, PacketType.PUBCOMP),
        _props(level, PacketType.PUBCOMP),
    )


def subscriptions(level: int) -> SearchStrategy[Subscription]:
    """One SUBSCRIBE entry; the v5-only options stay default before v5."""
    if level != 5:
        return st.builds(Subscription, topic_filters(), st.integers(0, 2))
    return st.builds(
        Subscription,
        topic_filters(),
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        st.integers(0, 2),
    )


def subscribes(level: int) -> SearchStrategy[Subscribe]:
    """SUBSCRIBE at C{level} with one to four subscriptions."""
    return st.builds(
        Subscribe,
        packet_ids(),
        st.lists(subscriptions(level), min_size=1, max_size=4),
        _props(level, PacketType.SUBSCRIBE),
    )


def subacks(level: int) -> SearchStrategy[SubAck]:
    """SUBACK at C{level}: v3 codes 0, 1, 2, 0x80; v5 SUBACK reasons."""
    if level == 5:
        code = _reason(5, PacketType.SUBACK)
    else:
        code = st.sampled_from([0, 1, 2, 0x80])
    return st.builds(
        SubAck,
        packet_ids(),
        st.lists(code, min_size=1, max_size=4),
        _props(level, PacketType.SUBACK),
    )


def unsubscribes(level: int) -> SearchStrategy[Unsubscribe]:
    """UNSUBSCRIBE at C{level} with one to four topic filters."""
    return st.builds(
        Unsubscribe,
        packet_ids(),
        st.lists(topic_filters(), min_size=1, max_size=4),
        _props(level, PacketType.UNSUBSCRIBE),
    )


def unsubacks(level: int) -> SearchStrategy[UnsubAck]:
    """UNSUBACK at C{level}: no reason codes before v5."""
    if level != 5:
        return st.builds(UnsubAck, packet_ids(), st.just([]), st.just({}))
    return st.builds(
        UnsubAck,
        packet_ids(),
        st.lists(_reason(5, PacketType.UNSUBACK), min_size=1, max_size=4),
        properties(PacketType.UNSUBACK),
    )


def pingreqs(level: int) -> SearchStrategy[PingReq]:
    """PINGREQ (the same at every level)."""
    return st.builds(PingReq)


def pingresps(level: int) -> SearchStrategy[PingResp]:
    """PINGRESP (the same at every level)."""
    return st.builds(PingResp)


def disconnects(level: int) -> SearchStrategy[Disconnect]:
    """DISCONNECT at C{level}: reason and properties only in v5."""
    return st.builds(
        Disconnect,
        _reason(level, PacketType.DISCONNECT),
        _props(level, PacketType.DISCONNECT),
    )


def auths(level: int = 5) -> SearchStrategy[Auth]:
    """AUTH (MQTT 5 only)."""
    if level != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    return st.builds(Auth, _reason(5, PacketType.AUTH), properties(PacketType.AUTH))


def client_packets(level: int) -> SearchStrategy[Packet]:
    """Any packet a client sends after its CONNECT."""
    choices: list[SearchStrategy[Any]] = [
        publishes(level, from_client=True),
        pubacks(level),
        pubrecs(level),
        pubrels(level),
        pubcomps(level),
        subscribes(level),
        unsubscribes(level),
        pingreqs(level),
        disconnects(level),
    ]
    if level == 5:
        choices.append(auths(5))
    return st.one_of(choices)


def server_packets(level: int) -> SearchStrategy[Packet]:
    """Any packet a server sends."""
    choices: list[SearchStrategy[Any]] = [
        connacks(level),
        publishes(level, from_client=False),
        pubacks(level),
        pubrecs(level),
        pubrels(level),
        pubcomps(level),
        subacks(level),
        unsubacks(level),
        pingresps(level),
    ]
    if level == 5:
        choices.extend([disconnects(5), auths(5)])
    return st.one_of(choices)


def levels() -> SearchStrategy[int]:
    """One of the protocol levels 3, 4, 5."""
    return st.sampled_from(LEVELS)
