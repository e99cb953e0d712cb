# -*- test-case-name: tests.test_auth_passwd,tests.test_auth_acl -*-
"""
Files that are read again when they change: the base of C{vmq_passwd} and
C{vmq_acl}.

A L{ReloadingFile} reads its file once when it is built (so a broker that
is never started as a service still has its rules) and, as a service,
every C{interval} seconds compares the file's C{stat} signature (inode,
device, size, modification and change times in nanoseconds) with the one
it last read; only a changed signature reads the file again.  VerneMQ
re-reads its files every interval unconditionally; comparing signatures
has the same effect without reading an unchanged file.  An interval of
C{0} disables reloading, as in VerneMQ.

A file that cannot be read keeps the rules that were loaded before (also
as in VerneMQ), and the failure is logged once per change of the file's
state, not every interval.  Every timer goes through the injected reactor.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["FileSignature", "ReloadingFile", "signature"]


class FileSignature(NamedTuple):
    """What C{stat} says about a file; a different value means "re-read"."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def signature(path: str) -> FileSignature | OSError:
    """
    The signature of the file at C{path}, or the error C{stat} raised.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        return e
    return FileSignature(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Unread:
    """The signature before the first read."""


class ReloadingFile(Service):
    """
    A file whose content is applied on load and whenever it changes.

    Subclasses implement L{apply} (bytes in, rules installed) and
    L{unreadable} (log that the file could not be read).

    @ivar path: the file.
    @ivar interval: seconds between checks; C{0} = never re-read.
    @ivar loads: how many times the file was read and applied.
    """

    log = Logger()

    def __init__(self, path: str, interval: float, reactor: IReactorTime) -> None:
        self.path = path
        self.interval = interval
        self.reactor = reactor
        self.loads = 0
        self._signature: FileSignature | OSError | _Unread = _Unread()
        self._errno: int | None | _Unread = _Unread()
        self._loop: LoopingCall | None = None

    def apply(self, data: bytes) -> None:
        """Install what C{data} (the whole file) says.  Subclasses override."""
        raise NotImplementedError

    def unreadable(self, error: OSError, first: bool) -> None:
        """
        Log that the file cannot be read.  Subclasses override.

        @param first: no content was ever loaded (the rules are empty).
        """
        raise NotImplementedError

    def check(self) -> bool:
        """
        Read and apply the file if its signature changed since the last
        read (or it was never read).

        @return: whether the file was read and applied.
        """
        sig = signature(self.path)
        if not isinstance(sig, OSError) and sig == self._signature:
            return False
        if isinstance(sig, OSError):
            self._failed(sig)
            return False
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            self._failed(e)
            return False
        self._signature = sig
        self._errno = None
        self.loads += 1
        self.apply(data)
        return True

    def _failed(self, error: OSError) -> None:
        """Remember the failure; log it when it is a new one."""
        self._signature = error
        if self._errno != error.errno:
            self._errno = error.errno
            self.unreadable(error, self.loads == 0)

    def startService(self) -> None:
        """Check the file now, then every C{interval} seconds."""
        super().startService()  # type: ignore[no-untyped-call]
        self.check()
        if self.interval > 0:
            self._loop = LoopingCall(self.check)
            self._loop.clock = self.reactor
            self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        """Stop checking."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
