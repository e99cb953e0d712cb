"""
An epmd-compatible Erlang port mapper: a drop-in for Erlang's C{epmd} and
the node's own.

    - L{vernemq.dist.epmd.codec}: the wire protocol, sans-IO;
    - L{vernemq.dist.epmd.registry}: registrations and creation numbers;
    - L{vernemq.dist.epmd.server}: the server Protocol and Factory;
    - L{vernemq.dist.epmd.client}: a Deferred-returning client;
    - L{vernemq.dist.epmd.service}: the node's service (serve, register,
      take over);
    - L{vernemq.dist.epmd_cli}: the C{vmq-epmd} program.
"""

from vernemq.dist.epmd.client import (
    EPMD_PORT,
    EpmdClient,
    EpmdRegistrationError,
    EpmdTimeout,
    NodeRegistration,
)
from vernemq.dist.epmd.codec import EpmdProtocolError, NodeEntry
from vernemq.dist.epmd.registry import Registry
from vernemq.dist.epmd.server import EpmdServerFactory, EpmdServerProtocol
from vernemq.dist.epmd.service import EpmdService

__all__ = [
    "EPMD_PORT",
    "EpmdClient",
    "EpmdProtocolError",
    "EpmdRegistrationError",
    "EpmdServerFactory",
    "EpmdServerProtocol",
    "EpmdService",
    "EpmdTimeout",
    "NodeEntry",
    "NodeRegistration",
    "Registry",
]
