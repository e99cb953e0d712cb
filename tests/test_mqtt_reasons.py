# mypy: disable-error-code="no-untyped-call"
"""
Tests for L{vernemq.mqtt.reasons}.

(trial's assertion methods are untyped, hence the mypy comment above.)
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from vernemq.mqtt.properties import PacketType
from vernemq.mqtt.reasons import (
    VALID_REASONS,
    ConnAckReturnCode,
    ReasonCode,
    connack_v3_return_code,
    suback_v3_return_code,
    valid_for,
)

P = PacketType

# The 43 distinct values of the MQTT 5.0 reason code table (section 2.4).
SPEC_VALUES = {
    0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93,
    0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
    0xA2,
}  # fmt: skip


class ReasonCodeTests(SynchronousTestCase):
    """L{ReasonCode} names every MQTT 5.0 reason code."""

    def test_every_value(self) -> None:
        """The enum's values are exactly the specification's."""
        self.assertEqual({int(code) for code in ReasonCode}, SPEC_VALUES)

    def test_aliases(self) -> None:
        """0x00 has its three names; they are the same member."""
        self.assertIs(ReasonCode.NORMAL_DISCONNECTION, ReasonCode.SUCCESS)
        self.assertIs(ReasonCode.GRANTED_QOS_0, ReasonCode.SUCCESS)
        self.assertEqual(ReasonCode(0x00), 0)

    def test_some_values(self) -> None:
        """A sample of names carry the specification's values."""
        self.assertEqual(ReasonCode.MALFORMED_PACKET, 0x81)
        self.assertEqual(ReasonCode.SESSION_TAKEN_OVER, 0x8E)
        self.assertEqual(ReasonCode.TOPIC_NAME_INVALID, 0x90)
        self.assertEqual(ReasonCode.PACKET_TOO_LARGE, 0x95)
        self.assertEqual(ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, 0xA2)


class ConnAckV3Tests(SynchronousTestCase):
    """v3 CONNACK return codes and the v5-to-v3 mapping."""

    def test_return_codes(self) -> None:
        """The MQTT 3.1.1 return codes are 0 to 5."""
        self.assertEqual([int(c) for c in ConnAckReturnCode], [0, 1, 2, 3, 4, 5])

    def test_mapping(self) -> None:
        """
        0x84 -> 1, 0x85 -> 2, 0x88/0x89 -> 3, 0x86 -> 4, 0x87 -> 5, and
        success stays 0.
        """
        expected = {0x00: 0, 0x84: 1, 0x85: 2, 0x88: 3, 0x89: 3, 0x86: 4, 0x87: 5}
        for reason, code in expected.items():
            self.assertEqual(connack_v3_return_code(reason), code)

    def test_other_failures_not_authorized(self) -> None:
        """Every other v5 CONNACK failure maps to 5 (not authorized)."""
        mapped = {0x84, 0x85, 0x86, 0x88, 0x89}
        for reason in VALID_REASONS[P.CONNACK] - mapped - {0}:
            self.assertEqual(connack_v3_return_code(reason), ConnAckReturnCode.NOT_AUTHORIZED)


class SubAckV3Tests(SynchronousTestCase):
    """SUBACK codes in v3."""

    def test_mapping(self) -> None:
        """Granted QoS stays; every failure becomes 0x80."""
        self.assertEqual([suback_v3_return_code(c) for c in (0, 1, 2)], [0, 1, 2])
        for reason in VALID_REASONS[P.SUBACK] - {0, 1, 2}:
            self.assertEqual(suback_v3_return_code(reason), 0x80)


class ValidReasonsTests(SynchronousTestCase):
    """Which reason codes each packet may carry."""

    def test_samples(self) -> None:
        """Samples from the specification's table."""
        self.assertEqual(VALID_REASONS[P.PUBREL], {0x00, 0x92})
        self.assertEqual(VALID_REASONS[P.AUTH], {0x00, 0x18, 0x19})
        self.assertEqual(
            VALID_REASONS[P.PUBACK], {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
        )
        self.assertTrue(valid_for(0x04, P.DISCONNECT))
        self.assertFalse(valid_for(0x04, P.CONNACK))
        self.assertTrue(valid_for(0x8E, P.DISCONNECT))
        self.assertFalse(valid_for(0x8E, P.SUBACK))

    def test_packets_without_reasons(self) -> None:
        """CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE and pings carry none."""
        for ptype in (P.CONNECT, P.PUBLISH, P.SUBSCRIBE, P.UNSUBSCRIBE, P.PINGREQ, P.PINGRESP):
            self.assertEqual(VALID_REASONS[ptype], frozenset())
            self.assertFalse(valid_for(0, ptype))

    def test_every_code_somewhere(self) -> None:
        """Every reason code is valid in at least one packet."""
        used = set().union(*VALID_REASONS.values())
        self.assertEqual(used, SPEC_VALUES)
