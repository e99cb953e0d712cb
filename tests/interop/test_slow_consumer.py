"""
A real node, real sockets: a subscriber that never reads does not make the
node buffer without bound, and does not slow the other subscribers down.

The node runs with C{max_online_messages = 100}.  A raw-socket subscriber
with a tiny receive buffer subscribes and then never reads; a second
raw-socket subscriber reads as fast as it can on its own thread.  A
publisher sends 20 000 QoS 0 messages of 1 KiB (20 MiB) in windows of 200,
waiting for the fast subscriber to have them all before sending the next
window (so the fast subscriber is never itself a slow consumer).  The fast
subscriber must get every message, the node's resident memory must stay
within a few MiB of where it started (without the shedding it grows by the
20 MiB the slow subscriber does not read), the slow subscriber must have
been shed, and the node must still answer a new client at once.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import NodeProcess

MESSAGES = 20_000
PAYLOAD = b"p" * 1024
WINDOW = 200
#: Allowed growth of the node's RSS over the flood.
RSS_GROWTH_LIMIT = 12 * 1024 * 1024


# -- a minimal MQTT 3.1.1 client on a raw socket ---------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, no keep alive."""
    return _packet(0x10, _string("MQTT") + b"\x04\x02\x00\x00" + _string(client_id))


def subscribe_packet(topic_filter: str) -> bytes:
    """SUBSCRIBE packet id 1 to C{topic_filter} at QoS 0."""
    return _packet(0x82, b"\x00\x01" + _string(topic_filter) + b"\x00")


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    return _packet(0x30, _string(topic) + payload)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly C{n} bytes (the socket's timeout applies)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def open_client(port: int, client_id: str, rcvbuf: int | None = None) -> socket.socket:
    """A connected client whose CONNECT was accepted."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect, so the advertised TCP window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(connect_packet(client_id))
    if recv_exactly(sock, 4) != b"\x20\x02\x00\x00":
        raise AssertionError(f"{client_id}: CONNECT refused")
    return sock


def subscribe(sock: socket.socket, topic_filter: str) -> None:
    """Subscribe at QoS 0 and check the SUBACK."""
    sock.sendall(subscribe_packet(topic_filter))
    if recv_exactly(sock, 5) != b"\x90\x03\x00\x01\x00":
        raise AssertionError("SUBSCRIBE refused")


class PublishCounter:
    """
    Reads a socket as fast as it can on a thread and counts the PUBLISH
    packets (and their payload bytes) in what arrives.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.count = 0
        self.payload_bytes = 0
        self.error: BaseException | None = None
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    return
                self._parse(data)
        except OSError:
            return
        except BaseException as e:  # pragma: no cover - reported by the test
            self.error = e

    def _parse(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while True:
            if pos + 2 > n:
                break
            first = buf[pos]
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= n:
                    length = -1
                    break
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            if length < 0 or i + length > n:
                break
            if first >> 4 == 3:
                topic_len = buf[i] << 8 | buf[i + 1]
                self.payload_bytes += length - 2 - topic_len
                self.count += 1
            pos = i + length
        del buf[:pos]

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until C{count} PUBLISHes arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline or self.error is not None:
                return False
            time.sleep(0.001)
        return True

    def close(self) -> None:
        """Close the socket and let the thread end."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)


def rss_bytes(pid: int) -> int:
    """The resident set size of process C{pid} (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class SlowConsumerTests(SynchronousTestCase):
    """One subscriber never reads; the node sheds it and serves the rest."""

    def setUp(self) -> None:
        if not os.path.exists("/proc/self/status"):
            from twisted.trial.unittest import SkipTest

            raise SkipTest("needs /proc to read the node's memory")
        self.node = NodeProcess(
            self.mktemp(),
            extraConfig=["max_online_messages = 100", "log.console.level = warning"],
        ).start()
        self.addCleanup(self.node.stop)
        assert self.node.process is not None
        self.pid = self.node.process.pid

    def test_slow_subscriber_shed(self) -> None:
        port = self.node.port
        slow = open_client(port, "slow", rcvbuf=4096)
        self.addCleanup(slow.close)
        subscribe(slow, "load/#")
        fast_sock = open_client(port, "fast")
        subscribe(fast_sock, "load/#")
        fast = PublishCounter(fast_sock)
        self.addCleanup(fast.close)
        pub = open_client(port, "pub")
        self.addCleanup(pub.close)

        window = publish_packet("load/x", PAYLOAD) * WINDOW
        baseline = peak = rss_bytes(self.pid)
        started = time.monotonic()
        sent = 0
        while sent < MESSAGES:
            pub.sendall(window)
            sent += WINDOW
            self.assertTrue(
                fast.wait_for(sent, 10),
                f"the fast subscriber got {fast.count} of {sent} messages",
            )
            peak = max(peak, rss_bytes(self.pid))
        elapsed = time.monotonic() - started

        self.assertIsNone(fast.error)
        self.assertEqual(fast.count, MESSAGES)
        self.assertEqual(fast.payload_bytes, MESSAGES * len(PAYLOAD))
        growth = peak - baseline
        self.assertLess(
            growth,
            RSS_GROWTH_LIMIT,
            f"node RSS grew by {growth / 2**20:.1f} MiB while a subscriber did not read "
            f"({MESSAGES * len(PAYLOAD) / 2**20:.0f} MiB published in {elapsed:.1f}s)",
        )

        # The node answers a newcomer at once.
        t0 = time.monotonic()
        probe = open_client(port, "probe")
        self.addCleanup(probe.close)
        probe.sendall(b"\xc0\x00")
        self.assertEqual(recv_exactly(probe, 2), b"\xd0\x00")
        self.assertLess(time.monotonic() - t0, 2.0)

        # The slow subscriber was shed: once it reads, what the node still
        # had for it (socket buffers, at most 100 queued) is far from all.
        slow_counter = PublishCounter(slow)
        self.addCleanup(slow_counter.close)
        last = -1
        while slow_counter.count != last:
            last = slow_counter.count
            time.sleep(0.3)
        self.assertGreater(slow_counter.count, 0)
        self.assertLess(slow_counter.count, MESSAGES // 2)
