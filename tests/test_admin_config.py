# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.admin.config}: C{vmq-admin config show} and C{reset}
over the durable config store (VerneMQ's C{vmq_config_cli}).
"""

from __future__ import annotations

import json
from random import Random

from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import Harness
from tests.clusterhelpers import coroutine, run
from vernemq.admin.config import registerConfigCommands
from vernemq.admin.registry import CommandRegistry
from vernemq.cluster.durable_config import OVERRIDABLE, DurableConfig
from vernemq.cluster.metadata import MetadataStore
from vernemq.cluster.metadata.testing import MemoryNetwork

APP = "vmq_server"


def runCommand(registry: CommandRegistry, *argv: str) -> tuple[int, str]:
    result: tuple[int, str] = run(coroutine(registry.run(list(argv))))
    return result


class ConfigCommandTests(SynchronousTestCase):
    """Two nodes, each with its broker, durable config and command registry."""

    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.durables: list[DurableConfig] = []
        self.registries: list[CommandRegistry] = []
        for name in ("a@h", "b@h"):
            store = MetadataStore(name, self.network.transport(name), lambda: 1000.0, Random(0))
            self.network.attach(name, store.receive)
            store.set_members(["a@h", "b@h"])
            durable = DurableConfig(store, Harness().broker)
            durable.startService()
            registry = CommandRegistry()
            registerConfigCommands(registry, durable)
            self.durables.append(durable)
            self.registries.append(registry)
        self.a, self.b = self.durables

    def sync(self) -> None:
        stores = [d.store for d in self.durables]

        def flush() -> None:
            for store in stores:
                store.flush()

        self.network.run(flush)

    def rows(self, registry: CommandRegistry, *argv: str) -> dict[str, dict[str, object]]:
        status, out = runCommand(registry, "config", "show", *argv, "--format=json")
        self.assertEqual(0, status, out)
        [element] = json.loads(out)
        return {row["Config"]: row for row in element["table"]}

    def test_showTable(self) -> None:
        """
        One row per overridable key, the value in the column of its scope:
        Env (file or default), Node (this node's), Global.
        """
        self.a.set(APP, "max_inflight_messages", 5)
        self.a.set(APP, "max_inflight_messages", 6, node="b@h")
        self.a.set(APP, "retry_interval", 9, node="a@h")
        self.sync()
        rowsA = self.rows(self.registries[0], "app=vmq_server")
        self.assertEqual(sorted(OVERRIDABLE), list(rowsA))
        self.assertEqual(
            {"Config": "max_inflight_messages", "Env": "", "Node": "", "Global": 5},
            rowsA["max_inflight_messages"],
        )
        self.assertEqual(
            {"Config": "retry_interval", "Env": "", "Node": 9, "Global": ""},
            rowsA["retry_interval"],
        )
        self.assertEqual(
            {"Config": "allow_anonymous", "Env": True, "Node": "", "Global": ""},
            rowsA["allow_anonymous"],
        )
        self.assertEqual(
            {"Config": "persistent_client_expiration", "Env": None, "Node": "", "Global": ""},
            rowsA["persistent_client_expiration"],
        )
        rowsB = self.rows(self.registries[1], "app=vmq_server")
        self.assertEqual(6, rowsB["max_inflight_messages"]["Node"])
        self.assertEqual(20, rowsB["retry_interval"]["Env"])

        status, out = runCommand(self.registries[0], "config", "show", "app=vmq_server")
        self.assertEqual(0, status)
        lines = out.splitlines()
        self.assertEqual(
            "|               Config                |    Env     |Node|Global|", lines[1]
        )
        self.assertIn("|        max_inflight_messages        |            |    |  5   |", lines)
        self.assertIn("|           allow_anonymous           |    true    |    |      |", lines)
        self.assertIn("|           retry_interval            |            | 9  |      |", lines)

    def test_showKey(self) -> None:
        """With --key (or -k): the scope and value, or the alert "not found"."""
        self.a.set(APP, "queue_type", "lifo")
        self.sync()
        self.assertEqual(
            (0, "Scope: global\nValue: lifo\n"),
            runCommand(self.registries[1], "config", "show", "app=vmq_server", "--key=queue_type"),
        )
        self.assertEqual(
            (0, "Scope: env\nValue: 1000\n"),
            runCommand(
                self.registries[1], "config", "show", "app=vmq_server", "-k", "max_online_messages"
            ),
        )
        self.assertEqual(
            (1, "not found\n"),
            runCommand(self.registries[1], "config", "show", "app=vmq_server", "--key=nope"),
        )
        status, out = runCommand(
            self.registries[1],
            "config",
            "show",
            "app=vmq_server",
            "--key=queue_type",
            "--format=json",
        )
        self.assertEqual([{"type": "text", "text": "Scope: global\nValue: lifo"}], json.loads(out))

    def test_showOtherApps(self) -> None:
        """
        Another app shows its stored keys (this node's view); an app with
        none is not configured via vmq_config; app= is required.
        """
        self.assertEqual(
            (1, "App not configured via vmq_config\n"),
            runCommand(self.registries[0], "config", "show", "app=vmq_webhooks"),
        )
        self.a.set("vmq_webhooks", "hooks", ["x"])
        self.a.set("vmq_webhooks", "timeout", 3, node="b@h")
        self.a.set("vmq_acl", "acl_file", "/etc/vmq.acl", node="a@h")
        self.sync()
        self.assertEqual(
            {"hooks": {"Config": "hooks", "Env": "", "Node": "", "Global": "too_complex"}},
            self.rows(self.registries[0], "app=vmq_webhooks"),
        )
        self.assertEqual(
            (0, "Scope: global\nValue: ['x']\n"),
            runCommand(self.registries[0], "config", "show", "app=vmq_webhooks", "--key=hooks"),
        )
        self.assertEqual(
            {"hooks", "timeout"}, set(self.rows(self.registries[1], "app=vmq_webhooks"))
        )
        self.assertEqual(
            {"Config": "acl_file", "Env": "", "Node": "/etc/vmq.acl", "Global": ""},
            self.rows(self.registries[0], "app=vmq_acl")["acl_file"],
        )
        self.assertEqual(
            (1, "Please provide an app=<App>\n"),
            runCommand(self.registries[0], "config", "show"),
        )

    def test_reset(self) -> None:
        """--local, --global, both (no flag), one --key or the whole app."""
        for durable in self.durables:
            durable.set(APP, "max_offline_messages", 1, node=durable.node)
            durable.set(APP, "retry_interval", 2, node=durable.node)
        self.a.set(APP, "max_offline_messages", 3)
        self.a.set(APP, "retry_interval", 4)
        self.sync()

        def inForce() -> list[tuple[object, object]]:
            return [
                (
                    d.broker.config["max_offline_messages"],  # type: ignore[union-attr]
                    d.broker.config["retry_interval"],  # type: ignore[union-attr]
                )
                for d in self.durables
            ]

        self.assertEqual([(1, 2), (1, 2)], inForce())
        done = (0, "Done\n")
        reset = ("config", "reset", "app=vmq_server")
        self.assertEqual(
            done, runCommand(self.registries[0], *reset, "--key=max_offline_messages", "--local")
        )
        self.sync()
        self.assertEqual([(3, 2), (1, 2)], inForce())
        self.assertEqual(done, runCommand(self.registries[1], *reset, "--global"))
        self.sync()
        self.assertEqual([(1000, 2), (1, 2)], inForce())
        self.assertEqual(done, runCommand(self.registries[1], *reset))
        self.sync()
        self.assertEqual([(1000, 2), (1000, 20)], inForce())
        self.assertEqual(done, runCommand(self.registries[0], *reset, "--local", "--global"))
        self.sync()
        self.assertEqual([(1000, 20), (1000, 20)], inForce())
        self.assertEqual([], self.a.entries(APP))

    def test_resetErrors(self) -> None:
        """Without app= the usage is the alert; an unknown app or flag is refused."""
        status, out = runCommand(self.registries[0], "config", "reset")
        self.assertEqual(1, status)
        self.assertIn("vmq-admin config reset app=<App>", out)
        self.assertEqual(
            (1, "App not configured via vmq_config\n"),
            runCommand(self.registries[0], "config", "reset", "app=nothing"),
        )
        self.assertEqual(
            (1, "Invalid flag: --config-val\n"),
            runCommand(self.registries[0], "config", "reset", "app=vmq_server", "--config-val=1"),
        )
        self.assertEqual(1, runCommand(self.registries[0], "config", "show", "app=a b")[0])

    def test_usage(self) -> None:
        """config (and --help) print the usages."""
        status, out = runCommand(self.registries[0], "config")
        self.assertEqual(1, status)
        self.assertIn("vmq-admin config <sub-command>", out)
        status, out = runCommand(self.registries[0], "config", "show", "--help")
        self.assertEqual(0, status)
        self.assertIn("vmq-admin config show app=<App> [--key=<Key>]", out)
        self.assertEqual([("config", "reset"), ("config", "show")], self.registries[0].commands())
