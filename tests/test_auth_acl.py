"""
Tests for L{vernemq.auth.acl}: the vmq.acl format, the C{vmq_acl} plugin,
its reloads and the broker's reactions to refusals.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.brokerhelpers import Harness
from vernemq.auth.acl import VmqACL, covers, parse_acl
from vernemq.interfaces import (
    IAuthOnPublish,
    IAuthOnPublishM5,
    IAuthOnSubscribe,
    IAuthOnSubscribeM5,
    IPlugin,
)
from vernemq.mqtt.packets import ConnAck, PubAck, Publish, SubAck, Subscribe, Subscription
from vernemq.plugins.hooks import NEXT, OK, HookChain, Ok

#: VerneMQ's own test ACL (apps/vmq_acl/priv/test.acl), in spirit.
EXAMPLE = """\
# for everybody
topic read /test/+/nana
topic write /test/1/nana

user graf
topic /tmp/all
topic read sensors/#

pattern read /test/%u/user
pattern write /test/%c/user/%u
pattern %m/devices/%c/#
"""


def split(topic: str) -> tuple[str, ...]:
    return tuple(topic.split("/"))


class CoversTests(SynchronousTestCase):
    """L{covers}: rule filters against topic names and filters."""

    def test_names(self) -> None:
        """For topic names it is MQTT matching."""
        for rule, topic, expected in [
            ("a/b", "a/b", True),
            ("a/b", "a/c", False),
            ("a/+", "a/b", True),
            ("a/+", "a/b/c", False),
            ("a/#", "a", True),
            ("a/#", "a/b/c", True),
            ("#", "x/y", True),
            ("+/+", "a", False),
            ("/+", "/x", True),
        ]:
            self.assertEqual(covers(split(rule), split(topic)), expected, (rule, topic))

    def test_filters(self) -> None:
        """A filter is covered when every topic it matches is."""
        for rule, wanted, expected in [
            ("a/+", "a/+", True),
            ("a/#", "a/+/c", True),
            ("a/+", "a/#", False),  # VerneMQ would allow this one
            ("+", "#", False),
            ("a/b", "a/+", False),
            ("#", "#", True),
            ("a/#", "a/#", True),
        ]:
            self.assertEqual(covers(split(rule), split(wanted)), expected, (rule, wanted))


class ParseTests(SynchronousTestCase):
    """L{parse_acl}."""

    def test_example(self) -> None:
        """Everybody, user and pattern rules of each kind."""
        acl = parse_acl(EXAMPLE.splitlines())
        self.assertEqual(acl.problems, [])
        self.assertEqual(acl.read.everybody, [split("/test/+/nana")])
        self.assertEqual(acl.write.everybody, [split("/test/1/nana")])
        self.assertEqual(acl.read.users["graf"], [split("/tmp/all"), split("sensors/#")])
        self.assertEqual(acl.write.users["graf"], [split("/tmp/all")])
        self.assertEqual(len(acl.read.patterns), 2)
        self.assertEqual(len(acl.write.patterns), 2)
        self.assertFalse(acl.allows_every_publish)

    def test_problems(self) -> None:
        """Unknown lines and invalid filters are skipped, by line number."""
        acl = parse_acl(["topic a/#/b", "allow all", "topic ok", "user", "topic readwrite x"])
        self.assertEqual([n for n, _ in acl.problems], [1, 2, 4, 5])
        self.assertEqual(acl.read.everybody, [("ok",), ("readwrite x",)])

    def test_blanks(self) -> None:
        """Leading and trailing blanks and CRs are ignored."""
        acl = parse_acl(["  topic   a/b \r", "\tuser  bob ", "topic write c"])
        self.assertEqual(acl.read.everybody, [split("a/b")])
        self.assertEqual(acl.write.users, {"bob": [("c",)]})

    def test_everything(self) -> None:
        """topic #, topic write #, pattern # grant every publish."""
        for line in ["topic #", "topic write #", "pattern #", "pattern write #"]:
            self.assertTrue(parse_acl([line]).allows_every_publish, line)
        for line in ["topic read #", "user u\ntopic #", "topic a/#"]:
            self.assertFalse(parse_acl(line.splitlines()).allows_every_publish, line)


class PluginTests(SynchronousTestCase):
    """L{VmqACL} answers."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(EXAMPLE)
        self.clock = Clock()
        self.plugin = VmqACL(self.path, 10, self.clock)
        self.plugin.check()

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * len(text)))

    def pub(
        self, user: str | None, topic: str, client: str = "c", mountpoint: str = ""
    ) -> object:
        return self.plugin.auth_on_publish(user, (mountpoint, client), 0, topic, b"", False)

    def sub(self, user: str | None, *topics: str, client: str = "c") -> object:
        return self.plugin.auth_on_subscribe(user, ("", client), [(t, 1) for t in topics])

    def test_interfaces(self) -> None:
        """It is a named publish/subscribe authorization plugin."""
        for iface in (IPlugin, IAuthOnPublish, IAuthOnPublishM5, IAuthOnSubscribe,
                      IAuthOnSubscribeM5):
            self.assertTrue(verifyObject(iface, self.plugin), iface)

    def test_everybody(self) -> None:
        """Lines before any user line apply to everybody, anonymous included."""
        self.assertIs(self.pub(None, "/test/1/nana"), OK)
        self.assertIs(self.pub("x", "/test/1/nana"), OK)
        self.assertIs(self.pub(None, "/test/2/nana"), NEXT)
        self.assertIs(self.sub(None, "/test/2/nana"), OK)
        self.assertIs(self.sub(None, "/test/+/nana"), OK)
        self.assertIs(self.sub(None, "/test/#"), NEXT)

    def test_user(self) -> None:
        """User lines apply to that user name only."""
        self.assertIs(self.pub("graf", "/tmp/all"), OK)
        self.assertIs(self.pub("other", "/tmp/all"), NEXT)
        self.assertIs(self.pub(None, "/tmp/all"), NEXT)
        self.assertIs(self.pub("graf", "sensors/a"), NEXT)
        self.assertIs(self.sub("graf", "sensors/#"), OK)
        self.assertIs(self.sub("other", "sensors/#"), NEXT)

    def test_patterns(self) -> None:
        """%u, %c, %m are replaced; %u never matches an anonymous client."""
        self.assertIs(self.sub("ann", "/test/ann/user"), OK)
        self.assertIs(self.sub("ann", "/test/bob/user"), NEXT)
        self.assertIs(self.sub(None, "/test/%u/user"), NEXT)
        self.assertIs(self.pub("ann", "/test/c1/user/ann", client="c1"), OK)
        self.assertIs(self.pub("ann", "/test/c2/user/ann", client="c1"), NEXT)
        self.assertIs(self.pub(None, "mp/devices/c1/x", client="c1", mountpoint="mp"), OK)
        self.assertIs(self.pub(None, "/devices/c1/x", client="c1"), OK)
        self.assertIs(self.pub(None, "mp/devices/c2/x", client="c1", mountpoint="mp"), NEXT)

    def test_wildcardValues(self) -> None:
        """A user name or client id cannot turn a pattern into a wildcard."""
        self.assertIs(self.sub("+", "/test/+/user"), NEXT)
        self.assertIs(self.sub("#", "/test/#"), NEXT)
        self.assertIs(self.pub(None, "/devices/a/b/x", client="a/b"), NEXT)

    def test_partialSubscribe(self) -> None:
        """Only the refused filters are refused."""
        self.assertEqual(
            self.sub("graf", "sensors/1", "secret/1", "/tmp/all"),
            Ok({"topics": [("sensors/1", 1), ("secret/1", None), ("/tmp/all", 1)]}),
        )
        self.assertEqual(
            self.plugin.auth_on_subscribe_m5("graf", ("", "c"), [("sensors/1", 2)], {}), OK
        )

    def test_shared(self) -> None:
        """A shared subscription is checked by its filter."""
        self.assertIs(self.sub("graf", "$share/g/sensors/#"), OK)
        self.assertIs(self.sub("graf", "$share/g/other/#"), NEXT)

    def test_m5(self) -> None:
        """The _m5 hooks answer the same."""
        self.assertIs(
            self.plugin.auth_on_publish_m5(None, ("", "c"), 1, "/test/1/nana", b"", False, {}),
            OK,
        )
        self.assertIs(
            self.plugin.auth_on_publish_m5(None, ("", "c"), 1, "nope", b"", False, {}), NEXT
        )

    def test_missingFile(self) -> None:
        """An ACL file that cannot be read allows nothing."""
        plugin = VmqACL(self.path + ".missing", 10, self.clock)
        plugin.check()
        self.assertIs(plugin.auth_on_publish(None, ("", "c"), 0, "a", b"", False), NEXT)
        self.assertFalse(plugin.allows_every_publish)

    def test_reloadRefreshesChain(self) -> None:
        """
        A reload that grants (or stops granting) everything to everybody
        updates the chain's publish_open flag.
        """
        hooks = HookChain()
        plugin = VmqACL(self.path, 10, self.clock, hooks.refresh)
        plugin.check()
        hooks.register(plugin)
        plugin.startService()
        self.addCleanup(plugin.stopService)
        self.assertFalse(hooks.publish_open)
        self.write("topic #\n")
        self.clock.advance(10)
        self.assertTrue(plugin.allows_every_publish)
        self.assertTrue(hooks.publish_open)
        self.write("topic a\n")
        self.clock.advance(10)
        self.assertFalse(hooks.publish_open)
        self.assertIs(plugin.auth_on_publish(None, ("", "c"), 0, "b", b"", False), NEXT)


class BrokerTests(SynchronousTestCase):
    """Refused PUBLISH and SUBSCRIBE as each protocol version sees them."""

    def harness(self, acl: str, extra: str = "") -> Harness:
        self.path = self.mktemp()
        with open(self.path, "w") as f:
            f.write(acl)
        return Harness(
            "allow_anonymous = on\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            f"vmq_acl.acl_file = {self.path}\n" + extra
        )

    def test_defaultAclIsOpen(self) -> None:
        """The shipped ACL keeps the broker's publish fast path."""
        h = Harness()
        self.assertTrue(h.broker.hooks.publish_open)

    def test_restrictedAclClosesFastPath(self) -> None:
        """Any other ACL runs the publish chain."""
        h = self.harness("topic a/#\n")
        self.assertFalse(h.broker.hooks.publish_open)

    def test_subscribeRefusedPerTopic(self) -> None:
        """SUBACK 0x80 (3.x) / 0x87 (5.0) for the refused filter only."""
        h = self.harness("topic read a/#\n")
        for level, refused in [(3, 0x80), (4, 0x80), (5, 0x87)]:
            c = h.connected(f"c{level}", level)
            c.send(Subscribe(1, [Subscription("a/b", 1), Subscription("b/c", 1)]))
            self.assertEqual(c.received(), [SubAck(1, [1, refused])])

    def test_publishRefusedV5(self) -> None:
        """MQTT 5.0: PUBACK 0x87, nothing routed, connection kept."""
        h = self.harness("topic read #\ntopic write ok\n")
        sub = h.connected("s", 5)
        sub.send(Subscribe(1, [Subscription("#", 0)]))
        sub.received()
        pub = h.connected("p", 5)
        pub.send(Publish("nope", b"x", qos=1, packet_id=7))
        self.assertEqual(pub.received(), [PubAck(7, 0x87)])
        pub.send(Publish("nope", b"x", qos=0))
        self.assertFalse(pub.closed)
        pub.send(Publish("ok", b"y", qos=0))
        self.assertEqual([p.topic for p in sub.publishes()], ["ok"])

    def test_publishRefused311(self) -> None:
        """MQTT 3.1.1: the connection is closed."""
        h = self.harness("topic write ok\n")
        pub = h.connected("p", 4)
        pub.send(Publish("nope", b"x", qos=0))
        self.assertTrue(pub.closed)

    def test_publishRefused31(self) -> None:
        """MQTT 3.1: acknowledged and dropped ..."""
        h = self.harness("topic read #\n")
        sub = h.connected("s", 4)
        sub.send(Subscribe(1, [Subscription("#", 0)]))
        sub.received()
        pub = h.connected("p", 3)
        pub.send(Publish("nope", b"x", qos=1, packet_id=3))
        self.assertEqual(pub.received(), [PubAck(3)])
        self.assertFalse(pub.closed)
        self.assertEqual(sub.publishes(), [])

    def test_publishRefused31Disconnect(self) -> None:
        """... or closed with disconnect_on_unauthorized_publish_v3."""
        h = self.harness("topic read #\n", "disconnect_on_unauthorized_publish_v3 = on\n")
        pub = h.connected("p", 3)
        pub.send(Publish("nope", b"x", qos=1, packet_id=3))
        self.assertTrue(pub.closed)

    def test_willRefused(self) -> None:
        """A will the ACL does not allow refuses the CONNECT (5 / 0x87)."""
        from vernemq.mqtt.packets import Will

        h = self.harness("topic ok\n")
        for level, code in [(4, 5), (5, 0x87)]:
            ack = h.client(level).connect("w", will=Will("nope", b"bye"))
            self.assertIsInstance(ack, ConnAck)
            assert isinstance(ack, ConnAck)
            self.assertEqual(ack.reason_code, code)

    def test_reloadTakesEffect(self) -> None:
        """A changed file decides the next publish, no restart."""
        h = self.harness("topic write a\n")
        for plugin in h.broker.auth_plugins:
            plugin.startService()
            self.addCleanup(plugin.stopService)
        pub = h.connected("p", 5)
        pub.send(Publish("b", b"x", qos=1, packet_id=1))
        self.assertEqual(pub.received(), [PubAck(1, 0x87)])
        with open(self.path, "w") as f:
            f.write("topic write a\ntopic write b\n")
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        h.advance(10)
        pub.send(Publish("b", b"x", qos=1, packet_id=2))
        self.assertEqual(pub.received(), [PubAck(2, 0x10)])
