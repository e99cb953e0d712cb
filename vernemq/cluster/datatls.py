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
    client checks nothing).  A peer answering plain TCP is dialled in
    plain TCP.

Node names and certificates
===========================

With C{require_certificate = on} a certificate is tied to the node name
it comes with (C{verify_nodename}, on by default; VerneMQ has no such
check): the host part of the name (after C{@}) must be one the
certificate names (L{certificate_matches_host}: a C{subjectAltName} DNS
entry, C{*.} wildcards for one leftmost label included, or IP entry; the
subject CN only for a certificate without DNS or IP entries).

  - Inbound: a connection to the listener whose C{vmq-connect} hello
    claims a node its certificate does not name is refused with
    C{certificate_name_mismatch} (one warning naming what the certificate
    names), like the data channel's other refusals.
  - Outbound: the peer's certificate must name the host of the peer's
    node name (not the address it is dialled at, which the data-port
    probe chose); otherwise the handshake is failed and the link logs
    it once.  The client side follows the settings of the listener whose
    context it dials with.

C{listener.vmqs.<name>.verify_nodename = off} (or C{listener.vmqs.verify_nodename}
for every C{vmqs} listener) verifies the chain only, as before.

A node without a C{vmqs} listener cannot dial a peer that has one: the
link to that peer reports it (once) and keeps retrying.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, serverFromString, wrapClientTLS
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.cluster.datachannel import CertificateCheck, PeerAddress, tcp_server_endpoint
from vernemq.config.loader import ListenerSpec
from vernemq.listeners.tls import ClientTLS, ServerTLS, certificate_cn, tlsFactory

__all__ = [
    "DataChannelTLS",
    "TLSClientEndpoint",
    "TLSServerEndpoint",
    "certificate_matches_host",
    "certificate_names",
    "checks_node_names",
]

_log = Logger(namespace="vernemq.cluster.datatls")

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------------------
# Matching a node name's host against a certificate


def _ip(text: str) -> _IP | None:
    """C{text} as an IP address (brackets and a zone dropped), or L{None}."""
    try:
        address = ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _dns(name: str) -> str:
    """A DNS name compared as such: lower case, no trailing dot."""
    return name.lower().rstrip(".")


def _dns_matches(pattern: str, host: str) -> bool:
    """
    Whether DNS name C{pattern} names C{host}: equal ignoring case, or
    C{*.rest} matching exactly one leftmost label before C{rest} (which
    must have two labels or more: no C{*.com}).  Other wildcards (C{f*.},
    C{*} elsewhere) match only themselves.
    """
    pattern, host = _dns(pattern), _dns(host)
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        rest = pattern[2:]
        label, dot, tail = host.partition(".")
        return bool(dot and label and "." in rest and "*" not in rest and tail == rest)
    return pattern == host


def certificate_names(cert: x509.Certificate) -> tuple[list[str], list[_IP], str | None]:
    """
    What a certificate names: its C{subjectAltName} DNS entries, its IP
    entries (IPv4-mapped IPv6 read as IPv4), and its subject CN.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        dns: list[str] = []
        ips: list[_IP] = []
    else:
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = []
        for value in san.get_values_for_type(x509.IPAddress):
            if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                address = _ip(str(value))
                if address is not None:
                    ips.append(address)
    return dns, ips, certificate_cn(cert)


def certificate_matches_host(cert: x509.Certificate, host: str) -> bool:
    """
    Whether C{cert} names C{host} (a node name's host part): an IP address
    must be one of its C{subjectAltName} IP entries, a DNS name one of its
    DNS entries (ignoring case; C{*.example.com} names C{a.example.com},
    not C{example.com} nor C{a.b.example.com}).  A certificate without DNS
    or IP entries is matched on its subject CN instead (RFC 6125 reads it
    only then).
    """
    dns, ips, cn = certificate_names(cert)
    address = _ip(host)
    if dns or ips:
        if address is not None:
            return address in ips
        return any(_dns_matches(pattern, host) for pattern in dns)
    if cn is None:
        return False
    if address is not None:
        return _ip(cn) == address
    return _dns_matches(cn, host)


def describe_names(cert: x509.Certificate) -> str:
    """What a certificate names, for a log line: C{DNS:a, IP:10.0.0.1} or C{CN a}."""
    dns, ips, cn = certificate_names(cert)
    if dns or ips:
        return ", ".join([f"DNS:{name}" for name in dns] + [f"IP:{ip}" for ip in ips])
    return f"CN {cn}" if cn is not None else "no name"


def _mismatch(cert: x509.Certificate, node: str, label: str, whose: str = "its") -> str | None:
    """Why C{cert} is not C{node}'s, or L{None} if it is."""
    host = node.partition("@")[2]
    if certificate_matches_host(cert, host):
        return None
    return (
        f"{whose} certificate names {describe_names(cert)}, not {host}"
        f" ({label}.verify_nodename = off skips this check)"
    )


def checks_node_names(settings: Mapping[str, Any]) -> bool:
    """
    Whether a C{vmqs} listener with C{settings} ties certificates to node
    names: C{verify_nodename} (default on) with C{require_certificate}.
    """
    return bool(settings.get("require_certificate")) and bool(settings.get("verify_nodename", True))


# ---------------------------------------------------------------------------
# The inbound side


def _inbound_check(label: str) -> CertificateCheck:
    """The hello check of a listener that ties certificates to node names."""

    def check(node: str, transport: Any) -> str | None:
        get = getattr(transport, "getPeerCertificate", None)
        cert = get() if get is not None else None
        if cert is None:
            return None
        return _mismatch(cert.to_cryptography(), node, label)

    return check


@implementer(IProtocolFactory)
class _NodeNameCheckingFactory:
    """
    Gives every protocol C{wrapped} builds the listener's certificate check
    (L{vernemq.cluster.datachannel.InboundDataProtocol.certificate_check}).
    """

    def __init__(self, wrapped: IProtocolFactory, check: CertificateCheck) -> None:
        self.wrappedFactory = wrapped
        self.check = check

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return str(prefix()) if prefix is not None else self.__class__.__name__

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: Any) -> IProtocol | None:
        protocol = self.wrappedFactory.buildProtocol(addr)
        if protocol is not None:
            protocol.certificate_check = self.check  # type: ignore[attr-defined]
        return protocol


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    A server endpoint that listens on C{endpoint} with every accepted
    connection wrapped in TLS (L{tlsFactory}: the context and a handshake
    deadline).

    @ivar endpoint: the plain TCP (or unix) endpoint underneath.
    @ivar tls: the server context.
    @ivar timeout: the handshake deadline in seconds.
    @ivar check: the certificate check the data channel applies to a
        connection's hello, or L{None} (the chain only).
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        tls: ServerTLS,
        reactor: IReactorTime,
        timeout: float,
        check: CertificateCheck | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tls = tls
        self.reactor = reactor
        self.timeout = timeout
        self.check = check

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with C{protocolFactory} under the TLS layer."""
        if self.check is not None:
            protocolFactory = _NodeNameCheckingFactory(protocolFactory, self.check)
        wrapped = tlsFactory(protocolFactory, self.tls, self.reactor, self.timeout)
        listening: Deferred[IListeningPort] = self.endpoint.listen(wrapped)
        return listening


# ---------------------------------------------------------------------------
# The outbound side


#: The client connections whose peer must be a node: connection -> (the
#: node, its TLS protocol).  Weak: an entry goes with its connection.
_EXPECTED: weakref.WeakKeyDictionary[SSL.Connection, tuple[str, weakref.ref[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _check_server_name(conn: SSL.Connection, where: int, ret: int, label: str) -> None:
    """
    The client context's info callback: once the handshake is done, fail
    it (as Twisted's own hostname check does) if the peer's certificate
    does not name the node this connection dials.
    """
    if not where & SSL.SSL_CB_HANDSHAKE_DONE:
        return
    expected = _EXPECTED.pop(conn, None)
    if expected is None:
        return
    node, ref = expected
    try:
        cert = conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            why: str | None = "the peer presented no certificate"
        else:
            why = _mismatch(cert, node, label, "the peer's")
        if why is None:
            return
        protocol = ref()
        if protocol is not None:
            # OpenSSL's error shape, so the link logs why as for a
            # failed handshake.
            error = SSL.Error([("vernemq", "verify_nodename", why)])
            protocol.failVerification(Failure(error))
    except Exception:
        _log.failure("checking the certificate of {node}", node=node)
        protocol = ref()
        if protocol is not None:
            protocol.abortConnection()


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    C{endpoint} under TLS with C{client}'s context; when C{check_names},
    the peer's certificate must name the node the protocol factory dials
    (its C{peer}: the data channel's link factories have one).

    @ivar client: the client context.
    @ivar check_names: whether the peer's certificate is tied to its node name.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, client: ClientTLS, check_names: bool
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.check_names = check_names

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect, then TLS; the handshake checks the peer's node name."""
        node = getattr(protocolFactory, "peer", None)
        creator: IOpenSSLClientConnectionCreator = self.client
        if self.check_names and isinstance(node, str) and node:
            creator = _NodeClientTLS(self.client, node)
        connecting: Deferred[IProtocol] = wrapClientTLS(creator, self.endpoint).connect(
            protocolFactory
        )
        return connecting


@implementer(IOpenSSLClientConnectionCreator)
class _NodeClientTLS:
    """
    Connections of a L{ClientTLS} context whose peer's certificate must
    name C{node}'s host.
    """

    def __init__(self, client: ClientTLS, node: str) -> None:
        self.client = client
        self.node = node

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = self.client.clientConnectionForTLS(tlsProtocol)
        _EXPECTED[conn] = (self.node, weakref.ref(tlsProtocol))
        return conn


# ---------------------------------------------------------------------------
# Both


class DataChannelTLS:
    """
    The data channel's endpoint factories for a node's C{vmqs} listeners.

    @ivar servers: C{vmqs} listener name -> its server context.
    @ivar client: the client context peers are dialled with (the first
        C{vmqs} listener's), or L{None} without a C{vmqs} listener.
    @ivar client_listener: the name of that listener.
    """

    def __init__(self, contexts: Mapping[str, tuple[ServerTLS, ClientTLS]]) -> None:
        """
        @param contexts: C{vmqs} listener name -> its (server, client)
            contexts, in configuration order (C{NodeService.cluster_tls}).
        """
        self.servers = {name: server for name, (server, _client) in contexts.items()}
        first = next(iter(contexts.items()), None)
        self.client_listener: str | None = first[0] if first is not None else None
        self.client: ClientTLS | None = first[1][1] if first is not None else None
        #: listener name -> whether it checks node names, from its settings.
        self._checks: dict[str, bool] = {}
        if self.client is not None:
            label = self.client.label

            def info(conn: SSL.Connection, where: int, ret: int) -> None:
                _check_server_name(conn, where, ret, label)

            self.client.context.set_info_callback(info)

    def checks_node_names(self, listener: str) -> bool:
        """
        Whether C{vmqs} listener C{listener} ties certificates to node
        names: from its settings once L{server_endpoint} has seen them,
        else (the default of C{verify_nodename}) whenever its context
        requires certificates.
        """
        known = self._checks.get(listener)
        if known is not None:
            return known
        server = self.servers.get(listener)
        return server is not None and server.require_certificate

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
        self._checks[spec.name] = checks_node_names(spec.settings)
        timeout = spec.settings.get("tls_handshake_timeout", 5000) / 1000.0
        plain = serverFromString(reactor, spec.endpoint_description(tls=False))
        check = _inbound_check(spec.key) if self.checks_node_names(spec.name) else None
        return TLSServerEndpoint(plain, tls, reactor, timeout, check)

    def client_endpoint(
        self, reactor: Any, address: PeerAddress, timeout: float
    ) -> IStreamClientEndpoint:
        """
        C{client_endpoint_factory}: TLS with our client context when the
        peer advertises it (L{TLSClientEndpoint}), else plain TCP.  When
        our listener ties certificates to node names, the peer's must name
        the host of the node dialled.

        @raise ValueError: if the peer wants TLS and this node has no
            C{vmqs} listener to take a certificate and CA file from.
        """
        tcp = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
        if not address.tls:
            return tcp
        if self.client is None or self.client_listener is None:
            raise ValueError(
                f"the peer's data channel at {address.host}:{address.port} is TLS (vmqs) and"
                " this node has no listener.vmqs.* to take its certificates from"
            )
        return TLSClientEndpoint(tcp, self.client, self.checks_node_names(self.client_listener))
