# -*- test-case-name: tests.test_cluster_metadata -*-
"""
The contracts the metadata store is wired through.

The store itself is transport-independent: it hands ETF-encodable terms to
an L{IMetadataTransport} and is fed the peer's terms through
L{vernemq.cluster.metadata.store.MetadataStore.receive}.  The membership
layer provides the real transport over the Erlang distribution protocol;
L{vernemq.cluster.metadata.testing.MemoryNetwork} provides one in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zope.interface import Interface


class IMetadataTransport(Interface):
    """Carries metadata messages between nodes (best effort)."""

    def send(peer: str, message: Any) -> None:  # noqa: N805
        """
        Send C{message} to the store of node C{peer}.

        Delivery is best effort: a message may be lost (the store repairs
        that by anti-entropy) but must never be corrupted.  Messages between
        one ordered pair of nodes should arrive in the order sent, as they
        do over one distribution connection; the store stays correct
        without that, see L{vernemq.cluster.metadata.store}.

        @param peer: the node name, e.g. C{"VerneMQ@10.0.0.2"}.
        @param message: a term that L{vernemq.dist.etf.encode} accepts.
        """


class IMetadataStorage(Interface):
    """The durable copy of one node's metadata."""

    def load() -> tuple[list[tuple[Any, Any, tuple[int, int, str], Any]], tuple[int, int]]:
        """
        Read everything back.

        @return: C{(rows, clock)}: rows of C{(prefix, key, version, value)}
            where C{value} is L{vernemq.cluster.metadata.store.TOMBSTONE}
            for a delete, and the clock's persisted high-water mark
            C{(physical_ms, counter)} (C{(0, 0)} when new).
        """

    def write(
        changes: Sequence[tuple[Any, Any, tuple[int, int, str] | None, Any]],  # noqa: N805
        clock: tuple[int, int],
    ) -> None:
        """
        Apply a batch of changes in one transaction.

        @param changes: C{(prefix, key, version, value)} rows; a C{None}
            version removes the row (a collected tombstone).
        @param clock: the clock's high-water mark to persist with them.
        """

    def close() -> None:
        """Release the storage; no call follows."""
