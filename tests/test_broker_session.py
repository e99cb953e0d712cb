"""
Tests for L{vernemq.broker.session}: what an MQTT client sees of its
session (acknowledgement flows, delivery QoS, the inflight window,
redelivery, queues while slow or offline, expiry, wills).

Each test drives a whole broker on a L{task.Clock} through
L{tests.brokerhelpers.FakeClient}s, for MQTT 3.1.1 and 5.0 wherever the
two differ.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import FakeClient, Harness
from vernemq.broker.message import Message
from vernemq.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscription,
    Will,
)

#: A long MQTT 5.0 session expiry for "persistent" sessions.
HOUR = 3600


def connect_all(
    client: FakeClient,
    client_id: str,
    clean: bool = True,
    keep_alive: int = 0,
    will: Will | None = None,
    properties: dict[str, Any] | None = None,
) -> list[Packet]:
    """
    Send CONNECT and return everything the server answered in that read:
    the CONNACK and whatever it resent or delivered right after it
    (L{FakeClient.connect} keeps only the CONNACK).
    """
    client.send(
        Connect(
            client_id,
            protocol_level=client.level,
            clean_start=clean,
            keep_alive=keep_alive,
            will=will,
            properties=properties or {},
        )
    )
    return client.received()


def persistent(level: int, expiry: int = HOUR) -> dict[str, Any]:
    """
    CONNECT arguments for a session that outlives its connection:
    clean session 0 (3.1.1), or clean start 0 with a session expiry (5.0).
    """
    if level == 5:
        return {"clean": False, "properties": {"session_expiry_interval": expiry}}
    return {"clean": False}


def payloads(packets: list[Packet]) -> list[bytes]:
    """The payloads of the PUBLISH packets among C{packets}."""
    return [p.payload for p in packets if isinstance(p, Publish)]


class SessionTestCase(SynchronousTestCase):
    """
    A broker on a fake clock; subclasses set the protocol level of the
    clients under test (publishers in helper methods speak 3.1.1).
    """

    level = 4
    overrides: dict[str, Any] = {}

    def setUp(self) -> None:
        self.h = Harness(**self.overrides)
        self._publishers = 0

    def harness(self, **overrides: Any) -> Harness:
        """
        Replace the broker with one whose configuration also has
        C{overrides}.
        """
        self.h = Harness(**{**self.overrides, **overrides})
        self._publishers = 0
        return self.h

    def client(self, client_id: str = "c", **kw: Any) -> FakeClient:
        """A connected client of the level under test."""
        return self.h.connected(client_id, level=self.level, **kw)

    def publisher(self) -> FakeClient:
        """A connected MQTT 3.1.1 publisher with a clean session."""
        self._publishers += 1
        return self.h.connected(f"pub-{self._publishers}", level=4)

    def publish(self, topic: str, *payloads: bytes, qos: int = 0) -> None:
        """Publish C{payloads} to C{topic} from a fresh 3.1.1 client."""
        pub = self.publisher()
        for payload in payloads:
            pub.publish(topic, payload, qos=qos)
        pub.disconnect()


# -- inbound PUBLISH -------------------------------------------------------------


class InboundPublishV311Tests(SessionTestCase):
    """
    PUBLISH from a client: the acknowledgement flow of each QoS, and a
    QoS 2 message reaching subscribers exactly once.
    """

    def setUp(self) -> None:
        super().setUp()
        self.sub = self.h.connected("sub", level=4)
        self.sub.subscribe(("t/#", 2))
        self.c = self.client("c")

    def test_qos0_no_acknowledgement(self) -> None:
        self.c.publish("t/a", b"zero", qos=0)
        self.assertEqual(self.c.received(), [])
        [pub] = self.sub.publishes()
        self.assertEqual((pub.topic, pub.payload, pub.qos), ("t/a", b"zero", 0))

    def test_qos1_puback(self) -> None:
        pid = self.c.publish("t/a", b"one", qos=1)
        assert pid is not None
        self.assertEqual(self.c.received(), [PubAck(pid)])
        self.assertEqual(payloads(self.sub.received()), [b"one"])

    def test_qos2_full_flow(self) -> None:
        """
        PUBLISH -> PUBREC, PUBREL -> PUBCOMP; subscribers get the message
        once (VerneMQ routes it on PUBLISH).
        """
        pid = self.c.publish("t/a", b"two", qos=2)
        assert pid is not None
        self.assertEqual(self.c.received(), [PubRec(pid)])
        self.assertEqual(payloads(self.sub.received()), [b"two"])
        self.c.send(PubRel(pid))
        self.assertEqual(self.c.received(), [PubComp(pid)])
        self.assertEqual(self.sub.received(), [])

    def test_qos2_dup_before_pubrel_routed_once(self) -> None:
        """
        A client that resends its QoS 2 PUBLISH (DUP) before PUBREL gets
        another PUBREC, but subscribers get the message only once.  After
        PUBCOMP the packet id is free: a new PUBLISH with it is a new
        message.
        """
        self.c.send(Publish("t/a", b"once", 2, False, False, 7))
        self.assertEqual(self.c.received(), [PubRec(7)])
        self.c.send(Publish("t/a", b"once", 2, False, True, 7))
        self.c.send(Publish("t/a", b"once", 2, False, True, 7))
        self.assertEqual(self.c.received(), [PubRec(7), PubRec(7)])
        self.c.send(PubRel(7))
        self.assertEqual(self.c.received(), [PubComp(7)])
        self.assertEqual(payloads(self.sub.received()), [b"once"])
        self.c.send(Publish("t/a", b"again", 2, False, False, 7))
        self.assertEqual(self.c.received(), [PubRec(7)])
        self.assertEqual(payloads(self.sub.received()), [b"again"])

    def test_qos2_dup_across_reconnect_routed_once(self) -> None:
        """
        The inbound QoS 2 state belongs to the persistent session: a DUP
        PUBLISH sent on a new connection before PUBREL is not routed again.
        """
        c = self.client("p2", **persistent(self.level))
        c.send(Publish("t/a", b"once", 2, False, False, 9))
        self.assertEqual(c.received(), [PubRec(9)])
        c.lose()
        c = self.h.client(self.level)
        connect_all(c, "p2", **persistent(self.level))
        c.send(Publish("t/a", b"once", 2, False, True, 9))
        self.assertEqual(c.received(), [PubRec(9)])
        c.send(PubRel(9))
        self.assertEqual(c.received(), [PubComp(9)])
        self.assertEqual(payloads(self.sub.received()), [b"once"])

    def test_no_subscribers_still_acknowledged(self) -> None:
        pid = self.c.publish("nobody/here", qos=1)
        assert pid is not None
        self.assertEqual(self.c.received(), [PubAck(pid, self.no_subscribers)])

    #: The PUBACK reason code when nobody subscribed (3.1.1 has none).
    no_subscribers = 0


class InboundPublishV5Tests(InboundPublishV311Tests):
    level = 5
    #: MQTT 5.0: "No matching subscribers" (0x10).
    no_subscribers = 0x10


# -- outbound QoS ----------------------------------------------------------------


class OutboundV311Tests(SessionTestCase):
    """
    Deliveries to a subscriber: at min(publish QoS, granted QoS), or at
    the granted QoS with C{upgrade_outgoing_qos}; the subscriber's
    acknowledgement flows.
    """

    def test_qos1_delivery_and_puback(self) -> None:
        """
        A QoS 1 delivery carries a packet id; once PUBACKed it is never
        resent.
        """
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"m", qos=1)
        [pub] = c.publishes()
        self.assertEqual((pub.qos, pub.dup), (1, False))
        self.assertIsNotNone(pub.packet_id)
        c.ack(pub)
        self.h.advance(self.h.config["retry_interval"] * 3)
        self.assertEqual(c.received(), [])

    def test_qos2_delivery_flow(self) -> None:
        """
        PUBLISH -> client PUBREC -> PUBREL -> client PUBCOMP; nothing is
        resent afterwards.
        """
        c = self.client()
        c.subscribe(("t", 2))
        self.publish("t", b"m", qos=2)
        [pub] = c.publishes()
        self.assertEqual(pub.qos, 2)
        assert pub.packet_id is not None
        c.send(PubRec(pub.packet_id))
        self.assertEqual(c.received(), [PubRel(pub.packet_id)])
        c.send(PubComp(pub.packet_id))
        self.assertEqual(c.received(), [])
        self.h.advance(self.h.config["retry_interval"] * 3)
        self.assertEqual(c.received(), [])

    def test_delivery_qos_is_minimum(self) -> None:
        """
        Every (publish QoS, granted QoS) pair is delivered at the lower of
        the two.
        """
        c = self.client()
        c.subscribe(("q0", 0), ("q1", 1), ("q2", 2))
        pub = self.publisher()
        got = {}
        for sub_qos in range(3):
            for pub_qos in range(3):
                pub.publish(f"q{sub_qos}", f"{pub_qos}".encode(), qos=pub_qos)
                [msg] = c.publishes()
                got[(pub_qos, sub_qos)] = msg.qos
                if msg.qos:
                    c.ack(msg)
        self.assertEqual(got, {(p, s): min(p, s) for p in range(3) for s in range(3)})

    def test_upgrade_outgoing_qos(self) -> None:
        """
        With C{upgrade_outgoing_qos = on} a message goes at the
        subscription's QoS, also when that is higher than the publish QoS.
        """
        self.harness(upgrade_outgoing_qos=True)
        c = self.client()
        c.subscribe(("q1", 1), ("q2", 2))
        pub = self.publisher()
        pub.publish("q1", b"a", qos=0)
        pub.publish("q2", b"b", qos=1)
        pub.publish("q1", b"c", qos=2)
        got = [(p.payload, p.qos) for p in c.publishes()]
        self.assertEqual(got, [(b"a", 1), (b"b", 2), (b"c", 1)])

    def test_no_upgrade_by_default(self) -> None:
        c = self.client()
        c.subscribe(("q2", 2))
        self.publish("q2", b"a", qos=0)
        [pub] = c.publishes()
        self.assertEqual((pub.qos, pub.packet_id), (0, None))

    def test_retain_flag_cleared_on_normal_delivery(self) -> None:
        """
        A retained message reaching an existing subscription arrives with
        RETAIN cleared (no retain-as-published).
        """
        c = self.client()
        c.subscribe(("t", 1))
        pub = self.publisher()
        pub.publish("t", b"r", qos=1, retain=True)
        [msg] = c.publishes()
        self.assertFalse(msg.retain)


class OutboundV5Tests(OutboundV311Tests):
    level = 5

    def test_pubrec_error_ends_flow(self) -> None:
        """
        MQTT 5.0: a PUBREC with an error reason code ends the QoS 2 flow:
        no PUBREL, nothing resent, and the window slot is free.
        """
        self.harness(max_inflight_messages=1, retry_interval=5)
        c = self.client()
        c.subscribe(("t", 2))
        self.publish("t", b"1", b"2", qos=2)
        [first] = c.publishes()
        assert first.packet_id is not None
        c.send(PubRec(first.packet_id, 0x80))
        [second] = c.received()
        assert isinstance(second, Publish)
        self.assertEqual(second.payload, b"2")
        c.ack(second)
        self.h.advance(20)
        self.assertEqual(c.received(), [])


# -- the inflight window -------------------------------------------------------------


class InflightV311Tests(SessionTestCase):
    """
    At most C{max_inflight_messages} unacknowledged QoS 1/2 messages are
    out; the rest follow, in order, as acknowledgements arrive.
    """

    overrides = {"max_inflight_messages": 2}

    def test_window(self) -> None:
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"1", b"2", b"3", b"4", b"5", qos=1)
        first = c.publishes()
        self.assertEqual(payloads(list(first)), [b"1", b"2"])
        c.ack(first[0])
        nxt = c.publishes()
        self.assertEqual(payloads(list(nxt)), [b"3"])
        # Acks out of order still open the window one slot each.
        c.ack(nxt[0])
        c.ack(first[1])
        rest = c.publishes()
        self.assertEqual(payloads(list(rest)), [b"4", b"5"])
        for p in rest:
            c.ack(p)
        self.assertEqual(c.received(), [])

    def test_window_qos2_frees_on_pubcomp(self) -> None:
        """
        A QoS 2 message holds its slot until PUBCOMP, not PUBREC.
        """
        c = self.client()
        c.subscribe(("t", 2))
        self.publish("t", b"1", b"2", b"3", qos=2)
        first = c.publishes()
        self.assertEqual(payloads(list(first)), [b"1", b"2"])
        pid = first[0].packet_id
        assert pid is not None
        c.send(PubRec(pid))
        self.assertEqual(c.received(), [PubRel(pid)])
        c.send(PubComp(pid))
        self.assertEqual(payloads(c.received()), [b"3"])

    def test_qos0_not_held_by_window(self) -> None:
        """
        QoS 0 deliveries need no packet id and are not held back by a full
        window.
        """
        c = self.client()
        c.subscribe(("t", 1), ("z", 0))
        self.publish("t", b"1", b"2", b"3", qos=1)
        self.assertEqual(payloads(c.received()), [b"1", b"2"])
        self.publish("z", b"zero")
        self.assertEqual(payloads(c.received()), [b"zero"])

    def test_unlimited(self) -> None:
        """C{max_inflight_messages = 0} means no limit."""
        self.harness(max_inflight_messages=0)
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", *[b"%d" % i for i in range(50)], qos=1)
        self.assertEqual(len(c.publishes()), 50)


class InflightV5Tests(InflightV311Tests):
    level = 5

    def test_receive_maximum(self) -> None:
        """
        MQTT 5.0: the client's receive maximum narrows the window below
        C{max_inflight_messages}.
        """
        self.harness(max_inflight_messages=20)
        c = self.client(properties={"receive_maximum": 1})
        c.subscribe(("t", 1))
        self.publish("t", b"1", b"2", b"3", qos=1)
        [one] = c.publishes()
        self.assertEqual(one.payload, b"1")
        c.ack(one)
        [two] = c.publishes()
        self.assertEqual(two.payload, b"2")


# -- redelivery ------------------------------------------------------------------------


class RetryV311Tests(SessionTestCase):
    """
    An unacknowledged message is resent with DUP after C{retry_interval}
    seconds (the schema's unit), under the same packet id.
    """

    overrides = {"retry_interval": 5}

    def test_retry_interval_is_seconds(self) -> None:
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"m", qos=1)
        [pub] = c.publishes()
        self.h.advance(4.9)
        self.assertEqual(c.received(), [])
        self.h.advance(0.1)
        [again] = c.publishes()
        self.assertEqual(
            (again.payload, again.qos, again.dup, again.packet_id),
            (b"m", 1, True, pub.packet_id),
        )
        # Keeps retrying until acknowledged, then stops.
        self.h.advance(5)
        self.assertEqual(len(c.publishes()), 1)
        c.ack(pub)
        self.h.advance(50)
        self.assertEqual(c.received(), [])

    def test_each_message_waits_its_own_interval(self) -> None:
        """
        A message sent later is retried later: the retry is per message
        age, not all at once.
        """
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"early", qos=1)
        self.h.advance(3)
        self.publish("t", b"late", qos=1)
        self.assertEqual(len(c.publishes()), 2)
        self.h.advance(2)
        self.assertEqual(payloads(c.received()), [b"early"])
        self.h.advance(3)
        self.assertEqual(payloads(c.received()), [b"late"])

    def test_qos2_pubrel_resent(self) -> None:
        """
        After PUBREC the broker waits for PUBCOMP: PUBREL is what it
        resends, not the PUBLISH.
        """
        c = self.client()
        c.subscribe(("t", 2))
        self.publish("t", b"m", qos=2)
        [pub] = c.publishes()
        assert pub.packet_id is not None
        self.h.advance(5)
        [dup] = c.publishes()
        self.assertTrue(dup.dup)
        c.send(PubRec(pub.packet_id))
        self.assertEqual(c.received(), [PubRel(pub.packet_id)])
        self.h.advance(5)
        self.assertEqual(c.received(), [PubRel(pub.packet_id)])
        c.send(PubComp(pub.packet_id))
        self.h.advance(50)
        self.assertEqual(c.received(), [])

    def test_pubcomp_before_pubrec_does_not_complete(self) -> None:
        """
        A QoS 2 delivery is complete only after PUBREC then PUBCOMP: a
        stray early PUBCOMP leaves the PUBLISH to be resent.
        """
        c = self.client()
        c.subscribe(("t", 2))
        self.publish("t", b"m", qos=2)
        [pub] = c.publishes()
        assert pub.packet_id is not None
        c.send(PubComp(pub.packet_id))
        self.h.advance(5)
        [dup] = c.publishes()
        self.assertEqual((dup.dup, dup.packet_id), (True, pub.packet_id))

    def test_no_retry_when_disabled(self) -> None:
        """C{retry_interval = 0}: no timed resend (only on reconnect)."""
        self.harness(retry_interval=0)
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"m", qos=1)
        self.assertEqual(len(c.publishes()), 1)
        self.h.advance(3600)
        self.assertEqual(c.received(), [])


class RetryV5Tests(RetryV311Tests):
    level = 5


class ReconnectRedeliveryV311Tests(SessionTestCase):
    """
    A persistent session resends its unacknowledged messages, with DUP
    and their packet ids, when the client comes back; then what was
    queued while it was away.
    """

    def test_redelivered_with_dup(self) -> None:
        c = self.client(**persistent(self.level))
        c.subscribe(("t", 2))
        self.publish("t", b"q1", qos=1)
        self.publish("t", b"q2", qos=2)
        first = c.publishes()
        self.assertEqual(payloads(list(first)), [b"q1", b"q2"])
        c.lose()
        self.publish("t", b"offline", qos=1)
        c = self.h.client(self.level)
        packets = connect_all(c, "c", **persistent(self.level))
        ack = packets[0]
        assert isinstance(ack, ConnAck)
        self.assertTrue(ack.session_present)
        pubs = [p for p in packets[1:] if isinstance(p, Publish)]
        self.assertEqual(
            [(p.payload, p.qos, p.dup, p.packet_id) for p in pubs],
            [
                (b"q1", 1, True, first[0].packet_id),
                (b"q2", 2, True, first[1].packet_id),
                (b"offline", 1, False, pubs[2].packet_id),
            ],
        )
        self.assertNotIn(pubs[2].packet_id, {first[0].packet_id, first[1].packet_id})
        for p in pubs:
            c.ack(p)
        self.h.advance(100)
        self.assertEqual(c.received(), [])

    def test_pubrel_resent_on_reconnect(self) -> None:
        """
        A QoS 2 delivery that got its PUBREC continues with PUBREL on the
        new connection (the PUBLISH is not resent).
        """
        c = self.client(**persistent(self.level))
        c.subscribe(("t", 2))
        self.publish("t", b"m", qos=2)
        [pub] = c.publishes()
        assert pub.packet_id is not None
        c.send(PubRec(pub.packet_id))
        self.assertEqual(c.received(), [PubRel(pub.packet_id)])
        c.lose()
        c = self.h.client(self.level)
        packets = connect_all(c, "c", **persistent(self.level))
        self.assertEqual(packets[1:], [PubRel(pub.packet_id)])
        c.send(PubComp(pub.packet_id))
        self.h.advance(100)
        self.assertEqual(c.received(), [])

    def test_clean_session_drops_unacknowledged(self) -> None:
        c = self.client(**persistent(self.level))
        c.subscribe(("t", 1))
        self.publish("t", b"m", qos=1)
        self.assertEqual(len(c.publishes()), 1)
        c.lose()
        c = self.h.client(self.level)
        packets = connect_all(c, "c", clean=True)
        ack = packets[0]
        assert isinstance(ack, ConnAck)
        self.assertFalse(ack.session_present)
        self.assertEqual(packets[1:], [])
        # Nor were the subscriptions kept.
        self.publish("t", b"n", qos=1)
        self.assertEqual(c.received(), [])


class ReconnectRedeliveryV5Tests(ReconnectRedeliveryV311Tests):
    level = 5

    def test_redelivery_keeps_subscription_identifier(self) -> None:
        c = self.client(**persistent(5))
        c.subscribe(("t", 1), subscription_identifier=42)
        self.publish("t", b"m", qos=1)
        [pub] = c.publishes()
        self.assertEqual(pub.properties.get("subscription_identifier"), [42])
        c.lose()
        c = self.h.client(5)
        packets = connect_all(c, "c", **persistent(5))
        [again] = [p for p in packets if isinstance(p, Publish)]
        self.assertTrue(again.dup)
        self.assertEqual(again.properties.get("subscription_identifier"), [42])


# -- slow consumers: max_online_messages ----------------------------------------------


class LoadSheddingV311Tests(SessionTestCase):
    """
    While the connection is paused (its transport's buffer is full) the
    session queues deliveries, up to C{max_online_messages}; more are
    dropped and counted; the queue is sent on resume.
    """

    overrides = {"max_online_messages": 3}

    def test_paused_queue_bounded(self) -> None:
        c = self.client()
        c.subscribe(("t", 1), ("z", 0))
        c.proto.pauseProducing()
        self.publish("t", b"1", b"2", qos=1)
        self.publish("z", b"3", qos=0)
        self.publish("t", b"4", b"5", qos=1)
        self.assertEqual(c.received(), [])
        self.assertEqual(self.h.broker.stats()["dropped"], 2)
        session = self.h.broker.sessions[("", "c")]
        self.assertEqual(session.dropped, 2)
        c.proto.resumeProducing()
        got = c.publishes()
        self.assertEqual([(p.payload, p.qos) for p in got], [(b"1", 1), (b"2", 1), (b"3", 0)])
        for p in got:
            if p.qos:
                c.ack(p)
        # Nothing of the dropped ones comes later.
        self.h.advance(100)
        self.assertEqual(c.received(), [])
        # And the connection delivers normally again.
        self.publish("t", b"6", qos=1)
        self.assertEqual(payloads(c.received()), [b"6"])

    def test_unlimited(self) -> None:
        """C{max_online_messages = -1}: nothing is dropped."""
        self.harness(max_online_messages=-1)
        c = self.client()
        c.subscribe(("t", 0))
        c.proto.pauseProducing()
        self.publish("t", *[b"%d" % i for i in range(2000)])
        self.assertEqual(c.received(), [])
        c.proto.resumeProducing()
        self.assertEqual(len(c.publishes()), 2000)
        self.assertEqual(self.h.broker.stats()["dropped"], 0)

    def test_other_subscribers_unaffected(self) -> None:
        """A slow subscriber does not hold up a fast one."""
        slow = self.client("slow")
        slow.subscribe("t")
        fast = self.client("fast")
        fast.subscribe("t")
        slow.proto.pauseProducing()
        self.publish("t", b"1", b"2", b"3", b"4", b"5")
        self.assertEqual(len(fast.publishes()), 5)
        slow.proto.resumeProducing()
        self.assertEqual(payloads(slow.received()), [b"1", b"2", b"3"])


    def test_zero_blocks_delivery(self) -> None:
        """
        C{max_online_messages = 0} blocks delivery to online sessions:
        every message is dropped and counted.
        """
        self.harness(max_online_messages=0)
        c = self.client()
        c.subscribe(("t", 1))
        self.publish("t", b"0", qos=0)
        self.publish("t", b"1", qos=1)
        self.assertEqual(c.received(), [])
        self.assertEqual(self.h.broker.stats()["dropped"], 2)


class LoadSheddingV5Tests(LoadSheddingV311Tests):
    level = 5


# -- persistent sessions ----------------------------------------------------------------


class PersistentSessionV311Tests(SessionTestCase):
    """
    A session that outlives its connection keeps its subscriptions and
    queues QoS 1/2 messages (up to C{max_offline_messages}) until the
    client comes back; a clean session starts afresh.
    """

    def go_offline(self, qos: int = 1, **kw: Any) -> None:
        c = self.client(**persistent(self.level), **kw)
        c.subscribe(("t", qos))
        c.lose()

    def come_back(self, clean: bool = False) -> tuple[ConnAck, list[Publish], FakeClient]:
        c = self.h.client(self.level)
        kw = persistent(self.level) if not clean else {"clean": True}
        packets = connect_all(c, "c", **kw)
        ack = packets[0]
        assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
        return ack, [p for p in packets if isinstance(p, Publish)], c

    def test_subscriptions_kept(self) -> None:
        self.go_offline(qos=2)
        ack, pubs, c = self.come_back()
        self.assertTrue(ack.session_present)
        self.assertEqual(pubs, [])
        self.publish("t", b"m", qos=2)
        [pub] = c.publishes()
        self.assertEqual((pub.payload, pub.qos), (b"m", 2))

    def test_offline_messages_delivered_on_reconnect(self) -> None:
        self.go_offline(qos=2)
        self.publish("t", b"1", qos=1)
        self.publish("t", b"2", qos=2)
        ack, pubs, c = self.come_back()
        self.assertTrue(ack.session_present)
        self.assertEqual([(p.payload, p.qos, p.dup) for p in pubs],
                         [(b"1", 1, False), (b"2", 2, False)])
        for p in pubs:
            c.ack(p)

    def test_offline_qos0_not_queued(self) -> None:
        """
        VerneMQ keeps no QoS 0 message for an offline session
        (C{max_offline_messages} is "QoS 1/2 only"): a QoS 0 publish, and
        a QoS 1 publish to a QoS 0 subscription, are not delivered later.
        """
        self.go_offline(qos=1)
        c2 = self.client("c2", **persistent(self.level))
        c2.subscribe(("t", 0))
        c2.lose()
        self.publish("t", b"zero", qos=0)
        self.publish("t", b"one", qos=1)
        _, pubs, _ = self.come_back()
        self.assertEqual(payloads(list(pubs)), [b"one"])
        c2 = self.h.client(self.level)
        packets = connect_all(c2, "c2", **persistent(self.level))
        self.assertEqual(payloads(packets), [])
        self.assertEqual(self.h.broker.stats()["dropped"], 0)

    def test_offline_qos0_upgraded_is_queued(self) -> None:
        """
        With C{upgrade_outgoing_qos}, a QoS 0 message for a QoS 1
        subscription is a QoS 1 delivery, so it is kept offline.
        """
        self.harness(upgrade_outgoing_qos=True)
        self.go_offline(qos=1)
        self.publish("t", b"zero", qos=0)
        _, pubs, _ = self.come_back()
        self.assertEqual([(p.payload, p.qos) for p in pubs], [(b"zero", 1)])

    def test_max_offline_messages(self) -> None:
        """
        Beyond C{max_offline_messages} new messages are dropped (the
        oldest are kept) and counted.
        """
        self.harness(max_offline_messages=2)
        self.go_offline()
        self.publish("t", b"1", b"2", b"3", b"4", qos=1)
        self.assertEqual(self.h.broker.stats()["dropped"], 2)
        _, pubs, _ = self.come_back()
        self.assertEqual(payloads(list(pubs)), [b"1", b"2"])

    def test_max_offline_messages_zero(self) -> None:
        self.harness(max_offline_messages=0)
        self.go_offline()
        self.publish("t", b"1", qos=1)
        ack, pubs, c = self.come_back()
        self.assertTrue(ack.session_present)
        self.assertEqual(pubs, [])
        # The subscription is still there.
        self.publish("t", b"2", qos=1)
        self.assertEqual(payloads(c.received()), [b"2"])

    def test_offline_queue_respects_window(self) -> None:
        """
        On reconnect queued messages go out through the inflight window.
        """
        self.harness(max_inflight_messages=1)
        self.go_offline()
        self.publish("t", b"1", b"2", qos=1)
        _, pubs, c = self.come_back()
        self.assertEqual(payloads(list(pubs)), [b"1"])
        c.ack(pubs[0])
        self.assertEqual(payloads(c.received()), [b"2"])

    def test_clean_session_discards(self) -> None:
        self.go_offline()
        self.publish("t", b"1", qos=1)
        ack, pubs, c = self.come_back(clean=True)
        self.assertFalse(ack.session_present)
        self.assertEqual(pubs, [])
        self.publish("t", b"2", qos=1)
        self.assertEqual(c.received(), [])
        c.disconnect()
        # The clean session ended with its connection: nothing is queued.
        self.publish("t", b"3", qos=1)
        ack, pubs, _ = self.come_back()
        self.assertFalse(ack.session_present)
        self.assertEqual(pubs, [])

    def test_clean_session_not_kept(self) -> None:
        """A clean session ends with its connection."""
        c = self.client(clean=True)
        c.subscribe(("t", 1))
        c.lose()
        self.assertNotIn(("", "c"), self.h.broker.sessions)
        self.publish("t", b"1", qos=1)
        ack, pubs, _ = self.come_back()
        self.assertFalse(ack.session_present)
        self.assertEqual(pubs, [])

    def test_messages_queued_while_paused_kept_offline(self) -> None:
        """
        QoS 1/2 messages still queued for a slow connection when it drops
        are delivered when the client comes back.
        """
        c = self.client(**persistent(self.level))
        c.subscribe(("t", 1))
        c.proto.pauseProducing()
        self.publish("t", b"1", b"2", qos=1)
        c.lose()
        _, pubs, _ = self.come_back()
        self.assertEqual(payloads(list(pubs)), [b"1", b"2"])


    def test_qos0_queued_while_paused_not_kept_offline(self) -> None:
        """
        When a slow connection drops, what was queued for it becomes the
        offline queue, under the offline rules: QoS 0 messages are not
        kept, and no more than C{max_offline_messages} of the others.
        """
        self.harness(max_offline_messages=2)
        c = self.client(**persistent(self.level))
        c.subscribe(("t", 1))
        c.proto.pauseProducing()
        self.publish("t", b"zero", qos=0)
        self.publish("t", b"1", b"2", b"3", qos=1)
        self.assertEqual(self.h.broker.stats()["dropped"], 0)
        c.lose()
        self.assertEqual(self.h.broker.stats()["dropped"], 1)
        _, pubs, _ = self.come_back()
        self.assertEqual(payloads(list(pubs)), [b"1", b"2"])

    def test_takeover_redelivers_on_new_connection(self) -> None:
        """
        A second connection with the same client id takes the session
        over: the old one is closed, the new one gets the unacknowledged
        messages again (DUP) and later deliveries.
        """
        old = self.client(**persistent(self.level))
        old.subscribe(("t", 1))
        self.publish("t", b"1", qos=1)
        [first] = old.publishes()
        ack, pubs, new = self.come_back()
        self.assertTrue(ack.session_present)
        self.assertTrue(old.closed)
        self.assertEqual([(p.payload, p.dup, p.packet_id) for p in pubs],
                         [(b"1", True, first.packet_id)])
        self.publish("t", b"2", qos=1)
        self.assertEqual(payloads(new.received()), [b"2"])
        self.assertEqual(old.publishes(), [])


class PersistentSessionV5Tests(PersistentSessionV311Tests):
    level = 5

    def test_clean_start_false_without_expiry_not_kept(self) -> None:
        """
        MQTT 5.0: clean start 0 alone does not make a session outlive its
        connection; that takes a session expiry interval.
        """
        c = self.client(clean=False)
        c.subscribe(("t", 1))
        c.lose()
        self.publish("t", b"1", qos=1)
        ack, pubs, _ = self.come_back()
        self.assertFalse(ack.session_present)
        self.assertEqual(pubs, [])


class PersistentExpirationV311Tests(SessionTestCase):
    """
    MQTT 3.1.1: an offline persistent session lives until
    C{persistent_client_expiration} (forever by default).
    """

    def test_never_expires_by_default(self) -> None:
        c = self.client(clean=False)
        c.subscribe(("t", 1))
        c.lose()
        self.h.advance(10 * 365 * 86400)
        c = self.h.client(4)
        ack = c.connect("c", clean=False)
        assert isinstance(ack, ConnAck)
        self.assertTrue(ack.session_present)

    def test_persistent_client_expiration(self) -> None:
        self.harness(persistent_client_expiration="1h")
        c = self.client(clean=False)
        c.subscribe(("t", 1))
        c.lose()
        self.h.advance(3599)
        self.assertIn(("", "c"), self.h.broker.sessions)
        self.h.advance(1)
        self.assertNotIn(("", "c"), self.h.broker.sessions)
        self.publish("t", b"1", qos=1)
        c = self.h.client(4)
        packets = connect_all(c, "c", clean=False)
        ack = packets[0]
        assert isinstance(ack, ConnAck)
        self.assertFalse(ack.session_present)
        self.assertEqual(packets[1:], [])


# -- MQTT 5.0 session expiry ------------------------------------------------------------


class SessionExpiryV5Tests(SessionTestCase):
    """
    MQTT 5.0: an offline session is removed when its session expiry
    interval has passed since the connection ended, not before; the
    client may change the interval in DISCONNECT.
    """

    level = 5

    def reconnect(self) -> tuple[ConnAck, list[Publish]]:
        c = self.h.client(5)
        packets = connect_all(c, "c", clean=False,
                              properties={"session_expiry_interval": 60})
        ack = packets[0]
        assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
        return ack, [p for p in packets if isinstance(p, Publish)]

    def test_kept_until_interval(self) -> None:
        c = self.client(**persistent(5, expiry=10))
        c.subscribe(("t", 1))
        c.lose()
        self.h.advance(9.5)
        self.publish("t", b"1", qos=1)
        ack, pubs = self.reconnect()
        self.assertTrue(ack.session_present)
        self.assertEqual(payloads(list(pubs)), [b"1"])

    def test_removed_after_interval(self) -> None:
        c = self.client(**persistent(5, expiry=10))
        c.subscribe(("t", 1))
        c.lose()
        self.publish("t", b"1", qos=1)
        self.h.advance(10)
        self.assertNotIn(("", "c"), self.h.broker.sessions)
        self.publish("t", b"2", qos=1)
        ack, pubs = self.reconnect()
        self.assertFalse(ack.session_present)
        self.assertEqual(pubs, [])

    def test_timer_restarts_with_each_connection(self) -> None:
        """
        A reconnect within the interval cancels the expiry; the next
        disconnect starts a full interval again.
        """
        c = self.client(**persistent(5, expiry=10))
        c.lose()
        self.h.advance(8)
        c = self.h.connected("c", level=5, **persistent(5, expiry=10))
        self.h.advance(8)
        c.lose()
        self.h.advance(8)
        self.assertIn(("", "c"), self.h.broker.sessions)
        self.h.advance(2)
        self.assertNotIn(("", "c"), self.h.broker.sessions)

    def test_disconnect_extends_interval(self) -> None:
        c = self.client(**persistent(5, expiry=10))
        c.subscribe(("t", 1))
        c.disconnect(0, session_expiry_interval=100)
        self.h.advance(99)
        ack, _ = self.reconnect()
        self.assertTrue(ack.session_present)

    def test_disconnect_shortens_interval(self) -> None:
        c = self.client(**persistent(5, expiry=100))
        c.subscribe(("t", 1))
        c.disconnect(0, session_expiry_interval=5)
        self.h.advance(5)
        ack, _ = self.reconnect()
        self.assertFalse(ack.session_present)

    def test_disconnect_interval_zero_ends_session(self) -> None:
        c = self.client(**persistent(5, expiry=100))
        c.subscribe(("t", 1))
        c.disconnect(0, session_expiry_interval=0)
        self.assertNotIn(("", "c"), self.h.broker.sessions)
        ack, _ = self.reconnect()
        self.assertFalse(ack.session_present)

    def test_disconnect_cannot_set_interval_after_zero(self) -> None:
        """
        A session that CONNECT gave interval 0 cannot get one in
        DISCONNECT: protocol error 0x82, and the session still ends.
        """
        c = self.client()
        c.subscribe(("t", 1))
        c.disconnect(0, session_expiry_interval=100)
        self.assertEqual(c.received(), [Disconnect(0x82)])
        self.assertTrue(c.closed)
        ack, _ = self.reconnect()
        self.assertFalse(ack.session_present)

    def test_never_expires(self) -> None:
        """0xFFFFFFFF: the session never expires."""
        c = self.client(**persistent(5, expiry=0xFFFFFFFF))
        c.lose()
        self.h.advance(10 * 365 * 86400)
        ack, _ = self.reconnect()
        self.assertTrue(ack.session_present)


# -- matching ------------------------------------------------------------------------------


class OverlappingV311Tests(SessionTestCase):
    """
    One client whose subscriptions overlap gets each message once, at the
    highest QoS granted by the matching subscriptions.
    """

    def test_delivered_once_at_highest_qos(self) -> None:
        c = self.client()
        c.subscribe(("a/#", 2), ("a/+", 1), ("a/b", 0))
        self.publish("a/b", b"m", qos=2)
        [pub] = c.publishes()
        self.assertEqual(pub.qos, 2)

    def test_highest_qos_whichever_order(self) -> None:
        c = self.client()
        c.subscribe(("a/#", 0))
        c.subscribe(("a/+", 1))
        self.publish("a/b", b"m", qos=2)
        [pub] = c.publishes()
        self.assertEqual(pub.qos, 1)
        c.ack(pub)
        # Only one filter matches: one delivery at its QoS.
        self.publish("a/b/c", b"n", qos=2)
        [pub] = c.publishes()
        self.assertEqual(pub.qos, 0)

    def test_two_clients_each_get_one(self) -> None:
        c1 = self.client("c1")
        c1.subscribe(("a/#", 1), "a/+")
        c2 = self.client("c2")
        c2.subscribe("#", ("a/b", 1))
        self.publish("a/b", b"m", qos=1)
        self.assertEqual(len(c1.publishes()), 1)
        self.assertEqual(len(c2.publishes()), 1)


class OverlappingV5Tests(OverlappingV311Tests):
    level = 5

    def test_all_subscription_identifiers(self) -> None:
        """
        MQTT 5.0: the one delivery carries the identifiers of every
        matching subscription.
        """
        c = self.client()
        c.subscribe(("a/#", 1), subscription_identifier=1)
        c.subscribe(("a/+", 2), subscription_identifier=2)
        c.subscribe(("x/#", 0), subscription_identifier=3)
        self.publish("a/b", b"m", qos=2)
        [pub] = c.publishes()
        self.assertEqual(pub.qos, 2)
        self.assertEqual(sorted(pub.properties["subscription_identifier"]), [1, 2])

    def test_identifier_only_from_subscriptions_that_have_one(self) -> None:
        c = self.client()
        c.subscribe(("a/#", 1), subscription_identifier=5)
        c.subscribe(("a/+", 0))
        self.publish("a/b", b"m", qos=1)
        [pub] = c.publishes()
        self.assertEqual((pub.qos, pub.properties["subscription_identifier"]), (1, [5]))


class DollarTopicTests(SessionTestCase):
    """
    Filters starting with a wildcard do not match topics starting with
    C{$} [MQTT-4.7.2-1]; C{$SYS/#} does.
    """

    def test_wildcards_skip_dollar_topics(self) -> None:
        clients = {}
        for name, topic_filter in [
            ("hash", "#"),
            ("plus", "+/node/load"),
            ("plushash", "+/#"),
            ("sys", "$SYS/#"),
            ("sysplus", "$SYS/+/load"),
        ]:
            clients[name] = self.h.connected(name, level=self.level)
            clients[name].subscribe(topic_filter)
        topics = self.h.broker.topics("")
        self.h.broker.publish(topics, Message("$SYS/node/load", b"1"))
        self.h.advance(0)
        got = {name: payloads(c.received()) for name, c in clients.items()}
        self.assertEqual(
            got,
            {"hash": [], "plus": [], "plushash": [], "sys": [b"1"], "sysplus": [b"1"]},
        )

    def test_wildcards_still_match_normal_topics(self) -> None:
        c = self.client()
        c.subscribe("#", "+/b")
        self.publish("a/b", b"m")
        self.assertEqual(payloads(c.received()), [b"m"])


# -- wills -----------------------------------------------------------------------------------


class WillV311Tests(SessionTestCase):
    """
    The will goes when the connection ends without a normal DISCONNECT
    (lost, keepalive timeout), not after DISCONNECT.
    """

    def setUp(self) -> None:
        super().setUp()
        self.watcher = self.h.connected("watcher", level=4)
        self.watcher.subscribe(("will/#", 1))

    def will(self, **props: Any) -> Will:
        return Will("will/c", b"gone", 1, False, props)

    def wills(self) -> list[bytes]:
        got = self.watcher.publishes()
        for p in got:
            self.watcher.ack(p)
        return [p.payload for p in got]

    def test_connection_lost(self) -> None:
        c = self.client(will=self.will())
        self.assertEqual(self.wills(), [])
        c.lose()
        self.assertEqual(self.wills(), [b"gone"])

    def test_will_qos_and_retain(self) -> None:
        c = self.client(will=Will("will/c", b"gone", 1, True))
        c.lose()
        [pub] = self.watcher.publishes()
        self.assertEqual(pub.qos, 1)
        late = self.h.connected("late", level=4)
        late.subscribe("will/c")
        retained = late.pending
        self.assertEqual([(p.payload, p.retain) for p in retained if isinstance(p, Publish)],
                         [(b"gone", True)])

    def test_keepalive_timeout(self) -> None:
        """
        No packet for 1.5 x keep alive closes the connection and sends
        the will; anything received restarts the wait.
        """
        c = self.client(keep_alive=10, will=self.will())
        self.h.advance(10)
        c.ping()
        c.received()
        self.h.advance(14.9)
        self.assertEqual(self.wills(), [])
        self.assertFalse(c.closed)
        self.h.advance(0.1)
        self.assertTrue(c.closed)
        self.assertEqual(self.wills(), [b"gone"])
        c.finish_close()
        self.assertEqual(self.wills(), [])

    def test_not_after_disconnect(self) -> None:
        c = self.client(will=self.will())
        c.disconnect()
        self.assertTrue(c.closed)
        c.finish_close()
        self.h.advance(3600)
        self.assertEqual(self.wills(), [])

    def test_persistent_session_will_on_loss(self) -> None:
        c = self.client(will=self.will(), **persistent(self.level))
        c.lose()
        self.assertEqual(self.wills(), [b"gone"])

    def test_once_only(self) -> None:
        """
        The will belongs to one connection: after it went, a reconnect
        without a will and another loss send nothing.
        """
        c = self.client(will=self.will(), **persistent(self.level))
        c.lose()
        self.assertEqual(self.wills(), [b"gone"])
        c = self.h.connected("c", level=self.level, **persistent(self.level))
        c.lose()
        self.h.advance(3600)
        self.assertEqual(self.wills(), [])


class WillV5Tests(WillV311Tests):
    level = 5

    def test_disconnect_with_will(self) -> None:
        """MQTT 5.0 DISCONNECT 0x04 asks for the will."""
        c = self.client(will=self.will())
        c.disconnect(0x04)
        self.assertEqual(self.wills(), [b"gone"])

    def test_will_delay(self) -> None:
        c = self.client(will=self.will(will_delay_interval=30), **persistent(5))
        c.lose()
        self.h.advance(29.9)
        self.assertEqual(self.wills(), [])
        self.h.advance(0.1)
        self.assertEqual(self.wills(), [b"gone"])
        # The session itself stays.
        self.assertIn(("", "c"), self.h.broker.sessions)

    def test_reconnect_cancels_delayed_will(self) -> None:
        c = self.client(will=self.will(will_delay_interval=30), **persistent(5))
        c.lose()
        self.h.advance(20)
        c = self.h.connected("c", level=5, **persistent(5))
        self.h.advance(3600)
        self.assertEqual(self.wills(), [])

    def test_session_expiry_before_will_delay(self) -> None:
        """
        The will goes at the earlier of will delay and session expiry: the
        session ending sends it.
        """
        c = self.client(will=self.will(will_delay_interval=60), **persistent(5, expiry=10))
        c.lose()
        self.h.advance(9.9)
        self.assertEqual(self.wills(), [])
        self.h.advance(0.1)
        self.assertEqual(self.wills(), [b"gone"])
        self.assertNotIn(("", "c"), self.h.broker.sessions)
        self.h.advance(100)
        self.assertEqual(self.wills(), [])

    def test_will_delay_with_session_ending_at_disconnect(self) -> None:
        """Session expiry 0: the session ends at once, and so the delay."""
        c = self.client(will=self.will(will_delay_interval=60))
        c.lose()
        self.assertEqual(self.wills(), [b"gone"])

    def test_disconnect_with_will_and_delay(self) -> None:
        """DISCONNECT 0x04 sends the will after its delay."""
        c = self.client(will=self.will(will_delay_interval=5), **persistent(5))
        c.disconnect(0x04)
        self.assertEqual(self.wills(), [])
        self.h.advance(5)
        self.assertEqual(self.wills(), [b"gone"])

    def test_clean_start_reconnect_sends_delayed_will(self) -> None:
        """
        A reconnect with clean start 1 ends the old session, so its
        delayed will goes at once.
        """
        c = self.client(will=self.will(will_delay_interval=30), **persistent(5))
        c.lose()
        self.h.advance(1)
        self.h.connected("c", level=5)
        self.assertEqual(self.wills(), [b"gone"])


# -- MQTT 5.0 specifics -----------------------------------------------------------------------


class V5SessionTests(SessionTestCase):
    """
    MQTT 5.0 session behaviour with no 3.1.1 counterpart: message expiry
    in queues, the broker's receive maximum, no local, and the QoS 2 flow
    of a message nobody receives.
    """

    level = 5

    def test_message_expiry_while_offline(self) -> None:
        """
        A message queued while offline carries its remaining expiry
        interval when delivered.
        """
        c = self.client(**persistent(5))
        c.subscribe(("t", 1))
        c.lose()
        pub = self.h.connected("p5", level=5)
        pub.publish("t", b"short", qos=1, message_expiry_interval=10)
        pub.publish("t", b"long", qos=1, message_expiry_interval=100)
        self.h.advance(4)
        c = self.h.client(5)
        got = [(p.payload, p.properties.get("message_expiry_interval"))
               for p in connect_all(c, "c", **persistent(5)) if isinstance(p, Publish)]
        self.assertEqual(got, [(b"short", 6), (b"long", 96)])
        c.lose()
        self.h.advance(20)
        c = self.h.client(5)
        got = [(p.payload, p.dup)
               for p in connect_all(c, "c", **persistent(5)) if isinstance(p, Publish)]
        # Both were sent and never acknowledged: onward delivery had
        # started, so both are resent, even the expired one
        # [MQTT-4.4.0-1].
        self.assertEqual(got, [(b"short", True), (b"long", True)])

    def test_expired_in_queue_not_delivered(self) -> None:
        c = self.client(**persistent(5))
        c.subscribe(("t", 1))
        c.lose()
        pub = self.h.connected("p5", level=5)
        pub.publish("t", b"short", qos=1, message_expiry_interval=10)
        pub.publish("t", b"long", qos=1, message_expiry_interval=100)
        self.h.advance(10)
        c = self.h.client(5)
        got = payloads(connect_all(c, "c", **persistent(5)))
        self.assertEqual(got, [b"long"])
        self.assertEqual(self.h.broker.stats()["expired"], 1)

    def test_receive_maximum_broker(self) -> None:
        """
        More unreleased QoS 2 PUBLISH packets than C{receive_max_broker}
        is a protocol error 0x93.
        """
        self.harness(receive_max_broker=2)
        c = self.client()
        c.publish("t", qos=2)
        c.publish("t", qos=2)
        self.assertEqual(len(c.received()), 2)
        self.assertFalse(c.closed)
        c.publish("t", qos=2)
        self.assertEqual(c.received(), [Disconnect(0x93)])
        self.assertTrue(c.closed)

    def test_receive_maximum_broker_released_frees(self) -> None:
        self.harness(receive_max_broker=1)
        c = self.client()
        for _ in range(3):
            pid = c.publish("t", qos=2)
            assert pid is not None
            c.send(PubRel(pid))
        self.assertEqual([type(p) for p in c.received()], [PubRec, PubComp] * 3)
        self.assertFalse(c.closed)

    def test_no_local(self) -> None:
        """
        MQTT 5.0 no local: a client's own messages do not come back on that
        subscription, whether or not others also receive them.
        """
        c = self.client()
        c.subscribe_with([Subscription("t", 1, no_local=True)])
        pid = c.publish("t", b"alone", qos=1)
        assert pid is not None
        self.assertEqual(c.received(), [PubAck(pid, 0x10)])
        other = self.client("other")
        other.subscribe("t")
        c.publish("t", b"mine", qos=1)
        self.assertEqual(payloads(c.received()), [])
        self.assertEqual(payloads(other.received()), [b"mine"])
        self.publish("t", b"theirs")
        self.assertEqual(payloads(c.received()), [b"theirs"])

    def test_no_local_applies_to_own_will(self) -> None:
        """
        A will is a message of its client too: a persistent session's no
        local subscription does not receive its own will.
        """
        c = self.client(will=Will("will/c", b"gone", 1), **persistent(5))
        c.subscribe_with([Subscription("will/#", 1, no_local=True)])
        watcher = self.client("watcher")
        watcher.subscribe(("will/#", 1))
        c.lose()
        self.assertEqual(payloads(watcher.received()), [b"gone"])
        c = self.h.client(5)
        self.assertEqual(payloads(connect_all(c, "c", **persistent(5))), [])

    def test_qos2_to_dollar_topic_completes(self) -> None:
        """
        A QoS 2 PUBLISH that reaches nobody (a C{$} topic, reserved for
        the broker) is acknowledged with PUBREC 0x10; its PUBREL must then
        get a successful PUBCOMP, not 0x92 (packet id not found).
        """
        c = self.client()
        c.send(Publish("$foo/x", b"v", 2, False, False, 3))
        [rec] = c.received()
        assert isinstance(rec, PubRec)
        self.assertEqual((rec.packet_id, rec.reason_code), (3, 0x10))
        c.send(PubRel(3))
        self.assertEqual(c.received(), [PubComp(3)])

    def test_unsubscribe(self) -> None:
        c = self.client()
        c.subscribe("t")
        ack = c.unsubscribe("t", "never")
        self.assertEqual(ack.reason_codes, [0, 0x11])
        self.publish("t", b"m")
        self.assertEqual(c.received(), [])
