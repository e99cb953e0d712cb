"""
Tests for L{vernemq.broker.topics}.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vernemq.broker.topics import (
    has_wildcard,
    parse_shared,
    split_topic,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

# (filter, topic, matches?) -- the examples of MQTT 3.1.1 section 4.7 and
# MQTT 5.0 section 4.7, plus the edge cases around empty levels and "$".
# tests.test_broker_trie and tests.test_broker_retain run the same table
# through the trie and the retained store.
MATCH_CASES: list[tuple[str, str, bool]] = [
    # "#": multi-level, including the parent level.
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis", False),
    ("sport/#", "sport", True),
    ("sport/#", "sport/", True),
    ("sport/#", "sports", False),
    ("sport/#", "/sport", False),
    ("#", "sport", True),
    ("#", "/", True),
    ("#", "a/b/c/d", True),
    ("/#", "/finance", True),
    ("/#", "finance", False),
    # "+": exactly one level, which may be empty.
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/tennis/+", "sport/tennis", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+", "a", True),
    ("+", "a/b", False),
    ("+", "/", False),
    ("+/+", "/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("+/tennis/#", "sport/tennis", True),
    ("+/tennis/#", "sport/golf", False),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport//player1", True),
    ("+/+/+", "a/b", False),
    ("+/#", "a", True),
    ("+/#", "a/b/c", True),
    # Exact levels: case sensitive, spaces and empty levels count.
    ("ACCOUNTS", "Accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("a/b", "a/b/", False),
    ("a/b/", "a/b/", True),
    # "$" topics: a leading wildcard never matches them [MQTT-4.7.2-1].
    ("#", "$SYS/broker/uptime", False),
    ("#", "$SYS", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("+/#", "$SYS/x", False),
    ("+", "$SYS", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/+/Clients", "$SYS/monitor/Clients", True),
    ("$SYS", "$SYS", True),
    # ... only at the first level.
    ("a/+", "a/$b", True),
    ("a/#", "a/$b/c", True),
    ("+/$b", "a/$b", True),
]


def regex_matches(topic_filter: str, topic: str) -> bool:
    """
    An independent oracle for L{topic_matches}: translate the filter into a
    regular expression.
    """
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    parts = []
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            # "#" alone matches anything; "x/#" matches "x" and "x/...".
            parts.append(".*" if i == 0 else "(/.*)?")
            break
        if i:
            parts.append("/")
        parts.append("[^/]*" if level == "+" else re.escape(level))
    return re.fullmatch("".join(parts), topic, re.DOTALL) is not None


# Small alphabets so that random filters and topics often match.
LEVEL = st.sampled_from(["a", "b", "", "$x", "é"])
TOPICS = st.lists(LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)


@st.composite
def filters(draw: st.DrawFn) -> str:
    """Random valid (non-shared) topic filters."""
    levels = draw(st.lists(st.one_of(LEVEL, st.just("+")), max_size=4))
    if levels in ([], [""]) or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


FILTERS = filters()


class ValidateTopicNameTests(SynchronousTestCase):
    """
    L{validate_topic_name} accepts what may be published to.
    """

    def test_valid(self) -> None:
        for topic in ["a", "a/b/c", "/", "/finance", "a//b", "foo//baz//",
                      "$SYS/broker", "Accounts payable", " ",
                      "Юникод/åäö", "a/$b"]:
            self.assertTrue(validate_topic_name(topic), topic)

    def test_invalid(self) -> None:
        for topic in ["", "+", "#", "a/+", "a/#", "a/+/b", "test/#-",
                      "test/+-", "a+", "#a", "a\x00b", "\x00"]:
            self.assertFalse(validate_topic_name(topic), topic)

    def test_max_depth(self) -> None:
        """
        C{max_depth} limits the number of levels, as VerneMQ's
        C{topic_max_depth}: its default 10 allows C{a/b/c/d/e/f/g/h/i/k}.
        """
        self.assertTrue(validate_topic_name("a/b/c/d/e/f/g/h/i/k", 10))
        self.assertFalse(validate_topic_name("a/b/c/d/e/f/g/h/i/k/l", 10))
        self.assertTrue(validate_topic_name("a/b/c", 3))
        self.assertFalse(validate_topic_name("a/b/c", 2))
        self.assertFalse(validate_topic_name("a//", 2))
        self.assertTrue(validate_topic_name("/" * 1000, 0))
        self.assertTrue(validate_topic_name("/" * 1000, -1))


class ValidateTopicFilterTests(SynchronousTestCase):
    """
    L{validate_topic_filter} accepts what may be subscribed to.
    """

    def test_valid(self) -> None:
        for topic_filter in [
                "a", "a/b/c", "/", "/a/b", "test/topic/", "test////a//topic",
                "/+/x", "/a/b/c/#", "#", "+", "foo/#", "foo/+/baz",
                "foo/+/baz/#", "/#", "test/topic/+", "foo/+/", "+/+",
                "+/tennis/#", "+/+/+/+/+/+/+/test", "$SYS/#",
                "Юникод/+/", "$share/g/a/b", "$share/g/#", "$share/g/+/x",
                "$share/g//", "$shared/x", "a/$share", "$sharex"]:
            self.assertTrue(validate_topic_filter(topic_filter), topic_filter)

    def test_invalid(self) -> None:
        for topic_filter in [
                "", "a/#/c", "#testtopic", "testtopic#", "+testtopic",
                "testtopic/++", "testtopic+", "testtopic++/+",
                "#testtopic/test", "testtopic#/test", "+testtopic/test",
                "/test/#testtopic", "/test/testtopic#", "/test/+testtopic",
                "#/", "#/#", "a\x00", "+\x00"]:
            self.assertFalse(validate_topic_filter(topic_filter),
                             topic_filter)

    def test_shared(self) -> None:
        """
        C{$share/<group>/<filter>} needs a non-empty group without
        wildcards and a valid filter; a first level C{$share} in any other
        form is invalid, as in VerneMQ.
        """
        for topic_filter in ["$share", "$share/", "$share/mygroup",
                             "$share/mygroup/", "$share//a", "$share/+/a",
                             "$share/#/a", "$share/g+/a", "$share/g/a/#/b",
                             "$share/g/a+"]:
            self.assertFalse(validate_topic_filter(topic_filter),
                             topic_filter)

    def test_max_depth(self) -> None:
        """
        The depth counts every level, including C{$share} and the group of
        a shared filter (as VerneMQ does).
        """
        self.assertTrue(validate_topic_filter("+/+/#", 3))
        self.assertFalse(validate_topic_filter("+/+/#", 2))
        self.assertTrue(validate_topic_filter("$share/g/a/b", 4))
        self.assertFalse(validate_topic_filter("$share/g/a/b", 3))
        self.assertFalse(
            validate_topic_filter("+" + "/" * 40, 10))
        self.assertTrue(validate_topic_filter("+" + "/" * 16, 20))
        self.assertTrue(validate_topic_filter("+" + "/" * 40, 0))

    @given(FILTERS)
    def test_generated_filters_valid(self, topic_filter: str) -> None:
        """
        Every filter made of whole-level wildcards and a final C{#} is
        valid, shared or not, and is not a valid topic name iff it has a
        wildcard.
        """
        self.assertTrue(validate_topic_filter(topic_filter))
        self.assertTrue(validate_topic_filter("$share/grp/" + topic_filter))
        self.assertEqual(validate_topic_name(topic_filter),
                         not has_wildcard(topic_filter))

    @given(TOPICS)
    def test_topic_names_are_filters(self, topic: str) -> None:
        """
        A valid topic name is a valid filter (matching only itself).
        """
        self.assertTrue(validate_topic_name(topic))
        self.assertTrue(validate_topic_filter(topic))
        self.assertTrue(topic_matches(topic, topic))


class ParseSharedTests(SynchronousTestCase):
    """
    L{parse_shared} splits shared filters.
    """

    def test_shared(self) -> None:
        self.assertEqual(parse_shared("$share/g/a/b"), ("g", "a/b"))
        self.assertEqual(parse_shared("$share/g/#"), ("g", "#"))
        self.assertEqual(parse_shared("$share/g/$share/h/x"),
                         ("g", "$share/h/x"))

    def test_not_shared(self) -> None:
        for topic_filter in ["a/b", "#", "$sharex/g/a", "$SYS/#",
                             "a/$share/g/b", "$share/g"]:
            self.assertEqual(parse_shared(topic_filter),
                             (None, topic_filter))


class SplitTopicTests(SynchronousTestCase):
    """
    L{split_topic} returns every level, empty ones included.
    """

    def test_split(self) -> None:
        self.assertEqual(split_topic("a/b"), ("a", "b"))
        self.assertEqual(split_topic("/"), ("", ""))
        self.assertEqual(split_topic("a"), ("a",))
        self.assertEqual(split_topic("foo//bar///baz"),
                         ("foo", "", "bar", "", "", "baz"))


class TopicMatchesTests(SynchronousTestCase):
    """
    L{topic_matches} implements the MQTT matching rules.
    """

    def test_cases(self) -> None:
        for topic_filter, topic, expected in MATCH_CASES:
            self.assertEqual(topic_matches(topic_filter, topic), expected,
                             (topic_filter, topic))

    def test_oracle_cases(self) -> None:
        """
        The regular expression oracle agrees with the table, so it can be
        trusted as a second opinion below.
        """
        for topic_filter, topic, expected in MATCH_CASES:
            self.assertEqual(regex_matches(topic_filter, topic), expected,
                             (topic_filter, topic))

    @given(FILTERS, TOPICS)
    def test_agrees_with_regex(self, topic_filter: str, topic: str) -> None:
        self.assertEqual(topic_matches(topic_filter, topic),
                         regex_matches(topic_filter, topic))

    def test_has_wildcard(self) -> None:
        self.assertTrue(has_wildcard("a/+"))
        self.assertTrue(has_wildcard("#"))
        self.assertFalse(has_wildcard("a/b"))
