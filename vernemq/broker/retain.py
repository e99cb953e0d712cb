# -*- test-case-name: tests.test_broker_retain -*-
"""
Retained messages, indexed by a tree of topic levels so that a wildcard
SUBSCRIBE finds its retained messages without scanning every one.

L{TopicIndex} is the tree: a set of topic names that answers "which of my
topics does this filter match?" by walking only the branches the filter
can reach (C{a/+/c} visits the children of C{a}, then one child each;
C{sport/#} visits the C{sport} subtree).  L{RetainedStore} pairs it with a
C{dict} from topic to message, so C{get}, C{set} of an existing topic and
exact-filter matches are one dictionary operation.
L{vernemq.broker.trie.SubscriptionTrie} also uses a L{TopicIndex}, to find
which of its cached match results a subscription change invalidates.

Matching follows L{vernemq.broker.topics}: C{+} matches one (possibly
empty) level, C{#} the rest including the parent level (C{a/#} matches
C{a}), and a filter starting with C{+} or C{#} never matches a topic
starting with C{$}.

Mountpoints are the caller's business: keep one store per mountpoint (as
VerneMQ keys retained messages by C{{MountPoint, Topic}}).  Shared
subscriptions receive no retained messages (MQTT 5.0 3.8.4), so callers
strip or skip C{$share/...} filters; this module treats them literally.

Algorithms are iterative, so very deep topics cannot hit Python's recursion
limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, Generic, TypeVar

__all__ = ["RetainedStore", "TopicIndex"]

M = TypeVar("M")

# A tree node is a plain dict: level -> child node, plus the key None ->
# the full topic name when a topic ends there.  Plain dicts are about twice
# as fast to build as slotted objects holding a dict, which matters because
# the trie's cache adds a topic on every cache miss.
_TNode = dict[str | None, Any]


class TopicIndex:
    """
    A set of topic names stored as a tree of levels, queryable by topic
    filter.
    """

    __slots__ = ("_len", "_root")

    def __init__(self) -> None:
        self._root: _TNode = {}
        self._len = 0

    def __len__(self) -> int:
        """The number of topics in the index."""
        return self._len

    def __contains__(self, topic: object) -> bool:
        """Whether C{topic} is in the index."""
        if not isinstance(topic, str):
            return False
        node = self._find(topic)
        return node is not None and None in node

    def __iter__(self) -> Iterator[str]:
        """Iterate over the topics (a snapshot, in no particular order)."""
        out: list[str] = []
        _collect_subtree(self._root, out)
        return iter(out)

    def _find(self, topic: str) -> _TNode | None:
        node = self._root
        for level in topic.split("/"):
            child = node.get(level)
            if child is None:
                return None
            node = child
        return node

    def add(self, topic: str, levels: Sequence[str] | None = None) -> bool:
        """
        Add a topic name.

        @param topic: a topic name (no wildcards).
        @param levels: C{topic.split("/")} if the caller already has it.
        @return: C{True} if it was not there before.
        """
        node = self._root
        for level in topic.split("/") if levels is None else levels:
            child = node.get(level)
            if child is None:
                child = node[level] = {}
            node = child
        if None in node:
            return False
        node[None] = topic
        self._len += 1
        return True

    def discard(self, topic: str) -> bool:
        """
        Remove a topic name, pruning the branch nodes it leaves empty.

        @return: C{True} if it was there.
        """
        path: list[tuple[_TNode, str]] = []
        node = self._root
        for level in topic.split("/"):
            child = node.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if node.pop(None, None) is None:
            return False
        self._len -= 1
        while path and not node:
            parent, level = path.pop()
            del parent[level]
            node = parent
        return True

    def clear(self) -> None:
        """Remove every topic."""
        self._root = {}
        self._len = 0

    def match(self, topic_filter: str) -> list[str]:
        """
        The topics that C{topic_filter} matches, in no particular order.

        @param topic_filter: a valid, non-shared topic filter.
        """
        if "+" not in topic_filter and "#" not in topic_filter:
            node = self._find(topic_filter)
            if node is None or None not in node:
                return []
            return [topic_filter]
        flevels = topic_filter.split("/")
        nlevels = len(flevels)
        out: list[str] = []
        stack: list[tuple[_TNode, int]] = [(self._root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            if i == nlevels:
                topic = node.get(None)
                if topic is not None:
                    out.append(topic)
                continue
            flevel = flevels[i]
            if flevel == "#":
                if i == 0:
                    # $-topics are out of reach of a leading "#".
                    for level, child in node.items():
                        if level is not None and level[:1] != "$":
                            _collect_subtree(child, out)
                else:
                    # "#" also matches the parent level: a/# matches a.
                    _collect_subtree(node, out)
            elif flevel == "+":
                j = i + 1
                for level, child in node.items():
                    if level is not None and (i or level[:1] != "$"):
                        push((child, j))
            else:
                found = node.get(flevel)
                if found is not None:
                    push((found, i + 1))
        return out

    def pop_matching(self, topic_filter: str) -> list[str]:
        """
        Remove and return the topics that C{topic_filter} matches.

        @param topic_filter: a valid, non-shared topic filter.
        """
        topics = self.match(topic_filter)
        for topic in topics:
            self.discard(topic)
        return topics

    def node_count(self) -> int:
        """The number of tree nodes, root included (a diagnostic)."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(child for level, child in node.items()
                         if level is not None)
        return count


def _collect_subtree(node: _TNode, out: list[str]) -> None:
    """Append every topic at or below C{node} to C{out}."""
    stack = [node]
    pop = stack.pop
    push = stack.append
    append = out.append
    while stack:
        for level, value in pop().items():
            if level is None:
                append(value)
            else:
                push(value)


class RetainedStore(Generic[M]):
    """
    The retained messages of one mountpoint: at most one message per topic
    name.

    C{M} is whatever the broker keeps per retained message (payload, QoS,
    properties, expiry...); the store never looks inside it.  Expiry is the
    caller's job too: check on read, L{delete} when stale.
    """

    __slots__ = ("_index", "_messages")

    def __init__(self) -> None:
        self._messages: dict[str, M] = {}
        self._index = TopicIndex()

    def __len__(self) -> int:
        """The number of retained messages."""
        return len(self._messages)

    def __contains__(self, topic: object) -> bool:
        """Whether a message is retained for the topic name C{topic}."""
        return topic in self._messages

    def set(self, topic: str, message: M) -> None:
        """
        Retain C{message} for C{topic}, replacing any previous one.

        (An empty retained PUBLISH means "delete": that is the caller's
        decision, see L{delete}.)

        @param topic: a valid topic name (no wildcards).
        """
        messages = self._messages
        if topic not in messages:
            self._index.add(topic)
        messages[topic] = message

    def delete(self, topic: str) -> bool:
        """
        Forget the message retained for C{topic}.

        @return: C{True} if there was one.
        """
        if self._messages.pop(topic, _MISSING) is _MISSING:
            return False
        self._index.discard(topic)
        return True

    def get(self, topic: str) -> M | None:
        """The message retained for the topic name C{topic}, or C{None}."""
        return self._messages.get(topic)

    def match(self, topic_filter: str) -> list[tuple[str, M]]:
        """
        The retained C{(topic, message)} pairs that C{topic_filter} matches,
        in no particular order.

        @param topic_filter: a valid, non-shared topic filter.
        """
        messages = self._messages
        if "+" not in topic_filter and "#" not in topic_filter:
            if topic_filter in messages:
                return [(topic_filter, messages[topic_filter])]
            return []
        return [(topic, messages[topic])
                for topic in self._index.match(topic_filter)]

    def items(self) -> Iterator[tuple[str, M]]:
        """Iterate over every C{(topic, message)} (a snapshot)."""
        return iter(list(self._messages.items()))

    def clear(self) -> None:
        """Forget every retained message."""
        self._messages.clear()
        self._index.clear()


_MISSING: Final = object()
