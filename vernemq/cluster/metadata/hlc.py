# -*- test-case-name: tests.test_cluster_metadata -*-
"""
A hybrid logical clock (HLC) that stamps every metadata write.

Why an HLC
==========

Last-writer-wins needs a total order on writes that every node computes
the same way.  VerneMQ's SWC backend stamps values with C{os:timestamp()}
and so trusts the wall clocks of all nodes: a node whose clock runs behind
loses every conflict, even for writes it makes I{after} it has seen the
other value.  An HLC (Kulkarni et al., "Logical Physical Clocks", 2014)
keeps the timestamp close to wall-clock time but never lets it go below a
timestamp the node has already seen, so:

  - a write made after a node has seen another write always wins over it,
    whatever the clocks say (causality is respected);
  - concurrent writes (neither side saw the other, e.g. on both sides of a
    partition) are ordered by physical time, as the user expects; clock
    skew only matters for those;
  - ties are impossible: the version is C{(physical_ms, counter, node)}
    and a node never issues the same C{(physical_ms, counter)} twice, so
    the node name breaks any remaining tie deterministically.

A remote timestamp far ahead of our own wall clock is still accepted
(refusing it would stop convergence), but it is counted and logged so an
operator can fix the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from twisted.logger import Logger

from vernemq.dist.etf import Atom

__all__ = ["Version", "HybridLogicalClock", "ZERO_VERSION"]

#: A version: C{(physical milliseconds, logical counter, node name)}.  Python
#: compares tuples lexicographically, which is exactly the LWW order.
Version = tuple[int, int, Atom]

#: A version below every real one.
ZERO_VERSION: Final[Version] = (0, 0, Atom(""))


class HybridLogicalClock:
    """
    The clock of one node.

    @ivar node: the node name stamped into every version.
    @ivar drift_warnings: how many remote timestamps were further than
        C{max_drift_ms} ahead of our wall clock.
    """

    log = Logger()

    def __init__(
        self,
        node: Atom,
        wallclock_ms: Callable[[], int],
        max_drift_ms: int = 60_000,
    ) -> None:
        """
        @param node: this node's name.
        @param wallclock_ms: the physical clock, in integer milliseconds.
        @param max_drift_ms: remote timestamps further ahead than this are
            logged (once per minute of our clock at most).
        """
        self.node = node
        self._wallclock_ms = wallclock_ms
        self._max_drift_ms = max_drift_ms
        self._l = 0
        self._c = 0
        self.drift_warnings = 0
        self._last_warning = -(10**18)

    @property
    def last(self) -> tuple[int, int]:
        """The last C{(physical_ms, counter)} issued or observed."""
        return (self._l, self._c)

    def now(self) -> Version:
        """
        Stamp a local event: a version greater than any issued or observed.
        """
        pt = self._wallclock_ms()
        if pt > self._l:
            self._l = pt
            self._c = 0
        else:
            self._c += 1
        return (self._l, self._c, self.node)

    def observe(self, l: int, c: int) -> None:  # noqa: E741
        """
        Take a remote timestamp into account, so that every later L{now}
        is greater than it.
        """
        pt = self._wallclock_ms()
        if l - pt > self._max_drift_ms:
            self.drift_warnings += 1
            if pt - self._last_warning >= 60_000:
                self._last_warning = pt
                self.log.warn(
                    "metadata timestamp {ahead_ms} ms ahead of the local clock:"
                    " check NTP on every node",
                    ahead_ms=l - pt,
                    event_id="vmq.metadata.clock_drift",
                )
        if l > self._l:
            self._l, self._c = l, c
        elif l == self._l and c > self._c:
            self._c = c

    def restore(self, l: int, c: int) -> None:  # noqa: E741
        """
        Start from a persisted high-water mark so that a restarted node never
        issues a version below one it issued before (even if its wall clock
        went backwards).
        """
        if (l, c) > (self._l, self._c):
            self._l, self._c = l, c
