"""
Shared test helpers for the broker and the MQTT protocol.

L{Harness} builds a L{Broker} on a L{task.Clock} from C{vernemq.conf} text
and one L{MQTTFactory} per configured MQTT listener.  L{FakeClient} is an
MQTT client over a L{StringTransport}: it encodes packets with the real
codec and feeds them to the server protocol (optionally in chunks of a
given size, down to one byte), and decodes what the server wrote with a
client-side L{Decoder}, so tests compare packets, not bytes.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from vernemq.broker.broker import Broker
from vernemq.config import Config, ListenerSpec, config_from_text
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from vernemq.mqtt.protocol import MQTTFactory, MQTTProtocol
from vernemq.plugins.hooks import HookChain

#: The shipped etc/vmq.acl (VerneMQ's default: everybody may do everything).
DEFAULT_ACL = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "vmq.acl"
)

BASE_CONFIG = """\
allow_anonymous = on
listener.tcp.default = 127.0.0.1:1883
"""


class Harness:
    """
    A broker on a fake clock with one factory per MQTT listener.

    @ivar clock: the broker's reactor (advance it to fire timers).
    @ivar factories: listener name -> factory.
    """

    def __init__(
        self,
        text: str = BASE_CONFIG,
        hooks: HookChain | None = None,
        **overrides: Any,
    ) -> None:
        self.clock = Clock()
        config: Config = config_from_text(text)
        if config.line_of("vmq_acl.acl_file") is None and "vmq_acl.acl_file" not in overrides:
            # The default ./etc/vmq.acl is relative to the test's directory:
            # use the shipped one (VerneMQ's default, "topic #").
            overrides["vmq_acl.acl_file"] = DEFAULT_ACL
        config = config.replace(**overrides)
        self.config = config
        self.broker = Broker(config, self.clock, hooks)
        self.factories: dict[str, MQTTFactory] = {}
        for spec in config.mqtt_listeners():
            self.factories[spec.name] = MQTTFactory(self.broker, spec, self.clock)
        self._port = 40000

    def listener(self, name: str = "default") -> ListenerSpec:
        """The spec of listener C{name}."""
        return self.factories[name].listener

    def client(self, level: int = 4, listener: str = "default") -> FakeClient:
        """A new connected (TCP-wise) fake client; no CONNECT sent yet."""
        self._port += 1
        return FakeClient(self, self.factories[listener], level, self._port)

    def connected(
        self, client_id: str = "c", level: int = 4, listener: str = "default", **kw: Any
    ) -> FakeClient:
        """A fake client whose CONNECT was accepted (asserted)."""
        c = self.client(level, listener)
        ack = c.connect(client_id, **kw)
        assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
        return c

    def advance(self, seconds: float) -> None:
        """Move the clock (timers and deferred flushes run)."""
        self.clock.advance(seconds)


class FakeClient:
    """
    An MQTT client talking to one server protocol over a StringTransport.

    @ivar proto: the server-side protocol.
    @ivar transport: what the server writes to.
    @ivar level: the protocol level this client speaks.
    """

    def __init__(self, harness: Harness, factory: MQTTFactory, level: int, port: int) -> None:
        self.harness = harness
        self.level = level
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", port))
        proto = factory.buildProtocol(self.transport.getPeer())
        assert proto is not None
        self.proto: MQTTProtocol = proto
        self.proto.makeConnection(self.transport)
        self.decoder = Decoder(protocol_level=level & 0x7F, server=False)
        self._seen = 0
        self._next_pid = 0
        self.chunk = 0

    # -- sending -----------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        """Feed raw bytes to the server (in chunks of C{self.chunk} if set)."""
        if self.chunk:
            for i in range(0, len(data), self.chunk):
                self.proto.dataReceived(data[i : i + self.chunk])
        else:
            self.proto.dataReceived(data)

    def send(self, *packets: Packet) -> None:
        """Encode packets for this client's level and send them in one read."""
        self.send_bytes(b"".join(encode(p, self.level) for p in packets))

    def pid(self) -> int:
        """A fresh packet id."""
        self._next_pid = self._next_pid % 65535 + 1
        return self._next_pid

    # -- receiving -----------------------------------------------------------

    def received(self) -> list[Packet]:
        """Every packet the server wrote since the last call."""
        data = self.transport.value()
        new = data[self._seen :]
        self._seen = len(data)
        self.decoder.feed(new)
        return list(self.decoder)

    def publishes(self) -> list[Publish]:
        """The PUBLISH packets received since the last L{received} call."""
        return [p for p in self.received() if isinstance(p, Publish)]

    @property
    def closed(self) -> bool:
        """Whether the server closed (or is closing) the connection."""
        return bool(self.transport.disconnecting) or self.proto._lost

    def lose(self) -> None:
        """The TCP connection drops (no DISCONNECT)."""
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionLost()))

    def finish_close(self) -> None:
        """Complete a server-initiated close (as the reactor would)."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        if not self.proto._lost:
            self.proto.connectionLost(Failure(ConnectionDone()))

    # -- flows -------------------------------------------------------------------

    def connect(
        self,
        client_id: str = "c",
        clean: bool = True,
        keep_alive: int = 0,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Packet | None:
        """Send CONNECT; return the CONNACK (or None if nothing came back)."""
        self.send(
            Connect(
                client_id,
                protocol_level=self.level,
                clean_start=clean,
                keep_alive=keep_alive,
                will=will,
                username=username,
                password=password,
                properties=properties or {},
                protocol_name="MQIsdp" if self.level & 0x7F == 3 else "MQTT",
            )
        )
        packets = self.received()
        return packets[0] if packets else None

    def subscribe(self, *filters: str | tuple[str, int], **props: Any) -> SubAck:
        """SUBSCRIBE (filter or (filter, qos) pairs); return the SUBACK."""
        subs = []
        for f in filters:
            if isinstance(f, tuple):
                subs.append(Subscription(f[0], f[1]))
            else:
                subs.append(Subscription(f, 0))
        return self.subscribe_with(subs, **props)

    def subscribe_with(self, subs: list[Subscription], **props: Any) -> SubAck:
        """SUBSCRIBE with full options; return the SUBACK (asserted first)."""
        pid = self.pid()
        self.send(Subscribe(pid, subs, props))
        packets = self.received()
        self.pending = packets[1:]
        ack = packets[0]
        assert isinstance(ack, SubAck) and ack.packet_id == pid, packets
        return ack

    def unsubscribe(self, *filters: str) -> UnsubAck:
        """UNSUBSCRIBE; return the UNSUBACK."""
        pid = self.pid()
        self.send(Unsubscribe(pid, list(filters)))
        ack = self.received()[0]
        assert isinstance(ack, UnsubAck), ack
        return ack

    def publish(
        self,
        topic: str,
        payload: bytes = b"x",
        qos: int = 0,
        retain: bool = False,
        **props: Any,
    ) -> int | None:
        """Send a PUBLISH; return its packet id (None for QoS 0)."""
        pid = self.pid() if qos else None
        self.send(Publish(topic, payload, qos, retain, False, pid, props))
        return pid

    def ack(self, pub: Publish) -> None:
        """Acknowledge a received PUBLISH fully (PUBACK, or PUBREC+PUBREL... as client)."""
        assert pub.packet_id is not None
        if pub.qos == 1:
            self.send(PubAck(pub.packet_id))
        elif pub.qos == 2:
            self.send(PubRec(pub.packet_id))
            rel = [p for p in self.received() if isinstance(p, PubRel)]
            assert rel, "no PUBREL"
            self.send(PubComp(pub.packet_id))

    def disconnect(self, reason_code: int = 0, **props: Any) -> None:
        """Send DISCONNECT."""
        self.send(Disconnect(reason_code, props))

    def ping(self) -> None:
        """Send PINGREQ."""
        self.send(PingReq())


__all__ = ["BASE_CONFIG", "FakeClient", "Harness"]
