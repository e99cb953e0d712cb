# mypy: disable-error-code="no-untyped-call"
"""
The data channel over TLS (C{listener.vmqs}) on real sockets: two data
channel services on 127.0.0.1 (ephemeral ports) with certificates from
L{tests.tlshelpers} exchange items over TLS; a peer whose certificate the
CA did not sign is refused with one log line and gets nothing through; a
peer whose certificate the CA signed for another host, claiming a member's
node name, is refused the same way (C{certificate_name_mismatch}) unless
C{verify_nodename = off}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.test_cluster_datachannel_sockets import Collector, exchangeBothWays, until
from tests.test_cluster_datatls import NodeCertificates
from tests.tlshelpers import Certificates
from vernemq.cluster.datachannel import (
    DataChannelService,
    DataChannelSettings,
    PeerAddress,
    RoutedMessage,
)
from vernemq.cluster.datatls import DataChannelTLS
from vernemq.config.loader import ListenerSpec
from vernemq.listeners.tls import ClientTLS, ServerTLS

A = "a@127.0.0.1"
B = "b@127.0.0.1"
E = "e@127.0.0.1"
COUNT = 2_000


@implementer(ILogObserver)
class Warnings:
    """Keeps the warnings (and worse) logged while the test runs."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            self.events.append(event)


class TLSNodes(TestCase):
    """
    Nodes with C{vmqs} listeners (C{require_certificate = on}), real TLS
    on loopback.
    """

    timeout = 60

    def setUp(self) -> None:
        self.certs = Certificates(self.mktemp())
        self.services: dict[str, DataChannelService] = {}
        self.warnings = Warnings()
        globalLogPublisher.addObserver(self.warnings)
        self.addCleanup(globalLogPublisher.removeObserver, self.warnings)

    def node(
        self,
        name: str,
        listener: str,
        trusted: bool,
        handler: Collector,
        settings: dict[str, Any] | None = None,
        members: tuple[str, ...] = (A, B, E),
    ) -> DataChannelService:
        """
        A started data channel for C{name} with one C{vmqs} listener: the
        CA-signed certificate, or (C{trusted=False}) one from another CA;
        the test CA as cafile either way.  C{settings} replaces those
        listener settings.
        """
        if settings is None:
            settings = {
                "certfile": self.certs.server if trusted else self.certs.untrusted,
                "keyfile": self.certs.serverKey if trusted else self.certs.untrustedKey,
                "cafile": self.certs.ca,
                "require_certificate": True,
                "verify_nodename": True,
                "tls_version": "tlsv1.2",
                "depth": 1,
                "tls_handshake_timeout": 5000,
            }
        label = f"listener.vmqs.{listener}"
        tls = DataChannelTLS({listener: (ServerTLS(settings, label), ClientTLS(settings, label))})

        def resolve(node: str) -> PeerAddress | None:
            return self.services[node].connect_params()

        service = DataChannelService(
            name,
            handler,
            lambda node: node in members,
            resolve,
            reactor,
            listeners=[ListenerSpec("vmqs", listener, "127.0.0.1", 0, None, settings)],
            # One attempt per test: a refused peer would retry every second.
            settings=DataChannelSettings(reconnect_interval=30.0),
            server_endpoint_factory=tls.server_endpoint,
            client_endpoint_factory=tls.client_endpoint,
        )
        self.services[name] = service
        service.startService()
        self.addCleanup(service.stopService)
        return service


class TLSDataChannelTests(TLSNodes):
    """The data channel over TLS between nodes of one CA."""

    def test_exchange(self) -> Deferred[None]:
        """
        Two nodes whose certificates the CA signed exchange items both
        ways over TLS, in order, none lost: half sent before the link is
        up (buffered), half after.
        """
        return Deferred.fromCoroutine(self._exchange())

    async def _exchange(self) -> None:
        collectors = {A: Collector(COUNT), B: Collector(COUNT)}
        for name in (A, B):
            self.node(name, "clustering", True, collectors[name])
        params = self.services[A].connect_params()
        assert params is not None
        self.assertTrue(params.tls)
        await exchangeBothWays(self, self.services, collectors, COUNT)
        for receiver, sender in ((A, B), (B, A)):
            self.assertEqual(self.services[receiver].inbound_nodes(), [sender])
        self.assertEqual(self.warnings.events, [])

    def test_untrustedPeer(self) -> Deferred[None]:
        """
        A peer whose certificate does not verify against the cafile is
        refused: its connection to us fails the handshake with one log
        line on our listener, our connection to it fails with one line on
        our link, and no item crosses either way.
        """
        return Deferred.fromCoroutine(self._untrusted())

    async def _untrusted(self) -> None:
        collectors = {A: Collector(1), E: Collector(1)}
        good = self.node(A, "clustering", True, collectors[A])
        bad = self.node(E, "rogue", False, collectors[E])
        fromE = bad.add_peer(A)
        toE = good.add_peer(E)
        self.assertTrue(fromE.send(RoutedMessage("t", b"from e").to_item()))
        self.assertTrue(toE.send(RoutedMessage("t", b"to e").to_item()))

        def refused() -> list[LogEvent]:
            return [
                e for e in self.warnings.events if e.get("listener") == "listener.vmqs.clustering"
            ]

        def unreachable(peer: str) -> list[LogEvent]:
            return [
                e
                for e in self.warnings.events
                if e.get("cluster_event") == "data_link_unreachable" and e.get("peer") == peer
            ]

        await until(lambda: refused() and unreachable(A) and unreachable(E))
        # Let anything else that would be logged for these attempts arrive.
        await deferLater(reactor, 0.5)

        [refusal] = refused()
        self.assertIn("TLS handshake failed", refusal["log_format"])
        self.assertEqual(refusal["why"], "client certificate not issued by a trusted CA")
        [ours] = unreachable(E)
        self.assertIn("TLS handshake failed", ours["why"])
        self.assertIn("certificate verify failed", ours["why"])
        [theirs] = unreachable(A)
        self.assertIn("TLS handshake failed", theirs["why"])
        self.assertFalse(fromE.reachable)
        self.assertFalse(toE.reachable)
        self.assertEqual(good.inbound_nodes(), [])
        self.assertEqual(bad.inbound_nodes(), [])
        self.assertEqual(collectors[A].items, [])
        self.assertEqual(collectors[E].items, [])
        self.assertEqual(good.totals().items_received, 0)
        self.assertEqual(bad.totals().items_received, 0)
        # On A: the refusal of E's connection and the failure of its own link only.
        onA = [e for e in self.warnings.events if e in refused() or e in unreachable(E)]
        self.assertEqual(len(onA), 2)


#: Nodes named by host name (the data channel cannot check a host name
#: against the source address: only the certificate ties them).
NA = "a@node-a.cluster.test"
NB = "b@node-b.cluster.test"


class NodeNameTests(TLSNodes):
    """
    Certificates tied to node names (C{verify_nodename}, on with
    C{require_certificate}): every certificate is signed by the cluster
    CA, each for one node's host name.
    """

    def setUp(self) -> None:
        super().setUp()
        self.ca = NodeCertificates(self.mktemp())

    def named(
        self, name: str, hosts: tuple[str, ...], handler: Collector, **extra: Any
    ) -> DataChannelService:
        """A started node C{name} whose certificate names C{hosts}."""
        return self.node(
            name, "clustering", True, handler, self.ca.settings(hosts, **extra), (NA, NB)
        )

    def lines(self, event: str, **match: Any) -> list[LogEvent]:
        return [
            e
            for e in self.warnings.events
            if e.get("cluster_event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def test_matchingCertificates(self) -> None:
        """
        Nodes whose certificates name their hosts (one exactly, one by a
        wildcard) exchange items both ways, nothing logged.
        """
        return Deferred.fromCoroutine(self._matching())

    async def _matching(self) -> None:
        collectors = {NA: Collector(1), NB: Collector(1)}
        a = self.named(NA, ("node-a.cluster.test",), collectors[NA])
        b = self.named(NB, ("*.cluster.test",), collectors[NB])
        toB, toA = a.add_peer(NB), b.add_peer(NA)
        self.assertTrue(toB.send(RoutedMessage("t", b"to b").to_item()))
        self.assertTrue(toA.send(RoutedMessage("t", b"to a").to_item()))
        await collectors[NA].done
        await collectors[NB].done
        self.assertEqual(a.inbound_nodes(), [NB])
        self.assertEqual(b.inbound_nodes(), [NA])
        self.assertEqual(self.warnings.events, [])

    def test_impostor(self) -> None:
        """
        A node with a CA-signed certificate for another host claiming a
        member's name (B) is refused by A's listener with
        C{certificate_name_mismatch} and exactly one log line, and A's own
        link to "B" fails the handshake with one line: nothing crosses.
        """
        return Deferred.fromCoroutine(self._impostor())

    async def _impostor(self) -> None:
        collectors = {NA: Collector(1), NB: Collector(1)}
        a = self.named(NA, ("node-a.cluster.test",), collectors[NA])
        impostor = self.named(NB, ("node-e.cluster.test",), collectors[NB])
        fromImpostor = impostor.add_peer(NA)
        toImpostor = a.add_peer(NB)
        self.assertTrue(fromImpostor.send(RoutedMessage("t", b"from e").to_item()))
        self.assertTrue(toImpostor.send(RoutedMessage("t", b"to e").to_item()))

        await until(
            lambda: self.lines("data_link_refused") and self.lines("data_link_unreachable", peer=NB)
        )
        await deferLater(reactor, 0.5)

        [refusal] = self.lines("data_link_refused")
        self.assertEqual(refusal["reason"], "certificate_name_mismatch")
        self.assertEqual(refusal["node"], NB)
        self.assertEqual(
            refusal["detail"],
            " (its certificate names DNS:node-e.cluster.test, not node-b.cluster.test"
            " (listener.vmqs.clustering.verify_nodename = off skips this check))",
        )
        [ours] = self.lines("data_link_unreachable", peer=NB)
        self.assertIn("TLS handshake failed", ours["why"])
        self.assertIn(
            "the peer's certificate names DNS:node-e.cluster.test, not node-b.cluster.test",
            ours["why"],
        )
        # A logged those two lines; the impostor one for its link (A
        # closed it after the hello) and one on its listener (A dropped
        # the handshake): nothing else.
        [theirs] = self.lines("data_link_unreachable", peer=NA)
        [dropped] = [e for e in self.warnings.events if e.get("listener")]
        self.assertIn("TLS handshake failed", dropped["log_format"])
        self.assertEqual(len(self.warnings.events), 4)
        self.assertEqual(
            {id(e) for e in (refusal, ours, theirs, dropped)}, set(map(id, self.warnings.events))
        )
        self.assertEqual(a.inbound_nodes(), [])
        self.assertEqual(impostor.inbound_nodes(), [])
        self.assertFalse(fromImpostor.reachable)
        self.assertFalse(toImpostor.reachable)
        self.assertEqual(collectors[NA].items, [])
        self.assertEqual(collectors[NB].items, [])
        self.assertEqual(a.totals().items_received, 0)
        self.assertEqual(impostor.totals().items_received, 0)
        self.assertEqual(a.inbound_counters.links_refused, 1)

    def test_optOut(self) -> None:
        """
        With C{verify_nodename = off} the certificate is verified against
        the CA only, as before: the same impostor gets through.
        """
        return Deferred.fromCoroutine(self._optOut())

    async def _optOut(self) -> None:
        collectors = {NA: Collector(1), NB: Collector(1)}
        a = self.named(NA, ("node-a.cluster.test",), collectors[NA], verify_nodename=False)
        impostor = self.named(NB, ("node-e.cluster.test",), collectors[NB], verify_nodename=False)
        fromImpostor, toImpostor = impostor.add_peer(NA), a.add_peer(NB)
        self.assertTrue(fromImpostor.send(RoutedMessage("t", b"from e").to_item()))
        self.assertTrue(toImpostor.send(RoutedMessage("t", b"to e").to_item()))
        await collectors[NA].done
        await collectors[NB].done
        self.assertEqual(a.inbound_nodes(), [NB])
        self.assertEqual(impostor.inbound_nodes(), [NA])
        self.assertEqual(self.warnings.events, [])
