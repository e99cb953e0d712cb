# -*- test-case-name: tests.test_listeners_websocket -*-
"""
MQTT over WebSocket (C{listener.ws}, C{listener.wss}), with autobahn.

The path is C{/mqtt} only and the subprotocol C{mqtt} (or the older
C{mqttv3.1}), as in VerneMQ; any other request gets an HTTP error and is
closed, with one warning.  Once the WebSocket is open, an unchanged
L{vernemq.mqtt.protocol.MQTTProtocol} runs over L{WebSocketTransport},
which turns its writes into binary messages and gives it the socket's
flow control (pausing reads, registering as the producer), its peer and,
for C{wss}, the TLS client certificate.

MQTT packets travel in binary messages only (MQTT-6.0.0-1): a text
message is a protocol violation.  Frames (and messages) larger than
C{max_ws_frame_size} close the connection.  Compression is not offered.

autobahn's own log lines are silenced (it logs several per failed
connection); this module logs one.  Its timers run on the injected
reactor, not the global one.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vernemq.mqtt.packets import ProtocolError
from vernemq.mqtt.protocol import MQTTFactory, MQTTProtocol

__all__ = ["MQTTWebSocketFactory", "MQTTWebSocketProtocol", "WebSocketTransport"]

#: The only path that serves MQTT.
MQTT_PATH = "/mqtt"
#: The subprotocols accepted, in order of preference.
SUBPROTOCOLS = ("mqtt", "mqttv3.1")
#: The largest upgrade request (request line and headers) buffered.
MAX_REQUEST = 16384

_log = Logger(namespace="vernemq.listeners.websocket")


class _Silent:
    """A txaio-style logger that drops autobahn's lines (we log our own)."""

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        pass

    debug = info = warn = error = critical = failure = trace = _drop


class _ReactorTimer:
    """autobahn's batched timer interface over the injected reactor."""

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, fn: Any, *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._reactor.callLater(delay, fn, *args, **kwargs)


class WebSocketTransport:
    """
    What the MQTT protocol sees as its transport on a WebSocket: writes
    become binary messages; flow control, addresses and anything else
    (C{getPeerCertificate}, C{proxy_info}) come from the socket below.
    """

    def __init__(self, ws: MQTTWebSocketProtocol) -> None:
        self._ws = ws

    def write(self, data: bytes) -> None:
        """Send C{data} as one binary message."""
        self._ws.sendMessage(data, isBinary=True)

    def writeSequence(self, data: list[bytes]) -> None:
        """Send the parts as one binary message."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close the WebSocket (close frame, then the socket)."""
        self._ws.sendClose(1000)

    def abortConnection(self) -> None:
        """Drop the socket at once."""
        self._ws.transport.abortConnection()

    def getPeer(self) -> IAddress:
        """The client (from X-Forwarded-For with C{proxy_xff_support})."""
        forwarded = self._ws.forwarded_for
        if forwarded is not None:
            return forwarded
        return self._ws.transport.getPeer()  # type: ignore[no-any-return]

    def getHost(self) -> IAddress:
        """The listening address."""
        return self._ws.transport.getHost()  # type: ignore[no-any-return]

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Be told when the socket's send buffer fills and drains."""
        self._ws.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """Stop being told."""
        self._ws.unregisterProducer()

    def pauseProducing(self) -> None:
        """Stop reading from the socket."""
        self._ws.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from the socket again."""
        self._ws.transport.resumeProducing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws.transport, name)


class MQTTWebSocketProtocol(WebSocketServerProtocol):
    """
    One WebSocket connection carrying one MQTT connection.

    @ivar mqtt: the MQTT protocol, once the WebSocket is open.
    @ivar forwarded_for: the client named by X-Forwarded-For, when trusted.
    """

    log = _Silent()
    factory: MQTTWebSocketFactory
    transport: Any

    def __init__(self) -> None:
        super().__init__()
        self.mqtt: MQTTProtocol | None = None
        self.forwarded_for: IAddress | None = None
        self._failed = False

    def dataReceived(self, data: bytes) -> None:
        """Bound what an unfinished upgrade request may buffer."""
        if self.state == self.STATE_CONNECTING and not self._failed:
            buffered = len(getattr(self, "data", b"")) + len(data)
            if buffered > MAX_REQUEST and b"\r\n\r\n" not in data:
                self.failHandshake("HTTP request headers too large", 431)
                return
        super().dataReceived(data)

    def onConnect(self, request: ConnectionRequest) -> str | None:
        """Accept C{/mqtt} with the C{mqtt} subprotocol (or none offered)."""
        if request.path != MQTT_PATH:
            raise ConnectionDeny(404, f"MQTT is served on {MQTT_PATH} only")
        if self.factory.xff:
            self.forwarded_for = _forwarded(request.headers.get("x-forwarded-for"))
        for name in SUBPROTOCOLS:
            if name in request.protocols:
                return name
        if request.protocols:
            raise ConnectionDeny(400, "the WebSocket subprotocol must be mqtt")
        return None

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Not a WebSocket request for MQTT: one warning, an HTTP error, close."""
        if not self._failed:
            self._failed = True
            _log.warn(
                "closing connection from {peer} on listener {listener}: "
                "bad WebSocket request: {why}",
                peer=_peer_text(self.transport.getPeer()),
                listener=self.factory.label,
                why=reason,
                code=code,
            )
        super().failHandshake(reason, code, responseHeaders)

    def onOpen(self) -> None:
        """Start the MQTT protocol over the open WebSocket."""
        mqtt = self.factory.mqtt.buildProtocol(self.transport.getPeer())
        self.mqtt = mqtt
        mqtt.makeConnection(WebSocketTransport(self))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Bytes of the MQTT stream (in binary messages only)."""
        mqtt = self.mqtt
        if mqtt is None:
            return
        if not isBinary:
            broker = mqtt.broker
            broker.begin()
            try:
                mqtt.violation(ProtocolError("MQTT over WebSocket must use binary messages"))
            finally:
                broker.end()
            return
        mqtt.dataReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """The WebSocket is gone: so is the MQTT connection."""
        mqtt, self.mqtt = self.mqtt, None
        if mqtt is not None:
            mqtt.connectionLost(Failure(ConnectionDone()))
        elif not self._failed and not wasClean and self.factory.reportUnopened:
            self._failed = True
            _log.warn(
                "closing connection from {peer} on listener {listener}: "
                "WebSocket not opened: {why}",
                peer=_peer_text(self.transport.getPeer()),
                listener=self.factory.label,
                why=self.wasNotCleanReason or reason or "closed",
            )


class MQTTWebSocketFactory(WebSocketServerFactory):
    """
    Serves MQTT over WebSocket with an L{MQTTFactory}.

    @ivar mqtt: the listener's MQTT factory.
    @ivar label: the listener key, for log lines.
    @ivar xff: whether to trust X-Forwarded-For (C{proxy_xff_support}).
    """

    protocol = MQTTWebSocketProtocol  # type: ignore[assignment]
    log = _Silent()
    noisy = False
    #: Log connections closed before the WebSocket opened (e.g. timeouts).
    reportUnopened = True

    def __init__(
        self,
        mqtt: MQTTFactory,
        reactor: IReactorTime,
        label: str,
        max_frame_size: int,
        open_timeout: float,
        xff: bool = False,
    ) -> None:
        super().__init__(reactor=reactor)
        self.mqtt = mqtt
        self.label = label
        self.xff = xff
        self._batched_timer = _ReactorTimer(reactor)
        self.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=max_frame_size,
            maxMessagePayloadSize=max_frame_size,
            openHandshakeTimeout=open_timeout,
            closeHandshakeTimeout=1,
            failByDrop=False,
            autoPingInterval=0,
        )

    def startFactory(self) -> None:
        """Start the MQTT factory too."""
        self.mqtt.doStart()
        super().startFactory()

    def stopFactory(self) -> None:
        """Stop the MQTT factory too."""
        self.mqtt.doStop()
        super().stopFactory()


def _forwarded(header: str | None) -> IAddress | None:
    """The last (nearest proxy's) address of X-Forwarded-For, if valid."""
    if not header:
        return None
    text = header.split(",")[-1].strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 4:
        return IPv4Address("TCP", str(addr), 0)
    return IPv6Address("TCP", str(addr), 0)


def _peer_text(address: IAddress) -> str:
    host = getattr(address, "host", None)
    if host is not None:
        return f"{host}:{getattr(address, 'port', 0)}"
    return str(getattr(address, "name", None) or "unknown")
