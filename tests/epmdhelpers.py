"""
Test helpers for the epmd server and client: in-memory connections with
real-looking addresses, request builders, and a memory reactor whose
ports can be made busy.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim

from vernemq.dist.epmd import codec
from vernemq.dist.epmd.codec import NodeEntry
from vernemq.dist.epmd.server import EpmdServerFactory, EpmdServerProtocol

LOCAL = "127.0.0.1"
REMOTE = "192.0.2.7"


def alive2(
    name: bytes,
    port: int = 1000,
    highVsn: int = 6,
    lowVsn: int = 5,
    extra: bytes = b"",
    nodeType: int = 77,
) -> bytes:
    """A framed ALIVE2 request."""
    return codec.encodeAlive2Request(NodeEntry(name, port, nodeType, 0, highVsn, lowVsn, extra))


def framed(payload: bytes) -> bytes:
    """C{payload} with its u16 length."""
    return struct.pack(">H", len(payload)) + payload


class ServerConnection:
    """
    One connection to an L{EpmdServerFactory} over a L{StringTransport}.
    """

    def __init__(self, factory: EpmdServerFactory, peer: str = LOCAL, port: int = 50000) -> None:
        self.factory = factory
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", LOCAL, factory.port),
            peerAddress=IPv4Address("TCP", peer, port),
        )
        self.protocol: EpmdServerProtocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.lost = False

    def send(self, data: bytes, chunk: int | None = None) -> bytes:
        """
        Feed C{data} (in pieces of C{chunk} bytes); return and clear what
        the server wrote.  If the server closed, deliver connectionLost.
        """
        size = chunk or len(data) or 1
        for i in range(0, len(data), size):
            if self.lost:
                break
            self.protocol.dataReceived(data[i : i + size])
        return self.settle()

    def settle(self) -> bytes:
        """Deliver connectionLost if the server closed; return the output."""
        out = self.transport.value()
        self.transport.clear()
        if self.transport.disconnecting and not self.lost:
            self.close()
        return out

    @property
    def closed(self) -> bool:
        """Whether the server closed (or the peer did)."""
        return self.lost or self.transport.disconnecting

    def close(self, reason: Failure | None = None) -> None:
        """The connection ends (the peer closed, reset or the server did)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(reason or Failure(ConnectionDone()))


class BusyPortsReactor(MemoryReactorClock):
    """A memory reactor on which listening on some ports fails (in use)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy: set[int] = set()

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if port in self.busy:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRINUSE, "Address already in use")
            )
        return super().listenTCP(port, factory, backlog, interface)


def completeClient(
    reactor: MemoryReactorClock, serverFactory: Any, index: int = 0
) -> tuple[Any, Any, iosim.IOPump]:
    """
    Connect the pending client connection C{index} of C{reactor} to a
    protocol of C{serverFactory}, both ends with loopback addresses.
    Returns C{(clientProtocol, serverProtocol, pump)}.
    """
    host, port, clientFactory, _, _ = reactor.tcpClients.pop(index)
    reactor.connectors.pop(index)
    serverAddress = IPv4Address("TCP", LOCAL, port)
    clientAddress = IPv4Address("TCP", LOCAL, 40000 + len(reactor.tcpClients))
    serverProtocol = serverFactory.buildProtocol(clientAddress)
    clientProtocol = clientFactory.buildProtocol(serverAddress)
    serverTransport = iosim.FakeTransport(
        serverProtocol, isServer=True, hostAddress=serverAddress, peerAddress=clientAddress
    )
    clientTransport = iosim.FakeTransport(
        clientProtocol, isServer=False, hostAddress=clientAddress, peerAddress=serverAddress
    )
    pump = iosim.connect(
        serverProtocol, serverTransport, clientProtocol, clientTransport, clock=reactor
    )
    return clientProtocol, serverProtocol, pump


def refuseClient(reactor: MemoryReactorClock, index: int = 0) -> None:
    """Fail the pending client connection C{index} with "refused"."""
    from twisted.internet.error import ConnectionRefusedError

    reactor.tcpClients.pop(index)[2].clientConnectionFailed(
        reactor.connectors.pop(index), Failure(ConnectionRefusedError())
    )
