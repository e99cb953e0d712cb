# -*- test-case-name: tests.test_cluster_metadata -*-
"""
The durable copy of the metadata: one SQLite database (stdlib C{sqlite3})
under C{platform_data_dir}.

The database runs in WAL mode with C{synchronous=NORMAL}: a batch of
changes is one transaction, appended to the write-ahead log with a single
fsync at checkpoint time, so 10 000 subscription changes cost one commit,
not 10 000.  A crash can lose the last flush interval of changes; the
replicas on the other nodes give them back through anti-entropy.

Rows are C{(pk, l, c, node, value)}: C{pk} is the ETF encoding of
C{(prefix, key)}, the version is C{(l, c, node)}, C{value} the ETF encoding
of the value or C{NULL} for a tombstone.  Table C{meta} keeps the clock's
high-water mark.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from zope.interface import implementer

from vernemq.dist.etf import decode, encode

from .interfaces import IMetadataStorage
from .store import TOMBSTONE

__all__ = ["SqliteMetadataStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    pk BLOB PRIMARY KEY,
    l INTEGER NOT NULL,
    c INTEGER NOT NULL,
    node TEXT NOT NULL,
    value BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

_UPSERT = (
    "INSERT INTO entries (pk, l, c, node, value) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(pk) DO UPDATE SET l = excluded.l, c = excluded.c,"
    " node = excluded.node, value = excluded.value"
)


@implementer(IMetadataStorage)
class SqliteMetadataStorage:
    """
    L{IMetadataStorage} in one SQLite file.

    @ivar path: the database file.
    """

    def __init__(self, path: str) -> None:
        """
        Open (or create) the database at C{path}, creating its directory.
        """
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, platform_data_dir: str) -> SqliteMetadataStorage:
        """The store's database under C{platform_data_dir}: C{meta/metadata.sqlite3}."""
        return cls(os.path.join(platform_data_dir, "meta", "metadata.sqlite3"))

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("metadata storage is closed")
        return self._db

    def load(self) -> tuple[list[tuple[Any, Any, tuple[int, int, str], Any]], tuple[int, int]]:
        """See L{IMetadataStorage.load}."""
        db = self._conn()
        rows = []
        for pk, l, c, node, value in db.execute("SELECT pk, l, c, node, value FROM entries"):  # noqa: E741
            prefix, key = decode(pk)
            rows.append((prefix, key, (l, c, node), TOMBSTONE if value is None else decode(value)))
        clock = (0, 0)
        row = db.execute("SELECT value FROM meta WHERE name = 'clock'").fetchone()
        if row is not None:
            l, c = decode(row[0])  # noqa: E741
            clock = (l, c)
        return rows, clock

    def write(
        self,
        changes: Sequence[tuple[Any, Any, tuple[int, int, str] | None, Any]],
        clock: tuple[int, int],
    ) -> None:
        """See L{IMetadataStorage.write}: one transaction."""
        db = self._conn()
        upserts = []
        deletes = []
        for prefix, key, version, value in changes:
            pk = encode((prefix, key))
            if version is None:
                deletes.append((pk,))
            else:
                upserts.append(
                    (
                        pk,
                        version[0],
                        version[1],
                        str(version[2]),
                        None if value is TOMBSTONE else encode(value),
                    )
                )
        db.execute("BEGIN")
        try:
            if upserts:
                db.executemany(_UPSERT, upserts)
            if deletes:
                db.executemany("DELETE FROM entries WHERE pk = ?", deletes)
            db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)",
                (encode(clock),),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """See L{IMetadataStorage.close}."""
        if self._db is not None:
            self._db.close()
            self._db = None
