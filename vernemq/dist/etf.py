"""
The Erlang external term format (ETF): encode and decode.

This is the byte format of C{term_to_binary/1} and of every term carried by
the Erlang distribution protocol.  The codec is pure (no I/O, no Twisted)
and is written for speed: decoding dispatches on the tag byte through a
256-entry table, reads fixed-size fields with precompiled L{struct.Struct}
objects and copies binaries with one slice; encoding dispatches on the
Python type through a dict and appends to one C{bytearray}.

Python mapping
==============

    ========================  ==============================================
    Erlang                    Python
    ========================  ==============================================
    atom                      L{Atom} (a C{str} subclass).  C{true}, C{false}
                              and C{undefined} decode as L{Atom} too; Python
                              C{True}/C{False} encode as C{true}/C{false} and
                              C{None} encodes as C{undefined}.
    integer (any size)        C{int}
    float                     C{float} (finite only: Erlang has no NaN/inf)
    binary                    C{bytes} (C{bytearray}/C{memoryview} encode
                              as binaries as well)
    bitstring                 L{BitBinary} (a bitstring of a whole number of
                              bytes is a binary, so it decodes as C{bytes})
    tuple                     C{tuple}
    proper list               C{list}.  Erlang strings are lists of integers:
                              STRING_EXT decodes to a C{list[int]}; a
                              non-empty list of C{int} 0..255 shorter than
                              65536 encodes as STRING_EXT, as Erlang does.
    improper list             L{ImproperList} (e.g. C{[alias | Ref]})
    map                       C{dict}.  A list used as a map key decodes as
                              a hashable L{FrozenList}; a map used as a map
                              key, or keys Python considers equal (C{1} and
                              C{1.0}), raise L{EtfError}.
    pid / reference / port    L{Pid} / L{Reference} / L{Port}
    external fun C{fun M:F/A} L{Export}
    fun                       L{Fun}: the encoded bytes, kept opaque
    ========================  ==============================================

A Python C{str} that is not an L{Atom} encodes as an Erlang string (a list
of code points: STRING_EXT when every code point is below 256 and the
string is shorter than 65536, otherwise LIST_EXT of integers).  It
therefore decodes as a C{list[int]}, not as a C{str}.  Beware that
C{Atom("ok") == "ok"} (it is a C{str}); test with C{isinstance(x, Atom)}
to tell atoms from text.

What the encoder emits is what C{term_to_binary(T, [{minor_version, 2}])}
emits in OTP 25: UTF-8 atoms (SMALL_ATOM_UTF8_EXT / ATOM_UTF8_EXT),
NEW_FLOAT_EXT, NEW_PID_EXT, NEWER_REFERENCE_EXT, NEW_PORT_EXT (V4_PORT_EXT
for ids of more than 32 bits), the smallest integer form.  The decoder also
accepts the legacy forms: ATOM_EXT and SMALL_ATOM_EXT (latin-1), FLOAT_EXT,
PID_EXT, PORT_EXT, REFERENCE_EXT, NEW_REFERENCE_EXT, FUN_EXT, and
COMPRESSED (zlib) at the top level of a term.  The atom cache
(ATOM_CACHE_REF, distribution headers) is not supported, nor is LOCAL_EXT.

Decoding is bounded: every length field is checked against the bytes left
before anything is allocated, nesting deeper than L{MAX_DEPTH} containers
is refused, and compressed terms may not inflate past a limit.  Anything
malformed, truncated or followed by stray bytes raises L{EtfError} and
never another exception.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "MAX_UNCOMPRESSED_SIZE",
    "VERSION",
    "Atom",
    "BitBinary",
    "EtfError",
    "Export",
    "FrozenList",
    "Fun",
    "ImproperList",
    "Pid",
    "Port",
    "Reference",
    "decode",
    "decode_many",
    "decode_term",
    "encode",
    "encode_term",
]

#: The version byte that starts every standalone term.
VERSION: Final = 131

#: The deepest nesting of containers (tuples, lists, maps, funs) accepted,
#: on decode and on encode.
MAX_DEPTH: Final = 256

#: The largest size a COMPRESSED term may declare (and inflate to) by default.
MAX_UNCOMPRESSED_SIZE: Final = 64 * 1024 * 1024

# Tags (erl_ext_dist).
NEW_FLOAT_EXT: Final = 70
BIT_BINARY_EXT: Final = 77
COMPRESSED: Final = 80
NEW_PID_EXT: Final = 88
NEW_PORT_EXT: Final = 89
NEWER_REFERENCE_EXT: Final = 90
SMALL_INTEGER_EXT: Final = 97
INTEGER_EXT: Final = 98
FLOAT_EXT: Final = 99
ATOM_EXT: Final = 100
REFERENCE_EXT: Final = 101
PORT_EXT: Final = 102
PID_EXT: Final = 103
SMALL_TUPLE_EXT: Final = 104
LARGE_TUPLE_EXT: Final = 105
NIL_EXT: Final = 106
STRING_EXT: Final = 107
LIST_EXT: Final = 108
BINARY_EXT: Final = 109
SMALL_BIG_EXT: Final = 110
LARGE_BIG_EXT: Final = 111
NEW_FUN_EXT: Final = 112
EXPORT_EXT: Final = 113
NEW_REFERENCE_EXT: Final = 114
SMALL_ATOM_EXT: Final = 115
MAP_EXT: Final = 116
FUN_EXT: Final = 117
ATOM_UTF8_EXT: Final = 118
SMALL_ATOM_UTF8_EXT: Final = 119
V4_PORT_EXT: Final = 120
LOCAL_EXT: Final = 121
ATOM_CACHE_REF: Final = 82
DIST_HEADER: Final = 68
DIST_FRAG_HEADER: Final = 69

#: Erlang's limit on the length of an atom, in characters.
_MAX_ATOM_CHARS: Final = 255
#: Atoms remembered by the decoder and the encoder (each); a cache is
#: emptied when full, so junk atoms cannot crowd out the useful ones.
_ATOM_CACHE_LIMIT: Final = 8192
#: Pids remembered by the decoder (the cache is emptied when full).
_PID_CACHE_LIMIT: Final = 4096
#: Ids a reference may carry (OTP 25 refuses more).
_MAX_REF_IDS: Final = 5


class EtfError(ValueError):
    """
    A term could not be encoded, or bytes could not be decoded as a term.
    """


class Atom(str):
    """
    An Erlang atom, such as C{Atom("ok")}.

    It is a C{str}, so it compares equal to the plain string of the same
    text; only its type tells an atom from text.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Pid:
    """
    An Erlang process identifier (NEW_PID_EXT).

    @ivar node: the node the process lives on.
    @ivar id: the process number (32 bits).
    @ivar serial: the serial (32 bits).
    @ivar creation: the node's creation (32 bits).
    """

    node: Atom
    id: int
    serial: int
    creation: int


@dataclass(frozen=True, slots=True)
class Reference:
    """
    An Erlang reference (NEWER_REFERENCE_EXT).

    @ivar node: the node that made the reference.
    @ivar creation: the node's creation (32 bits).
    @ivar ids: up to five 32-bit words.
    """

    node: Atom
    creation: int
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Port:
    """
    An Erlang port identifier (NEW_PORT_EXT, or V4_PORT_EXT for 64-bit ids).

    @ivar node: the node that owns the port.
    @ivar id: the port number (up to 64 bits).
    @ivar creation: the node's creation (32 bits).
    """

    node: Atom
    id: int
    creation: int


@dataclass(frozen=True, slots=True)
class Export:
    """
    An external fun, C{fun Module:Function/Arity} (EXPORT_EXT).
    """

    module: Atom
    function: Atom
    arity: int


@dataclass(frozen=True, slots=True)
class Fun:
    """
    A fun (NEW_FUN_EXT or FUN_EXT), kept opaque.

    @ivar raw: the whole encoded term, tag byte included, without the
        version byte; it is encoded again verbatim.
    """

    raw: bytes


@dataclass(frozen=True, slots=True)
class BitBinary:
    """
    A bitstring whose length is not a whole number of bytes (BIT_BINARY_EXT).

    @ivar data: the bytes; the bits of the last byte that are not used are
        ignored (the encoder and decoder clear them).
    @ivar bits: how many bits of the last byte belong to the bitstring,
        1 to 8 (8 is an ordinary binary).
    """

    data: bytes
    bits: int


@dataclass(frozen=True, slots=True)
class ImproperList:
    """
    A list whose tail is not C{[]}: C{[a, b | Tail]} is
    C{ImproperList((a, b), Tail)}.

    @ivar items: the elements before the tail; at least one.
    @ivar tail: the tail; neither a list nor an improper list (such tails are
        merged into C{items}, as they are in Erlang).
    """

    items: tuple[Any, ...]
    tail: Any


class FrozenList(tuple[Any, ...]):
    """
    A hashable stand-in for an Erlang list, made by the decoder for lists
    used as map keys (C{#{"key" => 1}} decodes as
    C{{FrozenList((107, 101, 121)): 1}}).

    It encodes as the list it stands for, equals a C{list} or a
    L{FrozenList} with the same elements, and never equals a C{tuple}.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenList | list):
            return tuple.__eq__(self, tuple(other))
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((FrozenList, tuple(self)))

    def __repr__(self) -> str:
        return f"FrozenList({list(self)!r})"


# ---------------------------------------------------------------------------
# Decoding

# The decoder builds the frozen dataclasses through their slot descriptors:
# a frozen dataclass's __init__ goes through object.__setattr__ per field,
# which is several times slower.  The result is the same object.
_new = object.__new__
_set_pid_node = vars(Pid)["node"].__set__
_set_pid_id = vars(Pid)["id"].__set__
_set_pid_serial = vars(Pid)["serial"].__set__
_set_pid_creation = vars(Pid)["creation"].__set__
_set_ref_node = vars(Reference)["node"].__set__
_set_ref_creation = vars(Reference)["creation"].__set__
_set_ref_ids = vars(Reference)["ids"].__set__


def _make_pid(node: Atom, id_: int, serial: int, creation: int) -> Pid:
    pid: Pid = _new(Pid)
    _set_pid_node(pid, node)
    _set_pid_id(pid, id_)
    _set_pid_serial(pid, serial)
    _set_pid_creation(pid, creation)
    return pid


def _make_reference(node: Atom, creation: int, ids: tuple[int, ...]) -> Reference:
    ref: Reference = _new(Reference)
    _set_ref_node(ref, node)
    _set_ref_creation(ref, creation)
    _set_ref_ids(ref, ids)
    return ref


_Decoder = Callable[[bytes, int, int], tuple[Any, int]]

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u32u8 = struct.Struct(">IB").unpack_from
_u32x2 = struct.Struct(">II").unpack_from
_u32x3 = struct.Struct(">III").unpack_from
_u64u32 = struct.Struct(">QI").unpack_from
_u32x2u8 = struct.Struct(">IIB").unpack_from

_utf8_atoms: dict[bytes, Atom] = {}
_latin1_atoms: dict[bytes, Atom] = {}


def _truncated() -> EtfError:
    return EtfError("truncated term")


def _make_atom(raw: bytes, cache: dict[bytes, Atom], encoding: str) -> Atom:
    try:
        atom = Atom(raw.decode(encoding))
    except UnicodeDecodeError as e:
        raise EtfError(f"atom is not valid {encoding}") from e
    if len(atom) > _MAX_ATOM_CHARS:
        raise EtfError("atom longer than 255 characters")
    if len(cache) >= _ATOM_CACHE_LIMIT:
        cache.clear()
    cache[raw] = atom
    return atom


def _d_small_atom_utf8(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + data[pos]
    if end > len(data):
        raise _truncated()
    raw = data[pos + 1 : end]
    atom = _utf8_atoms.get(raw)
    if atom is None:
        atom = _make_atom(raw, _utf8_atoms, "utf-8")
    return atom, end


def _d_atom_utf8(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + _u16(data, pos)[0]
    if end > len(data):
        raise _truncated()
    raw = data[pos + 2 : end]
    atom = _utf8_atoms.get(raw)
    if atom is None:
        atom = _make_atom(raw, _utf8_atoms, "utf-8")
    return atom, end


def _d_small_atom(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + data[pos]
    if end > len(data):
        raise _truncated()
    raw = data[pos + 1 : end]
    atom = _latin1_atoms.get(raw)
    if atom is None:
        atom = _make_atom(raw, _latin1_atoms, "latin-1")
    return atom, end


def _d_atom(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + _u16(data, pos)[0]
    if end > len(data):
        raise _truncated()
    raw = data[pos + 2 : end]
    atom = _latin1_atoms.get(raw)
    if atom is None:
        atom = _make_atom(raw, _latin1_atoms, "latin-1")
    return atom, end


_ATOM_TAGS: Final = frozenset((ATOM_EXT, SMALL_ATOM_EXT, ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT))
_INTEGER_TAGS: Final = frozenset((SMALL_INTEGER_EXT, INTEGER_EXT, SMALL_BIG_EXT, LARGE_BIG_EXT))


def _atom_at(data: bytes, pos: int) -> tuple[Atom, int]:
    """Decode the atom at C{pos} (a node or module name); nothing else."""
    tag = data[pos]
    if tag not in _ATOM_TAGS:
        raise EtfError(f"expected an atom, got tag {tag}")
    atom: Atom
    atom, pos = _DECODERS[tag](data, pos + 1, 0)
    return atom, pos


def _d_small_integer(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return data[pos], pos + 1


def _d_integer(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _i32(data, pos)[0], pos + 4


def _big(data: bytes, pos: int, n: int, sign: int) -> tuple[int, int]:
    end = pos + n
    if end > len(data):
        raise _truncated()
    value = int.from_bytes(data[pos:end], "little")
    return (-value if sign else value), end


def _d_small_big(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _big(data, pos + 2, data[pos], data[pos + 1])


def _d_large_big(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n, sign = _u32u8(data, pos)
    return _big(data, pos + 5, n, sign)


def _d_new_float(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    value: float = _f64(data, pos)[0]
    if not math.isfinite(value):
        raise EtfError("float is not finite")
    return value, pos + 8


def _d_float(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 31
    if end > len(data):
        raise _truncated()
    text = data[pos:end].split(b"\0", 1)[0]
    try:
        value = float(text.decode("ascii"))
    except ValueError as e:
        raise EtfError("bad FLOAT_EXT") from e
    if not math.isfinite(value):
        raise EtfError("float is not finite")
    return value, end


def _d_binary(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos + 4
    end = start + _u32(data, pos)[0]
    if end > len(data):
        raise _truncated()
    return data[start:end], end


def _d_bit_binary(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n, bits = _u32u8(data, pos)
    start = pos + 5
    end = start + n
    if end > len(data):
        raise _truncated()
    if n == 0:
        if bits:
            raise EtfError("empty bitstring with a bit count")
        return b"", end
    if not 1 <= bits <= 8:
        raise EtfError(f"bad bit count {bits}")
    if bits == 8:
        return data[start:end], end
    last = data[end - 1] & (0xFF << (8 - bits)) & 0xFF
    return BitBinary(data[start : end - 1] + bytes((last,)), bits), end


def _d_nil(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return [], pos


def _d_string(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos + 2
    end = start + _u16(data, pos)[0]
    if end > len(data):
        raise _truncated()
    return list(data[start:end]), end


def _items(data: bytes, pos: int, count: int, depth: int) -> tuple[list[Any], int]:
    """Decode C{count} consecutive terms, children of a container at C{depth}."""
    if depth >= MAX_DEPTH:
        raise EtfError(f"term nested deeper than {MAX_DEPTH}")
    if count > len(data) - pos:
        raise _truncated()
    decoders = _DECODERS
    items: list[Any] = []
    append = items.append
    depth += 1
    for _ in range(count):
        item, pos = decoders[data[pos]](data, pos + 1, depth)
        append(item)
    return items, pos


def _d_small_tuple(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    # _items, inlined: this is the hottest container.
    arity = data[pos]
    pos += 1
    if arity > len(data) - pos:
        raise _truncated()
    if depth >= MAX_DEPTH:
        raise EtfError(f"term nested deeper than {MAX_DEPTH}")
    decoders = _DECODERS
    items: list[Any] = []
    append = items.append
    depth += 1
    for _ in range(arity):
        item, pos = decoders[data[pos]](data, pos + 1, depth)
        append(item)
    return tuple(items), pos


def _d_large_tuple(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    items, pos = _items(data, pos + 4, _u32(data, pos)[0], depth)
    return tuple(items), pos


def _d_list(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u32(data, pos)[0]
    items, pos = _items(data, pos + 4, count, depth)
    tag = data[pos]
    if tag == NIL_EXT:
        return items, pos + 1
    tail, pos = _DECODERS[tag](data, pos + 1, depth + 1)
    return _cons(items, tail), pos


def _cons(items: list[Any], tail: Any) -> Any:
    """C{[items... | tail]}, normalised as Erlang sees it."""
    if isinstance(tail, list):
        items.extend(tail)
        return items
    if not items:
        return tail
    if isinstance(tail, ImproperList):
        return ImproperList((*items, *tail.items), tail.tail)
    return ImproperList(tuple(items), tail)


def _freeze(key: Any) -> Any:
    """A hashable equivalent of a map key holding lists."""
    if isinstance(key, list):
        return FrozenList(map(_freeze, key))
    if isinstance(key, tuple):
        return tuple(map(_freeze, key))
    if isinstance(key, ImproperList):
        return ImproperList(tuple(map(_freeze, key.items)), _freeze(key.tail))
    if isinstance(key, dict):
        raise EtfError("a map used as a map key is not supported")
    return key


def _d_map(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u32(data, pos)[0]
    if not count:
        return {}, pos + 4
    items, pos = _items(data, pos + 4, 2 * count, depth)
    result: dict[Any, Any] = {}
    for i in range(0, 2 * count, 2):
        key = items[i]
        try:
            result[key] = items[i + 1]
        except TypeError:
            result[_freeze(key)] = items[i + 1]
    if len(result) != count:
        raise EtfError("map has duplicate keys")
    return result, pos


#: Pids decoded lately, by their encoding: the same few pids (senders,
#: servers) come back in message after message.
_pids: dict[bytes, Pid] = {}


def _d_new_pid(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if data[pos] == SMALL_ATOM_UTF8_EXT:
        end = pos + 14 + data[pos + 1]
        if end > len(data):
            raise _truncated()
        raw = data[pos:end]
        pid = _pids.get(raw)
        if pid is None:
            node = _d_small_atom_utf8(data, pos + 1, 0)[0]
            pid = _make_pid(node, *_u32x3(data, end - 12))
            if len(_pids) >= _PID_CACHE_LIMIT:
                _pids.clear()
            _pids[raw] = pid
        return pid, end
    node, pos = _atom_at(data, pos)
    return _make_pid(node, *_u32x3(data, pos)), pos + 12


def _d_pid(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _atom_at(data, pos)
    return _make_pid(node, *_u32x2u8(data, pos)), pos + 9


def _d_new_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _atom_at(data, pos)
    id_, creation = _u32x2(data, pos)
    return Port(node, id_, creation), pos + 8


def _d_v4_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _atom_at(data, pos)
    id_, creation = _u64u32(data, pos)
    return Port(node, id_, creation), pos + 12


def _d_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _atom_at(data, pos)
    id_, creation = _u32u8(data, pos)
    return Port(node, id_, creation), pos + 5


_ref_ids: dict[int, Callable[[bytes, int], tuple[int, ...]]] = {}


def _ids(data: bytes, pos: int, count: int) -> tuple[tuple[int, ...], int]:
    end = pos + 4 * count
    if end > len(data):
        raise _truncated()
    unpack = _ref_ids.get(count)
    if unpack is None:
        unpack = struct.Struct(f">{count}I").unpack_from
        if count <= _MAX_REF_IDS:
            _ref_ids[count] = unpack
    return unpack(data, pos), end


def _d_newer_reference(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u16(data, pos)[0]
    node, pos = _atom_at(data, pos + 2)
    creation = _u32(data, pos)[0]
    ids, pos = _ids(data, pos + 4, count)
    return _make_reference(node, creation, ids), pos


def _d_new_reference(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u16(data, pos)[0]
    node, pos = _atom_at(data, pos + 2)
    if pos >= len(data):
        raise _truncated()
    creation = data[pos]
    ids, pos = _ids(data, pos + 1, count)
    return _make_reference(node, creation, ids), pos


def _d_reference(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _atom_at(data, pos)
    id_, creation = _u32u8(data, pos)
    return _make_reference(node, creation, (id_,)), pos + 5


def _integer_at(data: bytes, pos: int) -> tuple[int, int]:
    tag = data[pos]
    if tag not in _INTEGER_TAGS:
        raise EtfError(f"expected an integer, got tag {tag}")
    value: int
    value, pos = _DECODERS[tag](data, pos + 1, 0)
    return value, pos


def _d_export(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    module, pos = _atom_at(data, pos)
    function, pos = _atom_at(data, pos)
    arity, pos = _integer_at(data, pos)
    if arity < 0:
        raise EtfError("negative arity")
    return Export(module, function, arity), pos


def _d_new_fun(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _u32(data, pos)[0]
    end = pos + size
    if size < 4:
        raise EtfError("bad NEW_FUN_EXT size")
    if end > len(data):
        raise _truncated()
    return Fun(data[pos - 1 : end]), end


def _d_fun(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos - 1
    free = _u32(data, pos)[0]
    # Pid, Module, Index, Uniq, then the free variables.
    _, pos = _items(data, pos + 4, 4 + free, depth)
    return Fun(data[start:pos]), pos


def _unsupported(name: str) -> _Decoder:
    def refuse(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        raise EtfError(f"{name} is not supported")

    return refuse


def _d_unknown(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    raise EtfError(f"unknown tag {data[pos - 1]}")


_DECODERS: list[_Decoder] = [_d_unknown] * 256
for _tag, _decoder in (
    (SMALL_INTEGER_EXT, _d_small_integer),
    (INTEGER_EXT, _d_integer),
    (SMALL_BIG_EXT, _d_small_big),
    (LARGE_BIG_EXT, _d_large_big),
    (NEW_FLOAT_EXT, _d_new_float),
    (FLOAT_EXT, _d_float),
    (SMALL_ATOM_UTF8_EXT, _d_small_atom_utf8),
    (ATOM_UTF8_EXT, _d_atom_utf8),
    (SMALL_ATOM_EXT, _d_small_atom),
    (ATOM_EXT, _d_atom),
    (BINARY_EXT, _d_binary),
    (BIT_BINARY_EXT, _d_bit_binary),
    (SMALL_TUPLE_EXT, _d_small_tuple),
    (LARGE_TUPLE_EXT, _d_large_tuple),
    (NIL_EXT, _d_nil),
    (STRING_EXT, _d_string),
    (LIST_EXT, _d_list),
    (MAP_EXT, _d_map),
    (NEW_PID_EXT, _d_new_pid),
    (PID_EXT, _d_pid),
    (NEW_PORT_EXT, _d_new_port),
    (V4_PORT_EXT, _d_v4_port),
    (PORT_EXT, _d_port),
    (NEWER_REFERENCE_EXT, _d_newer_reference),
    (NEW_REFERENCE_EXT, _d_new_reference),
    (REFERENCE_EXT, _d_reference),
    (EXPORT_EXT, _d_export),
    (NEW_FUN_EXT, _d_new_fun),
    (FUN_EXT, _d_fun),
    (ATOM_CACHE_REF, _unsupported("ATOM_CACHE_REF (the atom cache)")),
    (DIST_HEADER, _unsupported("a distribution header (the atom cache)")),
    (DIST_FRAG_HEADER, _unsupported("a fragmented distribution header")),
    (LOCAL_EXT, _unsupported("LOCAL_EXT")),
    (COMPRESSED, _unsupported("COMPRESSED inside a term")),
):
    _DECODERS[_tag] = _decoder
del _tag, _decoder


def _inflate(data: bytes, pos: int, limit: int) -> tuple[Any, int]:
    """Decode the COMPRESSED term whose size field is at C{pos}."""
    size = _u32(data, pos)[0]
    if size == 0 or size > limit:
        raise EtfError(f"compressed term of {size} bytes (limit {limit})")
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(data[pos + 4 :], size)
        if not inflater.eof and len(plain) == size:
            # All the output is there; the zlib trailer may be left to read.
            if inflater.decompress(inflater.unconsumed_tail, 1):
                raise EtfError("compressed term inflates past its declared size")
    except zlib.error as e:
        raise EtfError(f"bad compressed term: {e}") from e
    if not inflater.eof or len(plain) != size:
        raise EtfError("compressed term does not inflate to its declared size")
    term, end = _DECODERS[plain[0]](plain, 1, 0)
    if end != size:
        raise EtfError("trailing bytes inside a compressed term")
    return term, len(data) - len(inflater.unused_data)


def _decode_at(data: bytes, pos: int, limit: int) -> tuple[Any, int]:
    """Decode the term at C{pos}, turning every failure into L{EtfError}."""
    try:
        tag = data[pos]
        if tag == COMPRESSED:
            return _inflate(data, pos + 1, limit)
        return _DECODERS[tag](data, pos + 1, 0)
    except EtfError:
        raise
    except (IndexError, struct.error) as e:
        raise _truncated() from e
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise EtfError(f"malformed term: {e}") from e


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise EtfError(f"cannot decode a {type(data).__name__}")


def decode_term(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_uncompressed: int = MAX_UNCOMPRESSED_SIZE,
) -> tuple[Any, int]:
    """
    Decode one term, without a version byte, starting at C{offset}.

    A COMPRESSED term (tag 80) is accepted there too, since it is what
    follows the version byte of a compressed standalone term.  A
    C{bytearray} or C{memoryview} is copied to C{bytes} first.

    @param max_uncompressed: the largest inflated size a COMPRESSED term
        may have.
    @return: the term and the offset just after it.
    @raise EtfError: if the bytes are not a well-formed term.
    """
    data = _as_bytes(data)
    if offset < 0:
        raise EtfError("negative offset")
    return _decode_at(data, offset, max_uncompressed)


def decode(
    data: bytes | bytearray | memoryview, *, max_uncompressed: int = MAX_UNCOMPRESSED_SIZE
) -> Any:
    """
    Decode a standalone term: the version byte 131, then one term (possibly
    COMPRESSED), then nothing else.

    @raise EtfError: if the bytes are not exactly one well-formed term.
    """
    data = _as_bytes(data)
    if not data or data[0] != VERSION:
        raise EtfError("missing version byte 131")
    term, end = _decode_at(data, 1, max_uncompressed)
    if end != len(data):
        raise EtfError(f"{len(data) - end} trailing bytes after the term")
    return term


def decode_many(
    data: bytes | bytearray | memoryview, *, max_uncompressed: int = MAX_UNCOMPRESSED_SIZE
) -> list[Any]:
    """
    Decode consecutive standalone terms (each with its own version byte),
    as a pass-through distribution frame carries its control message and
    message after the C{p} byte.

    @return: the terms, in order (none for empty input).
    @raise EtfError: on any junk, a missing version byte or a truncated term.
    """
    data = _as_bytes(data)
    terms: list[Any] = []
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] != VERSION:
            raise EtfError(f"missing version byte 131 at offset {pos}")
        term, pos = _decode_at(data, pos + 1, max_uncompressed)
        terms.append(term)
    return terms


# ---------------------------------------------------------------------------
# Encoding

_Encoder = Callable[[Any, bytearray, int], None]

_p_u16 = struct.Struct(">H").pack
_p_u32 = struct.Struct(">I").pack
_p_tag_i32 = struct.Struct(">Bi").pack
_p_tag_u16 = struct.Struct(">BH").pack
_p_tag_u32 = struct.Struct(">BI").pack
_p_tag_f64 = struct.Struct(">Bd").pack
_p_tag_u32_u8 = struct.Struct(">BIB").pack
_p_u32x3 = struct.Struct(">III").pack
_p_u32x2 = struct.Struct(">II").pack
_p_u64u32 = struct.Struct(">QI").pack

_P_IDS: Final = tuple(struct.Struct(f">{n}I").pack for n in range(_MAX_REF_IDS + 1))
_atom_bytes: dict[str, bytes] = {}
_INT_ONLY: Final = frozenset((int,))


def _encode_atom_text(name: str) -> bytes:
    """The encoding of the atom called C{name}, cached."""
    encoded = _atom_bytes.get(name)
    if encoded is not None:
        return encoded
    if len(name) > _MAX_ATOM_CHARS:
        raise EtfError("atom longer than 255 characters")
    try:
        raw = str.encode(name, "utf-8")
    except UnicodeEncodeError as e:
        raise EtfError("atom is not encodable as UTF-8") from e
    if len(raw) < 256:
        encoded = bytes((SMALL_ATOM_UTF8_EXT, len(raw))) + raw
    else:
        encoded = _p_tag_u16(ATOM_UTF8_EXT, len(raw)) + raw
    if len(_atom_bytes) >= _ATOM_CACHE_LIMIT:
        _atom_bytes.clear()
    _atom_bytes[str(name)] = encoded
    return encoded


def _node_bytes(node: Any) -> bytes:
    encoded = _atom_bytes.get(node)
    if encoded is not None:
        return encoded
    if not isinstance(node, str):
        raise EtfError(f"node name must be an atom, not {type(node).__name__}")
    return _encode_atom_text(node)


def _e_atom(term: Any, out: bytearray, depth: int) -> None:
    encoded = _atom_bytes.get(term)
    out += encoded if encoded is not None else _encode_atom_text(term)


_TRUE: Final = _encode_atom_text("true")
_FALSE: Final = _encode_atom_text("false")
_UNDEFINED: Final = _encode_atom_text("undefined")


def _e_bool(term: Any, out: bytearray, depth: int) -> None:
    out += _TRUE if term else _FALSE


def _e_none(term: Any, out: bytearray, depth: int) -> None:
    out += _UNDEFINED


def _e_int(term: Any, out: bytearray, depth: int) -> None:
    if 0 <= term < 256:
        out.append(SMALL_INTEGER_EXT)
        out.append(term)
    elif -0x80000000 <= term < 0x80000000:
        out += _p_tag_i32(INTEGER_EXT, term)
    else:
        magnitude = -term if term < 0 else term
        n = (magnitude.bit_length() + 7) >> 3
        if n < 256:
            out.append(SMALL_BIG_EXT)
            out.append(n)
        else:
            out += _p_tag_u32(LARGE_BIG_EXT, n)
        out.append(1 if term < 0 else 0)
        out += magnitude.to_bytes(n, "little")


def _e_float(term: Any, out: bytearray, depth: int) -> None:
    if not math.isfinite(term):
        raise EtfError(f"Erlang has no float {term!r}")
    out += _p_tag_f64(NEW_FLOAT_EXT, term)


def _e_bytes(term: Any, out: bytearray, depth: int) -> None:
    out += _p_tag_u32(BINARY_EXT, len(term))
    out += term


def _e_buffer(term: Any, out: bytearray, depth: int) -> None:
    _e_bytes(bytes(term), out, depth)


def _e_bit_binary(term: Any, out: bytearray, depth: int) -> None:
    data = bytes(term.data)
    bits = term.bits
    if not data or type(bits) is not int or not 1 <= bits <= 8:
        raise EtfError(f"bad bitstring: {len(data)} bytes, {bits!r} bits in the last")
    if bits == 8:
        _e_bytes(data, out, depth)
        return
    out += _p_tag_u32_u8(BIT_BINARY_EXT, len(data), bits)
    out += data[:-1]
    out.append(data[-1] & (0xFF << (8 - bits)) & 0xFF)


def _e_tuple(term: Any, out: bytearray, depth: int) -> None:
    n = len(term)
    if n < 256:
        out.append(SMALL_TUPLE_EXT)
        out.append(n)
    else:
        out += _p_tag_u32(LARGE_TUPLE_EXT, n)
    if n:
        if depth >= MAX_DEPTH:
            raise EtfError(f"term nested deeper than {MAX_DEPTH}")
        depth += 1
        get = _ENCODERS.get
        for item in term:
            get(type(item), _e_other)(item, out, depth)


def _byte_string(term: Any) -> bytes | None:
    """The bytes of a list that Erlang would encode as STRING_EXT, or None."""
    if type(term[0]) is int and len(term) < 65536 and set(map(type, term)) == _INT_ONLY:
        try:
            return bytes(term)
        except ValueError:
            return None
    return None


def _e_list_items(items: Any, out: bytearray, depth: int) -> None:
    out += _p_tag_u32(LIST_EXT, len(items))
    if depth >= MAX_DEPTH:
        raise EtfError(f"term nested deeper than {MAX_DEPTH}")
    depth += 1
    get = _ENCODERS.get
    for item in items:
        get(type(item), _e_other)(item, out, depth)


def _e_list(term: Any, out: bytearray, depth: int) -> None:
    if not term:
        out.append(NIL_EXT)
        return
    raw = _byte_string(term)
    if raw is not None:
        out += _p_tag_u16(STRING_EXT, len(raw))
        out += raw
        return
    _e_list_items(term, out, depth)
    out.append(NIL_EXT)


def _e_str(term: Any, out: bytearray, depth: int) -> None:
    if not term:
        out.append(NIL_EXT)
        return
    if len(term) < 65536:
        try:
            raw = str.encode(term, "latin-1")
        except UnicodeEncodeError:
            pass
        else:
            out += _p_tag_u16(STRING_EXT, len(raw))
            out += raw
            return
    _e_list_items(list(map(ord, term)), out, depth)
    out.append(NIL_EXT)


def _e_improper(term: Any, out: bytearray, depth: int) -> None:
    items = list(term.items)
    tail = term.tail
    while isinstance(tail, ImproperList):
        items.extend(tail.items)
        tail = tail.tail
    if isinstance(tail, list | FrozenList):
        _e_list([*items, *tail], out, depth)
        return
    if not items:
        raise EtfError("an improper list needs at least one element")
    _e_list_items(items, out, depth)
    _ENCODERS.get(type(tail), _e_other)(tail, out, depth + 1)


def _e_dict(term: Any, out: bytearray, depth: int) -> None:
    out += _p_tag_u32(MAP_EXT, len(term))
    if term:
        if depth >= MAX_DEPTH:
            raise EtfError(f"term nested deeper than {MAX_DEPTH}")
        depth += 1
        get = _ENCODERS.get
        for key, value in term.items():
            get(type(key), _e_other)(key, out, depth)
            get(type(value), _e_other)(value, out, depth)


def _e_pid(term: Any, out: bytearray, depth: int) -> None:
    out.append(NEW_PID_EXT)
    out += _node_bytes(term.node)
    out += _p_u32x3(term.id, term.serial, term.creation)


def _e_reference(term: Any, out: bytearray, depth: int) -> None:
    ids = term.ids
    if len(ids) > _MAX_REF_IDS:
        raise EtfError(f"a reference has at most {_MAX_REF_IDS} ids")
    out.append(NEWER_REFERENCE_EXT)
    out += _p_u16(len(ids))
    out += _node_bytes(term.node)
    out += _p_u32(term.creation)
    out += _P_IDS[len(ids)](*ids)


def _e_port(term: Any, out: bytearray, depth: int) -> None:
    if 0 <= term.id < 0x100000000:
        out.append(NEW_PORT_EXT)
        out += _node_bytes(term.node)
        out += _p_u32x2(term.id, term.creation)
    else:
        out.append(V4_PORT_EXT)
        out += _node_bytes(term.node)
        out += _p_u64u32(term.id, term.creation)


def _e_export(term: Any, out: bytearray, depth: int) -> None:
    arity = term.arity
    if type(arity) is not int or not 0 <= arity < 256:
        raise EtfError(f"bad arity {arity!r}")
    out.append(EXPORT_EXT)
    out += _node_bytes(term.module)
    out += _node_bytes(term.function)
    out.append(SMALL_INTEGER_EXT)
    out.append(arity)


def _e_fun(term: Any, out: bytearray, depth: int) -> None:
    raw = term.raw
    if not raw or raw[0] not in (NEW_FUN_EXT, FUN_EXT):
        raise EtfError("Fun.raw must be an encoded NEW_FUN_EXT or FUN_EXT")
    out += raw


_ENCODERS: dict[type, _Encoder] = {
    Atom: _e_atom,
    bool: _e_bool,
    type(None): _e_none,
    int: _e_int,
    float: _e_float,
    bytes: _e_bytes,
    bytearray: _e_buffer,
    memoryview: _e_buffer,
    tuple: _e_tuple,
    list: _e_list,
    FrozenList: _e_list,
    str: _e_str,
    dict: _e_dict,
    Pid: _e_pid,
    Reference: _e_reference,
    Port: _e_port,
    Export: _e_export,
    Fun: _e_fun,
    BitBinary: _e_bit_binary,
    ImproperList: _e_improper,
}

# For subclasses of the types above (IntEnum, namedtuple, OrderedDict...):
# the first match wins, so the more specific classes come first.
_FALLBACKS: Final[tuple[tuple[type, _Encoder], ...]] = (
    (bool, _e_bool),
    (Atom, _e_atom),
    (int, _e_int),
    (float, _e_float),
    (str, _e_str),
    (bytes, _e_buffer),
    (bytearray, _e_buffer),
    (memoryview, _e_buffer),
    (FrozenList, _e_list),
    (tuple, _e_tuple),
    (list, _e_list),
    (dict, _e_dict),
)


def _e_other(term: Any, out: bytearray, depth: int) -> None:
    for cls, encoder in _FALLBACKS:
        if isinstance(term, cls):
            encoder(term, out, depth)
            return
    raise EtfError(f"cannot encode a {type(term).__name__} as an Erlang term")


def _encode_into(term: Any, out: bytearray) -> bytes:
    try:
        _ENCODERS.get(type(term), _e_other)(term, out, 0)
    except EtfError:
        raise
    except (struct.error, OverflowError, ValueError, TypeError, RecursionError) as e:
        raise EtfError(f"cannot encode {type(term).__name__}: {e}") from e
    return bytes(out)


def encode_term(term: Any) -> bytes:
    """
    Encode C{term} without the version byte (as inside a distribution
    frame with a header, or to build larger terms by hand).

    @raise EtfError: if C{term} has no Erlang equivalent (see the module
        docstring) or a field is out of range.
    """
    return _encode_into(term, bytearray())


def encode(term: Any, *, compressed: bool | int = False) -> bytes:
    """
    Encode C{term} as a standalone term: the version byte 131, then the
    term, as C{term_to_binary(T, [{minor_version, 2}])} does.

    @param compressed: C{True} (zlib level 6) or a zlib level 0-9 to emit a
        COMPRESSED term, as C{term_to_binary(T, [{compressed, Level}])}
        does: only when that is shorter than the plain encoding.
    @raise EtfError: if C{term} has no Erlang equivalent (see the module
        docstring) or a field is out of range.
    """
    encoded = _encode_into(term, bytearray(b"\x83"))
    if compressed is False:
        return encoded
    level = 6 if compressed is True else compressed
    if not 0 <= level <= 9:
        raise EtfError(f"bad compression level {level!r}")
    deflated = zlib.compress(memoryview(encoded)[1:], level)
    if len(deflated) + 5 < len(encoded) - 1:
        return bytes((VERSION,)) + _p_tag_u32(COMPRESSED, len(encoded) - 1) + deflated
    return encoded
