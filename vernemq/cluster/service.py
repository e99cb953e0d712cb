# -*- test-case-name: tests.test_cluster_membership -*-
"""
Compose the cluster parts of a node: membership, readiness, the netsplit
gate of the broker, and the C{vmq-admin} commands.

L{makeCluster} is called by L{vernemq.node.makeNodeService} once the
distribution node exists.  It wires:

  - L{Membership} over the distribution (L{DistTransport}), persisted under
    C{platform_data_dir}, with the leave hooks: stop this node's MQTT
    listeners, disconnect its clients, stop the node; queue migration and
    the recreation of a dead node's queues are routing's (no-ops until
    routing fills L{LeaveHooks.migrateQueues} / L{LeaveHooks.fixDeadQueues});
  - L{Readiness}, detecting a silent member within
    C{netsplit_detection_time}, probing with C{cluster_ready_rpc_timeout};
    its state sets C{broker.netsplit}, which gates CONNECT, PUBLISH,
    SUBSCRIBE and UNSUBSCRIBE per the C{allow_*_during_netsplit} flags;
  - the command registry with the C{cluster} family, served to
    C{vmq-admin} as C{vmq:admin_command/1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList

from vernemq.admin.cli import exportAdminCommand
from vernemq.admin.cluster import registerClusterCommands
from vernemq.admin.registry import CommandRegistry
from vernemq.cluster.membership import LeaveHooks, Membership
from vernemq.cluster.readiness import Readiness
from vernemq.cluster.transport import DistTransport

if TYPE_CHECKING:
    from vernemq.node import NodeService


@dataclass
class Cluster:
    """The cluster parts of one node (C{node.cluster}, also in the manhole)."""

    transport: DistTransport
    membership: Membership
    readiness: Readiness
    admin: CommandRegistry


def _history(node: NodeService) -> str | None:
    """Sessions or retained messages this node holds (its local history)."""
    stats = node.broker.stats()
    parts = []
    if stats.get("sessions"):
        parts.append(f"{stats['sessions']} sessions")
    if stats.get("retained"):
        parts.append(f"{stats['retained']} retained messages")
    return " and ".join(parts) or None


def _stopListeners(node: NodeService) -> Deferred[Any]:
    stops = [listener.stopService() for listener in node.listeners() if listener.running]
    return DeferredList(stops, consumeErrors=True)


def makeCluster(config: Any, node: NodeService, reactor: Any) -> Cluster:
    """Build the cluster parts of C{node} and attach their services to it."""
    assert node.dist is not None
    transport = DistTransport(node.dist)
    hooks = LeaveHooks(
        stopListeners=lambda: _stopListeners(node),
        killSessions=node.broker.shutdown,
        stopNode=lambda: reactor.stop() if getattr(reactor, "running", False) else None,
    )
    membership = Membership(
        transport,
        reactor,
        config["platform_data_dir"],
        historyProbe=lambda: _history(node),
        hooks=hooks,
        rpcTimeout=config["cluster_ready_rpc_timeout"] / 1000.0,
    )
    readiness = Readiness(
        membership,
        transport,
        reactor,
        detectionTime=config["netsplit_detection_time"] / 1000.0,
        rpcTimeout=config["cluster_ready_rpc_timeout"] / 1000.0,
    )
    broker = node.broker

    def gate(ready: bool) -> None:
        broker.netsplit = not ready

    readiness.subscribe(gate)
    registry = CommandRegistry()
    registerClusterCommands(registry, membership, readiness)
    exportAdminCommand(node.dist.exports, registry)
    membership.setServiceParent(node)
    readiness.setServiceParent(node)
    return Cluster(transport, membership, readiness, registry)


__all__ = ["Cluster", "makeCluster"]
