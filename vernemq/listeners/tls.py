# -*- test-case-name: tests.test_listeners_tls -*-
"""
TLS for listeners (C{listener.ssl}, C{listener.wss}, C{listener.vmqs}).

L{ServerTLS} turns a listener's TLS settings into a pyOpenSSL context,
once, when the node is composed (so a missing or bad file stops the node
at start, with the key that named it):

  - C{certfile} (a PEM chain, leaf first) and C{keyfile}: required;
  - C{cafile} / C{capath}: the CAs client certificates are verified
    against; required by C{require_certificate} and
    C{use_identity_as_username};
  - C{require_certificate}: a client without a valid certificate fails
    the handshake; C{use_identity_as_username} alone asks for one;
  - C{crlfile}: a PEM CRL; revoked client certificates fail the handshake;
  - C{depth}: the longest accepted chain (VerneMQ's default 1: the CA
    signs the client certificate directly);
  - C{ciphers}: an OpenSSL cipher list for TLS up to 1.2 (TLS 1.3 suites
    are OpenSSL's defaults);
  - C{tls_version}: the lowest protocol version accepted (higher ones are
    negotiated when both sides have them).

L{TLSHandshakeGuard} sits between the TLS layer and the listener's
protocol: it aborts a connection whose handshake has not finished after
C{tls_handshake_timeout} milliseconds (a silent client does not hold a
slot), and logs one warning for a handshake that failed (no certificate,
untrusted, expired, revoked, not TLS at all).

L{client_identity} reads the verified client certificate's CN for
C{use_identity_as_username}; L{ClientTLS} is the client side of the
cluster data channel over C{vmqs}.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "ClientTLS",
    "ServerTLS",
    "TLSConfigError",
    "TLSHandshakeGuard",
    "client_identity",
    "describe_handshake_failure",
    "tlsFactory",
]

_VERSIONS = {
    "tlsv1": SSL.TLS1_VERSION,
    "tlsv1.1": SSL.TLS1_1_VERSION,
    "tlsv1.2": SSL.TLS1_2_VERSION,
    "tlsv1.3": SSL.TLS1_3_VERSION,
}


#: OpenSSL verify error numbers worth naming in the log line.
_VERIFY_ERRORS = {
    3: "no CRL for the certificate's issuer",
    9: "client certificate not yet valid",
    10: "client certificate has expired",
    12: "CRL has expired",
    18: "self-signed client certificate",
    19: "self-signed certificate in the client's chain",
    20: "client certificate not issued by a trusted CA",
    21: "client certificate not issued by a trusted CA",
    22: "client certificate chain longer than depth",
    23: "client certificate revoked",
}


#: Why verification refused a connection's certificate, for its log line
#: (the app data slot of a connection belongs to Twisted).
_VERIFY_FAILURES: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()


def _verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    """Let OpenSSL decide; remember its first reason to refuse, for the log."""
    if not ok and conn not in _VERIFY_FAILURES:
        _VERIFY_FAILURES[conn] = _VERIFY_ERRORS.get(errno, f"certificate verify error {errno}")
    return bool(ok)


class TLSConfigError(Exception):
    """A listener's TLS settings cannot make a working context."""


def _context(settings: Mapping[str, Any], label: str, method: int) -> SSL.Context:
    """The parts of a context shared by the server and client sides."""
    for name in ("certfile", "keyfile", "cafile", "crlfile"):
        path = settings.get(name)
        if path and not os.access(path, os.R_OK):
            raise TLSConfigError(f"{label}.{name}: cannot read {path}")
    capath = settings.get("capath")
    if capath and not os.path.isdir(capath):
        raise TLSConfigError(f"{label}.capath: {capath} is not a directory")
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(_VERSIONS[settings.get("tls_version") or "tlsv1.2"])
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    ciphers = settings.get("ciphers")
    if ciphers:
        try:
            ctx.set_cipher_list(ciphers.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError) as e:
            raise TLSConfigError(f"{label}.ciphers: no usable cipher in {ciphers!r}: {e}") from None
    certfile, keyfile = settings.get("certfile"), settings.get("keyfile")
    if certfile:
        try:
            ctx.use_certificate_chain_file(certfile)
        except SSL.Error as e:
            raise TLSConfigError(f"{label}.certfile: cannot load {certfile}: {e}") from None
    if keyfile:
        try:
            ctx.use_privatekey_file(keyfile)
        except SSL.Error as e:
            raise TLSConfigError(f"{label}.keyfile: cannot load {keyfile}: {e}") from None
    if certfile and keyfile:
        try:
            ctx.check_privatekey()
        except SSL.Error:
            raise TLSConfigError(
                f"{label}.keyfile: {keyfile} is not the key of {certfile}"
            ) from None
    cafile, capath = settings.get("cafile"), settings.get("capath")
    if cafile or capath:
        try:
            ctx.load_verify_locations(cafile, capath)
        except SSL.Error as e:
            raise TLSConfigError(f"{label}.cafile: cannot load {cafile or capath}: {e}") from None
    crlfile = settings.get("crlfile")
    if crlfile:
        try:
            with open(crlfile, "rb") as f:
                crl = x509.load_pem_x509_crl(f.read())
        except (OSError, ValueError) as e:
            raise TLSConfigError(f"{label}.crlfile: cannot load {crlfile}: {e}") from None
        store = ctx.get_cert_store()
        assert store is not None
        store.add_crl(crl)
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    ctx.set_verify_depth(int(settings.get("depth", 1)))
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The server side of one TLS listener: a pyOpenSSL context built once
    from the listener's settings.

    @ivar label: the listener key, e.g. C{listener.ssl.default}.
    @ivar require_certificate: whether clients must present a valid certificate.
    @ivar use_identity_as_username: whether the certificate CN is the username.
    """

    def __init__(self, settings: Mapping[str, Any], label: str) -> None:
        self.label = label
        if not settings.get("certfile") or not settings.get("keyfile"):
            raise TLSConfigError(f"{label}: a TLS listener needs certfile and keyfile")
        self.require_certificate = bool(settings.get("require_certificate"))
        self.use_identity_as_username = bool(settings.get("use_identity_as_username", False))
        verify = self.require_certificate or self.use_identity_as_username
        if verify and not (settings.get("cafile") or settings.get("capath")):
            raise TLSConfigError(
                f"{label}: require_certificate and use_identity_as_username need a cafile"
            )
        ctx = _context(settings, label, SSL.TLS_SERVER_METHOD)
        ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        # A session id context: without one OpenSSL refuses to resume
        # sessions of a context that verifies client certificates.
        ctx.set_session_id(hashlib.sha256(label.encode("utf-8")).digest()[:32])
        if verify:
            mode = SSL.VERIFY_PEER
            if self.require_certificate:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, _verify)
        else:
            ctx.set_verify(SSL.VERIFY_NONE)
        self.context = ctx

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A new server-side connection for one accepted client."""
        return SSL.Connection(self.context, None)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """
    The client side of the cluster data channel over C{vmqs}: our
    certificate (certfile/keyfile), peers verified against cafile.  The
    peer's name is not checked (peers are dialled by address, as in
    VerneMQ, whose vmqs client verifies the chain only).
    """

    def __init__(self, settings: Mapping[str, Any], label: str) -> None:
        self.label = label
        if not (settings.get("cafile") or settings.get("capath")):
            raise TLSConfigError(f"{label}: the vmqs client side needs a cafile")
        ctx = _context(settings, label, SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_PEER)
        self.context = ctx

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """A new client-side connection to one peer."""
        conn = SSL.Connection(self.context, None)
        conn.set_connect_state()
        return conn


def certificate_cn(cert: x509.Certificate) -> str | None:
    """The (first) common name of a certificate's subject, if any."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def client_identity(transport: Any) -> str | None:
    """
    The CN of the verified client certificate on the TLS connection under
    C{transport} (wrappers delegate C{getPeerCertificate} down), or
    C{None} when the client presented none.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        cert = get()
    except SSL.Error:
        return None
    if cert is None:
        return None
    return certificate_cn(cert.to_cryptography())


@implementer(IHandshakeListener, ITransport)
class TLSHandshakeGuard(ProtocolWrapper):
    """
    Between the TLS layer and the listener's protocol: abort after
    C{timeout} seconds without a finished handshake; one warning for a
    failed handshake.
    """

    log = Logger(namespace="vernemq.listeners.tls")
    factory: TLSHandshakeGuardFactory

    def __init__(self, factory: TLSHandshakeGuardFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._timer: IDelayedCall | None = None
        self._handle: Any = None
        self._done = False
        self._reported = False

    def makeConnection(self, transport: Any) -> None:
        """
        As L{ProtocolWrapper.makeConnection}, but without claiming the TLS
        transport's interfaces: autobahn would then reach through us for
        TLS internals.  C{getPeerCertificate} still reaches the TLS layer.
        """
        handle = getattr(transport, "getHandle", None)
        self._handle = handle() if handle is not None else None
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)

    def connectionMade(self) -> None:
        """Start the handshake deadline."""
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._expired)

    def handshakeCompleted(self) -> None:
        """The handshake finished: no deadline any more."""
        self._done = True
        self._cancel()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def abortConnection(self) -> None:
        """The wrapped protocol closes on its own account: nothing to report."""
        self._reported = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def loseConnection(self) -> None:
        """The wrapped protocol closes on its own account: nothing to report."""
        self._reported = True
        ProtocolWrapper.loseConnection(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Log a failed handshake once, then tell the wrapped protocol."""
        self._cancel()
        if not self._done and not self._reported:
            self._reported = True
            why = describe_handshake_failure(reason)
            detail = _verify_detail(self._handle)
            self.log.warn(
                "closing connection from {peer} on listener {listener}: "
                "TLS handshake failed: {why}",
                peer=_peer_text(self),
                listener=self.factory.label,
                why=why if detail is None else detail,
            )
        self._handle = None
        ProtocolWrapper.connectionLost(self, reason)

    def _expired(self) -> None:
        self._timer = None
        if self._done:
            return
        self._reported = True
        self.log.warn(
            "closing connection from {peer} on listener {listener}: "
            "no TLS handshake within {timeout:g} ms",
            peer=_peer_text(self),
            listener=self.factory.label,
            timeout=self.factory.timeout * 1000,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._done:
            self._handle = None


class TLSHandshakeGuardFactory(WrappingFactory[TLSHandshakeGuard]):
    """Wraps the listener's factory with L{TLSHandshakeGuard}."""

    protocol = TLSHandshakeGuard
    noisy = False

    def __init__(
        self, wrappedFactory: IProtocolFactory, reactor: IReactorTime, label: str, timeout: float
    ) -> None:
        super().__init__(wrappedFactory)
        self.reactor = reactor
        self.label = label
        self.timeout = timeout


def describe_handshake_failure(reason: Failure) -> str:
    """
    Why a TLS connection failed, for one log line: OpenSSL's reasons
    (e.g. C{certificate verify failed}), or the connection closing first.
    """
    value = reason.value
    if isinstance(value, SSL.Error):
        parts = []
        for err in value.args[0] if value.args and isinstance(value.args[0], list) else []:
            if isinstance(err, tuple) and len(err) == 3:
                parts.append(str(err[2]))
        return ", ".join(parts) or str(value) or "TLS error"
    text = reason.getErrorMessage()
    return f"connection closed before the handshake ended ({text})"


def _verify_detail(conn: Any) -> str | None:
    """What certificate verification said on this connection, if it failed."""
    if not isinstance(conn, SSL.Connection):
        return None
    return _VERIFY_FAILURES.pop(conn, None)


def _peer_text(proto: ProtocolWrapper) -> str:
    try:
        addr = proto.getPeer()
    except Exception:
        return "unknown"
    host = getattr(addr, "host", None)
    if host is not None:
        return f"{host}:{getattr(addr, 'port', 0)}"
    return str(getattr(addr, "name", None) or "unknown")


def tlsFactory(
    factory: IProtocolFactory,
    tls: ServerTLS,
    reactor: IReactorTime,
    timeout: float,
) -> TLSMemoryBIOFactory:
    """
    Wrap a listener's C{factory} in TLS with C{tls}, with a handshake
    deadline of C{timeout} seconds.
    """
    guarded = TLSHandshakeGuardFactory(factory, reactor, tls.label, timeout)
    wrapped = TLSMemoryBIOFactory(tls, False, guarded)
    wrapped.noisy = False
    return wrapped
