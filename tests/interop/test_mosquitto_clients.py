"""
A real node (C{twistd -n vernemq}) driven by Debian's C{mosquitto_pub} and
C{mosquitto_sub}, for MQTT 3.1, 3.1.1 and 5.0.
"""

from __future__ import annotations

import socket
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess, requireProgram


class Subscriber:
    """A C{mosquitto_sub -d} process, ready once its SUBACK arrived."""

    def __init__(self, port: int, *args: str, count: int = 1) -> None:
        self.process = subprocess.Popen(
            # stdbuf: mosquitto_sub's stdio is block-buffered on a pipe, and
            # the SUBACK line must be seen before anything is published.
            [requireProgram("stdbuf"), "-oL", requireProgram("mosquitto_sub"),
             "-h", "127.0.0.1", "-p", str(port), "-d",
             "-C", str(count), "-W", "15", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if "received suback" in line.lower():
                return
        raise AssertionError(f"no SUBACK for mosquitto_sub: {self.lines}")

    def messages(self) -> list[str]:
        """Wait for exit; the non-debug output lines (the messages)."""
        # Not communicate(): with a timeout it reads the pipe's descriptor
        # directly and would miss what readline() already buffered.
        self.process.wait(timeout=20)
        assert self.process.stdout is not None
        rest = self.process.stdout.read()
        self.process.stdout.close()
        self.lines.extend(rest.decode("utf-8", "replace").splitlines())
        return [line for line in self.lines if not line.startswith("Client ")
                and not line.startswith("Subscribed") and line.strip()]


def publish(port: int, *args: str) -> None:
    """Run C{mosquitto_pub} to completion; fail on a non-zero status."""
    result = subprocess.run(
        [requireProgram("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, timeout=20,
    )
    if result.returncode != 0:
        raise AssertionError(f"mosquitto_pub failed: {result.stdout!r} {result.stderr!r}")


class MosquittoClientsTests(SynchronousTestCase):
    """mosquitto_pub and mosquitto_sub round-trip through a real node."""

    def setUp(self) -> None:
        requireProgram("mosquitto_pub")
        self.node = NodeProcess(self.mktemp()).start()
        self.addCleanup(self.node.stop)

    def roundTrip(self, version: str, qos: str) -> None:
        sub = Subscriber(self.node.port, "-V", version, "-q", qos, "-t", "#", "-v")
        publish(self.node.port, "-V", version, "-q", qos, "-t", "a/b", "-m", "hi")
        self.assertIn("a/b hi", sub.messages())

    def test_roundTripV311QoS0(self) -> None:
        """The README's example: sub C{#}, pub C{a/b hi}, MQTT 3.1.1."""
        self.roundTrip("311", "0")

    def test_roundTripV31QoS1(self) -> None:
        """MQTT 3.1 (MQIsdp) clients exchange a QoS 1 message."""
        self.roundTrip("31", "1")

    def test_roundTripV5QoS2(self) -> None:
        """MQTT 5.0 clients exchange a QoS 2 message."""
        self.roundTrip("5", "2")

    def test_retainedMessageOnSubscribe(self) -> None:
        """A retained message reaches a later subscriber; an empty one clears it."""
        publish(self.node.port, "-t", "r/1", "-m", "kept", "-r", "-q", "1")
        sub = Subscriber(self.node.port, "-t", "r/#", "-v")
        self.assertIn("r/1 kept", sub.messages())
        publish(self.node.port, "-t", "r/1", "-n", "-r", "-q", "1")
        publish(self.node.port, "-t", "r/2", "-m", "second", "-r")
        sub = Subscriber(self.node.port, "-t", "r/#", "-v")
        self.assertEqual(["r/2 second"], sub.messages(), sub.lines)

    def test_junkDoesNotHurtOthers(self) -> None:
        """
        A connection sending garbage is closed; a subscriber connected
        before it still receives the next message.
        """
        sub = Subscriber(self.node.port, "-t", "x", "-v")
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=5) as junk:
            junk.sendall(b"\xff\xff\xff\xff\xff GET / HTTP/1.0\r\n\r\n")
            self.assertEqual(b"", junk.recv(100))
        publish(self.node.port, "-t", "x", "-m", "still-here")
        self.assertIn("x still-here", sub.messages())
