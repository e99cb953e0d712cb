# -*- test-case-name: tests.test_listeners_proxy -*-
"""
The PROXY protocol (v1 and v2) in front of a listener (C{proxy_protocol = on}).

A load balancer such as HAProxy opens the TCP connection and first sends a
PROXY header naming the real client.  L{ProxyHeaderParser} is a sans-IO
parser of that header; L{ProxyProtocolWrapper} is the thin protocol that
feeds it and connects the wrapped (MQTT or WebSocket) protocol only once
the header is complete, so that C{getPeer()} (hence every log line and
every hook's peer) gives the real client from the first moment.

Why not C{twisted.protocols.haproxy}: its wrapper connects the wrapped
protocol before the header has arrived (the proxy's address would be
logged), decides v1/v2 on the first chunk alone, does not check that the
addresses are addresses (its v1 parser even lets C{ValueError} escape),
has no deadline for a header that never ends, and drops the v2 TLVs that
carry the client certificate's CN (C{proxy_protocol_use_cn_as_username}).
Its parsers are private modules, so we keep our own strict one.

Bad input (no header, a malformed one, one that lies about its addresses
or its length, one that never ends within C{mqtt_connect_timeout}) closes
that one connection with exactly one warning.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

__all__ = [
    "ProxyHeaderError",
    "ProxyHeaderParser",
    "ProxyInfo",
    "ProxyProtocolFactory",
    "ProxyProtocolWrapper",
]

#: The first twelve bytes of a v2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest v1 header, CRLF included (the specification's limit).
V1_MAX = 107

_PP2_TYPE_SSL = 0x20
_PP2_SUBTYPE_SSL_CN = 0x22
_PP2_CLIENT_SSL = 0x01
_PP2_CLIENT_CERT = 0x02 | 0x04  # PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS


class ProxyHeaderError(Exception):
    """The bytes before the client's own are not a valid PROXY header."""


@dataclass(frozen=True)
class ProxyInfo:
    """
    What a PROXY header said.

    @ivar source: the real client's address, or C{None} for C{LOCAL} /
        C{UNKNOWN} (the proxy's own connection, e.g. a health check).
    @ivar destination: the address the client connected to, or C{None}.
    @ivar ssl_cn: the CN of a client certificate the proxy verified (v2
        C{PP2_SUBTYPE_SSL_CN}), else C{None}.
    @ivar version: 1 or 2.
    """

    source: IAddress | None
    destination: IAddress | None
    ssl_cn: str | None = None
    version: int = 1


def _ip(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"not an IP address: {text!r}") from None
    if addr.version != version:
        raise ProxyHeaderError(f"{text!r} is not an IPv{version} address")
    return str(addr)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ProxyHeaderError(f"not a port: {text!r}")
    return int(text)


def _addresses(
    version: int, src: str, dst: str, sport: int, dport: int
) -> tuple[IAddress, IAddress]:
    cls: type[IPv4Address] | type[IPv6Address] = IPv4Address if version == 4 else IPv6Address
    return cls("TCP", src, sport), cls("TCP", dst, dport)


def parse_v1(line: bytes) -> ProxyInfo:
    """
    Parse one v1 header line (without its CRLF), e.g.
    C{PROXY TCP4 192.0.2.1 198.51.100.1 56324 1883}.

    @raise ProxyHeaderError: for anything else.
    """
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    fields = text.split(" ")
    if fields[0] != "PROXY" or len(fields) < 2:
        raise ProxyHeaderError("v1 header does not start with 'PROXY '")
    family = fields[1]
    if family == "UNKNOWN":
        return ProxyInfo(None, None, version=1)
    if family not in ("TCP4", "TCP6") or len(fields) != 6:
        raise ProxyHeaderError(f"malformed v1 header {text!r}")
    version = 4 if family == "TCP4" else 6
    src, dst = _ip(fields[2], version), _ip(fields[3], version)
    source, destination = _addresses(version, src, dst, _port(fields[4]), _port(fields[5]))
    return ProxyInfo(source, destination, version=1)


def _ssl_cn(tlvs: bytes) -> str | None:
    """The verified client certificate CN among v2 TLVs, if any."""
    offset = 0
    cn: str | None = None
    while offset < len(tlvs):
        if offset + 3 > len(tlvs):
            raise ProxyHeaderError("truncated v2 TLV")
        kind, length = tlvs[offset], struct.unpack_from("!H", tlvs, offset + 1)[0]
        value = tlvs[offset + 3 : offset + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError("v2 TLV longer than the header")
        offset += 3 + length
        if kind != _PP2_TYPE_SSL:
            continue
        if length < 5:
            raise ProxyHeaderError("truncated v2 SSL TLV")
        client, verify = value[0], struct.unpack_from("!I", value, 1)[0]
        for subkind, subvalue in _sub_tlvs(value[5:]):
            if subkind == _PP2_SUBTYPE_SSL_CN and subvalue:
                # Only a certificate the proxy verified names the user.
                if client & _PP2_CLIENT_SSL and client & _PP2_CLIENT_CERT and verify == 0:
                    try:
                        cn = subvalue.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProxyHeaderError("v2 SSL CN is not UTF-8") from None
    return cn


def _sub_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise ProxyHeaderError("truncated v2 SSL sub-TLV")
        kind, length = data[offset], struct.unpack_from("!H", data, offset + 1)[0]
        value = data[offset + 3 : offset + 3 + length]
        if len(value) != length:
            raise ProxyHeaderError("v2 SSL sub-TLV longer than its TLV")
        out.append((kind, value))
        offset += 3 + length
    return out


def parse_v2(header: bytes) -> ProxyInfo:
    """
    Parse a whole v2 header (signature, 4 bytes, then the declared length).

    @raise ProxyHeaderError: when it is not one, or its address block does
        not fit the length it declares.
    """
    if header[:12] != V2_SIGNATURE or len(header) < 16:
        raise ProxyHeaderError("bad v2 signature")
    ver_cmd, family = header[12], header[13]
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"unsupported v2 version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyHeaderError(f"unknown v2 command {command}")
    body = header[16:]
    if command == 0 or family == 0x00:
        # LOCAL (the proxy's own connection) or UNSPEC: keep the real peer.
        return ProxyInfo(None, None, version=2)
    if family in (0x11, 0x12):
        size, fmt, version = 12, "!4s4sHH", 4
    elif family in (0x21, 0x22):
        size, fmt, version = 36, "!16s16sHH", 6
    elif family in (0x31, 0x32):
        size, fmt, version = 216, "", 0
    else:
        raise ProxyHeaderError(f"unknown v2 address family 0x{family:02x}")
    if len(body) < size:
        raise ProxyHeaderError("v2 header shorter than its address block")
    tlvs = body[size:]
    cn = _ssl_cn(tlvs)
    if version == 0:
        src_path, dst_path = body[:108].rstrip(b"\0"), body[108:216].rstrip(b"\0")
        return ProxyInfo(UNIXAddress(src_path), UNIXAddress(dst_path), cn, 2)
    src, dst, sport, dport = struct.unpack(fmt, body[:size])
    source, destination = _addresses(
        version,
        str(ipaddress.ip_address(src)),
        str(ipaddress.ip_address(dst)),
        sport,
        dport,
    )
    return ProxyInfo(source, destination, cn, 2)


class ProxyHeaderParser:
    """
    Incremental, sans-IO: L{feed} bytes in any chunking until it returns
    C{(info, rest)}; C{rest} are the client's own first bytes.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyInfo, bytes] | None:
        """
        Add C{data}; the parsed header and what follows it, or C{None}
        while incomplete.

        @raise ProxyHeaderError: as soon as the bytes cannot be a header.
        """
        buf = self._buffer = self._buffer + data
        if buf[:1] == b"\r":
            n = min(len(buf), 12)
            if buf[:n] != V2_SIGNATURE[:n]:
                raise ProxyHeaderError("no PROXY header")
            if len(buf) < 16:
                return None
            end = 16 + struct.unpack_from("!H", buf, 14)[0]
            if len(buf) < end:
                return None
            self._buffer = b""
            return parse_v2(buf[:end]), buf[end:]
        n = min(len(buf), 6)
        if buf[:n] != b"PROXY "[:n]:
            raise ProxyHeaderError("no PROXY header")
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) >= V1_MAX:
                raise ProxyHeaderError("v1 header longer than 107 bytes")
            return None
        if end + 2 > V1_MAX:
            raise ProxyHeaderError("v1 header longer than 107 bytes")
        self._buffer = b""
        return parse_v1(buf[:end]), buf[end + 2 :]


class ProxyProtocolWrapper(ProtocolWrapper):
    """
    Reads the PROXY header, then connects the wrapped protocol with this
    wrapper as its transport: C{getPeer()}/C{getHost()} give the addresses
    the header named, and L{proxy_info} what else it said.

    @ivar proxy_info: the parsed header, once complete.
    """

    log = Logger(namespace="vernemq.listeners.proxy")
    factory: ProxyProtocolFactory

    def __init__(self, factory: ProxyProtocolFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.proxy_info: ProxyInfo | None = None
        self._parser = ProxyHeaderParser()
        self._timeout: IDelayedCall | None = None
        self._failed = False

    def makeConnection(self, transport: Any) -> None:
        """Accept the connection; the wrapped protocol waits for the header."""
        self.connected = 1
        self.transport = transport
        self.factory.registerProtocol(self)
        self._timeout = self.factory.reactor.callLater(self.factory.timeout, self._expired)

    def dataReceived(self, data: bytes) -> None:
        """Feed the header parser, then pass everything through."""
        if self.proxy_info is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._failed:
            return
        try:
            parsed = self._parser.feed(data)
        except ProxyHeaderError as e:
            self._fail(str(e))
            return
        if parsed is None:
            return
        self.proxy_info, rest = parsed
        self._cancel()
        ProtocolWrapper.makeConnection(self, self.transport)
        if rest and not self.disconnecting:
            self.wrappedProtocol.dataReceived(rest)

    def connectionMade(self) -> None:
        """Nothing: L{makeConnection} decides when the wrapped protocol starts."""

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Tell the wrapped protocol, if it ever started."""
        self._cancel()
        if self.proxy_info is None:
            self.factory.unregisterProtocol(self)
            return
        ProtocolWrapper.connectionLost(self, reason)

    def getPeer(self) -> IAddress:
        """The real client, as the header said (the proxy for LOCAL/UNKNOWN)."""
        info = self.proxy_info
        if info is not None and info.source is not None:
            return info.source
        return self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> IAddress:
        """The address the client connected to, as the header said."""
        info = self.proxy_info
        if info is not None and info.destination is not None:
            return info.destination
        return self.transport.getHost()  # type: ignore[union-attr]

    def _fail(self, why: str) -> None:
        self._failed = True
        self._cancel()
        self.log.warn(
            "closing connection from {peer} on listener {listener}: bad PROXY header: {why}",
            peer=_show(self.transport.getPeer()),  # type: ignore[union-attr]
            listener=self.factory.label,
            why=why,
        )
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _expired(self) -> None:
        self._timeout = None
        self._fail(f"no complete PROXY header within {self.factory.timeout:g} s")

    def _cancel(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None


class ProxyProtocolFactory(WrappingFactory[ProxyProtocolWrapper]):
    """
    Wraps a listener's factory with PROXY header parsing.

    @ivar label: the listener's key, for log lines.
    @ivar timeout: seconds a connection may take to send its whole header.
    """

    protocol = ProxyProtocolWrapper
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        reactor: IReactorTime,
        label: str,
        timeout: float,
    ) -> None:
        super().__init__(wrappedFactory)
        self.reactor = reactor
        self.label = label
        self.timeout = timeout


def _show(address: IAddress) -> str:
    host = getattr(address, "host", None)
    if host is not None:
        return f"{host}:{getattr(address, 'port', 0)}"
    return str(getattr(address, "name", "unknown"))


def proxy_cn(transport: Any) -> str | None:
    """
    The verified client certificate CN a PROXY v2 header carried on the
    connection under C{transport}, else C{None}.  Wrappers above the
    L{ProxyProtocolWrapper} (TLS, WebSocket) delegate unknown attributes
    down, so C{proxy_info} is found through them.
    """
    info = getattr(transport, "proxy_info", None)
    return info.ssl_cn if isinstance(info, ProxyInfo) else None
