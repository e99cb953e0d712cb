"""
L{vernemq.listeners.registry} on a node composed on a memory reactor:
every listener kind served, and live start / stop / restart / show.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from tests.test_listeners_tls import certificates
from vernemq.config import ConfigError, config_from_text
from vernemq.dist.connection import AcceptorFactory
from vernemq.listeners.proxy import ProxyProtocolFactory
from vernemq.listeners.registry import UnknownListener
from vernemq.listeners.tls import ClientTLS, ServerTLS
from vernemq.listeners.websocket import MQTTWebSocketFactory
from vernemq.mqtt.codec import encode
from vernemq.mqtt.packets import Connect
from vernemq.mqtt.protocol import MQTTFactory
from vernemq.node import makeNodeService


class NodeListenersTests(SynchronousTestCase):
    """The node serves tcp, unix, ssl, ws, wss and PROXY listeners."""

    def setUp(self) -> None:
        certs = certificates(self)
        self.sock = self.mktemp()
        tls = "\n".join(
            certs.listenerLines("listener.ssl.default")
            + certs.listenerLines("listener.wss.default")
            + certs.listenerLines("listener.vmqs.clustering")
        )
        self.config = config_from_text(
            "allow_anonymous = on\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            f"listener.tcp.unix = local:{self.sock}:0\n"
            "listener.tcp.proxied = 127.0.0.1:1885\n"
            "listener.tcp.proxied.proxy_protocol = on\n"
            "listener.tcp.proxied.mountpoint = lb/\n"
            "listener.ssl.default = 127.0.0.1:8883\n"
            "listener.ws.default = 127.0.0.1:8080\n"
            "listener.ws.default.max_connections = 5\n"
            "listener.wss.default = 127.0.0.1:8443\n"
            "listener.vmqs.clustering = 127.0.0.1:44054\n"
            + tls + "\n"
        )
        self.reactor = MemoryReactorClock()
        self.node = makeNodeService(self.config, self.reactor)
        self.node.privilegedStartService()
        self.node.startService()
        self.addCleanup(self.node.stopService)
        self.registry = self.node.registry

    def factories(self) -> dict[int, object]:
        return {
            port: factory
            for port, factory, _, _ in self.reactor.tcpServers
            if not isinstance(factory, AcceptorFactory)
        }

    def test_stacks(self) -> None:
        """Each kind listens on plain TCP (or unix) with its own stack of factories."""
        factories = self.factories()
        self.assertIsInstance(factories[1883], MQTTFactory)
        self.assertIsInstance(factories[1885], ProxyProtocolFactory)
        self.assertIsInstance(factories[8883], TLSMemoryBIOFactory)
        self.assertIsInstance(factories[8080], MQTTWebSocketFactory)
        wss = factories[8443]
        self.assertIsInstance(wss, TLSMemoryBIOFactory)
        self.assertIsInstance(wss.wrappedFactory.wrappedFactory, MQTTWebSocketFactory)
        self.assertEqual([self.sock], [path for path, *_ in self.reactor.unixServers])
        self.assertEqual(6, len(self.node.listeners()))
        server, client = self.node.cluster_tls["clustering"]
        self.assertIsInstance(server, ServerTLS)
        self.assertIsInstance(client, ClientTLS)
        # The data channel serves listener.vmqs over TLS with that context.
        vmqs = factories[44054]
        self.assertIsInstance(vmqs, TLSMemoryBIOFactory)
        self.assertEqual(vmqs.wrappedFactory.label, "listener.vmqs.clustering")
        assert self.node.cluster is not None
        params = self.node.cluster.datachannel.connect_params()
        self.assertEqual(params, ("127.0.0.1", 44054, True))

    def test_show(self) -> None:
        """One row per listener with VerneMQ's columns."""
        rows = {row["name"] + "/" + row["type"]: row for row in self.registry.show()}
        self.assertEqual(
            rows["default/mqttws"],
            {
                "type": "mqttws",
                "name": "default",
                "status": "running",
                "address": "127.0.0.1",
                "port": 8080,
                "mountpoint": "",
                "max_conns": 5,
                "active_conns": 0,
                "all_acceptors": 10,
            },
        )
        self.assertEqual(rows["proxied/mqtt"]["mountpoint"], "lb/")
        self.assertEqual(rows["unix/mqtt"]["address"], self.sock)
        self.assertEqual(
            {"mqtt", "mqtts", "mqttws", "mqttwss"}, {row["type"] for row in rows.values()}
        )

    def test_stopStartRestart(self) -> None:
        """A stopped listener stops accepting and shows as stopped; start binds again."""
        listener = self.registry.find("127.0.0.1", 1883)
        self.assertIs(listener, self.registry.get("tcp.default"))
        self.assertIs(listener, self.registry.get("listener.tcp.default"))
        self.successResultOf(self.registry.stop("tcp.default"))
        self.assertFalse(listener.running)
        self.assertIsNone(listener.service.port)
        self.assertEqual(
            "stopped", [r for r in self.registry.show() if r["port"] == 1883][0]["status"]
        )
        before = len(self.reactor.tcpServers)
        self.registry.start("tcp.default")
        self.assertTrue(listener.running)
        self.assertEqual(before + 1, len(self.reactor.tcpServers))
        self.registry.start("tcp.default")
        self.assertEqual(before + 1, len(self.reactor.tcpServers))
        self.successResultOf(self.registry.restart("tcp.default"))
        self.assertTrue(listener.running)
        self.assertEqual(before + 2, len(self.reactor.tcpServers))
        self.assertRaises(UnknownListener, self.registry.get, "tcp.nope")
        self.assertRaises(UnknownListener, self.registry.find, "127.0.0.1", 1)

    def connectClient(self, clientId: str) -> StringTransport:
        listener = self.registry.get("tcp.default")
        proto = listener.mqtt.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 1))
        proto.makeConnection(transport)
        proto.dataReceived(encode(Connect(clientId), 4))
        return transport

    def test_stopKeepsOrKillsSessions(self) -> None:
        """Stopping keeps connected clients; with kill_sessions they are closed."""
        transport = self.connectClient("keeper")
        self.successResultOf(self.registry.stop("tcp.default"))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(1, self.registry.show()[0]["active_conns"])
        self.registry.start("tcp.default")
        self.successResultOf(self.registry.stop("tcp.default", kill_sessions=True))
        self.assertTrue(transport.disconnecting)


class TLSConfigErrorTests(SynchronousTestCase):
    """A TLS listener whose files do not load stops the node from composing."""

    def test_missingKey(self) -> None:
        """The error names the key and its line."""
        config = config_from_text(
            "listener.ssl.default = 127.0.0.1:8883\n"
            "listener.ssl.default.certfile = /nonexistent/cert.pem\n"
            "listener.ssl.default.keyfile = /nonexistent/key.pem\n"
        )
        with self.assertRaises(ConfigError) as raised:
            makeNodeService(config, MemoryReactorClock())
        self.assertEqual(raised.exception.key, "listener.ssl.default.certfile")
        self.assertEqual(raised.exception.line, 2)
