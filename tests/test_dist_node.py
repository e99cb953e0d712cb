"""
Tests for L{vernemq.dist.node} and L{vernemq.dist.exports}: what a node
answers to the control messages real Erlang sends (section 2.7 of the
distribution notes), monitors, links, node down, and two nodes talking.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from vernemq.dist.connection import AcceptorProtocol, DistributionProtocol, IConnectionOwner
from vernemq.dist.etf import Atom, ImproperList, Pid, Reference
from vernemq.dist.exports import ErlangError, ErlangExit, ErlangThrow, FunctionRegistry
from vernemq.dist.framing import (
    NO_MESSAGE,
    PacketDecoder,
    decodePassThrough,
    encodePassThrough,
    frame2,
)
from vernemq.dist.handshake import OUR_FLAGS, digest, encodeChallengeReply, encodeSendName
from vernemq.dist.node import (
    BadRpc,
    CallFailed,
    ConnectFailed,
    INodeObserver,
    Node,
)

A = Atom
EMPTY = A("")


class FakeErlang:
    """
    A peer node, C{t@vm}, driven by hand: it connects to C{node}'s
    acceptor over a L{StringTransport} and exchanges raw control messages.
    """

    def __init__(self, node: Node, reactor: Any, name: str = "t@vm") -> None:
        self.name = A(name)
        self.protocol = AcceptorProtocol(node, reactor, challenge=lambda: 1000)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 41000))
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(
            frame2(encodeSendName(OUR_FLAGS, 9, name))
            + frame2(encodeChallengeReply(2000, digest(1000, node.cookie)))
        )
        self.decoder = PacketDecoder(2)
        self.decoder.feed(self.transport.value())
        self.transport.clear()
        for _ in range(3):  # status, challenge, ack
            assert self.decoder.next() is not None
        self.decoder.headerSize = 4
        self.pid = Pid(self.name, 80, 0, 9)

    def send(self, control: tuple[Any, ...], message: Any = NO_MESSAGE) -> None:
        self.protocol.dataReceived(encodePassThrough(control, message))

    def received(self) -> list[tuple[Any, Any]]:
        self.decoder.feed(self.transport.value())
        self.transport.clear()
        out = []
        while (packet := self.decoder.next()) is not None:
            if packet:
                out.append(decodePassThrough(packet))
        return out

    def close(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def ref(n: int, node: str = "t@vm") -> Reference:
    return Reference(A(node), 9, (n, 0, 0))


@implementer(INodeObserver)
class Observer:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def nodeUp(self, node: Atom) -> None:
        self.events.append(("up", node))

    def nodeDown(self, node: Atom, reason: str) -> None:
        self.events.append(("down", node))


class NodeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.node = Node("py@vm", "C", self.reactor, creation=77)
        self.peer = FakeErlang(self.node, self.reactor)


class ErlangSendsTests(NodeTestCase):
    """What erl 25 sends for ping, rpc, erpc, erl_call and {Name, Node} ! Msg."""

    def test_interfaces(self) -> None:
        """The node is a connection owner."""
        self.assertTrue(verifyObject(IConnectionOwner, self.node))
        self.assertTrue(verifyObject(INodeObserver, Observer()))

    def test_ping(self) -> None:
        """
        MONITOR_P net_kernel, REG_SEND is_auth with an C{[alias | Ref]} tag:
        the reply echoes the tag with C{yes} (C{net_adm:ping} → pong).
        """
        peer = self.peer
        mref = ref(1)
        tag = ImproperList((A("alias"),), mref)
        peer.send((19, peer.pid, A("net_kernel"), mref))
        peer.send(
            (6, peer.pid, EMPTY, A("net_kernel")),
            (A("$gen_call"), (peer.pid, tag), (A("is_auth"), peer.name)),
        )
        peer.send((20, peer.pid, A("net_kernel"), mref))
        self.assertEqual([((2, EMPTY, peer.pid), (tag, A("yes")))], peer.received())
        self.assertFalse(peer.closed)
        self.assertEqual({}, self.node.whereis("net_kernel").watchers)  # type: ignore[union-attr]

    def spawnRequest(self, m: str, f: str, args: list[Any], options: list[Any]) -> list[Any]:
        peer = self.peer
        resRef = ref(5)
        peer.send(
            (29, ref(4), peer.pid, peer.pid, (A("erpc"), A("execute_call"), 4), options),
            [resRef, A(m), A(f), args],
        )
        return peer.received()

    def test_erpcCall(self) -> None:
        """
        SPAWN_REQUEST erpc:execute_call/4 with C{monitor}: SPAWN_REPLY with
        flag 2, then MONITOR_P_EXIT carrying C{{ResRef, return, Value}}.
        """
        [(reply, _), (down, _)] = self.spawnRequest("erlang", "node", [], [A("monitor")])
        self.assertEqual((31, ref(4), self.peer.pid, 2), reply[:4])
        spawned = reply[4]
        self.assertIsInstance(spawned, Pid)
        self.assertEqual(
            (21, spawned, self.peer.pid, ref(4), (ref(5), A("return"), A("py@vm"))), down
        )

    def test_erpcUndef(self) -> None:
        """An unknown function exits with C{{ResRef, error, undef, [{M,F,A,[]}]}}."""
        [_, (down, _)] = self.spawnRequest("m", "f", [1], [A("monitor")])
        self.assertEqual((ref(5), A("error"), A("undef"), [(A("m"), A("f"), [1], [])]), down[4])

    def test_spawnLink(self) -> None:
        """With C{link} the spawned process sends EXIT to the requester."""
        [(reply, _), (exit, _)] = self.spawnRequest("erlang", "node", [], [A("link")])
        self.assertEqual(1, reply[3])
        self.assertEqual((3, reply[4], self.peer.pid), exit[:3])

    def test_spawnBadArity(self) -> None:
        """A spawn request whose arity does not match its arguments gets badarg."""
        peer = self.peer
        peer.send((29, ref(4), peer.pid, peer.pid, (A("erlang"), A("node"), 1), []), [])
        self.assertEqual([((31, ref(4), peer.pid, 0, A("badarg")), NO_MESSAGE)], peer.received())

    def test_rexGenCall(self) -> None:
        """rex serves C{{call, M, F, A, GL}} as a gen_server call."""
        peer = self.peer
        tag = ref(7)
        for mfa, expected in [
            ((A("erlang"), A("node"), []), A("py@vm")),
            (
                (A("nope"), A("f"), []),
                (A("badrpc"), (A("EXIT"), (A("undef"), [(A("nope"), A("f"), [], [])]))),
            ),
        ]:
            peer.send(
                (6, peer.pid, EMPTY, A("rex")),
                (A("$gen_call"), (peer.pid, tag), (A("call"), *mfa, A("user"))),
            )
            self.assertEqual([((2, EMPTY, peer.pid), (tag, expected))], peer.received())

    def test_rexErlCall(self) -> None:
        """The C{erl_call} form C{{From, {call, ...}}} is answered with C{{rex, Reply}}."""
        peer = self.peer
        peer.send(
            (6, peer.pid, EMPTY, A("rex")),
            (peer.pid, (A("call"), A("erlang"), A("node"), [], A("user"))),
        )
        self.assertEqual([((2, EMPTY, peer.pid), (A("rex"), A("py@vm")))], peer.received())

    def test_rexFeaturesAndGlobal(self) -> None:
        """The messages erl sends on connecting are harmless."""
        peer = self.peer
        peer.send((6, peer.pid, EMPTY, A("rex")), (peer.pid, A("features_request")))
        peer.send(
            (6, peer.pid, EMPTY, A("global_name_server")), (A("$gen_cast"), (A("init_connect"),))
        )
        self.assertEqual(
            [((2, EMPTY, peer.pid), (A("features_reply"), A("py@vm"), [A("erpc")]))],
            peer.received(),
        )
        self.assertFalse(peer.closed)

    def test_regSendToMailbox(self) -> None:
        """C{{Name, Node} ! Msg} reaches the mailbox registered as Name."""
        mailbox = self.node.spawn(name="inbox")
        self.peer.send((6, self.peer.pid, EMPTY, A("inbox")), (A("hello"), 1))
        self.assertEqual([(A("hello"), 1)], mailbox.pending())
        self.assertEqual((A("hello"), 1), self.successResultOf(mailbox.receive()))

    def test_echo(self) -> None:
        """vmq_echo sends Msg back to Pid for C{{Pid, Msg}}."""
        self.peer.send((6, self.peer.pid, EMPTY, A("vmq_echo")), (self.peer.pid, b"hi"))
        self.assertEqual([((2, EMPTY, self.peer.pid), b"hi")], self.peer.received())

    def test_sendToPid(self) -> None:
        """SEND to a mailbox's pid delivers; to an unknown pid, nothing."""
        mailbox = self.node.spawn()
        self.peer.send((2, EMPTY, mailbox.pid), 1)
        self.peer.send((2, EMPTY, Pid(A("py@vm"), 9999, 0, 77)), 2)
        self.assertEqual([1], mailbox.pending())


class MonitorLinkTests(NodeTestCase):
    """Monitors and links from the remote side."""

    def test_monitorUnknown(self) -> None:
        """Monitoring an unknown name gives MONITOR_P_EXIT noproc."""
        self.peer.send((19, self.peer.pid, A("nobody"), ref(1)))
        self.assertEqual(
            [((21, A("nobody"), self.peer.pid, ref(1), A("noproc")), NO_MESSAGE)],
            self.peer.received(),
        )

    def test_monitorThenExit(self) -> None:
        """A monitored mailbox that exits sends MONITOR_P_EXIT with the reason."""
        mailbox = self.node.spawn(name="watched")
        self.peer.send((19, self.peer.pid, A("watched"), ref(1)))
        self.peer.send((19, self.peer.pid, mailbox.pid, ref(2)))
        mailbox.close(A("shutdown"))
        received = sorted(self.peer.received(), key=lambda r: r[0][3].ids)
        self.assertEqual(
            [
                ((21, A("watched"), self.peer.pid, ref(1), A("shutdown")), NO_MESSAGE),
                ((21, mailbox.pid, self.peer.pid, ref(2), A("shutdown")), NO_MESSAGE),
            ],
            received,
        )

    def test_demonitor(self) -> None:
        """After DEMONITOR_P nothing is sent."""
        mailbox = self.node.spawn(name="watched")
        self.peer.send((19, self.peer.pid, A("watched"), ref(1)))
        self.peer.send((20, self.peer.pid, A("watched"), ref(1)))
        mailbox.close()
        self.assertEqual([], self.peer.received())

    def test_link(self) -> None:
        """A linked mailbox that exits sends EXIT; linking an unknown pid gives noproc."""
        mailbox = self.node.spawn()
        self.peer.send((1, self.peer.pid, mailbox.pid))
        mailbox.close(A("bye"))
        self.peer.send((1, self.peer.pid, mailbox.pid))
        self.assertEqual(
            [
                ((3, mailbox.pid, self.peer.pid, A("bye")), NO_MESSAGE),
                ((3, mailbox.pid, self.peer.pid, A("noproc")), NO_MESSAGE),
            ],
            self.peer.received(),
        )

    def test_unlinkId(self) -> None:
        """UNLINK_ID removes the link and is acknowledged."""
        mailbox = self.node.spawn()
        self.peer.send((1, self.peer.pid, mailbox.pid))
        self.peer.send((35, 42, self.peer.pid, mailbox.pid))
        self.assertEqual([((36, 42, mailbox.pid, self.peer.pid), NO_MESSAGE)], self.peer.received())
        mailbox.close()
        self.assertEqual([], self.peer.received())

    def test_exitSignal(self) -> None:
        """EXIT from a linked pid and EXIT2 arrive as C{('EXIT', From, Reason)}."""
        mailbox = self.node.spawn()
        self.peer.send((1, self.peer.pid, mailbox.pid))
        self.peer.send((3, self.peer.pid, mailbox.pid, A("boom")))
        self.peer.send((8, self.peer.pid, mailbox.pid, A("kill")))
        self.assertEqual(
            [(A("EXIT"), self.peer.pid, A("boom")), (A("EXIT"), self.peer.pid, A("kill"))],
            mailbox.pending(),
        )

    def test_localMonitorsRemote(self) -> None:
        """
        A mailbox monitoring a remote process sends MONITOR_P and gets DOWN
        from MONITOR_P_EXIT; one linked gets EXIT.
        """
        mailbox = self.node.spawn()
        mref = mailbox.monitor(self.peer.pid)
        [((op, frm, target, sent), _)] = self.peer.received()
        self.assertEqual((19, mailbox.pid, self.peer.pid, mref), (op, frm, target, sent))
        self.peer.send((21, self.peer.pid, mailbox.pid, mref, A("gone")))
        self.assertEqual(
            [(A("DOWN"), mref, A("process"), self.peer.pid, A("gone"))], mailbox.pending()
        )

    def test_nodeDown(self) -> None:
        """
        When the connection ends: monitors get DOWN noconnection, links get
        EXIT noconnection, node monitors get nodedown, observers hear it.
        """
        observer = Observer()
        self.node.subscribe(observer)
        mailbox = self.node.spawn()
        mref = mailbox.monitor((A("srv"), self.peer.name))
        mailbox.link(self.peer.pid)
        mailbox.monitorNode(self.peer.name)
        with capturedLogs() as events:
            self.peer.close()
        self.assertEqual(1, len(events))
        self.assertEqual(
            {
                (A("DOWN"), mref, A("process"), (A("srv"), self.peer.name), A("noconnection")),
                (A("EXIT"), self.peer.pid, A("noconnection")),
                (A("nodedown"), self.peer.name),
            },
            set(mailbox.pending()),
        )
        self.assertEqual([("down", self.peer.name)], observer.events)
        self.assertEqual([], self.node.nodes())

    def test_localMonitorAndLink(self) -> None:
        """Monitors and links between local mailboxes work too."""
        a, b = self.node.spawn(), self.node.spawn(name="b")
        mref = a.monitor(A("b"))
        a.link(b.pid)
        b.close(A("done"))
        self.assertEqual(
            [
                (A("EXIT"), b.pid, A("done")),
                (A("DOWN"), mref, A("process"), (A("b"), A("py@vm")), A("done")),
            ],
            a.pending(),
        )
        mref2 = a.monitor(A("b"))
        self.assertEqual(
            (A("DOWN"), mref2, A("process"), (A("b"), A("py@vm")), A("noproc")), a.pending()[-1]
        )


class BadControlTests(NodeTestCase):
    """Malformed or unknown control messages close that connection."""

    def test_unknown(self) -> None:
        """An unknown operation closes the connection with one log line."""
        with capturedLogs() as events:
            self.peer.send((77, 1))
            self.assertTrue(self.peer.closed)
            self.peer.close()
        self.assertEqual(1, len(events))
        self.assertIn("unknown control message 77", events[0]["reason"])

    def test_malformed(self) -> None:
        """SEND without a message, or with a non-pid, closes."""
        self.peer.send((2, EMPTY, self.peer.pid))
        self.assertTrue(self.peer.closed)
        peer = FakeErlang(self.node, self.reactor, "u@vm")
        peer.send((2, EMPTY, A("notapid")), 1)
        self.assertTrue(peer.closed)


class ExportsTests(SynchronousTestCase):
    """L{FunctionRegistry}: how Python functions fail and return."""

    def apply(self, registry: FunctionRegistry, args: list[Any]) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(registry.apply(A("m"), A("f"), args)))

    def test_classes(self) -> None:
        """ErlangError/Exit/Throw map to error/exit/throw; other exceptions to error."""
        registry = FunctionRegistry()
        for exception, klass in [
            (ErlangError, "error"),
            (ErlangExit, "exit"),
            (ErlangThrow, "throw"),
        ]:

            def raiser(x: Any, exception: type[Exception] = exception) -> Any:
                raise exception(A("why"))

            registry.register("m", "f", raiser)
            outcome = self.apply(registry, [1])
            self.assertEqual((klass, "why"), (outcome.klass, outcome.value))
        registry.register("m", "f", lambda x: 1 / 0)
        with capturedLogs() as events:
            outcome = self.apply(registry, [1])
        self.assertEqual(1, len(events))
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertEqual(
            ("error", A("python"), b"ZeroDivisionError"), (outcome.klass, *outcome.value[:2])
        )

    def test_async(self) -> None:
        """A function may return a Deferred or be a coroutine function."""
        registry = FunctionRegistry()
        d: Deferred[int] = Deferred()
        registry.register("m", "f", lambda: d)

        async def g(x: int) -> int:
            return x + 1

        registry.register("m", "g", g)
        pending = Deferred.fromCoroutine(registry.apply(A("m"), A("f"), []))
        self.assertNoResult(pending)
        d.callback(5)
        self.assertEqual(5, self.successResultOf(pending).value)
        self.assertEqual(
            3,
            self.successResultOf(Deferred.fromCoroutine(registry.apply(A("m"), A("g"), [2]))).value,
        )

    def test_onlyRegistered(self) -> None:
        """Unknown functions and non-atom names are refused; arity counts."""
        registry = FunctionRegistry()
        registry.register("m", "f", lambda x: x)
        self.assertEqual("undef", self.apply(registry, []).value)
        outcome = self.successResultOf(Deferred.fromCoroutine(registry.apply("m", "f", [1])))
        self.assertEqual("badarg", outcome.value)
        self.assertEqual([(A("m"), A("f"), 1)], registry.exported())
        registry.unregister("m", "f", 1)
        self.assertEqual([], registry.exported())


class Network:
    """Nodes on one memory reactor, connected through iosim."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.nodes: dict[str, Node] = {}
        self.pumps: list[iosim.IOPump] = []

    def node(self, name: str, cookie: str = "C") -> Node:
        node = self.nodes[name] = Node(
            name,
            cookie,
            self.reactor,
            creation=len(self.nodes) + 5,
            lookup=self.lookup,
            dial=self.dial,
        )
        return node

    def lookup(self, alive: str, host: str) -> Deferred[int | None]:
        return succeed(4000 if f"{alive}@{host}" in self.nodes else None)

    def dial(self, host: str, port: int, protocol: DistributionProtocol) -> Deferred[Any]:
        assert protocol.peerName is not None
        target = self.nodes[protocol.peerName]
        server = target.acceptorFactory().buildProtocol(None)
        address = IPv4Address("TCP", "127.0.0.1", port)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True, peerAddress=address),
            protocol,
            iosim.FakeTransport(protocol, isServer=False, peerAddress=address),
            greet=False,
            clock=self.reactor,
        )
        self.pumps.append(pump)
        return succeed(protocol)

    def flush(self) -> None:
        for _ in range(50):
            if not any([pump.pump() for pump in self.pumps]):
                return


class TwoNodesTests(SynchronousTestCase):
    """Two nodes: both roles, calls, sends, timeouts, simultaneous connect."""

    def setUp(self) -> None:
        self.net = Network()
        self.a = self.net.node("a@vm")
        self.b = self.net.node("b@vm")

    def test_connectPingCall(self) -> None:
        """a connects to b; ping is pong; b's functions are callable; sends arrive."""
        observer = Observer()
        self.b.subscribe(observer)
        connected = self.a.connect("b@vm")
        self.net.flush()
        self.successResultOf(connected)
        self.assertEqual(([A("b@vm")], [A("a@vm")]), (self.a.nodes(), self.b.nodes()))
        self.assertEqual([("up", "a@vm")], observer.events)
        pinged = self.a.ping("b@vm")
        called = self.a.call("b@vm", "erlang", "nodes", [])
        failed = self.a.call("b@vm", "nope", "nope", [1])
        self.net.flush()
        self.assertTrue(self.successResultOf(pinged))
        self.assertEqual([A("a@vm")], self.successResultOf(called))
        reason = self.failureResultOf(failed, BadRpc).value.reason
        self.assertEqual((A("EXIT"), (A("undef"), [(A("nope"), A("nope"), [1], [])])), reason)
        inbox = self.b.spawn(name="inbox")
        self.a.send((A("inbox"), A("b@vm")), "hello")
        self.net.flush()
        self.assertEqual([[104, 101, 108, 108, 111]], inbox.pending())
        # And back, over the same connection, to a pid.
        mailbox = self.a.spawn()
        self.b.send(mailbox.pid, 42)
        self.net.flush()
        self.assertEqual([42], mailbox.pending())
        self.assertEqual(1, len(self.net.pumps))

    def test_autoConnectOnSend(self) -> None:
        """Sending to a node that is not connected connects first."""
        inbox = self.b.spawn(name="inbox")
        self.a.send((A("inbox"), A("b@vm")), 1)
        self.a.send((A("inbox"), A("b@vm")), 2)
        self.net.flush()
        self.assertEqual([1, 2], inbox.pending())

    def test_callTimeout(self) -> None:
        """A call without a reply fails with C{{badrpc, timeout}} after its timeout."""
        d: Deferred[None] = Deferred()
        self.b.exports.register("slow", "f", lambda: d)
        called = self.a.call("b@vm", "slow", "f", [], timeout=3)
        self.net.flush()
        self.assertNoResult(called)
        self.net.reactor.advance(3)
        self.assertEqual("timeout", self.failureResultOf(called, BadRpc).value.reason)

    def test_unknownNode(self) -> None:
        """An unknown node: connect fails, ping is pang, call is nodedown."""
        with capturedLogs():
            connected = self.a.connect("nobody@vm")
            pinged = self.a.ping("nobody@vm")
            called = self.a.call("nobody@vm", "erlang", "node", [])
        self.failureResultOf(connected, ConnectFailed)
        self.assertFalse(self.successResultOf(pinged))
        self.assertEqual("nodedown", self.failureResultOf(called, BadRpc).value.reason)

    def test_lookupFails(self) -> None:
        """An epmd that cannot be reached fails the connect."""
        self.a._lookup = lambda alive, host: fail(ConnectionRefusedError())
        with capturedLogs():
            connected = self.a.connect("b@vm")
        self.failureResultOf(connected, ConnectFailed)

    def test_wrongCookie(self) -> None:
        """A node with another cookie cannot connect: pang, one log line on b."""
        c = self.net.node("c@vm", cookie="WRONG")
        with capturedLogs() as events:
            pinged = c.ping("b@vm")
            self.net.flush()
        self.assertFalse(self.successResultOf(pinged))
        warnings = [e for e in events if "invalid challenge reply" in str(e.get("reason"))]
        self.assertEqual(1, len(warnings))
        self.assertEqual([], self.b.nodes())

    def test_simultaneousConnect(self) -> None:
        """
        Both nodes dial at once: the greater name's connection wins, and
        both see one connection.
        """
        fromA = self.a.connect("b@vm")
        fromB = self.b.connect("a@vm")
        self.net.flush()
        self.successResultOf(fromA)
        self.successResultOf(fromB)
        self.assertEqual(([A("b@vm")], [A("a@vm")]), (self.a.nodes(), self.b.nodes()))
        self.assertEqual("incoming", self.a._up[A("b@vm")].role)
        self.assertEqual("outgoing", self.b._up[A("a@vm")].role)
        pinged = self.a.ping("b@vm")
        self.net.flush()
        self.assertTrue(self.successResultOf(pinged))

    def test_disconnect(self) -> None:
        """Disconnecting ends the connection on both sides; pending calls fail."""
        observer = Observer()
        self.a.subscribe(observer)
        d: Deferred[None] = Deferred()
        self.b.exports.register("slow", "f", lambda: d)
        self.a.connect("b@vm")
        self.net.flush()
        called = self.a.call("b@vm", "slow", "f", [])
        self.net.flush()
        with capturedLogs():
            self.a.disconnect("b@vm")
            self.net.flush()
        self.assertEqual("nodedown", self.failureResultOf(called, BadRpc).value.reason)
        self.assertEqual(([], []), (self.a.nodes(), self.b.nodes()))
        self.assertEqual([("up", "b@vm"), ("down", "b@vm")], observer.events)

    def test_genCallNoProc(self) -> None:
        """A call to a name that does not exist fails at once with noproc."""
        called = self.a.genCall((A("nobody"), A("b@vm")), 1)
        self.net.flush()
        self.assertEqual("noproc", self.failureResultOf(called, CallFailed).value.reason)

    def test_creation(self) -> None:
        """
        The creation from epmd is adopted while unused; once pids may have
        left the node it is kept.
        """
        node = Node("x@vm", "C", self.net.reactor, creation=5)
        node.setCreation(123)
        self.assertEqual(123, node.makePid().creation)
        self.assertEqual(123, node.whereis("rex").pid.creation)  # type: ignore[union-attr]
        node._lookup = lambda alive, host: Deferred()
        node.connect("b@vm")
        with capturedLogs():
            node.setCreation(456)
        self.assertEqual(123, node.creation)
