"""
Tests for L{vernemq.dist.service}: the distribution listener's port range,
where it binds, the default-cookie warning and the epmd publication.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from tests.epmdhelpers import BusyPortsReactor
from vernemq.config import config_from_text
from vernemq.dist.epmd.service import EpmdService
from vernemq.dist.node import Node
from vernemq.dist.service import (
    DistributionBindError,
    DistributionService,
    distributionServiceFromConfig,
    listenInterface,
    portRange,
)


def service(
    reactor: Any, range: tuple[int, int], cookie: str = "C", interface: str = "127.0.0.1"
) -> DistributionService:
    return DistributionService(Node("py@vm", cookie, reactor), reactor, range, interface)


class PortRangeTests(SynchronousTestCase):
    """The first free port of the range, as Erlang chooses it."""

    def test_helpers(self) -> None:
        """Unset means any port; a minimum alone means that port."""
        self.assertEqual((0, 0), portRange(None, None))
        self.assertEqual((0, 0), portRange(None, 7000))
        self.assertEqual((6000, 6000), portRange(6000, None))
        self.assertEqual((6000, 7999), portRange(6000, 7999))

    def test_skipsBusyPorts(self) -> None:
        """Ports in use are skipped in order."""
        reactor = BusyPortsReactor()
        reactor.busy = {9100, 9101}
        dist = service(reactor, (9100, 9103))
        dist.privilegedStartService()
        self.assertEqual(9102, dist.portNumber)
        self.assertEqual([(9102, "127.0.0.1")], [(p, i) for p, _, _, i in reactor.tcpServers])

    def test_exhausted(self) -> None:
        """Every port in use: the start fails with a message naming the range."""
        reactor = BusyPortsReactor()
        reactor.busy = {9100, 9101}
        dist = service(reactor, (9100, 9101))
        error = self.assertRaises(DistributionBindError, dist.privilegedStartService)
        self.assertIn("9100..9101", str(error))
        self.assertIn("erlang.distribution.port_range", str(error))
        self.assertIn("in use", str(error))

    def test_emptyRange(self) -> None:
        """A minimum above the maximum is an exhausted range, as in Erlang."""
        dist = service(MemoryReactorClock(), (9101, 9100))
        self.assertRaises(DistributionBindError, dist.privilegedStartService)

    def test_otherErrorStops(self) -> None:
        """Only "address in use" moves on; another error stops at once."""

        class Refusing(MemoryReactorClock):
            def listenTCP(
                self, port: int, factory: Any, backlog: int = 50, interface: str = ""
            ) -> Any:
                raise CannotListenError(interface, port, OSError(errno.EACCES, "Permission denied"))

        dist = service(Refusing(), (80, 90))
        error = self.assertRaises(DistributionBindError, dist.privilegedStartService)
        self.assertIn(":80 ", str(error))
        self.assertIn("Permission denied", str(error))

    def test_stop(self) -> None:
        """Stopping closes the listener and the node's connections."""
        reactor = MemoryReactorClock()
        dist = service(reactor, (0, 0))
        dist.startService()
        self.successResultOf(dist.stopService())
        self.assertIsNone(dist.port)
        self.assertTrue(dist.node._stopped)


class InterfaceAndCookieTests(SynchronousTestCase):
    """Where it binds, and the warning about the default cookie."""

    def test_listenInterface(self) -> None:
        """Loopback names listen on loopback; others on every interface."""
        self.assertEqual("127.0.0.1", listenInterface("VerneMQ@127.0.0.1"))
        self.assertEqual("127.0.0.1", listenInterface("a@localhost"))
        self.assertEqual("::1", listenInterface("a@::1"))
        self.assertEqual("0.0.0.0", listenInterface("VerneMQ@10.0.0.1"))
        self.assertEqual("0.0.0.0", listenInterface("py@vm"))
        self.assertEqual("::", listenInterface("a@fe80::1"))

    def warnings(self, cookie: str, interface: str) -> list[Any]:
        reactor = MemoryReactorClock()
        dist = service(reactor, (0, 0), cookie, interface)
        with capturedLogs() as events:
            dist.startService()
        self.addCleanup(dist.stopService)
        return [e for e in events if e["log_level"] == LogLevel.warn]

    def test_defaultCookieWarning(self) -> None:
        """The default cookie on a non-loopback address gives one warning."""
        [warning] = self.warnings("vmq", "0.0.0.0")
        self.assertIn("SECURITY WARNING", warning["log_format"])

    def test_noWarning(self) -> None:
        """No warning on loopback or with a private cookie."""
        self.assertEqual([], self.warnings("vmq", "127.0.0.1"))
        self.assertEqual([], self.warnings("s3cret", "0.0.0.0"))


class ConfigTests(SynchronousTestCase):
    """L{distributionServiceFromConfig} reads vernemq.conf."""

    def test_fromConfig(self) -> None:
        """nodename, cookie, port range and net_ticktime are used."""
        config = config_from_text(
            "nodename = py@vm\n"
            "distributed_cookie = s3cret\n"
            "erlang.distribution.port_range.minimum = 9100\n"
            "erlang.distribution.port_range.maximum = 9109\n"
            "erlang.distribution.net_ticktime = 8\n"
            "erlang.epmd.port = 14369\n"
        )
        dist = distributionServiceFromConfig(config, MemoryReactorClock(), None, environ={})
        node = dist.node
        self.assertEqual(
            ("py@vm", "s3cret", 8.0, 14369), (node.name, node.cookie, node.tickTime, node.epmdPort)
        )
        self.assertEqual(((9100, 9109), "0.0.0.0"), (dist.range, dist.interface))

    def test_publishes(self) -> None:
        """The short name and the bound port are published in epmd; creation adopted."""
        reactor = MemoryReactorClock()
        epmd = EpmdService(reactor, mode="client", port=14369)
        dist = DistributionService(
            Node("py@vm", "C", reactor), reactor, (9100, 9100), "127.0.0.1", epmd
        )
        dist.startService()
        [publication] = epmd.publications()
        self.assertEqual((b"py", 9100), (publication.entry.name, publication.entry.port))
        assert publication.onCreation is not None
        publication.onCreation(1234)
        self.assertEqual(1234, dist.node.creation)
        dist.stopService()
        self.assertEqual([], epmd.publications())
