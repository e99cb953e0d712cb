# -*- test-case-name: tests.test_broker_topics -*-
"""
MQTT topic names and topic filters: validation, shared-subscription parsing
and a reference matcher.

Everything here is a pure function on C{str}.  The codec has already turned
the UTF-8 bytes into text; these functions check the MQTT rules on top:

  - topic names and filters are at least one character long and never
    contain U+0000 [MQTT-4.7.3-1, MQTT-4.7.3-2];
  - a topic name (PUBLISH) contains no wildcard [MQTT-3.3.2-2];
  - in a filter, C{+} occupies a whole level and C{#} occupies a whole level
    and is the last one [MQTT-4.7.1-1, MQTT-4.7.1-2];
  - C{$share/<group>/<filter>} is a shared subscription (MQTT 5.0 4.8.2, and
    VerneMQ accepts it for every protocol version): the group is non-empty
    and has no C{/}, C{+} or C{#}; the filter is a valid non-shared filter.
    A filter whose first level is C{$share} but that is not of that form
    (C{$share}, C{$share/g}, C{$share//a}, C{$share/g/}) is invalid, as in
    VerneMQ's C{vmq_topic};
  - C{max_depth} is VerneMQ's C{topic_max_depth}: the number of levels, as
    VerneMQ counts them, i.e. for C{$share/g/a/b} four.  C{0} means no limit.

Matching rules (L{topic_matches}, and the fast matchers in
L{vernemq.broker.trie} and L{vernemq.broker.retain} which must agree with
it): levels are compared exactly (case sensitive, empty levels are levels);
C{+} matches exactly one level, possibly empty; C{#} matches the rest, zero
or more levels, so C{a/#} also matches C{a}; a filter whose first level is
C{+} or C{#} does not match a topic that starts with C{$} [MQTT-4.7.2-1].
"""

from __future__ import annotations

__all__ = [
    "SHARE_PREFIX",
    "has_wildcard",
    "parse_shared",
    "split_topic",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

SHARE_PREFIX = "$share"
"""The first level of a shared-subscription filter."""


def split_topic(topic: str) -> tuple[str, ...]:
    """
    Split a topic name or filter into its levels.

    @param topic: a topic name or filter, e.g. C{"a//b"}.
    @return: the levels, e.g. C{("a", "", "b")}; never empty.
    """
    return tuple(topic.split("/"))


def has_wildcard(topic_filter: str) -> bool:
    """
    Whether C{topic_filter} contains C{+} or C{#}.

    @param topic_filter: a filter already validated by
        L{validate_topic_filter}.
    """
    return "+" in topic_filter or "#" in topic_filter


def validate_topic_name(topic: str, max_depth: int = 0) -> bool:
    """
    Whether C{topic} is a valid topic name to PUBLISH to.

    @param topic: the topic name as decoded from the packet.
    @param max_depth: the maximum number of levels (C{topic_max_depth});
        C{0} or less for no limit.
    @return: C{True} if the name is non-empty, has no wildcard, no U+0000,
        and at most C{max_depth} levels.
    """
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        return False
    return max_depth <= 0 or topic.count("/") < max_depth


def _valid_plain_filter(topic_filter: str) -> bool:
    """Validate a non-shared filter (no depth check)."""
    if not topic_filter:
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level:
            if level != "#" or i != last:
                return False
        elif "+" in level and level != "+":
            return False
    return True


def validate_topic_filter(topic_filter: str, max_depth: int = 0) -> bool:
    """
    Whether C{topic_filter} is a valid filter to SUBSCRIBE (or UNSUBSCRIBE)
    with, including shared C{$share/<group>/<filter>} filters.

    @param topic_filter: the filter as decoded from the packet.
    @param max_depth: the maximum number of levels (C{topic_max_depth}),
        counting C{$share} and the group for shared filters as VerneMQ does;
        C{0} or less for no limit.
    """
    if not topic_filter or "\x00" in topic_filter:
        return False
    if max_depth > 0 and topic_filter.count("/") >= max_depth:
        return False
    if topic_filter.startswith(SHARE_PREFIX):
        parts = topic_filter.split("/", 2)
        if parts[0] == SHARE_PREFIX:
            if len(parts) < 3:
                return False
            group = parts[1]
            if not group or "+" in group or "#" in group:
                return False
            return _valid_plain_filter(parts[2])
    return _valid_plain_filter(topic_filter)


def parse_shared(topic_filter: str) -> tuple[str | None, str]:
    """
    Split a shared-subscription filter into its group and its filter.

    The input should have passed L{validate_topic_filter}; anything that is
    not of the form C{$share/<group>/<filter>} is returned unchanged as a
    non-shared filter.

    @return: C{(group, filter)} for C{"$share/group/filter"}, else
        C{(None, topic_filter)}.
    """
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[1], parts[2]
    return None, topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """
    Whether the (non-shared) C{topic_filter} matches the topic name
    C{topic}.

    This is the reference implementation of the matching rules in the module
    docstring, written for clarity: the broker's hot path uses
    L{vernemq.broker.trie.SubscriptionTrie}, and tests check that the two
    agree.  A C{$share/...} filter is compared literally; strip it with
    L{parse_shared} first.
    """
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    ntopic = len(tlevels)
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True
        if i >= ntopic:
            return False
        if flevel != "+" and flevel != tlevels[i]:
            return False
    return len(flevels) == ntopic
