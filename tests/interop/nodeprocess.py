"""
Run a real vernemq node as a subprocess (C{twistd -n vernemq -c <conf>}) and
find the real client programs the interop tests drive it with.

Outside CI a missing program (mosquitto_pub, erl) skips the tests that need
it with a visible reason; under CI (C{CI} set) it fails them instead, so CI
never silently skips a real-client test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

from twisted.trial.unittest import FailTest, SkipTest

#: The checkout root: the node subprocess imports vernemq from here.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def requireProgram(name: str) -> str:
    """
    Return the path of program C{name}; skip (or, under CI, fail) without it.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install mosquitto-clients / erlang-base)"
        if os.environ.get("CI"):
            raise FailTest(f"CI must run this test: {message}")
        raise SkipTest(message)
    return path


def freePort() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(
    port: int,
    timeout: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Block until something accepts TCP connections on C{host}:C{port}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"node exited early with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout}s")


def portIsFree(port: int) -> bool:
    """True if nothing accepts connections on 127.0.0.1:C{port}."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


class NodeProcess:
    """
    A vernemq node in a subprocess with its own directory and config.

    @ivar port: the MQTT TCP port on C{host}.
    @ivar host: the address of the MQTT listener (127.0.0.1 by default).
    @ivar directory: the node's working directory (data, logs, config).
    @ivar prefix: a command the node runs under, e.g. C{ip netns exec ns1}.
    """

    def __init__(
        self,
        directory: str,
        extraConfig: Iterable[str] = (),
        port: int | None = None,
        host: str = "127.0.0.1",
        prefix: Iterable[str] = (),
    ) -> None:
        self.directory = directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.port = port if port is not None else freePort()
        self.host = host
        self.prefix = list(prefix)
        self.configPath = os.path.join(directory, "vernemq.conf")
        lines = [
            "nodename = VerneMQ@127.0.0.1",
            f"listener.tcp.default = {host}:{self.port}",
            "allow_anonymous = on",
            f"platform_data_dir = {os.path.join(directory, 'data')}",
            # Parallel test nodes must not fight over the host's epmd port;
            # tests of the epmd service set their own mode and port below.
            "erlang.epmd.mode = off",
            *extraConfig,
        ]
        with open(self.configPath, "w") as f:
            f.write("\n".join(lines) + "\n")
        # The default vmq_acl.acl_file is ./etc/vmq.acl, relative to the
        # node's directory: give it VerneMQ's default (everybody may do
        # everything) unless the test brought its own.
        self.aclPath = os.path.join(directory, "etc", "vmq.acl")
        if not os.path.exists(self.aclPath):
            os.makedirs(os.path.dirname(self.aclPath), exist_ok=True)
            with open(self.aclPath, "w") as f:
                f.write("topic #\n")
        self.logPath = os.path.join(directory, "node.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        """Start the node and wait until its MQTT port accepts connections."""
        env = dict(os.environ)
        env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            [*self.prefix, *TWISTD, "-n", "--pidfile=", "vernemq", "-c", self.configPath],
            cwd=self.directory,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            waitForPort(self.port, process=self.process, host=self.host)
            # The port accepts as soon as it is bound, before the reactor
            # runs and installs its SIGTERM handler: wait for the start line.
            deadline = time.monotonic() + 20
            while "started; listening" not in self.log():
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"node exited early with status {self.process.returncode}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError("the node did not log its start line within 20 s")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        """Everything the node has logged so far."""
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the node and return its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        status = self.process.returncode
        return status
