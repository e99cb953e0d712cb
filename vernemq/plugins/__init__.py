"""Plugins: the hook chain (L{vernemq.plugins.hooks}), later webhooks and the bridge."""
