"""
Tests for L{vernemq.broker.retain}.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_broker_topics import FILTERS, MATCH_CASES, TOPICS
from vernemq.broker.retain import RetainedStore, TopicIndex
from vernemq.broker.topics import topic_matches


class RetainedStoreTests(SynchronousTestCase):
    """
    L{RetainedStore} keeps one message per topic and finds them by filter.
    """

    def test_set_get_delete(self) -> None:
        store: RetainedStore[bytes] = RetainedStore()
        self.assertIsNone(store.get("a/b"))
        store.set("a/b", b"1")
        self.assertEqual(store.get("a/b"), b"1")
        self.assertIn("a/b", store)
        store.set("a/b", b"2")
        self.assertEqual(store.get("a/b"), b"2")
        self.assertEqual(len(store), 1)
        self.assertTrue(store.delete("a/b"))
        self.assertFalse(store.delete("a/b"))
        self.assertNotIn("a/b", store)
        self.assertIsNone(store.get("a/b"))
        self.assertEqual(len(store), 0)
        self.assertEqual(store.match("#"), [])

    def test_generic_messages(self) -> None:
        """
        The store holds any message type, even C{None}.
        """
        store: RetainedStore[object] = RetainedStore()
        store.set("a", None)
        self.assertIn("a", store)
        self.assertEqual(store.match("a"), [("a", None)])
        self.assertEqual(store.match("+"), [("a", None)])
        self.assertTrue(store.delete("a"))

    def test_items(self) -> None:
        store: RetainedStore[int] = RetainedStore()
        for i, topic in enumerate(["a", "a/b", "$SYS/x", "/"]):
            store.set(topic, i)
        self.assertEqual(sorted(store.items()),
                         [("$SYS/x", 2), ("/", 3), ("a", 0), ("a/b", 1)])
        for topic, _ in store.items():
            store.delete(topic)
        self.assertEqual(len(store), 0)

    def test_clear(self) -> None:
        store: RetainedStore[int] = RetainedStore()
        store.set("a/b", 1)
        store.clear()
        self.assertEqual(len(store), 0)
        self.assertEqual(store.match("a/#"), [])

    def test_cases(self) -> None:
        """
        Every case of the matching rule table, each topic alone in a store.
        """
        for topic_filter, topic, expected in MATCH_CASES:
            store: RetainedStore[int] = RetainedStore()
            store.set(topic, 1)
            self.assertEqual(store.match(topic_filter),
                             [(topic, 1)] if expected else [],
                             (topic_filter, topic))

    def test_cases_together(self) -> None:
        """
        Every topic of the rule table in one store.
        """
        store: RetainedStore[str] = RetainedStore()
        topics = {t for _, t, _ in MATCH_CASES}
        for topic in topics:
            store.set(topic, topic)
        for topic_filter, _, _ in MATCH_CASES:
            expected = sorted((t, t) for t in topics
                              if topic_matches(topic_filter, t))
            self.assertEqual(sorted(store.match(topic_filter)), expected,
                             topic_filter)

    def test_parent_level_and_dollar(self) -> None:
        store: RetainedStore[int] = RetainedStore()
        for topic in ["a", "a/b", "a/b/c", "$SYS/x", "$SYS"]:
            store.set(topic, 0)
        self.assertEqual(sorted(t for t, _ in store.match("a/#")),
                         ["a", "a/b", "a/b/c"])
        self.assertEqual(sorted(t for t, _ in store.match("#")),
                         ["a", "a/b", "a/b/c"])
        self.assertEqual(sorted(t for t, _ in store.match("+")), ["a"])
        self.assertEqual(sorted(t for t, _ in store.match("$SYS/#")),
                         ["$SYS", "$SYS/x"])
        self.assertEqual(sorted(t for t, _ in store.match("+/x")), [])

    def test_deep(self) -> None:
        """
        Deep topics do not hit the recursion limit.
        """
        store: RetainedStore[int] = RetainedStore()
        topic = "/".join(["a"] * 5000)
        store.set(topic, 1)
        self.assertEqual(store.match("a/#"), [(topic, 1)])
        self.assertEqual(store.match("/".join(["+"] * 5000)), [(topic, 1)])
        self.assertTrue(store.delete(topic))
        self.assertEqual(store._index.node_count(), 1)

    @given(st.lists(st.tuples(st.booleans(), TOPICS, st.integers(0, 9)),
                    max_size=40),
           st.lists(FILTERS, min_size=1, max_size=10))
    def test_agrees_with_brute_force(
            self, operations: list[tuple[bool, str, int]],
            filters: list[str]) -> None:
        """
        After random sets and deletes, every filter finds exactly the
        retained messages that L{topic_matches} accepts; deleting the rest
        leaves an empty tree.
        """
        store: RetainedStore[int] = RetainedStore()
        model: dict[str, int] = {}
        for is_set, topic, message in operations:
            if is_set:
                store.set(topic, message)
                model[topic] = message
            else:
                self.assertEqual(store.delete(topic), topic in model)
                model.pop(topic, None)
        self.assertEqual(len(store), len(model))
        self.assertEqual(sorted(store.items()), sorted(model.items()))
        for topic_filter in filters:
            expected = sorted((t, m) for t, m in model.items()
                              if topic_matches(topic_filter, t))
            self.assertEqual(sorted(store.match(topic_filter)), expected,
                             topic_filter)
        for topic in model:
            store.delete(topic)
        self.assertEqual(store._index.node_count(), 1)


class TopicIndexTests(SynchronousTestCase):
    """
    L{TopicIndex} is a set of topics queryable by filter.
    """

    def test_add_discard(self) -> None:
        index = TopicIndex()
        self.assertTrue(index.add("a/b"))
        self.assertFalse(index.add("a/b", ["a", "b"]))
        self.assertTrue(index.add("a"))
        self.assertIn("a/b", index)
        self.assertIn("a", index)
        self.assertNotIn("a/c", index)
        self.assertNotIn("a/b/c", index)
        self.assertNotIn(1, index)
        self.assertEqual(len(index), 2)
        self.assertEqual(sorted(index), ["a", "a/b"])
        self.assertFalse(index.discard("a/c"))
        self.assertFalse(index.discard("a/b/c"))
        self.assertTrue(index.discard("a"))
        self.assertFalse(index.discard("a"))
        self.assertIn("a/b", index)
        self.assertEqual(index.node_count(), 3)
        self.assertTrue(index.discard("a/b"))
        self.assertEqual(index.node_count(), 1)
        self.assertEqual(len(index), 0)

    def test_clear(self) -> None:
        index = TopicIndex()
        index.add("a/b")
        index.clear()
        self.assertEqual(len(index), 0)
        self.assertEqual(index.match("#"), [])

    @given(st.lists(TOPICS, max_size=30), FILTERS)
    def test_pop_matching(self, topics: list[str], topic_filter: str) -> None:
        """
        L{TopicIndex.pop_matching} removes exactly the matching topics and
        returns each once.
        """
        index = TopicIndex()
        for topic in topics:
            index.add(topic)
        popped = index.pop_matching(topic_filter)
        expected = sorted(t for t in set(topics)
                          if topic_matches(topic_filter, t))
        self.assertEqual(sorted(popped), expected)
        self.assertEqual(sorted(index), sorted(set(topics) - set(expected)))
        self.assertEqual(len(index), len(set(topics)) - len(expected))
        self.assertEqual(index.match(topic_filter), [])
