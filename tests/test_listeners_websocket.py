"""
L{vernemq.listeners.websocket}: MQTT over WebSocket on C{/mqtt}, in
memory (autobahn on a L{StringTransport}, timers on a fake clock).
"""

from __future__ import annotations

import base64
import os
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.brokerhelpers import Harness
from vernemq.listeners.websocket import MQTTWebSocketFactory
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import ConnAck, Connect

KEY = base64.b64encode(os.urandom(16)).decode()


def request(path: str = "/mqtt", protocol: str | None = "mqtt", extra: str = "") -> bytes:
    """An HTTP upgrade request for a WebSocket."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One masked client frame."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def unframe(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of unmasked server frames."""
    out = []
    while data:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        pos = 2
        if n == 126:
            n, pos = struct.unpack("!H", data[2:4])[0], 4
        out.append((opcode, data[pos : pos + n]))
        data = data[pos + n :]
    return out


class _Transport(StringTransport):
    """Like a TCP transport, unregistering no producer is harmless."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class WebSocketTests(SynchronousTestCase):
    """The handshake rules and MQTT carried in binary messages."""

    def setUp(self) -> None:
        self.harness = Harness("allow_anonymous = on\nlistener.ws.default = 127.0.0.1:8080\n")
        self.mqtt = self.harness.factories["default"]
        self.factory = MQTTWebSocketFactory(
            self.mqtt, self.harness.clock, "listener.ws.default", 1024, 5.0, xff=True
        )
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self) -> tuple:
        proto = self.factory.buildProtocol(None)
        transport = _Transport(peerAddress=IPv4Address("TCP", "10.0.0.4", 7000))
        proto.makeConnection(transport)
        return proto, transport

    def handshake(self, **kwargs: str) -> tuple:
        proto, transport = self.connect()
        proto.dataReceived(request(**kwargs))
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        transport.clear()
        return proto, transport, head

    def warnings(self) -> list:
        return [e for e in self.events if e.get("log_level").name == "warn"]

    def test_mqttOverWebSocket(self) -> None:
        """
        C{/mqtt} with subprotocol C{mqtt} upgrades; a CONNECT in a binary
        message gets a CONNACK in a binary message.
        """
        proto, transport, head = self.handshake()
        self.assertIn(b"101 Switching Protocols", head)
        self.assertIn(b"Sec-WebSocket-Protocol: mqtt", head)
        connect = encode(Connect("ws1"), 4)
        proto.dataReceived(frame(connect[:3]) + frame(connect[3:]))
        ((opcode, payload),) = unframe(transport.value())
        self.assertEqual(opcode, 0x2)
        decoder = Decoder(protocol_level=4, server=False)
        decoder.feed(payload)
        self.assertEqual(decoder.next_packet(), ConnAck(False, 0))
        self.assertEqual(1, self.mqtt.count)
        self.assertIn(("", "ws1"), self.harness.broker.sessions)

    def test_oldSubprotocolAndForwardedFor(self) -> None:
        """C{mqttv3.1} is accepted; X-Forwarded-For names the peer when trusted."""
        proto, transport, head = self.handshake(
            protocol="mqttv3.1, foo", extra="X-Forwarded-For: 198.51.100.9, 203.0.113.5\r\n"
        )
        self.assertIn(b"Sec-WebSocket-Protocol: mqttv3.1", head)
        proto.dataReceived(frame(encode(Connect("ws2"), 4)))
        (conn,) = self.harness.broker.connections
        self.assertEqual(conn.peer, ("203.0.113.5", 0))

    def test_wrongPathOrProtocol(self) -> None:
        """Another path gets 404, another subprotocol 400: closed, one warning each."""
        for kwargs, status in [({"path": "/"}, b"404"), ({"protocol": "wamp"}, b"400")]:
            proto, transport, head = self.handshake(**kwargs)
            self.assertIn(status, head.split(b"\r\n")[0])
            self.assertTrue(transport.disconnecting)
        self.assertEqual(2, len(self.warnings()))
        self.assertEqual(0, self.mqtt.count)

    def test_plainHTTP(self) -> None:
        """A plain HTTP request (no upgrade) gets an error, not a status page."""
        proto, transport = self.connect()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 4"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(1, len(self.warnings()))

    def test_textMessageIsAViolation(self) -> None:
        """MQTT-6.0.0-1: a text message closes the connection."""
        proto, transport, _ = self.handshake()
        proto.dataReceived(frame(encode(Connect("ws3"), 4)))
        transport.clear()
        proto.dataReceived(frame(b"hello", opcode=0x1))
        self.assertEqual([op for op, _ in unframe(transport.value())], [0x8])
        self.assertEqual(1, len(self.warnings()))

    def test_frameTooLarge(self) -> None:
        """A frame over max_ws_frame_size closes the connection."""
        proto, transport, _ = self.handshake()
        proto.dataReceived(frame(b"\x00" * 2000))
        self.assertEqual([op for op, _ in unframe(transport.value())], [0x8])

    def test_requestTooLarge(self) -> None:
        """An upgrade request that never ends its headers is refused at 16 KiB."""
        proto, transport = self.connect()
        for _ in range(20):
            proto.dataReceived(b"X-Junk: " + b"a" * 1000 + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(1, len(self.warnings()))

    def test_handshakeDeadline(self) -> None:
        """A client that never completes the upgrade is dropped on the fake clock."""
        proto, transport = self.connect()
        proto.dataReceived(b"GET /mqtt HTTP/1.1\r\n")
        self.harness.clock.advance(5.1)
        self.assertTrue(transport.disconnecting)
