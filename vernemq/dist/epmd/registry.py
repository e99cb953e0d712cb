# -*- test-case-name: tests.test_dist_epmd -*-
"""
The registry of an epmd: live registrations, newest first, and the
unregistered name slots that keep creation numbers moving.

It knows nothing of connections: whoever registers passes an owner
(L{IRegistrationOwner}), which the registry asks to let go when an
operator forcibly unregisters the name (C{epmd -stop}).  For the server
the owner is the ALIVE2 connection; for a node that serves epmd itself it
is an in-process publication.

Creation numbers follow OTP 25's epmd: a slot's counter starts at the
clock's time, and every registration of that slot bumps it (+1, never
below 4).  Nodes speaking version 6 get the 32-bit counter, older ones
C{counter % 3 + 1}.  Unregistered slots are kept, oldest first, up to a
limit (1000; 5 when epmd runs with C{-d}); the oldest is recycled beyond.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import count

from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from vernemq.dist.epmd.codec import NodeEntry, registrationProblem

#: Unregistered slots kept by default.
MAX_UNREGISTERED = 1000
#: Unregistered slots kept in debug mode (C{-d}).
DEBUG_MAX_UNREGISTERED = 5


class IRegistrationOwner(Interface):
    """
    Whoever holds a registration: told when it is forcibly removed.
    """

    def evicted() -> None:
        """
        The registration was removed by a STOP request; the owner lets go
        (the ALIVE2 connection closes, an in-process publication is
        dropped).
        """


@implementer(IRegistrationOwner)
class NoOwner:
    """An owner that ignores eviction (for tests and tools)."""

    def evicted(self) -> None:
        """Nothing to let go."""


def bumpCreation(counter: int) -> int:
    """The next creation counter: +1 modulo 2**32, never below 4."""
    counter = (counter + 1) & 0xFFFFFFFF
    return counter if counter >= 4 else 4


_ids = count(5)


@dataclass(eq=False)
class Registration:
    """
    One live registration.

    @ivar entry: what the node registered.
    @ivar creation: the slot's creation counter (see L{reportedCreation}).
    @ivar owner: who holds it.
    @ivar fd: a number standing in for epmd's socket fd in DUMP output.
    """

    entry: NodeEntry
    creation: int
    owner: IRegistrationOwner
    fd: int = field(default_factory=lambda: next(_ids))
    active: bool = True


class RegistrationRefused(Exception):
    """
    epmd answers a refused ALIVE2 with Result 1; C{str(error)} says why.
    """


class Registry:
    """
    The nodes an epmd knows.

    @ivar maxUnregistered: how many unregistered slots are kept.
    """

    def __init__(self, clock: IReactorTime, maxUnregistered: int = MAX_UNREGISTERED) -> None:
        self._clock = clock
        self.maxUnregistered = maxUnregistered
        self._live: dict[bytes, Registration] = {}
        # Unregistered slots, oldest first: name -> (last entry, counter, fd).
        self._unused: OrderedDict[bytes, tuple[NodeEntry, int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def register(self, entry: NodeEntry, owner: IRegistrationOwner) -> Registration:
        """
        Register C{entry} for C{owner}.

        @raise RegistrationRefused: for a bad name or extra, or a name that
            is registered already.
        """
        problem = registrationProblem(entry)
        if problem is not None:
            raise RegistrationRefused(problem)
        if entry.name in self._live:
            raise RegistrationRefused("node name already occupied")
        slot = self._unused.pop(entry.name, None)
        if slot is not None:
            creation = bumpCreation(slot[1])
        else:
            creation = bumpCreation(int(self._clock.seconds()))
        registration = Registration(entry, creation, owner)
        self._live[entry.name] = registration
        return registration

    def unregister(self, registration: Registration) -> bool:
        """
        Remove C{registration} if it is still live; its name becomes an
        unregistered slot.  Returns whether it was live.
        """
        if not registration.active:
            return False
        registration.active = False
        name = registration.entry.name
        if self._live.get(name) is registration:
            del self._live[name]
        self._unused[name] = (registration.entry, registration.creation, registration.fd)
        self._unused.move_to_end(name)
        while len(self._unused) > self.maxUnregistered:
            self._unused.popitem(last=False)
        return True

    def lookup(self, name: bytes) -> Registration | None:
        """The live registration of C{name}, if any."""
        return self._live.get(name)

    def live(self) -> list[Registration]:
        """Live registrations, most recently registered first."""
        return list(reversed(self._live.values()))

    def unused(self) -> list[tuple[NodeEntry, int]]:
        """C{(entry, fd)} of every unregistered slot, oldest first."""
        return [(entry, fd) for entry, _, fd in self._unused.values()]
