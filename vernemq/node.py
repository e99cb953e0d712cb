# -*- test-case-name: tests.test_node -*-
"""
One vernemq node as a tree of Twisted services.

L{makeNodeService} composes the broker, one listening service per MQTT
listener, the epmd service (L{vernemq.dist.epmd.service}: serve epmd or
register with the one running), the Erlang distribution listener
(L{vernemq.dist.service}: this node on the Erlang distribution, its name
published in epmd) and, when configured, the SSH manhole.  It
takes the reactor as an argument, so tests compose a node on a
L{MemoryReactorClock}; only L{vernemq.tap} passes the global reactor.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import Logger

from vernemq.broker.broker import Broker
from vernemq.cluster.service import Cluster, makeCluster
from vernemq.config import Config
from vernemq.consolelog import consoleLogService
from vernemq.dist.epmd.service import EpmdService, epmdServiceFromConfig
from vernemq.dist.node import Node
from vernemq.dist.service import (
    DistributionBindError,
    DistributionService,
    distributionServiceFromConfig,
)
from vernemq.listeners.compose import buildListener, clusterTLS
from vernemq.listeners.registry import ListenerRegistry
from vernemq.listeners.tls import ClientTLS, ServerTLS
from vernemq.listening import ListenerBindError, ListenerService

#: Listener kinds the node serves now; the others are parsed and shown but
#: their feature arrives in a later issue.
SERVED_LISTENER_KINDS = frozenset({"tcp", "ssl", "ws", "wss"})


class NodeService(MultiService):
    """
    The root service of a node.

    @ivar config: the validated configuration.
    @ivar broker: the live broker (also in the manhole namespace).
    @ivar epmd: the epmd service, unless C{erlang.epmd.mode = off}.
    @ivar distribution: the Erlang distribution listener.
    @ivar dist: this node on the Erlang distribution (L{vernemq.dist.node.Node}).
    @ivar cluster: membership, readiness and the admin commands
        (L{vernemq.cluster.service.Cluster}).
    @ivar registry: the MQTT listeners, for live control (start, stop, show).
    @ivar cluster_tls: C{listener.vmqs} name -> its (server, client) TLS
        contexts, for the cluster data channel.
    """

    log = Logger()

    def __init__(self, config: Config, broker: Broker) -> None:
        super().__init__()
        self.config = config
        self.broker = broker
        self.epmd: EpmdService | None = None
        self.distribution: DistributionService | None = None
        self.dist: Node | None = None
        self.cluster: Cluster | None = None
        self.registry = ListenerRegistry(broker)
        self.cluster_tls: dict[str, tuple[ServerTLS, ClientTLS]] = {}

    def listeners(self) -> list[ListenerService]:
        """Every listening service of this node, in configuration order."""
        return [s for s in self if isinstance(s, ListenerService)]

    def privilegedStartService(self) -> None:
        """
        Bind every port (twistd runs this before dropping privileges).  A
        port that cannot be bound stops the start with one line on stderr
        naming it, and exit status 1, instead of a traceback.
        """
        try:
            super().privilegedStartService()
        except (ListenerBindError, DistributionBindError) as error:
            sys.stderr.write(f"vernemq: {error}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None

    def _addresses(self) -> list[str]:
        """
        Every address this node listens on, for the start line: MQTT
        listeners, the Erlang distribution port and the cluster data
        channel (epmd, which may be served later, logs its own line).
        """
        found = [f"{s.label} on {s.address()}" for s in self.listeners()]
        distribution = getattr(self, "distribution", None)
        if distribution is not None and distribution.portNumber is not None:
            found.append(
                f"erlang distribution on {distribution.interface}:{distribution.portNumber}"
            )
        if self.cluster is not None:
            data = self.cluster.datachannel.connect_params()
            if data is not None:
                kind = "vmqs" if data.tls else "vmq"
                found.append(f"{kind} clustering on {data.host}:{data.port}")
        return found

    def startService(self) -> None:
        """Start every child, then say once where the node listens."""
        super().startService()
        reactor = self.broker.reactor
        if getattr(reactor, "running", True) is False:
            # Say "started" once the reactor runs: its SIGTERM handler is in
            # place by then, so a stop right after the line is a clean one.
            reactor.callWhenRunning(self._logStarted)  # type: ignore[attr-defined]
        else:
            self._logStarted()
        # Everything allocated so far lives as long as the node: move it out
        # of the cyclic collector's sight, so that full collections (which
        # otherwise walk every module, class and config object) stay short
        # and do not show in message latency.
        gc.collect()
        gc.freeze()

    def _logStarted(self) -> None:
        addresses = ", ".join(self._addresses())
        self.log.info(
            "node {nodename} started; listening: {addresses}",
            nodename=self.config["nodename"],
            addresses=addresses or "nothing",
        )

    def stopService(self) -> Any:
        """Close client connections, then stop listening."""
        self.broker.shutdown()
        d = super().stopService()
        self.log.info("node {nodename} stopped", nodename=self.config["nodename"])
        return d


def makeNodeService(config: Config, reactor: Any) -> NodeService:
    """
    Compose a node from C{config}.

    Warns once per configured key whose feature is not built yet.
    """
    log = Logger(namespace="vernemq.node")
    for key in config.unimplemented_keys():
        log.warn(
            "{key} is accepted but its feature is not implemented yet",
            key=key,
        )
    broker = Broker(config, reactor)
    node = NodeService(config, broker)
    for plugin in broker.auth_plugins:
        # vmq_passwd / vmq_acl: re-read their files while the node runs.
        plugin.setServiceParent(node)
    consoleLog = consoleLogService(config)
    if consoleLog is not None:
        consoleLog.setServiceParent(node)
    # The distribution port binds first: a node whose port range is used up
    # refuses to start before any MQTT client can connect to it.
    node.epmd = epmdServiceFromConfig(config, reactor)
    if node.epmd is not None:
        node.epmd.setServiceParent(node)
    node.distribution = distributionServiceFromConfig(config, reactor, node.epmd)
    node.dist = node.distribution.node
    node.distribution.setServiceParent(node)
    for spec in config.listeners:
        if spec.kind == "vmqs":
            # Before the cluster: its data channel serves and dials with them.
            node.cluster_tls[spec.name] = clusterTLS(config, spec)
    node.cluster = makeCluster(config, node, reactor)
    for spec in config.mqtt_listeners():
        if spec.kind not in SERVED_LISTENER_KINDS:
            continue
        listener = buildListener(config, spec, broker, reactor)
        node.registry.add(listener)
        listener.service.setServiceParent(node)
    if config["manhole"]:
        _manholeService(config, node, reactor).setServiceParent(node)
    return node


def _manholeService(config: Config, node: NodeService, reactor: Any) -> IService:
    from vernemq.manhole import makeManholeService

    host, port = config["manhole.listener"]
    hostKey = config["manhole.host_key_file"] or os.path.join(
        config["platform_data_dir"], "manhole_host_key"
    )
    namespace: dict[str, object] = {
        "node": node,
        "broker": node.broker,
        "epmd": node.epmd,
        "dist": node.dist,
        "cluster": node.cluster,
        "sessions": node.broker.sessions,
        "config": config,
        "reactor": reactor,
    }
    return makeManholeService(
        host=host,
        port=port,
        user=config["manhole.user"],
        authorized_keys_file=config["manhole.authorized_keys_file"],
        password_file=config["manhole.password_file"],
        host_key_file=hostKey,
        namespace=namespace,
        reactor=reactor,
    )
