"""L{vernemq.node.makeNodeService} on a memory reactor."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import config_from_text
from vernemq.listening import ListenerService
from vernemq.node import makeNodeService


class MakeNodeServiceTests(SynchronousTestCase):
    """The node composes one listening service per served MQTT listener."""

    def test_listenersBoundWhereConfigured(self) -> None:
        """Two tcp listeners bind their own interface and port."""
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.other = 127.0.0.2:1884\n"
            "allow_anonymous = on\n"
        )
        reactor = MemoryReactorClock()
        node = makeNodeService(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        bound = sorted((port, interface) for port, _, _, interface in reactor.tcpServers)
        self.assertEqual([(1883, "127.0.0.1"), (1884, "127.0.0.2")], bound)
        self.assertEqual(2, len(node.listeners()))
        self.assertTrue(all(isinstance(s, ListenerService) for s in node.listeners()))

    def test_manholeOffByDefault(self) -> None:
        """Without C{manhole = on} nothing but the MQTT listener binds."""
        config = config_from_text("listener.tcp.default = 127.0.0.1:1883\n")
        reactor = MemoryReactorClock()
        node = makeNodeService(config, reactor)
        node.startService()
        self.addCleanup(node.stopService)
        self.assertEqual([1883], [p for p, *_ in reactor.tcpServers])
