# -*- test-case-name: tests.test_dist_handshake -*-
"""
The Erlang distribution handshake, version 6, as two sans-IO state machines.

Both machines work on whole handshake packets (the bytes inside the
C{Len:u16} frame, see L{vernemq.dist.framing}) and return the packets to
send back; they never touch a transport or a clock.

    - L{AcceptorHandshake} (B, the listening side): C{send_name} in, status
      and challenge out, challenge reply in, challenge ack out.
    - L{InitiatorHandshake} (A, the dialling side): C{send_name} out, status
      in, challenge in, challenge reply out, challenge ack in.

Authentication is the cookie challenge: each side proves it knows the
cookie with C{MD5(cookie ++ decimal(challenge))} over the other side's
random challenge (L{digest}).  A machine raises L{HandshakeError} on
anything unexpected; its C{reply}, when set, is a last packet to send
before closing (a refusal status).  A completed machine has its
L{HandshakeResult}: the peer's name, flags and creation, and the flags in
use (the AND of both sides).

Capability flags: we offer L{OUR_FLAGS}, which include the flags OTP 25
and OTP 26 insist on (L{MANDATORY_FLAGS_26}); a peer missing one of
L{MANDATORY_FLAGS_25} is refused (C{not_allowed}), as OTP 25 does.  The
atom cache (C{DIST_HDR_ATOM_CACHE}) and fragments are not offered, so
every message arrives as a pass-through packet.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

# -- capability flags (kernel include/dist.hrl, erts dist.h) ------------------

DFLAG_PUBLISHED = 0x1
DFLAG_ATOM_CACHE = 0x2
DFLAG_EXTENDED_REFERENCES = 0x4
DFLAG_DIST_MONITOR = 0x8
DFLAG_FUN_TAGS = 0x10
DFLAG_DIST_MONITOR_NAME = 0x20
DFLAG_HIDDEN_ATOM_CACHE = 0x40
DFLAG_NEW_FUN_TAGS = 0x80
DFLAG_EXTENDED_PIDS_PORTS = 0x100
DFLAG_EXPORT_PTR_TAG = 0x200
DFLAG_BIT_BINARIES = 0x400
DFLAG_NEW_FLOATS = 0x800
DFLAG_UNICODE_IO = 0x1000
DFLAG_DIST_HDR_ATOM_CACHE = 0x2000
DFLAG_SMALL_ATOM_TAGS = 0x4000
DFLAG_UTF8_ATOMS = 0x10000
DFLAG_MAP_TAG = 0x20000
DFLAG_BIG_CREATION = 0x40000
DFLAG_SEND_SENDER = 0x80000
DFLAG_BIG_SEQTRACE_LABELS = 0x100000
DFLAG_EXIT_PAYLOAD = 0x400000
DFLAG_FRAGMENTS = 0x800000
DFLAG_HANDSHAKE_23 = 0x1000000
DFLAG_UNLINK_ID = 0x2000000
DFLAG_MANDATORY_25_DIGEST = 0x4000000
DFLAG_SPAWN = 1 << 32
DFLAG_NAME_ME = 1 << 33
DFLAG_V4_NC = 1 << 34
DFLAG_ALIAS = 1 << 35

#: What OTP 25 requires of a peer (C{MANDATORY_DFLAGS_25}, verified 16#1070F94).
MANDATORY_FLAGS_25 = (
    DFLAG_EXTENDED_REFERENCES
    | DFLAG_FUN_TAGS
    | DFLAG_NEW_FUN_TAGS
    | DFLAG_EXTENDED_PIDS_PORTS
    | DFLAG_EXPORT_PTR_TAG
    | DFLAG_BIT_BINARIES
    | DFLAG_NEW_FLOATS
    | DFLAG_UTF8_ATOMS
    | DFLAG_MAP_TAG
    | DFLAG_BIG_CREATION
    | DFLAG_HANDSHAKE_23
)

#: What OTP 26 requires of a peer: the OTP 25 set plus the new link
#: protocol and 64-bit pids/ports with 5-word references.
MANDATORY_FLAGS_26 = MANDATORY_FLAGS_25 | DFLAG_UNLINK_ID | DFLAG_V4_NC

#: The flags this node offers (16#503074FBD): everything mandatory for OTP
#: 26, monitors by name, small atom tags and SPAWN (needed for C{rpc:call}
#: and C{erpc:call} from OTP 23+).  Not offered: the atom cache, fragments,
#: SEND_SENDER, EXIT_PAYLOAD and ALIAS, so peers use only the plain control
#: messages.
OUR_FLAGS = (
    MANDATORY_FLAGS_26
    | DFLAG_PUBLISHED
    | DFLAG_DIST_MONITOR
    | DFLAG_DIST_MONITOR_NAME
    | DFLAG_SMALL_ATOM_TAGS
    | DFLAG_SPAWN
)

#: The longest node name accepted in a handshake (epmd's limit, in bytes).
MAX_NAME_BYTES = 1020

#: Handshake statuses the acceptor may send (after C{'s'}).
STATUSES = ("ok", "ok_simultaneous", "nok", "not_allowed", "alive")

_SEND_NAME = struct.Struct(">BQIH")  # 'N', flags, creation, name length
_CHALLENGE = struct.Struct(">BQIIH")  # 'N', flags, challenge, creation, name length
_REPLY = struct.Struct(">BI16s")  # 'r', challenge, digest
_ACK = struct.Struct(">B16s")  # 'a', digest


class HandshakeError(Exception):
    """
    The handshake cannot go on; close the connection.

    @ivar reason: one line for the log.
    @ivar reply: a last packet to send before closing, or L{None}.
    """

    def __init__(self, reason: str, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class SimultaneousConnect(HandshakeError):
    """
    The peer answered C{nok}: it is connecting to us at the same time and
    wins (its name is greater); its connection will carry the traffic.
    """


@dataclass(frozen=True)
class HandshakeResult:
    """
    A completed handshake.

    @ivar peerName: the peer's node name, C{alive@host}.
    @ivar peerFlags: the flags the peer offered.
    @ivar peerCreation: the peer's creation.
    @ivar flags: the flags in use: ours AND the peer's.
    """

    peerName: str
    peerFlags: int
    peerCreation: int
    flags: int


def digest(challenge: int, cookie: str) -> bytes:
    """
    C{MD5(cookie ++ decimal(challenge))}: the proof of knowing C{cookie}
    (kernel C{dist_util:gen_digest/2}; the cookie comes first).
    """
    return hashlib.md5(cookie.encode("utf-8") + str(challenge).encode("ascii")).digest()


def splitNodeName(name: str) -> tuple[str, str]:
    """
    C{(alive, host)} of C{alive@host}; raise L{ValueError} unless both
    parts are non-empty.
    """
    alive, at, host = name.partition("@")
    if not at or not alive or not host:
        raise ValueError(f"node name {name!r} is not alive@host")
    return alive, host


def missingFlagNames(flags: int, required: int = MANDATORY_FLAGS_25) -> list[str]:
    """Names of the C{required} flags that C{flags} lacks."""
    missing = required & ~flags
    return [
        name[len("DFLAG_") :]
        for name, value in sorted(globals().items())
        if name.startswith("DFLAG_") and isinstance(value, int) and value & missing
    ]


def _decodeName(raw: bytes) -> str:
    if len(raw) > MAX_NAME_BYTES:
        raise HandshakeError(f"node name of {len(raw)} bytes is too long")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeError("node name is not UTF-8") from None
    try:
        splitNodeName(name)
    except ValueError as error:
        raise HandshakeError(str(error)) from None
    return name


def encodeSendName(flags: int, creation: int, name: str) -> bytes:
    """The initiator's C{'N'} send_name packet."""
    raw = name.encode("utf-8")
    return _SEND_NAME.pack(ord("N"), flags, creation, len(raw)) + raw


def encodeChallenge(flags: int, challenge: int, creation: int, name: str) -> bytes:
    """The acceptor's C{'N'} challenge packet."""
    raw = name.encode("utf-8")
    return _CHALLENGE.pack(ord("N"), flags, challenge, creation, len(raw)) + raw


def encodeStatus(status: str) -> bytes:
    """A C{'s'} status packet."""
    return b"s" + status.encode("ascii")


def encodeChallengeReply(challenge: int, proof: bytes) -> bytes:
    """The initiator's C{'r'} packet: its own challenge and its proof."""
    return _REPLY.pack(ord("r"), challenge, proof)


def encodeChallengeAck(proof: bytes) -> bytes:
    """The acceptor's C{'a'} packet."""
    return _ACK.pack(ord("a"), proof)


#: C{arbitrate(peerName)} returns the status an acceptor answers with.
Arbiter = Callable[[str], str]


class AcceptorHandshake:
    """
    The listening side (B) of the handshake.

    @ivar peerName: the name the peer gave, once its send_name arrived.
    @ivar result: the L{HandshakeResult} once the handshake completed.
    """

    def __init__(
        self,
        name: str,
        cookie: str,
        creation: int,
        challenge: int,
        arbitrate: Arbiter,
        flags: int = OUR_FLAGS,
    ) -> None:
        self._name = name
        self._cookie = cookie
        self._creation = creation
        self._challenge = challenge & 0xFFFFFFFF
        self._arbitrate = arbitrate
        self._flags = flags
        self._state = "name"
        self._peerFlags = 0
        self._peerCreation = 0
        self.peerName: str | None = None
        self.result: HandshakeResult | None = None

    def start(self) -> list[bytes]:
        """The packets to send on connecting: none, the peer speaks first."""
        return []

    def receive(self, packet: bytes) -> list[bytes]:
        """
        Take one handshake packet; return the packets to send.

        @raise HandshakeError: the handshake failed.
        """
        if self._state == "name":
            return self._sendName(packet)
        if self._state == "alive":
            return self._aliveAnswer(packet)
        if self._state == "reply":
            return self._challengeReply(packet)
        raise HandshakeError("handshake packet after the handshake completed")

    def _sendName(self, packet: bytes) -> list[bytes]:
        if packet[:1] != b"N" or len(packet) < _SEND_NAME.size:
            raise HandshakeError(f"expected a version 6 send_name, got {packet[:16]!r}")
        _, flags, creation, length = _SEND_NAME.unpack_from(packet)
        if len(packet) < _SEND_NAME.size + length:
            raise HandshakeError("send_name is shorter than its name length")
        name = _decodeName(packet[_SEND_NAME.size : _SEND_NAME.size + length])
        self.peerName = name
        missing = missingFlagNames(flags)
        if missing:
            raise HandshakeError(
                f"node {name} cannot handle {', '.join(missing)}",
                encodeStatus("not_allowed"),
            )
        self._peerFlags = flags
        self._peerCreation = creation
        status = self._arbitrate(name)
        if status not in STATUSES:
            raise ValueError(f"unknown handshake status {status!r}")
        if status in ("nok", "not_allowed"):
            raise HandshakeError(f"refused node {name}: {status}", encodeStatus(status))
        if status == "alive":
            self._state = "alive"
            return [encodeStatus(status)]
        self._state = "reply"
        return [encodeStatus(status), self._challengePacket()]

    def _challengePacket(self) -> bytes:
        return encodeChallenge(self._flags, self._challenge, self._creation, self._name)

    def _aliveAnswer(self, packet: bytes) -> list[bytes]:
        if packet == b"strue":
            self._state = "reply"
            return [self._challengePacket()]
        if packet == b"sfalse":
            raise HandshakeError(f"node {self.peerName} keeps its existing connection")
        raise HandshakeError(f"expected an answer to 'alive', got {packet[:16]!r}")

    def _challengeReply(self, packet: bytes) -> list[bytes]:
        if len(packet) != _REPLY.size or packet[:1] != b"r":
            raise HandshakeError(f"expected a challenge reply, got {packet[:16]!r}")
        _, theirChallenge, proof = _REPLY.unpack(packet)
        if not hmac.compare_digest(proof, digest(self._challenge, self._cookie)):
            raise HandshakeError(f"node {self.peerName} sent an invalid challenge reply")
        self._state = "done"
        assert self.peerName is not None
        self.result = HandshakeResult(
            self.peerName, self._peerFlags, self._peerCreation, self._flags & self._peerFlags
        )
        return [encodeChallengeAck(digest(theirChallenge, self._cookie))]


class InitiatorHandshake:
    """
    The dialling side (A) of the handshake, towards node C{peerName}.

    @ivar peerName: the node dialled; the challenge must carry this name.
    @ivar result: the L{HandshakeResult} once the handshake completed.
    """

    def __init__(
        self,
        name: str,
        cookie: str,
        creation: int,
        challenge: int,
        peerName: str,
        flags: int = OUR_FLAGS,
    ) -> None:
        self._name = name
        self._cookie = cookie
        self._creation = creation
        self._challenge = challenge & 0xFFFFFFFF
        self._flags = flags
        self._state = "status"
        self._peerFlags = 0
        self._peerCreation = 0
        self.peerName = peerName
        self.result: HandshakeResult | None = None

    def start(self) -> list[bytes]:
        """The send_name packet to open with."""
        return [encodeSendName(self._flags, self._creation, self._name)]

    def receive(self, packet: bytes) -> list[bytes]:
        """
        Take one handshake packet; return the packets to send.

        @raise HandshakeError: the handshake failed.
        @raise SimultaneousConnect: the peer's own connection wins.
        """
        if self._state == "status":
            return self._status(packet)
        if self._state == "challenge":
            return self._challengePacket(packet)
        if self._state == "ack":
            return self._ack(packet)
        raise HandshakeError("handshake packet after the handshake completed")

    def _status(self, packet: bytes) -> list[bytes]:
        if packet[:1] != b"s":
            raise HandshakeError(f"expected a status, got {packet[:16]!r}")
        status = packet[1:]
        if status in (b"ok", b"ok_simultaneous"):
            self._state = "challenge"
            return []
        if status == b"alive":
            self._state = "challenge"
            return [encodeStatus("true")]
        if status == b"nok":
            raise SimultaneousConnect(f"node {self.peerName} is connecting to us as well")
        if status == b"not_allowed":
            raise HandshakeError(f"node {self.peerName} does not allow us to connect")
        raise HandshakeError(f"node {self.peerName} sent status {status[:32]!r}")

    def _challengePacket(self, packet: bytes) -> list[bytes]:
        if packet[:1] != b"N" or len(packet) < _CHALLENGE.size:
            raise HandshakeError(f"expected a version 6 challenge, got {packet[:16]!r}")
        _, flags, challenge, creation, length = _CHALLENGE.unpack_from(packet)
        if len(packet) < _CHALLENGE.size + length:
            raise HandshakeError("challenge is shorter than its name length")
        name = _decodeName(packet[_CHALLENGE.size : _CHALLENGE.size + length])
        if name != self.peerName:
            raise HandshakeError(f"dialled node {self.peerName} but {name} answered")
        missing = missingFlagNames(flags)
        if missing:
            raise HandshakeError(f"node {name} cannot handle {', '.join(missing)}")
        self._peerFlags = flags
        self._peerCreation = creation
        self._state = "ack"
        return [encodeChallengeReply(self._challenge, digest(challenge, self._cookie))]

    def _ack(self, packet: bytes) -> list[bytes]:
        if len(packet) != _ACK.size or packet[:1] != b"a":
            raise HandshakeError(f"expected a challenge ack, got {packet[:16]!r}")
        if not hmac.compare_digest(packet[1:], digest(self._challenge, self._cookie)):
            raise HandshakeError(f"node {self.peerName} sent an invalid challenge ack")
        self._state = "done"
        self.result = HandshakeResult(
            self.peerName, self._peerFlags, self._peerCreation, self._flags & self._peerFlags
        )
        return []
