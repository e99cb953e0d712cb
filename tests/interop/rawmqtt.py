"""
A tiny blocking MQTT 3.1.1 / 5.0 client on a raw socket, for interop tests
that must see exactly which packets a node sends (or does not send): a
missing PUBACK is proven by a PINGRESP arriving first, since a node answers
the packets of one connection in order.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
SUBACK, UNSUBACK, PINGRESP = 0x90, 0xB0, 0xD0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def _readVarint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


@dataclass
class Message:
    """A received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class RawClient:
    """
    One MQTT connection.  Construct, then L{connect}; the CONNACK's return
    code / reason code is the result.

    @ivar version: 4 (MQTT 3.1.1) or 5.
    @ivar messages: PUBLISHes received but not yet taken by L{collect}.
    """

    def __init__(self, host: str, port: int, clientId: str, version: int = 4) -> None:
        self.version = version
        self.clientId = clientId
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.messages: list[Message] = []
        self.closed = False

    # -- sending ----------------------------------------------------------------

    def _props(self) -> bytes:
        return b"\x00" if self.version == 5 else b""

    def send(self, first: int, body: bytes) -> None:
        """Send one packet."""
        self.sock.sendall(bytes((first,)) + _varint(len(body)) + body)

    def connect(self, clean: bool = True, timeout: float = 5.0) -> int:
        """CONNECT; the CONNACK's code (3.x return code or 5.0 reason code)."""
        flags = 0x02 if clean else 0
        body = _str("MQTT") + bytes((self.version, flags)) + struct.pack(">H", 60)
        self.send(0x10, body + self._props() + _str(self.clientId))
        first, ack = self.expect(timeout)
        assert first & 0xF0 == CONNACK, (first, ack)
        return ack[1]

    def subscribe(self, packetId: int, topicFilter: str, qos: int = 1) -> None:
        """SUBSCRIBE to one filter."""
        body = struct.pack(">H", packetId) + self._props() + _str(topicFilter) + bytes((qos,))
        self.send(0x82, body)

    def subscribeAck(self, packetId: int, topicFilter: str, qos: int = 1) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; its return / reason codes."""
        self.subscribe(packetId, topicFilter, qos)
        body = self.expectType(SUBACK)
        pos = 2
        if self.version == 5:
            length, pos = _readVarint(body, 2)
            pos += length
        return list(body[pos:])

    def unsubscribe(self, packetId: int, topicFilter: str) -> None:
        """UNSUBSCRIBE from one filter."""
        self.send(0xA2, struct.pack(">H", packetId) + self._props() + _str(topicFilter))

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, packetId: int = 1, retain: bool = False
    ) -> None:
        """PUBLISH (no waiting for an acknowledgement)."""
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        body = _str(topic) + (struct.pack(">H", packetId) if qos else b"")
        self.send(first, body + self._props() + payload)

    def publishAck(self, topic: str, payload: bytes, packetId: int, retain: bool = False) -> int:
        """PUBLISH at QoS 1 and wait for the PUBACK; its reason code (0 for 3.x)."""
        self.publish(topic, payload, 1, packetId, retain)
        body = self.expectType(PUBACK)
        return body[2] if len(body) > 2 else 0

    def disconnect(self, wait: float = 0.0) -> None:
        """
        DISCONNECT and close; with C{wait}, first wait up to that many
        seconds for the node to close the connection (so it has ended the
        session).
        """
        try:
            self.send(0xE0, b"")
            if wait:
                self.isClosed(wait)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.closed = True
        self.sock.close()

    # -- receiving --------------------------------------------------------------

    def _packet(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        try:
            length, pos = _readVarint(data, 1)
        except IndexError:
            return None
        if len(data) < pos + length:
            return None
        self.buffer = data[pos + length :]
        return data[0], data[pos : pos + length]

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        """
        The next packet that is not a PUBLISH (PUBLISHes are acknowledged
        and kept in L{messages}), or L{None} after C{timeout} seconds.

        @raise ConnectionError: the node closed the connection.
        """
        deadline = time.monotonic() + timeout
        while True:
            packet = self._packet()
            if packet is not None:
                first, body = packet
                if first & 0xF0 == PUBLISH:
                    self._received(first, body)
                    continue
                return packet
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("closed by the node")
            self.buffer += data

    def _received(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 3
        (length,) = struct.unpack(">H", body[:2])
        topic = body[2 : 2 + length].decode("utf-8")
        pos = 2 + length
        if qos:
            packetId = body[pos : pos + 2]
            pos += 2
            self.send(0x40 if qos == 1 else 0x50, packetId)
        if self.version == 5:
            props, pos = _readVarint(body, pos)
            pos += props
        self.messages.append(Message(topic, body[pos:], qos, bool(first & 1)))

    def expect(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next non-PUBLISH packet; fail if none arrives in time."""
        packet = self.read(timeout)
        assert packet is not None, f"{self.clientId}: no packet within {timeout}s"
        return packet

    def expectType(self, packetType: int, timeout: float = 5.0) -> bytes:
        """The body of the next packet, which must be of C{packetType}."""
        first, body = self.expect(timeout)
        assert first & 0xF0 == packetType, (hex(first), body, hex(packetType))
        return body

    def untilPong(self, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """
        Send PINGREQ; every non-PUBLISH packet received before its PINGRESP
        (so: what the node answered to everything sent before).
        """
        self.send(0xC0, b"")
        before = []
        while True:
            first, body = self.expect(timeout)
            if first & 0xF0 == PINGRESP:
                return before
            before.append((first, body))

    def collect(self, timeout: float) -> list[Message]:
        """Wait C{timeout} seconds for PUBLISHes; take every one received."""
        extra = self.read(timeout)
        assert extra is None, extra
        taken, self.messages = self.messages, []
        return taken

    def waitMessage(self, timeout: float) -> list[Message]:
        """Wait up to C{timeout} seconds for at least one PUBLISH; take them all."""
        deadline = time.monotonic() + timeout
        while not self.messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            extra = self.read(min(left, 0.1))
            assert extra is None, extra
        taken, self.messages = self.messages, []
        return taken

    def isClosed(self, timeout: float = 5.0) -> bool:
        """Whether the node closes the connection within C{timeout} seconds."""
        try:
            self.read(timeout)
        except (ConnectionError, OSError):
            return True
        return False


def retained(host: str, port: int, topicFilter: str, wait: float = 0.7) -> dict[str, bytes]:
    """The retained messages a fresh subscriber to C{topicFilter} gets."""
    client = RawClient(host, port, f"retained-probe-{time.monotonic_ns()}")
    try:
        assert client.connect() == 0
        client.subscribeAck(1, topicFilter, 1)
        return {m.topic: m.payload for m in client.collect(wait) if m.retain}
    finally:
        client.disconnect()


__all__ = ["Message", "RawClient", "retained"]
