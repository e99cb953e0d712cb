"""
Tests for L{vernemq.broker.shared}: shared subscriptions
(C{$share/<group>/<filter>}) as clients see them, the member-choosing
policies, and the hand-over of undelivered messages when a member is lost.

The broker runs on a L{task.Clock} and is driven through
L{tests.brokerhelpers.FakeClient}s, for MQTT 3.1.1 (VerneMQ accepts shared
subscriptions there too) and 5.0.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import BASE_CONFIG, FakeClient, Harness
from vernemq.broker.message import Message
from vernemq.broker.router import SubOpts
from vernemq.broker.shared import POLICIES, SharedMessage, SharedPolicy, tag
from vernemq.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    PubAck,
    Publish,
    Subscribe,
    Subscription,
)
from vernemq.plugins.hooks import AllowAllACL, HookChain, Ok

MQTT_311 = 4
MQTT_5 = 5
#: A long MQTT 5.0 session expiry for persistent sessions.
HOUR = 3600


class FixedRandom(random.Random):
    """A random source that always answers C{value} (picks a start member)."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class FakeMember:
    """A group member that is not a session: how a remote one will look."""

    def __init__(self, name: str, local: bool = False, online: bool = True) -> None:
        self.sid = ("", name)
        self.local = local
        self.online = online
        self.got: list[tuple[Message, int]] = []

    def __repr__(self) -> str:
        return f"<FakeMember {self.sid[1]} local={self.local} online={self.online}>"

    def deliver(self, msg: Message, sub_qos: int, rap: bool, sub_ids: tuple[int, ...]) -> None:
        self.got.append((msg, sub_qos))


def payloads(pubs: list[Publish]) -> list[bytes]:
    return [p.payload for p in pubs]


def members(
    h: Harness,
    n: int,
    level: int = MQTT_311,
    qos: int = 0,
    filter_: str = "$share/g/t",
    prefix: str = "m",
) -> list[FakeClient]:
    """C{n} connected clients subscribed to C{filter_} with C{qos}."""
    out = []
    for i in range(n):
        c = h.connected(f"{prefix}{i}", level)
        ack = c.subscribe((filter_, qos))
        assert ack.reason_codes == [qos], ack
        out.append(c)
    return out


def persistent(h: Harness, client_id: str, level: int) -> FakeClient:
    """A connected client whose session outlives its connection."""
    c = h.client(level)
    if level == MQTT_5:
        ack = c.connect(client_id, clean=False, properties={"session_expiry_interval": HOUR})
    else:
        ack = c.connect(client_id, clean=False)
    assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
    return c


def reconnect(h: Harness, client_id: str, level: int) -> tuple[FakeClient, list[Publish]]:
    """
    Reconnect a persistent session; return the client and the PUBLISH
    packets the server sent right after the CONNACK (asserted: session
    present).
    """
    c = h.client(level)
    props = {"session_expiry_interval": HOUR} if level == MQTT_5 else {}
    c.send(Connect(client_id, protocol_level=level, clean_start=False, properties=props))
    packets = c.received()
    ack = packets[0]
    assert isinstance(ack, ConnAck) and ack.reason_code == 0 and ack.session_present, ack
    return c, [p for p in packets[1:] if isinstance(p, Publish)]


def drain_acking(c: FakeClient) -> list[bytes]:
    """Receive and acknowledge until nothing more comes; the payloads."""
    got: list[bytes] = []
    while True:
        pubs = c.publishes()
        if not pubs:
            return got
        for p in pubs:
            got.append(p.payload)
            if p.qos:
                c.ack(p)


class GroupDeliveryTests(SynchronousTestCase):
    """
    One delivery per group per message, for both protocol levels.
    """

    def harness(self, **overrides: Any) -> Harness:
        h = Harness(**overrides)
        h.broker.topics("").shared.rng = random.Random(7)
        return h

    def check_one_delivery_per_group(self, level: int, qos: int) -> None:
        h = self.harness()
        group = members(h, 3, level, qos)
        pub = h.connected("pub", level)
        sent = [b"%d" % i for i in range(30)]
        for payload in sent:
            pub.publish("t", payload, qos)
        got: list[bytes] = []
        per_member = []
        for c in group:
            pubs = c.publishes()
            for p in pubs:
                self.assertEqual((p.topic, p.qos), ("t", qos))
                if qos:
                    c.ack(p)
            per_member.append(len(pubs))
            got += payloads(pubs)
        self.assertEqual(sorted(got), sorted(sent))
        # Spread over the members, not all to one.
        self.assertGreater(sum(1 for n in per_member if n), 1, per_member)

    def test_oneDeliveryPerGroup311(self) -> None:
        """
        Three MQTT 3.1.1 clients in one group: each message reaches exactly
        one of them, at QoS 0 and QoS 1.
        """
        self.check_one_delivery_per_group(MQTT_311, 0)
        self.check_one_delivery_per_group(MQTT_311, 1)

    def test_oneDeliveryPerGroup5(self) -> None:
        """
        The same for MQTT 5.0 clients, QoS 0 and QoS 2.
        """
        self.check_one_delivery_per_group(MQTT_5, 0)
        self.check_one_delivery_per_group(MQTT_5, 2)

    def test_severalGroups(self) -> None:
        """
        Each group of a filter gets every message once; so does each
        shared filter of one group name (a different shared subscription).
        """
        h = self.harness()
        g1 = members(h, 2, filter_="$share/g1/t", prefix="a")
        g2 = members(h, 2, filter_="$share/g2/t", prefix="b")
        g3 = members(h, 2, filter_="$share/g1/+", prefix="c")
        pub = h.connected("pub")
        for i in range(10):
            pub.publish("t", b"%d" % i)
        for group in (g1, g2, g3):
            got = sorted(p for c in group for p in payloads(c.publishes()))
            self.assertEqual(got, sorted(b"%d" % i for i in range(10)))

    def test_plainAndShared(self) -> None:
        """
        A plain subscriber gets every message, the group each one once; a
        client that is both gets its plain copy and, when chosen, the
        group's.
        """
        h = self.harness()
        plain = h.connected("plain")
        plain.subscribe("t")
        both = h.connected("both", MQTT_5)
        both.subscribe("t", ("$share/g/t", 0))
        other = members(h, 1, MQTT_5)[0]
        pub = h.connected("pub")
        for i in range(20):
            pub.publish("t", b"%d" % i)
        everything = [b"%d" % i for i in range(20)]
        self.assertEqual(payloads(plain.publishes()), everything)
        both_got = payloads(both.publishes())
        other_got = payloads(other.publishes())
        shared = [p for p in both_got if both_got.count(p) == 2]
        self.assertEqual(sorted(set(both_got)), sorted(everything))
        self.assertEqual(len(both_got), 20 + len(set(shared)))
        self.assertEqual(sorted(set(shared) | set(other_got)), sorted(everything))
        self.assertFalse(set(shared) & set(other_got))

    def test_wildcardFilter(self) -> None:
        """
        The filter of a shared subscription may have wildcards; C{$}-topic
        rules apply as for plain filters.
        """
        h = self.harness()
        (c,) = members(h, 1, filter_="$share/g/a/#")
        pub = h.connected("pub")
        pub.publish("a/b/c", b"1")
        pub.publish("a", b"2")
        pub.publish("b", b"3")
        self.assertEqual(payloads(c.publishes()), [b"1", b"2"])

    def test_memberQosAndSubscriptionIdentifier(self) -> None:
        """
        A member receives at its own granted QoS, with its own MQTT 5.0
        subscription identifier.
        """
        h = self.harness()
        c = h.connected("m", MQTT_5)
        c.subscribe(("$share/g/t", 1), subscription_identifier=42)
        pub = h.connected("pub", MQTT_5)
        pub.publish("t", b"x", 2)
        (p,) = c.publishes()
        self.assertEqual(p.qos, 1)
        self.assertEqual(p.properties.get("subscription_identifier"), [42])

    def test_retainedNotSent(self) -> None:
        """
        Subscribing to a shared subscription sends no retained message
        (MQTT 5.0 4.8.2); a plain subscription does.  Publishing a retained
        message still reaches the group, with RETAIN cleared.
        """
        h = self.harness()
        pub = h.connected("pub")
        pub.publish("t", b"kept", 1, retain=True)
        group = []
        for level in (MQTT_311, MQTT_5):
            c = h.connected(f"s{level}", level)
            c.subscribe(("$share/g/t", 1))
            self.assertEqual(c.pending, [])
            self.assertEqual(c.received(), [])
            group.append(c)
        plain = h.connected("plain")
        plain.subscribe(("t", 1))
        self.assertEqual(payloads([p for p in plain.pending if isinstance(p, Publish)]), [b"kept"])
        pub.publish("t", b"new", 0, retain=True)
        got = [p for c in group for p in c.publishes()]
        self.assertEqual([(p.payload, p.retain) for p in got], [(b"new", False)])

    def test_noLocalIsProtocolError(self) -> None:
        """
        MQTT 5.0: no-local on a shared subscription is a protocol error
        [MQTT-3.8.3-4]: DISCONNECT 0x82, nothing subscribed.
        """
        h = self.harness()
        c = h.connected("c", MQTT_5)
        c.send(Subscribe(1, [Subscription("$share/g/t", 1, no_local=True)]))
        self.assertEqual(c.received(), [Disconnect(0x82)])
        self.assertTrue(c.closed)
        self.assertIsNone(h.broker.topics("").shared.get("g", "t"))

    def test_noLocalPlainStillAllowed(self) -> None:
        """
        No-local on a plain filter next to a shared one is fine.
        """
        h = self.harness()
        c = h.connected("c", MQTT_5)
        ack = c.subscribe_with(
            [Subscription("t", 1, no_local=True), Subscription("$share/g/t", 1)]
        )
        self.assertEqual(ack.reason_codes, [1, 1])

    def test_invalidSharedFilters(self) -> None:
        """
        Malformed C{$share} filters are refused per filter (0x8F in MQTT
        5.0, 0x80 in 3.1.1); the connection stays.
        """
        h = self.harness()
        for level, code in ((MQTT_311, 0x80), (MQTT_5, 0x8F)):
            c = h.connected(f"c{level}", level)
            ack = c.subscribe("$share/g", "$share//t", "$share/g+/t", ("$share/g/t", 1))
            self.assertEqual(ack.reason_codes, [code, code, code, 1])
            self.assertFalse(c.closed)

    def test_unsubscribe(self) -> None:
        """
        Unsubscribing C{$share/g/t} leaves the group: the other member gets
        everything; when the last member leaves the group is gone from the
        trie.  Unsubscribing again finds nothing (0x11 in MQTT 5.0).
        """
        h = self.harness()
        a, b = members(h, 2, MQTT_5)
        topics = h.broker.topics("")
        self.assertEqual(len(topics.trie), 1)
        self.assertEqual(a.unsubscribe("$share/g/t").reason_codes, [0])
        pub = h.connected("pub")
        for i in range(5):
            pub.publish("t", b"%d" % i)
        self.assertEqual(a.publishes(), [])
        self.assertEqual(len(b.publishes()), 5)
        self.assertEqual(b.unsubscribe("$share/g/t").reason_codes, [0])
        self.assertEqual(len(topics.trie), 0)
        self.assertIsNone(topics.shared.get("g", "t"))
        self.assertEqual(b.unsubscribe("$share/g/t").reason_codes, [0x11])
        pub.publish("t", b"none")
        self.assertEqual(b.publishes(), [])

    def test_unsubscribe311(self) -> None:
        """
        MQTT 3.1.1 clients leave a group the same way.
        """
        h = self.harness()
        a, b = members(h, 2, MQTT_311)
        a.unsubscribe("$share/g/t")
        pub = h.connected("pub")
        for i in range(5):
            pub.publish("t", b"%d" % i)
        self.assertEqual((len(a.publishes()), len(b.publishes())), (0, 5))

    def test_sessionEndLeavesGroup(self) -> None:
        """
        A clean session that ends leaves its groups.
        """
        h = self.harness()
        a, b = members(h, 2)
        a.disconnect()
        a.finish_close()
        group = h.broker.topics("").shared.get("g", "t")
        assert group is not None
        self.assertEqual(list(group.members), [h.broker.sessions[("", "m1")]])

    def test_membershipChurnKeepsTrie(self) -> None:
        """
        The group is one trie entry however many members it has, and the
        node counts every membership as a subscription.
        """
        h = self.harness()
        members(h, 3)
        plain = h.connected("plain")
        plain.subscribe("t")
        topics = h.broker.topics("")
        self.assertEqual(len(topics.trie), 2)
        self.assertEqual(h.broker.stats()["subscriptions"], 4)

    def test_offlineMemberOnlyWhenNoneOnline(self) -> None:
        """
        A persistent member whose client is away gets nothing while another
        member is online; when none is, its offline queue keeps the QoS 1
        messages for its return.
        """
        h = self.harness()
        away = persistent(h, "away", MQTT_5)
        away.subscribe(("$share/g/t", 1))
        away.lose()
        (online,) = members(h, 1, MQTT_5, 1)
        pub = h.connected("pub")
        for i in range(5):
            pub.publish("t", b"a%d" % i, 1)
        self.assertEqual(len(drain_acking(online)), 5)
        online.disconnect()
        online.finish_close()
        for i in range(3):
            pub.publish("t", b"b%d" % i, 1)
        _, got = reconnect(h, "away", MQTT_5)
        self.assertEqual(payloads(got), [b"b0", b"b1", b"b2"])


class PolicyTests(SynchronousTestCase):
    """
    L{SharedPolicy.choose} over members that may be local or remote,
    online or offline.
    """

    def entries(self, *members: FakeMember, opts: SubOpts | None = None) -> list[Any]:
        return [(m, opts or SubOpts(1)) for m in members]

    def picks(self, policy: str, *members: FakeMember, **kw: Any) -> set[str]:
        """Every member the policy picks over all random starting points."""
        entries = self.entries(*members)
        out = set()
        for start in range(len(entries)):
            rng = FixedRandom(start / len(entries))
            entry = POLICIES[policy].choose(entries, rng, **kw)
            out.add("-" if entry is None else entry[0].sid[1])
        return out

    def test_names(self) -> None:
        """
        Every C{shared_subscription_policy} value has a policy.
        """
        self.assertEqual(
            set(POLICIES), {"prefer_local", "local_only", "random", "prefer_online_before_local"}
        )
        self.assertIsInstance(POLICIES["random"], SharedPolicy)

    def test_preferLocal(self) -> None:
        """
        C{prefer_local}: online local members; an offline local one before
        a remote one (VerneMQ narrows to local members first); remote ones
        when there is no local member.
        """
        lon = FakeMember("lon", local=True)
        lon2 = FakeMember("lon2", local=True)
        loff = FakeMember("loff", local=True, online=False)
        ron = FakeMember("ron")
        roff = FakeMember("roff", online=False)
        self.assertEqual(self.picks("prefer_local", ron, lon, loff, lon2), {"lon", "lon2"})
        self.assertEqual(self.picks("prefer_local", ron, loff), {"loff"})
        self.assertEqual(self.picks("prefer_local", roff, ron), {"ron"})
        self.assertEqual(self.picks("prefer_local", roff), {"roff"})

    def test_localOnly(self) -> None:
        """
        C{local_only}: never a remote member, online local ones first.
        """
        lon = FakeMember("lon", local=True)
        loff = FakeMember("loff", local=True, online=False)
        ron = FakeMember("ron")
        self.assertEqual(self.picks("local_only", ron, loff, lon), {"lon"})
        self.assertEqual(self.picks("local_only", ron, loff), {"loff"})
        self.assertEqual(self.picks("local_only", ron), {"-"})

    def test_random(self) -> None:
        """
        C{random}: any online member, local or remote; offline ones only
        when no member is online.
        """
        lon = FakeMember("lon", local=True)
        loff = FakeMember("loff", local=True, online=False)
        ron = FakeMember("ron")
        roff = FakeMember("roff", online=False)
        self.assertEqual(self.picks("random", lon, loff, ron, roff), {"lon", "ron"})
        self.assertEqual(self.picks("random", loff, roff), {"loff", "roff"})

    def test_preferOnlineBeforeLocal(self) -> None:
        """
        C{prefer_online_before_local}: online local, then online remote,
        then offline local, then offline remote.
        """
        lon = FakeMember("lon", local=True)
        loff = FakeMember("loff", local=True, online=False)
        ron = FakeMember("ron")
        roff = FakeMember("roff", online=False)
        policy = "prefer_online_before_local"
        self.assertEqual(self.picks(policy, roff, ron, loff, lon), {"lon"})
        self.assertEqual(self.picks(policy, roff, ron, loff), {"ron"})
        self.assertEqual(self.picks(policy, roff, loff), {"loff"})
        self.assertEqual(self.picks(policy, roff), {"roff"})

    def test_excludeAndOnlineOnly(self) -> None:
        """
        The member being lost is never picked; C{online_only} leaves
        offline members out.
        """
        a = FakeMember("a", local=True)
        b = FakeMember("b", local=True, online=False)
        for name in POLICIES:
            self.assertEqual(self.picks(name, a, b, exclude=a), {"b"})
            self.assertEqual(self.picks(name, a, b, exclude=a, online_only=True), {"-"})

    def test_noLocalMemberSkipped(self) -> None:
        """
        A member whose subscription has no-local set (a bridge) is not
        chosen for its own messages.
        """
        a = FakeMember("a", local=True)
        b = FakeMember("b", local=True)
        entries = [(a, SubOpts(1, no_local=True)), (b, SubOpts(1))]
        for start in (0.0, 0.9):
            entry = POLICIES["random"].choose(entries, FixedRandom(start), origin=a.sid)
            assert entry is not None
            self.assertIs(entry[0], b)

    def test_empty(self) -> None:
        """
        No members, no choice.
        """
        self.assertIsNone(POLICIES["random"].choose([], FixedRandom()))

    def test_tagSharesEncoding(self) -> None:
        """
        A tagged message is a copy that knows its group and shares the
        original's encoding cache; tagging again for the same group is free.
        """
        h = Harness()
        (c,) = members(h, 1)
        group = h.broker.topics("").shared.get("g", "t")
        assert group is not None
        msg = Message("t", b"p", 1, False, None, None, 0, ("", "x"))
        tagged = tag(msg, group)
        self.assertIsInstance(tagged, SharedMessage)
        self.assertIs(tagged.group, group)
        self.assertEqual((tagged.topic, tagged.payload, tagged.origin), ("t", b"p", ("", "x")))
        self.assertIs(tagged.frame(4, 1, False), msg.frame(4, 1, False))
        self.assertIs(tag(tagged, group), tagged)


class BrokerPolicyTests(SynchronousTestCase):
    """
    The broker honours C{shared_subscription_policy} and its register
    modifier; a stand-in remote member shows the difference on one node.
    """

    def setup(self, policy: str | None, hooks: HookChain | None = None,
              text: str = BASE_CONFIG) -> tuple[Harness, FakeMember, FakeClient]:
        if policy is not None:
            text += f"shared_subscription_policy = {policy}\n"
        h = Harness(text, hooks)
        topics = h.broker.topics("")
        self.assertEqual(topics.shared.policy.name, policy or "prefer_local")
        # Start at the first member: the remote one.
        topics.shared.rng = FixedRandom(0.0)
        remote = FakeMember("remote")
        topics.shared.join("g", "t", remote, SubOpts(1))
        (local,) = members(h, 1, qos=1)
        return h, remote, local

    def publish(self, h: Harness, client_id: str = "pub", n: int = 3) -> None:
        pub = h.client()
        ack = pub.connect(client_id)
        assert isinstance(ack, ConnAck) and ack.reason_code == 0
        for i in range(n):
            pub.publish("t", b"%d" % i, 1)

    def test_defaultPreferLocal(self) -> None:
        """
        By default (C{prefer_local}) the local member gets every message.
        """
        h, remote, local = self.setup(None)
        self.publish(h)
        self.assertEqual((len(remote.got), len(local.publishes())), (0, 3))

    def test_random(self) -> None:
        """
        C{random} may pick the remote member.
        """
        h, remote, local = self.setup("random")
        self.publish(h)
        self.assertEqual((len(remote.got), len(local.publishes())), (3, 0))
        msg, qos = remote.got[0]
        self.assertIsInstance(msg, SharedMessage)
        self.assertEqual(qos, 1)

    def test_localOnlyNoLocalMember(self) -> None:
        """
        C{local_only} with no local member delivers to nobody.
        """
        h, remote, local = self.setup("local_only")
        local.unsubscribe("$share/g/t")
        self.publish(h)
        self.assertEqual(remote.got, [])
        self.assertEqual(h.broker.topics("").shared.undelivered, 3)

    def test_registerModifier(self) -> None:
        """
        The C{shared_subscription_policy} register modifier sets the policy
        for that publisher's messages (the publisher decides, as in
        VerneMQ); an unknown name is ignored.
        """
        policies = {"rand": "random", "bad": "nonsense"}

        class Modifiers:
            def auth_on_register(self, peer: Any, sid: Any, *args: Any) -> Ok:
                name = policies.get(sid[1])
                return Ok({"shared_subscription_policy": name} if name else {})

        from zope.interface import directlyProvides

        from vernemq.interfaces import IAuthOnRegister

        plugin = Modifiers()
        directlyProvides(plugin, IAuthOnRegister)
        hooks = HookChain()
        hooks.register(AllowAllACL())
        hooks.register(plugin)
        text = "allow_anonymous = off\nlistener.tcp.default = 127.0.0.1:1883\n"
        h, remote, local = self.setup(None, hooks, text)
        self.publish(h, "rand", 2)
        self.assertEqual((len(remote.got), len(local.publishes())), (2, 0))
        self.publish(h, "bad", 2)
        self.publish(h, "plain", 2)
        self.assertEqual((len(remote.got), len(local.publishes())), (2, 4))
        self.assertEqual(h.broker.sessions[("", "bad")].limits.shared_policy, None)


class MemberLossTests(SynchronousTestCase):
    """
    A member that goes away with undelivered QoS 1/2 messages: they go to
    another member (MQTT 5.0 4.8.2).
    """

    def harness(self) -> Harness:
        h = Harness(max_inflight_messages=2, retry_interval=60)
        # Always start at the first member that joined: "a".
        h.broker.topics("").shared.rng = FixedRandom(0.0)
        return h

    def test_cleanMemberQos1(self) -> None:
        """
        A clean-session member drops with QoS 1 messages unacknowledged
        (inflight) and queued behind its window: all go to the other
        member, none is lost or doubled there.
        """
        for level in (MQTT_311, MQTT_5):
            h = self.harness()
            a, b = members(h, 2, level, 1, prefix=f"{level}")
            pub = h.connected("pub")
            for i in range(5):
                pub.publish("t", b"%d" % i, 1)
            self.assertEqual(payloads(a.publishes()), [b"0", b"1"])
            self.assertEqual(b.publishes(), [])
            a.lose()
            h.advance(0)
            self.assertEqual(sorted(drain_acking(b)), [b"%d" % i for i in range(5)])
            self.assertNotIn(("", f"{level}0"), h.broker.sessions)

    def test_cleanMemberQos2(self) -> None:
        """
        QoS 2: queued (never sent) messages go to the other member; one
        already sent does not, even though the session ends: a QoS 2
        delivery must not go to a second client [MQTT-4.8.2-5].
        """
        h = self.harness()
        a, b = members(h, 2, MQTT_5, 2)
        pub = h.connected("pub")
        for i in range(4):
            pub.publish("t", b"%d" % i, 2)
            pub.received()
        self.assertEqual(payloads(a.publishes()), [b"0", b"1"])
        a.lose()
        h.advance(0)
        self.assertEqual(payloads(b.publishes()), [b"2", b"3"])

    def test_persistentMemberMovesToOnline(self) -> None:
        """
        A persistent member's connection drops: its queued and unacked
        QoS 1 messages go to an online member at once; a sent QoS 2
        message stays and is completed when it comes back.
        """
        h = self.harness()
        a = persistent(h, "a", MQTT_5)
        a.subscribe(("$share/g/t", 2))
        (b,) = members(h, 1, MQTT_5, 2)
        pub = h.connected("pub")
        pub.publish("t", b"q2", 2)
        pub.publish("t", b"q1", 1)
        pub.publish("t", b"queued", 1)
        pub.received()
        sent = a.publishes()
        self.assertEqual([(p.payload, p.qos) for p in sent], [(b"q2", 2), (b"q1", 1)])
        a.lose()
        h.advance(0)
        self.assertEqual(sorted(payloads(b.publishes())), [b"q1", b"queued"])
        _, again = reconnect(h, "a", MQTT_5)
        self.assertEqual([(p.payload, p.dup) for p in again], [(b"q2", True)])

    def test_persistentMemberKeepsWithoutOnlineMember(self) -> None:
        """
        With no other member online, a persistent member keeps its
        messages (the other persistent member is not woken up for them)
        and gets them again when it comes back.
        """
        h = self.harness()
        a = persistent(h, "a", MQTT_311)
        a.subscribe(("$share/g/t", 1))
        other = persistent(h, "other", MQTT_311)
        other.subscribe(("$share/g/t", 1))
        other.lose()
        pub = h.connected("pub")
        for i in range(3):
            pub.publish("t", b"%d" % i, 1)
        self.assertEqual(payloads(a.publishes()), [b"0", b"1"])
        a.lose()
        h.advance(0)
        back, got = reconnect(h, "a", MQTT_311)
        self.assertEqual([(p.payload, p.dup) for p in got], [(b"0", True), (b"1", True)])
        for p in got:
            back.ack(p)
        self.assertEqual(payloads(back.publishes()), [b"2"])
        self.assertEqual(len(h.broker.sessions[("", "other")].pending), 0)

    def test_endingSessionGivesToOfflineMember(self) -> None:
        """
        A clean member that ends while the only other member is offline
        hands its messages to that one's offline queue, not to nobody.
        """
        h = self.harness()
        (a,) = members(h, 1, MQTT_311, 1, prefix="a")
        other = persistent(h, "other", MQTT_311)
        other.subscribe(("$share/g/t", 1))
        other.lose()
        pub = h.connected("pub")
        pub.publish("t", b"x", 1)
        self.assertEqual(payloads(a.publishes()), [b"x"])
        a.disconnect()
        a.finish_close()
        _, got = reconnect(h, "other", MQTT_311)
        self.assertEqual(payloads(got), [b"x"])

    def test_acknowledgedNotRedelivered(self) -> None:
        """
        What the lost member acknowledged goes nowhere else.
        """
        h = self.harness()
        a, b = members(h, 2, MQTT_311, 1)
        pub = h.connected("pub")
        pub.publish("t", b"x", 1)
        (p,) = a.publishes()
        a.ack(p)
        a.lose()
        h.advance(0)
        self.assertEqual(b.publishes(), [])

    def test_plainSubscriptionNotRedistributed(self) -> None:
        """
        Only what came through the group goes back to the group: the
        member's copy from its own plain subscription does not.
        """
        h = self.harness()
        a = h.connected("a")
        a.subscribe(("$share/g/t", 1), ("t", 1))
        (b,) = members(h, 1, MQTT_311, 1)
        pub = h.connected("pub")
        pub.publish("t", b"x", 1)
        self.assertEqual(payloads(a.publishes()), [b"x", b"x"])
        a.lose()
        h.advance(0)
        self.assertEqual(payloads(b.publishes()), [b"x"])

    def test_ackAfterMoveIgnored(self) -> None:
        """
        The moved messages are no longer inflight for the lost member:
        a late acknowledgement by a returning persistent client is
        harmless.
        """
        h = self.harness()
        a = persistent(h, "a", MQTT_311)
        a.subscribe(("$share/g/t", 1))
        (b,) = members(h, 1, MQTT_311, 1)
        pub = h.connected("pub")
        pub.publish("t", b"x", 1)
        (p,) = a.publishes()
        a.lose()
        h.advance(0)
        self.assertEqual(payloads(b.publishes()), [b"x"])
        back, got = reconnect(h, "a", MQTT_311)
        self.assertEqual(got, [])
        back.send(PubAck(p.packet_id))  # type: ignore[arg-type]
        self.assertEqual(back.received(), [])
        self.assertFalse(back.closed)
        self.assertEqual(h.broker.sessions[("", "a")].inflight, {})
