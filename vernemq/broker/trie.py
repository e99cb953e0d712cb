# -*- test-case-name: tests.test_broker_trie -*-
"""
The subscription trie: which subscribers does a PUBLISH to a topic reach?

L{SubscriptionTrie} maps topic filters to entries C{key -> value} (for the
router: subscriber id -> subscription options) and answers
L{SubscriptionTrie.match} with every C{(key, value)} whose filter matches a
topic, following the rules in L{vernemq.broker.topics} (C{+}, C{#} including
the parent level, and the C{$} rule).  It is the broker's hottest data
structure, so it is built around two ideas.

The trie
========

One node per filter prefix.  A node holds a C{dict} of literal children
keyed by level string, and two separate slots for its C{+} child and its
C{#} child, so a walk tries at most three branches per level and the common
case (no wildcard at this level) is one C{dict.get}.  A node's entries are
a C{dict} (add/remove by key in O(1)) plus a lazily built tuple of its
items, rebuilt on the first match after a change.  Removing the last entry
of a filter prunes the nodes it leaves empty, so subscribe/unsubscribe
churn leaks nothing.  Leaves share one empty C{dict} for "no children" /
"no entries" until they need their own.  Walks are iterative (explicit
stack), so deep topics cannot hit the recursion limit.

The match cache
===============

MQTT traffic repeats topics, so L{SubscriptionTrie.match} first looks the
topic up in a C{dict} of results: a hit is one dictionary lookup and returns
a shared, immutable tuple (callers cannot corrupt it).  A miss walks the
trie, concatenates the matched nodes' item tuples (when exactly one filter
matches, its tuple is returned as is, without copying) and stores the
result, including empty results (publishes nobody listens to are common).

Invalidation is exact, not "clear everything":

  - adding, replacing or removing an entry of a filter without wildcards
    drops only that one topic's cached result;
  - for a wildcard filter, the cached topics are kept in a
    L{vernemq.broker.retain.TopicIndex} (a tree of topic levels), and the
    filter is matched against that tree to drop just the results it could
    change; so a device (re)subscribing to C{devices/<id>/#} does not flush
    the results of the other million devices;
  - the index is filled lazily: a miss only notes its topic in a set, and
    the next wildcard change indexes the noted topics in one batch.  A
    workload with more distinct topics than the cache holds then never
    pays for indexing; if more than 4096 topics are pending at a wildcard
    change, the cache is cleared instead (bounding the pause; the pending
    pile only grows that large while the cache is (re)filling anyway);
  - the filter C{#} matches (almost) everything, so it clears the cache
    outright (over-invalidating only C{$} topics).

The cache is bounded (C{cache_size} distinct topics, default 100 000).  When
full it is cleared and refills from the traffic: O(1) amortised, no
per-hit bookkeeping (an LRU would cost on every hit), and a working set
larger than the cache gets little from any policy.  C{cache_size=0}
disables caching.

Not here
========

Shared subscriptions: the trie compares filters literally, so
L{vernemq.broker.router.Topics} strips C{$share/<group>/} with
L{vernemq.broker.topics.parse_shared} and the key is the group
(L{vernemq.broker.shared.SharedGroup}), one entry however many members.
Mountpoints: one trie per mountpoint, or prefix filters and topics the same
way.  A subscriber with two overlapping filters
appears once per filter; the router merges them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Final, Generic, TypeVar

from vernemq.broker.retain import TopicIndex
from vernemq.broker.topics import validate_topic_filter

__all__ = ["DEFAULT_CACHE_SIZE", "SubscriptionTrie"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_CACHE_SIZE: Final = 100_000
"""How many distinct topics' match results a trie caches by default."""

# Shared stand-ins for "no children" and "no entries".  Never written to:
# writers swap in a fresh dict first.
_NO_CHILDREN: Final[dict[str, Any]] = {}
_NO_ENTRIES: Final[dict[Any, Any]] = {}
_MISSING: Final[Any] = object()

# A wildcard subscription change indexes the topics cached since the last
# one; with more than this many pending it clears the cache instead.
_INDEX_BATCH_LIMIT: Final = 4096


class _Node(Generic[K, V]):
    """One filter prefix."""

    __slots__ = ("children", "entries", "hash", "items", "plus")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K, V]] = _NO_CHILDREN
        self.plus: _Node[K, V] | None = None
        self.hash: _Node[K, V] | None = None
        # Subscribers whose filter ends here.
        self.entries: dict[K, V] = _NO_ENTRIES
        # tuple(entries.items()), or None when it must be rebuilt.
        self.items: tuple[tuple[K, V], ...] | None = ()

    def is_empty(self) -> bool:
        """Whether the node holds nothing and can be pruned."""
        return (not self.entries and not self.children
                and self.plus is None and self.hash is None)


def _items(node: _Node[K, V]) -> tuple[tuple[K, V], ...]:
    items = node.items
    if items is None:
        items = node.items = tuple(node.entries.items())
    return items


class SubscriptionTrie(Generic[K, V]):
    """
    Topic filters -> C{{key: value}}, matched against topic names.

    @param cache_size: how many distinct topics' results to cache (C{0}: no
        cache).  See the module docstring for the policy.
    """

    __slots__ = ("_cache", "_cache_index", "_cache_size", "_len",
                 "_nfilters", "_root", "_unindexed")

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._root: _Node[K, V] = _Node()
        self._len = 0
        self._nfilters = 0
        self._cache: dict[str, tuple[tuple[K, V], ...]] = {}
        # Every cached topic is in exactly one of these two.
        self._cache_index = TopicIndex()
        self._unindexed: set[str] = set()
        self._cache_size = max(cache_size, 0)

    # -- the hot path -----------------------------------------------------

    def match(self, topic: str) -> tuple[tuple[K, V], ...]:
        """
        Every C{(key, value)} whose filter matches the topic name C{topic}.

        One entry per matching C{(filter, key)}: a key subscribed through two
        overlapping filters appears twice, in no particular order.  The
        result is shared with the cache; it is a tuple so nobody can change
        it.

        @param topic: a valid topic name (no wildcards).
        """
        result = self._cache.get(topic)
        if result is None:
            result = self._match_miss(topic)
        return result

    def _match_miss(self, topic: str) -> tuple[tuple[K, V], ...]:
        result = self._lookup(topic.split("/"), topic[:1] == "$")
        if self._cache_size:
            cache = self._cache
            if len(cache) >= self._cache_size:
                self.clear_cache()
            cache[topic] = result
            self._unindexed.add(topic)
        return result

    def _lookup(self, levels: list[str],
                dollar: bool) -> tuple[tuple[K, V], ...]:
        """Walk the trie for a split topic name; no cache involved."""
        nlevels = len(levels)
        matched: list[_Node[K, V]] = []
        found = matched.append
        stack: list[tuple[_Node[K, V], int]] = []
        branch = stack.append
        node: _Node[K, V] | None = self._root
        i = 0
        if dollar:
            # $-topics: skip the root's "+" and "#" [MQTT-4.7.2-1].
            node = self._root.children.get(levels[0])
            i = 1
        while True:
            while node is not None:
                if i == nlevels:
                    if node.entries:
                        found(node)
                    if node.hash is not None:
                        # "#" also matches the parent level: a/# ~ a.
                        found(node.hash)
                    break
                if node.hash is not None:
                    found(node.hash)
                if node.plus is not None:
                    branch((node.plus, i + 1))
                node = node.children.get(levels[i])
                i += 1
            if not stack:
                break
            node, i = stack.pop()
        if len(matched) == 1:
            return _items(matched[0])
        # Usually two or three nodes: tuple += beats building a list.
        result: tuple[tuple[K, V], ...] = ()
        for matched_node in matched:
            result += _items(matched_node)
        return result

    # -- changes ----------------------------------------------------------

    def add(self, topic_filter: str, key: K, value: V) -> bool:
        """
        Set C{value} for C{key} under C{topic_filter}.

        @param topic_filter: a valid filter (compared literally, so strip
            C{$share/<group>/} first).
        @return: C{True} if C{(topic_filter, key)} is new, C{False} if an
            existing value was replaced.
        @raise ValueError: if C{topic_filter} is not a valid filter.
        """
        if not validate_topic_filter(topic_filter):
            raise ValueError(f"invalid topic filter {topic_filter!r}")
        node = self._root
        wildcard = False
        for level in topic_filter.split("/"):
            child: _Node[K, V] | None
            if level == "+":
                wildcard = True
                child = node.plus
                if child is None:
                    child = node.plus = _Node()
            elif level == "#":
                wildcard = True
                child = node.hash
                if child is None:
                    child = node.hash = _Node()
            else:
                children = node.children
                child = children.get(level)
                if child is None:
                    if children is _NO_CHILDREN:
                        children = node.children = {}
                    child = children[level] = _Node()
            node = child
        entries = node.entries
        old = entries.get(key, _MISSING)
        if old is value:
            return False
        if entries is _NO_ENTRIES:
            entries = node.entries = {}
            self._nfilters += 1
        entries[key] = value
        node.items = None
        if old is _MISSING:
            self._len += 1
        self._invalidate(topic_filter, wildcard)
        return old is _MISSING

    def remove(self, topic_filter: str, key: K) -> bool:
        """
        Remove C{key}'s entry under C{topic_filter}, pruning empty nodes.

        @return: C{True} if there was one.
        """
        path: list[tuple[_Node[K, V], str]] = []
        node = self._root
        wildcard = False
        for level in topic_filter.split("/"):
            child: _Node[K, V] | None
            if level == "+":
                wildcard = True
                child = node.plus
            elif level == "#":
                wildcard = True
                child = node.hash
            else:
                child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        entries = node.entries
        if key not in entries:
            return False
        del entries[key]
        self._len -= 1
        node.items = None
        if not entries:
            node.entries = _NO_ENTRIES
            self._nfilters -= 1
            while path and node.is_empty():
                parent, level = path.pop()
                if level == "+":
                    parent.plus = None
                elif level == "#":
                    parent.hash = None
                else:
                    del parent.children[level]
                    if not parent.children:
                        parent.children = _NO_CHILDREN
                node = parent
        self._invalidate(topic_filter, wildcard)
        return True

    def _invalidate(self, topic_filter: str, wildcard: bool) -> None:
        """Drop the cached results a change to C{topic_filter} affects."""
        cache = self._cache
        if not cache:
            return
        if not wildcard:
            if cache.pop(topic_filter, None) is not None:
                if topic_filter in self._unindexed:
                    self._unindexed.remove(topic_filter)
                else:
                    self._cache_index.discard(topic_filter)
            return
        unindexed = self._unindexed
        if topic_filter == "#" or len(unindexed) > _INDEX_BATCH_LIMIT:
            self.clear_cache()
            return
        if unindexed:
            add = self._cache_index.add
            for topic in unindexed:
                add(topic)
            unindexed.clear()
        for topic in self._cache_index.pop_matching(topic_filter):
            del cache[topic]

    # -- inspection -------------------------------------------------------

    def __len__(self) -> int:
        """The number of C{(filter, key)} entries."""
        return self._len

    def count_filters(self) -> int:
        """The number of distinct filters with at least one entry."""
        return self._nfilters

    def _find(self, topic_filter: str) -> _Node[K, V] | None:
        node = self._root
        for level in topic_filter.split("/"):
            child: _Node[K, V] | None
            if level == "+":
                child = node.plus
            elif level == "#":
                child = node.hash
            else:
                child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node

    def __contains__(self, item: object) -> bool:
        """Whether C{item}, a C{(topic_filter, key)} pair, has an entry."""
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        topic_filter, key = item
        if not isinstance(topic_filter, str):
            return False
        node = self._find(topic_filter)
        return node is not None and key in node.entries

    def get(self, topic_filter: str, key: K) -> V | None:
        """The value of C{key} under C{topic_filter}, or C{None}."""
        node = self._find(topic_filter)
        if node is None:
            return None
        return node.entries.get(key)

    def _walk(self) -> list[tuple[str, _Node[K, V]]]:
        """Every C{(filter, node)} with entries (a snapshot)."""
        out: list[tuple[str, _Node[K, V]]] = []
        stack: list[tuple[_Node[K, V], tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, path = stack.pop()
            if node.entries:
                out.append(("/".join(path), node))
            for level, child in node.children.items():
                stack.append((child, (*path, level)))
            if node.plus is not None:
                stack.append((node.plus, (*path, "+")))
            if node.hash is not None:
                stack.append((node.hash, (*path, "#")))
        return out

    def filters(self) -> Iterator[str]:
        """Iterate over the filters that have entries (a snapshot)."""
        return iter([topic_filter for topic_filter, _ in self._walk()])

    def items(self) -> Iterator[tuple[str, K, V]]:
        """Iterate over every C{(filter, key, value)} (a snapshot)."""
        return iter([(topic_filter, key, value)
                     for topic_filter, node in self._walk()
                     for key, value in node.entries.items()])

    def node_count(self) -> int:
        """The number of trie nodes, root included (a diagnostic)."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children.values())
            if node.plus is not None:
                stack.append(node.plus)
            if node.hash is not None:
                stack.append(node.hash)
        return count

    # -- the cache --------------------------------------------------------

    def is_cached(self, topic: str) -> bool:
        """Whether C{topic}'s match result is in the cache."""
        return topic in self._cache

    def cache_len(self) -> int:
        """How many topics' match results are cached."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget every cached match result."""
        self._cache.clear()
        self._cache_index.clear()
        self._unindexed.clear()
