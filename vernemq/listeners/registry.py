# -*- test-case-name: tests.test_listeners_registry -*-
"""
The node's MQTT listeners, controllable while the node runs.

L{ListenerRegistry} is what C{vmq-admin listener} will drive: L{show}
lists every listener as VerneMQ's table does (type, status, address,
port, mountpoint, max_conns, active_conns, all_acceptors); L{stop} stops
accepting (existing sessions stay, or are kicked with C{kill_sessions});
L{start} listens again; L{restart} does both.  Listeners are named by
their key (C{tcp.default} or C{listener.tcp.default}) or found by
address and port (L{find}), as C{vmq-admin listener stop address=...
port=...} names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from vernemq.broker.broker import Broker
from vernemq.config import ListenerSpec
from vernemq.listening import ListenerService
from vernemq.mqtt.protocol import MQTTFactory

__all__ = ["Listener", "ListenerRegistry", "UnknownListener"]

#: VerneMQ's names for the listener types in C{vmq-admin listener show}.
TYPE_NAMES = {"tcp": "mqtt", "ssl": "mqtts", "ws": "mqttws", "wss": "mqttwss"}


class UnknownListener(KeyError):
    """No listener has that name or address."""


@dataclass
class Listener:
    """
    One MQTT listener of the node.

    @ivar spec: its configuration.
    @ivar service: the service that listens (a child of the node).
    @ivar mqtt: the MQTT factory its connections come from.
    """

    spec: ListenerSpec
    service: ListenerService
    mqtt: MQTTFactory

    @property
    def running(self) -> bool:
        """Whether it accepts connections now."""
        return self.service.port is not None

    def connections(self, broker: Broker) -> list[Any]:
        """The open MQTT connections that came through this listener."""
        return [conn for conn in broker.connections if conn.factory is self.mqtt]


class ListenerRegistry:
    """The node's MQTT listeners, by key, in configuration order."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._listeners: dict[str, Listener] = {}

    def add(self, listener: Listener) -> None:
        """Register C{listener} under its key."""
        self._listeners[listener.spec.key] = listener

    def __iter__(self) -> Any:
        return iter(list(self._listeners.values()))

    def __len__(self) -> int:
        return len(self._listeners)

    def get(self, name: str) -> Listener:
        """
        The listener called C{name}: C{tcp.default} or C{listener.tcp.default}.

        @raise UnknownListener: if there is none.
        """
        key = name if name.startswith("listener.") else f"listener.{name}"
        try:
            return self._listeners[key]
        except KeyError:
            raise UnknownListener(name) from None

    def find(self, address: str, port: int | None = None) -> Listener:
        """
        The listener configured on C{address} and C{port} (a unix socket:
        its path, no port), as C{vmq-admin listener} names them.

        @raise UnknownListener: if there is none.
        """
        for listener in self._listeners.values():
            spec = listener.spec
            if spec.unix_path is not None:
                if address == spec.unix_path:
                    return listener
            elif spec.host == address and spec.port == port:
                return listener
        raise UnknownListener(f"{address}:{port}")

    def show(self) -> list[dict[str, Any]]:
        """
        One row per listener, with VerneMQ's columns: C{type}, C{name},
        C{status} (C{running}/C{stopped}), C{address}, C{port} (the bound
        port when running), C{mountpoint}, C{max_conns}, C{active_conns},
        C{all_acceptors}.
        """
        rows = []
        for listener in self._listeners.values():
            spec = listener.spec
            port: Any = spec.port
            bound = listener.service.port
            if bound is not None:
                port = getattr(bound.getHost(), "port", port)
            max_conns = spec.settings.get("max_connections")
            rows.append(
                {
                    "type": TYPE_NAMES.get(spec.kind, spec.kind),
                    "name": spec.name,
                    "status": "running" if listener.running else "stopped",
                    "address": spec.unix_path if spec.unix_path is not None else spec.host,
                    "port": port if spec.unix_path is None else 0,
                    "mountpoint": spec.settings.get("mountpoint", ""),
                    "max_conns": "infinity" if max_conns is None else max_conns,
                    "active_conns": listener.mqtt.count,
                    "all_acceptors": spec.settings.get("nr_of_acceptors", 10),
                }
            )
        return rows

    def stop(self, name: str, kill_sessions: bool = False) -> Deferred[None]:
        """
        Stop accepting connections on listener C{name}.  Its clients stay
        connected unless C{kill_sessions}: then each is closed as if lost
        (will published; MQTT 5.0 clients first get DISCONNECT 0x8B).

        @return: fires once the port is closed.
        """
        listener = self.get(name)
        d = listener.service.stopService()
        if kill_sessions:
            broker = self.broker
            broker.begin()
            try:
                for conn in listener.connections(broker):
                    conn.disconnect(0x8B, send_will=True)
            finally:
                broker.end()
        return d

    def start(self, name: str) -> None:
        """
        Listen again on listener C{name} (nothing if it runs).

        @raise vernemq.listening.ListenerBindError: if it cannot bind.
        """
        listener = self.get(name)
        if not listener.running:
            listener.service.startService()

    def restart(self, name: str, kill_sessions: bool = False) -> Deferred[None]:
        """Stop, then start listener C{name}; fires once it listens again."""
        d = self.stop(name, kill_sessions)
        d.addCallback(lambda _: self.start(name))
        return d
