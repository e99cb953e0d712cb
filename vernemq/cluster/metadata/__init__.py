"""
The replicated metadata store: subscriptions, retained messages and durable
configuration, replicated to every member of the cluster.

  - L{MetadataStore} (C{store.py}): the sans-IO core, its design (HLC
    versions, LWW, tombstones and their collection, Merkle-like
    anti-entropy) is described there;
  - L{MetadataService} (C{service.py}): the Twisted timers and persistence;
  - L{SqliteMetadataStorage} (C{storage.py}): the SQLite file under
    C{platform_data_dir};
  - L{IMetadataTransport} (C{interfaces.py}): what the membership layer
    provides over the distribution protocol;
  - L{vernemq.cluster.metadata.testing}: an in-memory network for tests.
"""

from .hlc import HybridLogicalClock, Version
from .interfaces import IMetadataStorage, IMetadataTransport
from .service import MetadataService
from .storage import SqliteMetadataStorage
from .store import TOMBSTONE, MergeReport, MetadataStore, check_key, check_value

__all__ = [
    "TOMBSTONE",
    "HybridLogicalClock",
    "IMetadataStorage",
    "IMetadataTransport",
    "MergeReport",
    "MetadataService",
    "MetadataStore",
    "SqliteMetadataStorage",
    "Version",
    "check_key",
    "check_value",
]
