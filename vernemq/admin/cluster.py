# -*- test-case-name: tests.test_admin_registry -*-
"""
The C{vmq-admin cluster} family: C{show}, C{join}, C{leave}.

Outputs are VerneMQ's (C{vmq_server_cli}):

    $ vmq-admin cluster show
    +-----------------+-------+
    |      Node       |Running|
    +-----------------+-------+
    |VerneMQ@127.0.0.1| true  |
    +-----------------+-------+

    $ vmq-admin cluster show --format=json
    [{"type":"table","table":[{"Node":"VerneMQ@127.0.0.1","Running":true}]}]

C{cluster join discovery-node=<node>} prints C{Done}, or
C{Couldn't join cluster due to <reason>} (C{self_join}, C{not_reachable},
...) with exit status 1.  A node with local history is merged instead of
refused (VerneMQ 2 refuses it with C{non_empty_node}); the command says so
on a line before C{Done}.

C{cluster leave node=<node> [-k|--kill_sessions]
[-i|--summary-interval=<s>] [-t|--timeout=<s>]} prints C{Done} (a dead
node removed, or a live one gone with C{-k}), C{Done! Use -k to teardown
and migrate existing sessions!} (a live node stopped its listeners), or an
error with exit status 1.
"""

from __future__ import annotations

import hashlib
from typing import Any

from vernemq.admin.registry import Alert, CommandRegistry, FlagSpec, KeySpec, Table, Text
from vernemq.cluster.membership import JoinRefused, LeaveRefused, Membership
from vernemq.cluster.metadata import TOMBSTONE, MetadataStore
from vernemq.cluster.readiness import Readiness
from vernemq.dist.handshake import splitNodeName

CLUSTER_USAGE = """\
vmq-admin cluster <sub-command>

  Manage this node's cluster membership.

  Sub-commands:
    show        Prints the cluster members and whether each one is running
    join        Joins this node to a cluster
    leave       Makes a node leave the cluster
    metadata    Prints a summary of this node's replicated metadata

  Use --help after a sub-command for more details.
"""

SHOW_USAGE = """\
vmq-admin cluster show [--format=json]

  Prints one row per cluster member: its name and whether it runs (answers
  this node and is ready). A member that does not run means a netsplit.
"""

JOIN_USAGE = """\
vmq-admin cluster join discovery-node=<Node>

  Joins this node to the cluster that <Node> belongs to (any member will
  do), e.g. discovery-node=VerneMQ@10.0.0.2. A node with local history
  (earlier members, sessions, retained messages) is merged into the
  cluster.
"""

LEAVE_USAGE = """\
vmq-admin cluster leave node=<Node> [-k | --kill_sessions]
                       [-i | --summary-interval=<s>] [-t | --timeout=<s>]

  Makes <Node> leave the cluster.

  If <Node> is down, it is removed from the cluster and the queues of its
  clients are recreated on the remaining nodes once the cluster is
  consistent again (offline messages stored on <Node> are lost).

  If <Node> is up, it stops its MQTT listeners so no new client connects;
  established connections keep working and <Node> stays a member. With
  --kill_sessions it also disconnects its clients (they reconnect
  elsewhere), migrates the queues of its persistent sessions (with their
  messages and remaining expiry) to the other nodes, leaves the cluster
  and stops.

  -k, --kill_sessions        disconnect the sessions and leave (see above)
  -i, --summary-interval=<s> accepted for compatibility: the sessions are
                             disconnected at once, so there is no wait
                             to report progress on
  -t, --timeout=<s>          seconds to wait for the cluster and the
                             migration (default 60)
"""


def nodeName(text: str) -> str:
    """A node name argument (C{name@host})."""
    splitNodeName(text)
    return text


def positiveSeconds(text: str) -> int:
    """A positive number of seconds."""
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def registerClusterCommands(
    registry: CommandRegistry, membership: Membership, readiness: Readiness
) -> None:
    """Add C{cluster show}, C{cluster join} and C{cluster leave} to C{registry}."""
    registry.registerUsage(("cluster",), CLUSTER_USAGE)

    def show(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        rows = [[("Node", node), ("Running", running)] for node, running in readiness.status()]
        return [Table(rows)]

    async def join(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        discovery = keys.get("discovery-node")
        if discovery is None:
            return [
                Alert(
                    [
                        Text(
                            "You have to provide a discovery node "
                            "(example discovery-node=vernemq1@127.0.0.1)"
                        )
                    ]
                )
            ]
        try:
            outcome = await membership.join(discovery)
        except JoinRefused as refused:
            return [Alert([Text(f"Couldn't join cluster due to {refused.reason}")])]
        readiness.tick()
        out: list[Any] = []
        if outcome.history is not None:
            out.append(
                Text(
                    f"This node had local history ({outcome.history}): merged it into the cluster."
                )
            )
        if outcome.merged is not None:
            out.append(Text(outcome.merged[:1].upper() + outcome.merged[1:] + "."))
        out.append(Text("Done"))
        return out

    async def leave(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        node = keys.get("node")
        if node is None:
            return [Alert([Text("You have to provide a node")])]
        try:
            text = await membership.leave(
                node, kill=bool(flags.get("kill")), timeout=float(flags.get("timeout", 60))
            )
        except LeaveRefused as refused:
            return [Alert([Text(str(refused))])]
        return [Text(text)]

    registry.register(("cluster", "show"), show, usage=SHOW_USAGE)
    registry.register(
        ("cluster", "join"),
        join,
        keys=[KeySpec("discovery-node", nodeName)],
        usage=JOIN_USAGE,
    )
    registry.register(
        ("cluster", "leave"),
        leave,
        keys=[KeySpec("node", nodeName)],
        flags=[
            FlagSpec("kill", "k", "kill_sessions"),
            FlagSpec("summary_interval", "i", "summary-interval", positiveSeconds),
            FlagSpec("timeout", "t", "timeout", positiveSeconds),
        ],
        usage=LEAVE_USAGE,
    )


METADATA_USAGE = """\
vmq-admin cluster metadata [--format=json]

  Prints one row per prefix of this node's replica of the cluster metadata
  (subscribers, retained messages...): its live entries, its tombstones and
  a digest of every key and version. After a netsplit heals, every node
  prints the same table once the replicas have converged. Read-only.
"""


def metadataSummary(store: MetadataStore) -> list[list[tuple[str, Any]]]:
    """
    The rows of C{cluster metadata}: per prefix, sorted, the count of live
    entries and tombstones and a digest of the C{(key, version, deleted)}
    triples (equal digests: equal replicas of that prefix).
    """
    prefixes: dict[str, list[str]] = {}
    tombstones: dict[str, int] = {}
    for (prefix, key), (version, value) in store.snapshot().items():
        name = repr(prefix)
        deleted = value is TOMBSTONE
        prefixes.setdefault(name, []).append(repr((key, version, deleted)))
        tombstones[name] = tombstones.get(name, 0) + deleted
    rows = []
    for name in sorted(prefixes):
        lines = sorted(prefixes[name])
        digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]
        rows.append(
            [
                ("Prefix", name),
                ("Entries", len(lines) - tombstones[name]),
                ("Tombstones", tombstones[name]),
                ("Digest", digest),
            ]
        )
    return rows


def registerMetadataCommands(registry: CommandRegistry, store: MetadataStore) -> None:
    """Add the read-only C{cluster metadata} to C{registry}."""

    def metadata(keys: dict[str, Any], flags: dict[str, Any]) -> list[Any]:
        rows = metadataSummary(store)
        if not rows:
            return [Text("No metadata.")]
        return [Table(rows)]

    registry.register(("cluster", "metadata"), metadata, usage=METADATA_USAGE)


__all__ = ["metadataSummary", "registerClusterCommands", "registerMetadataCommands"]
