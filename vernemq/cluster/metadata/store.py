# -*- test-case-name: tests.test_cluster_metadata -*-
"""
The replicated metadata store, sans-IO: pure state plus messages.

What it stores
==============

Values live under a I{prefix} (VerneMQ's C{{Prefix, SubPrefix}}), then a
key: C{(Atom("vmq"), Atom("subscriber"))} maps C{(mountpoint, client_id)} to
the subscriptions and the node hosting the session; C{(Atom("vmq"),
Atom("retain"))} maps C{(mountpoint, topic)} to a retained message;
C{(Atom("vmq"), Atom("config"))} holds durable configuration.  Prefixes,
keys and values are terms that survive an ETF round trip unchanged, so that
every node holds I{equal} data: L{Atom}, C{bytes}, C{int}, finite C{float},
C{tuple}, C{list} and C{dict} (values only).  Plain C{str}, C{bool} and
C{None} are refused with C{TypeError}, because ETF turns them into a list of
code points and the atoms C{true}/C{false}/C{undefined}; use C{bytes} for
text (as VerneMQ uses binaries) and L{Atom} for flags.

Versions and conflicts
======================

Every write is stamped by the node's L{HybridLogicalClock} with a version
C{(physical_ms, counter, node)}; the greatest version wins everywhere
(last-writer-wins with the node name as the final tie-break).  See
L{vernemq.cluster.metadata.hlc} for why an HLC rather than the raw wall
clock.

Deletes and tombstones
======================

A delete writes a I{tombstone}: an entry with a version and no value, which
beats older writes like any newer version.  A node keeps it until every
current member is known to hold that version or a newer one for the key.
It learns that only from the member itself (never second-hand):

  - C{md_ack}: a node that stores a new tombstone tells every member; a node
    sent a tombstone (or a summary of one, C{md_have}) it already has, or
    has already collected, answers the sender;
  - anti-entropy: a bucket hash equal to ours, or an entry the peer sent us,
    is first-hand evidence of what the peer holds.

Once every current member has acknowledged, the tombstone is collected (a
member removed with L{MetadataStore.set_members} no longer counts).  The
key and version are then remembered for C{purge_memory} seconds, which is
not replicated and not part of any digest: a late message carrying an
older write (reordered, or resent by a peer that has not collected yet) is
dropped instead of bringing the deleted value back.  Combined with
first-hand acknowledgements over FIFO links (an Erlang distribution
connection is one), a node cannot collect a tombstone while an older write
is still on its way to it; the purge memory also covers reordering
networks.  A node that joins with history older than a tombstone already
collected everywhere (and forgotten) would bring that value back: that is
the price of merging instead of refusing non-empty joins, as VerneMQ does.

Broadcast and anti-entropy
==========================

Local writes are queued and sent to every member on the next L{flush}
(the service flushes on the next reactor turn, so a burst of writes
becomes one message per peer).  Anything lost is repaired by anti-entropy
with one random member every few seconds, and at once when a peer comes
back (L{MetadataStore.peer_up}).  The exchange is Merkle-like, over
C{4096} buckets in C{64} groups; each bucket hash is the XOR of a 64-bit
BLAKE2 hash of C{(prefix, key, version)} per entry, updated in O(1) per
write:

  1. A -> B  C{("md_digest", sid, group_hashes)}           (512 bytes)
  2. B -> A  C{("md_buckets", sid, [(group, bucket_hashes)])}  for the
     groups that differ (an empty list: in sync, done)
  3. A -> B  C{("md_want", sid, buckets, records)}  the buckets that differ,
     and a packed 24-byte record per entry of ours in them: key hash,
     version time and counter, node-name hash (no values)
  4. B -> A  C{("md_entries", sid, entries[, want_older, want_missing
     [, coming]])}  B's entries that are newer than ours or that we lack
     (with values); the last chunk carries the key hashes B wants from us,
     and those B lacks too but has already asked another node for
  5. A -> B  C{("md_repair", entries)}   our entries for those keys

So a value crosses the network only where the other side needs it; what
is equal is compared through 24 bytes per entry of the differing buckets.
Each side then tells the other members what was new to it, so after a
partition heals one exchange across it brings every node of both sides up
to date:

  6. A -> C  C{("md_have", records)}  a record (as in step 3) per entry
     that the exchange brought; values are not forwarded
  7. C -> A  C{("md_pull", key_hashes)}  those C lacks or holds older
  8. A -> C  C{("md_put", entries)}  their values (not forwarded again)

Healing a partition usually starts several exchanges across it at once
(each node of one side with the other side).  They do not carry the same
values twice: a node remembers, for C{pull_timeout} seconds, which entry
(key hash and version) it asked of which peer, in step 4 as in step 7,
and does not ask another peer for the same entry meanwhile: step 4 lists
it under C{coming} instead, and the initiator neither sends it nor takes
its absence as evidence that the responder holds it (tombstones).  If the
values asked for are lost, the responder asks again once the time is up,
and an exchange it starts itself is answered with values at once.

A merge of 64-bit key hashes assumes no two keys share one (odds about
2^-64 per pair).  Step 4 is also how a joining node merges its local
history (L{MetadataStore.join}), with a L{MergeReport}.

Wire format
===========

Every message is a tuple tagged with an L{Atom}.  C{entries} is a binary
holding C{term_to_binary([{Prefix, [Item]}])}: the entries grouped by
prefix, an item being C{(key, physical_ms, counter, node)} for a tombstone
and C{(key, physical_ms, counter, node, value)} for a value.  Carrying the
entries as one binary lets a node encode them once for every peer (the
same local writes to every member; the same entries asked by several
peers are encoded once: the encoding of each entry sent lately is kept
until the next L{MetadataStore.tick}).  A plain list of C{(prefix, key,
physical_ms, counter, node[, value])} tuples is accepted as well.

C{records} are packed 24-byte records C{(key hash: u64, physical_ms: u64,
counter: u32, crc32 of the node name: u32)}, big-endian; the key hash is
the 8-byte BLAKE2b digest of the ETF of C{(prefix, key)}, read as a
big-endian integer; C{key_hashes}, C{want_older}, C{want_missing} and
C{coming} are packed u64 key hashes.  C{md_ack} carries records too: the sender holds
that version of the key or a newer one (a tombstone of ours of the same
time but another node name is not taken, as the node hash cannot order
it).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from random import Random
from typing import Any, Final

from twisted.logger import Logger

from vernemq.dist.etf import Atom, decode, encode_term

from .hlc import HybridLogicalClock, Version
from .interfaces import IMetadataTransport

__all__ = [
    "TOMBSTONE",
    "MergeReport",
    "MetadataStore",
    "Prefix",
    "check_key",
    "check_value",
]

#: A prefix, such as C{(Atom("vmq"), Atom("subscriber"))}.
Prefix = Any
#: A term (key or value).
Term = Any
#: A change subscriber: C{callback(key, old, new)}, C{None} meaning absent.
Subscriber = Callable[[Term, Term | None, Term | None], None]


class _Tombstone:
    """The value of a deleted key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMBSTONE"


#: The stored value of a deleted key.
TOMBSTONE: Final = _Tombstone()

NBUCKETS: Final = 4096
NGROUPS: Final = 64
_PER_GROUP: Final = NBUCKETS // NGROUPS
_MASK: Final = NBUCKETS - 1

A_PUT: Final = Atom("md_put")
A_ACK: Final = Atom("md_ack")
A_DIGEST: Final = Atom("md_digest")
A_BUCKETS: Final = Atom("md_buckets")
A_WANT: Final = Atom("md_want")
A_ENTRIES: Final = Atom("md_entries")
A_REPAIR: Final = Atom("md_repair")
A_HAVE: Final = Atom("md_have")
A_PULL: Final = Atom("md_pull")

_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_VERSION_HASH: Final = struct.Struct(">QQQ")
_GROUPS: Final = struct.Struct(f">{NGROUPS}Q")
_GROUP_BUCKETS: Final = struct.Struct(f">{_PER_GROUP}Q")
_RECORD: Final = struct.Struct(">QQII")  # key hash, physical ms, counter, node hash
#: The most entry encodings kept between two ticks (see MetadataStore._pack).
_ENCODED_MAX: Final = 65536

# Results of merging one remote entry.
_NEWER: Final = 0  # installed: the remote version was newer
_SAME: Final = 1  # we already hold exactly that version
_OLDER: Final = 2  # we hold (or have collected) a newer version


def check_key(term: Term, depth: int = 0) -> None:
    """
    Refuse a prefix or key that would not come back equal (and hashable)
    from an ETF round trip.

    @raise TypeError: naming the offending type.
    """
    t = type(term)
    if t is Atom or t is bytes or t is int:
        return
    if t is tuple and depth < 64:
        for item in term:
            check_key(item, depth + 1)
        return
    raise TypeError(
        f"metadata keys are Atom, bytes, int or tuples of them, not {t.__name__}"
        " (use bytes for text)"
    )


def check_value(term: Term, depth: int = 0) -> None:
    """
    Refuse a value that would not come back equal from an ETF round trip.

    @raise TypeError: naming the offending type.
    """
    t = type(term)
    if t is Atom or t is bytes or t is int:
        return
    if t is float:
        if math.isfinite(term):
            return
    elif depth < 200:
        if t is tuple or t is list:
            for item in term:
                check_value(item, depth + 1)
            return
        if t is dict:
            for k, v in term.items():
                check_key(k)
                check_value(v, depth + 1)
            return
    raise TypeError(
        f"metadata values are Atom, bytes, int, float, tuple, list or dict, not"
        f" {t.__name__} (use bytes for text and Atom for flags)"
    )


#: The ETF encoding of each prefix seen, for L{_key_hash}.
_PREFIX_ETF: dict[Prefix, bytes] = {}
#: L{_node_hash} of each node name seen.
_NODE_HASH: dict[str, int] = {}


def _prefix_head(prefix: Prefix) -> bytes:
    """
    The ETF of a 2-tuple up to its second element, the first being
    C{prefix}: SMALL_TUPLE_EXT, arity 2, the prefix (cached).
    """
    head = _PREFIX_ETF.get(prefix)
    if head is None:
        if len(_PREFIX_ETF) >= 4096:
            _PREFIX_ETF.clear()
        head = _PREFIX_ETF[prefix] = b"\x68\x02" + encode_term(prefix)
    return head


def _key_hash(prefix: Prefix, key: Term) -> int:
    """The 64-bit BLAKE2 hash of the ETF encoding of C{(prefix, key)}."""
    data = _prefix_head(prefix) + encode_term(key)  # == encode_term((prefix, key))
    return _U64.unpack(blake2b(data, digest_size=8).digest())[0]  # type: ignore[no-any-return]


def _entry_hash(kh: int, version: Version) -> int:
    l, c, node = version  # noqa: E741
    h = blake2b(_VERSION_HASH.pack(kh, l, c), digest_size=8)
    h.update(node.encode("utf-8"))
    return _U64.unpack(h.digest())[0]  # type: ignore[no-any-return]


def _node_hash(node: str) -> int:
    h = _NODE_HASH.get(node)
    if h is None:
        if len(_NODE_HASH) >= 4096:
            _NODE_HASH.clear()
        h = _NODE_HASH[node] = zlib.crc32(node.encode("utf-8"))
    return h


class _Entry:
    """
    One key's current state: its C{(prefix, key)}, version, value (or
    tombstone), key hash and entry hash.
    """

    __slots__ = ("fk", "version", "value", "kh", "h")

    def __init__(
        self, fk: tuple[Prefix, Term], version: Version, value: Term, kh: int, h: int
    ) -> None:
        self.fk = fk
        self.version = version
        self.value = value
        self.kh = kh
        self.h = h


def _item(entry: _Entry) -> tuple[Any, ...]:
    """An entry as sent, under its prefix: C{(key, ms, counter, node[, value])}."""
    l, c, node = entry.version  # noqa: E741
    if entry.value is TOMBSTONE:
        return (entry.fk[1], l, c, node)
    return (entry.fk[1], l, c, node, entry.value)


def _etf_list(parts: Sequence[bytes]) -> bytes:
    """The ETF of a list whose elements are the encoded C{parts}."""
    if not parts:
        return b"\x6a"  # NIL_EXT
    return b"\x6c" + _U32.pack(len(parts)) + b"".join(parts) + b"\x6a"  # LIST_EXT


def _pack_entries(groups: dict[Prefix, list[bytes]]) -> bytes:
    """
    C{term_to_binary([{Prefix, [Item]}])} from the encoded items of each
    prefix (see the module docstring).
    """
    parts = [_prefix_head(prefix) + _etf_list(items) for prefix, items in groups.items()]
    return b"\x83" + _etf_list(parts)


def _unpack_entries(payload: Any) -> Iterator[tuple[Prefix, Sequence[Any]]]:
    """
    The C{(prefix, item)} pairs of an entries payload: the binary of
    L{_pack_entries}, or a plain list of C{(prefix, key, ms, counter,
    node[, value])} tuples (accepted too, as hand-written by tests and
    tools).
    """
    if type(payload) is bytes:
        for prefix, items in decode(payload):
            for item in items:
                yield prefix, item
    else:
        for wire in payload:
            yield wire[0], wire[1:]


@dataclass
class MergeReport:
    """
    What an anti-entropy exchange (or a join) merged, seen from the node
    that started it.

    @ivar peer: the other node.
    @ivar join: whether this was the merge of a join.
    @ivar received: keys we did not have at all, taken from the peer.
    @ivar replaced: keys where the peer's newer version beat ours.
    @ivar kept: keys where our newer version beat the peer's.
    @ivar sent: entries sent to the peer (ours newer, or missing there).
    @ivar coming: entries the peer lacked or held older but had already
        asked another node for, so we did not send them.
    @ivar buckets: how many of the 4096 buckets differed.
    @ivar by_prefix: per prefix, C{[received, replaced, kept, sent]}.
    """

    peer: str
    join: bool = False
    received: int = 0
    replaced: int = 0
    kept: int = 0
    sent: int = 0
    coming: int = 0
    buckets: int = 0
    by_prefix: dict[Prefix, list[int]] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        """Whether the two stores were already equal."""
        return self.received == self.replaced == self.kept == self.sent == self.coming == 0

    def _count(self, prefix: Prefix, index: int) -> None:
        counts = self.by_prefix.get(prefix)
        if counts is None:
            counts = self.by_prefix[prefix] = [0, 0, 0, 0]
        counts[index] += 1


@dataclass
class _Exchange:
    """An anti-entropy exchange this node started."""

    sid: int
    peer: str
    started: float
    report: MergeReport
    on_done: Callable[[MergeReport], None] | None
    digest: tuple[int, ...] = ()
    #: Key hash -> the version we advertised in md_want.
    advertised: dict[int, Version] = field(default_factory=dict)
    #: Key hashes of the entries the peer sent us.
    peer_sent: set[int] = field(default_factory=set)


class MetadataStore:
    """
    One node's replica of the cluster metadata.

    All I/O goes through the injected L{IMetadataTransport}; time comes from
    C{now} (seconds, e.g. C{reactor.seconds}); randomness from C{random}.
    Feed every message from a peer to L{receive}.  The service
    (L{vernemq.cluster.metadata.service.MetadataService}) drives L{flush},
    L{anti_entropy}, L{tick} and persistence.

    @ivar node: this node's name.
    @ivar clock: the L{HybridLogicalClock} stamping local writes.
    @ivar wake: called (no arguments) when something is queued for L{flush};
        the service schedules a flush on the next reactor turn.
    """

    log = Logger()

    def __init__(
        self,
        node: str,
        transport: IMetadataTransport,
        now: Callable[[], float],
        random: Random,
        *,
        batch_size: int = 2000,
        purge_memory: float = 3600.0,
        exchange_timeout: float = 60.0,
        max_drift_ms: int = 60_000,
        pull_timeout: float = 10.0,
    ) -> None:
        """
        @param node: this node's name.
        @param transport: carries messages to peers.
        @param now: the wall clock, in seconds.
        @param random: picks anti-entropy peers.
        @param batch_size: the most entries in one message.
        @param purge_memory: seconds a collected tombstone is remembered.
        @param exchange_timeout: seconds after which an unanswered
            anti-entropy exchange is forgotten.
        @param max_drift_ms: remote timestamps further ahead than this are
            logged (see L{HybridLogicalClock}).
        @param pull_timeout: seconds during which an entry asked of one
            peer is not asked again of another (see the module docstring).
        """
        self.node = Atom(node)
        self._transport = transport
        self._now = now
        self._random = random
        self._batch_size = batch_size
        self._purge_memory = purge_memory
        self._exchange_timeout = exchange_timeout
        self._pull_timeout = pull_timeout
        self.clock = HybridLogicalClock(
            self.node, lambda: int(now() * 1000), max_drift_ms=max_drift_ms
        )
        self.wake: Callable[[], None] = lambda: None

        self._prefixes: dict[Prefix, dict[Term, _Entry]] = {}
        self._bucket_hash = [0] * NBUCKETS
        self._group_hash = [0] * NGROUPS
        # Per bucket, key hash -> entry: finds an entry by its key hash.
        self._buckets: list[dict[int, _Entry]] = [{} for _ in range(NBUCKETS)]
        self._tomb_acks: dict[tuple[Prefix, Term], set[str]] = {}
        self._purged: dict[tuple[Prefix, Term], tuple[Version, int, float]] = {}
        self._purged_kh: dict[int, tuple[Prefix, Term]] = {}
        self._members: frozenset[str] = frozenset([self.node])
        self._subscribers: dict[Prefix, list[Subscriber]] = {}
        # (prefix, item) of local writes, for the next flush.
        self._pending: list[tuple[Prefix, tuple[Any, ...]]] = []
        # Packed acknowledgement records, to every member or to one peer.
        self._acks_all: list[bytes] = []
        self._acks_to: dict[str, list[bytes]] = {}
        self._replies: dict[str, list[tuple[Prefix, tuple[Any, ...]]]] = {}
        # Key hash -> (entry, encoded item): what was sent lately, so that
        # the same entries sent to several peers are encoded once.
        self._encoded: dict[int, tuple[_Entry, bytes]] = {}
        self._forward: dict[str, list[_Entry]] = {}
        # Key hash -> (physical ms, counter, node hash, peer, expires): the
        # entries asked of a peer and still on their way (see _pulling).
        self._pulls: dict[int, tuple[int, int, int, str, float]] = {}
        self._dirty: dict[tuple[Prefix, Term], _Entry | None] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self._next_sid = 1
        #: Counters for metrics and tests.
        self.stats: dict[str, int] = {
            "broadcast_entries": 0,
            "received_entries": 0,
            "exchanges": 0,
            "tombstones_collected": 0,
            "bad_messages": 0,
        }

    # -- reading ----------------------------------------------------------

    def get(self, prefix: Prefix, key: Term, default: Term = None) -> Term:
        """The value of C{key} under C{prefix}, or C{default}."""
        entry = self._prefixes.get(prefix, {}).get(key)
        if entry is None or entry.value is TOMBSTONE:
            return default
        return entry.value

    def version(self, prefix: Prefix, key: Term) -> tuple[Version, bool] | None:
        """
        The version of C{key} and whether it is a tombstone, or C{None} when
        the store holds nothing for it.
        """
        entry = self._prefixes.get(prefix, {}).get(key)
        if entry is None:
            return None
        return entry.version, entry.value is TOMBSTONE

    def items(self, prefix: Prefix) -> Iterator[tuple[Term, Term]]:
        """The live C{(key, value)} pairs under C{prefix} (no tombstones)."""
        for key, entry in list(self._prefixes.get(prefix, {}).items()):
            if entry.value is not TOMBSTONE:
                yield key, entry.value

    def prefixes(self) -> list[Prefix]:
        """Every prefix that holds at least one entry (tombstones included)."""
        return [p for p, entries in self._prefixes.items() if entries]

    def snapshot(self, tombstones: bool = True) -> dict[tuple[Prefix, Term], tuple[Version, Term]]:
        """
        Everything, as C{{(prefix, key): (version, value)}}: two replicas
        have converged when their snapshots are equal.

        @param tombstones: include tombstones (value L{TOMBSTONE}).
        """
        return {
            (prefix, key): (entry.version, entry.value)
            for prefix, entries in self._prefixes.items()
            for key, entry in entries.items()
            if tombstones or entry.value is not TOMBSTONE
        }

    def tombstones(self) -> dict[tuple[Prefix, Term], frozenset[str]]:
        """Each tombstone held, with the members known to have seen it."""
        return {fk: frozenset(acks) for fk, acks in self._tomb_acks.items()}

    def digest(self) -> bytes:
        """The 64 group hashes: equal digests mean equal stores."""
        return _GROUPS.pack(*self._group_hash)

    # -- writing ----------------------------------------------------------

    def put(self, prefix: Prefix, key: Term, value: Term) -> Version:
        """
        Write C{value} under C{prefix}/C{key}; it is broadcast on the next
        flush.

        @return: the version of the write.
        @raise TypeError: if the prefix, key or value would not replicate
            unchanged (see the module docstring).
        """
        check_key(prefix)
        check_key(key)
        check_value(value)
        version = self.clock.now()
        self._install((prefix, key), version, value, None)
        self._pending.append((prefix, (key, version[0], version[1], version[2], value)))
        self.wake()
        return version

    def delete(self, prefix: Prefix, key: Term) -> Version:
        """
        Delete C{prefix}/C{key}: a tombstone is written (even when the key
        is unknown here, since a peer may know it) and broadcast.

        @return: the version of the tombstone.
        """
        check_key(prefix)
        check_key(key)
        entry = self._prefixes.get(prefix, {}).get(key)
        if entry is not None and entry.value is TOMBSTONE:
            return entry.version
        version = self.clock.now()
        self._install((prefix, key), version, TOMBSTONE, None)
        self._pending.append((prefix, (key, version[0], version[1], version[2])))
        self._collect([(prefix, key)])
        self.wake()
        return version

    def subscribe(self, prefix: Prefix, callback: Subscriber) -> Callable[[], None]:
        """
        Call C{callback(key, old, new)} on every change under C{prefix},
        local or remote; C{old} or C{new} is C{None} when the key is absent
        (never written, or deleted).  Writes that leave the value equal are
        not reported.

        @return: a function that cancels the subscription.
        """
        self._subscribers.setdefault(prefix, []).append(callback)

        def cancel() -> None:
            callbacks = self._subscribers.get(prefix, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return cancel

    # -- membership -------------------------------------------------------

    @property
    def members(self) -> frozenset[str]:
        """The current members, this node included."""
        return self._members

    def set_members(self, members: Iterable[str]) -> None:
        """
        Set the cluster members (this node is always one).  Broadcasts and
        anti-entropy go to members; tombstones wait for members only, so
        removing a member may let tombstones be collected at once.
        """
        self._members = frozenset([self.node, *members])
        self._collect(list(self._tomb_acks))

    # -- persistence ------------------------------------------------------

    def load(
        self,
        rows: Iterable[tuple[Prefix, Term, tuple[int, int, str], Term]],
        clock: tuple[int, int],
    ) -> int:
        """
        Load persisted rows at start (no events, nothing marked dirty).

        @return: how many rows were loaded.
        """
        count = 0
        high = clock
        for prefix, key, (l, c, node), value in rows:  # noqa: E741
            version = (l, c, Atom(node))
            high = max(high, (l, c))
            self._install((prefix, key), version, value, None, persist=False, notify=False)
            count += 1
        self.clock.restore(*high)
        return count

    def take_dirty(self) -> list[tuple[Prefix, Term, Version | None, Term]]:
        """
        Hand over the changes made since the last call, as rows for
        L{IMetadataStorage.write}.
        """
        dirty, self._dirty = self._dirty, {}
        return [
            (prefix, key, None, None)
            if entry is None
            else (prefix, key, entry.version, entry.value)
            for (prefix, key), entry in dirty.items()
        ]

    def redirty(self, rows: Iterable[tuple[Prefix, Term, Any, Any]]) -> None:
        """Mark again rows that could not be written (the current state is kept)."""
        for prefix, key, _, _ in rows:
            fk = (prefix, key)
            if fk not in self._dirty:
                self._dirty[fk] = self._prefixes.get(prefix, {}).get(key)

    # -- the core of replication -----------------------------------------

    def _install(
        self,
        fk: tuple[Prefix, Term],
        version: Version,
        value: Term,
        source: str | None,
        *,
        persist: bool = True,
        notify: bool = True,
    ) -> _Entry:
        prefix, key = fk
        entries = self._prefixes.get(prefix)
        if entries is None:
            entries = self._prefixes[prefix] = {}
        old = entries.get(key)
        if old is not None:
            kh = old.kh
            self._xor(kh, old.h)
            old_value = old.value
        else:
            purged = self._purged.pop(fk, None) if self._purged else None
            if purged is not None:
                kh = purged[1]
                self._purged_kh.pop(kh, None)
            else:
                kh = _key_hash(prefix, key)
            old_value = TOMBSTONE
        h = _entry_hash(kh, version)
        self._xor(kh, h)
        entry = entries[key] = self._buckets[kh & _MASK][kh] = _Entry(fk, version, value, kh, h)
        if value is TOMBSTONE:
            acks = self._tomb_acks[fk] = {self.node}
            if source is not None:
                acks.add(source)
        elif old_value is TOMBSTONE:
            self._tomb_acks.pop(fk, None)
        if persist:
            self._dirty[fk] = entry
        if notify and old_value != value:
            callbacks = self._subscribers.get(prefix)
            if callbacks:
                self._notify(
                    callbacks,
                    key,
                    None if old_value is TOMBSTONE else old_value,
                    None if value is TOMBSTONE else value,
                )
        return entry

    def _notify(self, callbacks: list[Subscriber], key: Term, old: Term, new: Term) -> None:
        for callback in list(callbacks):
            try:
                callback(key, old, new)
            except Exception:
                self.log.failure(
                    "metadata subscriber {callback!r} failed on {key!r}",
                    callback=callback,
                    key=key,
                )

    def _xor(self, kh: int, h: int) -> None:
        bucket = kh & _MASK
        self._bucket_hash[bucket] ^= h
        self._group_hash[bucket // _PER_GROUP] ^= h

    def _merge(
        self, peer: str, prefix: Prefix, item: Sequence[Any]
    ) -> tuple[int, tuple[Prefix, Term], Version, _Entry | None]:
        """
        Merge one remote entry C{(key, ms, counter, node[, value])} under
        C{prefix} (LWW); answers C{_NEWER}, C{_SAME} or C{_OLDER}, the key,
        the remote version and our entry after the merge (C{None} when the
        key was collected here).
        """
        size = len(item)
        if size == 5:
            value = item[4]
        elif size == 4:
            value = TOMBSTONE
        else:
            raise ValueError("bad entry")
        key, l, c, node = item[0], item[1], item[2], item[3]  # noqa: E741
        if type(l) is not int or type(c) is not int or not isinstance(node, str):
            raise TypeError("bad version")
        version: Version = (l, c, node if type(node) is Atom else Atom(node))
        fk = (prefix, key)
        current = self._prefixes.get(prefix, {}).get(key)
        if current is not None:
            if current.version > version:
                return _OLDER, fk, version, current
            if current.version == version:
                if value is TOMBSTONE:
                    self._acked(fk, peer, version)
                return _SAME, fk, version, current
        elif self._purged:
            purged = self._purged.get(fk)
            if purged is not None and purged[0] >= version:
                return _OLDER, fk, version, None
        return _NEWER, fk, version, self._install(fk, version, value, peer)

    def _apply(
        self,
        peer: str,
        payload: Any,
        exchange: _Exchange | None = None,
        forward: bool = False,
    ) -> None:
        """
        Merge remote entries (an entries payload), queue acknowledgements,
        collect.  With C{forward}, what was new here is passed on to the
        other members.
        """
        high = (0, 0)
        forwards = self._forward.setdefault(peer, []) if forward else None
        advertised = exchange.advertised if exchange is not None else None
        collect: list[tuple[Prefix, Term]] = []
        acks_to_peer = self._acks_to.setdefault(peer, [])
        count = 0
        for prefix, item in _unpack_entries(payload):
            count += 1
            result, fk, version, entry = self._merge(peer, prefix, item)
            if version[:2] > high:
                high = version[:2]
            if forwards is not None and entry is not None and result == _NEWER:
                forwards.append(entry)
            if len(item) == 4:
                kh = entry.kh if entry is not None else self._purged[fk][1]
                ack = _RECORD.pack(kh, version[0], version[1], _node_hash(version[2]))
                if result == _NEWER:
                    self._acks_all.append(ack)
                    collect.append(fk)
                else:
                    acks_to_peer.append(ack)
            elif result == _OLDER and fk in self._purged:
                # The peer still holds a value we deleted and collected: it
                # missed the tombstone (it was removed from the cluster
                # meanwhile), so send the tombstone back.
                pv = self._purged[fk][0]
                self._replies.setdefault(peer, []).append((fk[0], (fk[1], pv[0], pv[1], pv[2])))
            if exchange is not None:
                report = exchange.report
                if entry is not None:
                    exchange.peer_sent.add(entry.kh)
                if result == _NEWER:
                    index = 1 if entry.kh in advertised else 0  # type: ignore[union-attr,operator]
                    if index:
                        report.replaced += 1
                    else:
                        report.received += 1
                    report._count(fk[0], index)
                elif result == _OLDER:
                    report.kept += 1
                    report._count(fk[0], 2)
        self.stats["received_entries"] += count
        if high > (0, 0):
            self.clock.observe(*high)
        if collect:
            self._collect(collect)
        if acks_to_peer or self._acks_all or self._replies or forwards:
            self.wake()

    def _acked(self, fk: tuple[Prefix, Term], peer: str, version: Version) -> None:
        """C{peer} told us first-hand it holds C{version} or newer for C{fk}."""
        acks = self._tomb_acks.get(fk)
        if acks is None or peer in acks:
            return
        entry = self._prefixes[fk[0]][fk[1]]
        if entry.version <= version:
            acks.add(peer)
            if self._members <= acks:
                self._collect([fk])

    def _acked_buckets(self, peer: str, equal: Callable[[int], bool]) -> None:
        """C{peer} holds exactly our entries in every bucket where C{equal}."""
        collect = []
        for fk, acks in self._tomb_acks.items():
            if peer not in acks:
                entry = self._prefixes[fk[0]][fk[1]]
                if equal(entry.kh & _MASK):
                    acks.add(peer)
                    if self._members <= acks:
                        collect.append(fk)
        if collect:
            self._collect(collect)

    def _collect(self, fks: Iterable[tuple[Prefix, Term]]) -> None:
        """Forget the tombstones of C{fks} that every member has seen."""
        expires = self._now() + self._purge_memory
        members = self._members
        for fk in fks:
            acks = self._tomb_acks.get(fk)
            if acks is None or not members <= acks:
                continue
            del self._tomb_acks[fk]
            entries = self._prefixes[fk[0]]
            entry = entries.pop(fk[1])
            if not entries:
                del self._prefixes[fk[0]]
            self._xor(entry.kh, entry.h)
            self._buckets[entry.kh & _MASK].pop(entry.kh, None)
            self._purged[fk] = (entry.version, entry.kh, expires)
            self._purged_kh[entry.kh] = fk
            self._dirty[fk] = None
            self.stats["tombstones_collected"] += 1

    # -- messages ---------------------------------------------------------

    def flush(self) -> None:
        """Send what is queued: local writes to every member, acknowledgements."""
        peers = sorted(self._members - {self.node})
        if self._pending:
            pending, self._pending = self._pending, []
            self.stats["broadcast_entries"] += len(pending)
            for chunk in self._chunks(pending):
                message = (A_PUT, self._pack_items(chunk))
                for peer in peers:
                    self._transport.send(peer, message)
        if self._acks_all:
            acks_all, self._acks_all = self._acks_all, []
            for chunk in self._chunks(acks_all, self._batch_size * 8):
                message = (A_ACK, b"".join(chunk))
                for peer in peers:
                    self._transport.send(peer, message)
        if self._forward:
            forward, self._forward = self._forward, {}
            for source, forwarded in forward.items():
                targets = [peer for peer in peers if peer != source]
                if not forwarded or not targets:
                    continue
                # A summary, packed once for every peer: each pulls only
                # what it lacks (md_pull), so values cross the network once.
                records = self._records(forwarded)
                for chunk in self._chunks(records, self._batch_size * 8):
                    message = (A_HAVE, b"".join(chunk))
                    for peer in targets:
                        self._transport.send(peer, message)
        if self._replies:
            replies, self._replies = self._replies, {}
            for peer, items in replies.items():
                for chunk in self._chunks(items):
                    self._transport.send(peer, (A_PUT, self._pack_items(chunk)))
        if self._acks_to:
            acks_to, self._acks_to = self._acks_to, {}
            for peer, acks in acks_to.items():
                for chunk in self._chunks(acks, self._batch_size * 8) if acks else ():
                    self._transport.send(peer, (A_ACK, b"".join(chunk)))

    def _records(self, entries: Iterable[_Entry]) -> list[bytes]:
        """
        The packed version record of the current entry of each key of
        C{entries} still held here, once per key.
        """
        buckets = self._buckets
        pack = _RECORD.pack
        current = {}
        for entry in entries:
            kh = entry.kh
            held = buckets[kh & _MASK].get(kh)
            if held is not None:
                current[kh] = held.version
        return [pack(kh, v[0], v[1], _node_hash(v[2])) for kh, v in current.items()]

    def _pack_items(self, items: list[tuple[Prefix, tuple[Any, ...]]]) -> bytes:
        """The entries payload of C{(prefix, item)} pairs."""
        groups: dict[Prefix, list[bytes]] = {}
        for prefix, item in items:
            parts = groups.get(prefix)
            if parts is None:
                parts = groups[prefix] = []
            parts.append(encode_term(item))
        return _pack_entries(groups)

    def _pack(self, entries: list[_Entry]) -> bytes:
        """
        The entries payload of C{entries}, reusing the encoding of an entry
        sent lately (unchanged since: the same L{_Entry} object).
        """
        cache = self._encoded
        if len(cache) > _ENCODED_MAX:
            cache.clear()
        groups: dict[Prefix, list[bytes]] = {}
        for entry in entries:
            kh = entry.kh
            hit = cache.get(kh)
            if hit is not None and hit[0] is entry:
                part = hit[1]
            else:
                part = encode_term(_item(entry))
                cache[kh] = (entry, part)
            prefix = entry.fk[0]
            parts = groups.get(prefix)
            if parts is None:
                parts = groups[prefix] = []
            parts.append(part)
        return _pack_entries(groups)

    def _chunks(self, items: list[Any], size: int = 0) -> Iterator[list[Any]]:
        size = size or self._batch_size
        if len(items) <= size:
            yield items
            return
        for start in range(0, len(items), size):
            yield items[start : start + size]

    def receive(self, peer: str, message: Any) -> None:
        """
        Handle a message from C{peer}.  A malformed message is dropped with
        one log line; it never raises.
        """
        try:
            tag = message[0]
            if tag == A_PUT:
                self._apply(peer, message[1])
            elif tag == A_REPAIR:
                self._apply(peer, message[1], forward=True)
            elif tag == A_ACK:
                self._receive_acks(peer, message[1])
            elif tag == A_HAVE:
                self._receive_have(peer, message[1])
            elif tag == A_PULL:
                self._receive_pull(peer, message[1])
            elif tag == A_DIGEST:
                self._receive_digest(peer, message[1], message[2])
            elif tag == A_BUCKETS:
                self._receive_buckets(peer, message[1], message[2])
            elif tag == A_WANT:
                self._receive_want(peer, message[1], message[2], message[3])
            elif tag == A_ENTRIES:
                self._receive_entries(peer, message[1], message[2], *message[3:6])
            else:
                raise ValueError(f"unknown message {tag!r}")
        except (TypeError, ValueError, IndexError, KeyError, struct.error) as e:
            self.stats["bad_messages"] += 1
            self.log.warn(
                "dropped a malformed metadata message from {peer}: {error}",
                peer=peer,
                error=str(e),
                event_id="vmq.metadata.bad_message",
            )

    def _receive_acks(self, peer: str, records: bytes) -> None:
        """
        C{peer} holds these versions (or newer): a tombstone of ours at
        most that old is acknowledged by it.  An equal time from another
        node cannot be ordered from the node hash alone: not taken.
        """
        buckets = self._buckets
        for kh, ms, c, nh in _RECORD.iter_unpack(records):
            entry = buckets[kh & _MASK].get(kh)
            if entry is None or entry.value is not TOMBSTONE:
                continue
            version = entry.version
            if version[:2] < (ms, c) or (version[:2] == (ms, c) and _node_hash(version[2]) == nh):
                self._acked(entry.fk, peer, version)

    def _receive_have(self, peer: str, records: bytes) -> None:
        """
        C{peer} forwarded a summary of entries new to it: pull those we
        lack or hold older (unless already on their way from another
        peer); acknowledge tombstones we hold at exactly that version.
        """
        want = bytearray()
        acks: list[bytes] = []
        buckets = self._buckets
        purged = self._purged_kh
        now = self._now()
        for record in _RECORD.iter_unpack(records):
            kh, ms, c, nh = record
            entry = buckets[kh & _MASK].get(kh)
            if entry is not None:
                l, lc, node = entry.version  # noqa: E741
                if (l, lc) > (ms, c):
                    continue
                if (l, lc) == (ms, c) and _node_hash(node) == nh:
                    if entry.value is TOMBSTONE:
                        acks.append(_RECORD.pack(*record))
                    continue
            elif purged and kh in purged:
                fk = purged[kh]
                pv = self._purged[fk][0]
                if pv[:2] >= (ms, c):
                    # Deleted and collected here: nothing newer to pull, and
                    # tell the peer (which may still wait for it).
                    acks.append(_RECORD.pack(kh, pv[0], pv[1], _node_hash(pv[2])))
                    continue
            if not self._pulling(record, peer, now):
                want += _U64.pack(kh)
        if want:
            self._transport.send(peer, (A_PULL, bytes(want)))
        if acks:
            self._acks_to.setdefault(peer, []).extend(acks)
            self.wake()

    def _receive_pull(self, peer: str, khs: bytes) -> None:
        """C{peer} asks for our entries of these key hashes."""
        entries = []
        buckets = self._buckets
        for (kh,) in _U64.iter_unpack(khs):
            entry = buckets[kh & _MASK].get(kh)
            if entry is not None:
                entries.append(entry)
        for chunk in self._chunks(entries) if entries else ():
            self._transport.send(peer, (A_PUT, self._pack(chunk)))

    def _pulling(self, record: tuple[int, int, int, int], peer: str, now: float) -> bool:
        """
        Whether the entry of C{record} (or a newer version) was already
        asked of another peer and is still on its way; if not, note that
        we ask C{peer} for it now.  Asking twice is harmless (merging is
        idempotent) but costs the values twice, as when both nodes of one
        side answer the same exchange after a partition heals.
        """
        kh, ms, c, nh = record
        pull = self._pulls.get(kh)
        if (
            pull is not None
            and pull[3] != peer
            and pull[4] > now
            and ((pull[0], pull[1]) > (ms, c) or ((pull[0], pull[1]) == (ms, c) and pull[2] == nh))
        ):
            return True
        self._pulls[kh] = (ms, c, nh, peer, now + self._pull_timeout)
        return False

    # -- anti-entropy -----------------------------------------------------

    def anti_entropy(self) -> str | None:
        """
        Start an exchange with one random member (not one already in an
        exchange with us).

        @return: the peer chosen, or C{None} when there is none.
        """
        busy = {x.peer for x in self._exchanges.values()}
        peers = sorted(self._members - {self.node} - busy)
        if not peers:
            return None
        peer = self._random.choice(peers)
        self.exchange(peer)
        return peer

    def peer_up(self, peer: str) -> None:
        """
        A connection to C{peer} came (back) up: repair at once.  Both ends
        hear of it, so only the node whose name sorts first starts the
        exchange (the periodic rounds cover a missed event).
        """
        if self.node < peer and all(x.peer != peer for x in self._exchanges.values()):
            self.exchange(peer)

    def join(self, peer: str, on_done: Callable[[MergeReport], None]) -> int:
        """
        Merge this node's metadata with that of C{peer} (the discovery node
        of a join): LWW both ways; C{on_done} gets the L{MergeReport} when
        the exchange ends.

        @return: the exchange id.
        """
        return self.exchange(peer, on_done, join=True)

    def exchange(
        self,
        peer: str,
        on_done: Callable[[MergeReport], None] | None = None,
        *,
        join: bool = False,
    ) -> int:
        """
        Start an anti-entropy exchange with C{peer}.

        @return: the exchange id.
        """
        sid = self._next_sid
        self._next_sid += 1
        self._exchanges[sid] = _Exchange(
            sid, peer, self._now(), MergeReport(peer, join=join), on_done, tuple(self._group_hash)
        )
        self.stats["exchanges"] += 1
        self._transport.send(peer, (A_DIGEST, sid, self.digest()))
        return sid

    def _receive_digest(self, peer: str, sid: int, groups: bytes) -> None:
        theirs = _GROUPS.unpack(groups)
        ours = self._group_hash
        differ = [g for g in range(NGROUPS) if theirs[g] != ours[g]]
        differing = set(differ)
        self._acked_buckets(peer, lambda b: b // _PER_GROUP not in differing)
        self._transport.send(
            peer,
            (
                A_BUCKETS,
                sid,
                [
                    (
                        g,
                        _GROUP_BUCKETS.pack(
                            *self._bucket_hash[g * _PER_GROUP : (g + 1) * _PER_GROUP]
                        ),
                    )
                    for g in differ
                ],
            ),
        )

    def _receive_buckets(self, peer: str, sid: int, groups: Sequence[Any]) -> None:
        exchange = self._exchanges.get(sid)
        if exchange is None or exchange.peer != peer:
            return
        differ: list[int] = []
        for g, packed in groups:
            theirs = _GROUP_BUCKETS.unpack(packed)
            base = g * _PER_GROUP
            for i in range(_PER_GROUP):
                if theirs[i] != self._bucket_hash[base + i]:
                    differ.append(base + i)
        # Evidence of what the peer holds: a bucket it sent that equals ours
        # now, or a group it left out (equal to our digest) that has not
        # changed here since.
        listed = {g for g, _ in groups}
        sent = exchange.digest
        differing = set(differ)
        self._acked_buckets(
            peer,
            lambda b: (
                b not in differing
                and (
                    b // _PER_GROUP in listed
                    or self._group_hash[b // _PER_GROUP] == sent[b // _PER_GROUP]
                )
            ),
        )
        if not differ:
            self._finish(exchange)
            return
        exchange.report.buckets = len(differ)
        # Advertise our versions in those buckets (24 bytes per entry, no
        # values): the peer answers with only what we lack.
        flat: list[int] = []
        add = flat.extend
        advertised = exchange.advertised
        node_hash = _NODE_HASH
        for b in differ:
            for kh, entry in self._buckets[b].items():
                version = entry.version
                nh = node_hash.get(version[2])
                if nh is None:
                    nh = _node_hash(version[2])
                add((kh, version[0], version[1], nh))
                advertised[kh] = version
        records = struct.pack(">" + "QQII" * (len(flat) // 4), *flat)
        self._transport.send(peer, (A_WANT, sid, differ, records))

    def _receive_want(self, peer: str, sid: int, buckets: Sequence[int], records: bytes) -> None:
        theirs = {record[0]: record for record in _RECORD.iter_unpack(records)}
        entries = []
        want_older = bytearray()
        coming = bytearray()
        acked = []
        pack = _U64.pack
        pulling = self._pulling
        node_hash = _NODE_HASH
        now = self._now()
        for b in buckets:
            for kh, entry in self._buckets[b & _MASK].items():
                version = entry.version
                lc = version[:2]
                other = theirs.pop(kh, None)
                if other is None or other[1:3] < lc:
                    entries.append(entry)
                elif other[1:3] > lc:
                    if pulling(other, peer, now):
                        coming += pack(kh)
                    else:
                        want_older += pack(kh)
                        if entry.value is TOMBSTONE:
                            acked.append(entry)
                elif other[3] != (node_hash.get(version[2]) or _node_hash(version[2])):
                    entries.append(entry)  # same time, other node: let them decide
                elif entry.value is TOMBSTONE:
                    acked.append(entry)
        want_missing = bytearray()
        for kh, other in theirs.items():
            if pulling(other, peer, now):
                coming += pack(kh)
            else:
                want_missing += pack(kh)
        for entry in acked:
            self._acked(entry.fk, peer, entry.version)
        chunks = list(self._chunks(entries))
        for i, chunk in enumerate(chunks):
            packed = self._pack(chunk)
            if i < len(chunks) - 1:
                self._transport.send(peer, (A_ENTRIES, sid, packed))
            elif coming:
                self._transport.send(
                    peer,
                    (A_ENTRIES, sid, packed, bytes(want_older), bytes(want_missing), bytes(coming)),
                )
            else:
                self._transport.send(
                    peer, (A_ENTRIES, sid, packed, bytes(want_older), bytes(want_missing))
                )

    def _receive_entries(self, peer: str, sid: int, entries: Any, *final: bytes) -> None:
        exchange = self._exchanges.get(sid)
        if exchange is None or exchange.peer != peer:
            return
        self._apply(peer, entries, exchange, forward=True)
        if not final:
            return
        want_older, want_missing = final[0], final[1]
        report = exchange.report
        advertised = exchange.advertised
        buckets = self._buckets
        # Keys the peer lacks (or holds older) but already asked another
        # node for: neither sent nor taken as evidence of what it holds.
        coming = {kh for (kh,) in _U64.iter_unpack(final[2])} if len(final) > 2 else set()
        report.coming += len(coming)
        wanted: set[int] = set()
        repair = []
        for packed, conflict in ((want_older, True), (want_missing, False)):
            for (kh,) in _U64.iter_unpack(packed):
                if kh in wanted or kh not in advertised:
                    continue
                wanted.add(kh)
                entry = buckets[kh & _MASK].get(kh)
                if entry is None:
                    continue
                prefix = entry.fk[0]
                if conflict:
                    report.kept += 1
                    report._count(prefix, 2)
                repair.append(entry)
                report.sent += 1
                report._count(prefix, 3)
        # Every advertised tombstone the peer neither wanted nor answered
        # with its own version: the peer holds exactly that version.
        acked = []
        for kh, version in advertised.items():
            if kh in wanted or kh in coming or kh in exchange.peer_sent:
                continue
            entry = buckets[kh & _MASK].get(kh)
            if entry is not None and entry.value is TOMBSTONE and entry.version == version:
                acked.append(entry)
        for entry in acked:
            self._acked(entry.fk, peer, entry.version)
        for chunk in self._chunks(repair) if repair else ():
            self._transport.send(peer, (A_REPAIR, self._pack(chunk)))
        self._finish(exchange)

    def _finish(self, exchange: _Exchange) -> None:
        del self._exchanges[exchange.sid]
        report = exchange.report
        if not report.in_sync:
            self.log.info(
                "metadata {kind} with {peer}: {received} received, {replaced} replaced,"
                " {kept} kept, {sent} sent ({buckets} buckets differed)",
                kind="join merge" if report.join else "anti-entropy",
                peer=report.peer,
                received=report.received,
                replaced=report.replaced,
                kept=report.kept,
                sent=report.sent,
                buckets=report.buckets,
                event_id="vmq.metadata.exchange",
            )
        if exchange.on_done is not None:
            exchange.on_done(report)

    # -- housekeeping -----------------------------------------------------

    def tick(self) -> None:
        """
        Periodic housekeeping: forget exchanges that timed out and collected
        tombstones past their purge memory.
        """
        now = self._now()
        for sid, exchange in list(self._exchanges.items()):
            if now - exchange.started > self._exchange_timeout:
                del self._exchanges[sid]
                self.log.info(
                    "metadata exchange with {peer} timed out",
                    peer=exchange.peer,
                    event_id="vmq.metadata.exchange_timeout",
                )
        expired = [fk for fk, (_, _, expires) in self._purged.items() if expires <= now]
        for fk in expired:
            self._purged_kh.pop(self._purged.pop(fk)[1], None)
        if self._pulls:
            self._pulls = {kh: pull for kh, pull in self._pulls.items() if pull[4] > now}
        self._encoded.clear()
