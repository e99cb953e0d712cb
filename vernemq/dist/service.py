# -*- test-case-name: tests.test_dist_service -*-
"""
The distribution listener: where other Erlang nodes connect to this one.

L{DistributionService} binds the first free port of
C{erlang.distribution.port_range.minimum..maximum} (any port when unset; a
minimum without maximum means that one port), as Erlang's
C{inet_tcp_dist} does: ports are tried in order and only "address in
use" moves on to the next one; any other error, or a range with no free
port, stops the node's start with a message naming the range.  Binding
happens in C{privilegedStartService}, which twistd runs before the reactor,
so a node that cannot listen never starts.

Once listening, the node's short name and port are published in epmd
through the node's L{vernemq.dist.epmd.service.EpmdService} (held for the
node's life and renewed when epmd is replaced); the creation epmd hands
out becomes the node's creation.

Where it listens: on loopback when the node's name says it can only be
reached there (C{VerneMQ@127.0.0.1}, VerneMQ's default, or C{@localhost});
on all IPv4 interfaces otherwise.  A node that listens beyond loopback with
VerneMQ's well-known default cookie (C{vmq}) logs a prominent warning: any
host that can reach the port can run every exported function.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from vernemq.dist.epmd.service import EpmdService, epmdSettings
from vernemq.dist.handshake import splitNodeName
from vernemq.dist.node import Node

#: VerneMQ's well-known default cookie.
DEFAULT_COOKIE = "vmq"


class DistributionBindError(Exception):
    """
    The distribution listener could not be bound; the node does not start.
    """


def portRange(minimum: int | None, maximum: int | None) -> tuple[int, int]:
    """
    The ports to try, as Erlang reads C{inet_dist_listen_min/max}: C{(0, 0)}
    (any port) without a minimum, C{(min, min)} without a maximum.
    """
    if minimum is None:
        return (0, 0)
    return (minimum, minimum if maximum is None else maximum)


def listenInterface(nodeName: str) -> str:
    """
    Where the distribution listener binds for node C{nodeName}: loopback
    when the host part is a loopback address or C{localhost}, else all
    interfaces (IPv6 when the host part is an IPv6 address).
    """
    _, host = splitNodeName(nodeName)
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "0.0.0.0"
    if address.is_loopback:
        return str(address)
    return "::" if address.version == 6 else "0.0.0.0"


def isLoopback(interface: str) -> bool:
    """Whether C{interface} is a loopback address."""
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


class DistributionService(Service):
    """
    Listen for distribution connections to C{node} and publish the port.

    @ivar node: the L{Node}.
    @ivar port: the listening port once bound.
    @ivar range: the C{(first, last)} ports to try.
    @ivar interface: the address to bind.
    """

    log = Logger()
    name = "distribution"

    def __init__(
        self,
        node: Node,
        reactor: Any,
        range: tuple[int, int] = (0, 0),
        interface: str = "0.0.0.0",
        epmd: EpmdService | None = None,
        defaultCookie: str = DEFAULT_COOKIE,
    ) -> None:
        self.node = node
        self._reactor = reactor
        self.range = range
        self.interface = interface
        self.epmd = epmd
        self._defaultCookie = defaultCookie
        self.port: IListeningPort | None = None

    @property
    def portNumber(self) -> int | None:
        """The port listened on, once bound."""
        if self.port is None:
            return None
        number: int = getattr(self.port.getHost(), "port", 0)
        return number

    def _describeRange(self) -> str:
        first, last = self.range
        if first == 0 and last == 0:
            return "any port"
        return (
            f"erlang.distribution.port_range {first}..{last} "
            "(erlang.distribution.port_range.minimum/maximum)"
        )

    def _endpoint(self, port: int) -> Any:
        if ":" in self.interface:
            return TCP6ServerEndpoint(self._reactor, port, interface=self.interface)
        return TCP4ServerEndpoint(self._reactor, port, interface=self.interface)

    def privilegedStartService(self) -> None:
        """
        Bind the first free port of the range now.

        @raise DistributionBindError: no port of the range is free, or
            binding failed for another reason than "address in use".
        """
        Service.privilegedStartService(self)
        if self.port is not None:
            return
        first, last = self.range
        factory = self.node.acceptorFactory()
        for number in range(first, last + 1):
            outcome: list[Any] = []
            self._endpoint(number).listen(factory).addBoth(outcome.append)
            if not outcome:
                raise DistributionBindError(f"binding port {number} did not complete at once")
            result = outcome[0]
            if not isinstance(result, Failure):
                self.port = result
                return
            error = result.value
            if isinstance(error, CannotListenError) and (
                getattr(error.socketError, "errno", None) == errno.EADDRINUSE
            ):
                continue
            raise DistributionBindError(
                f"cannot listen for Erlang distribution on {self.interface}:{number} "
                f"({self._describeRange()}): {result.getErrorMessage()}"
            )
        raise DistributionBindError(
            f"cannot listen for Erlang distribution: every port of "
            f"{self._describeRange()} on {self.interface} is in use"
        )

    def startService(self) -> None:
        """Bind (unless done), then publish the port in epmd."""
        if self.port is None:
            self.privilegedStartService()
        Service.startService(self)
        node = self.node
        alive, _ = splitNodeName(node.name)
        number = self.portNumber
        assert number is not None
        self.log.info(
            "Erlang distribution: node {nodename} listens on {interface}:{port}",
            nodename=node.name,
            interface=self.interface,
            port=number,
        )
        if node.cookie == self._defaultCookie and not isLoopback(self.interface):
            self.log.warn(
                "SECURITY WARNING: distributed_cookie is VerneMQ's well-known default "
                "{cookie!r} while the Erlang distribution port {port} listens on "
                "{interface}: anyone who can reach it can call this node's functions. "
                "Set distributed_cookie in vernemq.conf to a long random secret.",
                cookie=node.cookie,
                port=number,
                interface=self.interface,
            )
        if self.epmd is not None:
            self.epmd.publish(alive, number, onCreation=node.setCreation)

    def stopService(self) -> Deferred[None]:
        """Unpublish, close every connection, stop listening."""
        Service.stopService(self)
        if self.epmd is not None:
            self.epmd.unpublish(splitNodeName(self.node.name)[0])
        self.node.stop()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        if isinstance(stopped, Deferred):
            return stopped
        return succeed(None)


def distributionServiceFromConfig(
    config: Any,
    reactor: Any,
    epmd: EpmdService | None,
    environ: Mapping[str, str] | None = None,
) -> DistributionService:
    """
    The node's L{DistributionService} and its L{Node}, from C{config} (a
    L{vernemq.config.Config}): C{nodename}, C{distributed_cookie},
    C{erlang.distribution.port_range.*}, C{erlang.distribution.net_ticktime};
    peers are looked up in the epmd on C{erlang.epmd.port}.
    """
    nodeName: str = config["nodename"]
    _, epmdPort, _ = epmdSettings(
        config, config.line_of, os.environ if environ is None else environ
    )
    node = Node(
        nodeName,
        config["distributed_cookie"],
        reactor,
        tickTime=config["erlang.distribution.net_ticktime"],
        epmdPort=epmdPort,
    )
    return DistributionService(
        node,
        reactor,
        portRange(
            config["erlang.distribution.port_range.minimum"],
            config["erlang.distribution.port_range.maximum"],
        ),
        listenInterface(nodeName),
        epmd,
    )
