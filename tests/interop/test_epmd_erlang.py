"""
Our epmd against real Erlang/OTP (Debian's C{erlang-base}), and our client
and C{vmq-epmd} against Erlang's real C{epmd}.

Every epmd here listens on a free port (C{ERL_EPMD_PORT} for C{erl}), so
tests run in parallel with each other and with a host epmd on 4369.
Without C{erl}/C{epmd} the tests skip, except under CI where they fail.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.interop.nodeprocess import (
    CHECKOUT,
    NodeProcess,
    freePort,
    portIsFree,
    requireProgram,
    waitForPort,
)
from vernemq.dist.epmd import codec
from vernemq.dist.epmd.client import EpmdClient, EpmdRegistrationError
from vernemq.dist.epmd.codec import NodeEntry
from vernemq.dist.epmd.service import EpmdService

HOST = socket.gethostname().split(".")[0]
VMQ_EPMD = [sys.executable, "-m", "vernemq.dist.epmd_cli"]


def environment(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ERL_EPMD_PORT"] = str(port)
    env["PYTHONPATH"] = CHECKOUT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ERL_EPMD_RELAXED_COMMAND_CHECK", None)
    env.pop("ERL_EPMD_ADDRESS", None)
    return env


def waitFor(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class EpmdProcess:
    """An epmd (Erlang's or ours) in a foreground subprocess on a free port."""

    def __init__(self, test: SynchronousTestCase, ours: bool, *flags: str) -> None:
        self.port = freePort()
        program = VMQ_EPMD if ours else [requireProgram("epmd")]
        self.process = subprocess.Popen(
            [*program, "-port", str(self.port), *flags],
            env=environment(self.port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        test.addCleanup(self.stop)
        waitForPort(self.port, process=self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cli(program: list[str], port: int, *args: str) -> tuple[int, bytes, bytes]:
    """Run an epmd CLI; C{(status, stdout, stderr)}."""
    result = subprocess.run(
        [*program, "-port", str(port), *args],
        env=environment(port),
        capture_output=True,
        timeout=30,
    )
    return result.returncode, result.stdout, result.stderr


def register(port: int, name: bytes, nodePort: int = 1234) -> socket.socket:
    """Register C{name} with a blocking ALIVE2; keep the socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(codec.encodeAlive2Request(NodeEntry(name, nodePort)))
    reply = sock.recv(16)
    assert reply[:2] == b"v\x00", reply
    return sock


class RealErlangAgainstOurEpmdTests(SynchronousTestCase):
    """Real C{erl} nodes use our epmd exactly as they use Erlang's."""

    def setUp(self) -> None:
        self.erl = requireProgram("erl")
        self.epmdProgram = [requireProgram("epmd")]
        self.epmd = EpmdProcess(self, ours=True)
        self.env = environment(self.epmd.port)

    def erlNode(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [self.erl, "-sname", name, "-setcookie", "C", "-start_epmd", "false",
             "-noshell", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()

        self.addCleanup(stop)
        return process

    def erlRun(self, name: str, expression: str) -> tuple[int, str]:
        result = subprocess.run(
            [self.erl, "-sname", name, "-setcookie", "C", "-start_epmd", "false",
             "-noshell", "-eval", expression],
            env=self.env, capture_output=True, timeout=60,
        )
        return result.returncode, (result.stdout + result.stderr).decode()

    def names(self) -> str:
        status, out, err = cli(self.epmdProgram, self.epmd.port, "-names")
        self.assertEqual(0, status, err)
        return out.decode()

    def test_registerListDuplicatePingUnregister(self) -> None:
        """
        C{erl -sname a} registers; Erlang's C{epmd -names} lists it as it
        would from Erlang's epmd; a second C{a} is refused; C{c} pings C{a}
        (pong) and C{net_adm:names()} lists both; closing C{a} unregisters.
        """
        a = self.erlNode("a", "-eval", "timer:sleep(infinity)")
        waitFor(lambda: "name a at port" in self.names(), what="a to register")
        out = self.names()
        self.assertRegex(
            out, rf"\Aepmd: up and running on port {self.epmd.port} with data:\n"
            r"name a at port \d+\n\Z",
        )
        aPort = int(re.search(r"name a at port (\d+)", out).group(1))  # type: ignore[union-attr]

        status, output = self.erlRun("a", "halt().")
        self.assertEqual(1, status, output)
        self.assertIn(f"the name a@{HOST} seems to be in use by another Erlang node", output)

        status, output = self.erlRun(
            "c",
            f"io:format(\"~p~n~p~n\", [net_adm:ping('a@{HOST}'), net_adm:names()]), halt().",
        )
        self.assertEqual(0, status, output)
        lines = output.split()
        self.assertEqual("pong", lines[0], output)
        self.assertIn(f'{{"a",{aPort}}}', output)
        self.assertIn('{"c",', output)

        a.kill()
        a.wait()
        waitFor(lambda: "name" not in self.names().split("\n", 1)[1], what="a to unregister")
        self.assertEqual(
            f"epmd: up and running on port {self.epmd.port} with data:\n", self.names()
        )

    def test_twoNodesPingThroughOurEpmd(self) -> None:
        """Two real nodes registered with our epmd find each other: pong both ways."""
        self.erlNode("b", "-eval", "timer:sleep(infinity)")
        waitFor(lambda: "name b at port" in self.names(), what="b to register")
        status, output = self.erlRun(
            "d", f"io:format(\"~p~n\", [net_adm:ping('b@{HOST}')]), halt()."
        )
        self.assertEqual((0, "pong"), (status, output.strip()), output)


class CliOutputTests(SynchronousTestCase):
    """
    Erlang's C{epmd} and our C{vmq-epmd}, as CLI and as server, in all four
    combinations, print the same bytes and exit with the same statuses.
    """

    def setUp(self) -> None:
        self.programs = {"epmd": [requireProgram("epmd")], "vmq-epmd": VMQ_EPMD}

    def outputs(self, ours: bool) -> dict[str, list[tuple[int, bytes, bytes]]]:
        server = EpmdProcess(self, ours)
        port = server.port
        sockets = [register(port, b"foo", 1234), register(port, b"bar", 1236)]
        sockets[0].close()
        sockets.append(register(port, b"baz", 1237))
        time.sleep(0.1)
        results: dict[str, list[tuple[int, bytes, bytes]]] = {}
        for label, program in self.programs.items():
            runs = [
                cli(program, port, "-names"),
                cli(program, port, "-dump"),
                cli(program, port, "-started"),
                cli(program, port, "-kill"),
                cli(program, port, "-stop", "bar"),
                cli(program, port, "-names", "-d"),
            ]
            results[label] = [
                (status, re.sub(rb"fd = \d+", b"fd = N", out).replace(str(port).encode(), b"P"),
                 err)
                for status, out, err in runs
            ]
        for sock in sockets:
            sock.close()
        time.sleep(0.2)
        status, out, _ = cli(self.programs["epmd"], port, "-kill")
        self.assertEqual((0, b"Killed\n"), (status, out))
        server.process.wait(10)
        self.assertEqual(0, server.process.returncode)
        status, _, err = cli(self.programs["epmd"], port, "-names")
        self.assertEqual((1, b"epmd: Cannot connect to local epmd\n"), (status, err))
        return results

    def test_sameOutputs(self) -> None:
        """Every CLI/server combination gives Erlang's bytes."""
        real = self.outputs(ours=False)
        ours = self.outputs(ours=True)
        expected = real["epmd"]
        self.assertEqual(
            (0, b"epmd: up and running on port P with data:\n"
                b"name baz at port 1237\nname bar at port 1236\n", b""),
            expected[0],
        )
        self.assertEqual(
            b"epmd: up and running on port P with data:\n"
            b"active name     <baz> at port 1237, fd = N\n\x00"
            b"active name     <bar> at port 1236, fd = N\n\x00"
            b"old/unused name <foo>, port = 1234, fd = N \n\x00",
            expected[1][1],
        )
        self.assertEqual((0, b"", b""), expected[2])
        self.assertEqual((1, b"Killing not allowed - living nodes in database.\n", b""),
                         expected[3])
        self.assertEqual((1, b"epmd: local epmd responded with <>\n", b""), expected[4])
        self.assertEqual(1, expected[5][0])
        self.assertEqual(expected, real["vmq-epmd"], "vmq-epmd against Erlang's epmd")
        self.assertEqual(expected, ours["epmd"], "Erlang's epmd CLI against our server")
        self.assertEqual(expected, ours["vmq-epmd"], "vmq-epmd against our server")

    def test_relaxedStop(self) -> None:
        """C{-relaxed_command_check}: C{-stop} prints STOPPED / NOEXIST on both."""
        for ours in (False, True):
            server = EpmdProcess(self, ours, "-relaxed_command_check")
            sock = register(server.port, b"foo")
            for label, program in self.programs.items():
                self.assertEqual(
                    (0, b"NOEXIST\n"), cli(program, server.port, "-stop", "nope")[:2],
                    (ours, label),
                )
            self.assertEqual((0, b"STOPPED\n"),
                             cli(self.programs["vmq-epmd"], server.port, "-stop", "foo")[:2])
            sock.settimeout(5)
            self.assertEqual(b"", sock.recv(10))
            sock.close()
            self.assertEqual((0, b"Killed\n"), cli(VMQ_EPMD, server.port, "-kill")[:2])

    def test_secondServerOnBusyPortExitsZero(self) -> None:
        """A second epmd on a busy port exits 0 (saying why with -d)."""
        server = EpmdProcess(self, ours=True)
        for program in self.programs.values():
            result = subprocess.run(
                [*program, "-port", str(server.port), "-d"],
                capture_output=True, timeout=30,
            )
            self.assertEqual(0, result.returncode)
            self.assertIn(
                f"there is already a epmd running at port {server.port}".encode(),
                result.stderr,
            )


class OurClientAgainstRealEpmdTests(TestCase):
    """L{EpmdClient} against Erlang's C{epmd}."""

    def setUp(self) -> None:
        requireProgram("epmd")
        self.server = EpmdProcess(self, ours=False)  # type: ignore[arg-type]
        self.client = EpmdClient(reactor, port=self.server.port)

    async def _scenario(self) -> None:
        registration = await self.client.register("py", 4321, extra=b"X\0")
        self.assertGreaterEqual(registration.creation, 4)
        try:
            await self.client.register("py", 4322)
        except EpmdRegistrationError as error:
            self.assertEqual(1, error.result)
        else:
            self.fail("duplicate accepted")
        entry = await self.client.portPlease("py")
        self.assertEqual(NodeEntry(b"py", 4321, extra=b"X\0"), entry)
        self.assertIsNone(await self.client.portPlease("nope"))
        self.assertEqual((self.server.port, [("py", 4321)]), await self.client.names())
        v5 = await self.client.register("old", 4323, highVsn=5, lowVsn=5)
        self.assertIn(v5.creation, (1, 2, 3))
        await v5.close()
        await registration.close()
        for _ in range(50):
            if (await self.client.names())[1] == []:
                return
            await deferLater(reactor, 0.05)
        self.fail("still registered after close")

    def test_registerLookupNames(self) -> None:
        """register (creation, duplicate refused), portPlease, names, close."""
        return Deferred.fromCoroutine(self._scenario())


class NodeTakeoverTests(TestCase):
    """C{erlang.epmd.mode = auto} with two real nodes on one host."""

    timeout = 90

    def setUp(self) -> None:
        self.port = freePort()

    def node(self, name: str) -> NodeProcess:
        node = NodeProcess(
            self.mktemp(),
            extraConfig=[
                "erlang.epmd.mode = auto",
                f"erlang.epmd.port = {self.port}",
                f"nodename = {name}@127.0.0.1",
            ],
        )
        node.start()
        self.addCleanup(node.stop)
        return node

    async def _scenario(self) -> None:
        first = self.node("first")
        await self._until(lambda: not portIsFree(self.port), "the first node to serve epmd")
        second = self.node("second")
        service = EpmdService(reactor, mode="client", port=self.port, retryInterval=0.2)
        creations: list[int] = []
        service.publish("py", 4321, onCreation=creations.append)
        service.startService()
        self.addCleanup(service.stopService)
        names = EpmdClient(reactor, port=self.port)
        await self._until(lambda: len(creations) == 1, "py to register with the first node")
        self.assertIn(("py", 4321), (await names.names())[1])

        first.stop()
        stoppedAt = time.monotonic()
        await self._until(lambda: len(creations) == 2, "py to register again", timeout=5)
        self.assertLess(time.monotonic() - stoppedAt, 2.5)
        self.assertIn(("py", 4321), (await names.names())[1])
        self.assertIn(f"serving epmd on port {self.port}", second.log())
        self.assertIn(f"serving epmd on port {self.port}", first.log())

    async def _until(self, predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await deferLater(reactor, 0.05)

    def test_secondNodeTakesOver(self) -> None:
        """
        The first node serves epmd; when it stops, the second takes over
        and a registered node is registered again within about 2 seconds.
        """
        return Deferred.fromCoroutine(self._scenario())
