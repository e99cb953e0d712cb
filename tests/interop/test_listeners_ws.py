"""
A real node's WebSocket, secure WebSocket, unix socket and PROXY
listeners, with their per-listener settings (mountpoint,
allowed_protocol_versions, allow_anonymous_override), driven by
paho-mqtt, mosquitto_pub and raw sockets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.interop.listenerclients import PahoClient, mqtt
from tests.interop.nodeprocess import NodeProcess, freePort, requireProgram
from tests.tlshelpers import Certificates
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import ConnAck, Connect


def rawConnect(port: int, prefix: bytes, clientId: str) -> bytes:
    """Send C{prefix} then a CONNECT on a raw socket; what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(prefix + encode(Connect(clientId), 4))
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""


class OtherListenersTests(SynchronousTestCase):
    """ws, wss, unix and PROXY listeners next to the default TCP one."""

    def setUp(self) -> None:
        if mqtt is None:
            self.skipTest("paho-mqtt is not installed (pip install '.[test]')")
        directory = self.mktemp()
        self.certs = certs = Certificates(os.path.abspath(directory + "-certs"))
        self.ws, self.wss, self.isolated, self.proxied = (freePort() for _ in range(4))
        # AF_UNIX paths are short (108 bytes): not under the trial directory.
        short = tempfile.mkdtemp(prefix="vmq")
        self.addCleanup(shutil.rmtree, short, True)
        self.sock = os.path.join(short, "mqtt.sock")
        self.node = NodeProcess(
            directory,
            [
                "allow_anonymous = off",
                "listener.ws.allow_anonymous_override = on",
                "listener.wss.allow_anonymous_override = on",
                "listener.tcp.allow_anonymous_override = on",
                "listener.tcp.default.allow_anonymous_override = off",
                f"listener.ws.default = 127.0.0.1:{self.ws}",
                f"listener.ws.isolated = 127.0.0.1:{self.isolated}",
                "listener.ws.isolated.mountpoint = tenant/",
                "listener.ws.isolated.allowed_protocol_versions = 4",
                f"listener.wss.default = 127.0.0.1:{self.wss}",
                f"listener.wss.certfile = {certs.server}",
                f"listener.wss.keyfile = {certs.serverKey}",
                f"listener.tcp.unix = local:{self.sock}:0",
                f"listener.tcp.proxied = 127.0.0.1:{self.proxied}",
                "listener.tcp.proxied.proxy_protocol = on",
            ],
        ).start()
        self.addCleanup(self.node.stop)

    def client(self, port: int, clientId: str, **kwargs: object) -> PahoClient:
        client = PahoClient(port, clientId, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(client.client.loop_stop)
        return client

    def roundTrip(self, port: int, **kwargs: object) -> None:
        sub = self.client(port, "sub", **kwargs)
        self.assertEqual(0, sub.connect())
        sub.subscribe("w/#")
        pub = self.client(port, "pub", **kwargs)
        self.assertEqual(0, pub.connect())
        pub.publish("w/1", b"over-websocket")
        self.assertEqual(b"over-websocket", sub.receive().payload)
        pub.close()
        sub.close()

    def test_webSocket(self) -> None:
        """paho-mqtt with transport="websockets" subscribes and publishes."""
        self.roundTrip(self.ws, transport="websockets")

    def test_secureWebSocket(self) -> None:
        """The same over wss, verifying the server certificate."""
        self.roundTrip(self.wss, transport="websockets", cafile=self.certs.ca)

    def test_mountpointAndVersions(self) -> None:
        """
        A listener's mountpoint isolates its topic tree; its
        allowed_protocol_versions refuses MQTT 5.0 (0x84).
        """
        outside = self.client(self.ws, "outside", transport="websockets")
        self.assertEqual(0, outside.connect())
        outside.subscribe("#")
        inside = self.client(self.isolated, "inside", transport="websockets")
        self.assertEqual(0, inside.connect())
        inside.subscribe("#")
        inside.publish("m", b"tenant-only")
        self.assertEqual(b"tenant-only", inside.receive().payload)
        outside.publish("n", b"public")
        self.assertEqual(b"public", outside.receive().payload)
        self.assertTrue(inside.messages.empty())
        self.assertTrue(outside.messages.empty())
        v5 = self.client(self.isolated, "v5", transport="websockets", version=5)
        self.assertEqual(0x84, v5.connect())

    def test_anonymousOverride(self) -> None:
        """allow_anonymous = off, overridden per listener: only tcp.default refuses."""
        self.assertNotEqual(0, self.client(self.node.port, "anon").connect())
        self.assertEqual(0, self.client(self.ws, "anon-ws", transport="websockets").connect())

    def test_unixSocket(self) -> None:
        """mosquitto_pub connects over the unix socket listener."""
        result = subprocess.run(
            [requireProgram("mosquitto_pub"), "--unix", self.sock, "-t", "u", "-m", "x", "-d"],
            capture_output=True, timeout=20,
        )
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertIn(b"CONNACK (0)", result.stdout)

    def test_proxyProtocol(self) -> None:
        """The PROXY header's client is the one logged; lies and junk are closed."""
        answer = rawConnect(
            self.proxied, b"PROXY TCP4 203.0.113.9 127.0.0.1 4711 1883\r\n", "via-lb"
        )
        decoder = Decoder(protocol_level=4, server=False)
        decoder.feed(answer)
        self.assertEqual(ConnAck(False, 0), decoder.next_packet())
        for junk in [
            b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 99999 1883\r\n",
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x02ab",
            b"",
        ]:
            self.assertEqual(b"", rawConnect(self.proxied, junk, "liar"))
        log = self.node.log()
        self.assertIn("client via-lb connected from 203.0.113.9:4711", log)
        self.assertEqual(4, log.count("bad PROXY header"))
        self.assertNotIn("client liar connected", log)

    def test_notWebSocket(self) -> None:
        """A plain HTTP request and garbage get closed; the listener keeps serving."""
        for junk in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c"
                     + b"\r\n\r\n"]:
            with socket.create_connection(("127.0.0.1", self.ws), timeout=5) as s:
                s.sendall(junk)
                data = b""
                while True:
                    chunk = s.recv(1000)
                    if not chunk:
                        break
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 4"), data)
        self.assertEqual(2, self.node.log().count("bad WebSocket request"))
        self.roundTrip(self.ws, transport="websockets")
