"""
Our node on the Erlang distribution against real Erlang/OTP (Debian's
C{erlang-base}): C{erl} and C{erl_call} reach a vernemq node (a twistd
subprocess), a vernemq node (in this process) reaches C{erl}, two vernemq
nodes reach each other through our epmd, and the distribution port range.

Every test has its own epmd port (C{erlang.epmd.mode = auto} plus
C{erlang.epmd.port}; C{ERL_EPMD_PORT} for C{erl}), so nothing touches a
host epmd on 4369.  Without C{erl} the tests skip, except under CI where
they fail.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.interop.nodeprocess import NodeProcess, freePort, requireProgram
from vernemq.dist.epmd.client import EpmdClient
from vernemq.dist.epmd.service import EpmdService
from vernemq.dist.etf import Atom
from vernemq.dist.node import BadRpc, Node
from vernemq.dist.service import DistributionService

HOST = socket.gethostname().split(".")[0]
COOKIE = "interop-" + secrets.token_hex(4)


def uniqueName(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def erlEnvironment(epmdPort: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ERL_EPMD_PORT"] = str(epmdPort)
    return env


def registered(epmdPort: int) -> list[str]:
    """The names registered in the epmd on C{epmdPort} (NAMES_REQ)."""
    try:
        with socket.create_connection(("127.0.0.1", epmdPort), timeout=1) as s:
            s.sendall(b"\x00\x01n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return []
    return re.findall(r"name (\S+) at port", data[4:].decode("utf-8", "replace"))


def waitFor(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def erl(epmdPort: int, code: str, cookie: str = COOKIE, *flags: str, timeout: float = 30) -> str:
    """Run C{code} in a fresh C{erl} node; return what it printed."""
    result = subprocess.run(
        [
            requireProgram("erl"),
            "-sname",
            uniqueName("t"),
            "-setcookie",
            cookie,
            "-start_epmd",
            "false",
            "-noshell",
            *flags,
            "-eval",
            code + ", halt().",
        ],
        env=erlEnvironment(epmdPort),
        capture_output=True,
        timeout=timeout,
    )
    return result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")


class ErlangReachesUsTests(SynchronousTestCase):
    """C{erl} and C{erl_call} against a vernemq node in a subprocess."""

    def setUp(self) -> None:
        requireProgram("erl")
        self.epmdPort = freePort()
        self.alive = uniqueName("py")
        self.name = f"{self.alive}@{HOST}"
        self.node = NodeProcess(
            self.mktemp(),
            [
                f"nodename = {self.name}",
                f"distributed_cookie = {COOKIE}",
                "erlang.epmd.mode = auto",
                f"erlang.epmd.port = {self.epmdPort}",
                "erlang.distribution.net_ticktime = 2",
            ],
        ).start()
        self.addCleanup(self.node.stop)
        waitFor(lambda: self.alive in registered(self.epmdPort), "the node in epmd")

    def test_pingRpcErpcSend(self) -> None:
        """
        C{net_adm:ping} gives pong; C{rpc:call} and C{erpc:call} of
        C{erlang:node/0} give our name; an unknown function gives the
        C{{badrpc, {'EXIT', {undef, ...}}}} shape; C{{vmq_echo, N} ! Msg}
        reaches the echo mailbox, which answers.
        """
        out = erl(
            self.epmdPort,
            f"""N = '{self.name}',
            io:format("ping=~p~n", [net_adm:ping(N)]),
            io:format("rpc=~p~n", [rpc:call(N, erlang, node, [])]),
            io:format("erpc=~p~n", [erpc:call(N, erlang, node, [])]),
            io:format("undef=~p~n", [rpc:call(N, nomod, nofun, [1])]),
            io:format("erpcundef=~p~n", [catch erpc:call(N, nomod, nofun, [])]),
            io:format("nodes=~p~n", [rpc:call(N, erlang, nodes, [])]),
            {{vmq_echo, N}} ! {{self(), {{hello, <<"bin">>, [1, 2]}}}},
            receive E -> io:format("echo=~p~n", [E]) after 5000 -> io:format("echo=none~n") end""",
        )
        self.assertIn("ping=pong", out)
        self.assertIn(f"rpc={self.name}", out)
        self.assertIn(f"erpc={self.name}", out)
        self.assertIn("undef={badrpc,{'EXIT',{undef,[{nomod,nofun,[1],[]}]}}}", out)
        self.assertIn(
            "{exception,undef,[{nomod,nofun,[],[]}]}", out.replace("\n", "").replace(" ", "")
        )
        self.assertRegex(out, r"nodes=\[t[0-9a-f]+@")
        self.assertIn('echo={hello,<<"bin">>,[1,2]}', out)

    def test_erlCall(self) -> None:
        """C{erl_call -a 'erlang node'} (the old rex protocol) prints our name."""
        result = subprocess.run(
            [requireProgram("erl_call"), "-sname", self.alive, "-c", COOKIE, "-a", "erlang node"],
            env=erlEnvironment(self.epmdPort),
            capture_output=True,
            timeout=20,
        )
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual(self.name, result.stdout.decode().strip())

    def test_wrongCookie(self) -> None:
        """A wrong cookie gives pang; the node logs one line and goes on."""
        out = erl(self.epmdPort, f"io:format(\"~p~n\", [net_adm:ping('{self.name}')])", "WRONG")
        self.assertIn("pang", out)
        waitFor(lambda: "invalid challenge reply" in self.node.log(), "the log line")
        self.assertEqual(1, self.node.log().count("invalid challenge reply"))
        out = erl(self.epmdPort, f"io:format(\"~p~n\", [net_adm:ping('{self.name}')])")
        self.assertIn("pong", out)

    def test_idleConnectionSurvives(self) -> None:
        """
        With C{net_ticktime} 2 on both sides, a connection idle for a
        minute (thirty tick times) is still up: both sides tick.
        """
        out = erl(
            self.epmdPort,
            f"""N = '{self.name}',
            pong = net_adm:ping(N),
            monitor_node(N, true),
            Down = receive {{nodedown, N}} -> true after 60000 -> false end,
            io:format("down=~p still=~p~n", [Down, lists:member(N, nodes())])""",
            COOKIE,
            "-kernel",
            "net_ticktime",
            "2",
            timeout=90,
        )
        self.assertIn("down=false still=true", out)

    def test_droppedWhenWeStopTicking(self) -> None:
        """
        When our node stops ticking (the process is frozen with SIGSTOP),
        Erlang with C{net_ticktime} 2 declares it down within a few
        seconds; once it runs again, a ping reconnects.
        """
        assert self.node.process is not None
        erlProcess = subprocess.Popen(
            [
                requireProgram("erl"), "-sname", uniqueName("t"), "-setcookie", COOKIE,
                "-start_epmd", "false", "-noshell", "-kernel", "net_ticktime", "2",
                "-eval",
                f"""N = '{self.name}',
                pong = net_adm:ping(N),
                monitor_node(N, true),
                io:format("connected~n"),
                T0 = erlang:monotonic_time(millisecond),
                receive {{nodedown, N}} ->
                    io:format("nodedown_after_ms=~p~n", [erlang:monotonic_time(millisecond) - T0])
                after 20000 -> io:format("no_nodedown~n")
                end,
                receive go -> ok after 1000 -> ok end,
                io:format("again=~p~n", [net_adm:ping(N)]),
                halt().""",
            ],
            env=erlEnvironment(self.epmdPort),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(lambda: erlProcess.poll() is None and erlProcess.kill())
        assert erlProcess.stdout is not None
        lines: list[str] = []
        while "connected" not in lines:
            line = erlProcess.stdout.readline().decode("utf-8", "replace")
            if not line:
                self.fail(f"erl ended before connecting: {lines}")
            lines.append(line.strip())
        self.node.process.send_signal(signal.SIGSTOP)
        try:
            line = erlProcess.stdout.readline().decode("utf-8", "replace").strip()
        finally:
            self.node.process.send_signal(signal.SIGCONT)
        self.assertTrue(line.startswith("nodedown_after_ms="), line)
        self.assertLess(int(line.split("=")[1]), 8000)
        rest, _ = erlProcess.communicate(timeout=30)
        self.assertIn("again=pong", rest.decode("utf-8", "replace"))


class _InProcess(TestCase):
    """A node in this process, on the real reactor, with its own epmd."""

    timeout = 40

    def setUp(self) -> None:
        self.epmdPort = freePort()
        self.epmd = EpmdService(reactor, mode="serve", port=self.epmdPort, addresses=("127.0.0.1",))
        self.epmd.startService()
        self.addCleanup(self.epmd.stopService)

    def startNode(self, alive: str) -> Node:
        node = Node(f"{alive}@{HOST}", COOKIE, reactor, epmdPort=self.epmdPort)
        service = DistributionService(node, reactor, (0, 0), "0.0.0.0", self.epmd)
        service.startService()
        self.addCleanup(service.stopService)
        return node

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await deferLater(reactor, 0.05, lambda: None)

    async def registered(self, count: int, timeout: float = 15) -> list[str]:
        """Wait until our epmd knows C{count} names; return them."""
        client = EpmdClient(reactor, "127.0.0.1", self.epmdPort)
        deadline = time.monotonic() + timeout
        while True:
            _, names = await client.names()
            if len(names) >= count:
                return [name for name, _ in names]
            if time.monotonic() > deadline:
                raise AssertionError(f"epmd knows {names}, expected {count} names")
            await deferLater(reactor, 0.05, lambda: None)


class WeReachErlangTests(_InProcess):
    """A vernemq node reaches a real C{erl} node."""

    def test_pingCallSend(self) -> Deferred[None]:
        """
        Ping gives pong, C{rpc:call} of C{lists:reverse/1} gives the reversed
        list, an unknown function gives badrpc, and a message sent to a
        registered process is answered.
        """
        requireProgram("erl")
        return Deferred.fromCoroutine(self._pingCallSend())

    async def _pingCallSend(self) -> None:
        node = self.startNode(uniqueName("us"))
        alive = uniqueName("e")
        process = subprocess.Popen(
            [
                "erl",
                "-sname",
                alive,
                "-setcookie",
                COOKIE,
                "-start_epmd",
                "false",
                "-noshell",
                "-eval",
                "register(echo, spawn(fun L() -> receive {P, M} -> P ! {echoed, M}, L() end end)),"
                " timer:sleep(30000), halt().",
            ],
            env=erlEnvironment(self.epmdPort),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(lambda: (process.kill(), process.wait()))
        self.assertIn(alive, await self.registered(2))
        peer = f"{alive}@{HOST}"
        self.assertTrue(await node.ping(peer))
        self.assertEqual([3, 2, 1], await node.call(peer, "lists", "reverse", [[1, 2, 3]]))
        try:
            await node.call(peer, "nomod", "nofun", [])
        except BadRpc as bad:
            self.assertEqual(Atom("EXIT"), bad.reason[0])
        else:
            self.fail("no badrpc")
        # erl registers the echo process once its -eval runs, which may be
        # after it registered with epmd.
        for _ in range(100):
            if await node.call(peer, "erlang", "whereis", [Atom("echo")]) != "undefined":
                break
            await deferLater(reactor, 0.05, lambda: None)
        mailbox = node.spawn()
        mailbox.send((Atom("echo"), Atom(peer)), (mailbox.pid, b"hi"))
        reply = await mailbox.receive().addTimeout(10, reactor)
        self.assertEqual((Atom("echoed"), b"hi"), reply)
        self.assertFalse(await node.ping(f"nobody@{HOST}"))


class TwoVernemqNodesTests(_InProcess):
    """Two vernemq nodes find each other through our epmd, in both roles."""

    def test_bothRoles(self) -> Deferred[None]:
        """
        a connects to b by name and they exchange messages; after a
        disconnect, b connects to a.
        """
        return Deferred.fromCoroutine(self._bothRoles())

    async def _bothRoles(self) -> None:
        a = self.startNode(uniqueName("a"))
        b = self.startNode(uniqueName("b"))
        await self.registered(2)
        inboxA, inboxB = a.spawn(name="inbox"), b.spawn(name="inbox")
        await a.connect(b.name)
        self.assertEqual([b.name], a.nodes())
        a.send((Atom("inbox"), b.name), (b"from a", inboxA.pid))
        message: Any = await inboxB.receive().addTimeout(10, reactor)
        self.assertEqual(b"from a", message[0])
        b.send(message[1], b"reply from b")
        self.assertEqual(b"reply from b", await inboxA.receive().addTimeout(10, reactor))
        self.assertEqual(a.name, await b.call(a.name, "erlang", "node", []))
        a.disconnect(b.name)
        await self.until(lambda: not b.nodes() and not a.nodes(), "the disconnect")
        await b.connect(a.name)
        self.assertEqual("outgoing", b._up[a.name].role)
        self.assertEqual(b.name, await a.call(b.name, "erlang", "node", []))


class PortRangeTests(SynchronousTestCase):
    """The distribution port: first free port of the range, or no start."""

    def test_rangeOfTwo(self) -> None:
        """
        With a port of the range taken by another program, and a range of
        three ports, two nodes take the two free ports and the third
        refuses to start with a message naming the range.
        """
        first = self.consecutiveFreePorts(3)
        other = socket.socket()
        other.bind(("0.0.0.0", first))
        other.listen()
        self.addCleanup(other.close)
        extra = [
            f"erlang.distribution.port_range.minimum = {first}",
            f"erlang.distribution.port_range.maximum = {first + 2}",
        ]
        bound = []
        for i in range(2):
            node = NodeProcess(self.mktemp(), [f"nodename = r{i}@{HOST}", *extra]).start()
            self.addCleanup(node.stop)
            waitFor(lambda node=node: "Erlang distribution: node" in node.log(), "the listen line")
            bound.append(int(re.findall(r"listens on [0-9.]+:(\d+)", node.log())[0]))
        self.assertEqual([first + 1, first + 2], bound)
        third = NodeProcess(self.mktemp(), [f"nodename = r2@{HOST}", *extra])
        self.assertRaises(AssertionError, third.start)
        self.assertNotEqual(0, third.process.returncode if third.process else 0)
        self.assertIn(f"{first}..{first + 2}", third.log())
        self.assertIn("in use", third.log())

    def consecutiveFreePorts(self, count: int) -> int:
        for _ in range(50):
            first = freePort()
            if first + count > 65535:
                continue
            sockets = []
            try:
                for port in range(first, first + count):
                    s = socket.socket()
                    sockets.append(s)
                    s.bind(("0.0.0.0", port))
                return first
            except OSError:
                continue
            finally:
                for s in sockets:
                    s.close()
        raise AssertionError("no consecutive free ports")
