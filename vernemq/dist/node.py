# -*- test-case-name: tests.test_dist_node -*-
"""
An Erlang node in Python: what other nodes see at the end of a connection.

L{Node} owns this node's identity (name, cookie, creation), its processes
and its connections to other nodes:

    - B{Mailboxes} (L{Mailbox}) stand for processes: each has a L{Pid}, may
      be registered under a name (for C{{Name, Node} ! Msg}), and either
      calls a handler with every message or queues them for
      L{Mailbox.receive}.
    - B{Monitors and links} work in both directions: a remote process may
      monitor (C{MONITOR_P}) or link to a mailbox, which gets C{DOWN}
      or C{EXIT} when the mailbox closes; a mailbox may monitor or link to
      a remote process and receives C{('DOWN', Ref, process, Object,
      Reason)} or C{('EXIT', Pid, Reason)} messages, with reason
      C{noconnection} when the node goes down.  L{Mailbox.monitorNode}
      delivers C{('nodedown', Node)}.
    - B{Built-in processes}: C{net_kernel} answers C{is_auth} (so
      C{net_adm:ping} gives C{pong}); C{rex} serves C{rpc} calls in the
      gen_server form (C{{'$gen_call', From, {call, M, F, A, GL}}}) and the
      C{erl_call} form (C{{From, {call, M, F, A, GL}}}, answered with
      C{{rex, Reply}}); C{vmq_echo} sends C{Msg} back to C{Pid} for every
      C{{Pid, Msg}} it gets (a diagnostic).
    - B{SPAWN_REQUEST} (C{rpc:call} and C{erpc:call} from OTP 23+) runs
      C{erpc:execute_call/4} and C{erpc:execute_cast/3} against the
      registry of exported functions (L{vernemq.dist.exports}), and any
      exported function spawned directly.
    - B{Exported functions} from the start: C{erlang:node/0},
      C{erlang:nodes/0}, C{erlang:is_alive/0}, and the C{vmq} module, the
      entry point other parts of vernemq register their functions in
      (C{vmq:version/0} and C{vmq:functions/0} now).
    - B{Connections}: incoming ones arrive through L{Node.acceptorFactory};
      L{Node.connect} dials a node by name (an epmd lookup on its host,
      then the handshake).  Sending to a node that is not connected
      connects first, as Erlang does.  Simultaneous connects are resolved
      as Erlang does: the greater node name keeps its own connection.
      Observers (L{INodeObserver}) hear about every node going up or down.
    - B{The caller side}: L{Node.send}, L{Node.ping}, L{Node.call} (an
      C{rpc:call} through the remote C{rex}, with a timeout) and
      L{Node.genCall}.

Nothing here binds a port or talks to epmd's registration side; see
L{vernemq.dist.service}.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.logger import Logger
from zope.interface import Interface, implementer

import vernemq
from vernemq.dist.connection import (
    AcceptorFactory,
    DistributionProtocol,
    DistributionProtocolError,
    IConnectionOwner,
    InitiatorProtocol,
)
from vernemq.dist.epmd.client import EPMD_PORT, EpmdClient
from vernemq.dist.etf import Atom, ImproperList, Pid, Reference
from vernemq.dist.exports import (
    ERROR,
    EXIT,
    RETURN,
    THROW,
    FunctionRegistry,
    Outcome,
)
from vernemq.dist.framing import NO_MESSAGE
from vernemq.dist.handshake import (
    DFLAG_PUBLISHED,
    DFLAG_UNLINK_ID,
    OUR_FLAGS,
    splitNodeName,
)

# -- control message operations (erl_dist_protocol, "Protocol between connected nodes")

LINK = 1
SEND = 2
EXIT_OP = 3
UNLINK = 4
NODE_LINK = 5
REG_SEND = 6
GROUP_LEADER = 7
EXIT2 = 8
SEND_TT = 12
EXIT_TT = 13
REG_SEND_TT = 16
EXIT2_TT = 18
MONITOR_P = 19
DEMONITOR_P = 20
MONITOR_P_EXIT = 21
SEND_SENDER = 22
SEND_SENDER_TT = 23
PAYLOAD_EXIT = 24
PAYLOAD_EXIT_TT = 25
PAYLOAD_EXIT2 = 26
PAYLOAD_EXIT2_TT = 27
PAYLOAD_MONITOR_P_EXIT = 28
SPAWN_REQUEST = 29
SPAWN_REQUEST_TT = 30
SPAWN_REPLY = 31
SPAWN_REPLY_TT = 32
ALIAS_SEND = 33
ALIAS_SEND_TT = 34
UNLINK_ID = 35
UNLINK_ID_ACK = 36

EMPTY = Atom("")
NORMAL = Atom("normal")
NOPROC = Atom("noproc")
NOCONNECTION = Atom("noconnection")
DOWN = Atom("DOWN")
EXIT_ATOM = Atom("EXIT")
PROCESS = Atom("process")
NODEDOWN = Atom("nodedown")
BADRPC = Atom("badrpc")
GEN_CALL = Atom("$gen_call")
GEN_CAST = Atom("$gen_cast")
CALL = Atom("call")
CAST = Atom("cast")
YES = Atom("yes")
USER = Atom("user")
REX = Atom("rex")
NET_KERNEL = Atom("net_kernel")
IS_AUTH = Atom("is_auth")
TIMEOUT = Atom("timeout")
UNDEF = Atom("undef")
ERPC = Atom("erpc")
EXECUTE_CALL = Atom("execute_call")
EXECUTE_CAST = Atom("execute_cast")
LINK_ATOM = Atom("link")
MONITOR_ATOM = Atom("monitor")
NOCATCH = Atom("nocatch")
FEATURES_REQUEST = Atom("features_request")
FEATURES_REPLY = Atom("features_reply")

#: The name of the Erlang module other parts of vernemq export functions in.
VMQ_MODULE = "vmq"

#: Messages kept for a node while connecting to it, at most.
MAX_QUEUED = 10000

#: A process address: a pid, a local registered name, or C{(Name, Node)}.
Destination = Pid | Atom | tuple[Atom, Atom]


class BadRpc(Exception):
    """
    A remote call failed as C{rpc:call} reports it: C{{badrpc, Reason}}.

    @ivar reason: the term (C{nodedown}, C{timeout}, C{{'EXIT', ...}}).
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectFailed(Exception):
    """A node could not be reached (lookup, TCP or handshake failed)."""


class CallFailed(Exception):
    """
    A L{Node.genCall} ended without a reply.

    @ivar reason: C{noconnection}, C{noproc}, C{timeout} or the exit reason.
    """

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class INodeObserver(Interface):
    """Hears about distribution connections going up and down."""

    def nodeUp(node: Atom) -> None:  # noqa: N805
        """A connection to C{node} completed its handshake."""

    def nodeDown(node: Atom, reason: str) -> None:  # noqa: N805
        """The connection to C{node} ended (or connecting to it failed)."""


class Mailbox:
    """
    A local process: a pid, maybe a name, and where its messages go.

    @ivar pid: its pid.
    @ivar name: its registered name, if any.
    @ivar closed: whether it has exited.
    """

    log = Logger()

    def __init__(self, node: Node, pid: Pid, handler: Callable[[Any], object] | None) -> None:
        self.node = node
        self.pid = pid
        self.name: Atom | None = None
        self.closed = False
        self._handler = handler
        self._queue: deque[Any] = deque()
        self._waiting: deque[Deferred[Any]] = deque()
        #: Pids linked to this mailbox.
        self.links: set[Pid] = set()
        #: Monitors on this mailbox: reference -> (watcher pid, monitored form).
        self.watchers: dict[Reference, tuple[Pid, Any]] = {}
        #: Monitors held by this mailbox: reference -> (DOWN object, node, target).
        self.monitors: dict[Reference, tuple[Any, Atom, Any]] = {}
        #: Nodes this mailbox monitors (C{monitor_node}).
        self.nodeMonitors: set[Atom] = set()

    def __repr__(self) -> str:
        return f"<Mailbox {self.pid} {self.name or ''}>"

    # -- messages ---------------------------------------------------------------------

    def deliver(self, message: Any) -> None:
        """Put C{message} in this mailbox (or give it to the handler)."""
        if self.closed:
            return
        if self._handler is not None:
            try:
                self._handler(message)
            except Exception:
                self.log.failure("mailbox {pid} failed on a message", pid=self.pid)
            return
        if self._waiting:
            self._waiting.popleft().callback(message)
        else:
            self._queue.append(message)

    def receive(self) -> Deferred[Any]:
        """The next message; cancelling the L{Deferred} stops waiting."""
        if self._queue:
            d: Deferred[Any] = Deferred()
            d.callback(self._queue.popleft())
            return d

        def cancel(d: Deferred[Any]) -> None:
            if d in self._waiting:
                self._waiting.remove(d)

        d = Deferred(cancel)
        self._waiting.append(d)
        return d

    def pending(self) -> list[Any]:
        """The messages queued and not yet received."""
        return list(self._queue)

    def send(self, destination: Destination, message: Any) -> None:
        """Send C{message} from this mailbox."""
        self.node.send(destination, message, sender=self.pid)

    # -- monitors and links -------------------------------------------------------------

    def monitor(self, target: Destination) -> Reference:
        """Monitor a process; a C{DOWN} message follows when it ends."""
        return self.node._monitor(self, target)

    def demonitor(self, ref: Reference) -> None:
        """Stop monitoring."""
        self.node._demonitor(self, ref)

    def link(self, pid: Pid) -> None:
        """Link to C{pid}; C{('EXIT', Pid, Reason)} arrives when it ends."""
        self.node._link(self, pid)

    def unlink(self, pid: Pid) -> None:
        """Remove the link to C{pid}."""
        self.node._unlink(self, pid)

    def monitorNode(self, node: str) -> None:
        """C{monitor_node(Node, true)}: C{('nodedown', Node)} when it goes down."""
        self.node._monitorNode(self, Atom(node))

    def close(self, reason: Any = NORMAL) -> None:
        """Exit with C{reason}: tell every link and monitor."""
        self.node._exit(self, reason)


class _Attempt:
    """An outgoing connection being set up."""

    def __init__(self, node: Atom) -> None:
        self.node = node
        self.waiters: list[Deferred[None]] = []
        self.protocol: InitiatorProtocol | None = None
        self.queue: list[tuple[tuple[Any, ...], Any]] = []
        self.timer: Any = None
        self.done = False


@implementer(IConnectionOwner)
class Node:
    """
    This node on the Erlang distribution.

    @ivar name: this node's name, C{alive@host}.
    @ivar cookie: the shared secret.
    @ivar creation: the creation in pids and references (from epmd).
    @ivar tickTime: C{net_ticktime} in seconds.
    @ivar setupTime: seconds allowed to set a connection up.
    @ivar exports: the functions other nodes may call.
    """

    log = Logger()

    def __init__(
        self,
        name: str,
        cookie: str,
        reactor: Any,
        *,
        creation: int | None = None,
        tickTime: float = 60.0,
        setupTime: float = 7.0,
        epmdPort: int = EPMD_PORT,
        lookup: Callable[[str, str], Deferred[int | None]] | None = None,
        dial: Callable[[str, int, DistributionProtocol], Deferred[Any]] | None = None,
        hidden: bool = False,
    ) -> None:
        splitNodeName(name)
        self.name = Atom(name)
        self.cookie = cookie
        self.creation = creation if creation is not None else _randomCreation()
        self.tickTime = float(tickTime)
        self.setupTime = float(setupTime)
        self.epmdPort = epmdPort
        self.exports = FunctionRegistry()
        #: A hidden node (C{erl -hidden}, as C{vmq-admin} connects) leaves
        #: C{DFLAG_PUBLISHED} out of its handshakes: peers do not list it in
        #: C{nodes()} nor pass it on to other nodes.
        self.hidden = hidden
        self._reactor = reactor
        self._lookup = lookup or self._epmdLookup
        self._dial = dial or self._tcpDial
        self._pidCounter = itertools.count(1)
        self._refCounter = itertools.count(1)
        self._mailboxes: dict[Pid, Mailbox] = {}
        self._names: dict[Atom, Mailbox] = {}
        self._up: dict[Atom, DistributionProtocol] = {}
        self._attempts: dict[Atom, _Attempt] = {}
        self._accepting: dict[Atom, DistributionProtocol] = {}
        self._nodeWatchers: dict[Atom, set[Mailbox]] = {}
        self._observers: list[INodeObserver] = []
        self._creationInUse = False
        self._stopped = False
        self._system = self.spawn()
        self.spawn(self._netKernel, name="net_kernel")
        self.spawn(self._rex, name="rex")
        self.spawn(self._echo, name="vmq_echo")
        self._registerBuiltins()

    def __repr__(self) -> str:
        return f"<Node {self.name}>"

    # -- identity ---------------------------------------------------------------------

    def setCreation(self, creation: int) -> None:
        """
        Adopt the creation epmd handed out, unless pids of this node may have
        left it already (a connection was made or attempted): peers drop
        messages to pids of another creation, so it never changes under
        them.
        """
        if creation == self.creation or creation == 0:
            return
        if self._creationInUse:
            self.log.info(
                "keeping creation {creation} (epmd now says {new}): it is in use",
                creation=self.creation,
                new=creation,
            )
            return
        self.creation = creation
        for pid, mailbox in list(self._mailboxes.items()):
            del self._mailboxes[pid]
            mailbox.pid = Pid(self.name, pid.id, pid.serial, creation)
            self._mailboxes[mailbox.pid] = mailbox

    def makePid(self) -> Pid:
        """A new pid of this node."""
        n = next(self._pidCounter)
        return Pid(self.name, n & 0x7FFF, (n >> 15) & 0x1FFF, self.creation)

    def makeRef(self) -> Reference:
        """A new reference of this node."""
        n = next(self._refCounter)
        return Reference(
            self.name,
            self.creation,
            (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, secrets.randbits(32)),
        )

    # -- processes --------------------------------------------------------------------

    def spawn(
        self, handler: Callable[[Any], object] | None = None, name: str | None = None
    ) -> Mailbox:
        """
        A new mailbox; with C{handler}, every message is passed to it,
        otherwise messages queue for L{Mailbox.receive}.  With C{name} it is
        registered under that name.
        """
        mailbox = Mailbox(self, self.makePid(), handler)
        self._mailboxes[mailbox.pid] = mailbox
        if name is not None:
            self.register(name, mailbox)
        return mailbox

    def register(self, name: str, mailbox: Mailbox) -> None:
        """Register C{mailbox} under C{name}; raise L{ValueError} if taken."""
        atom = Atom(name)
        if atom in self._names or mailbox.name is not None or mailbox.closed:
            raise ValueError(f"cannot register {name!r}")
        self._names[atom] = mailbox
        mailbox.name = atom

    def unregister(self, name: str) -> None:
        """Remove a registered name."""
        mailbox = self._names.pop(Atom(name), None)
        if mailbox is not None:
            mailbox.name = None

    def whereis(self, name: str) -> Mailbox | None:
        """The mailbox registered as C{name}."""
        return self._names.get(Atom(name))

    def _resolve(self, target: Any) -> Mailbox | None:
        if isinstance(target, Pid):
            return self._mailboxes.get(target)
        if isinstance(target, Atom):
            return self._names.get(target)
        return None

    # -- sending ----------------------------------------------------------------------

    def send(self, destination: Destination, message: Any, sender: Pid | None = None) -> None:
        """
        Send C{message} to a pid, a local name or C{(Name, Node)}.  Like
        Erlang, this never fails: a message for an unknown process is
        dropped, and a message for a node that is not connected connects
        first (and is dropped if that fails).
        """
        frm = sender if sender is not None else self._system.pid
        if isinstance(destination, Pid):
            if destination.node == self.name:
                self._deliver(destination, message)
            else:
                self._route(destination.node, (SEND, EMPTY, destination), message)
        elif isinstance(destination, tuple) and len(destination) == 2:
            name, node = Atom(destination[0]), Atom(destination[1])
            if node == self.name:
                self._deliver(name, message)
            else:
                self._route(node, (REG_SEND, frm, EMPTY, name), message)
        elif isinstance(destination, str):
            self._deliver(Atom(destination), message)
        else:
            raise TypeError(f"not a process address: {destination!r}")

    def _deliver(self, target: Any, message: Any) -> None:
        mailbox = self._resolve(target)
        if mailbox is not None:
            mailbox.deliver(message)

    def _route(self, node: Atom, control: tuple[Any, ...], message: Any = NO_MESSAGE) -> None:
        connection = self._up.get(node)
        if connection is not None:
            connection.send(control, message)
            return

        def enqueue(attempt: _Attempt) -> None:
            if len(attempt.queue) < MAX_QUEUED:
                attempt.queue.append((control, message))

        self._attempt(node, enqueue)

    # -- connections: the caller side ---------------------------------------------------

    def nodes(self) -> list[Atom]:
        """The nodes connected now (C{erlang:nodes/0})."""
        return sorted(self._up)

    def isConnected(self, node: str) -> bool:
        """Whether a connection to C{node} is up."""
        return Atom(node) in self._up

    def connection(self, node: str) -> DistributionProtocol | None:
        """The established connection to C{node}, if any."""
        return self._up.get(Atom(node))

    def connect(self, node: str) -> Deferred[None]:
        """
        Connect to C{node} (C{alive@host}) unless connected; fires once the
        connection is up, or fails with L{ConnectFailed}.
        """
        atom = Atom(node)
        d: Deferred[None] = Deferred()
        if atom in self._up:
            d.callback(None)
            return d
        if self._attempt(atom, lambda attempt: attempt.waiters.append(d)) is None:
            d.errback(ConnectFailed(f"cannot connect to {node}"))
        return d

    def disconnect(self, node: str) -> None:
        """Close the connection to C{node} (C{erlang:disconnect_node/1})."""
        connection = self._up.get(Atom(node))
        if connection is not None:
            connection.disconnect("disconnected by this node")

    def _attempt(
        self, node: Atom, prepare: Callable[[_Attempt], None] | None = None
    ) -> _Attempt | None:
        """
        The attempt to connect to C{node}, started now if need be (after
        C{prepare} was given it), or L{None} if C{node} cannot be dialled.
        """
        attempt = self._attempts.get(node)
        if attempt is not None:
            if prepare is not None:
                prepare(attempt)
            return attempt
        if self._stopped or node == self.name:
            return None
        try:
            alive, host = splitNodeName(node)
        except ValueError:
            return None
        attempt = self._attempts[node] = _Attempt(node)
        self._creationInUse = True
        if prepare is not None:
            prepare(attempt)
        attempt.timer = self._reactor.callLater(
            self.setupTime * 2, self._attemptFailed, attempt, "connection setup timed out"
        )
        Deferred.fromCoroutine(self._dialAttempt(attempt, alive, host)).addErrback(
            lambda f: self._attemptFailed(attempt, f.getErrorMessage())
        )
        return attempt

    async def _dialAttempt(self, attempt: _Attempt, alive: str, host: str) -> None:
        port = await self._lookup(alive, host)
        if attempt.done:
            return
        if port is None:
            self._attemptFailed(attempt, f"epmd on {host} does not know {alive}")
            return
        if attempt.node in self._accepting:
            # Its own connection to us is being set up; it will do.
            return
        flags = OUR_FLAGS & ~DFLAG_PUBLISHED if self.hidden else OUR_FLAGS
        protocol = InitiatorProtocol(self, self._reactor, attempt.node, flags=flags)
        attempt.protocol = protocol
        await self._dial(host, port, protocol)

    def _epmdLookup(self, alive: str, host: str) -> Deferred[int | None]:
        client = EpmdClient(self._reactor, host, self.epmdPort, timeout=self.setupTime)
        d = client.portPlease(alive)
        return d.addCallback(lambda entry: None if entry is None else entry.port)

    def _tcpDial(self, host: str, port: int, protocol: DistributionProtocol) -> Deferred[Any]:
        endpoint = HostnameEndpoint(self._reactor, host, port, timeout=self.setupTime)
        connected: Deferred[Any] = connectProtocol(endpoint, protocol)
        return connected

    def _attemptFailed(self, attempt: _Attempt, reason: str) -> None:
        if attempt.done:
            return
        attempt.done = True
        if self._attempts.get(attempt.node) is attempt:
            del self._attempts[attempt.node]
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        protocol, attempt.protocol = attempt.protocol, None
        if protocol is not None:
            protocol.disconnect(reason)
        self.log.info("cannot connect to node {peer}: {reason}", peer=attempt.node, reason=reason)
        for d in attempt.waiters:
            d.errback(ConnectFailed(f"cannot connect to {attempt.node}: {reason}"))
        self._nodeDown(attempt.node, reason, wasUp=False)

    def _attemptSucceeded(self, node: Atom, connection: DistributionProtocol) -> None:
        attempt = self._attempts.pop(node, None)
        if attempt is None:
            return
        attempt.done = True
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        if attempt.protocol is not None and attempt.protocol is not connection:
            attempt.protocol.disconnect("superseded")
        for control, message in attempt.queue:
            connection.send(control, message)
        for d in attempt.waiters:
            d.callback(None)

    # -- observers ----------------------------------------------------------------------

    def subscribe(self, observer: INodeObserver) -> Callable[[], None]:
        """Tell C{observer} about nodes going up and down; returns an unsubscriber."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    # -- IConnectionOwner -------------------------------------------------------------

    def acceptorFactory(self, maxPacket: int | None = None) -> AcceptorFactory:
        """The factory for the distribution listener."""
        if maxPacket is None:
            return AcceptorFactory(self, self._reactor)
        return AcceptorFactory(self, self._reactor, maxPacket)

    def arbitrate(self, protocol: DistributionProtocol, peerName: str) -> str:
        """Resolve duplicate and simultaneous connections, as Erlang does."""
        peer = Atom(peerName)
        if self._stopped or peer == self.name:
            return "not_allowed"
        if peer in self._up:
            return "alive"
        if peer in self._accepting:
            return "nok"
        status = "ok"
        attempt = self._attempts.get(peer)
        if attempt is not None and attempt.protocol is not None:
            if self.name > peer:
                return "nok"
            # The peer's connection wins; ours is dropped quietly and the
            # attempt is satisfied when this connection is up.
            ours, attempt.protocol = attempt.protocol, None
            ours.disconnect("simultaneous connect: the peer's connection wins")
            status = "ok_simultaneous"
        self._accepting[peer] = protocol
        return status

    def connectionUp(self, protocol: DistributionProtocol) -> None:
        """A handshake completed: the node is up."""
        assert protocol.result is not None
        peer = Atom(protocol.result.peerName)
        if self._accepting.get(peer) is protocol:
            del self._accepting[peer]
        if self._stopped:
            protocol.disconnect("node stopping")
            return
        old = self._up.pop(peer, None)
        if old is not None:
            old.disconnect("replaced by a new connection")
            self._nodeDown(peer, "replaced by a new connection", wasUp=True)
        self._up[peer] = protocol
        self._creationInUse = True
        self.log.info(
            "node {peer} up ({role} connection, {address})",
            peer=peer,
            role=protocol.role,
            address=protocol.peerAddress(),
        )
        self._attemptSucceeded(peer, protocol)
        for observer in list(self._observers):
            observer.nodeUp(peer)

    def connectionDown(self, protocol: DistributionProtocol, reason: str) -> None:
        """A connection ended, established or not."""
        name = protocol.peerName
        if name is None:
            return
        peer = Atom(name)
        if self._accepting.get(peer) is protocol:
            del self._accepting[peer]
        if self._up.get(peer) is protocol:
            del self._up[peer]
            self.log.info("node {peer} down: {reason}", peer=peer, reason=reason)
            self._nodeDown(peer, reason, wasUp=True)
            return
        attempt = self._attempts.get(peer)
        if attempt is not None and attempt.protocol is protocol:
            attempt.protocol = None
            if protocol.simultaneous:
                return
            self._attemptFailed(attempt, reason)

    def dispatch(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        """Handle one control message from an established connection."""
        handler = self._operations.get(control[0])
        if handler is None:
            raise DistributionProtocolError(f"unknown control message {control[0]}")
        handler(self, protocol, control, message)

    def stop(self) -> None:
        """Close every connection and give up every attempt."""
        self._stopped = True
        for attempt in list(self._attempts.values()):
            self._attemptFailed(attempt, "node stopping")
        for connection in list(self._up.values()) + list(self._accepting.values()):
            connection.disconnect("node stopping")

    # -- node down ----------------------------------------------------------------------

    def _nodeDown(self, peer: Atom, reason: str, wasUp: bool) -> None:
        """Everything that watches C{peer} learns that it is gone."""
        for mailbox in list(self._mailboxes.values()):
            for pid in [p for p in mailbox.links if p.node == peer]:
                mailbox.links.discard(pid)
                mailbox.deliver((EXIT_ATOM, pid, NOCONNECTION))
            for ref, (watcher, _) in list(mailbox.watchers.items()):
                if watcher.node == peer:
                    del mailbox.watchers[ref]
            for ref, (obj, node, _) in list(mailbox.monitors.items()):
                if node == peer:
                    del mailbox.monitors[ref]
                    mailbox.deliver((DOWN, ref, PROCESS, obj, NOCONNECTION))
        for mailbox in self._nodeWatchers.pop(peer, set()):
            mailbox.nodeMonitors.discard(peer)
            mailbox.deliver((NODEDOWN, peer))
        if wasUp:
            for observer in list(self._observers):
                observer.nodeDown(peer, reason)

    # -- monitors, links, exits of local mailboxes --------------------------------------

    def _monitor(self, mailbox: Mailbox, target: Destination) -> Reference:
        ref = self.makeRef()
        obj: Any
        proc: Any
        if isinstance(target, Pid):
            node, proc, obj = target.node, target, target
        elif isinstance(target, tuple):
            node, proc = Atom(target[1]), Atom(target[0])
            obj = (proc, node)
        else:
            node, proc = self.name, Atom(target)
            obj = (proc, node)
        if node == self.name:
            watched = self._resolve(proc)
            if watched is None or watched.closed:
                mailbox.deliver((DOWN, ref, PROCESS, obj, NOPROC))
            else:
                watched.watchers[ref] = (mailbox.pid, proc)
                mailbox.monitors[ref] = (obj, node, proc)
            return ref
        mailbox.monitors[ref] = (obj, node, proc)
        self._route(node, (MONITOR_P, mailbox.pid, proc, ref))
        if node not in self._up and node not in self._attempts:
            # No way to reach it: DOWN at once, as Erlang does.
            if mailbox.monitors.pop(ref, None) is not None:
                mailbox.deliver((DOWN, ref, PROCESS, obj, NOCONNECTION))
        return ref

    def _demonitor(self, mailbox: Mailbox, ref: Reference) -> None:
        entry = mailbox.monitors.pop(ref, None)
        if entry is None:
            return
        _, node, proc = entry
        if node == self.name:
            watched = self._resolve(proc)
            if watched is not None:
                watched.watchers.pop(ref, None)
        elif node in self._up:
            self._up[node].send((DEMONITOR_P, mailbox.pid, proc, ref))

    def _link(self, mailbox: Mailbox, pid: Pid) -> None:
        if pid in mailbox.links:
            return
        if pid.node == self.name:
            other = self._mailboxes.get(pid)
            if other is None or other.closed:
                mailbox.deliver((EXIT_ATOM, pid, NOPROC))
                return
            other.links.add(mailbox.pid)
            mailbox.links.add(pid)
            return
        mailbox.links.add(pid)
        self._route(pid.node, (LINK, mailbox.pid, pid))
        if pid in mailbox.links and pid.node not in self._up and pid.node not in self._attempts:
            mailbox.links.discard(pid)
            mailbox.deliver((EXIT_ATOM, pid, NOCONNECTION))

    def _unlink(self, mailbox: Mailbox, pid: Pid) -> None:
        if pid not in mailbox.links:
            return
        mailbox.links.discard(pid)
        if pid.node == self.name:
            other = self._mailboxes.get(pid)
            if other is not None:
                other.links.discard(mailbox.pid)
            return
        connection = self._up.get(pid.node)
        if connection is None or connection.result is None:
            return
        if connection.result.flags & DFLAG_UNLINK_ID:
            connection.send((UNLINK_ID, next(self._refCounter), mailbox.pid, pid))
        else:
            connection.send((UNLINK, mailbox.pid, pid))

    def _monitorNode(self, mailbox: Mailbox, node: Atom) -> None:
        if node == self.name:
            return
        if node not in self._up and self._attempt(node) is None:
            mailbox.deliver((NODEDOWN, node))
            return
        self._nodeWatchers.setdefault(node, set()).add(mailbox)
        mailbox.nodeMonitors.add(node)

    def _exit(self, mailbox: Mailbox, reason: Any) -> None:
        if mailbox.closed:
            return
        mailbox.closed = True
        pid = mailbox.pid
        if mailbox.name is not None:
            self._names.pop(mailbox.name, None)
        self._mailboxes.pop(pid, None)
        for ref in list(mailbox.monitors):
            self._demonitor(mailbox, ref)
        for node in mailbox.nodeMonitors:
            self._nodeWatchers.get(node, set()).discard(mailbox)
        links, mailbox.links = mailbox.links, set()
        for other in links:
            if other.node == self.name:
                linked = self._mailboxes.get(other)
                if linked is not None:
                    linked.links.discard(pid)
                    linked.deliver((EXIT_ATOM, pid, reason))
            elif other.node in self._up:
                self._up[other.node].send((EXIT_OP, pid, other, reason))
        watchers, mailbox.watchers = mailbox.watchers, {}
        for ref, (watcher, proc) in watchers.items():
            if watcher.node == self.name:
                local = self._mailboxes.get(watcher)
                if local is not None and local.monitors.pop(ref, None) is not None:
                    obj = pid if isinstance(proc, Pid) else (proc, self.name)
                    local.deliver((DOWN, ref, PROCESS, obj, reason))
            elif watcher.node in self._up:
                self._up[watcher.node].send((MONITOR_P_EXIT, proc, watcher, ref, reason))

    # -- control messages ---------------------------------------------------------------

    def _opSend(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (3, 4), message, True)
        to = control[2]
        if not isinstance(to, Pid):
            raise DistributionProtocolError(f"SEND to {to!r:.60}")
        self._deliver(to, message)

    def _opRegSend(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (4, 5), message, True)
        frm, name = control[1], control[3]
        if not isinstance(frm, Pid) or not isinstance(name, Atom):
            raise DistributionProtocolError(f"REG_SEND from {frm!r:.60} to {name!r:.60}")
        self._deliver(name, message)

    def _opSendSender(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (3, 4), message, True)
        to = control[2]
        if not isinstance(to, Pid):
            raise DistributionProtocolError(f"SEND_SENDER to {to!r:.60}")
        self._deliver(to, message)

    def _opLink(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (3,), message, False)
        frm, to = _pids(control[1], control[2])
        mailbox = self._mailboxes.get(to)
        if mailbox is None or mailbox.closed:
            protocol.send((EXIT_OP, to, frm, NOPROC))
        else:
            mailbox.links.add(frm)

    def _opUnlink(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (3,), message, False)
        frm, to = _pids(control[1], control[2])
        mailbox = self._mailboxes.get(to)
        if mailbox is not None:
            mailbox.links.discard(frm)

    def _opUnlinkId(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (4,), message, False)
        ident = control[1]
        frm, to = _pids(control[2], control[3])
        mailbox = self._mailboxes.get(to)
        if mailbox is not None:
            mailbox.links.discard(frm)
        protocol.send((UNLINK_ID_ACK, ident, to, frm))

    def _opExit(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        op = control[0]
        if op in (EXIT_OP, EXIT2):
            _shape(control, (4,), message, False)
            reason = control[3]
        elif op in (EXIT_TT, EXIT2_TT):
            _shape(control, (5,), message, False)
            reason = control[4]
        else:  # PAYLOAD_EXIT*, the reason is the message
            _shape(control, (3, 4), message, True)
            reason = message
        frm, to = _pids(control[1], control[2])
        mailbox = self._mailboxes.get(to)
        if mailbox is None:
            return
        if op in (EXIT_OP, EXIT_TT, PAYLOAD_EXIT, PAYLOAD_EXIT_TT):
            if frm not in mailbox.links:
                return
            mailbox.links.discard(frm)
        mailbox.deliver((EXIT_ATOM, frm, reason))

    def _opMonitor(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (4,), message, False)
        frm, proc, ref = control[1], control[2], control[3]
        if not isinstance(frm, Pid) or not isinstance(ref, Reference):
            raise DistributionProtocolError("malformed MONITOR_P")
        mailbox = self._resolve(proc)
        if mailbox is None or mailbox.closed:
            protocol.send((MONITOR_P_EXIT, proc, frm, ref, NOPROC))
        else:
            mailbox.watchers[ref] = (frm, proc)

    def _opDemonitor(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (4,), message, False)
        mailbox = self._resolve(control[2])
        if mailbox is not None and isinstance(control[3], Reference):
            mailbox.watchers.pop(control[3], None)

    def _opMonitorExit(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        if control[0] == MONITOR_P_EXIT:
            _shape(control, (5,), message, False)
            reason = control[4]
        else:
            _shape(control, (4,), message, True)
            reason = message
        to, ref = control[2], control[3]
        mailbox = self._mailboxes.get(to) if isinstance(to, Pid) else None
        if mailbox is None or not isinstance(ref, Reference):
            return
        entry = mailbox.monitors.pop(ref, None)
        if entry is not None:
            mailbox.deliver((DOWN, ref, PROCESS, entry[0], reason))

    def _opIgnore(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        """NODE_LINK, GROUP_LEADER, SPAWN_REPLY, UNLINK_ID_ACK, ALIAS_SEND: nothing to do."""

    def _opSpawnRequest(
        self, protocol: DistributionProtocol, control: tuple[Any, ...], message: Any
    ) -> None:
        _shape(control, (6, 7), message, True)
        reqId, frm, mfa, options = control[1], control[2], control[4], control[5]
        if not isinstance(frm, Pid) or not isinstance(reqId, Reference):
            raise DistributionProtocolError("malformed SPAWN_REQUEST")
        valid = (
            isinstance(mfa, tuple)
            and len(mfa) == 3
            and isinstance(mfa[0], Atom)
            and isinstance(mfa[1], Atom)
            and isinstance(options, list)
            and isinstance(message, list)
            and mfa[2] == len(message)
        )
        if not valid:
            protocol.send((SPAWN_REPLY, reqId, frm, 0, Atom("badarg")))
            return
        link = any(_option(o, LINK_ATOM) for o in options)
        monitor = any(_option(o, MONITOR_ATOM) for o in options)
        process = self.spawn()
        flags = 0
        if link:
            flags |= 1
            process.links.add(frm)
        if monitor:
            flags |= 2
            process.watchers[reqId] = (frm, process.pid)
        protocol.send((SPAWN_REPLY, reqId, frm, flags, process.pid))
        d = Deferred.fromCoroutine(self._runSpawned(mfa[0], mfa[1], message))
        d.addCallback(process.close)

    async def _runSpawned(self, module: Atom, function: Atom, args: list[Any]) -> Any:
        """The exit reason of a spawned call."""
        if module == ERPC and function == EXECUTE_CALL:
            ref, m, f, a = args
            outcome = await self.exports.apply(m, f, a)
            if outcome.klass == ERROR:
                return (ref, ERROR, outcome.value, outcome.stack)
            return (ref, outcome.klass, outcome.value)
        if module == ERPC and function == EXECUTE_CAST:
            m, f, a = args
            await self.exports.apply(m, f, a)
            return NORMAL
        outcome = await self.exports.apply(module, function, args)
        if outcome.klass == RETURN:
            return NORMAL
        if outcome.klass == EXIT:
            return outcome.value
        if outcome.klass == THROW:
            return ((NOCATCH, outcome.value), outcome.stack)
        return (outcome.value, outcome.stack)

    _operations: dict[int, Callable[[Node, DistributionProtocol, tuple[Any, ...], Any], None]] = {
        LINK: _opLink,
        SEND: _opSend,
        EXIT_OP: _opExit,
        UNLINK: _opUnlink,
        NODE_LINK: _opIgnore,
        REG_SEND: _opRegSend,
        GROUP_LEADER: _opIgnore,
        EXIT2: _opExit,
        SEND_TT: _opSend,
        EXIT_TT: _opExit,
        REG_SEND_TT: _opRegSend,
        EXIT2_TT: _opExit,
        MONITOR_P: _opMonitor,
        DEMONITOR_P: _opDemonitor,
        MONITOR_P_EXIT: _opMonitorExit,
        SEND_SENDER: _opSendSender,
        SEND_SENDER_TT: _opSendSender,
        PAYLOAD_EXIT: _opExit,
        PAYLOAD_EXIT_TT: _opExit,
        PAYLOAD_EXIT2: _opExit,
        PAYLOAD_EXIT2_TT: _opExit,
        PAYLOAD_MONITOR_P_EXIT: _opMonitorExit,
        SPAWN_REQUEST: _opSpawnRequest,
        SPAWN_REQUEST_TT: _opSpawnRequest,
        SPAWN_REPLY: _opIgnore,
        SPAWN_REPLY_TT: _opIgnore,
        ALIAS_SEND: _opIgnore,
        ALIAS_SEND_TT: _opIgnore,
        UNLINK_ID: _opUnlinkId,
        UNLINK_ID_ACK: _opIgnore,
    }

    # -- built-in processes ---------------------------------------------------------------

    def _netKernel(self, message: Any) -> None:
        """C{net_kernel}: answers C{is_auth} with C{yes}."""
        call = _genCall(message)
        if call is None:
            return
        frm, tag, request = call
        if isinstance(request, tuple) and len(request) == 2 and request[0] == IS_AUTH:
            self.send(frm, (tag, YES))

    def _rex(self, message: Any) -> None:
        """C{rex}: C{rpc} calls in the gen_server and the C{erl_call} forms."""
        call = _genCall(message)
        if call is not None:
            frm, tag, request = call
            if _isCall(request):
                self._rexRun(request, lambda reply: self.send(frm, (tag, reply)))
            return
        if isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], Pid):
            frm, request = message
            if _isCall(request):
                self._rexRun(request, lambda reply: self.send(frm, (REX, reply)))
            elif request == FEATURES_REQUEST:
                self.send(frm, (FEATURES_REPLY, self.name, [ERPC]))
            return
        if (
            isinstance(message, tuple)
            and len(message) == 2
            and message[0] == GEN_CAST
            and isinstance(message[1], tuple)
            and len(message[1]) == 5
            and message[1][0] == CAST
        ):
            _, m, f, a, _ = message[1]
            Deferred.fromCoroutine(self.exports.apply(m, f, a))

    def _rexRun(self, request: tuple[Any, ...], reply: Callable[[Any], None]) -> None:
        _, m, f, a, _ = request
        d = Deferred.fromCoroutine(self.exports.apply(m, f, a))
        d.addCallback(lambda outcome: reply(_rexReply(outcome)))

    def _echo(self, message: Any) -> None:
        """C{vmq_echo}: C{{Pid, Msg}} sends C{Msg} back to C{Pid}."""
        if isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], Pid):
            self.send(message[0], message[1])

    def _registerBuiltins(self) -> None:
        exports = self.exports
        exports.register("erlang", "node", lambda: self.name)
        exports.register("erlang", "nodes", self.nodes)
        exports.register("erlang", "is_alive", lambda: True)
        exports.register(VMQ_MODULE, "version", lambda: vernemq.__version__.encode("ascii"))
        exports.register(VMQ_MODULE, "functions", exports.exported)

    # -- the caller side ------------------------------------------------------------------

    def genCall(
        self, destination: Destination, request: Any, timeout: float = 5.0
    ) -> Deferred[Any]:
        """
        C{gen:call(Destination, '$gen_call', Request, Timeout)}: fires with
        the reply, or fails with L{CallFailed}.
        """
        return Deferred.fromCoroutine(self._genCallAsync(destination, request, timeout))

    async def _genCallAsync(self, destination: Destination, request: Any, timeout: float) -> Any:
        mailbox = self.spawn()
        deadline = self._reactor.seconds() + timeout
        try:
            ref = mailbox.monitor(destination)
            mailbox.send(destination, (GEN_CALL, (mailbox.pid, ref), request))
            while True:
                remaining = deadline - self._reactor.seconds()
                if remaining <= 0:
                    raise CallFailed(TIMEOUT)
                try:
                    reply = await mailbox.receive().addTimeout(remaining, self._reactor)
                except (TimeoutError, CancelledError):
                    raise CallFailed(TIMEOUT) from None
                if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == ref:
                    return reply[1]
                if isinstance(reply, tuple) and len(reply) == 5 and reply[:2] == (DOWN, ref):
                    raise CallFailed(reply[4])
        finally:
            mailbox.close()

    def ping(self, node: str, timeout: float | None = None) -> Deferred[bool]:
        """C{net_adm:ping(Node)}: C{True} for pong, C{False} for pang."""

        async def ping() -> bool:
            try:
                reply = await self.genCall(
                    (NET_KERNEL, Atom(node)),
                    (IS_AUTH, self.name),
                    self.setupTime if timeout is None else timeout,
                )
            except CallFailed:
                return False
            return bool(reply == YES)

        return Deferred.fromCoroutine(ping())

    def call(
        self, node: str, module: str, function: str, args: Iterable[Any], timeout: float = 5.0
    ) -> Deferred[Any]:
        """
        C{rpc:call(Node, Module, Function, Args, Timeout)}: fires with the
        result, or fails with L{BadRpc} (C{nodedown}, C{timeout}, or the
        C{{'EXIT', ...}} of a function that failed).
        """

        async def call() -> Any:
            request = (CALL, Atom(module), Atom(function), list(args), USER)
            try:
                reply = await self.genCall((REX, Atom(node)), request, timeout)
            except CallFailed as failed:
                if failed.reason == TIMEOUT:
                    raise BadRpc(TIMEOUT) from None
                raise BadRpc(NODEDOWN) from None
            if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == BADRPC:
                raise BadRpc(reply[1])
            return reply

        return Deferred.fromCoroutine(call())


# -- helpers -----------------------------------------------------------------------------


def _randomCreation() -> int:
    """A creation for a node epmd has not numbered (yet): never 0."""
    return 4 + secrets.randbelow(0xFFFFFFFF - 4)


def _shape(control: tuple[Any, ...], arities: tuple[int, ...], message: Any, needs: bool) -> None:
    if len(control) not in arities:
        raise DistributionProtocolError(
            f"control message {control[0]} with {len(control)} elements"
        )
    if needs != (message is not NO_MESSAGE):
        raise DistributionProtocolError(
            f"control message {control[0]} {'without' if needs else 'with'} a message"
        )


def _pids(frm: Any, to: Any) -> tuple[Pid, Pid]:
    if not isinstance(frm, Pid) or not isinstance(to, Pid):
        raise DistributionProtocolError(f"expected pids, got {frm!r:.60} and {to!r:.60}")
    return frm, to


def _option(option: Any, name: Atom) -> bool:
    return bool(option == name or (isinstance(option, tuple) and option and option[0] == name))


def _genCall(message: Any) -> tuple[Pid, Any, Any] | None:
    """C{(From, Tag, Request)} of a C{'$gen_call'} message, else L{None}."""
    if not (isinstance(message, tuple) and len(message) == 3 and message[0] == GEN_CALL):
        return None
    sender = message[1]
    if not (isinstance(sender, tuple) and len(sender) == 2 and isinstance(sender[0], Pid)):
        return None
    tag = sender[1]
    if not isinstance(tag, Reference | ImproperList):
        return None
    return sender[0], tag, message[2]


def _isCall(request: Any) -> bool:
    return isinstance(request, tuple) and len(request) == 5 and request[0] == CALL


def _rexReply(outcome: Outcome) -> Any:
    """What C{rpc} answers for an outcome (rpc.erl C{execute_call/3})."""
    if outcome.klass in (RETURN, THROW):
        return outcome.value
    if outcome.klass == EXIT:
        return (BADRPC, (EXIT_ATOM, outcome.value))
    return (BADRPC, (EXIT_ATOM, (outcome.value, outcome.stack)))


__all__ = [
    "BadRpc",
    "CallFailed",
    "ConnectFailed",
    "INodeObserver",
    "Mailbox",
    "Node",
    "VMQ_MODULE",
    "UNDEF",
]
