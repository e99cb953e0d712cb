# -*- test-case-name: tests.test_admin_registry -*-
"""
C{vmq-admin}: run an admin command on a running node.

    vmq-admin [-c vernemq.conf] [-rpctimeout <s>] cluster show [--format=json]
    vmq-admin -c /etc/vernemq/vernemq.conf cluster join discovery-node=VerneMQ@10.0.0.2

It reads C{nodename}, C{distributed_cookie} and the epmd port
(C{erlang.epmd.port}, or C{ERL_EPMD_PORT}) from the node's own vernemq.conf
(C{-c}, default C{./vernemq.conf}, like C{twistd vernemq}), connects to the
node over the Erlang distribution as a short-lived B{hidden} node (named
C{vmq-admin-<random>@<host of the node>}, as C{nodetool} does), calls
C{vmq:admin_command(Args)} there and prints what it answers, exiting with
the command's status (0 success, 1 error).  The command itself runs on the
node, against the node's L{vernemq.admin.registry.CommandRegistry}.

Exit status 1 with C{Node '<name>' not responding to pings.} when the node
cannot be reached (VerneMQ's nodetool says the same); 2 for a bad
vernemq.conf or command line of vmq-admin itself.

L{exportAdminCommand} is the node's side: it exports C{vmq:admin_command/1},
which takes the argument list (binaries or strings) and answers
C{{ExitStatus, OutputBinary}}, so C{rpc:call(Node, vmq, admin_command,
[[<<"cluster">>, <<"show">>]])} from an Erlang shell works as well.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import Deferred

from vernemq.admin.registry import CommandRegistry
from vernemq.dist.etf import Atom
from vernemq.dist.exports import ErlangError, FunctionRegistry
from vernemq.dist.node import VMQ_MODULE

#: Seconds to wait for a command by default (VerneMQ's C{-rpctimeout}).
DEFAULT_RPC_TIMEOUT = 60.0

USAGE = """\
Usage: vmq-admin [-c <vernemq.conf>] [-rpctimeout <seconds>] <command> [<args>]

  Runs <command> on the node configured by <vernemq.conf> (default
  ./vernemq.conf): its nodename and distributed_cookie are read from there.
  "vmq-admin --help" (run against a node) lists the commands.
"""


def _text(arg: Any) -> str:
    if isinstance(arg, bytes):
        return arg.decode("utf-8")
    if isinstance(arg, list) and all(isinstance(c, int) for c in arg):
        return "".join(chr(c) for c in arg)
    if isinstance(arg, str):
        return str(arg)
    raise ErlangError(Atom("badarg"))


def exportAdminCommand(exports: FunctionRegistry, registry: CommandRegistry) -> None:
    """Export C{vmq:admin_command/1}, running C{registry}'s commands."""

    def adminCommand(args: Any) -> Deferred[tuple[int, bytes]]:
        if not isinstance(args, list):
            raise ErlangError(Atom("badarg"))
        argv = [_text(a) for a in args]

        async def run() -> tuple[int, bytes]:
            status, output = await registry.run(argv)
            return status, output.encode("utf-8")

        return Deferred.fromCoroutine(run())

    exports.register(VMQ_MODULE, "admin_command", adminCommand)


# -- the console script -------------------------------------------------------------------


def parseCommandLine(argv: Sequence[str]) -> tuple[str, float, list[str]]:
    """
    C{(config path, rpc timeout, command arguments)} from vmq-admin's own
    leading options.

    @raise ValueError: a bad option value.
    """
    config = "vernemq.conf"
    timeout = DEFAULT_RPC_TIMEOUT
    args = list(argv)
    while args:
        head = args[0]
        if head in ("-c", "--config") and len(args) >= 2:
            config = args[1]
            args = args[2:]
        elif head.startswith("--config="):
            config = head.split("=", 1)[1]
            args = args[1:]
        elif head == "-rpctimeout" and len(args) >= 2:
            value = args[1]
            timeout = 1e9 if value == "infinity" else float(value)
            if timeout <= 0:
                raise ValueError("-rpctimeout must be positive")
            args = args[2:]
        else:
            break
    return config, timeout, args


async def runRemote(
    reactor: Any,
    argv: Sequence[str],
    stdout: IO[str],
    stderr: IO[str],
    environ: dict[str, str] | None = None,
) -> int:
    """Run vmq-admin with C{argv}; the exit status."""
    from vernemq.config import ConfigError, load_config
    from vernemq.dist.epmd.service import epmdSettings
    from vernemq.dist.handshake import splitNodeName
    from vernemq.dist.node import BadRpc, ConnectFailed, Node

    try:
        path, timeout, args = parseCommandLine(argv)
    except ValueError as error:
        stderr.write(f"{error}\n{USAGE}")
        return 2
    if args and args[0] in ("-h", "--help") and not os.path.exists(path):
        stdout.write(USAGE)
        return 0
    try:
        config = load_config(path)
    except ConfigError as error:
        stderr.write(f"{error}\n")
        return 2
    except OSError as error:
        stderr.write(f"cannot read {path}: {error.strerror}\n{USAGE}")
        return 2
    target: str = config["nodename"]
    _, host = splitNodeName(target)
    _, epmdPort, _ = epmdSettings(
        config, config.line_of, dict(os.environ) if environ is None else environ
    )
    node = Node(
        f"vmq-admin-{secrets.token_hex(4)}@{host}",
        config["distributed_cookie"],
        reactor,
        tickTime=config["erlang.distribution.net_ticktime"],
        epmdPort=epmdPort,
        hidden=True,
    )
    try:
        try:
            await node.connect(target)
        except ConnectFailed:
            stderr.write(f"Node '{target}' not responding to pings.\n")
            return 1
        try:
            reply = await node.call(
                target, VMQ_MODULE, "admin_command", [[a.encode("utf-8") for a in args]], timeout
            )
        except BadRpc as failure:
            stderr.write(f"RPC to '{target}' failed: {failure.reason!r}\n")
            return 1
        if not (isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], int)):
            stderr.write(f"unexpected answer from '{target}': {reply!r:.200}\n")
            return 1
        status, output = reply
        stdout.write(output.decode("utf-8", "replace") if isinstance(output, bytes) else "")
        stdout.flush()
        return int(status)
    finally:
        node.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """The C{vmq-admin} console script."""
    from twisted.internet import task

    args = list(sys.argv[1:] if argv is None else argv)

    async def run(reactor: Any) -> None:
        status = await runRemote(reactor, args, sys.stdout, sys.stderr)
        raise SystemExit(status)

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
