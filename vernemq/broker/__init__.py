"""The broker core: topic trie, sessions and queues, router, retained messages, wills."""
