"""
docs/configuration.md is generated from the schema
(L{vernemq.config.docs}) and must not drift from it.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import schema
from vernemq.config.docs import AUTH_KEYS, COMMAND, format_default, render
from vernemq.config.types import HostPort

DOCS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "configuration.md"
)


class DriftTests(SynchronousTestCase):
    """The committed file is what the generator writes."""

    def test_upToDate(self) -> None:
        """Regenerating docs/configuration.md changes nothing."""
        with open(DOCS, encoding="utf-8") as f:
            committed = f.read()
        if committed != render():
            self.fail(
                "docs/configuration.md is out of date with vernemq/config/schema.py; "
                f"regenerate it from the checkout root with: {COMMAND}"
            )


class ContentTests(SynchronousTestCase):
    """What the reference lists."""

    def test_everyListenerAndAuthKey(self) -> None:
        """Every listener kind and setting and every auth key appears."""
        text = render()
        for kind in schema.LISTENER_KINDS:
            self.assertIn(f"`listener.{kind}.<name>`", text)
        for setting in schema.LISTENER_SETTINGS:
            self.assertIn(f"`listener.<kind>.<name>.{setting.name}`", text)
        for key in AUTH_KEYS:
            self.assertIn(f"`{key}`", text)

    def test_everyKey(self) -> None:
        """Every non-listener key of the schema has a row."""
        text = render()
        for key in schema.SCHEMA:
            if not key.startswith("listener."):
                shown = re.sub(r"\$([a-z_]+)", r"<\1>", key)
                self.assertIn(f"| `{shown}` |", text, key)

    def test_formatDefault(self) -> None:
        """Defaults are written as in vernemq.conf."""
        self.assertEqual(format_default(True), "on")
        self.assertEqual(format_default(False), "off")
        self.assertEqual(format_default(None), "unset")
        self.assertEqual(format_default((3, 4, 5)), "3,4,5")
        self.assertEqual(format_default(HostPort("127.0.0.1", 6022)), "127.0.0.1:6022")
        self.assertEqual(format_default(""), '""')
        self.assertEqual(format_default(10), "10")
