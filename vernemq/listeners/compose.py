# -*- test-case-name: tests.test_listeners_compose -*-
"""
One MQTT listener from its configuration: the stack of factories over
one endpoint.

From the socket up::

    tcp:PORT | unix:PATH           the endpoint (TLS kinds listen on plain TCP)
    [PROXY header]                 proxy_protocol (tcp, ws)
    [TLS + handshake deadline]     ssl, wss
    [WebSocket /mqtt]              ws, wss
    MQTTProtocol                   unchanged for every kind

C{use_identity_as_username} (ssl, wss) and
C{proxy_protocol_use_cn_as_username} (tcp, ws with proxy_protocol) set
the L{MQTTFactory.identity} seam.  C{nr_of_acceptors} has no meaning on
Twisted's single reactor (there is one accept loop; the listen backlog is
L{vernemq.config.loader.LISTEN_BACKLOG}); it is accepted and shown.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory

from vernemq.broker.broker import Broker
from vernemq.config import Config, ConfigError, ListenerSpec
from vernemq.listeners.proxy import ProxyProtocolFactory, proxy_cn
from vernemq.listeners.registry import Listener
from vernemq.listeners.tls import ClientTLS, ServerTLS, TLSConfigError, client_identity, tlsFactory
from vernemq.listening import ListenerService
from vernemq.mqtt.protocol import IdentityRefused, MQTTFactory

__all__ = ["buildListener", "clusterTLS", "listenerLabel"]


def listenerLabel(spec: ListenerSpec) -> str:
    """A human name for a listener, e.g. C{mqtt tcp.default}."""
    return f"mqtt {spec.kind}.{spec.name}"


def certificate_username(transport: Any, username: str | None) -> str | None:
    """C{use_identity_as_username}: the client certificate's CN, required."""
    cn = client_identity(transport)
    if cn is None:
        raise IdentityRefused("use_identity_as_username: no client certificate CN")
    return cn


def proxy_username(transport: Any, username: str | None) -> str | None:
    """C{proxy_protocol_use_cn_as_username}: the proxy's verified CN, if any."""
    cn = proxy_cn(transport)
    return username if cn is None else cn


def _config_error(config: Config, spec: ListenerSpec, error: TLSConfigError) -> ConfigError:
    key, _, reason = str(error).partition(": ")
    setting = key.rsplit(".", 1)[-1] if key != spec.key else None
    candidates = [key]
    if setting is not None:
        candidates += [f"listener.{spec.kind}.{setting}", f"listener.{setting}"]
    line = 0
    for candidate in candidates + [spec.key]:
        found = config.line_of(candidate)
        if found is not None:
            line, key = found, candidate
            break
    return ConfigError(config.path, line, key, reason)


def serverTLS(config: Config, spec: ListenerSpec) -> ServerTLS:
    """
    The TLS server context of a TLS listener.

    @raise ConfigError: a file is missing or wrong, naming the key.
    """
    try:
        return ServerTLS(spec.settings, spec.key)
    except TLSConfigError as e:
        raise _config_error(config, spec, e) from None


def clusterTLS(config: Config, spec: ListenerSpec) -> tuple[ServerTLS, ClientTLS]:
    """
    Both TLS sides of a C{listener.vmqs} data channel: the server context
    its listener will use and the client context for dialling peers.

    @raise ConfigError: a file is missing or wrong, naming the key.
    """
    try:
        return ServerTLS(spec.settings, spec.key), ClientTLS(spec.settings, spec.key)
    except TLSConfigError as e:
        raise _config_error(config, spec, e) from None


def buildListener(config: Config, spec: ListenerSpec, broker: Broker, reactor: Any) -> Listener:
    """
    The listening service and MQTT factory of one MQTT listener.

    @raise ConfigError: for TLS settings that cannot work.
    """
    settings = spec.settings
    connect_timeout = config["mqtt_connect_timeout"] / 1000.0
    identity = None
    tls: ServerTLS | None = None
    if spec.kind in ("ssl", "wss"):
        tls = serverTLS(config, spec)
        if tls.use_identity_as_username:
            identity = certificate_username
    proxied = bool(settings.get("proxy_protocol", False))
    if proxied and settings.get("proxy_protocol_use_cn_as_username", True):
        identity = proxy_username
    mqtt = MQTTFactory(broker, spec, reactor, identity)
    factory: IProtocolFactory = mqtt
    if spec.kind in ("ws", "wss"):
        from vernemq.listeners.websocket import MQTTWebSocketFactory

        factory = MQTTWebSocketFactory(
            mqtt,
            reactor,
            spec.key,
            config["max_ws_frame_size"],
            connect_timeout,
            xff=bool(settings.get("proxy_xff_support", False)),
        )
    if tls is not None:
        timeout = settings.get("tls_handshake_timeout", 5000) / 1000.0
        factory = tlsFactory(factory, tls, reactor, timeout)
    if proxied:
        factory = ProxyProtocolFactory(factory, reactor, spec.key, connect_timeout)
    description = spec.endpoint_description(tls=False)
    service = ListenerService(
        listenerLabel(spec), description, serverFromString(reactor, description), factory
    )
    return Listener(spec, service, mqtt)
