"""
The README's promises: it starts with the two commands for a fresh machine,
and CI runs exactly its test command.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readmeCommands() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


class ReadmeTests(SynchronousTestCase):
    """README.md and .ci/run agree."""

    def test_firstTwoCommands(self) -> None:
        """The first command starts a node on etc/vernemq.conf; the second runs trial."""
        first, second = readmeCommands()[:2]
        self.assertIn("twistd -n vernemq -c etc/vernemq.conf", first)
        self.assertIn("python -m twisted.trial tests", second)

    def test_ciRunsTheReadmeTestCommand(self) -> None:
        """.ci/run contains the README's test command verbatim."""
        second = readmeCommands()[1]
        with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        self.assertIn(second.strip(), lines)
