# -*- test-case-name: tests.test_mqtt_protocol -*-
"""
The MQTT listener protocol: bytes in, packets to the broker, bytes out.

L{MQTTProtocol} is thin.  It feeds received bytes to the sans-IO
L{vernemq.mqtt.codec.Decoder}, hands each packet to the broker (CONNECT)
or to its session (everything after), and collects the bytes the broker
produces for this connection until the broker flushes the batch (see
L{vernemq.broker.broker}).  It owns what belongs to one TCP connection:
the CONNECT timeout, the keepalive check, the maximum connection
lifetime, MQTT 5.0 inbound topic aliases, the client's Maximum Packet
Size for control packets, the AUTH packets of MQTT 5.0 enhanced
authentication (handed to L{vernemq.broker.enhanced_auth}), and closing.

Closing
=======

Every way a connection ends goes through one place, which decides about
the will and detaches the session at once (so nothing more is queued for
a dying connection):

  - bad input (any L{MQTTError} from the decoder or a handler, a first
    packet that is not CONNECT, a second CONNECT...): exactly one warning
    with the peer and the reason; an MQTT 5.0 client gets a CONNACK with
    the reason code if its CONNECT was not accepted yet, else a
    DISCONNECT; the will is published;
  - a refused CONNECT: a CONNACK with the (v3-mapped) reason code, one
    warning;
  - the connection is lost in the middle of a packet: one warning, the
    will is published (as for any loss without DISCONNECT);
  - a normal DISCONNECT: no will (MQTT 5.0 reason 0x04 asks for it);
  - keepalive timeout (1.5 x keep alive without a byte): DISCONNECT 0x8D
    for MQTT 5.0, will published;
  - takeover by a newer connection with the same client id: DISCONNECT
    0x8E for MQTT 5.0 (the broker decides about the will);
  - node shutdown: DISCONNECT 0x8B, will published.

Back-pressure
=============

The protocol registers itself with its transport as a streaming producer.
When the transport's buffer is full it is paused: the session then queues
deliveries instead of writing them (bounded by C{max_online_messages},
beyond which messages are dropped), and drains the queue on resume.  While
an asynchronous plugin hook is pending, reading from the client is paused
and no further packet is handled, so packet order is kept.

Inbound, C{max_message_rate} (and the C{throttle} modifier of
C{auth_on_publish}) throttle a publisher the way VerneMQ does: once a
one-second window has seen that many PUBLISHes, nothing more is read or
handled until the window ends; the client is neither disconnected nor are
its messages dropped.  C{max_message_size} is checked on the fixed header,
before a too large packet is buffered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.broker.broker import Broker
from vernemq.broker.enhanced_auth import EnhancedAuth
from vernemq.broker.session import Session
from vernemq.config import ListenerSpec
from vernemq.mqtt.codec import Decoder, encode
from vernemq.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MQTTError,
    Packet,
    PingReq,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocolVersion,
)
from vernemq.mqtt.reasons import connack_v3_return_code

__all__ = ["IdentityRefused", "MQTTFactory", "MQTTProtocol"]


class IdentityRefused(Exception):
    """
    Raised by a listener's L{MQTTFactory.identity} when the connection
    carries no identity it requires (no client certificate with
    C{use_identity_as_username}): the CONNECT is refused as not authorized.
    """


def _peer(address: IAddress) -> tuple[str, int]:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        name = getattr(address, "name", None)
        return (str(name) if name is not None else "unknown", 0)
    return (str(host), int(port))


#: Batches up to this size are sent at flush time rather than on the next
#: reactor turn (see L{MQTTProtocol.flush}).
SEND_NOW_BYTES = 4096


def _noDelay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on the TCP socket under C{transport} (also
    through TLS, WebSocket and PROXY wrappers), as VerneMQ's listeners do
    (C{nodelay}): MQTT packets are small, and Nagle would hold an
    acknowledgement or a delivery back until the peer's delayed ACK, up
    to 40 ms on Linux.
    """
    for _ in range(4):
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:
                pass
            return
        inner = getattr(transport, "transport", None)
        if inner is None or inner is transport:
            return
        transport = inner


@implementer(IPushProducer)
class MQTTProtocol(Protocol):
    """
    One MQTT client connection.

    @ivar level: the protocol level (3, 4, 5; bridge bit stripped), 4
        until a CONNECT says otherwise.
    @ivar session: the attached session once the CONNECT is accepted.
    @ivar client_id: the client id, once known.
    @ivar peer: C{(host, port)} of the client.
    @ivar paused: whether the transport asked us to stop writing.
    @ivar aliases: MQTT 5.0 inbound topic aliases.
    """

    log = Logger()
    factory: MQTTFactory
    transport: Any

    def __init__(self, factory: MQTTFactory) -> None:
        self.factory = factory
        self.broker: Broker = factory.broker
        self.listener: ListenerSpec = factory.listener
        self.reactor: IReactorTime = factory.reactor
        self._seconds = factory.reactor.seconds
        self.level = 4
        self.session: Session | None = None
        self.client_id: str | None = None
        self.peer: tuple[str, int] = ("unknown", 0)
        self.peer_text = "unknown"
        self.paused = False
        self.aliases: dict[int, str] = {}
        #: MQTT 5.0 enhanced authentication, when the CONNECT asked for it.
        self.auth: EnhancedAuth | None = None
        #: The client's Maximum Packet Size (MQTT 5.0; 0: no limit).
        self.max_packet_out = 0
        self._out: list[bytes] = []
        self._closing = False
        self._lost = False
        self._send_now = False
        self._accepted = False
        #: Reasons (pending hooks, throttling) not to read or handle packets.
        self._blocked = 0
        self._send_will = True
        self._last_rx = 0.0
        self._keepalive = 0.0
        self._handlers: dict[type, Any] = {Connect: self._on_connect}
        self._decoder = Decoder(max_packet_size=self.broker.config["max_message_size"])
        self._connect_call: IDelayedCall | None = None
        self._keepalive_call: IDelayedCall | None = None
        self._lifetime_call: IDelayedCall | None = None
        self._throttle_call: IDelayedCall | None = None
        self._rate_max = 0
        self._rate_count = 0
        self._rate_end = 0.0

    def __repr__(self) -> str:
        return f"<MQTTProtocol {self.client_id!r} from {self.peer_text}>"

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._closing

    # -- Twisted -------------------------------------------------------------

    def connectionMade(self) -> None:
        """Count the connection, enforce C{max_connections}, start the CONNECT timer."""
        _noDelay(self.transport)
        # Plain TCP sockets can be written at flush time (see flush).
        self._send_now = isinstance(self.transport, tcp.Connection)
        self.peer = _peer(self.transport.getPeer())
        self.peer_text = f"{self.peer[0]}:{self.peer[1]}"
        factory = self.factory
        limit = self.listener.settings.get("max_connections")
        if self.broker.shutting_down:
            self.log.warn(
                "refusing connection from {peer} on listener {listener}: "
                "the node is shutting down",
                peer=self.peer_text,
                listener=self.listener.key,
            )
            refused = True
        elif limit is not None and factory.count >= limit:
            self.log.warn(
                "refusing connection from {peer} on listener {listener}: "
                "max_connections ({limit}) reached",
                peer=self.peer_text,
                listener=self.listener.key,
                limit=limit,
            )
            refused = True
        else:
            refused = False
        if refused:
            self._closing = True
            self._lost = True
            self.transport.abortConnection()
            return
        factory.count += 1
        self.broker.connections.add(self)
        self.broker.counters.connections += 1
        self._last_rx = self._seconds()
        self.transport.registerProducer(self, True)
        timeout = self.broker.config["mqtt_connect_timeout"] / 1000.0
        self._connect_call = self.reactor.callLater(timeout, self._connect_timeout)

    def dataReceived(self, data: bytes) -> None:
        """Decode and handle every complete packet, then flush the batch."""
        if self._closing:
            return
        self._last_rx = self._seconds()
        broker = self.broker
        broker.begin()
        try:
            self._decoder.feed(data)
            if not self._blocked:
                self._process()
        finally:
            broker.end()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Detach the session (publishing the will unless closed normally)."""
        if self._lost:
            return
        if not self._closing and self._decoder.buffered:
            self.log.warn(
                "connection from {peer} (client id {client_id}) lost in the middle "
                "of a packet ({buffered} bytes received)",
                peer=self.peer_text,
                client_id=self.client_id,
                buffered=self._decoder.buffered,
            )
        self._lost = True
        self._closing = True
        self._cancel_timers()
        self.factory.count -= 1
        broker = self.broker
        broker.connections.discard(self)
        broker.counters.connections -= 1
        self._out = []
        if self.session is not None:
            broker.begin()
            try:
                self._detach()
            finally:
                broker.end()

    # -- IPushProducer (back-pressure from the transport) ------------------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: queue deliveries instead of writing."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport drained: deliver what was queued."""
        self.paused = False
        session = self.session
        if session is not None and session.pending:
            self.broker.begin()
            try:
                session.drain()
            finally:
                self.broker.end()

    def stopProducing(self) -> None:
        """The transport is going away; L{connectionLost} follows."""

    # -- packets -------------------------------------------------------------------

    def _process(self) -> None:
        decoder = self._decoder
        while not self._blocked and not self._closing:
            try:
                pkt = decoder.next_packet()
                if pkt is None:
                    return
                handler = self._handlers.get(pkt.__class__)
                if handler is None:
                    raise ProtocolError(f"unexpected {type(pkt).__name__} packet")
                result = handler(pkt)
            except MQTTError as err:
                self.violation(err)
                return
            except Exception:
                self.log.failure(
                    "internal error handling a packet from {peer} ({client_id})",
                    peer=self.peer_text,
                    client_id=self.client_id,
                )
                self.disconnect(0x83, send_will=True)
                return
            if result is not None:
                self._block(result)

    def _block(self, d: Deferred[Any]) -> None:
        """Handle no further packet (and read nothing) until C{d} fires."""
        self._hold()
        d.addBoth(self._unblock)

    def _hold(self) -> None:
        """Stop reading and handling packets until the matching L{_release}."""
        self._blocked += 1
        if self._blocked == 1 and not self._closing:
            self.transport.pauseProducing()

    def _release(self) -> None:
        """Undo one L{_hold}; the last one resumes reading and handling."""
        self._blocked -= 1
        if self._blocked or self._closing:
            return
        self.transport.resumeProducing()
        self._process()

    def _unblock(self, result: object) -> None:
        broker = self.broker
        broker.begin()
        try:
            if isinstance(result, Failure):
                self._blocked -= 1
                if isinstance(result.value, MQTTError):
                    self.violation(result.value)
                else:
                    self.log.failure(
                        "internal error handling a packet from {peer} ({client_id})",
                        result,
                        peer=self.peer_text,
                        client_id=self.client_id,
                    )
                    self.disconnect(0x83, send_will=True)
                return
            self._release()
        finally:
            broker.end()

    def _on_connect(self, pkt: Connect) -> Deferred[None] | None:
        if self._connect_call is not None:
            if self._connect_call.active():
                self._connect_call.cancel()
            self._connect_call = None
        self.level = pkt.version
        self.client_id = pkt.client_id or None
        if self.level == 5:
            self.max_packet_out = int(pkt.properties.get("maximum_packet_size", 0))
        identity = self.factory.identity
        if identity is not None:
            # The listener knows who the client is (a TLS client certificate,
            # a PROXY header): that name replaces the CONNECT's username for
            # the auth hooks, the session and every hook after.
            try:
                pkt.username = identity(self.transport, pkt.username)
            except IdentityRefused as e:
                self.refuse(0x87, str(e))
                return None
        return self.broker.connect(self, pkt)

    def _on_auth(self, pkt: Auth) -> Deferred[Any] | None:
        """AUTH: a step of enhanced authentication (see L{EnhancedAuth})."""
        if self.auth is None:
            raise ProtocolError("AUTH without an authentication method in CONNECT")
        if self._connect_call is not None:
            if self._connect_call.active():
                self._connect_call.cancel()
            self._connect_call = None
        return self.auth.on_auth(pkt)

    def _on_early_disconnect(self, pkt: Disconnect) -> None:
        """DISCONNECT in the middle of the enhanced authentication of CONNECT."""
        self.close(send_will=False)

    def await_auth(self) -> None:
        """
        The enhanced authentication of the CONNECT goes on: accept only
        AUTH (or DISCONNECT), within C{mqtt_connect_timeout}.
        """
        self._handlers = {Auth: self._on_auth, Disconnect: self._on_early_disconnect}
        if self._connect_call is None:
            timeout = self.broker.config["mqtt_connect_timeout"] / 1000.0
            self._connect_call = self.reactor.callLater(timeout, self._connect_timeout)

    def attach(self, session: Session, keep_alive: int) -> None:
        """
        The broker accepted the CONNECT: route further packets to
        C{session} and start the keepalive and lifetime timers.
        """
        self.session = session
        self._accepted = True
        self._handlers = {
            Publish: session.handle_publish,
            PubAck: session.handle_puback,
            PubRec: session.handle_pubrec,
            PubRel: session.handle_pubrel,
            PubComp: session.handle_pubcomp,
            Subscribe: session.handle_subscribe,
            Unsubscribe: session.handle_unsubscribe,
            PingReq: session.handle_pingreq,
            Disconnect: session.handle_disconnect,
            Auth: self._on_auth,
        }
        limits = session.limits
        # max_message_size may be changed per client by auth_on_register.
        self._decoder.max_packet_size = limits.max_message_size
        if limits.max_message_rate:
            # Only rate-limited clients pay for the counting.
            self._rate_max = limits.max_message_rate
            self._handlers[Publish] = self._rated_publish
        if keep_alive:
            self._keepalive = keep_alive * 1.5
            self._keepalive_call = self.reactor.callLater(self._keepalive, self._check_keepalive)
        lifetime = self.listener.settings.get("max_connection_lifetime", 0)
        modified = limits.max_connection_lifetime
        if modified and (not lifetime or modified < lifetime):
            lifetime = modified
        if lifetime:
            self._lifetime_call = self.reactor.callLater(lifetime, self._lifetime_over)

    # -- inbound flow control -----------------------------------------------------

    def _rated_publish(self, pkt: Publish) -> Deferred[None] | None:
        """
        A PUBLISH under C{max_message_rate}: once the current one-second
        window has seen that many, read nothing more until it ends.  As in
        VerneMQ the client is throttled through TCP, never disconnected,
        and no message is dropped.  O(1): one clock read, two compares.
        """
        now = self._seconds()
        if now >= self._rate_end:
            self._rate_end = now + 1.0
            self._rate_count = 0
        self._rate_count += 1
        if self._rate_count >= self._rate_max:
            self.throttle(self._rate_end - now)
        session = self.session
        assert session is not None
        return session.handle_publish(pkt)

    def throttle(self, seconds: float) -> None:
        """
        Read and handle nothing from this client for C{seconds}
        (C{max_message_rate}, or the C{throttle} modifier of
        C{auth_on_publish}).  Packets already received wait, in order.
        """
        if self._closing or self._throttle_call is not None or seconds <= 0:
            return
        self._hold()
        self._throttle_call = self.reactor.callLater(seconds, self._throttle_over)

    def _throttle_over(self) -> None:
        self._throttle_call = None
        broker = self.broker
        broker.begin()
        try:
            self._release()
        finally:
            broker.end()

    # -- output --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Add bytes to this connection's output batch."""
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        out.append(data)

    def write_parts(self, head: bytes, middle: bytes, tail: bytes) -> None:
        """Add three byte strings to this connection's output batch."""
        out = self._out
        if not out:
            self.broker.mark_dirty(self)
        out += (head, middle, tail)

    def send_packet(self, packet: Packet) -> None:
        """
        Encode C{packet} for this connection and add it to the batch.  A
        packet beyond the client's Maximum Packet Size loses its reason
        string and user properties, and is not sent if still too large.
        """
        data = encode(packet, self.level)
        limit = self.max_packet_out
        if limit and len(data) > limit:
            props = getattr(packet, "properties", None)
            if props and ("reason_string" in props or "user_property" in props):
                packet.properties = {  # type: ignore[union-attr]
                    k: v for k, v in props.items() if k not in ("reason_string", "user_property")
                }
                data = encode(packet, self.level)
            if len(data) > limit:
                return
        self.write(data)

    def flush(self) -> None:
        """Write the collected output to the transport in one call."""
        out = self._out
        if not out:
            return
        self._out = []
        if self._lost:
            return
        transport = self.transport
        data = out[0] if len(out) == 1 else b"".join(out)
        transport.write(data)
        if (
            self._send_now
            and len(data) <= SEND_NOW_BYTES
            and not self.paused
            and not transport.disconnecting
        ):
            # Twisted only buffers in write() and sends on the next reactor
            # turn; sending a small batch at once saves a poll round trip,
            # which is most of a message's latency at moderate rates.  Big
            # batches (floods) are left to coalesce with the next ones.  A
            # socket error leaves the transport registered for writing, so
            # the reactor meets it again and closes the connection as usual.
            transport.doWrite()

    # -- closing -------------------------------------------------------------------

    def _detach(self) -> None:
        session, self.session = self.session, None
        self._handlers = {}
        if session is not None:
            session.connection_lost(self, self._send_will)

    def close(self, send_will: bool) -> None:
        """
        Close after the pending output: detach the session now, publishing
        the will if C{send_will}.
        """
        if self._closing:
            return
        self._closing = True
        self._send_will = send_will
        self._cancel_timers()
        self._detach()
        self.close_transport()

    def close_transport(self) -> None:
        """Flush this connection's output and close the transport."""
        self._closing = True
        if self._lost:
            return
        self.flush()
        self.transport.loseConnection()

    def refuse(self, reason_code: int, why: str) -> None:
        """
        Refuse the CONNECT: CONNACK with C{reason_code} (mapped to the
        3.x return code for 3.x clients), one warning, close.
        """
        self.log.warn(
            "refused connection from {peer} (client id {client_id}): {why}",
            peer=self.peer_text,
            client_id=self.client_id,
            why=why,
            reason_code=reason_code,
        )
        if self.level == 5:
            self.send_packet(ConnAck(False, reason_code))
        else:
            self.send_packet(ConnAck(False, int(connack_v3_return_code(reason_code))))
        self.close(send_will=False)

    def violation(self, err: MQTTError) -> None:
        """
        Bad input: one warning, CONNACK or DISCONNECT with the reason code
        for MQTT 5.0 (CONNACK 1 for an unknown protocol version), close;
        the will is published.
        """
        if self._closing:
            return
        self.log.warn(
            "closing connection from {peer} (client id {client_id}): {reason}",
            peer=self.peer_text,
            client_id=self.client_id,
            reason=str(err),
            reason_code=err.reason_code,
        )
        if not self._accepted:
            if isinstance(err, UnsupportedProtocolVersion):
                if err.protocol_level == 5:
                    self.write(encode(ConnAck(False, 0x84), 5))
                else:
                    self.write(encode(ConnAck(False, 1), 4))
            elif self._decoder.protocol_level == 5:
                self.level = 5
                self.send_packet(ConnAck(False, err.reason_code))
            elif self.level == 5:
                self.send_packet(ConnAck(False, err.reason_code))
        elif self.level == 5:
            self.send_packet(Disconnect(err.reason_code))
        self.close(send_will=True)

    def disconnect(self, reason_code: int, send_will: bool = True) -> None:
        """
        Close on the server's initiative; MQTT 5.0 clients get DISCONNECT
        with C{reason_code} first.
        """
        if self._closing:
            return
        if self.level == 5 and self._accepted:
            self.send_packet(Disconnect(reason_code))
        self.close(send_will)

    def taken_over(self) -> None:
        """
        A newer connection took this client id (the broker has already
        detached the session): DISCONNECT 0x8E for MQTT 5.0, close.
        """
        self.session = None
        self._handlers = {}
        if self.level == 5 and self._accepted and not self._closing:
            self.send_packet(Disconnect(0x8E))
        self._closing = True
        self._cancel_timers()
        self.close_transport()

    def shutdown(self) -> None:
        """The node stops: DISCONNECT 0x8B, publish the will, close later."""
        if self._closing:
            return
        if self.level == 5 and self._accepted:
            self.send_packet(Disconnect(0x8B))
        self._closing = True
        self._send_will = True
        self._cancel_timers()
        self._detach()

    # -- timers --------------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for name in ("_connect_call", "_keepalive_call", "_lifetime_call", "_throttle_call"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)

    def _connect_timeout(self) -> None:
        self._connect_call = None
        if self._closing:
            return
        self.log.info(
            "closing connection from {peer}: no CONNECT within {timeout} ms",
            peer=self.peer_text,
            timeout=self.broker.config["mqtt_connect_timeout"],
        )
        self.close(send_will=False)

    def _check_keepalive(self) -> None:
        self._keepalive_call = None
        if self._closing:
            return
        idle = self._seconds() - self._last_rx
        if idle < self._keepalive:
            self._keepalive_call = self.reactor.callLater(
                self._keepalive - idle, self._check_keepalive
            )
            return
        emit = (
            self.log.warn
            if self.broker.config["logging.keepalive_as_warning"]
            else self.log.info
        )
        emit(
            "client {client_id} from {peer} stopped: keepalive of {keepalive:g}s expired",
            client_id=self.client_id,
            peer=self.peer_text,
            keepalive=self._keepalive / 1.5,
        )
        self.broker.begin()
        try:
            self.disconnect(0x8D, send_will=True)
        finally:
            self.broker.end()

    def _lifetime_over(self) -> None:
        self._lifetime_call = None
        self.log.info(
            "client {client_id} from {peer} reached max_connection_lifetime",
            client_id=self.client_id,
            peer=self.peer_text,
        )
        self.broker.begin()
        try:
            self.disconnect(0xA0, send_will=True)
        finally:
            self.broker.end()


class MQTTFactory(Factory[MQTTProtocol]):
    """
    Builds L{MQTTProtocol}s for one MQTT listener.

    @ivar broker: the node's broker.
    @ivar listener: the listener's configuration (mountpoint, limits...).
    @ivar count: open connections on this listener.
    @ivar identity: the listener's identity seam, or C{None}: called at
        CONNECT with the connection's transport and the CONNECT's username,
        it returns the username to use (e.g. the CN of the client's TLS
        certificate) or raises L{IdentityRefused}.
    """

    #: No "Starting factory" log lines: the node logs its listeners once.
    noisy = False

    def __init__(
        self,
        broker: Broker,
        listener: ListenerSpec,
        reactor: IReactorTime,
        identity: Callable[[Any, str | None], str | None] | None = None,
    ) -> None:
        self.broker = broker
        self.listener = listener
        self.reactor = reactor
        self.identity = identity
        self.count = 0

    def buildProtocol(self, addr: IAddress | None) -> MQTTProtocol:
        """A protocol for one accepted connection."""
        return MQTTProtocol(self)
