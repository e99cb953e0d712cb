# mypy: disable-error-code="no-untyped-call"
"""
A smoke test of L{vernemq.cluster.datachannel} over real sockets: two data
channel services on 127.0.0.1 (ephemeral ports) exchange 10 000 items each
way, with the real reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from vernemq.cluster.datachannel import (
    DataChannelService,
    IDataItemHandler,
    PeerAddress,
    RoutedMessage,
)
from vernemq.config.loader import ListenerSpec

A = "a@127.0.0.1"
B = "b@127.0.0.1"
COUNT = 10_000


@implementer(IDataItemHandler)
class Collector:
    """Collects items; fires L{done} at the expected count."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.items: list[tuple[str, Any]] = []
        self.done: Deferred[None] = Deferred()

    def on_item(self, from_node: str, item: Any) -> None:
        self.items.append((from_node, item))
        if len(self.items) == self.expected:
            self.done.callback(None)


async def until(check: Any) -> None:
    """Wait (on the real reactor) until C{check()} holds."""
    while not check():
        await deferLater(reactor, 0.01)


async def exchangeBothWays(
    test: TestCase,
    services: dict[str, DataChannelService],
    collectors: dict[str, Collector],
    count: int,
) -> None:
    """
    Send C{count} items from A to B and from B to A, half before the links
    are up (buffered) and half after; check that each side got the
    other's items, all of them, in order.
    """
    links = {A: services[A].add_peer(B), B: services[B].add_peer(A)}

    def send(name: str, start: int, stop: int) -> None:
        for i in range(start, stop):
            message = RoutedMessage(f"t/{name}", bytes(64), qos=1, msg_ref=b"%d" % i)
            test.assertTrue(links[name].send(message.to_item()))

    half = count // 2
    send(A, 0, half)
    send(B, 0, half)
    await until(lambda: links[A].reachable and links[B].reachable)
    send(A, half, count)
    send(B, half, count)
    await collectors[A].done
    await collectors[B].done

    for receiver, sender in ((A, B), (B, A)):
        got = collectors[receiver].items
        test.assertEqual({node for node, _ in got}, {sender})
        refs = [RoutedMessage.from_term(item[1]).msg_ref for _, item in got]
        test.assertEqual(refs, [b"%d" % i for i in range(count)])


class TwoNodesOverTCPTests(TestCase):
    """
    Two nodes, real TCP on loopback.
    """

    timeout = 60

    def test_exchange(self) -> Deferred[None]:
        """
        10 000 items each way arrive, none lost, in order per link: half
        sent before the link is up (buffered), half after.
        """
        return Deferred.fromCoroutine(self._exchange())

    async def _exchange(self) -> None:
        services: dict[str, DataChannelService] = {}
        collectors: dict[str, Collector] = {}

        def resolve(node: str) -> PeerAddress | None:
            return services[node].connect_params()

        for name in (A, B):
            collectors[name] = Collector(COUNT)
            services[name] = DataChannelService(
                name,
                collectors[name],
                lambda node: node in (A, B),
                resolve,
                reactor,
                listeners=[ListenerSpec("vmq", "clustering", "127.0.0.1", 0, None, {})],
            )
            services[name].startService()
            self.addCleanup(services[name].stopService)

        await exchangeBothWays(self, services, collectors, COUNT)

        for receiver, sender in ((A, B), (B, A)):
            got = collectors[receiver].items
            self.assertEqual(RoutedMessage.from_term(got[0][1][1]).topic, f"t/{sender}")
        for name in (A, B):
            totals = services[name].totals()
            self.assertEqual(totals.items_dropped, 0)
            self.assertEqual(totals.items_sent, COUNT)
            self.assertEqual(totals.items_received, COUNT)
        self.assertEqual(
            services[A].counters()["cluster_bytes_sent"],
            services[B].counters()["cluster_bytes_received"],
        )
