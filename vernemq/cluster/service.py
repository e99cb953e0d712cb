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
    C{vmq-admin} as C{vmq:admin_command/1};
  - durable config (L{DurableConfig}): overrides in the metadata store
    applied to the broker, and C{vmq-admin config};
  - the replicated metadata store (L{MetadataService}, persisted in
    C{<platform_data_dir>/meta/metadata.sqlite3}) over the distribution
    (L{DistMetadataTransport}), told the members on every change and a
    peer's connection coming up, and merged with the discovery node on a
    join;
  - the data channel (L{DataChannelService}) on the C{listener.vmq.*}
    and C{listener.vmqs.*} listeners: member-only, one link per peer, the
    peer's data address asked over the distribution
    (C{vmq:cluster_data_address/0}; a wildcard bind address is replaced by
    the address the peer was reached at); TLS (L{DataChannelTLS}) with the
    contexts in C{node.cluster_tls}, for the C{vmqs} listeners and for
    dialling a peer that answers with one;
  - cluster routing (L{ClusterRouter}): replicated subscriptions and
    retained messages, one copy of a publish per remote node with a match;
    enqueues to remote shared-subscription members acknowledged over the
    distribution (L{vernemq.cluster.enqueue}), their data link's state
    deciding whether one is tried at all;
  - sessions across nodes (L{ClusterSessions}): registrations coordinated
    per C{coordinate_registrations}, takeover and queue migration, and the
    leave hooks L{LeaveHooks.migrateQueues} / L{LeaveHooks.fixDeadQueues}.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.admin.cli import exportAdminCommand
from vernemq.admin.cluster import registerClusterCommands, registerMetadataCommands
from vernemq.admin.config import registerConfigCommands
from vernemq.admin.registry import CommandRegistry
from vernemq.cluster.datachannel import (
    DataChannelService,
    DataChannelSettings,
    PeerAddress,
    cluster_listener_specs,
)
from vernemq.cluster.datatls import DataChannelTLS
from vernemq.cluster.durable_config import DurableConfig
from vernemq.cluster.membership import LeaveHooks, Membership
from vernemq.cluster.metadata import MergeReport, MetadataService, SqliteMetadataStorage
from vernemq.cluster.readiness import Readiness
from vernemq.cluster.routing import ClusterRouter
from vernemq.cluster.sessions import ClusterSessions
from vernemq.cluster.transport import DistMetadataTransport, DistTransport
from vernemq.dist.etf import Atom
from vernemq.dist.node import INodeObserver

if TYPE_CHECKING:
    from vernemq.node import NodeService


@dataclass
class Cluster:
    """The cluster parts of one node (C{node.cluster}, also in the manhole)."""

    transport: DistTransport
    membership: Membership
    readiness: Readiness
    admin: CommandRegistry
    metadata: MetadataService
    datachannel: DataChannelService
    router: ClusterRouter
    sessions: ClusterSessions | None = None
    durable_config: DurableConfig | None = None


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

    mdTransport = DistMetadataTransport(node.dist)
    metadata = MetadataService.create(
        transport.name,
        mdTransport,
        reactor,
        SqliteMetadataStorage.in_data_dir(config["platform_data_dir"]),
    )
    mdTransport.listen(metadata.store.receive)
    registerMetadataCommands(registry, metadata.store)
    holder: list[DataChannelService] = []
    router = ClusterRouter(
        transport.name,
        broker,
        metadata.store,
        lambda peer, item: holder[0].send(peer, item),
        reactor.seconds,
    )
    tls = DataChannelTLS(node.cluster_tls)
    datachannel = DataChannelService(
        transport.name,
        router,
        membership.isMember,
        dataAddressResolver(transport, rpcTimeout=config["cluster_ready_rpc_timeout"] / 1000.0),
        reactor,
        listeners=cluster_listener_specs(config),
        settings=DataChannelSettings.from_config(config),
        server_endpoint_factory=tls.server_endpoint,
        client_endpoint_factory=tls.client_endpoint,
        plain_message=router.plain_message,
    )
    holder.append(datachannel)
    router.set_sender(datachannel.send)
    exportDataAddress(transport, datachannel)

    def reachable(peer: str) -> bool:
        link = datachannel.channel(peer)
        return link is not None and link.reachable

    router.enqueues.attach(node.dist, reachable)
    sessions = ClusterSessions(
        broker,
        router,
        transport,
        reactor,
        running=lambda: [n for n, up in readiness.status() if up],
        send=lambda peer, item: holder[0].send(peer, item),
        rpcTimeout=config["cluster_ready_rpc_timeout"] / 1000.0,
        drainTime=config["max_drain_time"] / 1000.0,
        batch=config["max_msgs_per_drain_step"],
    )
    sessions.export()
    hooks.migrateQueues = sessions.migrateQueues
    hooks.fixDeadQueues = sessions.fixDeadQueues

    async def metadataJoin(discovery: str) -> str | None:
        d = metadata.join(discovery)
        d.addTimeout(max(membership.rpcTimeout, 10.0), reactor)
        try:
            report = await d
        except Exception as error:  # timeout or a failed exchange
            return f"metadata not merged yet ({error.__class__.__name__}); anti-entropy will"
        return describeMerge(report)

    membership.metadataJoin = metadataJoin
    membership.setServiceParent(node)
    readiness.setServiceParent(node)
    metadata.setServiceParent(node)
    durableConfig = DurableConfig(metadata.store, broker)  # started once the store is loaded
    registerConfigCommands(registry, durableConfig)
    durableConfig.setServiceParent(node)
    datachannel.setServiceParent(node)
    ClusterRouting(membership, transport, metadata, datachannel, router).setServiceParent(node)
    return Cluster(
        transport, membership, readiness, registry, metadata, datachannel, router, sessions,
        durableConfig,
    )


def describeMerge(report: MergeReport) -> str | None:
    """
    One line about a join's metadata merge, for the C{cluster join} output;
    L{None} when both stores were already equal (e.g. two fresh nodes).
    """
    if report.in_sync:
        return None
    return (
        f"metadata merged with {report.peer}: {report.received} entries received, "
        f"{report.replaced} replaced by newer ones, {report.kept} kept (ours newer), "
        f"{report.sent} sent"
    )


def _wildcard(host: str) -> bool:
    try:
        return host == "" or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def exportDataAddress(transport: DistTransport, datachannel: DataChannelService) -> None:
    """
    Export C{vmq:cluster_data_address()}: this node's answer to the
    data-port probe, C{{tcp | tls, Host, Port}} or C{undefined}.
    """

    def dataAddress() -> Any:
        params = datachannel.connect_params()
        if params is None:
            return Atom("undefined")
        return (Atom("tls" if params.tls else "tcp"), params.host.encode("utf-8"), params.port)

    transport.export("cluster_data_address", dataAddress)


def dataAddressResolver(
    transport: DistTransport, rpcTimeout: float
) -> Callable[[str], Deferred[PeerAddress | None]]:
    """
    C{resolve(node)} for the data channel: ask C{node} over the
    distribution where its data listener is; a wildcard bind address is
    replaced by the address the distribution reached it at (else the host
    part of its name).
    """

    async def resolve(peer: str) -> PeerAddress | None:
        answer = await transport.call(peer, "cluster_data_address", [], rpcTimeout)
        if not (isinstance(answer, tuple) and len(answer) == 3):
            return None
        kind, rawHost, port = answer
        host = rawHost.decode("utf-8") if isinstance(rawHost, bytes) else str(rawHost)
        if _wildcard(host):
            host = transport.peerHost(peer) or peer.partition("@")[2]
        return PeerAddress(host, int(port), kind == "tls")

    return lambda peer: Deferred.fromCoroutine(resolve(peer))


@implementer(INodeObserver)
class ClusterRouting(Service):
    """
    Feeds membership changes to the metadata store, the data channel and
    the router, and a peer's connection coming up to the store (repair at
    once).  Started after them, so their state is loaded.
    """

    log = Logger()
    name = "cluster-routing"

    def __init__(
        self,
        membership: Membership,
        transport: DistTransport,
        metadata: MetadataService,
        datachannel: DataChannelService,
        router: ClusterRouter,
    ) -> None:
        self.membership = membership
        self.transport = transport
        self.metadata = metadata
        self.datachannel = datachannel
        self.router = router
        self._cancels: list[Callable[[], None]] = []

    def startService(self) -> None:
        """Index the store, take the current members, follow changes."""
        Service.startService(self)
        self.router.start(self.membership.peers())
        self.membersChanged(self.membership.members())
        self._cancels = [
            self.membership.subscribe(self.membersChanged),
            self.transport.subscribe(self),
        ]

    def stopService(self) -> None:
        """Stop following; the broker routes locally only."""
        Service.stopService(self)
        for cancel in self._cancels:
            cancel()
        self._cancels = []
        self.router.stop()

    def membersChanged(self, members: list[str]) -> None:
        """The member set changed."""
        me = self.membership.nodeName
        peers = [m for m in members if m != me]
        self.metadata.store.set_members(members)
        for peer in peers:
            self.datachannel.add_peer(peer)
        for peer in self.datachannel.peers():
            if peer not in peers:
                self.datachannel.remove_peer(peer)
        self.router.set_peers(peers)

    def nodeUp(self, node: Atom) -> None:
        """A distribution connection came up: repair metadata at once."""
        peer = str(node)
        if self.membership.isMember(peer) and peer != self.membership.nodeName:
            self.metadata.store.peer_up(peer)

    def nodeDown(self, node: Atom, reason: str) -> None:
        """Nothing: the data link buffers and reconnects by itself."""




__all__ = [
    "Cluster",
    "ClusterRouting",
    "dataAddressResolver",
    "describeMerge",
    "exportDataAddress",
    "makeCluster",
]
