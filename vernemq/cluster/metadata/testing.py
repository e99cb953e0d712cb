# -*- test-case-name: tests.test_cluster_metadata -*-
"""
An in-memory network for metadata stores, for tests and benchmarks.

L{MemoryNetwork} queues every message and delivers it when asked, so a test
decides what happens in between: it can partition the nodes, drop a share
of the messages, or deliver them out of order.  By default every message
goes through L{vernemq.dist.etf.encode} and L{decode}, as it would over the
distribution protocol, so what the stores exchange is proven encodable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from random import Random
from typing import Any

from zope.interface import implementer

from vernemq.dist.etf import decode, encode

from .interfaces import IMetadataTransport

__all__ = ["MemoryNetwork", "MemoryTransport"]


@implementer(IMetadataTransport)
class MemoryTransport:
    """One node's L{IMetadataTransport} on a L{MemoryNetwork}."""

    def __init__(self, network: MemoryNetwork, node: str) -> None:
        self._network = network
        self.node = node

    def send(self, peer: str, message: Any) -> None:
        """Queue C{message} for C{peer} (see L{MemoryNetwork.deliver})."""
        self._network.send(self.node, peer, message)


class MemoryNetwork:
    """
    Queued delivery between named nodes.

    @ivar queue: the messages in flight: C{(source, destination, payload)}.
    @ivar delivered: how many messages were delivered so far.
    @ivar dropped: how many were lost (partition or C{drop_rate}).
    @ivar bytes: how many encoded bytes were delivered.
    """

    def __init__(
        self,
        random: Random | None = None,
        *,
        encoding: bool = True,
        drop_rate: float = 0.0,
        reorder: bool = False,
    ) -> None:
        """
        @param random: drives drops and reordering.
        @param encoding: carry messages as ETF bytes.
        @param drop_rate: the share of messages lost, 0.0 to 1.0.
        @param reorder: deliver each round of messages in random order.
        """
        self._random = random if random is not None else Random(0)
        self._encoding = encoding
        self.drop_rate = drop_rate
        self.reorder = reorder
        self._receivers: dict[str, Callable[[str, Any], None]] = {}
        self._groups: list[frozenset[str]] | None = None
        self.queue: list[tuple[str, str, Any]] = []
        self.delivered = 0
        self.dropped = 0
        self.bytes = 0

    def attach(self, node: str, receive: Callable[[str, Any], None]) -> MemoryTransport:
        """
        Add C{node}: C{receive(source, message)} is called for each message.

        @return: the node's transport.
        """
        self._receivers[node] = receive
        return MemoryTransport(self, node)

    def transport(self, node: str) -> MemoryTransport:
        """A transport for C{node}, to be L{attach}ed later."""
        return MemoryTransport(self, node)

    def partition(self, *groups: Iterable[str]) -> None:
        """
        Cut the network into C{groups}: messages between two groups (and to
        a node in no group) are lost, including those already in flight.
        """
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        """Join every node again."""
        self._groups = None

    def connected(self, a: str, b: str) -> bool:
        """Whether a message from C{a} would reach C{b} now."""
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    def send(self, source: str, destination: str, message: Any) -> None:
        """Queue a message (or lose it)."""
        if not self.connected(source, destination) or (
            self.drop_rate and self._random.random() < self.drop_rate
        ):
            self.dropped += 1
            return
        self.queue.append((source, destination, encode(message) if self._encoding else message))

    def deliver(self, limit: int | None = None) -> int:
        """
        Deliver the messages in flight now (not those they cause), in order
        or shuffled.

        @param limit: deliver at most this many.
        @return: how many were delivered.
        """
        batch = self.queue if limit is None else self.queue[:limit]
        self.queue = [] if limit is None else self.queue[limit:]
        if self.reorder:
            self._random.shuffle(batch)
        count = 0
        for source, destination, payload in batch:
            if not self.connected(source, destination):
                self.dropped += 1
                continue
            receive = self._receivers.get(destination)
            if receive is None:
                self.dropped += 1
                continue
            if self._encoding:
                self.bytes += len(payload)
                payload = decode(payload)
            self.delivered += 1
            count += 1
            receive(source, payload)
        return count

    def run(self, step: Callable[[], None] | None = None, max_rounds: int = 1000) -> int:
        """
        Deliver rounds of messages until none is left, calling C{step}
        (e.g. C{lambda: clock.advance(0)}) after each round so that queued
        broadcasts are flushed.

        @return: how many rounds ran.
        """
        rounds = 0
        if step is not None:
            step()
        while self.queue and rounds < max_rounds:
            self.deliver()
            if step is not None:
                step()
            rounds += 1
        return rounds
