# -*- test-case-name: tests.test_cluster_membership -*-
"""
How cluster code reaches other nodes: a small contract over the Erlang
distribution.

Membership, readiness and the admin commands need four things from the
distribution: call an exported C{vmq} function on a peer (C{rpc:call}),
export one here, know whether a connection is up, and hear about
connections going up and down.  L{IClusterTransport} names exactly that;
L{DistTransport} implements it over L{vernemq.dist.node.Node}, and the
tests use an in-memory network of fakes (C{tests/clusterhelpers.py}) that
provide the same interface.

A call to this node itself is served locally (the distribution does not
connect a node to itself), so "run this on node N" works the same for
every N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

from vernemq.cluster.metadata.interfaces import IMetadataTransport
from vernemq.dist.etf import Atom
from vernemq.dist.node import VMQ_MODULE, BadRpc, INodeObserver, Mailbox, Node


class IClusterTransport(Interface):
    """The distribution, as cluster code uses it."""

    name = Attribute("This node's name (C{str}).")

    def call(node: str, function: str, args: list[Any], timeout: float) -> Deferred[Any]:  # noqa: N805
        """
        C{rpc:call(node, vmq, function, args, timeout)}: fires with the
        result or fails with L{BadRpc} (C{nodedown}, C{timeout}, ...).
        """

    def export(function: str, implementation: Callable[..., Any]) -> None:  # noqa: N805
        """Export C{implementation} as C{vmq:function/arity}."""

    def isConnected(node: str) -> bool:  # noqa: N805
        """Whether a distribution connection to C{node} is up."""

    def disconnect(node: str) -> None:  # noqa: N805
        """Close the connection to C{node}, if any."""

    def subscribe(observer: INodeObserver) -> Callable[[], None]:  # noqa: N805
        """Hear about connections going up and down; returns an unsubscriber."""


@implementer(IClusterTransport)
class DistTransport:
    """L{IClusterTransport} over this node's L{Node}."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = str(node.name)

    def call(self, node: str, function: str, args: list[Any], timeout: float) -> Deferred[Any]:
        """C{rpc:call} of C{vmq:function}; served locally for this node."""
        if node == self.name:
            return Deferred.fromCoroutine(self._local(function, args))
        return self.node.call(node, VMQ_MODULE, function, args, timeout)

    async def _local(self, function: str, args: list[Any]) -> Any:
        outcome = await self.node.exports.apply(Atom(VMQ_MODULE), Atom(function), list(args))
        if str(outcome.klass) in ("return", "throw"):
            return outcome.value
        raise BadRpc((Atom("EXIT"), outcome.value))

    def export(self, function: str, implementation: Callable[..., Any]) -> None:
        """Register C{vmq:function} in the node's registry."""
        self.node.exports.register(VMQ_MODULE, function, implementation)

    def isConnected(self, node: str) -> bool:
        """Whether the distribution connection to C{node} is up."""
        return node == self.name or self.node.isConnected(node)

    def disconnect(self, node: str) -> None:
        """C{erlang:disconnect_node/1}."""
        if node != self.name:
            self.node.disconnect(node)

    def subscribe(self, observer: INodeObserver) -> Callable[[], None]:
        """Node up/down events of the distribution."""
        return self.node.subscribe(observer)

    def peerHost(self, node: str) -> str | None:
        """
        The IP address the distribution connection to C{node} reaches it
        at, or L{None} when not connected.
        """
        connection = self.node.connection(node)
        transport = getattr(connection, "transport", None)
        host = getattr(transport.getPeer(), "host", None) if transport is not None else None
        return host if isinstance(host, str) else None


#: The registered name of the metadata store's mailbox on every node.
METADATA_MAILBOX = "vmq_metadata"


@implementer(IMetadataTransport)
class DistMetadataTransport:
    """
    L{IMetadataTransport} over the Erlang distribution: a message is an
    asynchronous send (C{{vmq_metadata, Node} ! {md, From, Message}}) to
    the mailbox registered as C{vmq_metadata} on the peer, so messages to
    one peer keep their order (one connection) and are lost, never
    corrupted, when the connection breaks (anti-entropy repairs that).
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = str(node.name)
        self._mailbox: Mailbox | None = None

    def send(self, peer: str, message: Any) -> None:
        """Send C{message} to the store of C{peer}."""
        self.node.send((Atom(METADATA_MAILBOX), Atom(peer)), (_MD, Atom(self.name), message))

    def listen(self, receive: Callable[[str, Any], None]) -> None:
        """Register the mailbox; C{receive(peer, message)} gets every message."""

        def handle(envelope: Any) -> None:
            if (
                isinstance(envelope, tuple)
                and len(envelope) == 3
                and envelope[0] == _MD
                and isinstance(envelope[1], Atom)
            ):
                receive(str(envelope[1]), envelope[2])

        self._mailbox = self.node.spawn(handle, METADATA_MAILBOX)

    def close(self) -> None:
        """Unregister the mailbox."""
        if self._mailbox is not None:
            self.node.unregister(METADATA_MAILBOX)
            self._mailbox.close()
            self._mailbox = None


_MD = Atom("md")


__all__ = ["METADATA_MAILBOX", "DistMetadataTransport", "DistTransport", "IClusterTransport"]
