# -*- test-case-name: tests.test_admin_config -*-
"""
The C{vmq-admin config} family: C{show} and C{reset} of the durable
config store (L{vernemq.cluster.durable_config}), as VerneMQ's
C{vmq_config_cli}.

C{config show app=<app> [-k | --key=<key>]} prints, from this node's
point of view, one row per key: the value in force, in the column of where
it comes from (C{Env}: the configuration file or its default; C{Node}: a
durable value for this node; C{Global}: a durable value for every node):

    $ vmq-admin config show app=vmq_server
    +----------------------+-----+----+------+
    |        Config        | Env |Node|Global|
    +----------------------+-----+----+------+
    |   allow_anonymous    |false|    | true |
    ...

For C{vmq_server} the rows are the overridable keys plus any other key
stored; for another app, the keys stored for it.  With C{--key} it prints
C{Scope: node} (C{global}, C{env}) and C{Value: ...}, or the alert
C{not found}.  An app with nothing to show gives the alert C{App not
configured via vmq_config}.

C{config reset app=<app> [--key=<key>] [--local] [--global]} deletes the
app's durable values (only C{key}'s with C{--key}): this node's per-node
ones with C{--local}, the global ones with C{--global}, both without
either flag; then prints C{Done}.  The value in force falls back to the
next scope (per-node, global, file).  VerneMQ's C{--config-val} and
C{--config-file} are not supported.
"""

from __future__ import annotations

from typing import Any

from vernemq.admin.registry import Alert, CommandRegistry, FlagSpec, KeySpec, Table, Text, cell
from vernemq.cluster.durable_config import OVERRIDABLE, SERVER_APP, DurableConfig

__all__ = ["registerConfigCommands"]

CONFIG_USAGE = """\
vmq-admin config <sub-command>

  ADVANCED! Manages the durable configuration store: values replicated to
  every cluster node that override vernemq.conf, for the whole cluster
  or for one node.

  Sub-commands:
    show        Shows the configuration values in force and where they come from
    reset       Deletes durable configuration values
  Use --help after a sub-command for more details.
"""

SHOW_USAGE = """\
vmq-admin config show app=<App> [--key=<Key>] [--format=json]

  Shows the configuration values of an application (vmq_server) in force
  on this node and where each comes from: the configuration file (Env),
  the durable store for this node (Node) or for every node (Global).

Options

  -k, --key=<Key>
      Shows one value, with its scope.
"""

RESET_USAGE = """\
vmq-admin config reset app=<App> [--key=<Key>] [--local] [--global]

  Deletes the durable configuration values of an application, or of one
  of its items with --key. The value in force falls back to the next scope:
  this node's value, the global value, then the configuration file.

Options

  --key=<Key>
      Resets one item rather than the whole app config
  --local
      Only resets the values specified for this node
  --global
      Only resets the globally specified values (on every node)
"""

_SCOPES = {"env": "Env", "node": "Node", "global": "Global"}


def _cellValue(value: Any) -> Any:
    """A value for a table cell: simple values as they are (VerneMQ's C{complex_type})."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    return "too_complex"


def _keyName(text: str) -> str:
    if not text or not text.replace("_", "").replace(".", "").isalnum():
        raise ValueError("not a configuration key")
    return text


def _inForce(durable: DurableConfig, app: str, key: str) -> tuple[str, Any] | None:
    """C{(scope, value)} in force on this node, or L{None}."""
    found = durable.lookup(app, key)
    if found is not None:
        return found.scope, found.value
    present, value = durable.baseValue(app, key)
    if present:
        return "env", value
    return None


def _keys(durable: DurableConfig, app: str) -> list[str]:
    """The keys C{config show} lists for C{app} (this node's view)."""
    keys = set(OVERRIDABLE) if app == SERVER_APP else set()
    keys.update(
        entry.key
        for entry in durable.entries(app)
        if entry.scope == "global" or entry.node == durable.node
    )
    return sorted(keys)


def _notConfigured(durable: DurableConfig, app: str) -> bool:
    return app != SERVER_APP and not durable.entries(app)


def registerConfigCommands(registry: CommandRegistry, durable: DurableConfig) -> None:
    """Add C{config show} and C{config reset} to C{registry}."""
    registry.registerUsage(("config",), CONFIG_USAGE)

    def show(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        app = keys.get("app")
        if app is None:
            return [Alert([Text("Please provide an app=<App>")])]
        if _notConfigured(durable, app):
            return [Alert([Text("App not configured via vmq_config")])]
        key = flags.get("key")
        if key is not None:
            found = _inForce(durable, app, key)
            if found is None:
                return [Alert([Text("not found")])]
            scope, value = found
            return [Text(f"Scope: {scope}\nValue: {cell(value)}")]
        rows = []
        for name in _keys(durable, app):
            found = _inForce(durable, app, name)
            if found is None:
                continue
            scope, value = found
            column = _SCOPES[scope]
            rows.append(
                [("Config", name)]
                + [(c, _cellValue(value) if c == column else "") for c in _SCOPES.values()]
            )
        return [Table(rows)]

    def reset(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        app = keys.get("app")
        if app is None:
            return [Alert([Text(RESET_USAGE)])]
        if _notConfigured(durable, app):
            return [Alert([Text("App not configured via vmq_config")])]
        local, globally = bool(flags.get("local")), bool(flags.get("global"))
        if not (local or globally):
            local = globally = True
        durable.reset(app, flags.get("key"), local=local, globally=globally)
        return [Text("Done")]

    registry.register(
        ("config", "show"),
        show,
        keys=[KeySpec("app", _keyName)],
        flags=[FlagSpec("key", "k", "key", _keyName)],
        usage=SHOW_USAGE,
    )
    registry.register(
        ("config", "reset"),
        reset,
        keys=[KeySpec("app", _keyName)],
        flags=[
            FlagSpec("key", None, "key", _keyName),
            FlagSpec("local"),
            FlagSpec("global"),
        ],
        usage=RESET_USAGE,
    )
