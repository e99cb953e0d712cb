"""
L{vernemq.dist.epmd_cli}: C{vmq-epmd}'s command line, parsed as Erlang's
C{epmd} parses it.  The commands' output against real servers is checked
in C{tests/interop/test_epmd_erlang.py}.
"""

from __future__ import annotations

import io

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import freePort
from vernemq.dist import epmd_cli
from vernemq.dist.epmd_cli import Console, Settings, atoi, listenAddresses, parse


class ParseTests(SynchronousTestCase):
    """Flags, left to right; commands last; the environment."""

    def parse(self, *argv: str, environ: dict[str, str] | None = None) -> tuple[object, str]:
        out, err = io.BytesIO(), io.BytesIO()
        console = Console(out, err)
        try:
            result: object = parse(list(argv), environ or {}, console)
        except epmd_cli._Exit as done:
            result = ("exit", done.status)
        return result, err.getvalue().decode()

    def test_serverFlags(self) -> None:
        """Every server flag lands in the settings."""
        result, _ = self.parse(
            "-d", "-d", "-port", "14369", "-address", "10.0.0.1,10.0.0.2", "-daemon",
            "-relaxed_command_check", "-packet_timeout", "3", "-delay_write", "1", "-systemd",
        )
        assert isinstance(result, Settings)
        self.assertEqual(2, result.debug)
        self.assertEqual(14369, result.port)
        self.assertEqual(["10.0.0.1", "10.0.0.2"], result.addresses)
        self.assertTrue(result.daemon)
        self.assertTrue(result.relaxed)
        self.assertEqual(3, result.packetTimeout)

    def test_environment(self) -> None:
        """ERL_EPMD_PORT, ERL_EPMD_ADDRESS and ERL_EPMD_RELAXED_COMMAND_CHECK."""
        result, _ = self.parse(
            environ={
                "ERL_EPMD_PORT": "14370",
                "ERL_EPMD_ADDRESS": "10.0.0.1 10.0.0.2",
                "ERL_EPMD_RELAXED_COMMAND_CHECK": "",
            }
        )
        assert isinstance(result, Settings)
        self.assertEqual((14370, ["10.0.0.1", "10.0.0.2"], True),
                         (result.port, result.addresses, result.relaxed))

    def test_usageErrors(self) -> None:
        """Unknown flags, missing or zero values, commands not last: usage, status 1."""
        for argv in (
            ["-bogus"],
            ["-port"],
            ["-port", "0"],
            ["-port", "abc"],
            ["-packet_timeout", "0"],
            ["-names", "-port", "14369"],
            ["-kill", "x"],
            ["-stop"],
            ["-stop", "a", "b"],
            ["-address"],
        ):
            result, err = self.parse(*argv)
            self.assertEqual(("exit", 1), result, argv)
            self.assertEqual(epmd_cli.USAGE, err)

    def test_commandWithoutEpmd(self) -> None:
        """C{-names} with nothing listening: stderr line, status 1; C{-started} silent."""
        port = str(freePort())
        result, err = self.parse("-port", port, "-names")
        self.assertEqual(("exit", 1), result)
        self.assertEqual("epmd: Cannot connect to local epmd\n", err)
        result, err = self.parse("-port", port, "-started")
        self.assertEqual(("exit", 1), result)
        self.assertEqual("", err)

    def test_atoi(self) -> None:
        """C's atoi: leading digits count, anything else is 0."""
        self.assertEqual(
            [12, 0, 7, -3, 0], [atoi("12abc"), atoi("abc"), atoi(" 7"), atoi("-3"), atoi("")]
        )

    def test_listenAddresses(self) -> None:
        """Default 0.0.0.0 and ::1; with -address, the list plus loopback."""
        settings = Settings({})
        self.assertEqual(["0.0.0.0", "::1"], listenAddresses(settings))
        settings.addresses = ["10.0.0.1", "10.0.0.1"]
        self.assertEqual(["10.0.0.1", "127.0.0.1", "::1"], listenAddresses(settings))
