"""
The node as an operator meets it: C{twistd -n vernemq -c vernemq.conf}
starts, logs its name and addresses once, stops cleanly on SIGTERM, and
refuses a bad configuration before binding any port.
"""

from __future__ import annotations

import os
import signal
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import CHECKOUT, TWISTD, NodeProcess, freePort, portIsFree


def runTwistd(directory: str, configPath: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "vernemq", "-c", configPath],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60,
    )


class NodeProcessTests(SynchronousTestCase):
    """Starting and stopping a real node."""

    def test_startLogsNameAndAddressesOnceAndSigtermStops(self) -> None:
        """
        The start log names the node and its listener address exactly once;
        SIGTERM ends the process with status 0 and frees the port.
        """
        node = NodeProcess(self.mktemp()).start()
        status = node.stop()
        log = node.log()
        # twistd ends a clean SIGTERM shutdown by re-raising the signal, as
        # Unix daemons conventionally do.
        self.assertIn(status, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down", log)
        started = [line for line in log.splitlines() if "started; listening" in line]
        self.assertEqual(1, len(started), log)
        self.assertIn("VerneMQ@127.0.0.1", started[0])
        self.assertIn(f"127.0.0.1:{node.port}", started[0])
        self.assertIn("erlang distribution on 127.0.0.1:", started[0])
        self.assertTrue(portIsFree(node.port))

    def test_badValueStopsStartWithFileLineKey(self) -> None:
        """
        A bad value prints C{PATH:LINE: KEY: reason} on stderr, exits non-zero
        and binds nothing.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        port = freePort()
        path = os.path.join(directory, "vernemq.conf")
        with open(path, "w") as f:
            f.write(f"listener.tcp.default = 127.0.0.1:{port}\n"
                    "allow_anonymous = on\n"
                    "max_inflight_messages = lots\n")
        result = runTwistd(directory, path)
        self.assertNotEqual(0, result.returncode)
        self.assertIn(f"{path}:3: max_inflight_messages:", result.stderr)
        self.assertTrue(portIsFree(port))

    def test_unknownKeyStopsStart(self) -> None:
        """An unknown key is named with its line, and the start fails."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "vernemq.conf")
        with open(path, "w") as f:
            f.write("## a comment\nallow_anonymous = on\nmax_inflight_mesages = 3\n")
        result = runTwistd(directory, path)
        self.assertNotEqual(0, result.returncode)
        self.assertIn(f"{path}:3: max_inflight_mesages:", result.stderr)

    def test_missingFileStopsStart(self) -> None:
        """An unreadable configuration file is named and the start fails."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "nope.conf")
        result = runTwistd(directory, path)
        self.assertNotEqual(0, result.returncode)
        self.assertIn(path, result.stderr)

    def test_portInUseStopsStart(self) -> None:
        """A listener that cannot bind stops the node with a non-zero status."""
        first = NodeProcess(self.mktemp()).start()
        self.addCleanup(first.stop)
        second = NodeProcess(self.mktemp(), port=first.port)
        result = runTwistd(second.directory, second.configPath)
        self.assertNotEqual(0, result.returncode)
        self.assertIn(str(first.port), result.stdout + result.stderr)
