"""L{vernemq.plugins.hooks}: the flags the publish hot path reads."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.brokerhelpers import Harness
from vernemq.interfaces import IAuthOnPublish, IOnPublish
from vernemq.plugins.hooks import NEXT, AllowAllACL, Error, HookChain


@implementer(IAuthOnPublish)
class DenyTopic:
    """An ACL that refuses one topic and passes on the rest."""

    def auth_on_publish(self, username: Any, sid: Any, qos: int, topic: str,
                        payload: bytes, retain: bool) -> object:
        return Error("not_allowed") if topic == "secret" else NEXT


@implementer(IOnPublish)
class Watcher:
    """Records every published topic."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def on_publish(self, username: Any, sid: Any, qos: int, topic: str,
                   payload: bytes, retain: bool) -> None:
        self.topics.append(topic)


class PublishFlagsTests(SynchronousTestCase):
    """C{publish_open} and C{observes_publish} follow the registered plugins."""

    def test_allowAllAloneIsOpen(self) -> None:
        """Only the allow-all ACL: the chain may be skipped."""
        chain = HookChain()
        self.assertFalse(chain.publish_open)
        acl = AllowAllACL()
        chain.register(acl)
        self.assertTrue(chain.publish_open)
        chain.unregister(acl)
        self.assertFalse(chain.publish_open)

    def test_anotherAclCloses(self) -> None:
        """Any other publish hook makes the broker run the chain again."""
        chain = HookChain()
        chain.register(AllowAllACL())
        deny = DenyTopic()
        chain.register(deny, priority=-1)
        self.assertFalse(chain.publish_open)
        chain.unregister(deny)
        self.assertTrue(chain.publish_open)

    def test_observesPublish(self) -> None:
        """C{on_publish} plugins are noticed when added and removed."""
        chain = HookChain()
        watcher = Watcher()
        chain.register(watcher)
        self.assertTrue(chain.observes_publish)
        chain.unregister(watcher)
        self.assertFalse(chain.observes_publish)


class BrokerHonoursChainTests(SynchronousTestCase):
    """The broker's skip of the chain never skips a real ACL."""

    def test_denyingAclAddedLaterIsConsulted(self) -> None:
        """An ACL registered after start refuses its topic (MQTT 3.1: dropped); others flow."""
        h = Harness()
        self.assertTrue(h.broker.hooks.publish_open)
        h.broker.hooks.register(DenyTopic(), priority=-1)
        watcher = Watcher()
        h.broker.hooks.register(watcher)
        sub = h.connected("sub")
        sub.subscribe("#")
        pub = h.connected("pub", level=3)
        pub.publish("secret", b"x")
        pub.publish("open", b"y")
        self.assertEqual(["open"], [p.topic for p in sub.publishes()])
        self.assertEqual(["open"], watcher.topics)
