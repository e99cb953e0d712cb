"""
L{vernemq.listeners.proxy}: the PROXY v1/v2 header parser and the wrapper
that gives the MQTT protocol the real client.
"""

from __future__ import annotations

import struct

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import Harness
from vernemq.listeners.compose import proxy_username
from vernemq.listeners.proxy import (
    V2_SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyProtocolFactory,
    proxy_cn,
)
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import ConnAck, Connect
from vernemq.mqtt.protocol import MQTTFactory

V1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 56324 1883\r\n"


def v2(family: int = 0x11, addresses: bytes | None = None, tlvs: bytes = b"",
       command: int = 1, length: int | None = None) -> bytes:
    """A v2 header (TCP4 203.0.113.7:56324 -> 198.51.100.1:1883 by default)."""
    if addresses is None:
        addresses = bytes([203, 0, 113, 7, 198, 51, 100, 1]) + struct.pack("!HH", 56324, 1883)
    body = addresses + tlvs
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", size) + body


def sslTLV(cn: bytes, client: int = 0x07, verify: int = 0) -> bytes:
    """A PP2_TYPE_SSL TLV carrying a PP2_SUBTYPE_SSL_CN."""
    sub = bytes([0x22]) + struct.pack("!H", len(cn)) + cn
    value = bytes([client]) + struct.pack("!I", verify) + sub
    return bytes([0x20]) + struct.pack("!H", len(value)) + value


class ParserTests(SynchronousTestCase):
    """L{ProxyHeaderParser}: strict, incremental."""

    def feedAll(self, data: bytes, chunk: int) -> tuple:
        parser = ProxyHeaderParser()
        result = None
        for i in range(0, len(data), chunk):
            result = parser.feed(data[i : i + chunk])
            if result is not None:
                return result
        raise AssertionError("incomplete")

    def test_v1AnyChunking(self) -> None:
        """A v1 header parses the same in chunks of 1 to 9 bytes; the rest is kept."""
        for chunk in range(1, 10):
            info, rest = self.feedAll(V1 + b"\x10\x00", chunk)
            self.assertEqual(info.source, IPv4Address("TCP", "203.0.113.7", 56324))
            self.assertEqual(info.destination, IPv4Address("TCP", "198.51.100.1", 1883))
            self.assertEqual(info.version, 1)
            self.assertIn(rest, (b"\x10\x00", b"\x10", b""))

    def test_v1IPv6AndUnknown(self) -> None:
        """TCP6 gives IPv6 addresses; UNKNOWN gives none (the proxy's own connection)."""
        info, _ = ProxyHeaderParser().feed(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
        self.assertEqual(info.source, IPv6Address("TCP", "2001:db8::1", 1))
        info, _ = ProxyHeaderParser().feed(b"PROXY UNKNOWN\r\n")
        self.assertIsNone(info.source)

    def test_v1Lies(self) -> None:
        """Addresses that are not addresses, wrong families, ports out of range fail."""
        for line in [
            b"PROXY TCP4 999.0.0.1 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 70000 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 hello world 1 2\r\n",
        ]:
            self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, line)

    def test_notAHeader(self) -> None:
        """MQTT bytes, HTTP and over-long v1 lines fail as soon as they can."""
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, b"\x10")
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, b"GET / HTTP/1.1\r\n")
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, b"PROXY " + b"1" * 120)
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, b"\r\n\r\n\x00\r\nQUIX")

    def test_v2AnyChunking(self) -> None:
        """A v2 header parses in any chunking, TLVs skipped."""
        header = v2(tlvs=bytes([0x04]) + struct.pack("!H", 2) + b"xx")
        for chunk in (1, 3, 7, 16, 100):
            info, rest = self.feedAll(header + b"\x10", chunk)
            self.assertEqual(info.source, IPv4Address("TCP", "203.0.113.7", 56324))
            self.assertEqual(info.version, 2)
            self.assertIsNone(info.ssl_cn)

    def test_v2IPv6LocalUnspec(self) -> None:
        """TCP6 addresses; LOCAL and UNSPEC keep the real peer (no source)."""
        addresses = b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01" + b"\x00" * 15 + b"\x01"
        info, _ = ProxyHeaderParser().feed(v2(0x21, addresses + struct.pack("!HH", 5, 6)))
        self.assertEqual(info.source, IPv6Address("TCP", "2001:db8::1", 5))
        info, _ = ProxyHeaderParser().feed(v2(command=0))
        self.assertIsNone(info.source)
        info, _ = ProxyHeaderParser().feed(v2(0x00, b""))
        self.assertIsNone(info.source)

    def test_v2Lies(self) -> None:
        """A length shorter than the addresses, a bad version, command or family fail."""
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, v2(length=4) + b"x" * 8)
        bad = bytearray(v2())
        bad[12] = 0x31
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, bytes(bad))
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, v2(command=5))
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, v2(family=0x41))
        truncated = v2(tlvs=bytes([0x20]) + struct.pack("!H", 50) + b"x")
        self.assertRaises(ProxyHeaderError, ProxyHeaderParser().feed, truncated)

    def test_v2VerifiedCN(self) -> None:
        """The SSL TLV's CN counts only for a verified client certificate."""
        info, _ = ProxyHeaderParser().feed(v2(tlvs=sslTLV(b"alice")))
        self.assertEqual(info.ssl_cn, "alice")
        info, _ = ProxyHeaderParser().feed(v2(tlvs=sslTLV(b"alice", verify=1)))
        self.assertIsNone(info.ssl_cn)
        info, _ = ProxyHeaderParser().feed(v2(tlvs=sslTLV(b"alice", client=0x01)))
        self.assertIsNone(info.ssl_cn)


class WrapperTests(SynchronousTestCase):
    """L{ProxyProtocolFactory} in front of an MQTT listener."""

    def setUp(self) -> None:
        self.harness = Harness()
        self.mqtt = MQTTFactory(
            self.harness.broker, self.harness.listener(), self.harness.clock, proxy_username
        )
        self.factory = ProxyProtocolFactory(
            self.mqtt, self.harness.clock, "listener.tcp.default", 5.0
        )
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self) -> tuple:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 4000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 4000))
        proto.makeConnection(transport)
        return proto, transport

    def connack(self, transport: StringTransport) -> ConnAck:
        decoder = Decoder(protocol_level=4, server=False)
        decoder.feed(transport.value())
        pkt = decoder.next_packet()
        assert isinstance(pkt, ConnAck), pkt
        return pkt

    def test_realPeerFromTheStart(self) -> None:
        """
        The MQTT protocol starts only after the header, and sees the client
        it names as its peer; the session's username is the CONNECT's.
        """
        proto, transport = self.connect()
        self.assertEqual(self.harness.broker.connections, set())
        for byte in V1 + encode(Connect("c1", username="u"), 4):
            proto.dataReceived(bytes([byte]))
        (conn,) = self.harness.broker.connections
        self.assertEqual(conn.peer, ("203.0.113.7", 56324))
        self.assertEqual(self.connack(transport).reason_code, 0)
        self.assertEqual(self.harness.broker.sessions[("", "c1")].username, "u")

    def test_cnAsUsername(self) -> None:
        """C{proxy_protocol_use_cn_as_username}: the verified CN replaces the username."""
        proto, transport = self.connect()
        proto.dataReceived(v2(tlvs=sslTLV(b"alice")) + encode(Connect("c2", username="x"), 4))
        self.assertEqual(self.connack(transport).reason_code, 0)
        self.assertEqual(self.harness.broker.sessions[("", "c2")].username, "alice")
        self.assertEqual(proxy_cn(proto), "alice")

    def test_badHeaderClosesWithOneLine(self) -> None:
        """A lying header closes the connection with one warning; MQTT never starts."""
        proto, transport = self.connect()
        proto.dataReceived(b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 1\r\n" + encode(Connect("c"), 4))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.harness.broker.connections, set())
        warnings = [e for e in self.events if "bad PROXY header" in e.get("log_format", "")]
        self.assertEqual(1, len(warnings))
        self.assertEqual("10.0.0.1:4000", warnings[0]["peer"])
        proto.connectionLost(None)

    def test_headerDeadline(self) -> None:
        """A header that never ends is given up after the timeout."""
        proto, transport = self.connect()
        proto.dataReceived(b"PROXY TCP4 1.2.3.4")
        self.harness.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.harness.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])
