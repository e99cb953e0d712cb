# -*- test-case-name: tests.test_dist_connection -*-
"""
The distribution wire format around the terms, sans-IO.

    - During the handshake every packet is C{Len:u16 | bytes}; afterwards
      C{Len:u32 | bytes}.  A zero-length connected-phase packet is a tick.
      L{PacketDecoder} splits a byte stream into packets and can switch
      header size between two packets (the handshake's last packet may
      arrive in the same chunk as the first message).
    - A connected-phase message is a pass-through packet:
      C{112 ('p') | 131 Control | [131 Message]} (L{encodePassThrough},
      L{decodePassThrough}); the atom cache header (C{131, 68}) is never
      negotiated, so never accepted.
"""

from __future__ import annotations

import struct
from typing import Any

from vernemq.dist.etf import decode_many, encode

#: The largest connected-phase packet accepted by default (bytes).
DEFAULT_MAX_PACKET = 64 * 1024 * 1024

#: The zero-length connected-phase packet.
TICK = b"\x00\x00\x00\x00"

_PASS_THROUGH = 112
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class FramingError(Exception):
    """The byte stream is not framed as the protocol says."""


class PacketTooLarge(FramingError):
    """A packet announced more bytes than the limit allows."""


class PacketDecoder:
    """
    Split a byte stream into C{Len}-prefixed packets.

    @ivar headerSize: 2 during the handshake, 4 afterwards.
    @ivar maxLength: the largest packet accepted.
    """

    def __init__(self, headerSize: int = 2, maxLength: int = DEFAULT_MAX_PACKET) -> None:
        self.headerSize = headerSize
        self.maxLength = maxLength
        self._buffer = bytearray()
        self._offset = 0

    def feed(self, data: bytes) -> None:
        """Add bytes received."""
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    def next(self) -> bytes | None:
        """
        The next whole packet's payload, or L{None} if it is not all here.

        @raise PacketTooLarge: the next packet is longer than L{maxLength}.
        """
        buffer, offset, size = self._buffer, self._offset, self.headerSize
        if len(buffer) - offset < size:
            self._compact()
            return None
        if size == 4:
            (length,) = _U32.unpack_from(buffer, offset)
        else:
            (length,) = _U16.unpack_from(buffer, offset)
        if length > self.maxLength:
            raise PacketTooLarge(f"packet of {length} bytes exceeds the limit of {self.maxLength}")
        end = offset + size + length
        if len(buffer) < end:
            self._compact()
            return None
        packet = bytes(buffer[offset + size : end])
        self._offset = end
        return packet

    def _compact(self) -> None:
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0

    def pending(self) -> int:
        """How many bytes are buffered and not yet returned."""
        return len(self._buffer) - self._offset


def frame2(packet: bytes) -> bytes:
    """A handshake packet with its u16 length."""
    if len(packet) > 0xFFFF:
        raise ValueError("handshake packet longer than 65535 bytes")
    return _U16.pack(len(packet)) + packet


def frame4(payload: bytes) -> bytes:
    """A connected-phase packet with its u32 length."""
    return _U32.pack(len(payload)) + payload


class _NoMessage:
    """The absence of a message term (a control message that carries none)."""

    def __repr__(self) -> str:
        return "NO_MESSAGE"


#: Passed as C{message} for control messages that carry no message term.
NO_MESSAGE: Any = _NoMessage()


def encodePassThrough(control: tuple[Any, ...], message: Any = NO_MESSAGE) -> bytes:
    """
    The framed pass-through packet for C{control} (and C{message}).
    """
    parts = [encode(control)]
    if message is not NO_MESSAGE:
        parts.append(encode(message))
    body = b"".join(parts)
    return _U32.pack(len(body) + 1) + b"p" + body


def decodePassThrough(packet: bytes) -> tuple[tuple[Any, ...], Any]:
    """
    C{(control, message)} of a non-empty connected-phase packet; the
    message is L{NO_MESSAGE} when absent.

    @raise FramingError: not a pass-through packet, or not one control
        tuple and at most one message term.
    @raise vernemq.dist.etf.EtfError: a term does not decode.
    """
    if packet[0] != _PASS_THROUGH:
        raise FramingError(f"expected a pass-through packet (112), got type {packet[0]}")
    terms = decode_many(packet[1:])
    if not 1 <= len(terms) <= 2:
        raise FramingError(f"pass-through packet holds {len(terms)} terms")
    control = terms[0]
    if not isinstance(control, tuple) or not control or type(control[0]) is not int:
        raise FramingError(f"control message is not a tuple with an operation: {control!r:.80}")
    return control, terms[1] if len(terms) == 2 else NO_MESSAGE
