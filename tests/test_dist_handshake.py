"""
Tests for L{vernemq.dist.handshake}: the version 6 handshake machines,
byte-exact against captures from real Erlang/OTP 25.
"""

from __future__ import annotations

import hashlib
import struct

from twisted.trial.unittest import SynchronousTestCase

from vernemq.dist.handshake import (
    DFLAG_DIST_HDR_ATOM_CACHE,
    DFLAG_PUBLISHED,
    DFLAG_SPAWN,
    MANDATORY_FLAGS_25,
    MANDATORY_FLAGS_26,
    OUR_FLAGS,
    AcceptorHandshake,
    HandshakeError,
    InitiatorHandshake,
    SimultaneousConnect,
    digest,
    encodeChallenge,
    encodeChallengeReply,
    encodeSendName,
    missingFlagNames,
    splitNodeName,
)

#: What erl 25 (visible) offers.
ERL25_FLAGS = 0xD07DF7FBD


def acceptor(status: str = "ok", cookie: str = "C", challenge: int = 1000) -> AcceptorHandshake:
    return AcceptorHandshake("b@vm", cookie, 7, challenge, lambda name: status)


def initiator(cookie: str = "C", challenge: int = 2000, peer: str = "b@vm") -> InitiatorHandshake:
    return InitiatorHandshake("a@vm", cookie, 9, challenge, peer)


def run(a: InitiatorHandshake, b: AcceptorHandshake) -> None:
    """Exchange packets until neither side has anything to say."""
    toB = a.start()
    while toB:
        toA: list[bytes] = []
        for packet in toB:
            toA += b.receive(packet)
        toB = []
        for packet in toA:
            toB += a.receive(packet)


class WireFormatTests(SynchronousTestCase):
    """Packets are byte-exact with what OTP 25 sends."""

    def test_sendNameCapture(self) -> None:
        """C{erl -sname a} sent this send_name to a Python acceptor."""
        self.assertEqual(
            bytes.fromhex("4e0000000d07df7fbd6b071df100046140766d"),
            encodeSendName(ERL25_FLAGS, 0x6B071DF1, "a@vm"),
        )

    def test_challengeCapture(self) -> None:
        """C{b@vm} answered with this challenge."""
        self.assertEqual(
            bytes.fromhex("4e0000000d07df7fbd170648446b071dfb00046240766d"),
            encodeChallenge(ERL25_FLAGS, 0x17064844, 0x6B071DFB, "b@vm"),
        )

    def test_digestCookieFirst(self) -> None:
        """The digest is MD5 of the cookie then the decimal challenge."""
        self.assertEqual(hashlib.md5(b"secret4294967295").digest(), digest(0xFFFFFFFF, "secret"))
        self.assertEqual(hashlib.md5(b"C0").digest(), digest(0, "C"))

    def test_ourFlags(self) -> None:
        """
        We offer the recommended set: everything OTP 26 requires, SPAWN,
        PUBLISHED, and not the atom cache.
        """
        self.assertEqual(0x503074FBD, OUR_FLAGS)
        self.assertEqual(0x1070F94, MANDATORY_FLAGS_25)
        self.assertEqual(MANDATORY_FLAGS_26, OUR_FLAGS & MANDATORY_FLAGS_26)
        self.assertTrue(OUR_FLAGS & DFLAG_SPAWN and OUR_FLAGS & DFLAG_PUBLISHED)
        self.assertFalse(OUR_FLAGS & DFLAG_DIST_HDR_ATOM_CACHE)

    def test_missingFlagNames(self) -> None:
        """Missing mandatory flags are named as Erlang names them."""
        self.assertEqual([], missingFlagNames(ERL25_FLAGS))
        self.assertIn("BIG_CREATION", missingFlagNames(MANDATORY_FLAGS_25 & ~0x40000))

    def test_splitNodeName(self) -> None:
        """Node names are alive@host with both parts non-empty."""
        self.assertEqual(("py", "vm"), splitNodeName("py@vm"))
        for bad in ["py", "@vm", "py@", ""]:
            self.assertRaises(ValueError, splitNodeName, bad)


class HandshakeTests(SynchronousTestCase):
    """The two machines complete against each other, or refuse."""

    def test_complete(self) -> None:
        """Both sides learn the other's name, flags and creation."""
        a, b = initiator(), acceptor()
        run(a, b)
        assert a.result is not None and b.result is not None
        self.assertEqual(
            ("b@vm", 7, OUR_FLAGS), (a.result.peerName, a.result.peerCreation, a.result.flags)
        )
        self.assertEqual(("a@vm", 9), (b.result.peerName, b.result.peerCreation))

    def test_acceptorBytes(self) -> None:
        """
        The acceptor answers send_name with C{sok} and its challenge, and a
        correct reply with C{'a'} and the digest of the peer's challenge.
        """
        b = acceptor(challenge=0x17064844)
        out = b.receive(encodeSendName(ERL25_FLAGS, 0x6B071DF1, "a@vm"))
        self.assertEqual([b"sok", encodeChallenge(OUR_FLAGS, 0x17064844, 7, "b@vm")], out)
        reply = encodeChallengeReply(12345, digest(0x17064844, "C"))
        self.assertEqual([b"a" + digest(12345, "C")], b.receive(reply))
        assert b.result is not None
        self.assertEqual(OUR_FLAGS & ERL25_FLAGS, b.result.flags)
        self.assertEqual(0x6B071DF1, b.result.peerCreation)

    def test_flagsAnded(self) -> None:
        """The flags in use are the AND of both offers."""
        b = AcceptorHandshake("b@vm", "C", 7, 1, lambda name: "ok", flags=OUR_FLAGS | 0x80000)
        b.receive(encodeSendName(MANDATORY_FLAGS_25 | 0x80000, 1, "a@vm"))
        b.receive(encodeChallengeReply(5, digest(1, "C")))
        assert b.result is not None
        self.assertEqual(MANDATORY_FLAGS_25 | 0x80000, b.result.flags)

    def test_wrongCookieAcceptor(self) -> None:
        """A wrong digest is refused without an ack."""
        a, b = initiator(cookie="WRONG"), acceptor()
        with self.assertRaises(HandshakeError) as caught:
            run(a, b)
        self.assertIn("invalid challenge reply", caught.exception.reason)
        self.assertIsNone(caught.exception.reply)
        self.assertIsNone(b.result)

    def test_wrongAck(self) -> None:
        """The initiator refuses an ack that does not prove the cookie."""
        a = initiator()
        a.start()
        a.receive(b"sok")
        a.receive(encodeChallenge(OUR_FLAGS, 77, 1, "b@vm"))
        with self.assertRaises(HandshakeError):
            a.receive(b"a" + digest(2000, "WRONG"))
        self.assertIsNone(a.result)

    def test_missingMandatoryFlags(self) -> None:
        """
        A peer without the mandatory flags gets C{not_allowed}, as OTP 25
        answers; a challenge without them is refused.
        """
        b = acceptor()
        with self.assertRaises(HandshakeError) as caught:
            b.receive(encodeSendName(DFLAG_PUBLISHED, 1, "a@vm"))
        self.assertEqual(b"snot_allowed", caught.exception.reply)
        a = initiator()
        a.start()
        a.receive(b"sok")
        self.assertRaises(HandshakeError, a.receive, encodeChallenge(DFLAG_PUBLISHED, 1, 1, "b@vm"))

    def test_version5Refused(self) -> None:
        """An old C{'n'} send_name is refused, as OTP 25 does."""
        packet = b"n" + struct.pack(">HI", 5, 0x7FFFF) + b"a@vm"
        self.assertRaises(HandshakeError, acceptor().receive, packet)

    def test_badNames(self) -> None:
        """Names without C{@}, not UTF-8, or longer than the length are refused."""
        for name in [b"avm", b"\xff@vm"]:
            packet = struct.pack(">BQIH", 78, OUR_FLAGS, 1, len(name)) + name
            self.assertRaises(HandshakeError, acceptor().receive, packet)
        short = struct.pack(">BQIH", 78, OUR_FLAGS, 1, 10) + b"a@vm"
        self.assertRaises(HandshakeError, acceptor().receive, short)
        self.assertRaises(HandshakeError, acceptor().receive, b"N\x00")

    def test_extraBytesIgnored(self) -> None:
        """Trailing bytes after the name in send_name are ignored."""
        out = acceptor().receive(encodeSendName(OUR_FLAGS, 1, "a@vm") + b"extra")
        self.assertEqual(b"sok", out[0])

    def test_junkAfterCompletion(self) -> None:
        """A handshake packet after completion is an error."""
        a, b = initiator(), acceptor()
        run(a, b)
        self.assertRaises(HandshakeError, b.receive, b"sok")
        self.assertRaises(HandshakeError, a.receive, b"sok")

    def test_challengeFromWrongNode(self) -> None:
        """The challenge must carry the name of the node dialled."""
        a = initiator(peer="c@vm")
        a.start()
        a.receive(b"sok")
        self.assertRaises(HandshakeError, a.receive, encodeChallenge(OUR_FLAGS, 1, 1, "b@vm"))


class StatusTests(SynchronousTestCase):
    """The acceptor's status and what the initiator does with it."""

    def test_refusals(self) -> None:
        """C{nok} and C{not_allowed} are sent, then the acceptor closes."""
        for status in ["nok", "not_allowed"]:
            with self.assertRaises(HandshakeError) as caught:
                acceptor(status).receive(encodeSendName(OUR_FLAGS, 1, "a@vm"))
            self.assertEqual(b"s" + status.encode(), caught.exception.reply)

    def test_okSimultaneous(self) -> None:
        """C{ok_simultaneous} goes on like C{ok}."""
        a, b = initiator(), acceptor("ok_simultaneous")
        run(a, b)
        self.assertIsNotNone(a.result)

    def test_nokIsSimultaneous(self) -> None:
        """C{nok} tells the initiator the peer's own connection wins."""
        a = initiator()
        a.start()
        self.assertRaises(SimultaneousConnect, a.receive, b"snok")
        self.assertRaises(HandshakeError, initiator().receive, b"snot_allowed")
        self.assertRaises(HandshakeError, initiator().receive, b"sbogus")
        self.assertRaises(HandshakeError, initiator().receive, b"xok")

    def test_alive(self) -> None:
        """
        After C{alive} the initiator answers C{true}, and the acceptor then
        sends its challenge; C{false} ends it.
        """
        a, b = initiator(), acceptor("alive")
        run(a, b)
        self.assertIsNotNone(a.result)
        self.assertIsNotNone(b.result)
        b = acceptor("alive")
        self.assertEqual([b"salive"], b.receive(encodeSendName(OUR_FLAGS, 1, "a@vm")))
        self.assertRaises(HandshakeError, b.receive, b"sfalse")
        b = acceptor("alive")
        b.receive(encodeSendName(OUR_FLAGS, 1, "a@vm"))
        self.assertRaises(HandshakeError, b.receive, b"junk")

    def test_unknownStatus(self) -> None:
        """An arbiter returning nonsense is a programming error."""
        self.assertRaises(
            ValueError, acceptor("maybe").receive, encodeSendName(OUR_FLAGS, 1, "a@vm")
        )
