# -*- test-case-name: tests.test_dist_epmd_cli -*-
"""
C{vmq-epmd}: a drop-in for Erlang's C{epmd} program.

The same flags, parsed the same way (left to right; an interactive command
must be the last argument, else the usage text and exit status 1), the
same environment (C{ERL_EPMD_PORT}, C{ERL_EPMD_ADDRESS},
C{ERL_EPMD_RELAXED_COMMAND_CHECK}) and the same output and exit statuses,
so scripts written for C{epmd} work unchanged:

    vmq-epmd [-d|-debug] [-address List] [-port No] [-daemon]
             [-relaxed_command_check] [-packet_timeout Seconds]
    vmq-epmd [-d|-debug] [-port No] [-names|-started|-dump|-kill|-stop Name]

Without a command it serves epmd in the foreground (C{-daemon}: detached,
as C{epmd -daemon}).  It listens on C{0.0.0.0} and, when the host has
IPv6, on C{::1}; with C{-address} on the given addresses plus loopback.
If the port is taken it exits with status 0, as C{epmd} does (saying so
with C{-d}).  C{-delay_accept}, C{-delay_write} and C{-systemd} are
accepted and have no effect.

The commands use plain blocking sockets, as C{epmd_cli.c} does: connect
to C{::1}, then C{127.0.0.1}; send one request; print the reply.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from vernemq.dist.epmd import codec

USAGE = """\
usage: epmd [-d|-debug] [DbgExtra...] [-address List]
            [-port No] [-daemon] [-relaxed_command_check]
       epmd [-d|-debug] [-port No] [-names|-kill|-stop name]

See the Erlang epmd manual page for info about the usage.

Regular options
    -address List
        Let epmd listen only on the comma-separated list of IP
        addresses (and on the loopback interface).
    -port No
        Let epmd listen to another port than default 4369
    -d
    -debug
        Enable debugging. This will give a log to
        the standard error stream. It will shorten
        the number of saved used node names to 5.

        If you give more than one debug flag you may
        get more debugging information.
    -daemon
        Start epmd detached (as a daemon)
    -relaxed_command_check
        Allow this instance of epmd to be killed with
        epmd -kill even if there are registered nodes.
        Also allows forced unregister (epmd -stop).
    -systemd
        Wait for socket from systemd. The option makes sense
        when started from .socket unit.

DbgExtra options
    -packet_timeout Seconds
        Set the number of seconds a connection can be
        inactive before epmd times out and closes the
        connection (default 60).

    -delay_accept Seconds
        To simulate a busy server you can insert a
        delay between epmd gets notified about that
        a new connection is requested and when the
        connections gets accepted.

    -delay_write Seconds
        Also a simulation of a busy server. Inserts
        a delay before a reply is sent.

Interactive options
    -names
        List names registered with the currently running epmd
    -kill
        Kill the currently running epmd
        (only allowed if -names show empty database or
        -relaxed_command_check was given when epmd was started).
    -stop Name
        Forcibly unregisters a name with epmd
        (only allowed if -relaxed_command_check was given when 
        epmd was started).
"""


class _Exit(Exception):
    """Leave L{main} with a status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def atoi(text: str) -> int:
    """C's C{atoi}: optional blanks and sign, then leading digits; else 0."""
    text = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if not ch.isdigit() or not ch.isascii():
            break
        digits += ch
    return sign * int(digits) if digits else 0


class Settings:
    """
    What the command line and the environment asked for.

    @ivar port: the epmd port.
    @ivar addresses: C{-address} list, or empty for the default.
    @ivar debug: how many C{-d}.
    @ivar daemon: C{-daemon}.
    @ivar relaxed: C{-relaxed_command_check} or the environment variable.
    @ivar packetTimeout: C{-packet_timeout}.
    """

    def __init__(self, environ: dict[str, str]) -> None:
        rawPort = environ.get("ERL_EPMD_PORT")
        self.port = atoi(rawPort) if rawPort is not None else 4369
        rawAddress = environ.get("ERL_EPMD_ADDRESS")
        self.addresses = _splitAddresses(rawAddress) if rawAddress else []
        self.debug = 0
        self.daemon = False
        self.relaxed = "ERL_EPMD_RELAXED_COMMAND_CHECK" in environ
        self.packetTimeout = 60


def _splitAddresses(text: str) -> list[str]:
    return [a for a in text.replace(",", " ").split() if a]


class Console:
    """The standard streams, replaceable in tests."""

    def __init__(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def out(self, text: str | bytes) -> None:
        """Write to stdout."""
        self.stdout.write(text.encode("utf-8") if isinstance(text, str) else text)
        self.stdout.flush()

    def err(self, text: str) -> None:
        """Write to stderr."""
        self.stderr.write(text.encode("utf-8"))
        self.stderr.flush()


def _usage(console: Console) -> NoReturn:
    console.err(USAGE)
    raise _Exit(1)


def _connect(settings: Settings, console: Console, silent: bool = False) -> socket.socket:
    for family, host in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            sock.connect((host, settings.port))
            return sock
        except OSError:
            sock.close()
    if not silent:
        console.err("epmd: Cannot connect to local epmd\n")
    raise _Exit(1)


def _readFill(sock: socket.socket, length: int) -> bytes | None:
    """Read exactly C{length} bytes, or fewer at end; L{None} on error."""
    got = b""
    try:
        while len(got) < length:
            chunk = sock.recv(length - len(got))
            if not chunk:
                break
            got += chunk
    except OSError:
        return None
    return got


def _send(sock: socket.socket, data: bytes, console: Console) -> None:
    try:
        sock.sendall(data)
    except OSError:
        console.out("epmd: Can't write to epmd\n")
        raise _Exit(1) from None


def epmdCall(settings: Settings, console: Console, request: bytes, silent: bool = False) -> int:
    """C{-names}, C{-started} and C{-dump}: print the header and the raw reply."""
    with _connect(settings, console, silent) as sock:
        _send(sock, request, console)
        try:
            head = sock.recv(4)
        except OSError:
            head = b""
        if len(head) != 4:
            if not silent:
                console.out("epmd: no response from local epmd\n")
            return 1
        if not silent:
            port = int.from_bytes(head, "big", signed=True)
            console.out(f"epmd: up and running on port {port} with data:\n")
        while True:
            try:
                chunk = sock.recv(1024)
            except OSError:
                chunk = b""
            if not chunk:
                return 0
            if not silent:
                console.out(chunk)


def _responded(console: Console, got: bytes | None) -> int:
    if got is None:
        console.out("epmd: failed to read answer from local epmd\n")
    else:
        console.out(f"epmd: local epmd responded with <{got.decode('latin-1')}>\n")
    return 1


def killEpmd(settings: Settings, console: Console) -> int:
    """C{-kill}."""
    with _connect(settings, console) as sock:
        _send(sock, codec.encodeKillRequest(), console)
        got = _readFill(sock, 2)
    if got is not None and len(got) == 2:
        if got == codec.KILL_OK:
            console.out("Killed\n")
            return 0
        console.out("Killing not allowed - living nodes in database.\n")
        return 1
    return _responded(console, got)


def stopName(settings: Settings, console: Console, name: str) -> int:
    """C{-stop NAME}."""
    raw = os.fsencode(name)
    if len(raw) > 1000:
        console.out("epmd: Name too long!")
        return 1
    with _connect(settings, console) as sock:
        _send(sock, codec.encodeStopRequest(raw), console)
        got = _readFill(sock, 7)
    if got is not None and len(got) == 7:
        console.out(got + b"\n")
        return 0
    return _responded(console, got)


def parse(argv: Sequence[str], environ: dict[str, str], console: Console) -> Settings | int:
    """
    Walk the arguments as C{epmd.c} does.  Returns the server settings,
    or the exit status of a command that already ran.
    """
    settings = Settings(environ)
    args = list(argv)
    while args:
        flag = args[0]
        if flag in ("-d", "-debug"):
            settings.debug += 1
            args = args[1:]
        elif flag in ("-packet_timeout", "-delay_accept", "-delay_write"):
            if len(args) == 1 or atoi(args[1]) == 0:
                _usage(console)
            if flag == "-packet_timeout":
                settings.packetTimeout = atoi(args[1])
            args = args[2:]
        elif flag == "-daemon":
            settings.daemon = True
            args = args[1:]
        elif flag == "-relaxed_command_check":
            settings.relaxed = True
            args = args[1:]
        elif flag == "-systemd":
            args = args[1:]
        elif flag == "-address":
            if len(args) == 1:
                _usage(console)
            settings.addresses = _splitAddresses(args[1])
            args = args[2:]
        elif flag == "-port":
            if len(args) == 1 or atoi(args[1]) == 0:
                _usage(console)
            settings.port = atoi(args[1])
            args = args[2:]
        elif flag in ("-names", "-started", "-dump", "-kill"):
            if len(args) != 1:
                _usage(console)
            if flag == "-kill":
                return killEpmd(settings, console)
            request = codec.encodeDumpRequest() if flag == "-dump" else codec.encodeNamesRequest()
            return epmdCall(settings, console, request, silent=flag == "-started")
        elif flag == "-stop":
            if len(args) != 2:
                _usage(console)
            return stopName(settings, console, args[1])
        else:
            _usage(console)
    return settings


def listenAddresses(settings: Settings) -> list[str]:
    """
    Where the server listens: C{-address} plus loopback, else
    C{0.0.0.0} and C{::1}.
    """
    if not settings.addresses:
        return ["0.0.0.0", "::1"]
    addresses = list(dict.fromkeys(settings.addresses))
    for loopback in ("127.0.0.1", "::1"):
        if loopback not in addresses:
            addresses.append(loopback)
    return addresses


def _daemonize() -> None:
    """Detach as C{epmd -daemon} does: fork, setsid, fork, chdir /."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def _debugObserver(settings: Settings, stream: IO[bytes]) -> Any:
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate
    from twisted.logger import ILogObserver, formatEvent
    from zope.interface import implementer

    @implementer(ILogObserver)
    def emit(event: dict[str, Any]) -> None:
        stamp = time.ctime(event.get("log_time", time.time()))
        text = formatEvent(event).removeprefix("epmd: ")
        stream.write(f"epmd: {stamp}: {text}\r\n".encode())
        stream.flush()

    level = LogLevel.debug if settings.debug >= 2 else LogLevel.info
    return FilteringLogObserver(emit, [LogLevelFilterPredicate(defaultLogLevel=level)])


def serve(settings: Settings, console: Console) -> int:
    """Run epmd in the foreground until killed; return the exit status."""
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError
    from twisted.internet.interfaces import IListeningPort
    from twisted.logger import globalLogBeginner

    from vernemq.dist.epmd.registry import DEBUG_MAX_UNREGISTERED, MAX_UNREGISTERED, Registry
    from vernemq.dist.epmd.server import EpmdServerFactory

    reactor: Any = _reactor
    observers = [] if settings.daemon or not settings.debug else [
        _debugObserver(settings, console.stderr)
    ]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)

    def debug(text: str) -> None:
        if settings.debug and not settings.daemon:
            stamp = time.ctime()
            console.err(f"epmd: {stamp}: {text}\r\n")

    debug(f"epmd running - daemon = {int(settings.daemon)}")
    ports: list[IListeningPort] = []

    def killed() -> None:
        for port in ports:
            port.stopListening()
        factory.closeAll()
        deadline = reactor.seconds() + 1.0

        def stopWhenFlushed() -> None:
            # Let the "OK" reach the killer before the process goes.
            if factory.connections and reactor.seconds() < deadline:
                reactor.callLater(0.01, stopWhenFlushed)
            else:
                reactor.stop()

        stopWhenFlushed()

    registry = Registry(
        reactor,
        DEBUG_MAX_UNREGISTERED if settings.debug else MAX_UNREGISTERED,
    )
    factory = EpmdServerFactory(
        reactor,
        settings.port,
        relaxed=settings.relaxed,
        packetTimeout=settings.packetTimeout,
        onKill=killed,
        registry=registry,
    )
    for address in listenAddresses(settings):
        try:
            ports.append(reactor.listenTCP(settings.port, factory, interface=address))
        except CannotListenError as error:
            if address == "::1" or (address == "127.0.0.1" and ports):
                continue
            for port in ports:
                port.stopListening()
            if getattr(error.socketError, "errno", None) == errno.EADDRINUSE:
                debug(
                    f"there is already a epmd running at port {settings.port} on ipaddr {address}"
                )
                return 0
            console.err(f"epmd: failed to bind socket on {address}: {error.socketError}\n")
            return 1
    reactor.run()
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The C{vmq-epmd} console script."""
    console = Console(sys.stdout.buffer, sys.stderr.buffer)
    try:
        result = parse(sys.argv[1:] if argv is None else argv, dict(os.environ), console)
        if isinstance(result, int):
            raise _Exit(result)
        if result.daemon:
            _daemonize()
        raise _Exit(serve(result, console))
    except _Exit as done:
        sys.exit(done.status)


if __name__ == "__main__":
    main()
