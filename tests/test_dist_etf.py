# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.dist.etf}, the Erlang external term format.

(trial's assertion methods are untyped, hence the mypy comment above.)
"""

from __future__ import annotations

import enum
import math
import struct
import subprocess
import zlib
from collections import OrderedDict, namedtuple
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from twisted.trial.unittest import SynchronousTestCase

from tests.interop.nodeprocess import requireProgram
from vernemq.dist.etf import (
    MAX_DEPTH,
    Atom,
    BitBinary,
    EtfError,
    Export,
    FrozenList,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    decode,
    decode_many,
    decode_term,
    encode,
    encode_term,
)


def same(a: Any, b: Any) -> bool:
    """
    Whether C{a} and C{b} are the same term: equal, of the same types all
    the way down (C{1 != 1.0}, C{Atom("a") != "a"}, C{True != Atom("true")}),
    maps in the same order, and C{-0.0 != 0.0}.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, ImproperList):
        return same(a.items, b.items) and same(a.tail, b.tail)
    if isinstance(a, Pid | Reference | Port):
        return a == b and type(a.node) is type(b.node) is Atom
    if isinstance(a, Export):
        return a == b and type(a.module) is type(a.function) is Atom
    return bool(a == b)


# ---------------------------------------------------------------------------
# Vectors captured from real Erlang/OTP 25 (erts 13.1.5) on Debian bookworm.
#
# Captured with a throwaway module run on a named node (so pids, refs and
# ports carry a node name and creation):
#
#     erl -sname x -setcookie c -noshell -pa . -eval 'cap:main(), halt().'
#
# where cap:main/0 printed, for each term T below,
#
#     io:format("~s ~s~n", [Name, binary:encode_hex(term_to_binary(T, [{minor_version, 2}]))])
#
# ({minor_version, 2} gives UTF-8 atoms, as the distribution does; the
# default minor version 1 of OTP 25 writes latin-1 ATOM_EXT, see
# LEGACY_VECTORS).  The pid is self(), the ref make_ref(), the port
# hd(erlang:ports()), all on x@vm with creation 16#6B083426.

NODE_X = Atom("x@vm")
CREATION_X = 0x6B083426
PID_X = Pid(NODE_X, 9, 0, CREATION_X)
REF_X = Reference(NODE_X, CREATION_X, (84291, 1338769409, 2282953575))
PORT_X = Port(NODE_X, 0, CREATION_X)
PAYLOAD_64 = bytes(range(1, 65))  # list_to_binary(lists:seq(1, 64))

#: (name, Erlang source, Python value, term_to_binary bytes as hex); our
#: encoder must produce exactly these bytes and the decoder this value.
VECTORS: list[tuple[str, str, Any, str]] = [
    ("atom_ok", "ok", Atom("ok"), "8377026F6B"),
    ("atom_empty", "''", Atom(""), "837700"),
    ("atom_true", "true", Atom("true"), "83770474727565"),
    ("atom_undefined", "undefined", Atom("undefined"), "837709756E646566696E6564"),
    ("atom_latin1", "'héllo'", Atom("héllo"), "83770668C3A96C6C6F"),
    ("atom_emoji", "'😀'", Atom("😀"), "837704F09F9880"),
    (
        "atom_long_utf8",
        "list_to_atom(lists:duplicate(200, 233))",
        Atom("é" * 200),
        "83760190" + "C3A9" * 200,
    ),
    ("int_0", "0", 0, "836100"),
    ("int_255", "255", 255, "8361FF"),
    ("int_256", "256", 256, "836200000100"),
    ("int_m1", "-1", -1, "8362FFFFFFFF"),
    ("int_max32", "2147483647", 2147483647, "83627FFFFFFF"),
    ("int_min32", "-2147483648", -2147483648, "836280000000"),
    ("int_2p31", "2147483648", 2147483648, "836E040000000080"),
    ("int_m2p31m1", "-2147483649", -2147483649, "836E040101000080"),
    ("int_2p64", "18446744073709551616", 2**64, "836E0900000000000000000001"),
    ("int_m2p64", "-18446744073709551616", -(2**64), "836E0901000000000000000001"),
    ("int_2p2100", "1 bsl 2100", 2**2100, "836F00000107" + "00" + "00" * 262 + "10"),
    ("int_m2p2100", "-(1 bsl 2100)", -(2**2100), "836F00000107" + "01" + "00" * 262 + "10"),
    ("float_pi", "3.14", 3.14, "834640091EB851EB851F"),
    ("float_negzero", "-0.0", -0.0, "83468000000000000000"),
    ("float_1e300", "1.0e300", 1.0e300, "83467E37E43C8800759C"),
    ("float_0_1", "0.1", 0.1, "83463FB999999999999A"),
    ("bin_empty", "<<>>", b"", "836D00000000"),
    ("bin_hello", '<<"hello">>', b"hello", "836D0000000568656C6C6F"),
    ("bits_1_3", "<<1:3>>", BitBinary(b"\x20", 3), "834D000000010320"),
    ("bits_123_5", "<<1,2,3:5>>", BitBinary(b"\x01\x02\x18", 5), "834D0000000305010218"),
    ("tuple_empty", "{}", (), "836800"),
    ("tuple_ok_1", "{ok, 1}", (Atom("ok"), 1), "83680277026F6B6101"),
    (
        "tuple_large",
        "list_to_tuple(lists:duplicate(256, 0))",
        (0,) * 256,
        "836900000100" + "6100" * 256,
    ),
    ("nil", "[]", [], "836A"),
    ("list_123", "[1,2,3]", [1, 2, 3], "836B0003010203"),
    ("string_str", '"str"', [115, 116, 114], "836B0003737472"),
    ("list_1000_2000", "[1000, 2000]", [1000, 2000], "836C0000000262000003E862000007D06A"),
    ("list_atoms", "[a, b]", [Atom("a"), Atom("b")], "836C000000027701617701626A"),
    ("improper_12_3", "[1,2|3]", ImproperList((1, 2), 3), "836C00000002610161026103"),
    (
        "improper_a_b",
        "[a|b]",
        ImproperList((Atom("a"),), Atom("b")),
        "836C00000001770161770162",
    ),
    (
        "string_unicode",
        '"héllo€"',
        [104, 233, 108, 108, 111, 8364],
        "836C00000006616861E9616C616C616F62000020AC6A",
    ),
    ("string_latin1", '"héllo"', [104, 233, 108, 108, 111], "836B000568E96C6C6F"),
    (
        "list_nested",
        "[[1], [], {a, [b]}]",
        [[1], [], (Atom("a"), [Atom("b")])],
        "836C000000036B0001016A68027701616C000000017701626A6A",
    ),
    ("map_empty", "#{}", {}, "837400000000"),
    (
        "map_ab",
        '#{a => 1, b => <<"x">>}',
        {Atom("a"): 1, Atom("b"): b"x"},
        "83740000000277016161017701626D0000000178",
    ),
    ("map_string_key", '#{"k" => 1}', {FrozenList([107]): 1}, "8374000000016B00016B6101"),
    (
        "export",
        "fun lists:reverse/1",
        Export(Atom("lists"), Atom("reverse"), 1),
        "837177056C697374737707726576657273656101",
    ),
    (
        "export_cap_main",
        "fun cap:main/0",
        Export(Atom("cap"), Atom("main"), 0),
        "8371770363617077046D61696E6100",
    ),
    (
        "fun_eval",
        "fun() -> ok end",
        Fun(
            bytes.fromhex(
                "700000003C0093ECB3393FA20E4D980B83C31D9CD56D0000000000000000"
                "7703636170610062049F65995877047840766D00000009000000006B083426"
            )
        ),
        "83700000003C0093ECB3393FA20E4D980B83C31D9CD56D0000000000000000"
        "7703636170610062049F65995877047840766D00000009000000006B083426",
    ),
    ("pid", "self()", PID_X, "835877047840766D00000009000000006B083426"),
    ("ref", "make_ref()", REF_X, "835A000377047840766D6B083426000149434FCC000188131B67"),
    ("port", "hd(erlang:ports())", PORT_X, "835977047840766D000000006B083426"),
    (
        "alias_tag",
        "[alias | Ref]",
        ImproperList((Atom("alias"),), REF_X),
        "836C000000017705616C6961735A000377047840766D6B083426000149434FCC000188131B67",
    ),
    (
        "vmq_msg",
        '{vmq_msg, <<"topic/a/b">>, list_to_binary(lists:seq(1, 64)), 1, false, #{}}',
        (Atom("vmq_msg"), b"topic/a/b", PAYLOAD_64, 1, Atom("false"), {}),
        "8368067707766D715F6D73676D00000009746F7069632F612F626D00000040"
        + PAYLOAD_64.hex().upper()
        + "6101770566616C73657400000000",
    ),
    (
        "gen_call",
        "{'$gen_call', {Pid, Ref}, {call, lists, reverse, [[1,2,3]], Pid}}",
        (
            Atom("$gen_call"),
            (PID_X, REF_X),
            (Atom("call"), Atom("lists"), Atom("reverse"), [[1, 2, 3]], PID_X),
        ),
        "83680377092467656E5F63616C6C68025877047840766D00000009000000006B083426"
        "5A000377047840766D6B083426000149434FCC000188131B67"
        "6805770463616C6C77056C697374737707726576657273656C000000016B00030102036A"
        "5877047840766D00000009000000006B083426",
    ),
]

#: term_to_binary(lists:duplicate(100, <<"abc">>), [compressed, {minor_version, 2}])
COMPRESSED_LIST = bytes.fromhex(
    "835000000326789CCB61606048C90512CC8949C9A3F4283D4A63D25900CF769FD3"
)

#: Forms OTP 25 decodes but our encoder does not emit: (name, bytes as hex,
#: Python value).  The first four are term_to_binary/1 output with OTP 25's
#: default minor version 1 (latin-1 ATOM_EXT) and {minor_version, 0}
#: (FLOAT_EXT); the others were written by hand and checked with
#: term_to_binary(binary_to_term(B), [{minor_version, 2}]) on x@vm, which
#: gave the encoding our encoder produces for the value (checked below).
LEGACY_VECTORS: list[tuple[str, str, Any]] = [
    ("atom_ext", "836400026F6B", Atom("ok")),
    ("atom_ext_latin1", "8364000568E96C6C6F", Atom("héllo")),
    (
        "float_ext",
        "8363332E3134303030303030303030303030303132343334652B30300000000000",
        3.14,
    ),
    (
        "map_latin1_atoms",
        "837400000002640001616101640001626D0000000178",
        {Atom("a"): 1, Atom("b"): b"x"},
    ),
    ("small_atom_ext", "8373026F6B", Atom("ok")),
    ("pid_ext", "83676400047840766D000000090000000003", Pid(NODE_X, 9, 0, 3)),
    (
        "new_reference_ext",
        "837200036400047840766D02000000010000000200000003",
        Reference(NODE_X, 2, (1, 2, 3)),
    ),
    ("reference_ext", "83656400047840766D0000000701", Reference(NODE_X, 1, (7,))),
    ("port_ext", "83666400047840766D0000000502", Port(NODE_X, 5, 2)),
    ("v4_port_ext_small_id", "837877047840766D000000000000000500000002", Port(NODE_X, 5, 2)),
    ("small_big_small_value", "836E010005", 5),
    ("large_tuple_small", "8369000000016101", (1,)),
    ("atom_utf8_ext_short", "837600026F6B", Atom("ok")),
    ("bit_binary_8_bits", "834D00000002080102", b"\x01\x02"),
]

#: Written by hand (OTP 25 never emits FUN_EXT): NumFree=1, Pid, Module
#: 'm', Index 0, Uniq 1, one free variable 5.
FUN_EXT = bytes.fromhex(
    "75" + "00000001" + "5877047840766D000000090000000000000001" + "7701" + "6D"
)
FUN_EXT += bytes.fromhex("6100" + "6101" + "6105")


# ---------------------------------------------------------------------------
# Strategies

_u32 = st.integers(0, 2**32 - 1)
# (long values are built by functions so that the strategies' reprs stay short)
atoms = (
    st.text(max_size=12).map(Atom)
    | st.sampled_from([Atom("ok"), Atom("ñandú"), Atom("😀")])
    | st.builds(lambda c, n: Atom(c * n), st.sampled_from("aé😀"), st.integers(250, 255))
)
nodes = st.sampled_from([Atom("x@vm"), Atom("vernemq@host-1"), Atom("ñ@h")]) | atoms
integers = (
    st.integers()
    | st.integers(-300, 300)
    | st.builds(
        lambda bits, sign, offset: sign * 2**bits + offset,
        st.integers(0, 2100),
        st.sampled_from((1, -1)),
        st.integers(-(2**40), 2**40),
    )
)
floats = st.floats(allow_nan=False, allow_infinity=False)
binaries = st.binary(max_size=40)


def _bitBinary(data: bytes, bits: int) -> BitBinary:
    return BitBinary(data[:-1] + bytes((data[-1] & (0xFF << (8 - bits)) & 0xFF,)), bits)


bit_binaries = st.builds(_bitBinary, st.binary(min_size=1, max_size=12), st.integers(1, 7))
pids = st.builds(Pid, nodes, _u32, _u32, _u32)
references = st.builds(Reference, nodes, _u32, st.lists(_u32, max_size=5).map(tuple))
ports = st.builds(Port, nodes, st.integers(0, 2**64 - 1), _u32)
exports = st.builds(Export, atoms, atoms, st.integers(0, 255))
funs = st.binary(max_size=40).map(
    lambda body: Fun(bytes((112,)) + struct.pack(">I", 4 + len(body)) + body)
)
leaves: SearchStrategy[Any] = st.one_of(
    atoms, integers, floats, binaries, bit_binaries, pids, references, ports, exports, funs
)
#: Hashable map keys (no floats: Python merges the keys 1 and 1.0).
keys: SearchStrategy[Any] = st.recursive(
    st.one_of(atoms, integers, binaries, pids, references),
    lambda children: st.lists(children, max_size=3).map(tuple),
    max_leaves=6,
)


def _containers(children: SearchStrategy[Any]) -> SearchStrategy[Any]:
    notLists = children.filter(lambda t: not isinstance(t, list | ImproperList))
    return st.one_of(
        st.lists(children, max_size=5).map(tuple),
        st.lists(children, max_size=5),
        st.builds(ImproperList, st.lists(children, min_size=1, max_size=4).map(tuple), notLists),
        st.dictionaries(keys, children, max_size=4),
    )


terms: SearchStrategy[Any] = st.recursive(leaves, _containers, max_leaves=25)


class SameTests(SynchronousTestCase):
    """
    The strict equality the other tests use.
    """

    def test_strict(self) -> None:
        """
        C{same} tells apart what Python's C{==} does not.
        """
        self.assertTrue(same([1, (Atom("a"), {1: b""})], [1, (Atom("a"), {1: b""})]))
        self.assertFalse(same(1, 1.0))
        self.assertFalse(same(Atom("a"), "a"))
        self.assertFalse(same(Atom("true"), True))
        self.assertFalse(same(0.0, -0.0))
        self.assertFalse(same({1: 2, 3: 4}, {3: 4, 1: 2}))
        self.assertFalse(same([1], (1,)))


class VectorTests(SynchronousTestCase):
    """
    Byte-exact agreement with real Erlang.
    """

    def test_encode(self) -> None:
        """
        Our encoder produces the bytes of C{term_to_binary(T, [{minor_version, 2}])}.
        """
        for name, _, value, hexed in VECTORS:
            self.assertEqual(encode(value).hex().upper(), hexed, name)

    def test_decode(self) -> None:
        """
        Erlang's bytes decode to the documented Python values.
        """
        for name, _, value, hexed in VECTORS:
            decoded = decode(bytes.fromhex(hexed))
            self.assertTrue(same(decoded, value), f"{name}: {decoded!r} is not {value!r}")

    def test_encodeTerm(self) -> None:
        """
        C{encode_term} is C{encode} without the version byte, and
        C{decode_term} reads it back, returning the offset after the term.
        """
        for name, _, value, hexed in VECTORS:
            data = bytes.fromhex(hexed)[1:]
            self.assertEqual(encode_term(value), data, name)
            decoded, end = decode_term(b"junk" + data + b"more", 4)
            self.assertTrue(same(decoded, value), name)
            self.assertEqual(end, 4 + len(data), name)

    def test_legacy(self) -> None:
        """
        The legacy forms decode; encoding their value gives what Erlang
        gives when it re-encodes them.
        """
        reencoded = {
            "small_atom_ext": "8377026F6B",
            "pid_ext": "835877047840766D000000090000000000000003",
            "new_reference_ext": "835A000377047840766D00000002000000010000000200000003",
            "reference_ext": "835A000177047840766D0000000100000007",
            "port_ext": "835977047840766D0000000500000002",
            "v4_port_ext_small_id": "835977047840766D0000000500000002",
            "small_big_small_value": "836105",
            "large_tuple_small": "8368016101",
            "atom_utf8_ext_short": "8377026F6B",
            "bit_binary_8_bits": "836D000000020102",
        }
        for name, hexed, value in LEGACY_VECTORS:
            decoded = decode(bytes.fromhex(hexed))
            self.assertTrue(same(decoded, value), f"{name}: {decoded!r} is not {value!r}")
            if name in reencoded:
                self.assertEqual(encode(value).hex().upper(), reencoded[name], name)

    def test_v4Port(self) -> None:
        """
        A port id of more than 32 bits is a V4_PORT_EXT, as Erlang writes it.
        """
        data = bytes.fromhex("837877047840766D000000010000000500000002")
        port = Port(NODE_X, 2**32 + 5, 2)
        self.assertEqual(decode(data), port)
        self.assertEqual(encode(port), data)

    def test_compressed(self) -> None:
        """
        A compressed term decodes; C{encode(..., compressed=True)} gives
        Erlang's bytes, and leaves a term alone when compressing does not
        make it shorter (as Erlang does).
        """
        value = [b"abc"] * 100
        self.assertTrue(same(decode(COMPRESSED_LIST), value))
        self.assertEqual(encode(value, compressed=True), COMPRESSED_LIST)
        self.assertEqual(encode(value, compressed=6), COMPRESSED_LIST)
        self.assertEqual(encode(Atom("ok"), compressed=True), encode(Atom("ok")))
        self.assertEqual(decode(encode(value, compressed=9)), value)
        self.assertRaises(EtfError, encode, value, compressed=10)

    def test_compressedLimit(self) -> None:
        """
        A compressed term larger than C{max_uncompressed} is refused.
        """
        self.assertRaises(EtfError, decode, COMPRESSED_LIST, max_uncompressed=100)
        self.assertEqual(len(decode(COMPRESSED_LIST, max_uncompressed=0x326)), 100)

    def test_funExt(self) -> None:
        """
        The legacy FUN_EXT is kept opaque, like NEW_FUN_EXT.
        """
        fun = decode(b"\x83" + FUN_EXT)
        self.assertEqual(fun, Fun(FUN_EXT))
        self.assertEqual(encode(fun), b"\x83" + FUN_EXT)


class MappingTests(SynchronousTestCase):
    """
    The Python mapping documented in the module.
    """

    def test_booleansAndNone(self) -> None:
        """
        C{True}, C{False} and C{None} encode as the atoms C{true}, C{false}
        and C{undefined}, which decode as L{Atom}s.
        """
        for value, name in ((True, "true"), (False, "false"), (None, "undefined")):
            self.assertEqual(encode(value), encode(Atom(name)))
            self.assertIs(type(decode(encode(value))), Atom)
            self.assertEqual(decode(encode(value)), name)

    def test_atom(self) -> None:
        """
        An L{Atom} is a C{str} with its own repr.
        """
        self.assertEqual(Atom("ok"), "ok")
        self.assertEqual(repr(Atom("ok")), "Atom('ok')")
        self.assertEqual(hash(Atom("ok")), hash("ok"))

    def test_str(self) -> None:
        """
        A plain C{str} is an Erlang string: STRING_EXT when every code point
        is below 256 and it is shorter than 65536, otherwise LIST_EXT.
        """
        self.assertEqual(encode("héllo"), bytes.fromhex("836B000568E96C6C6F"))
        self.assertEqual(
            encode("héllo€"), bytes.fromhex("836C00000006616861E9616C616C616F62000020AC6A")
        )
        self.assertEqual(encode(""), b"\x83j")
        self.assertEqual(decode(encode("abc")), [97, 98, 99])
        long = "a" * 65536
        self.assertEqual(encode(long)[:6], b"\x83l\x00\x01\x00\x00")
        self.assertEqual(decode(encode(long)), [97] * 65536)
        self.assertEqual(decode(encode("a" * 65535))[:2], [97, 97])
        self.assertEqual(encode("a" * 65535)[:4], b"\x83k\xff\xff")

    def test_byteLists(self) -> None:
        """
        Only non-empty lists of plain C{int}s 0..255 shorter than 65536 are
        STRING_EXT; booleans in a list stay atoms.
        """
        self.assertEqual(encode([0, 255])[:2], b"\x83k")
        self.assertEqual(encode([0, 256])[:2], b"\x83l")
        self.assertEqual(encode([-1])[:2], b"\x83l")
        self.assertEqual(encode([1, True])[:2], b"\x83l")
        self.assertEqual(decode(encode([True])), [Atom("true")])
        self.assertEqual(encode([1] * 65536)[:2], b"\x83l")
        self.assertEqual(encode((1, 2)), b"\x83h\x02a\x01a\x02")

    def test_buffers(self) -> None:
        """
        C{bytearray} and C{memoryview} encode as binaries.
        """
        self.assertEqual(encode(bytearray(b"ab")), encode(b"ab"))
        self.assertEqual(encode(memoryview(b"xab")[1:]), encode(b"ab"))

    def test_subclasses(self) -> None:
        """
        Subclasses of the supported types encode as their base type.
        """

        class Level(enum.IntEnum):
            high = 300

        Point = namedtuple("Point", "x y")
        self.assertEqual(encode(Level.high), encode(300))
        self.assertEqual(encode(Point(1, 2)), encode((1, 2)))
        self.assertEqual(encode(OrderedDict(a=1)), encode({"a": 1}))

        class Name(Atom):
            pass

        self.assertEqual(encode(Name("ok")), encode(Atom("ok")))

    def test_improperListNormalised(self) -> None:
        """
        An improper list whose tail is a list is the flat list it stands
        for, in both directions, as in Erlang.
        """
        self.assertEqual(encode(ImproperList((1,), [2, 3])), encode([1, 2, 3]))
        self.assertEqual(
            encode(ImproperList((1,), ImproperList((2,), 3))), encode(ImproperList((1, 2), 3))
        )
        # [1 | [2]] written with a nested LIST_EXT tail, [1 | "ab"] with a STRING_EXT one
        self.assertEqual(decode(bytes.fromhex("836C000000016101" + "6C0000000161026A")), [1, 2])
        self.assertEqual(decode(bytes.fromhex("836C000000016101" + "6B00026162")), [1, 97, 98])
        self.assertEqual(
            decode(bytes.fromhex("836C000000016101" + "6C0000000161026103")),
            ImproperList((1, 2), 3),
        )
        # LIST_EXT of no elements is its tail (binary_to_term gives 5)
        self.assertEqual(decode(bytes.fromhex("836C000000006105")), 5)

    def test_bitBinaryUnusedBits(self) -> None:
        """
        The unused low bits of a bitstring's last byte are cleared; a
        bitstring of 8 bits in the last byte is a binary.
        """
        self.assertEqual(encode(BitBinary(b"\xff", 3)), bytes.fromhex("834D0000000103E0"))
        self.assertEqual(decode(bytes.fromhex("834D00000001037F")), BitBinary(b"\x60", 3))
        self.assertEqual(encode(BitBinary(b"ab", 8)), encode(b"ab"))
        self.assertEqual(decode(bytes.fromhex("834D0000000000")), b"")

    def test_frozenList(self) -> None:
        """
        A list map key decodes as a hashable L{FrozenList}, equal to the
        list (not to a tuple), and encodes back as a list.
        """
        decoded = decode(bytes.fromhex("8374000000016B00016B6101"))
        (key,) = decoded
        self.assertIsInstance(key, FrozenList)
        self.assertEqual(key, [107])
        self.assertEqual(key, FrozenList([107]))
        self.assertNotEqual(key, (107,))
        self.assertNotEqual((107,), key)
        self.assertEqual(decoded[FrozenList([107])], 1)
        self.assertEqual(repr(key), "FrozenList([107])")
        nested = {FrozenList([FrozenList([1]), (2, FrozenList([]))]): 1}
        self.assertEqual(decode(encode(nested)), nested)
        # #{[[1] | 2] => 1}
        improperKey = decode(
            b"\x83t\x00\x00\x00\x01" + encode_term(ImproperList(([1],), 2)) + b"a\x01"
        )
        self.assertEqual(improperKey, {ImproperList((FrozenList([1]),), 2): 1})

    def test_pidCacheSharing(self) -> None:
        """
        Equal pids decode as equal (and, from the cache, identical) objects.
        """
        data = encode((PID_X, PID_X))
        first, second = decode(data)
        self.assertEqual(first, PID_X)
        self.assertIs(first, second)
        self.assertEqual(hash(first), hash(PID_X))


class RoundTripTests(SynchronousTestCase):
    """
    Property tests: everything the mapping supports survives a round trip.
    """

    @given(terms)
    def test_roundTrip(self, term: Any) -> None:
        """
        C{decode(encode(t))} is C{t}, and so is C{decode_term} of
        C{encode_term}, consuming every byte.
        """
        data = encode(term)
        decoded = decode(data)
        self.assertTrue(same(decoded, term), f"{decoded!r} is not {term!r}")
        raw = encode_term(term)
        self.assertEqual(raw, data[1:])
        again, end = decode_term(raw)
        self.assertTrue(same(again, term))
        self.assertEqual(end, len(raw))

    @given(terms)
    def test_compressedRoundTrip(self, term: Any) -> None:
        """
        Compressed or not, the term reads back the same.
        """
        self.assertTrue(same(decode(encode(term, compressed=True)), term))

    @given(terms, terms, terms)
    def test_decodeMany(self, first: Any, second: Any, third: Any) -> None:
        """
        C{decode_many} reads back consecutive standalone terms, compressed
        or not.
        """
        many = [first, second, third]
        for count in range(4):
            data = b"".join(encode(t, compressed=i == 1) for i, t in enumerate(many[:count]))
            decoded = decode_many(data)
            self.assertTrue(same(decoded, many[:count]), f"{decoded!r} is not {many[:count]!r}")

    @given(st.text(max_size=30))
    def test_strings(self, text: str) -> None:
        """
        A C{str} decodes as the list of its code points.
        """
        self.assertEqual(decode(encode(text)), [ord(c) for c in text])

    @given(terms, st.data())
    def test_mutations(self, term: Any, data: st.DataObject) -> None:
        """
        Any single-byte change, truncation or extension of an encoding
        either decodes or raises L{EtfError}; never anything else.
        """
        encoded = bytearray(encode(term))
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
        for candidate in (bytes(encoded), bytes(encoded[:position]), bytes(encoded) + b"\x00"):
            try:
                decode(candidate)
            except EtfError:
                pass

    @given(st.binary(max_size=64))
    def test_garbage(self, junk: bytes) -> None:
        """
        Random bytes decode or raise L{EtfError}.
        """
        for candidate in (b"\x83" + junk, junk):
            try:
                decode(candidate)
            except EtfError:
                pass
            try:
                decode_many(candidate)
            except EtfError:
                pass


class ErrorTests(SynchronousTestCase):
    """
    Malformed input raises L{EtfError} and only L{EtfError}.
    """

    def test_etfErrorIsValueError(self) -> None:
        """
        L{EtfError} is a C{ValueError}.
        """
        self.assertTrue(issubclass(EtfError, ValueError))

    def test_truncatedEverywhere(self) -> None:
        """
        Every proper prefix of a term is truncated, for C{decode}, C{decode_term}
        and C{decode_many}.
        """
        samples = [bytes.fromhex(hexed) for _, _, _, hexed in VECTORS]
        samples += [bytes.fromhex(hexed) for _, hexed, _ in LEGACY_VECTORS]
        samples += [COMPRESSED_LIST, b"\x83" + FUN_EXT]
        for data in samples:
            for end in range(len(data)):
                prefix = data[:end]
                self.assertRaises(EtfError, decode, prefix)
                if end:
                    self.assertRaises(EtfError, decode_term, prefix, 1)
                    self.assertRaises(EtfError, decode_many, prefix)

    def test_trailingGarbage(self) -> None:
        """
        C{decode} refuses bytes after the term; C{decode_term} stops at the
        term's end; C{decode_many} wants another version byte.
        """
        data = encode((Atom("ok"), 1))
        self.assertRaises(EtfError, decode, data + b"\x00")
        self.assertRaises(EtfError, decode, data + data)
        self.assertEqual(decode_term(data + b"\x00", 1), ((Atom("ok"), 1), len(data)))
        self.assertRaises(EtfError, decode_many, data + b"\x00")
        self.assertRaises(EtfError, decode_many, data + b"\x83")
        self.assertRaises(EtfError, decode, COMPRESSED_LIST + b"\x00")

    def test_versionByte(self) -> None:
        """
        A standalone term must start with 131.
        """
        self.assertRaises(EtfError, decode, b"")
        self.assertRaises(EtfError, decode, b"\x82a\x01")
        self.assertRaises(EtfError, decode, b"a\x01")
        self.assertEqual(decode_many(b""), [])
        self.assertRaises(EtfError, decode_many, b"a\x01")
        self.assertRaises(EtfError, decode_term, b"")
        self.assertRaises(EtfError, decode_term, b"a\x01", 2)
        self.assertRaises(EtfError, decode_term, b"a\x01", -1)

    def test_notBytes(self) -> None:
        """
        Only bytes-like objects decode; C{bytearray} and C{memoryview} do.
        """
        self.assertRaises(EtfError, decode, "\x83a\x01")
        self.assertRaises(EtfError, decode, 5)
        self.assertEqual(decode(bytearray(b"\x83a\x01")), 1)
        self.assertEqual(decode_term(memoryview(b"xxa\x01"), 2), (1, 4))
        self.assertEqual(decode_many(memoryview(b"\x83a\x01\x83a\x02")), [1, 2])

    def test_unknownTags(self) -> None:
        """
        Every tag we do not decode is refused, the atom cache, distribution
        headers, LOCAL_EXT and a COMPRESSED nested in a term included.
        """
        known = {70, 77, 88, 89, 90, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107}
        known |= {108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120}
        for tag in set(range(256)) - known - {80}:
            data = bytes((131, tag)) + b"\x00" * 40
            self.assertRaises(EtfError, decode, data)
            self.assertRaises(EtfError, decode, bytes((131, 104, 1, tag)) + b"\x00" * 40)
        nested = bytes.fromhex("83680150000000017801") + zlib.compress(b"a\x01")
        self.assertRaises(EtfError, decode, nested)
        twice = (
            b"\x83P" + struct.pack(">I", 7) + zlib.compress(b"P" + struct.pack(">I", 2) + b"a\x01")
        )
        self.assertRaises(EtfError, decode, twice)

    def test_lyingLengths(self) -> None:
        """
        A length field larger than the bytes that follow is refused before
        anything is allocated.
        """
        big = b"\xff\xff\xff\xff"
        for data in (
            b"\x83m" + big + b"abc",  # BINARY_EXT
            b"\x83M" + big + b"\x03abc",  # BIT_BINARY_EXT
            b"\x83l" + big + b"a\x01j",  # LIST_EXT
            b"\x83i" + big + b"a\x01",  # LARGE_TUPLE_EXT
            b"\x83t" + big + b"a\x01a\x01",  # MAP_EXT
            b"\x83t\x80\x00\x00\x00a\x01a\x01",  # MAP_EXT, 2 * arity overflows 32 bits
            b"\x83k\xff\xffab",  # STRING_EXT
            b"\x83o" + big + b"\x00\x01",  # LARGE_BIG_EXT
            b"\x83n\xff\x00\x01",  # SMALL_BIG_EXT
            b"\x83v\xff\xffok",  # ATOM_UTF8_EXT
            b"\x83w\xffok",  # SMALL_ATOM_UTF8_EXT
            b"\x83d\xff\xffok",  # ATOM_EXT
            b"\x83s\xffok",  # SMALL_ATOM_EXT
            b"\x83h\xffa\x01",  # SMALL_TUPLE_EXT
            b"\x83Z\xff\xffw\x01a\x00\x00\x00\x01\x00\x00\x00\x01",  # NEWER_REFERENCE_EXT
            b"\x83r\xff\xffw\x01a\x01\x00\x00\x00\x01",  # NEW_REFERENCE_EXT
            b"\x83p" + big + b"\x00" * 40,  # NEW_FUN_EXT
            b"\x83u" + big + b"a\x01" * 8,  # FUN_EXT
            b"\x83P" + big + zlib.compress(b"a\x01"),  # COMPRESSED, over the limit
            b"\x83P\x00\x00\x00\x05" + zlib.compress(b"a\x01"),  # inflates short
            b"\x83P\x00\x00\x00\x01" + zlib.compress(b"a\x01"),  # inflates long
            b"\x83P\x00\x00\x00\x00" + zlib.compress(b""),  # empty
            b"\x83P\x00\x00\x00\x02" + b"not zlib",
            b"\x83P\x00\x00\x00\x02" + zlib.compress(b"a\x01")[:-1],  # no checksum
        ):
            self.assertRaises(EtfError, decode, data)

    def test_badFields(self) -> None:
        """
        Fields Erlang refuses are refused.
        """
        for hexed in (
            "8346 7FF8000000000000",  # NaN
            "8346 7FF0000000000000",  # infinity
            "8363" + "6E616E".ljust(62, "0"),  # FLOAT_EXT "nan"
            "8363" + "78".ljust(62, "0"),  # FLOAT_EXT not a number
            "8377 01FF",  # invalid UTF-8 atom
            "8376 0100" + "61" * 256,  # atom of 256 characters
            "834D 00000000 03",  # empty bitstring with bits
            "834D 00000001 00 FF",  # no bits in the last byte
            "834D 00000001 09 FF",  # 9 bits in the last byte
            "8374 00000002 6101 6102 6101 6103",  # duplicate map keys
            "8374 00000002 6101 6102 46 3FF0000000000000 6103",  # 1 and 1.0 merge
            "8374 00000001 7400000000 6101",  # a map as a map key
            "8358 6101 00000001 00000000 00000001",  # pid node not an atom
            "8358 5877 0161 00000001 00000000 00000001",  # pid as a pid's node
            "8371 6101 7701 66 6101",  # export module not an atom
            "8371 7701 6D 7701 66 7701 61",  # export arity not an integer
            "8371 7701 6D 7701 66 62FFFFFFFF",  # negative arity
            "8370 00000002",  # NEW_FUN_EXT size smaller than its field
        ):
            data = bytes.fromhex(hexed.replace(" ", ""))
            self.assertRaises(EtfError, decode, data)

    def test_depth(self) -> None:
        """
        Terms nested up to L{MAX_DEPTH} containers decode; deeper ones are
        refused with L{EtfError}, however deep they are.
        """
        for opener, closer in (
            (b"h\x01", b""),
            (b"l\x00\x00\x00\x01", b"j"),
            (b"t\x00\x00\x00\x01a\x01", b""),
        ):
            ok = b"\x83" + opener * MAX_DEPTH + b"a\x07" + closer * MAX_DEPTH
            decode(ok)
            deeper = b"\x83" + opener * (MAX_DEPTH + 1) + b"a\x07" + closer * (MAX_DEPTH + 1)
            self.assertRaises(EtfError, decode, deeper)
            self.assertRaises(EtfError, decode, b"\x83" + opener * 100_000)
        # improper-list tails count as nesting too
        self.assertRaises(EtfError, decode, b"\x83" + b"l\x00\x00\x00\x01a\x01" * 100_000)

    def test_encodeDepth(self) -> None:
        """
        The encoder has the same limit, so cycles are refused too.
        """
        term: Any = 7
        for _ in range(MAX_DEPTH):
            term = (term,)
        self.assertEqual(decode(encode(term)), term)
        self.assertRaises(EtfError, encode, [term])
        cycle: list[Any] = [1]
        cycle.append(cycle)
        self.assertRaises(EtfError, encode, cycle)
        loop: dict[Any, Any] = {}
        loop[1] = loop
        self.assertRaises(EtfError, encode, loop)

    def test_encodeErrors(self) -> None:
        """
        What has no Erlang equivalent, or has a field out of range, raises
        L{EtfError}.
        """
        for bad in (
            math.nan,
            math.inf,
            -math.inf,
            object(),
            {1, 2},
            Atom("a" * 256),
            Atom("\ud800"),
            BitBinary(b"", 3),
            BitBinary(b"a", 0),
            BitBinary(b"a", 9),
            Export(Atom("m"), Atom("f"), 256),
            Export(Atom("m"), Atom("f"), -1),
            Export(Atom("m"), 5, 1),  # type: ignore[arg-type]
            Reference(NODE_X, 1, (1, 2, 3, 4, 5, 6)),
            Reference(NODE_X, 1, (-1,)),
            Reference(NODE_X, 2**32, (1,)),
            Pid(NODE_X, -1, 0, 0),
            Pid(NODE_X, 2**32, 0, 0),
            Pid(5, 1, 0, 0),  # type: ignore[arg-type]
            Port(NODE_X, 2**64, 0),
            Port(NODE_X, -1, 0),
            Fun(b""),
            Fun(b"a\x01"),
            ImproperList((), 5),
            [1, math.nan],
            {1: object()},
        ):
            self.assertRaises(EtfError, encode, bad)
            self.assertRaises(EtfError, encode_term, bad)


class ErlangInteropTests(SynchronousTestCase):
    """
    Real Erlang reads what we write.
    """

    def test_binaryToTerm(self) -> None:
        """
        One C{erl} reads a batch of our encodings with C{binary_to_term/1},
        prints one back with C{~w} and re-encodes every term: the bytes it
        produces are ours.
        """
        erl = requireProgram("erl")
        node = Atom("vernemq@host-1")
        pid = Pid(node, 4711, 3, 1795699750)
        samples = [
            (Atom("vmq_msg"), b"topic/a/b", PAYLOAD_64, 1, False, {}),
            (
                Atom("$gen_call"),
                (pid, Reference(node, 7, (1, 2, 3))),
                (Atom("call"), Atom("lists"), Atom("reverse"), [[1, 2, 3]], pid),
            ),
            [ImproperList((Atom("alias"),), Reference(node, 7, (1, 2, 3, 4, 5))), None, True],
            (2**2100, -(2**70), -123456, 3.25, -0.0, 1e-300),
            (BitBinary(b"\xab\xc0", 3), b"", b"\x00" * 300, (0,) * 300),
            {Atom("a"): "héllo€", Atom("b"): [1000], Atom("😀"): Atom("é" * 255)},
            (Port(node, 2**40, 9), Port(node, 5, 9), Export(Atom("lists"), Atom("reverse"), 1)),
            ImproperList((1, 2), 3),
            [b"abc"] * 100,
        ]
        encodings = [encode(t) for t in samples] + [encode([b"abc"] * 100, compressed=True)]
        hexes = ", ".join(f'<<"{e.hex().upper()}">>' for e in encodings)
        shown = encode((Atom("ok"), ImproperList((1, 2), 3), b"hi", 2.5)).hex().upper()
        program = (
            "[begin T = binary_to_term(binary:decode_hex(H)), "
            'io:format("~s~n", [binary:encode_hex(term_to_binary(T, [{minor_version, 2}]))]) '
            f"end || H <- [{hexes}]], "
            f'io:format("~w~n", [binary_to_term(binary:decode_hex(<<"{shown}">>))]), halt().'
        )
        result = subprocess.run(
            [erl, "-noshell", "-start_epmd", "false", "-eval", program],
            capture_output=True,
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.decode("utf-8").splitlines()
        expected = [e.hex().upper() for e in encodings[:-1]]
        expected.append(encodings[-2].hex().upper())  # erl re-encodes uncompressed
        self.assertEqual(lines[:-1], expected)
        self.assertEqual(lines[-1], "{ok,[1,2|3],<<104,105>>,2.5}")
