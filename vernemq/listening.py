# -*- test-case-name: tests.test_listening -*-
"""
A service that listens on one server endpoint and remembers where.

Unlike L{twisted.application.internet.StreamServerEndpointService} it keeps
the listening port public, so the node can log every address it really
listens on (port 0 resolved), and a bind failure always surfaces
synchronously from C{privilegedStartService}, which twistd runs before the
reactor: a node that cannot bind a configured port does not start.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure


class ListenerBindError(Exception):
    """
    A configured listener could not be bound.

    @ivar label: what the listener is, for example C{mqtt tcp.default}.
    @ivar description: the endpoint description it tried.
    """

    def __init__(self, label: str, description: str, reason: str) -> None:
        super().__init__(f"cannot listen for {label} on {description}: {reason}")
        self.label = label
        self.description = description


class ListenerService(Service):
    """
    Listen with C{factory} on C{endpoint} while running.

    @ivar port: the listening port once bound, else L{None}.
    @ivar label: a human name such as C{mqtt tcp.default}.
    """

    def __init__(
        self,
        label: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        self.label = label
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self.name = label

    def privilegedStartService(self) -> None:
        """
        Bind now; raise L{ListenerBindError} if the endpoint fails at once.
        """
        Service.privilegedStartService(self)
        if self.port is not None:
            return
        outcome: list[Any] = []
        d = self.endpoint.listen(self.factory)
        d.addBoth(outcome.append)
        if not outcome:
            # An endpoint that binds asynchronously; wait for it quietly.
            d.addCallback(self._bound)
            return
        result = outcome[0]
        if isinstance(result, Failure):
            raise ListenerBindError(
                self.label, self.description, result.getErrorMessage()
            )
        self._bound(result)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def startService(self) -> None:
        """Bind if L{privilegedStartService} has not already done so."""
        if self.port is None:
            self.privilegedStartService()
        Service.startService(self)

    def stopService(self) -> Deferred[None]:
        """Stop listening; the result fires once the port is closed."""
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        if isinstance(stopped, Deferred):
            return stopped
        return succeed(None)

    def address(self) -> str:
        """
        The address really listened on, as C{host:port} (C{[v6]:port} for
        IPv6, the path for a Unix socket), or the description if unbound.
        """
        if self.port is None:
            return self.description
        addr = self.port.getHost()
        host = getattr(addr, "host", None)
        port = getattr(addr, "port", None)
        if host is None or port is None:
            name = getattr(addr, "name", None)
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            return str(name)
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
