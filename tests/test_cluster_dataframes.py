# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.cluster.dataframes}, the byte format of the cluster data
channel (spec section 1.5).

The byte vectors were produced by OTP 25 (C{erl}): C{term_to_binary(T,
[{minor_version, 2}])} is what L{vernemq.dist.etf} emits (UTF-8 atoms), and
plain C{term_to_binary(T)} is what a VerneMQ node on OTP 25 emits (latin-1
atoms); the decoder takes both.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vernemq.cluster.datachannel import RoutedMessage
from vernemq.cluster.dataframes import (
    CONNECT,
    CONNECT_ACK,
    SEND,
    AckDecoder,
    Batch,
    ClusterFrameTooLarge,
    Hello,
    InboundDecoder,
    InvalidClusterFrame,
    InvalidHello,
    InvalidItem,
    OutgoingBatch,
    PlainMsgEncoder,
    decode_items,
    encode_frame,
    encode_hello,
    encode_item,
    encode_msg_item,
)
from vernemq.dist.etf import Atom, decode, encode

# ``vmq-connect`` hello of VerneMQ@127.0.0.1, minor_version 2 (ours).
HELLO_V2 = bytes.fromhex("766d712d636f6e6e656374000000148377115665726e654d51403132372e302e302e31")
# The same hello as OTP 25's default term_to_binary (a VerneMQ node).
HELLO_OTP25 = bytes.fromhex(
    "766d712d636f6e6e65637400000015836400115665726e654d51403132372e302e302e31"
)
# One frame: a msg item then an enq item, minor_version 2.
FRAME_V2 = bytes.fromhex(
    "766d712d73656e64000001246d73670000006783680c7707766d715f6d73676d00000004726566"
    "316c000000026d00000001616d00000001626a6d0000000568656c6c6f770566616c736577056661"
    "6c736561016a770566616c7365770c7072656665725f6c6f63616c74000000007709756e646566696e"
    "6564656e71000000af836804770c656e71756575655f6d616e7968026a6d0000000263316c00000001"
    "6803770764656c697665726101680c7707766d715f6d73676d00000004726566316c000000026d0000"
    "0001616d00000001626a6d0000000568656c6c6f770566616c7365770566616c736561016a77056661"
    "6c7365770c7072656665725f6c6f63616c74000000007709756e646566696e65646a74000000017706"
    "7374617465736c0000000177066f6e6c696e656a"
)
# The same frame from an OTP 25 VerneMQ node.
FRAME_OTP25 = bytes.fromhex(
    "766d712d73656e64000001346d73670000006d83680c640007766d715f6d73676d00000004726566"
    "316c000000026d00000001616d00000001626a6d0000000568656c6c6f64000566616c7365640005"
    "66616c736561016a64000566616c736564000c7072656665725f6c6f63616c7400000000640009756e"
    "646566696e6564656e71000000b983680464000c656e71756575655f6d616e7968026a6d0000000263"
    "316c00000001680364000764656c697665726101680c640007766d715f6d73676d0000000472656631"
    "6c000000026d00000001616d00000001626a6d0000000568656c6c6f64000566616c736564000566"
    "616c736561016a64000566616c736564000c7072656665725f6c6f63616c7400000000640009756e64"
    "6566696e65646a74000000016400067374617465736c000000016400066f6e6c696e656a"
)
# A pre-MQTT5 (10-element) vmq_msg record with a mountpoint, OTP 25.
FRAME_LEGACY = bytes.fromhex(
    "766d712d73656e64000000576d73670000005083680a640007766d715f6d73676d00000001726c00"
    "0000026d000000006d00000001786a6d000000006400047472756564000566616c736561006b0002"
    "6d7064000566616c736564000672616e646f6d"
)

MSG = RoutedMessage("a/b", b"hello", qos=1, msg_ref=b"ref1")
ENQ = (
    Atom("enqueue_many"),
    ("", b"c1"),
    [(Atom("deliver"), 1, MSG.to_term())],
    {Atom("states"): [Atom("online")]},
)

#: The terms as the decoder gives them back (atoms for booleans, lists for
#: Erlang strings).
MSG_BACK = decode(encode(MSG.to_term()))
ENQ_BACK = decode(encode(ENQ))


def chunks(data: bytes, size: int) -> list[bytes]:
    """C{data} cut in pieces of C{size} bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def feed_all(decoder: InboundDecoder, pieces: list[bytes]) -> list[Any]:
    """Feed pieces one by one, collecting every event."""
    out: list[Any] = []
    for piece in pieces:
        out.extend(decoder.events(piece))
    return out


class EncodeTests(SynchronousTestCase):
    """
    Encoding is byte-exact with what OTP writes.
    """

    def test_hello(self) -> None:
        """
        The hello is C{vmq-connect}, a u32 length and term_to_binary of the
        node name atom.
        """
        self.assertEqual(encode_hello("VerneMQ@127.0.0.1"), HELLO_V2)

    def test_frame(self) -> None:
        """
        A frame is C{vmq-send}, a u32 length and the items, each a 3-byte
        tag, a u32 length and term_to_binary of the term; a
        L{RoutedMessage} is VerneMQ's 12-element C{#vmq_msg{}}.
        """
        frame = encode_frame([encode_item("msg", MSG.to_term()), encode_item("enq", ENQ)])
        self.assertEqual(frame, FRAME_V2)

    def test_badTag(self) -> None:
        """
        A tag must be three ASCII characters.
        """
        self.assertRaises(ValueError, encode_item, "ms", 1)
        self.assertRaises(ValueError, encode_item, "msgs", 1)
        self.assertRaises(ValueError, encode_item, "mé", 1)

    def test_unencodable(self) -> None:
        """
        A term without an Erlang form raises C{ValueError}.
        """
        self.assertRaises(ValueError, encode_item, "msg", object())

    def test_ack(self) -> None:
        """
        The ack is the 15 ASCII bytes C{vmq-connect-ack}.
        """
        self.assertEqual(CONNECT_ACK, b"vmq-connect-ack")
        self.assertEqual((CONNECT, SEND), (b"vmq-connect", b"vmq-send"))


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


class FastPathTests(SynchronousTestCase):
    """
    The C{msg} fast paths (L{encode_msg_item}, and the hand-written record
    reader inside L{decode_items}) are byte for byte and term for term the
    generic codec.
    """

    @given(
        topic=_TEXT,
        payload=st.binary(max_size=40),
        qos=st.sampled_from([0, 1, 2]),
        retain=st.booleans(),
        dup=st.booleans(),
        persisted=st.booleans(),
        mountpoint=_TEXT,
        ref=st.binary(max_size=20),
        policy=st.sampled_from(["prefer_local", "random", "local_only"]),
        extra=st.sampled_from(
            [({}, None), ({Atom("p_content_type"): b"t"}, None), ({}, (Atom("expire_after"), 7))]
        ),
    )
    def test_sameAsGeneric(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        persisted: bool,
        mountpoint: str,
        ref: bytes,
        policy: str,
        extra: Any,
    ) -> None:
        props, expiry = extra
        routed = RoutedMessage(
            topic, payload, qos, retain, mountpoint, dup, ref, persisted, policy, props, expiry
        )
        wire = encode_item("msg", routed.to_term())
        item = encode_msg_item(
            ref,
            topic,
            payload,
            retain,
            dup,
            qos,
            mountpoint,
            persisted,
            policy,
            props or None,
            expiry,
        )
        self.assertEqual(item.wire, wire)
        self.assertEqual(tuple(item), ("msg", decode(wire[7:])))
        [(tag, term)] = decode_items(wire + wire[:0]).items
        generic = decode(wire[7:])
        self.assertEqual(term, generic)
        self.assertEqual([type(x) for x in term], [type(x) for x in generic])
        self.assertEqual(
            [type(x) for x in term[2] + term[7]], [type(x) for x in generic[2] + generic[7]]
        )


class PlainMsgEncoderTests(SynchronousTestCase):
    """
    L{PlainMsgEncoder} writes what L{encode_msg_item} writes, with
    references that never repeat.
    """

    @given(
        messages=st.lists(
            st.tuples(
                _TEXT, st.binary(max_size=300), st.sampled_from([0, 1, 2]), st.booleans(), _TEXT
            ),
            max_size=6,
        )
    )
    def test_sameAsEncodeMsgItem(self, messages: list[Any]) -> None:
        encoder = PlainMsgEncoder(b"8 bytes!")
        refs = set()
        for topic, payload, qos, retain, mountpoint in messages:
            item = encoder.encode(topic, payload, qos, retain, mountpoint)
            ref = decode(item.wire[7:])[1]
            refs.add(ref)
            expected = encode_msg_item(
                ref,
                topic,
                payload,
                retain,
                False,
                qos,
                mountpoint,
                False,
                "prefer_local",
                None,
                None,
            )
            self.assertEqual(item.wire, expected.wire)
            self.assertEqual(ref[:8], b"8 bytes!")
        self.assertEqual(len(refs), len(messages))
        self.assertNotIn(encoder.next_ref(), refs)


_RECORD = st.tuples(
    st.sampled_from(["a/b", "a/c", "sensors/é/1", "x"]),
    st.binary(max_size=20),
    st.sampled_from([0, 1, 2]),
    st.booleans(),
    st.sampled_from(["", "mp", "é"]),
    st.sampled_from([({}, None), ({Atom("p_content_type"): b"t"}, None)]),
)


class PlainFrameTests(SynchronousTestCase):
    """
    A frame of many C{msg} records (topics, flags and shapes mixed, as the
    hand reader's caches see them) decodes record for record as the
    generic decoder reads it, and a C{plain} factory gets the fields of
    exactly the plain ones, in order.
    """

    @given(records=st.lists(_RECORD, min_size=1, max_size=12))
    def test_mixedFrame(self, records: list[Any]) -> None:
        wires = []
        for i, (topic, payload, qos, retain, mountpoint, (props, expiry)) in enumerate(records):
            routed = RoutedMessage(
                topic,
                payload,
                qos,
                retain,
                mountpoint,
                False,
                b"r%d" % i,
                False,
                "prefer_local",
                props,
                expiry,
            )
            wires.append(encode_item("msg", routed.to_term()))
        body = b"".join(wires)
        generic = [decode(w[7:]) for w in wires]
        self.assertEqual([term for _, term in decode_items(body).items], generic)

        made: list[Any] = []

        def plain(topic: str, payload: bytes, retain: bool, qos: int, mountpoint: str) -> Any:
            made.append((topic, payload, retain, qos, mountpoint))
            return ("plain", len(made) - 1)

        items = decode_items(body, plain=plain).items
        expected = []
        for (topic, payload, qos, retain, mountpoint, (props, _)), term, (tag, got) in zip(
            records, generic, items, strict=True
        ):
            self.assertEqual(tag, "msg")
            if not props and mountpoint.isascii():
                self.assertEqual(got, ("plain", len(expected)))
                expected.append((topic, payload, retain, qos, mountpoint))
            else:
                self.assertEqual(got, term)
        self.assertEqual(made, expected)

    def test_plainDecoder(self) -> None:
        """
        L{InboundDecoder} hands its C{plain} factory to every frame.
        """
        routed = RoutedMessage("a/b", b"hi", 1, True, "")
        frame = encode_frame([encode_item("msg", routed.to_term())])
        decoder = InboundDecoder(plain=lambda *fields: fields)
        (_, batch) = decoder.events(encode_hello("a@h") + frame)
        self.assertEqual(batch.items, [("msg", ("a/b", b"hi", True, 1, ""))])


class OutgoingBatchTests(SynchronousTestCase):
    """
    L{OutgoingBatch} keeps order, counts bytes and cuts frames.
    """

    def test_pendingBytes(self) -> None:
        """
        C{append} returns the bytes held; C{clear} forgets them.
        """
        batch = OutgoingBatch()
        self.assertEqual(batch.append(b"x" * 10), 10)
        self.assertEqual(batch.append(b"y" * 5), 15)
        self.assertEqual(len(batch), 2)
        self.assertEqual(batch.clear(), 15)
        self.assertEqual((len(batch), batch.pending_bytes), (0, 0))

    def test_oneFrame(self) -> None:
        """
        Items that fit make one frame, in order.
        """
        batch = OutgoingBatch()
        items = [encode_item("msg", i) for i in range(3)]
        for item in items:
            batch.append(item)
        self.assertEqual(batch.take_frames(1000), [encode_frame(items)])
        self.assertEqual(batch.take_frames(1000), [])
        self.assertEqual(batch.pending_bytes, 0)

    def test_split(self) -> None:
        """
        A frame is closed once it reaches the threshold (its last item may
        cross it), or before an item would take it past the limit.
        """
        batch = OutgoingBatch()
        small = [encode_item("msg", b"a" * 10) for _ in range(5)]  # 24 bytes each
        big = encode_item("msg", b"b" * 100)  # 114 bytes
        for item in small[:3] + [big] + small[3:]:
            batch.append(item)
        frames = batch.take_frames(40, limit=130)
        self.assertEqual(
            frames,
            [
                encode_frame(small[:2]),
                encode_frame(small[2:3]),
                encode_frame([big]),
                encode_frame(small[3:]),
            ],
        )
        events: Any = InboundDecoder().events(HELLO_V2 + b"".join(frames))
        terms = [item[1] for event in events[1:] for item in event.items]
        self.assertEqual(terms, [b"a" * 10] * 3 + [b"b" * 100] + [b"a" * 10] * 2)

    def test_crossThreshold(self) -> None:
        """
        Items that reach the threshold only with the last one make one frame.
        """
        batch = OutgoingBatch()
        items = [encode_item("msg", b"a" * 10) for _ in range(3)]
        for item in items:
            batch.append(item)
        self.assertEqual(batch.take_frames(49), [encode_frame(items)])


class InboundDecoderTests(SynchronousTestCase):
    """
    L{InboundDecoder}: the hello, then frames, in any chunking.
    """

    def test_everyChunkSize(self) -> None:
        """
        The OTP 25 hello and frames decode the same whatever the chunk size,
        from one byte to the whole stream.
        """
        stream = HELLO_OTP25 + FRAME_OTP25 + FRAME_V2 + FRAME_LEGACY
        expected = [
            Hello(Atom("VerneMQ@127.0.0.1")),
            Batch([("msg", MSG_BACK), ("enq", ENQ_BACK)], [], len(FRAME_OTP25)),
            Batch([("msg", MSG_BACK), ("enq", ENQ_BACK)], [], len(FRAME_V2)),
        ]
        for size in range(1, len(stream) + 1):
            events = feed_all(InboundDecoder(), chunks(stream, size))
            self.assertEqual(events[:3], expected, f"chunk size {size}")
            self.assertEqual(len(events), 4)
        self.assertIsInstance(events[0].node, Atom)
        self.assertEqual(RoutedMessage.from_term(events[1].items[0][1]), MSG)

    def test_legacyRecord(self) -> None:
        """
        A 10-element pre-MQTT5 C{#vmq_msg{}} reads with empty properties;
        its mountpoint (an Erlang string) and empty topic words survive.
        """
        batch: Any
        (batch,) = InboundDecoder().events(HELLO_V2 + FRAME_LEGACY)[1:]
        ((tag, term),) = batch.items
        self.assertEqual(tag, "msg")
        msg = RoutedMessage.from_term(term)
        self.assertEqual(
            msg,
            RoutedMessage("/x", b"", 0, True, "mp", False, b"r", False, "random", {}, None),
        )

    def test_eventsOneAtATime(self) -> None:
        """
        L{InboundDecoder.next_event} stops after the hello, so a refused
        peer's frames are never parsed.
        """
        decoder = InboundDecoder()
        decoder.feed(HELLO_V2 + b"junk")
        self.assertEqual(decoder.next_event(), Hello(Atom("VerneMQ@127.0.0.1")))
        self.assertEqual(decoder.buffered, 4)
        self.assertRaises(InvalidClusterFrame, decoder.next_event)

    def test_partial(self) -> None:
        """
        Truncated input gives no event and keeps the bytes.
        """
        decoder = InboundDecoder()
        self.assertEqual(decoder.events(HELLO_V2[:-1]), [])
        self.assertEqual(
            decoder.events(HELLO_V2[-1:] + FRAME_V2[:-1]), [Hello(Atom("VerneMQ@127.0.0.1"))]
        )
        self.assertEqual(decoder.buffered, len(FRAME_V2) - 1)
        self.assertEqual(len(decoder.events(FRAME_V2[-1:])), 1)
        self.assertEqual(decoder.buffered, 0)

    def test_junkBeforeHello(self) -> None:
        """
        The first byte that cannot start C{vmq-connect} is refused.
        """
        self.assertRaises(InvalidClusterFrame, InboundDecoder().events, b"G")
        self.assertRaises(InvalidClusterFrame, InboundDecoder().events, b"vmq-send")
        self.assertEqual(InboundDecoder().events(b"vmq-conn"), [])

    def test_junkAfterHello(self) -> None:
        """
        After the hello, anything but C{vmq-send} is refused, also a second
        hello.
        """
        for junk in (b"x", b"vmq-sex", HELLO_V2):
            decoder = InboundDecoder()
            decoder.events(HELLO_V2)
            self.assertRaises(InvalidClusterFrame, decoder.events, junk)

    def test_oversize(self) -> None:
        """
        A frame longer than the cap is refused as soon as its header is in.
        """
        decoder = InboundDecoder(max_frame=100)
        decoder.events(HELLO_V2)
        self.assertEqual(decoder.events(SEND + struct.pack(">I", 100)[:3]), [])
        e = self.assertRaises(ClusterFrameTooLarge, decoder.events, b"\x65")
        self.assertEqual(e.reason, "cluster_frame_too_large")
        at_cap = InboundDecoder(max_frame=100)
        at_cap.events(HELLO_V2)
        self.assertEqual(at_cap.events(SEND + struct.pack(">I", 100)), [])

    def test_badHello(self) -> None:
        """
        A hello that is not one atom, or is far too long, is refused.
        """
        for payload in (encode(b"bin"), b"\x83", b"junk"):
            e = self.assertRaises(
                InvalidHello,
                InboundDecoder().events,
                CONNECT + struct.pack(">I", len(payload)) + payload,
            )
            self.assertEqual(e.reason, "invalid_node_name")
        self.assertRaises(InvalidHello, InboundDecoder().events, CONNECT + struct.pack(">I", 1025))

    def test_unknownTag(self) -> None:
        """
        Items with an unknown tag are skipped and reported.
        """
        body = b"new" + struct.pack(">I", 2) + b"??" + encode_item("msg", 1)
        batch = decode_items(body)
        self.assertEqual(batch.items, [("msg", 1)])
        self.assertEqual(batch.unknown, ["new"])

    def test_badItems(self) -> None:
        """
        Items that overrun their frame, stray bytes, undecodable terms,
        trailing bytes and a missing version byte are refused.
        """
        good = encode_item("msg", 1)
        cases = [
            good[:-1],  # overruns
            good + b"ms",  # stray bytes
            b"msg" + struct.pack(">I", 2) + b"\x83\xff",  # bad term
            b"msg" + struct.pack(">I", 4) + b"\x83a\x01\x00",  # trailing byte
            b"msg" + struct.pack(">I", 2) + b"a\x01",  # no version byte
            b"enq" + struct.pack(">I", 0),  # empty
        ]
        for body in cases:
            e = self.assertRaises(InvalidItem, decode_items, body)
            self.assertEqual(e.reason, "invalid_cluster_item")
            decoder = InboundDecoder()
            decoder.events(HELLO_V2)
            self.assertRaises(
                InvalidItem, decoder.events, SEND + struct.pack(">I", len(body)) + body
            )

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["msg", "enq"]),
                st.one_of(st.binary(max_size=40), st.integers(), st.text(max_size=8)),
            ),
            max_size=12,
        ),
        st.integers(min_value=1, max_value=64),
        st.integers(min_value=8, max_value=200),
        st.integers(min_value=60, max_value=300),
    )
    def test_roundTrip(
        self, items: list[tuple[str, Any]], size: int, threshold: int, limit: int
    ) -> None:
        """
        Whatever the items, frame split and chunking, the receiver gets the
        items back in order.
        """
        batch = OutgoingBatch()
        for tag, term in items:
            batch.append(encode_item(tag, term))
        frames = batch.take_frames(threshold, limit)
        for frame in frames:
            body = frame[12:]
            self.assertTrue(len(body) <= limit or len(decode_items(body).items) == 1)
        stream = HELLO_V2 + b"".join(frames)
        events: Any = feed_all(InboundDecoder(), chunks(stream, size))
        got = [item for event in events[1:] for item in event.items]
        expected = [(tag, list(map(ord, t)) if isinstance(t, str) else t) for tag, t in items]
        self.assertEqual(got, expected)


class AckDecoderTests(SynchronousTestCase):
    """
    L{AckDecoder} waits for C{vmq-connect-ack} and nothing else.
    """

    def test_everyChunkSize(self) -> None:
        """
        The ack is recognised in any chunking.
        """
        for size in range(1, len(CONNECT_ACK) + 1):
            decoder = AckDecoder()
            results = [decoder.feed(piece) for piece in chunks(CONNECT_ACK, size)]
            self.assertEqual(results[-1], True)
            self.assertNotIn(True, results[:-1])

    def test_junk(self) -> None:
        """
        Junk, or anything after the ack, is refused (the link is one-way).
        """
        self.assertRaises(InvalidClusterFrame, AckDecoder().feed, b"vmq-connect-ACK")
        self.assertRaises(InvalidClusterFrame, AckDecoder().feed, CONNECT_ACK + b"x")
        decoder = AckDecoder()
        decoder.feed(CONNECT_ACK)
        self.assertRaises(InvalidClusterFrame, decoder.feed, b"x")
        self.assertTrue(decoder.feed(b""))


class RoutedMessageTests(SynchronousTestCase):
    """
    L{RoutedMessage} and its C{#vmq_msg{}} term form.
    """

    def test_roundTrip(self) -> None:
        """
        A message survives encode, decode and L{RoutedMessage.from_term}.
        """
        msg = RoutedMessage(
            "a/b/",
            b"p",
            2,
            True,
            "mp",
            True,
            b"ref",
            True,
            "random",
            {Atom("p_content_type"): b"text/plain"},
            (Atom("expire_after"), 30),
        )
        stream = HELLO_V2 + encode_frame([encode_item(*msg.to_item())])
        batch: Any
        (batch,) = InboundDecoder().events(stream)[1:]
        self.assertEqual(RoutedMessage.from_term(batch.items[0][1]), msg)

    def test_newerRecord(self) -> None:
        """
        Extra trailing elements (a newer peer) are ignored.
        """
        term = MSG.to_term() + (Atom("future"),)
        self.assertEqual(RoutedMessage.from_term(term), MSG)

    def test_notARecord(self) -> None:
        """
        Anything else raises C{ValueError}.
        """
        good = MSG.to_term()
        for term in (
            1,
            (Atom("other"),) + good[1:],
            good[:11],
            good[:2] + ([1],) + good[3:],
            good[:3] + ("text",) + good[4:],
            good[:6] + (3,) + good[7:],
            good[:10] + ([],) + good[11:],
        ):
            self.assertRaises(ValueError, RoutedMessage.from_term, term)
