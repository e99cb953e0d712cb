"""
Tests for L{vernemq.admin.registry} (VerneMQ's clique syntax and output),
L{vernemq.admin.cluster} (the C{cluster} family) and the C{vmq-admin}
plumbing of L{vernemq.admin.cli}.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.clusterhelpers import FakeNetwork, FakeNode, coroutine, run
from vernemq.admin.cli import exportAdminCommand, parseCommandLine, runRemote
from vernemq.admin.cluster import registerClusterCommands, registerMetadataCommands
from vernemq.admin.registry import (
    Alert,
    CommandRegistry,
    FlagSpec,
    KeySpec,
    Table,
    Text,
    Usage,
    UsageError,
    centre,
    renderTable,
    write,
)
from vernemq.dist.etf import Atom
from vernemq.dist.exports import FunctionRegistry


def runCommand(registry: CommandRegistry, *argv: str) -> tuple[int, str]:
    result: tuple[int, str] = run(coroutine(registry.run(list(argv))))
    return result


class TableTests(SynchronousTestCase):
    """clique's tables, character for character."""

    def test_clusterShow(self) -> None:
        """The C{cluster show} table as VerneMQ prints it."""
        rows = [[("Node", "VerneMQ@127.0.0.1"), ("Running", True)]]
        self.assertEqual(
            "+-----------------+-------+\n"
            "|      Node       |Running|\n"
            "+-----------------+-------+\n"
            "|VerneMQ@127.0.0.1| true  |\n"
            "+-----------------+-------+\n"
            "\n",
            renderTable(rows),
        )

    def test_centre(self) -> None:
        """Erlang's string:centre: the odd space goes right."""
        self.assertEqual(" true  ", centre("true", 7))
        self.assertEqual("      Node       ", centre("Node", 17))
        self.assertEqual("bcd", centre("abcde", 3))

    def test_shrinkAndMultiline(self) -> None:
        """Wide tables shrink to 100 columns (cells truncated); newlines expand rows."""
        table = renderTable([[("a", "x" * 150), ("b", "1\n2")]])
        lines = table.splitlines()
        self.assertTrue(all(len(line) <= 100 for line in lines), lines)
        self.assertIn("|1|", lines[3])
        self.assertIn("|2|", lines[4])
        self.assertEqual("", renderTable([]))

    def test_json(self) -> None:
        """clique's JSON writer: a compact list of typed elements."""
        out = write(
            [Table([[("Node", "n@h"), ("Running", False)]]), Text("Done"), Alert([Text("no")])],
            "json",
        )
        self.assertEqual(
            '[{"type":"table","table":[{"Node":"n@h","Running":false}]},'
            '{"type":"text","text":"Done"},'
            '{"type":"alert","alert":[{"type":"text","text":"no"}]}]\n',
            out,
        )


class ParseTests(SynchronousTestCase):
    """Commands, C{key=value} arguments and flags."""

    def setUp(self) -> None:
        self.registry = CommandRegistry()
        self.seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

        def handler(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
            self.seen.append((keys, flags))
            return [Text("ok")]

        self.registry.register(
            ("thing", "do"),
            handler,
            keys=[KeySpec("n", int), KeySpec("name")],
            flags=[FlagSpec("kill", "k", "kill_sessions"), FlagSpec("timeout", "t", None, int)],
            usage="vmq-admin thing do n=<N>\n",
        )
        self.registry.registerUsage(("thing",), "vmq-admin thing <sub-command>\n")

    def test_keysAndFlags(self) -> None:
        """Keys are typed; long, short and valued flags are recognised."""
        for argv in [
            ["thing", "do", "n=3", "name=x", "-k", "--timeout=7"],
            ["thing", "do", "--kill_sessions", "n=3", "-t", "7", "name=x"],
            ["thing", "do", "n=3", "-t7", "name=x", "-k"],
        ]:
            self.assertEqual((0, "ok\n"), runCommand(self.registry, *argv))
            self.assertEqual(({"n": 3, "name": "x"}, {"kill": True, "timeout": 7}), self.seen[-1])

    def test_errors(self) -> None:
        """Unknown keys, flags, bad values and commands are refused with status 1."""
        for argv, message in [
            (["thing", "do", "m=1"], "Invalid argument: m"),
            (["thing", "do", "n=x"], "Invalid value for n: x"),
            (["thing", "do", "--nope"], "Invalid flag: --nope"),
            (["thing", "do", "-z"], "Invalid flag: -z"),
            (["thing", "do", "-k=1"], "Flag -k takes no value"),
            (["thing", "do", "--timeout"], "Flag --timeout needs a value"),
            (["thing", "do", "stray"], "Invalid argument: stray"),
            (["other"], "Invalid command: other"),
            (["thing", "do", "--format=xml"], "Invalid format: xml (human or json)"),
        ]:
            status, out = runCommand(self.registry, *argv)
            self.assertEqual(1, status, argv)
            self.assertTrue(out.startswith(message), (argv, out))
        self.assertEqual([], self.seen)
        self.assertRaises(UsageError, self.registry.parse, ["thing", "do", "m=1"])

    def test_usage(self) -> None:
        """--help and bare families print the usage registered for the path."""
        self.assertEqual(
            (0, "vmq-admin thing do n=<N>\n"), runCommand(self.registry, "thing", "do", "--help")
        )
        self.assertEqual((1, "vmq-admin thing <sub-command>\n"), runCommand(self.registry, "thing"))
        status, out = runCommand(self.registry)
        self.assertEqual(0, status)
        self.assertIn("Sub-commands:\n    thing", out)
        self.assertIsInstance(self.registry.parse(["thing", "-h"]), Usage)

    def test_failingHandler(self) -> None:
        """A handler that raises gives an error, status 1, and a log line."""
        self.registry.register(("boom",), lambda keys, flags: 1 / 0)
        status, out = runCommand(self.registry, "boom")
        self.assertEqual(1, status)
        self.assertIn("Error: division by zero", out)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_jsonErrors(self) -> None:
        """With --format=json errors are JSON alerts."""
        status, out = runCommand(self.registry, "thing", "do", "m=1", "--format=json")
        self.assertEqual(1, status)
        self.assertEqual("alert", json.loads(out)[0]["type"])


class ClusterCommandTests(SynchronousTestCase):
    """C{cluster show|join|leave} against in-memory nodes."""

    def setUp(self) -> None:
        self.network = FakeNetwork()
        self.nodes = [FakeNode(self.network, name) for name in ("a@h", "b@h")]
        self.registries = []
        for node in self.nodes:
            registry = CommandRegistry()
            registerClusterCommands(registry, node.membership, node.readiness)
            self.registries.append(registry)

    def test_joinShowLeave(self) -> None:
        """Join prints Done; show lists both; leave of a dead node prints Done."""
        ra, rb = self.registries
        self.assertEqual((0, "Done\n"), runCommand(rb, "cluster", "join", "discovery-node=a@h"))
        self.assertEqual(
            (
                0,
                "+----+-------+\n"
                "|Node|Running|\n"
                "+----+-------+\n"
                "|a@h | true  |\n"
                "|b@h | true  |\n"
                "+----+-------+\n\n",
            ),
            runCommand(ra, "cluster", "show"),
        )
        self.network.kill("b@h")
        status, out = runCommand(ra, "cluster", "show", "--format=json")
        self.assertEqual(
            [
                {
                    "type": "table",
                    "table": [{"Node": "a@h", "Running": True}, {"Node": "b@h", "Running": False}],
                }
            ],
            json.loads(out),
        )
        self.assertEqual((0, "Done\n"), runCommand(ra, "cluster", "leave", "node=b@h"))
        self.assertEqual(
            (1, "Node 'b@h' wasn't part of the cluster\n"),
            runCommand(ra, "cluster", "leave", "node=b@h", "-k"),
        )

    def test_joinMessages(self) -> None:
        """Missing, refused and merged joins."""
        ra, rb = self.registries
        self.assertEqual(
            (
                1,
                "You have to provide a discovery node "
                "(example discovery-node=vernemq1@127.0.0.1)\n",
            ),
            runCommand(rb, "cluster", "join"),
        )
        self.assertEqual(
            (1, "Couldn't join cluster due to self_join\n"),
            runCommand(rb, "cluster", "join", "discovery-node=b@h"),
        )
        self.assertEqual(
            (1, "Couldn't join cluster due to not_reachable\n"),
            runCommand(rb, "cluster", "join", "discovery-node=z@h"),
        )
        status, out = runCommand(rb, "cluster", "join", "discovery-node=nohost")
        self.assertEqual(1, status)
        self.assertIn("Invalid value for discovery-node", out)
        FakeNode(self.network, "c@h")
        run(coroutine(self.nodes[1].membership.join("c@h")))
        status, out = runCommand(rb, "cluster", "join", "discovery-node=a@h")
        self.assertEqual(0, status)
        self.assertTrue(out.startswith("This node had local history (it was a member"), out)
        self.assertTrue(out.endswith("merged it into the cluster.\nDone\n"), out)

    def test_leaveMessages(self) -> None:
        """Missing node; a live node without -k."""
        ra, rb = self.registries
        self.assertEqual((1, "You have to provide a node\n"), runCommand(ra, "cluster", "leave"))
        runCommand(rb, "cluster", "join", "discovery-node=a@h")
        self.assertEqual(
            (0, "Done! Use -k to teardown and migrate existing sessions!\n"),
            runCommand(ra, "cluster", "leave", "node=b@h"),
        )
        status, out = runCommand(ra, "cluster", "leave", "node=b@h", "--timeout=0")
        self.assertEqual(1, status)
        self.assertIn("Invalid value for --timeout", out)


class MetadataCommandTests(SynchronousTestCase):
    """C{cluster metadata}: a read-only summary that is equal on converged replicas."""

    def test_summary(self) -> None:
        """
        One row per prefix with live entries, tombstones and a digest;
        two replicas print the same table once they have exchanged.
        """
        from random import Random

        from vernemq.cluster.metadata import MetadataStore
        from vernemq.cluster.metadata.testing import MemoryNetwork

        network = MemoryNetwork()
        stores: list[MetadataStore] = []
        registries = []
        for name in ("a@h", "b@h"):
            store = MetadataStore(name, network.transport(name), lambda: 1000.0, Random(0))
            network.attach(name, store.receive)
            stores.append(store)
            registry = CommandRegistry()
            registerMetadataCommands(registry, store)
            registries.append(registry)
        for store in stores:
            store.set_members(["a@h", "b@h"])
        self.assertEqual((0, "No metadata.\n"), runCommand(registries[0], "cluster", "metadata"))
        prefix = (Atom("vmq"), Atom("retain"))
        stores[0].put(prefix, (b"", b"t/1"), b"one")
        stores[0].put(prefix, (b"", b"t/2"), b"two")
        network.run(lambda: [store.flush() for store in stores])
        stores[1].delete(prefix, (b"", b"t/2"))
        network.run(lambda: [store.flush() for store in stores])
        status, out = runCommand(registries[0], "cluster", "metadata", "--format=json")
        self.assertEqual(0, status)
        [element] = json.loads(out)
        [row] = element["table"]
        self.assertEqual(
            # The tombstone was collected once both members had seen it.
            {"Prefix": "(Atom('vmq'), Atom('retain'))", "Entries": 1, "Tombstones": 0},
            {k: row[k] for k in ("Prefix", "Entries", "Tombstones")},
        )
        self.assertEqual(
            runCommand(registries[0], "cluster", "metadata"),
            runCommand(registries[1], "cluster", "metadata"),
        )


class RemoteTests(SynchronousTestCase):
    """C{vmq:admin_command/1} and the console script's own options."""

    def test_adminCommand(self) -> None:
        """The exported function runs a command line: {Status, Output}."""
        registry = CommandRegistry()
        registry.register(
            ("hello",), lambda keys, flags: [Text("hi " + keys["who"])], keys=[KeySpec("who")]
        )
        exports = FunctionRegistry()
        exportAdminCommand(exports, registry)
        outcome = run(
            coroutine(exports.apply(Atom("vmq"), Atom("admin_command"), [[b"hello", b"who=you"]]))
        )
        self.assertEqual((0, b"hi you\n"), outcome.value)
        outcome = run(
            coroutine(
                exports.apply(
                    Atom("vmq"), Atom("admin_command"), [[list(b"hello"), list(b"who=me")]]
                )
            )
        )
        self.assertEqual((0, b"hi me\n"), outcome.value)
        outcome = run(coroutine(exports.apply(Atom("vmq"), Atom("admin_command"), [b"x"])))
        self.assertEqual(Atom("error"), outcome.klass)

    def test_commandLine(self) -> None:
        """-c, --config= and -rpctimeout come before the command."""
        self.assertEqual(
            ("vernemq.conf", 60.0, ["cluster", "show"]), parseCommandLine(["cluster", "show"])
        )
        self.assertEqual(
            ("x.conf", 5.0, ["cluster", "leave", "-t", "3"]),
            parseCommandLine(["-c", "x.conf", "-rpctimeout", "5", "cluster", "leave", "-t", "3"]),
        )
        self.assertEqual("y.conf", parseCommandLine(["--config=y.conf"])[0])
        self.assertRaises(ValueError, parseCommandLine, ["-rpctimeout", "0"])

    def test_badConfig(self) -> None:
        """A missing or bad vernemq.conf: exit status 2 and a message."""
        out, err = io.StringIO(), io.StringIO()
        status = run(
            coroutine(runRemote(Clock(), ["-c", "/nonexistent.conf", "cluster"], out, err))
        )
        self.assertEqual(2, status)
        self.assertIn("/nonexistent.conf", err.getvalue())
        self.assertIn("cannot read", err.getvalue())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("nodename = nohost\n")
        status = run(coroutine(runRemote(Clock(), ["-c", path, "cluster"], out, err)))
        self.assertEqual(2, status)
        self.assertIn("nodename", err.getvalue())
