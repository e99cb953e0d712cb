# -*- test-case-name: tests.test_dist_epmd -*-
"""
The epmd wire protocol, sans-IO: bytes in, request and reply values out,
and back.  No transport, no reactor.

A request is C{Length:u16} followed by C{Length} bytes whose first byte is
the request code; replies are raw bytes without a length prefix.  All
integers are big-endian.  The byte layouts, limits and quirks follow
Erlang/OTP 25's C{epmd_srv.c} and C{epmd_cli.c} (see the shared notes
C{spec/epmd-and-erlang-distribution.md} section 1).

Server side:

    - L{RequestReader} frames one request from a connection and enforces
      the packet size limits;
    - L{parseRequest} turns a payload into one of the request values
      (L{Alive2Request}, L{PortPlease2Request}, L{NamesRequest},
      L{DumpRequest}, L{KillRequest}, L{StopRequest});
    - C{encode*Reply} build the replies, each one C{bytes} to be written
      with a single C{write()} (Erlang's client treats a split reply as
      garbage).

Client side: C{encode*Request} build requests; L{parseAlive2Reply},
L{parsePort2Reply}, L{parseNamesReply} read replies.

Every malformed request raises L{EpmdProtocolError}; the server closes
that connection without a reply, as Erlang's epmd does.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

#: Register a node (C{'x'}).
ALIVE2_REQ: Final = 120
#: Look a node up (C{'z'}).
PORT_PLEASE2_REQ: Final = 122
#: List the registered nodes (C{'n'}).
NAMES_REQ: Final = 110
#: List registered and unregistered slots (C{'d'}); local peers only.
DUMP_REQ: Final = 100
#: Ask epmd to exit (C{'k'}); local peers only.
KILL_REQ: Final = 107
#: Unregister a name (C{'s'}); local peers, relaxed mode only.
STOP_REQ: Final = 115
#: ALIVE2 reply with a 16-bit creation, for nodes whose HighVsn is below 6.
ALIVE2_RESP: Final = 121
#: ALIVE2 reply with a 32-bit creation, for HighVsn 6 and above.
ALIVE2_X_RESP: Final = 118
#: PORT_PLEASE2 reply.
PORT2_RESP: Final = 119

#: epmd's receive buffer; a request whose C{Length + 2} reaches it is refused.
INBUF_SIZE: Final = 3 * 1020
#: The largest request payload epmd accepts (C{Length} value).
MAX_REQUEST_LENGTH: Final = INBUF_SIZE - 3
#: Longest node name and longest extra field, in bytes.
MAXSYMLEN: Final = 255 * 4
#: Longest node name in characters.
MAX_NAME_CHARS: Final = 255
#: The creation epmd reports with a refused registration.
ERROR_CREATION: Final = 99
#: A normal (visible) Erlang node.
NODE_TYPE_NORMAL: Final = 77
#: A hidden node or C node.
NODE_TYPE_HIDDEN: Final = 72

#: The fixed part of an ALIVE2 payload after the code: port, type,
#: protocol, high and low version.
_ALIVE2_HEAD = struct.Struct(">HBBHH")


class EpmdProtocolError(Exception):
    """
    A request epmd does not answer: the connection is closed without a
    reply.  C{str(error)} says why, for the one log line.
    """


@dataclass(frozen=True)
class NodeEntry:
    """
    What a node tells epmd about itself and PORT_PLEASE2 hands back.

    @ivar name: the node name (the part before C{@}), raw UTF-8 bytes.
    @ivar port: its distribution listen port.
    @ivar nodeType: L{NODE_TYPE_NORMAL} or L{NODE_TYPE_HIDDEN}.
    @ivar protocol: 0 for TCP/IPv4.
    @ivar highVsn: highest distribution version it speaks.
    @ivar lowVsn: lowest distribution version it speaks.
    @ivar extra: opaque bytes, echoed byte for byte.
    """

    name: bytes
    port: int
    nodeType: int = NODE_TYPE_NORMAL
    protocol: int = 0
    highVsn: int = 6
    lowVsn: int = 5
    extra: bytes = b""

    @property
    def textName(self) -> str:
        """The name as text (invalid UTF-8 replaced)."""
        return self.name.decode("utf-8", "replace")


@dataclass(frozen=True)
class Alive2Request:
    """
    C{ALIVE2_REQ}: register L{entry} for as long as this connection lives.
    """

    entry: NodeEntry


@dataclass(frozen=True)
class PortPlease2Request:
    """
    C{PORT_PLEASE2_REQ}: where does node C{name} listen?
    """

    name: bytes


@dataclass(frozen=True)
class NamesRequest:
    """C{NAMES_REQ}: list the registered nodes."""


@dataclass(frozen=True)
class DumpRequest:
    """C{DUMP_REQ}: list registered nodes and unregistered slots."""


@dataclass(frozen=True)
class KillRequest:
    """C{KILL_REQ}: stop epmd."""


@dataclass(frozen=True)
class StopRequest:
    """
    C{STOP_REQ}: forcibly unregister node C{name}.
    """

    name: bytes


Request = Alive2Request | PortPlease2Request | NamesRequest | DumpRequest | KillRequest | StopRequest

#: Requests that only local peers may send; others are closed silently.
LOCAL_ONLY: Final = (Alive2Request, DumpRequest, KillRequest, StopRequest)


class RequestReader:
    """
    Frame the one request of an epmd connection.

    Feed bytes as they arrive; L{feed} returns the payload (code byte
    first) once it is complete, else L{None}.  It raises
    L{EpmdProtocolError} for a zero length, a length at or over the buffer
    limit, or more bytes than the length announced (epmd does not
    pipeline).

    @ivar complete: whether a payload was returned already.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.complete = False

    def feed(self, data: bytes) -> bytes | None:
        """
        Add C{data}; return the complete payload the first time there is one.
        """
        if self.complete:
            raise EpmdProtocolError("more data after a complete request")
        self._buffer += data
        if len(self._buffer) < 2:
            return None
        (length,) = struct.unpack_from(">H", self._buffer)
        if length == 0:
            raise EpmdProtocolError("zero-length request")
        if length + 2 >= INBUF_SIZE:
            raise EpmdProtocolError(f"request too large ({length} bytes)")
        if len(self._buffer) < length + 2:
            return None
        if len(self._buffer) > length + 2:
            raise EpmdProtocolError("more data than the request length")
        self.complete = True
        payload = self._buffer[2:]
        self._buffer = b""
        return payload


def _checkPortName(raw: bytes) -> bytes:
    """
    Validate the name of a PORT_PLEASE2 or STOP request: one trailing NUL
    is stripped; empty, NUL inside, bad UTF-8 or too long is an error.
    """
    name = raw[:-1] if raw.endswith(b"\0") else raw
    if not name:
        raise EpmdProtocolError("empty node name")
    if b"\0" in name:
        raise EpmdProtocolError("NUL byte in node name")
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise EpmdProtocolError("node name is not UTF-8") from None
    if len(text) > MAX_NAME_CHARS:
        raise EpmdProtocolError("node name too long")
    return name


def parseRequest(payload: bytes) -> Request:
    """
    Decode one request payload (the bytes after the length).

    @raise EpmdProtocolError: for an unknown code or a malformed request.
    """
    code = payload[0]
    if code == ALIVE2_REQ:
        return _parseAlive2(payload)
    if code == PORT_PLEASE2_REQ:
        return PortPlease2Request(_checkPortName(payload[1:]))
    # Like epmd, ignore whatever follows the code of these three.
    if code == NAMES_REQ:
        return NamesRequest()
    if code == DUMP_REQ:
        return DumpRequest()
    if code == KILL_REQ:
        return KillRequest()
    if code == STOP_REQ:
        name = payload[1:]
        return StopRequest(name[:-1] if name.endswith(b"\0") else name)
    raise EpmdProtocolError(f"got garbage (request code {code})")


def _parseAlive2(payload: bytes) -> Alive2Request:
    size = len(payload)
    if size <= 13:
        raise EpmdProtocolError("ALIVE2 request too short")
    port, nodeType, protocol, highVsn, lowVsn = _ALIVE2_HEAD.unpack_from(payload, 1)
    (nameLength,) = struct.unpack_from(">H", payload, 9)
    if nameLength + 13 > size:
        raise EpmdProtocolError("ALIVE2 name length beyond the packet")
    name = payload[11 : 11 + nameLength]
    (extraLength,) = struct.unpack_from(">H", payload, 11 + nameLength)
    if extraLength + nameLength + 13 > size:
        raise EpmdProtocolError("ALIVE2 extra length beyond the packet")
    if b"\0" in name:
        raise EpmdProtocolError("NUL byte in node name")
    extra = payload[13 + nameLength : 13 + nameLength + extraLength]
    return Alive2Request(NodeEntry(name, port, nodeType, protocol, highVsn, lowVsn, extra))


def registrationProblem(entry: NodeEntry) -> str | None:
    """
    Why epmd refuses to register C{entry} (with an error reply), or
    L{None} if the name and extra are acceptable.  Duplicates are the
    registry's business.
    """
    if len(entry.name) > MAXSYMLEN:
        return "node name too long"
    try:
        text = entry.name.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid node name encoding"
    if len(text) > MAX_NAME_CHARS:
        return "node name too long"
    if len(entry.extra) > MAXSYMLEN:
        return "extra data too long"
    return None


# -- replies (server side) ----------------------------------------------------


def reportedCreation(creation: int, highVsn: int) -> int:
    """
    The creation a node is told: the 32-bit counter for HighVsn 6 and
    above, else C{counter % 3 + 1} (1..3).
    """
    if highVsn >= 6:
        return creation & 0xFFFFFFFF
    return creation % 3 + 1


def encodeAlive2Reply(result: int, creation: int, highVsn: int) -> bytes:
    """
    C{'v' Result Creation:u32} for HighVsn >= 6, else
    C{'y' Result Creation:u16}.  C{creation} is sent as given.
    """
    if highVsn >= 6:
        return struct.pack(">BBI", ALIVE2_X_RESP, result, creation)
    return struct.pack(">BBH", ALIVE2_RESP, result, creation & 0xFFFF)


def encodeAlive2Error(highVsn: int) -> bytes:
    """The refusal: Result 1, creation 99, in the requester's format."""
    return encodeAlive2Reply(1, ERROR_CREATION, highVsn)


def encodePort2Reply(entry: NodeEntry | None) -> bytes:
    """C{'w' 0 <entry>} for a known node, C{'w' 1} for an unknown one."""
    if entry is None:
        return bytes((PORT2_RESP, 1))
    return b"".join(
        (
            struct.pack(
                ">BBHBBHHH",
                PORT2_RESP,
                0,
                entry.port,
                entry.nodeType,
                entry.protocol,
                entry.highVsn,
                entry.lowVsn,
                len(entry.name),
            ),
            entry.name,
            struct.pack(">H", len(entry.extra)),
            entry.extra,
        )
    )


def encodeNamesReply(epmdPort: int, entries: list[NodeEntry]) -> bytes:
    """
    C{EpmdPort:u32} then C{"name N at port P\\n"} per node, in the order
    given (epmd's is newest first).
    """
    lines = b"".join(b"name %s at port %d\n" % (e.name, e.port) for e in entries)
    return struct.pack(">I", epmdPort) + lines


def encodeDumpReply(
    epmdPort: int,
    active: list[tuple[NodeEntry, int]],
    unused: list[tuple[NodeEntry, int]],
) -> bytes:
    """
    C{EpmdPort:u32}, one NUL-terminated line per C{(entry, fd)} active
    node, then one per unregistered slot, in epmd's exact wording.
    """
    parts = [struct.pack(">I", epmdPort)]
    for entry, fd in active:
        parts.append(b"active name     <%s> at port %d, fd = %d\n\0" % (entry.name, entry.port, fd))
    for entry, fd in unused:
        parts.append(
            b"old/unused name <%s>, port = %d, fd = %d \n\0" % (entry.name, entry.port, fd)
        )
    return b"".join(parts)


#: KILL refused: nodes are registered.
KILL_REFUSED: Final = b"NO"
#: KILL accepted: epmd exits.
KILL_OK: Final = b"OK"
#: STOP of a registered name.
STOPPED: Final = b"STOPPED"
#: STOP of an unknown name: OTP 25 writes both words (a code quirk).
NOEXIST_STOPPED: Final = b"NOEXISTSTOPPED"


# -- requests and reply parsing (client side) ---------------------------------


def _frame(payload: bytes) -> bytes:
    return struct.pack(">H", len(payload)) + payload


def encodeAlive2Request(entry: NodeEntry) -> bytes:
    """The framed ALIVE2 request registering C{entry}."""
    return _frame(
        bytes((ALIVE2_REQ,))
        + _ALIVE2_HEAD.pack(entry.port, entry.nodeType, entry.protocol, entry.highVsn, entry.lowVsn)
        + struct.pack(">H", len(entry.name))
        + entry.name
        + struct.pack(">H", len(entry.extra))
        + entry.extra
    )


def encodePortPlease2Request(name: bytes) -> bytes:
    """The framed PORT_PLEASE2 request for node C{name}."""
    return _frame(bytes((PORT_PLEASE2_REQ,)) + name)


def encodeNamesRequest() -> bytes:
    """The framed NAMES request."""
    return _frame(bytes((NAMES_REQ,)))


def encodeDumpRequest() -> bytes:
    """The framed DUMP request."""
    return _frame(bytes((DUMP_REQ,)))


def encodeKillRequest() -> bytes:
    """The framed KILL request."""
    return _frame(bytes((KILL_REQ,)))


def encodeStopRequest(name: bytes) -> bytes:
    """The framed STOP request for node C{name}."""
    return _frame(bytes((STOP_REQ,)) + name)


def parseAlive2Reply(data: bytes) -> tuple[int, int] | None:
    """
    C{(result, creation)} from an ALIVE2 reply, or L{None} while
    incomplete.

    @raise EpmdProtocolError: for a reply that is neither C{'v'} nor C{'y'}.
    """
    if not data:
        return None
    if data[0] == ALIVE2_X_RESP:
        if len(data) < 6:
            return None
        result, creation = struct.unpack_from(">BI", data, 1)
        return result, creation
    if data[0] == ALIVE2_RESP:
        if len(data) < 4:
            return None
        result, creation = struct.unpack_from(">BH", data, 1)
        return result, creation
    raise EpmdProtocolError(f"unexpected ALIVE2 reply code {data[0]}")


def parsePort2Reply(data: bytes) -> NodeEntry | None:
    """
    The node a complete PORT2_RESP describes, or L{None} for C{'w' 1}.

    @raise EpmdProtocolError: for a truncated or foreign reply.
    """
    if len(data) < 2 or data[0] != PORT2_RESP:
        raise EpmdProtocolError("bad PORT2 reply")
    if data[1] != 0:
        return None
    try:
        port, nodeType, protocol, high, low, nameLength = struct.unpack_from(">HBBHHH", data, 2)
        name = data[12 : 12 + nameLength]
        (extraLength,) = struct.unpack_from(">H", data, 12 + nameLength)
    except struct.error:
        raise EpmdProtocolError("truncated PORT2 reply") from None
    extra = data[14 + nameLength : 14 + nameLength + extraLength]
    if len(name) != nameLength or len(extra) != extraLength:
        raise EpmdProtocolError("truncated PORT2 reply")
    return NodeEntry(name, port, nodeType, protocol, high, low, extra)


_NAME_LINE = re.compile(rb"name (.+) at port (\d+)\Z")


def parseNamesReply(data: bytes) -> tuple[int, list[tuple[str, int]]]:
    """
    C{(epmdPort, [(name, port), ...])} from a complete NAMES reply; lines
    that do not parse are skipped, as Erlang's client does.

    @raise EpmdProtocolError: for fewer than 4 bytes.
    """
    if len(data) < 4:
        raise EpmdProtocolError("NAMES reply shorter than 4 bytes")
    (port,) = struct.unpack_from(">I", data)
    nodes = []
    for line in data[4:].split(b"\n"):
        match = _NAME_LINE.match(line)
        if match is not None:
            nodes.append((match.group(1).decode("utf-8", "replace"), int(match.group(2))))
    return port, nodes
