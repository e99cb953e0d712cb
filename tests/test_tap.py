"""L{vernemq.tap}: the command line of C{twistd vernemq}."""

from __future__ import annotations

import io
import os

from twisted.trial.unittest import SynchronousTestCase

from vernemq.tap import Options


class OptionsTests(SynchronousTestCase):
    """C{-c vernemq.conf} is read and validated while options are parsed."""

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def parse(self, *argv: str) -> tuple[Options, io.StringIO]:
        options = Options()
        options.stderr = io.StringIO()
        options.parseOptions(list(argv))
        return options, options.stderr

    def test_loadsTheConfig(self) -> None:
        """A good file is loaded into C{options["loaded"]}."""
        path = self.write("max_inflight_messages = 7\n")
        options, _ = self.parse("-c", path)
        self.assertEqual(7, options["loaded"]["max_inflight_messages"])

    def test_badValueExitsWithFileLineKey(self) -> None:
        """A bad value exits with status 2 and C{PATH:LINE: KEY: reason} on stderr."""
        path = self.write("## x\n\nmax_inflight_messages = many\n")
        options = Options()
        options.stderr = io.StringIO()
        exit = self.assertRaises(SystemExit, options.parseOptions, ["-c", path])
        self.assertEqual(2, exit.code)
        self.assertTrue(options.stderr.getvalue().startswith(f"{path}:3: max_inflight_messages: "))

    def test_unreadableFile(self) -> None:
        """A missing file exits non-zero and names the file."""
        path = os.path.join(self.mktemp(), "missing.conf")
        options = Options()
        options.stderr = io.StringIO()
        self.assertRaises(SystemExit, options.parseOptions, ["--config", path])
        self.assertIn(path, options.stderr.getvalue())
