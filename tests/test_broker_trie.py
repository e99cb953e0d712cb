"""
Tests for L{vernemq.broker.trie}.
"""

# twisted.trial's assertion methods are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_broker_topics import FILTERS, MATCH_CASES, TOPICS
from vernemq.broker import trie as trie_module
from vernemq.broker.topics import topic_matches
from vernemq.broker.trie import SubscriptionTrie

Model = dict[tuple[str, int], int]


def brute_force(model: Model, topic: str) -> list[tuple[int, int]]:
    """What a match of C{topic} must return, sorted, by brute force."""
    return sorted((key, value) for (topic_filter, key), value in model.items()
                  if topic_matches(topic_filter, topic))


def assert_shared_empties_untouched(case: SynchronousTestCase) -> None:
    """The shared "no children" / "no entries" dicts are still empty."""
    case.assertEqual(trie_module._NO_CHILDREN, {})
    case.assertEqual(trie_module._NO_ENTRIES, {})


class MatchRulesTests(SynchronousTestCase):
    """
    L{SubscriptionTrie.match} follows every MQTT matching rule.
    """

    def test_cases_one_by_one(self) -> None:
        """
        Every case of the rule table, each filter alone in a trie.
        """
        for topic_filter, topic, expected in MATCH_CASES:
            trie: SubscriptionTrie[str, int] = SubscriptionTrie()
            trie.add(topic_filter, "c", 1)
            self.assertEqual(trie.match(topic),
                             (("c", 1),) if expected else (),
                             (topic_filter, topic))

    def test_cases_together(self) -> None:
        """
        Every filter of the rule table in one trie: each topic gets exactly
        the filters the table says match it, among all the others.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        filters = {f for f, _, _ in MATCH_CASES}
        for topic_filter in filters:
            trie.add(topic_filter, topic_filter, 0)
        for _, topic, _ in MATCH_CASES:
            expected = sorted(f for f in filters if topic_matches(f, topic))
            self.assertEqual(sorted(k for k, _ in trie.match(topic)),
                             expected, topic)
        for topic_filter, topic, expected_match in MATCH_CASES:
            found = any(k == topic_filter for k, _ in trie.match(topic))
            self.assertEqual(found, expected_match, (topic_filter, topic))

    def test_dollar_topics(self) -> None:
        """
        Leading wildcards do not reach C{$} topics; C{$SYS/...} filters do.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        for topic_filter in ["#", "+", "+/#", "+/broker", "$SYS/#",
                             "$SYS/+", "$SYS/broker"]:
            trie.add(topic_filter, topic_filter, 0)
        self.assertEqual(sorted(k for k, _ in trie.match("$SYS/broker")),
                         ["$SYS/#", "$SYS/+", "$SYS/broker"])
        self.assertEqual(sorted(k for k, _ in trie.match("$SYS")),
                         ["$SYS/#"])
        self.assertEqual(trie.match("$other/broker"), ())
        self.assertEqual(sorted(k for k, _ in trie.match("x/broker")),
                         ["#", "+/#", "+/broker"])

    def test_overlapping_filters(self) -> None:
        """
        A key subscribed with two matching filters appears once per filter,
        each with its own value.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/+", "c", 0)
        trie.add("a/#", "c", 2)
        trie.add("a/b", "d", 1)
        self.assertEqual(sorted(trie.match("a/b")),
                         [("c", 0), ("c", 2), ("d", 1)])

    def test_result_is_tuple(self) -> None:
        """
        The result is an immutable tuple, also when empty.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a", "c", 1)
        self.assertIsInstance(trie.match("a"), tuple)
        self.assertIsInstance(trie.match("b"), tuple)
        self.assertEqual(trie.match("b"), ())

    def test_deep_topic(self) -> None:
        """
        Very deep topics and filters do not hit the recursion limit.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        deep = "/".join(["+"] * 5000)
        trie.add(deep, "plus", 0)
        trie.add("#", "hash", 0)
        topic = "/" * 4999
        self.assertEqual(sorted(trie.match(topic)),
                         [("hash", 0), ("plus", 0)])
        self.assertTrue(trie.remove(deep, "plus"))
        self.assertEqual(trie.node_count(), 2)

    @given(st.lists(st.tuples(FILTERS, st.integers(0, 3),
                              st.integers(0, 2)), max_size=25),
           st.lists(TOPICS, min_size=1, max_size=10))
    def test_agrees_with_brute_force(
            self, subscriptions: list[tuple[str, int, int]],
            topics: list[str]) -> None:
        """
        For random filter sets and topics, the trie returns exactly the
        C{(key, value)} pairs of the filters L{topic_matches} accepts.
        """
        trie: SubscriptionTrie[int, int] = SubscriptionTrie()
        model: Model = {}
        for topic_filter, key, value in subscriptions:
            trie.add(topic_filter, key, value)
            model[topic_filter, key] = value
        for topic in topics:
            self.assertEqual(sorted(trie.match(topic)),
                             brute_force(model, topic), topic)


class ChangeTests(SynchronousTestCase):
    """
    L{SubscriptionTrie.add}, L{SubscriptionTrie.remove} and inspection.
    """

    def test_add_new_and_replace(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        self.assertTrue(trie.add("a/+", "c", 0))
        self.assertFalse(trie.add("a/+", "c", 1))
        self.assertTrue(trie.add("a/+", "d", 1))
        self.assertTrue(trie.add("a/#", "c", 2))
        self.assertEqual(len(trie), 3)
        self.assertEqual(trie.count_filters(), 2)
        self.assertEqual(trie.get("a/+", "c"), 1)
        self.assertEqual(sorted(trie.match("a/x")),
                         [("c", 1), ("c", 2), ("d", 1)])

    def test_add_same_value_again(self) -> None:
        """
        Adding the very same value again reports a replacement and changes
        nothing.
        """
        trie: SubscriptionTrie[str, object] = SubscriptionTrie()
        value = object()
        self.assertTrue(trie.add("a", "c", value))
        self.assertFalse(trie.add("a", "c", value))
        self.assertEqual(len(trie), 1)
        self.assertEqual(trie.match("a"), (("c", value),))

    def test_add_invalid(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        for topic_filter in ["", "a/#/b", "a+", "#/a", "$share/g"]:
            self.assertRaises(ValueError, trie.add, topic_filter, "c", 0)
        self.assertEqual(len(trie), 0)
        self.assertEqual(trie.node_count(), 1)

    def test_remove(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/+", "c", 0)
        trie.add("a/+", "d", 0)
        self.assertFalse(trie.remove("a/+", "x"))
        self.assertFalse(trie.remove("a/#", "c"))
        self.assertFalse(trie.remove("a", "c"))
        self.assertFalse(trie.remove("a/+/b", "c"))
        self.assertTrue(trie.remove("a/+", "c"))
        self.assertFalse(trie.remove("a/+", "c"))
        self.assertEqual(trie.match("a/b"), (("d", 0),))
        self.assertEqual(len(trie), 1)
        self.assertEqual(trie.count_filters(), 1)
        self.assertTrue(trie.remove("a/+", "d"))
        self.assertEqual(trie.match("a/b"), ())
        self.assertEqual(len(trie), 0)
        self.assertEqual(trie.count_filters(), 0)

    def test_contains_and_get(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/+/#", "c", 7)
        self.assertIn(("a/+/#", "c"), trie)
        self.assertNotIn(("a/+/#", "d"), trie)
        self.assertNotIn(("a/+", "c"), trie)
        self.assertNotIn(("a/x/#", "c"), trie)
        self.assertNotIn("a/+/#", trie)
        self.assertNotIn((1, "c"), trie)
        self.assertEqual(trie.get("a/+/#", "c"), 7)
        self.assertIsNone(trie.get("a/+/#", "d"))
        self.assertIsNone(trie.get("a/+", "c"))
        self.assertIsNone(trie.get("b", "c"))

    def test_filters_and_items(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        subscriptions = [("#", "a", 0), ("+", "b", 1), ("x/+/#", "c", 2),
                         ("x/+/#", "d", 3), ("x", "e", 4), ("/", "f", 5),
                         ("$SYS/#", "g", 6), ("x//+", "h", 7)]
        for topic_filter, key, value in subscriptions:
            trie.add(topic_filter, key, value)
        self.assertEqual(sorted(trie.filters()),
                         sorted({f for f, _, _ in subscriptions}))
        self.assertEqual(sorted(trie.items()), sorted(subscriptions))
        self.assertEqual(trie.count_filters(), 7)
        self.assertEqual(len(trie), 8)

    def test_iteration_is_a_snapshot(self) -> None:
        """
        Changing the trie while iterating its filters is allowed.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        for i in range(10):
            trie.add(f"a/{i}", "c", 0)
        for topic_filter in trie.filters():
            trie.remove(topic_filter, "c")
        self.assertEqual(len(trie), 0)

    def test_pruning(self) -> None:
        """
        Removing every subscription leaves only the root: churn does not
        leak nodes, and the shared empty dicts are never written to.
        """
        trie: SubscriptionTrie[int, int] = SubscriptionTrie()
        filters = ["a/b/c", "a/b/#", "a/+/c", "+/+/+", "#", "a", "a/b",
                   "/", "//", "+/#", "a/b/c/d/e"]
        for _ in range(3):
            for i, topic_filter in enumerate(filters):
                for key in range(3):
                    trie.add(topic_filter, key, i)
                trie.match("a/b/c")
            self.assertEqual(len(trie), 3 * len(filters))
            partial = trie.node_count()
            for topic_filter in filters[::2]:
                for key in range(3):
                    trie.remove(topic_filter, key)
            self.assertLess(trie.node_count(), partial)
            for topic_filter in filters[1::2]:
                for key in range(3):
                    trie.remove(topic_filter, key)
            self.assertEqual(len(trie), 0)
            self.assertEqual(trie.count_filters(), 0)
            self.assertEqual(trie.node_count(), 1)
            self.assertEqual(list(trie.filters()), [])
            assert_shared_empties_untouched(self)

    def test_pruning_keeps_needed_nodes(self) -> None:
        """
        Pruning a leaf keeps the nodes other filters still need.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/b/c", "x", 0)
        trie.add("a", "y", 0)
        trie.add("a/+", "z", 0)
        trie.remove("a/b/c", "x")
        self.assertEqual(trie.node_count(), 3)
        self.assertEqual(trie.match("a"), (("y", 0),))
        self.assertEqual(trie.match("a/b"), (("z", 0),))
        trie.add("a/b/c", "x", 1)
        self.assertEqual(trie.match("a/b/c"), (("x", 1),))


class CacheTests(SynchronousTestCase):
    """
    The match cache returns shared results and is invalidated exactly.
    """

    def test_hit_returns_same_tuple(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/+", "c", 0)
        trie.add("a/#", "d", 0)
        first = trie.match("a/b")
        self.assertTrue(trie.is_cached("a/b"))
        self.assertIs(trie.match("a/b"), first)

    def test_empty_results_cached(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        self.assertEqual(trie.match("nobody/listens"), ())
        self.assertTrue(trie.is_cached("nobody/listens"))
        trie.add("nobody/#", "c", 0)
        self.assertEqual(trie.match("nobody/listens"), (("c", 0),))

    def test_exact_filter_invalidates_one_topic(self) -> None:
        """
        A change to a filter without wildcards drops only that topic.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/#", "c", 0)
        for topic in ["a/b", "a/c", "x"]:
            trie.match(topic)
        trie.add("a/b", "d", 1)
        self.assertFalse(trie.is_cached("a/b"))
        self.assertTrue(trie.is_cached("a/c"))
        self.assertTrue(trie.is_cached("x"))
        self.assertEqual(sorted(trie.match("a/b")), [("c", 0), ("d", 1)])
        trie.match("a/b")
        trie.remove("a/b", "d")
        self.assertFalse(trie.is_cached("a/b"))
        self.assertEqual(trie.cache_len(), 2)
        self.assertEqual(trie.match("a/b"), (("c", 0),))

    def test_wildcard_filter_invalidates_matching_topics(self) -> None:
        """
        A change to a wildcard filter drops the cached topics it matches
        and keeps the others.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        topics = ["devices/1/temp", "devices/2/temp", "devices/1/cmd",
                  "devices", "other/1/temp", "$SYS/1/temp"]
        for topic in topics:
            trie.match(topic)
        trie.add("devices/+/temp", "c", 0)
        self.assertEqual([t for t in topics if trie.is_cached(t)],
                         ["devices/1/cmd", "devices", "other/1/temp",
                          "$SYS/1/temp"])
        for topic in topics:
            trie.match(topic)
        trie.add("devices/1/#", "d", 0)
        self.assertEqual([t for t in topics if trie.is_cached(t)],
                         ["devices/2/temp", "devices", "other/1/temp",
                          "$SYS/1/temp"])
        for topic in topics:
            trie.match(topic)
        trie.remove("devices/+/temp", "c")
        self.assertEqual([t for t in topics if trie.is_cached(t)],
                         ["devices/1/cmd", "devices", "other/1/temp",
                          "$SYS/1/temp"])
        self.assertEqual(trie.match("devices/1/temp"), (("d", 0),))
        self.assertEqual(trie.match("devices/2/temp"), ())

    def test_leading_wildcard_spares_dollar_topics(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        for topic in ["$SYS/x", "a/x"]:
            trie.match(topic)
        trie.add("+/x", "c", 0)
        self.assertTrue(trie.is_cached("$SYS/x"))
        self.assertFalse(trie.is_cached("a/x"))

    def test_hash_clears(self) -> None:
        """
        The filter C{#} clears the whole cache.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        for topic in ["a", "b/c", "$SYS/x"]:
            trie.match(topic)
        trie.add("#", "c", 0)
        self.assertEqual(trie.cache_len(), 0)
        self.assertEqual(trie.match("b/c"), (("c", 0),))
        self.assertEqual(trie.match("$SYS/x"), ())

    def test_replacing_value_invalidates(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.add("a/+", "c", 0)
        self.assertEqual(trie.match("a/b"), (("c", 0),))
        trie.add("a/+", "c", 2)
        self.assertEqual(trie.match("a/b"), (("c", 2),))

    def test_bounded(self) -> None:
        """
        The cache never holds more than C{cache_size} topics, and results
        stay right when it overflows.
        """
        trie: SubscriptionTrie[str, int] = SubscriptionTrie(cache_size=3)
        trie.add("t/+", "c", 0)
        for i in range(10):
            self.assertEqual(trie.match(f"t/{i}"), (("c", 0),))
            self.assertLessEqual(trie.cache_len(), 3)
        self.assertTrue(trie.is_cached("t/9"))
        self.assertEqual(trie.match("u"), ())

    def test_disabled(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie(cache_size=0)
        trie.add("a/#", "c", 0)
        self.assertEqual(trie.match("a/b"), (("c", 0),))
        self.assertEqual(trie.cache_len(), 0)
        self.assertFalse(trie.is_cached("a/b"))

    def test_clear_cache(self) -> None:
        trie: SubscriptionTrie[str, int] = SubscriptionTrie()
        trie.match("a")
        trie.clear_cache()
        self.assertEqual(trie.cache_len(), 0)

    def test_cache_index_pruned(self) -> None:
        """
        Invalidation also prunes the index of cached topics, so changing
        subscriptions does not grow it.
        """
        trie: SubscriptionTrie[int, int] = SubscriptionTrie()
        for i in range(50):
            trie.add(f"d/{i}/#", i, 0)
            trie.match(f"d/{i}/x/y")
            trie.remove(f"d/{i}/#", i)
        self.assertEqual(trie.cache_len(), 0)
        self.assertEqual(trie._cache_index.node_count(), 1)

    @given(st.lists(st.one_of(
        st.tuples(st.just("add"), FILTERS, st.integers(0, 2),
                  st.integers(0, 2)),
        st.tuples(st.just("remove"), FILTERS, st.integers(0, 2),
                  st.just(0)),
        st.tuples(st.just("match"), TOPICS, st.just(0), st.just(0))),
        max_size=60),
        st.sampled_from([0, 2, 100]))
    def test_interleavings(self, operations: list[tuple[str, str, int, int]],
                           cache_size: int) -> None:
        """
        Any interleaving of adds, removes and matches, with a tiny, a
        normal and no cache, matches the brute-force model after every
        step; removing what remains leaves an empty trie.
        """
        trie: SubscriptionTrie[int, int] = SubscriptionTrie(cache_size)
        model: Model = {}
        probes = ["a", "a/b", "b/a", "$x/a", "a//b", "/", "a/$x", "é/a/b/a"]
        for operation, text, key, value in operations:
            if operation == "add":
                self.assertEqual(trie.add(text, key, value),
                                 (text, key) not in model)
                model[text, key] = value
            elif operation == "remove":
                self.assertEqual(trie.remove(text, key),
                                 model.pop((text, key), None) is not None)
            else:
                probes.append(text)
            for topic in probes:
                self.assertEqual(sorted(trie.match(topic)),
                                 brute_force(model, topic), topic)
            self.assertEqual(len(trie), len(model))
            self.assertEqual(trie.count_filters(),
                             len({f for f, _ in model}))
        for topic_filter, key in list(model):
            trie.remove(topic_filter, key)
        self.assertEqual(trie.node_count(), 1)
        for topic in probes:
            self.assertEqual(trie.match(topic), ())
        assert_shared_empties_untouched(self)
