"""L{vernemq.node.makeNodeService} on a memory reactor."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import config_from_text
from vernemq.dist.connection import AcceptorFactory
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
        bound = sorted(
            (port, interface)
            for port, factory, _, interface in reactor.tcpServers
            if not isinstance(factory, AcceptorFactory)
        )
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
        self.assertEqual(
            [1883],
            [p for p, f, *_ in reactor.tcpServers if not isinstance(f, AcceptorFactory)],
        )


class DistributionCompositionTests(SynchronousTestCase):
    """The node composes the Erlang distribution listener."""

    def test_distributionListens(self) -> None:
        """
        The node binds a distribution port (any port by default, on
        loopback for the default C{VerneMQ@127.0.0.1}) and exposes its
        L{vernemq.dist.node.Node}.
        """
        config = config_from_text("listener.tcp.default = 127.0.0.1:1883\n")
        reactor = MemoryReactorClock()
        node = makeNodeService(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        dist = [
            (port, interface)
            for port, factory, _, interface in reactor.tcpServers
            if isinstance(factory, AcceptorFactory)
        ]
        self.assertEqual([(0, "127.0.0.1")], dist)
        assert node.dist is not None
        self.assertEqual("VerneMQ@127.0.0.1", node.dist.name)

    def test_distributionPublishedInEpmd(self) -> None:
        """
        With epmd on, the node publishes its short name and distribution
        port.
        """
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "nodename = py@127.0.0.1\n"
            "erlang.distribution.port_range.minimum = 9100\n"
            "erlang.epmd.mode = client\n"
        )
        reactor = MemoryReactorClock()
        node = makeNodeService(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        assert node.epmd is not None
        [publication] = node.epmd.publications()
        self.assertEqual((b"py", 9100), (publication.entry.name, publication.entry.port))
