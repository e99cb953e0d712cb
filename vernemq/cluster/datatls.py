# -*- test-case-name: tests.test_cluster_datatls -*-
"""
The cluster data channel over TLS: C{listener.vmqs.<name>}.

L{DataChannelTLS} gives L{vernemq.cluster.datachannel.DataChannelService}
its two endpoint factories, from the TLS contexts the node built for its
C{vmqs} listeners (L{vernemq.listeners.compose.clusterTLS}, at start, so a
bad file stops the node naming its key):

  - L{DataChannelTLS.server_endpoint}: a C{vmqs} listener listens on plain
    TCP under a TLS layer with its L{ServerTLS} context and the handshake
    deadline C{tls_handshake_timeout}.  With C{require_certificate} a
    peer must present a certificate that verifies against the listener's
    C{cafile} (as VerneMQ's C{vmqs} does); a handshake that fails or times
    out closes the connection with one warning naming the reason.  A
    C{vmq} listener stays plain TCP.
  - L{DataChannelTLS.client_endpoint}: a peer whose data-port probe
    answers TLS (it has a C{vmqs} listener, which it prefers, as in
    VerneMQ) is dialled with the L{ClientTLS} context of this node's first
    C{vmqs} listener: its certificate and key are presented, and the
    peer's certificate must verify against its C{cafile} (VerneMQ's
    client checks nothing; the peer's name is not checked, since peers are
    dialled by address).  A peer answering plain TCP is dialled in plain
    TCP.

A node without a C{vmqs} listener cannot dial a peer that has one: the
link to that peer reports it (once) and keeps retrying.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, serverFromString, wrapClientTLS
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from vernemq.cluster.datachannel import PeerAddress, tcp_server_endpoint
from vernemq.config.loader import ListenerSpec
from vernemq.listeners.tls import ClientTLS, ServerTLS, tlsFactory

__all__ = ["DataChannelTLS", "TLSServerEndpoint"]


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    A server endpoint that listens on C{endpoint} with every accepted
    connection wrapped in TLS (L{tlsFactory}: the context and a handshake
    deadline).

    @ivar endpoint: the plain TCP (or unix) endpoint underneath.
    @ivar tls: the server context.
    @ivar timeout: the handshake deadline in seconds.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        tls: ServerTLS,
        reactor: IReactorTime,
        timeout: float,
    ) -> None:
        self.endpoint = endpoint
        self.tls = tls
        self.reactor = reactor
        self.timeout = timeout

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with C{protocolFactory} under the TLS layer."""
        wrapped = tlsFactory(protocolFactory, self.tls, self.reactor, self.timeout)
        listening: Deferred[IListeningPort] = self.endpoint.listen(wrapped)
        return listening


class DataChannelTLS:
    """
    The data channel's endpoint factories for a node's C{vmqs} listeners.

    @ivar servers: C{vmqs} listener name -> its server context.
    @ivar client: the client context peers are dialled with (the first
        C{vmqs} listener's), or L{None} without a C{vmqs} listener.
    """

    def __init__(self, contexts: Mapping[str, tuple[ServerTLS, ClientTLS]]) -> None:
        """
        @param contexts: C{vmqs} listener name -> its (server, client)
            contexts, in configuration order (C{NodeService.cluster_tls}).
        """
        self.servers = {name: server for name, (server, _client) in contexts.items()}
        self.client: ClientTLS | None = next(
            (client for _server, client in contexts.values()), None
        )

    def server_endpoint(self, reactor: Any, spec: ListenerSpec) -> IStreamServerEndpoint:
        """
        C{server_endpoint_factory}: TLS for a C{vmqs} listener, plain TCP
        for a C{vmq} one.

        @raise ValueError: for a C{vmqs} listener without a context.
        """
        if spec.kind != "vmqs":
            return tcp_server_endpoint(reactor, spec)
        tls = self.servers.get(spec.name)
        if tls is None:
            raise ValueError(f"{spec.key} has no TLS context")
        timeout = spec.settings.get("tls_handshake_timeout", 5000) / 1000.0
        plain = serverFromString(reactor, spec.endpoint_description(tls=False))
        return TLSServerEndpoint(plain, tls, reactor, timeout)

    def client_endpoint(
        self, reactor: Any, address: PeerAddress, timeout: float
    ) -> IStreamClientEndpoint:
        """
        C{client_endpoint_factory}: TLS with our client context when the
        peer advertises it, else plain TCP.

        @raise ValueError: if the peer wants TLS and this node has no
            C{vmqs} listener to take a certificate and CA file from.
        """
        tcp = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
        if not address.tls:
            return tcp
        if self.client is None:
            raise ValueError(
                f"the peer's data channel at {address.host}:{address.port} is TLS (vmqs) and"
                " this node has no listener.vmqs.* to take its certificates from"
            )
        secured: IStreamClientEndpoint = wrapClientTLS(self.client, tcp)
        return secured
