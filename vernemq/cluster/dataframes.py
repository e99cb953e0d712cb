# -*- test-case-name: tests.test_cluster_dataframes -*-
"""
The byte format of the cluster data channel (C{listener.vmq.clustering}),
sans-IO.

This is VerneMQ's own format (C{vmq_cluster_node} / C{vmq_cluster_com}),
byte for byte; the terms inside are the Erlang external term format of
L{vernemq.dist.etf}, as C{term_to_binary/1} writes them.  Everything here is
pure: bytes in, values out; no transport, no reactor, no logging.

Wire format
===========

One TCP connection carries one direction: the node that connected sends,
the node that accepted only receives (except for the one ack below)::

    hello   := "vmq-connect" (11 ASCII bytes) | L:u32be | L bytes
               term_to_binary(NodeName)       NodeName is an atom
    ack     := "vmq-connect-ack" (15 ASCII bytes, acceptor -> connector,
               VerneMQ 2.2+; an older peer sends nothing)
    frame   := "vmq-send" (8 ASCII bytes) | L:u32be | L bytes of items
    item    := Tag (3 ASCII bytes) | N:u32be | N bytes term_to_binary(Term)
    Tag     := "msg"   Term = a #vmq_msg{} record, see
                       L{vernemq.cluster.datachannel.RoutedMessage}
             | "enq"   Term = {CallerPid, Ref, {enqueue, QueuePid, Msgs}
                                          | {enqueue_many, SubscriberId,
                                             Msgs, Opts}}
             | any other 3 bytes: skipped by the receiver (forward
               compatibility), reported in L{Batch.unknown}

All integers are big-endian; C{u32be} is unsigned.  A hello, then any
number of frames; a frame holds one or more items, each item exactly one
standalone term (with its version byte 131).  An item is written here as
the Python pair C{(tag, term)} with C{tag} a 3-character C{str}.

Errors (each is a L{DataFrameError} whose C{reason} is VerneMQ's atom
where VerneMQ has one):

    - leading bytes that are not C{vmq-connect} (before the hello) or
      C{vmq-send} (after it): L{InvalidClusterFrame}
      (C{invalid_cluster_frame});
    - a frame longer than the receiver's cap
      (C{incoming_clustering_buffer_size}): L{ClusterFrameTooLarge}
      (C{cluster_frame_too_large}), raised as soon as the 12-byte header is
      in, before the body is buffered;
    - a hello whose payload is not one atom, or longer than
      L{MAX_HELLO_PAYLOAD}: L{InvalidHello} (C{invalid_node_name});
    - items that do not exactly fill their frame, or a term that does not
      decode: L{InvalidItem} (C{invalid_cluster_item}).  VerneMQ's
      receiver crashes there; we raise, and the protocol closes the link.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

from vernemq.dist.etf import VERSION, Atom, EtfError, decode, decode_term, encode, encode_term

__all__ = [
    "CONNECT",
    "CONNECT_ACK",
    "DEFAULT_MAX_FRAME",
    "MAX_HELLO_PAYLOAD",
    "SEND",
    "TAG_ENQ",
    "TAG_MSG",
    "AckDecoder",
    "Batch",
    "ClusterFrameTooLarge",
    "DataFrameError",
    "EncodedItem",
    "Hello",
    "InboundDecoder",
    "InvalidClusterFrame",
    "InvalidHello",
    "InvalidItem",
    "Item",
    "OutgoingBatch",
    "PlainMessageFactory",
    "PlainMsg",
    "PlainMsgEncoder",
    "encode_frame",
    "encode_hello",
    "decode_items",
    "encode_item",
    "encode_msg_item",
]

#: The magic that opens a link (the connecting side's hello).
CONNECT: Final = b"vmq-connect"
#: What the accepting side answers once it has accepted the hello.
CONNECT_ACK: Final = b"vmq-connect-ack"
#: The magic that opens every batch frame.
SEND: Final = b"vmq-send"
#: The tag of a routed PUBLISH (a C{#vmq_msg{}} record).
TAG_MSG: Final = "msg"
#: The tag of a remote enqueue (shared subscriptions, queue migration).
TAG_ENQ: Final = "enq"

#: VerneMQ's C{incoming_clustering_buffer_size} default: 64 MiB.
DEFAULT_MAX_FRAME: Final = 64 * 1024 * 1024
#: The largest hello payload accepted: an atom is at most 255 characters,
#: so at most 3 + 4 * 255 bytes in UTF-8; anything longer is junk.
MAX_HELLO_PAYLOAD: Final = 1024

#: One item: C{(tag, term)}, C{tag} three ASCII characters.
Item = tuple[str, Any]
#: C{plain(topic, payload, retain, qos, mountpoint)}: what a consumer wants
#: in place of a plain C{msg} record (see L{decode_items}).
PlainMessageFactory = Callable[[str, bytes, bool, int, str], Any]

_U32 = struct.Struct(">I")
_pack_u32 = _U32.pack
_unpack_u32_from = _U32.unpack_from
_ITEM_HEADER = 7  # tag(3) + length(4)
_KNOWN_TAGS: dict[bytes, str] = {b"msg": TAG_MSG, b"enq": TAG_ENQ}
_SEND_HEADER = len(SEND) + 4
_CONNECT_HEADER = len(CONNECT) + 4


class DataFrameError(ValueError):
    """
    The bytes received on a data link break the format.

    @ivar reason: a short machine-readable reason (VerneMQ's atom where it
        has one), e.g. C{cluster_frame_too_large}.
    """

    reason = "invalid_cluster_frame"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidClusterFrame(DataFrameError):
    """The stream does not start with the expected magic."""

    reason = "invalid_cluster_frame"


class ClusterFrameTooLarge(DataFrameError):
    """A frame announced more bytes than the receiver accepts."""

    reason = "cluster_frame_too_large"


class InvalidHello(DataFrameError):
    """The hello does not carry exactly one atom (a node name)."""

    reason = "invalid_node_name"


class InvalidItem(DataFrameError):
    """An item inside a frame is truncated, overlong or not a term."""

    reason = "invalid_cluster_item"


# ---------------------------------------------------------------------------
# Encoding


def encode_hello(node_name: str) -> bytes:
    """
    The C{vmq-connect} hello that opens a link from C{node_name}.

    @raise ValueError: if C{node_name} cannot be an atom.
    """
    payload = encode(Atom(node_name))
    return CONNECT + _pack_u32(len(payload)) + payload


def encode_item(tag: str, term: Any) -> bytes:
    """
    One item: the tag, the length, C{term_to_binary(term)}.

    @param tag: three ASCII characters, e.g. L{TAG_MSG}.
    @raise ValueError: for a bad tag; L{vernemq.dist.etf.EtfError} (a
        C{ValueError}) if C{term} has no Erlang equivalent.
    """
    raw_tag = tag.encode("ascii")
    if len(raw_tag) != 3:
        raise ValueError(f"an item tag is 3 ASCII characters, not {tag!r}")
    body = encode(term)
    return raw_tag + _pack_u32(len(body)) + body


class EncodedItem:
    """
    An item already encoded for the wire (see L{encode_msg_item}): the
    link writes L{wire} as it is, so a message sent to several peers is
    encoded once.  It still reads as the C{(tag, term)} pair of L{Item}
    (C{tag, term = item}, C{item[1]}); the term is decoded from the bytes
    only when asked for.

    @ivar wire: the whole item: tag, length, C{term_to_binary(term)}.
    """

    __slots__ = ("_term", "wire")

    def __init__(self, tag: str, wire: bytes) -> None:
        if wire[:3] != tag.encode("ascii"):
            raise ValueError(f"{wire[:3]!r} is not the tag {tag!r}")
        self.wire = wire

    @property
    def tag(self) -> str:
        """The item's tag, as written at the head of L{wire}."""
        return self.wire[:3].decode("ascii")

    @property
    def term(self) -> Any:
        """The item's term, decoded from L{wire} (once)."""
        try:
            return self._term
        except AttributeError:
            self._term: Any = decode(self.wire[_ITEM_HEADER:])
            return self._term

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Any:
        yield self.tag
        yield self.term

    def __getitem__(self, index: int) -> Any:
        return (self.tag, self.term)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedItem):
            return self.wire == other.wire
        return bool(isinstance(other, tuple) and other == (self.tag, self.term))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EncodedItem({self.tag!r}, {self.wire!r})"


_new_object: Final = object.__new__
_MSG_HEAD: Final = b"\x83h\x0cw\x07vmq_msg"  # version, {12-tuple, vmq_msg, ...
#: "msg", the item length, the record's head, the ref's BINARY_EXT header.
_pack_msg_head = struct.Struct(">3sI12scI").pack
_pack_binary = struct.Struct(">cI").pack
_TRUE_BYTES: Final = encode_term(True)
_FALSE_BYTES: Final = encode_term(False)
_UNDEFINED_BYTES: Final = encode_term(None)
_EMPTY_MAP_BYTES: Final = encode_term({})
_EMPTY_MAP_TAIL: Final = _EMPTY_MAP_BYTES + _UNDEFINED_BYTES
_BINARY_EXT: Final = b"m"
_SMALL_INT: Final = tuple(bytes((97, i)) for i in range(256))
#: Encoded routing keys (topic -> list of binaries) and mountpoints.
_fragments: dict[str, bytes] = {}
_mountpoints: dict[str, bytes] = {}
_policies: dict[str, bytes] = {}
_FRAGMENT_CACHE_LIMIT: Final = 4096


def _topic_fragment(topic: str) -> bytes:
    encoded = _fragments.get(topic)
    if encoded is None:
        encoded = encode_term([word.encode("utf-8") for word in topic.split("/")])
        if len(_fragments) >= _FRAGMENT_CACHE_LIMIT:
            _fragments.clear()
        _fragments[topic] = encoded
    return encoded


def encode_msg_item(
    msg_ref: bytes,
    topic: str,
    payload: bytes,
    retain: bool,
    dup: bool,
    qos: int,
    mountpoint: str,
    persisted: bool,
    sg_policy: str,
    properties: Any,
    expiry_ts: Any,
) -> EncodedItem:
    """
    The C{msg} item of a C{#vmq_msg{}} record, byte for byte what
    C{encode_item(TAG_MSG, RoutedMessage(...).to_term())} writes, built
    from cached fragments (the routing key, the mountpoint, the atoms)
    instead of through the generic encoder.
    """
    tail = _tails.get((retain, dup, qos, mountpoint, persisted, sg_policy))
    if tail is None:
        tail = _tail(retain, dup, qos, mountpoint, persisted, sg_policy)
    if properties or expiry_ts is not None:
        tail = b"".join(
            (
                tail[: -len(_EMPTY_MAP_TAIL)],
                encode_term(dict(properties)) if properties else _EMPTY_MAP_BYTES,
                _UNDEFINED_BYTES if expiry_ts is None else encode_term(expiry_ts),
            )
        )
    fragment = _fragments.get(topic) or _topic_fragment(topic)
    n = len(msg_ref)
    p = len(payload)
    return EncodedItem(
        TAG_MSG,
        b"".join(
            (
                _pack_msg_head(b"msg", 22 + n + len(fragment) + p + len(tail), _MSG_HEAD, b"m", n),
                msg_ref,
                fragment,
                _pack_binary(b"m", p),
                payload,
                tail,
            )
        ),
    )


#: Everything after the payload, by (retain, dup, qos, mountpoint,
#: persisted, policy), with no properties and no expiry.
_tails: dict[tuple[Any, ...], bytes] = {}


def _tail(retain: Any, dup: Any, qos: int, mountpoint: str, persisted: Any, policy: str) -> bytes:
    tail = b"".join(
        (
            _TRUE_BYTES if retain else _FALSE_BYTES,
            _TRUE_BYTES if dup else _FALSE_BYTES,
            _SMALL_INT[qos],
            encode_term(mountpoint),
            _TRUE_BYTES if persisted else _FALSE_BYTES,
            encode_term(Atom(policy)),
            _EMPTY_MAP_TAIL,
        )
    )
    if len(_tails) >= _FRAGMENT_CACHE_LIMIT:
        _tails.clear()
    _tails[(retain, dup, qos, mountpoint, persisted, policy)] = tail
    return tail


#: A plain record's packer, its length without the payload, routing key
#: and tail (L{PlainMsgEncoder}).
_PlainEntry = tuple[Any, int, bytes, bytes]


class PlainMsgEncoder:
    """
    Encodes the C{msg} items of one node's plain messages (no properties,
    no expiry; DUP and persisted clear, policy C{prefer_local}), each with
    a fresh 16-byte reference: this node's random 8-byte prefix and a
    counter.

    The bytes are those of L{encode_msg_item}; everything but the lengths,
    the counter and the payload is packed ahead, per topic, QoS, retain
    flag and mountpoint.
    """

    __slots__ = ("_cache", "_mounted", "_next", "_prefix")

    def __init__(self, prefix: bytes) -> None:
        """
        @param prefix: the first 8 bytes of every reference.
        """
        if len(prefix) != 8:
            raise ValueError("a reference prefix is 8 bytes")
        self._prefix = prefix
        self._next = 0
        # By topic, then by QoS << 1 | retain, without a mountpoint (the
        # common case: no tuple to build per message); by all four with one.
        self._cache: dict[str, list[_PlainEntry | None]] = {}
        self._mounted: dict[tuple[str, int, bool, str], _PlainEntry] = {}

    def next_ref(self) -> bytes:
        """A fresh reference (for the records encoded elsewhere)."""
        n = self._next
        self._next = n + 1
        return self._prefix + n.to_bytes(8, "big")

    def encode(
        self, topic: str, payload: bytes, qos: int, retain: bool, mountpoint: str
    ) -> EncodedItem:
        """The C{msg} item of one plain message."""
        if mountpoint:
            entry = self._mounted.get((topic, qos, retain, mountpoint))
        else:
            entries = self._cache.get(topic)
            entry = None if entries is None else entries[qos << 1 | retain]
        if entry is None:
            entry = self._entry(topic, qos, retain, mountpoint)
        pack, fixed, fragment, tail = entry
        n = self._next
        self._next = n + 1
        p = len(payload)
        # EncodedItem without its __init__ (a Python call per message).
        item = _new_object(EncodedItem)
        item.wire = b"".join(
            (
                pack(b"msg", fixed + p, _MSG_HEAD, b"m", 16, self._prefix, n, fragment, b"m", p),
                payload,
                tail,
            )
        )
        return item

    def _entry(self, topic: str, qos: int, retain: bool, mountpoint: str) -> _PlainEntry:
        fragment = _topic_fragment(topic)
        tail = _tail(retain, False, qos, mountpoint, False, "prefer_local")
        pack = struct.Struct(f">3sI12scI8sQ{len(fragment)}scI").pack
        # The term's length without the payload: the record's head (12),
        # the ref (5 + 16), the routing key, the payload's header (5), the
        # rest.
        entry = (pack, 38 + len(fragment) + len(tail), fragment, tail)
        if mountpoint:
            if len(self._mounted) >= _FRAGMENT_CACHE_LIMIT:
                self._mounted.clear()
            self._mounted[(topic, qos, retain, mountpoint)] = entry
            return entry
        entries = self._cache.get(topic)
        if entries is None:
            if len(self._cache) >= _FRAGMENT_CACHE_LIMIT:
                self._cache.clear()
            entries = self._cache[topic] = [None] * 6
        entries[qos << 1 | retain] = entry
        return entry


def encode_frame(items: Iterable[bytes]) -> bytes:
    """
    One C{vmq-send} frame around already encoded items (see
    L{encode_item}).
    """
    body = b"".join(items)
    return SEND + _pack_u32(len(body)) + body


class OutgoingBatch:
    """
    Encoded items waiting to be framed, in order.

    The link appends items as they are sent and takes frames out when it
    flushes; L{pending_bytes} is what VerneMQ compares with
    C{outgoing_clustering_flush_threshold} and, while the peer is
    unreachable, with C{outgoing_clustering_buffer_size}.

    @ivar pending_bytes: the encoded size of the items held.
    """

    __slots__ = ("_items", "pending_bytes")

    def __init__(self) -> None:
        self._items: list[bytes] = []
        self.pending_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, encoded_item: bytes) -> int:
        """
        Hold one encoded item; return the new L{pending_bytes}.
        """
        self._items.append(encoded_item)
        self.pending_bytes += len(encoded_item)
        return self.pending_bytes

    def clear(self) -> int:
        """
        Forget every item; return how many bytes were held.
        """
        held = self.pending_bytes
        self._items = []
        self.pending_bytes = 0
        return held

    def take_frames(self, threshold: int, limit: int = DEFAULT_MAX_FRAME) -> list[bytes]:
        """
        Frame every held item, in order, and forget them.

        Items are packed as VerneMQ batches them: a frame is closed once its
        body reaches C{threshold} bytes (so it may exceed C{threshold} by
        its last item), or before an item that would take it past C{limit}
        (the receiver's frame cap).

        @return: the frames (none if nothing is held).
        """
        items, self._items = self._items, []
        total, self.pending_bytes = self.pending_bytes, 0
        if not items:
            return []
        if total <= limit and total - len(items[-1]) < threshold:
            return [encode_frame(items)]
        frames: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for item in items:
            if group and (size >= threshold or size + len(item) > limit):
                frames.append(encode_frame(group))
                group, size = [], 0
            group.append(item)
            size += len(item)
        frames.append(encode_frame(group))
        return frames


# ---------------------------------------------------------------------------
# Decoding


class Hello(NamedTuple):
    """
    The connecting node's hello.

    @ivar node: the node name it claims, as an L{Atom}.
    """

    node: Atom


class Batch(NamedTuple):
    """
    The items of one C{vmq-send} frame.

    @ivar items: the known items, in order, as C{(tag, term)}.
    @ivar unknown: the tags of items skipped because their tag is unknown.
    @ivar size: the frame's size on the wire, header included.
    """

    items: list[Item]
    unknown: list[str]
    size: int


def _decode_hello(payload: bytes) -> Hello:
    try:
        node = decode(payload)
    except EtfError as e:
        raise InvalidHello(f"hello payload is not a term: {e}") from None
    if not isinstance(node, Atom):
        raise InvalidHello(f"hello carries a {type(node).__name__}, not an atom")
    return Hello(node)


def _check_magic(buf: bytes | bytearray, pos: int, magic: bytes) -> bool:
    """
    Whether the bytes from C{pos} start with C{magic}: C{True} if the whole
    magic is there, C{False} if only a correct prefix of it is.

    @raise InvalidClusterFrame: if the bytes there cannot start C{magic}.
    """
    have = buf[pos : pos + len(magic)]
    if have == magic:
        return True
    if not magic.startswith(have):
        raise InvalidClusterFrame(f"expected {magic!r}, got {bytes(have[:16])!r}")
    return False


class PlainMsg:
    """
    A C{msg} item's record in the shape nearly every message has (no
    properties, no expiry, an ASCII mountpoint), read by hand straight into
    the fields a router needs, instead of into the 12-tuple the generic
    decoder gives.

    It still reads as that tuple (C{len}, indexing, iteration, equality
    with the generic term), decoded from the frame only when asked for.

    @ivar topic: the topic: the routing key's words joined with C{/}.
    @ivar payload: the payload.
    @ivar qos: 0, 1 or 2.
    @ivar retain: the RETAIN flag.
    @ivar mountpoint: the publisher's mountpoint (C{""} for none).
    @ivar ref: the message reference.
    """

    __slots__ = ("_body", "_start", "mountpoint", "payload", "qos", "ref", "retain", "topic")

    def __init__(
        self,
        body: bytes,
        start: int,
        ref: bytes,
        topic: str,
        payload: bytes,
        flags: tuple[bool, int, str],
    ) -> None:
        self._body = body
        self._start = start
        self.ref = ref
        self.topic = topic
        self.payload = payload
        self.retain, self.qos, self.mountpoint = flags

    @property
    def term(self) -> Any:
        """The C{#vmq_msg{}} record, as the generic decoder reads it."""
        return decode_term(self._body, self._start + 1)[0]

    def __len__(self) -> int:
        return 12

    def __iter__(self) -> Any:
        return iter(self.term)

    def __getitem__(self, index: int) -> Any:
        return self.term[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PlainMsg):
            other = other.term
        return bool(self.term == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PlainMsg({self.term!r})"


_MSG_HEAD_REF: Final = _MSG_HEAD + _BINARY_EXT
_PLAIN_ATOMS: Final[dict[bytes, Any]] = {
    encode_term(Atom(name)): name
    for name in ("true", "false", "prefer_local", "local_only", "random")
}
#: The bytes after a plain record's payload -> (retain, qos, mountpoint).
_plain_tails: dict[bytes, tuple[bool, int, str]] = {}


def _read_key(body: bytes, pos: int) -> tuple[bytes, str] | None:
    """
    The routing key at C{pos} (its bytes and its topic), if it is a
    non-empty proper list of binaries that join into UTF-8.
    """
    if body[pos] != 108:  # LIST_EXT
        return None
    count = _unpack_u32_from(body, pos + 1)[0]
    at = pos + 5
    words: list[bytes] = []
    for _ in range(count):
        if body[at] != 109:  # BINARY_EXT
            return None
        end = at + 5 + _unpack_u32_from(body, at + 1)[0]
        words.append(body[at + 5 : end])
        at = end
    if body[at] != 106 or not words:  # NIL: a proper list
        return None
    try:
        topic = b"/".join(words).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return body[pos : at + 1], topic


def _plain_atom(tail: bytes, pos: int) -> tuple[str, int]:
    """
    The atom of L{_PLAIN_ATOMS} at C{pos} and the position after it.

    @raise ValueError: there is none there.
    """
    if tail[pos] != 119:  # SMALL_ATOM_UTF8_EXT
        raise ValueError("not a small atom")
    end = pos + 2 + tail[pos + 1]
    atom = _PLAIN_ATOMS.get(tail[pos:end])
    if atom is None:
        raise ValueError("not a plain record's atom")
    return atom, end


def _ascii_string(tail: bytes, pos: int) -> tuple[str, int]:
    """
    The ASCII string (C{NIL} or C{STRING_EXT}) at C{pos} and the position
    after it.

    @raise ValueError: there is none there.
    """
    if tail[pos] == 106:  # NIL
        return "", pos + 1
    if tail[pos] != 107:  # STRING_EXT
        raise ValueError("not a string")
    end = pos + 3 + (tail[pos + 1] << 8 | tail[pos + 2])
    raw = tail[pos + 3 : end]
    if len(raw) != end - pos - 3 or not raw.isascii():
        raise ValueError("not an ASCII string")
    return raw.decode("ascii"), end


_BOOLEANS: Final = ("true", "false")


def _read_tail(tail: bytes) -> tuple[bool, int, str] | None:
    """
    Retain, QoS and mountpoint from the bytes after a record's payload, if
    they are the plain shape: two booleans, a small QoS, an ASCII (or
    empty) mountpoint, a boolean, a policy atom, C{#{}} and C{undefined};
    cached by the bytes.
    """
    if not tail.endswith(_EMPTY_MAP_TAIL):
        return None
    try:
        retain, pos = _plain_atom(tail, 0)
        dup, pos = _plain_atom(tail, pos)
        if tail[pos] != 97 or tail[pos + 1] > 2:  # SMALL_INTEGER_EXT 0..2
            return None
        qos = tail[pos + 1]
        mountpoint, pos = _ascii_string(tail, pos + 2)
        persisted, pos = _plain_atom(tail, pos)
        policy, pos = _plain_atom(tail, pos)
    except (IndexError, ValueError):
        return None
    if (
        pos != len(tail) - len(_EMPTY_MAP_TAIL)
        or retain not in _BOOLEANS
        or dup not in _BOOLEANS
        or persisted not in _BOOLEANS
        or policy in _BOOLEANS
    ):
        return None
    flags = (retain == "true", qos, mountpoint)
    if len(_plain_tails) >= _FRAGMENT_CACHE_LIMIT:
        _plain_tails.clear()
    _plain_tails[tail] = flags
    return flags


def _read_plain(
    body: bytes, start: int, stop: int, key: bytes, topic: str
) -> tuple[bytes, str, int, int, int, tuple[bool, int, str]] | None:
    """
    Read the plain C{#vmq_msg{}} record spanning C{start:stop} (its head
    already checked) by hand: C{(key, topic, at, payload_at, tail_at,
    flags)} with the routing key's bytes and topic, where the reference
    ends, where the payload starts and ends, and retain/QoS/mountpoint;
    L{None} for any other shape.  C{key} and C{topic} are the previous
    record's, reused when this one has the same routing key.
    """
    at = start + 17 + _unpack_u32_from(body, start + 13)[0]
    if not (key and body.startswith(key, at)):
        try:
            found = _read_key(body, at) if at < stop else None
        except (IndexError, struct.error):
            return None
        if found is None:
            return None
        key, topic = found
    mark = at + len(key)
    if mark + 5 > stop or body[mark] != 109:  # BINARY_EXT
        return None
    after = mark + 5 + _unpack_u32_from(body, mark + 1)[0]
    if after > stop:
        return None
    tail = body[after:stop]
    flags = _plain_tails.get(tail) or _read_tail(tail)
    if flags is None:
        return None
    return key, topic, at, mark + 5, after, flags


def decode_items(
    body: bytes,
    max_uncompressed: int = DEFAULT_MAX_FRAME,
    plain: PlainMessageFactory | None = None,
) -> Batch:
    """
    Split the body of one C{vmq-send} frame into items.

    C{msg} items in the plain shape come as a L{PlainMsg}, or as what
    C{plain} makes of their fields; every other term as the generic
    decoder reads it.

    @param max_uncompressed: the largest size a compressed term may inflate
        to.
    @param plain: builds the term of a plain C{msg} item from its topic,
        payload, retain flag, QoS and mountpoint (a router that wants its
        own message type, without the record in between).
    @raise InvalidItem: if the items do not exactly fill C{body} or a term
        does not decode.
    """
    items: list[Item] = []
    unknown: list[str] = []
    append = items.append
    unpack = _unpack_u32_from
    head = _MSG_HEAD_REF
    pos = 0
    end = len(body)
    # The last plain record's routing key and topic: a flood repeats them.
    key = b""
    topic = ""
    # With a factory, the shape of the last plain record: its bytes up to
    # the reference, its routing key and payload header, its tail, their
    # offsets, its topic and flags.  A record of the same shape (a flood of
    # one topic and payload size) is checked with three comparisons.
    shaped = False
    shape = key_header = shape_tail = b""
    shape_topic = ""
    shape_flags = (False, 0, "")
    key_at = payload_at = tail_at = size = 0
    while pos < end:
        if (
            shaped
            and plain is not None
            and body.startswith(shape, pos)
            and pos + size <= end
            and body.startswith(key_header, pos + key_at)
            and body.startswith(shape_tail, pos + tail_at)
        ):
            payload = body[pos + payload_at : pos + tail_at]
            append((TAG_MSG, plain(shape_topic, payload, *shape_flags)))
            pos += size
            continue
        if end - pos < _ITEM_HEADER:
            raise InvalidItem(f"{end - pos} stray bytes at the end of a frame")
        start = pos + _ITEM_HEADER
        stop = start + unpack(body, pos + 3)[0]
        if stop > end:
            raise InvalidItem(f"item of {stop - start} bytes overruns its frame")
        raw_tag = body[pos : pos + 3]
        if raw_tag == b"msg" and body.startswith(head, start):
            # The plain record, read by hand; anything else falls through
            # to the generic decoder below.
            read = _read_plain(body, start, stop, key, topic)
            if read is not None:
                key, topic, at, begin, after, flags = read
                payload = body[begin:after]
                if plain is None:
                    ref = body[start + 17 : at]
                    append((TAG_MSG, PlainMsg(body, start, ref, topic, payload, flags)))
                else:
                    append((TAG_MSG, plain(topic, payload, *flags)))
                    shaped = True
                    shape = body[pos : start + 17]
                    key_header = body[at:begin]
                    shape_tail = body[after:stop]
                    shape_topic = topic
                    shape_flags = flags
                    key_at = at - pos
                    payload_at = begin - pos
                    tail_at = after - pos
                    size = stop - pos
                pos = stop
                continue
        tag = _KNOWN_TAGS.get(raw_tag)
        if tag is not None:
            if stop == start or body[start] != VERSION:
                raise InvalidItem(f"{tag} item without a term version byte")
            try:
                term, after = decode_term(body, start + 1, max_uncompressed=max_uncompressed)
            except EtfError as e:
                raise InvalidItem(f"undecodable {tag} item: {e}") from None
            if after != stop:
                raise InvalidItem(f"{stop - after} trailing bytes after a {tag} term")
            append((tag, term))
        else:
            unknown.append(raw_tag.decode("latin-1"))
        pos = stop
    return Batch(items, unknown, end + _SEND_HEADER)


class InboundDecoder:
    """
    The accepting side's decoder: one hello, then frames.

    Feed it the bytes received with L{feed}, then call L{next_event} until it
    answers L{None}.  Events come one at a time, so the protocol can check
    the hello (membership) before any frame is even parsed.  After an error
    the decoder is unusable (the link is to be closed).

    @ivar max_frame: the largest frame body accepted
        (C{incoming_clustering_buffer_size}).
    @ivar plain: what plain C{msg} records become (L{decode_items}).
    @ivar greeted: whether the hello has been decoded.
    """

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, plain: PlainMessageFactory | None = None
    ) -> None:
        """
        @param plain: see L{decode_items}.
        """
        self.max_frame = max_frame
        self.plain = plain
        self.greeted = False
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Add bytes received from the link."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Hello | Batch | None:
        """
        The next complete hello or batch, or L{None} if more bytes are
        needed.

        @raise DataFrameError: on junk, an oversize frame, a bad hello or bad
            items.
        """
        buf = self._buf
        pos = self._pos
        have = len(buf) - pos
        if not have:
            return None
        if not self.greeted:
            if not _check_magic(buf, pos, CONNECT) or have < _CONNECT_HEADER:
                return None
            (n,) = _unpack_u32_from(buf, pos + len(CONNECT))
            if n > MAX_HELLO_PAYLOAD:
                raise InvalidHello(f"hello payload of {n} bytes")
            stop = pos + _CONNECT_HEADER + n
            if len(buf) < stop:
                return None
            hello = _decode_hello(bytes(buf[pos + _CONNECT_HEADER : stop]))
            self._pos = stop
            self.greeted = True
            return hello
        if not _check_magic(buf, pos, SEND) or have < _SEND_HEADER:
            return None
        (n,) = _unpack_u32_from(buf, pos + len(SEND))
        if n > self.max_frame:
            raise ClusterFrameTooLarge(f"frame of {n} bytes exceeds the cap of {self.max_frame}")
        stop = pos + _SEND_HEADER + n
        if len(buf) < stop:
            return None
        body = bytes(buf[pos + _SEND_HEADER : stop])
        self._pos = stop
        return decode_items(body, self.max_frame, self.plain)

    def events(self, data: bytes) -> list[Hello | Batch]:
        """
        Feed C{data} and return every complete event (a convenience for
        callers that need no pause between the hello and the frames).

        @raise DataFrameError: as L{next_event}.
        """
        self.feed(data)
        out: list[Hello | Batch] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out


class AckDecoder:
    """
    The connecting side's decoder for the acceptor's C{vmq-connect-ack}.

    @ivar acked: whether the whole ack has arrived.
    """

    def __init__(self) -> None:
        self.acked = False
        self._buf = b""

    def feed(self, data: bytes) -> bool:
        """
        Add bytes received; return L{acked}.

        @raise InvalidClusterFrame: for anything but the ack, including any
            byte after it (the link is one-way).
        """
        if self.acked:
            if data:
                raise InvalidClusterFrame("data received after the ack on a one-way link")
            return True
        buf = self._buf + data
        if len(buf) > len(CONNECT_ACK):
            raise InvalidClusterFrame("data received after the ack on a one-way link")
        if not _check_magic(buf, 0, CONNECT_ACK):
            self._buf = buf
            return False
        self._buf = b""
        self.acked = True
        return True
