"""
L{vernemq.dist.epmd.service}: the node serves epmd or registers with the
one running, and takes over when it goes away; on a memory reactor.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.epmdhelpers import BusyPortsReactor, ServerConnection, completeClient, refuseClient
from vernemq.config import config_from_text
from vernemq.dist.epmd import codec
from vernemq.dist.epmd.server import EpmdServerFactory
from vernemq.dist.epmd.service import EpmdService, epmdServiceFromConfig, epmdSettings
from vernemq.node import makeNodeService

PORT = 14369


class ServiceTestCase(SynchronousTestCase):
    """An L{EpmdService} on a L{BusyPortsReactor}, and a foreign epmd."""

    mode = "auto"

    def setUp(self) -> None:
        self.reactor = BusyPortsReactor()
        self.reactor.advance(1_000_000)
        self.foreign = EpmdServerFactory(Clock(), PORT)
        self.service = EpmdService(self.reactor, mode=self.mode, port=PORT)
        self.creations: list[int] = []
        self.pumps: list[object] = []

    def start(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.reactor.advance(0)

    def answer(self, factory: EpmdServerFactory | None = None) -> None:
        """Let the pending client connection reach C{factory} (the foreign epmd)."""
        _, _, pump = completeClient(self.reactor, factory or self.foreign)
        pump.flush()
        self.pumps.append(pump)
        self.reactor.advance(0)

    def refuse(self) -> None:
        """Nothing listens: refuse the pending connection."""
        refuseClient(self.reactor)
        self.reactor.advance(0)

    def epmdPorts(self) -> list[tuple[int, str]]:
        return [(p, i) for p, _, _, i in self.reactor.tcpServers]

    def publish(self, name: str = "a", port: int = 1234) -> None:
        self.service.publish(name, port, onCreation=self.creations.append)
        self.reactor.advance(0)

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()  # type: ignore[attr-defined]
        self.reactor.advance(0)


class AutoModeTests(ServiceTestCase):
    """C{auto}: serve when nothing answers, else register; take over."""

    def test_startDoesNothingSynchronously(self) -> None:
        """startService binds nothing and waits for nothing."""
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual([], self.reactor.tcpServers)

    def test_servesWhenNothingAnswers(self) -> None:
        """A refused probe makes the node serve epmd on 0.0.0.0."""
        self.start()
        self.assertEqual([("127.0.0.1", PORT)], [c[:2] for c in self.reactor.tcpClients])
        self.refuse()
        self.assertTrue(self.service.serving)
        self.assertEqual([(PORT, "0.0.0.0")], self.epmdPorts())

    def test_publishWhileServing(self) -> None:
        """A publication registers in our own epmd and reports the creation."""
        self.start()
        self.refuse()
        self.publish()
        assert self.service.server is not None
        self.assertEqual(1234, self.service.server.lookup(b"a").port)  # type: ignore[union-attr]
        self.assertEqual([1_000_001], self.creations)
        reply = ServerConnection(self.service.server).send(codec.encodeNamesRequest())
        self.assertEqual((PORT, [("a", 1234)]), codec.parseNamesReply(reply))

    def test_publishFiresWithCreation(self) -> None:
        """L{EpmdService.publish} fires with the first creation."""
        self.start()
        self.refuse()
        d = self.service.publish("a", 1)
        self.reactor.advance(0)
        self.assertEqual(1_000_001, self.successResultOf(d))

    def test_registersWithRunningEpmd(self) -> None:
        """When an epmd answers, publications register there and stay."""
        self.start()
        self.answer()
        self.assertFalse(self.service.serving)
        self.publish()
        self.answer()  # the probe
        self.answer()  # ALIVE2
        self.assertEqual(1234, self.foreign.lookup(b"a").port)  # type: ignore[union-attr]
        self.assertEqual(1, len(self.creations))
        self.assertEqual([], self.epmdPorts())
        # No polling while a registration connection is held.
        self.reactor.advance(10)
        self.assertEqual([], self.reactor.tcpClients)

    def test_takeOverWhenEpmdGoesAway(self) -> None:
        """
        The epmd we registered with closes: we serve epmd ourselves and
        register again, at once.
        """
        self.start()
        self.answer()
        self.publish()
        self.answer()
        self.answer()
        self.foreign.closeAll()
        self.flush()
        self.refuse()
        self.assertTrue(self.service.serving)
        assert self.service.server is not None
        self.assertIsNotNone(self.service.server.lookup(b"a"))
        self.assertEqual(2, len(self.creations))

    def test_anotherNodeWonTheRace(self) -> None:
        """
        The port is taken by the time we listen: register with the winner
        after C{retryInterval}.
        """
        self.start()
        self.answer()
        self.publish()
        self.answer()
        self.answer()
        self.foreign.closeAll()
        self.flush()
        self.reactor.busy.add(PORT)
        self.refuse()
        self.assertFalse(self.service.serving)
        self.assertEqual([], self.reactor.tcpClients)
        self.reactor.advance(0.5)
        winner = EpmdServerFactory(Clock(), PORT)
        self.answer(winner)
        self.answer(winner)
        self.assertIsNotNone(winner.lookup(b"a"))
        self.assertEqual(2, len(self.creations))

    def test_takeOverWithoutPublicationsWithinTwoSeconds(self) -> None:
        """With nothing registered, the node probes every second and takes over."""
        self.start()
        self.answer()
        self.assertEqual([], self.reactor.tcpClients)
        self.reactor.advance(1)
        self.refuse()
        self.assertTrue(self.service.serving)

    def test_killStopsServing(self) -> None:
        """An accepted KILL stops our epmd; we do not serve again."""
        self.start()
        self.refuse()
        assert self.service.server is not None
        conn = ServerConnection(self.service.server)
        self.assertEqual(b"OK", conn.send(codec.encodeKillRequest()))
        self.assertFalse(self.service.serving)
        self.reactor.advance(0.5)
        self.refuse()
        self.assertFalse(self.service.serving)
        self.reactor.advance(0.5)
        self.assertEqual(1, len(self.reactor.tcpClients))

    def test_killRefusedWithPublications(self) -> None:
        """Our own publications count as live nodes: KILL answers C{NO}."""
        self.start()
        self.refuse()
        self.publish()
        assert self.service.server is not None
        self.assertEqual(b"NO", ServerConnection(self.service.server).send(b"\x00\x01k"))
        self.assertTrue(self.service.serving)

    def test_stopServiceUnregisters(self) -> None:
        """Stopping the service closes the registration connection."""
        self.start()
        self.answer()
        self.publish()
        self.answer()
        self.answer()
        self.service.stopService()
        self.flush()
        self.assertIsNone(self.foreign.lookup(b"a"))
        self.assertEqual([], self.reactor.tcpClients)

    def test_stopServiceCancelsProbe(self) -> None:
        """A probe in flight is cancelled by stopService; nothing follows."""
        self.start()
        self.assertEqual(1, len(self.reactor.tcpClients))
        self.service.stopService()
        self.reactor.advance(10)
        self.assertEqual([], self.epmdPorts())

    def test_unpublish(self) -> None:
        """unpublish unregisters the name from our epmd."""
        self.start()
        self.refuse()
        self.publish()
        self.service.unpublish("a")
        assert self.service.server is not None
        self.assertIsNone(self.service.server.lookup(b"a"))
        self.assertEqual([], self.service.publications())


class OtherModesTests(ServiceTestCase):
    """C{serve}, C{client} and C{off}."""

    def test_serveModeListensAtOnce(self) -> None:
        """C{serve} listens without probing."""
        self.service = EpmdService(self.reactor, mode="serve", port=PORT)
        self.start()
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual([(PORT, "0.0.0.0")], self.epmdPorts())

    def test_serveModeBusyPortRetries(self) -> None:
        """C{serve} on a busy port: one error log, retried, never raises."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.reactor.busy.add(PORT)
        self.service = EpmdService(self.reactor, mode="serve", port=PORT)
        self.start()
        self.reactor.advance(5)
        self.reactor.advance(5)
        self.assertFalse(self.service.serving)
        errors = [e for e in events if "cannot serve epmd" in str(e.get("log_format"))]
        self.assertEqual(1, len(errors))
        self.reactor.busy.clear()
        self.reactor.advance(5)
        self.assertTrue(self.service.serving)

    def test_clientModeNeverServes(self) -> None:
        """C{client} retries registering but never listens."""
        self.service = EpmdService(self.reactor, mode="client", port=PORT)
        self.start()
        self.refuse()
        self.reactor.advance(0.5)
        self.refuse()
        self.assertEqual([], self.epmdPorts())
        self.reactor.advance(0.5)
        self.answer()
        self.publish()
        self.answer()
        self.answer()
        self.assertIsNotNone(self.foreign.lookup(b"a"))

    def test_offDoesNothing(self) -> None:
        """C{off} neither connects nor listens."""
        self.service = EpmdService(self.reactor, mode="off", port=PORT)
        self.start()
        self.service.publish("a", 1)
        self.reactor.advance(10)
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual([], self.reactor.tcpServers)

    def test_unknownMode(self) -> None:
        """An unknown mode is a programming error."""
        self.assertRaises(ValueError, EpmdService, self.reactor, mode="sometimes")


class ConfigTests(SynchronousTestCase):
    """The vernemq.conf keys, the environment and the node's composition."""

    def settings(self, text: str, environ: dict[str, str]) -> tuple[str, int, tuple[str, ...]]:
        config = config_from_text(text)
        return epmdSettings(config, config.line_of, environ)

    def test_defaults(self) -> None:
        """auto, 4369, all IPv4 interfaces."""
        self.assertEqual(("auto", 4369, ("0.0.0.0",)), self.settings("", {}))

    def test_environmentDefaults(self) -> None:
        """ERL_EPMD_PORT / ERL_EPMD_ADDRESS apply when the file is silent."""
        self.assertEqual(
            ("auto", 14369, ("10.0.0.1", "127.0.0.1")),
            self.settings("", {"ERL_EPMD_PORT": "14369", "ERL_EPMD_ADDRESS": "10.0.0.1"}),
        )

    def test_fileWins(self) -> None:
        """Keys set in the file win over the environment."""
        self.assertEqual(
            ("serve", 5000, ("127.0.0.1",)),
            self.settings(
                "erlang.epmd.mode = serve\nerlang.epmd.port = 5000\n"
                "erlang.epmd.address = 127.0.0.1\n",
                {"ERL_EPMD_PORT": "14369", "ERL_EPMD_ADDRESS": "10.0.0.1"},
            ),
        )

    def test_badEnvironmentPortIgnored(self) -> None:
        """A nonsense ERL_EPMD_PORT leaves the default."""
        self.assertEqual(4369, self.settings("", {"ERL_EPMD_PORT": "nope"})[1])

    def test_offGivesNoService(self) -> None:
        """C{erlang.epmd.mode = off}: no service at all."""
        config = config_from_text("erlang.epmd.mode = off\n")
        self.assertIsNone(epmdServiceFromConfig(config, BusyPortsReactor(), {}))

    def test_nodeComposesEpmd(self) -> None:
        """The node has an epmd service; serving binds the configured port."""
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "erlang.epmd.mode = serve\nerlang.epmd.port = 14370\n"
        )
        reactor = BusyPortsReactor()
        node = makeNodeService(config, reactor)
        assert node.epmd is not None
        self.assertEqual(14370, node.epmd.port)
        node.startService()
        self.addCleanup(node.stopService)
        reactor.advance(0)
        self.assertEqual([1883, 14370], sorted(p for p, *_ in _withoutDistribution(reactor)))

    def test_nodeStartsWithEpmdPortBusy(self) -> None:
        """A busy epmd port neither fails nor delays the node's start."""
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\nerlang.epmd.mode = serve\n"
        )
        reactor = BusyPortsReactor()
        reactor.busy.add(4369)
        node = makeNodeService(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        reactor.advance(0)
        self.assertEqual([1883], [p for p, *_ in _withoutDistribution(reactor)])


class DuplicateTests(ServiceTestCase):
    """A name already registered by someone else."""

    def test_duplicateRetriedAndLoggedOnce(self) -> None:
        """The refusal is logged once; registration is retried until the name frees."""
        from twisted.logger import globalLogPublisher

        from vernemq.dist.epmd.registry import NoOwner

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        squatter = self.foreign.registry.register(codec.NodeEntry(b"a", 9), NoOwner())
        self.start()
        self.answer()
        self.publish()
        for _ in range(3):
            self.answer()
            self.answer()
            self.reactor.advance(0.5)
        warnings = [e for e in events if "name is in use" in str(e.get("log_format"))]
        self.assertEqual(1, len(warnings))
        self.foreign.registry.unregister(squatter)
        self.answer()
        self.answer()
        self.assertEqual(1234, self.foreign.lookup(b"a").port)  # type: ignore[union-attr]
        self.assertEqual(1, len(self.creations))

    def test_stopOfOurOwnPublication(self) -> None:
        """C{epmd -stop} on the epmd we serve removes the name for good."""
        self.service = EpmdService(self.reactor, mode="serve", port=PORT)
        self.start()
        self.publish()
        assert self.service.server is not None
        self.service.server.relaxed = True
        reply = ServerConnection(self.service.server).send(codec.encodeStopRequest(b"a"))
        self.assertEqual(b"STOPPED", reply)
        self.reactor.advance(10)
        self.assertIsNone(self.service.server.lookup(b"a"))
        self.assertTrue(self.service.publications()[0].refused)


def _withoutDistribution(reactor: BusyPortsReactor) -> list[tuple[object, ...]]:
    """The reactor's TCP servers but the node's Erlang distribution listener."""
    from vernemq.dist.connection import AcceptorFactory

    return [s for s in reactor.tcpServers if not isinstance(s[1], AcceptorFactory)]
