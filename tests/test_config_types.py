"""
Tests for L{vernemq.config.types}: every value parser, good and bad input.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import types as t
from vernemq.config.types import Address, ConfigValueError, HostPort


class FlagTests(SynchronousTestCase):
    """
    L{t.parse_flag}.
    """

    def test_onOff(self) -> None:
        """
        C{on} and C{off} (and C{true}/C{false}) become booleans.
        """
        self.assertIs(t.parse_flag("on"), True)
        self.assertIs(t.parse_flag("off"), False)
        self.assertIs(t.parse_flag("true"), True)
        self.assertIs(t.parse_flag("false"), False)

    def test_bad(self) -> None:
        """
        Anything else is rejected, quoting the value.
        """
        e = self.assertRaises(ConfigValueError, t.parse_flag, "yes")
        self.assertEqual(str(e), "expected on or off, got 'yes'")


class IntegerTests(SynchronousTestCase):
    """
    L{t.parse_integer}, L{t.bounded_integer}, L{t.parse_integer_or_infinity}.
    """

    def test_integer(self) -> None:
        """
        Decimal integers, negative ones included, are parsed.
        """
        self.assertEqual(t.parse_integer("20"), 20)
        self.assertEqual(t.parse_integer("-1"), -1)

    def test_notInteger(self) -> None:
        """
        Text, decimals and empty values are rejected.
        """
        for raw in ("abc", "1.5", "", "10k"):
            e = self.assertRaises(ConfigValueError, t.parse_integer, raw)
            self.assertEqual(str(e), f"expected an integer, got {raw!r}")

    def test_bounds(self) -> None:
        """
        A bounded integer rejects values outside its range, naming the bound.
        """
        parse = t.bounded_integer(-1, 10)
        self.assertEqual(parse("-1"), -1)
        self.assertEqual(parse("10"), 10)
        self.assertEqual(
            str(self.assertRaises(ConfigValueError, parse, "-2")), "must be at least -1, got -2"
        )
        self.assertEqual(
            str(self.assertRaises(ConfigValueError, parse, "11")), "must be at most 10, got 11"
        )

    def test_infinity(self) -> None:
        """
        C{infinity} means no limit and becomes C{None}; integers stay.
        """
        self.assertIsNone(t.parse_integer_or_infinity("infinity"))
        self.assertEqual(t.parse_integer_or_infinity("500"), 500)

    def test_infinityBad(self) -> None:
        """
        Negative numbers and other words are rejected.
        """
        e = self.assertRaises(ConfigValueError, t.parse_integer_or_infinity, "lots")
        self.assertEqual(str(e), "expected an integer or infinity, got 'lots'")
        self.assertRaises(ConfigValueError, t.parse_integer_or_infinity, "-5")


class DurationTests(SynchronousTestCase):
    """
    L{t.duration}.
    """

    def test_units(self) -> None:
        """
        Every cuttlefish unit converts to the key's unit.
        """
        ms = t.duration("ms")
        self.assertEqual(ms("100ms"), 100)
        self.assertEqual(ms("30s"), 30_000)
        self.assertEqual(ms("5m"), 300_000)
        self.assertEqual(ms("24h"), 86_400_000)
        self.assertEqual(ms("1d"), 86_400_000)
        self.assertEqual(ms("1w"), 604_800_000)
        self.assertEqual(ms("1f"), 1_209_600_000)
        seconds = t.duration("s")
        self.assertEqual(seconds("1w"), 604_800)
        self.assertEqual(seconds("1h30m"), 5400)

    def test_plainInteger(self) -> None:
        """
        A plain integer is already in the key's unit.
        """
        self.assertEqual(t.duration("s")("20"), 20)
        self.assertEqual(t.duration("ms")("5000"), 5000)

    def test_roundsUp(self) -> None:
        """
        A duration that is not a whole number of the unit rounds up, so a
        short non-zero timeout never becomes 0.
        """
        self.assertEqual(t.duration("s")("1500ms"), 2)
        self.assertEqual(t.duration("s")("1ms"), 1)

    def test_bad(self) -> None:
        """
        Unknown units, negative values and empty values are rejected.
        """
        seconds = t.duration("s")
        e = self.assertRaises(ConfigValueError, seconds, "10 parsecs")
        self.assertEqual(
            str(e),
            "expected a duration such as 100ms, 30s, 5m, 24h, 1d or 1w, got '10 parsecs'",
        )
        self.assertRaises(ConfigValueError, seconds, "-3")
        self.assertRaises(ConfigValueError, seconds, "")
        self.assertRaises(ConfigValueError, seconds, "5x")

    @given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
    def test_consistent(self, n: int, unit: str) -> None:
        """
        C{N<unit>} in milliseconds is N times the unit's length.
        """
        lengths = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
        lengths["d"] = 24 * lengths["h"]
        lengths["w"] = 7 * lengths["d"]
        self.assertEqual(t.duration("ms")(f"{n}{unit}"), n * lengths[unit])


class ByteSizeTests(SynchronousTestCase):
    """
    L{t.parse_bytesize} and L{t.parse_bytesize_or_infinity}.
    """

    def test_sizes(self) -> None:
        """
        Sizes are powers of 1024, as in cuttlefish; plain integers are bytes.
        """
        self.assertEqual(t.parse_bytesize("65536"), 65536)
        self.assertEqual(t.parse_bytesize("64KB"), 65536)
        self.assertEqual(t.parse_bytesize("1MB"), 1048576)
        self.assertEqual(t.parse_bytesize("2GB"), 2 * 1024**3)
        self.assertEqual(t.parse_bytesize("10mb"), 10 * 1048576)

    def test_bad(self) -> None:
        """
        Other units and text are rejected.
        """
        e = self.assertRaises(ConfigValueError, t.parse_bytesize, "1 parsec")
        self.assertEqual(str(e), "expected a byte size such as 65536, 64KB or 1MB, got '1 parsec'")
        self.assertRaises(ConfigValueError, t.parse_bytesize, "-1")

    def test_infinity(self) -> None:
        """
        The rotation size also takes C{infinity}.
        """
        self.assertIsNone(t.parse_bytesize_or_infinity("infinity"))
        self.assertEqual(t.parse_bytesize_or_infinity("10MB"), 10485760)
        self.assertRaises(ConfigValueError, t.parse_bytesize_or_infinity, "big")


class EnumTests(SynchronousTestCase):
    """
    L{t.enum}.
    """

    def test_enum(self) -> None:
        """
        Only the listed words are accepted, and the error lists them.
        """
        parse = t.enum("fifo", "lifo")
        self.assertEqual(parse("lifo"), "lifo")
        e = self.assertRaises(ConfigValueError, parse, "random")
        self.assertEqual(str(e), "expected one of fifo, lifo, got 'random'")


class ListTests(SynchronousTestCase):
    """
    Comma lists.
    """

    def test_protocolVersions(self) -> None:
        """
        C{3,4,5} becomes a tuple; spaces are allowed.
        """
        self.assertEqual(t.parse_protocol_versions("3,4,5"), (3, 4, 5))
        self.assertEqual(t.parse_protocol_versions("3, 4, 5, 131"), (3, 4, 5, 131))

    def test_unknownVersion(self) -> None:
        """
        A protocol level MQTT does not have is rejected by number.
        """
        e = self.assertRaises(ConfigValueError, t.parse_protocol_versions, "4,6")
        self.assertEqual(
            str(e),
            "unknown MQTT protocol version 6; expected a list drawn from 3, 4, 5, 131, 132",
        )

    def test_notAList(self) -> None:
        """
        Words and empty items are rejected.
        """
        self.assertRaises(ConfigValueError, t.parse_int_list, "3,,4")
        self.assertRaises(ConfigValueError, t.parse_int_list, "three")
        self.assertRaises(ConfigValueError, t.parse_string_list, "a,,b")
        self.assertEqual(t.parse_string_list("a, b"), ("a", "b"))

    def test_bufferSizes(self) -> None:
        """
        C{buffer_sizes} takes exactly three sizes.
        """
        self.assertEqual(t.parse_buffer_sizes("4096,16KB,32768"), (4096, 16384, 32768))
        self.assertRaises(ConfigValueError, t.parse_buffer_sizes, "4096,16384")


class AddressTests(SynchronousTestCase):
    """
    L{t.parse_ip_port} and L{t.parse_listener_address}.
    """

    def test_ipv4(self) -> None:
        """
        C{ip:port} gives a host and a port that unpack as a pair.
        """
        host, port = t.parse_ip_port("127.0.0.1:1883")
        self.assertEqual((host, port), ("127.0.0.1", 1883))
        self.assertEqual(t.parse_ip_port("localhost:6022"), HostPort("localhost", 6022))

    def test_ipv6(self) -> None:
        """
        IPv6 addresses are written in brackets and returned without them.
        """
        self.assertEqual(t.parse_ip_port("[::1]:1883"), HostPort("::1", 1883))
        self.assertEqual(t.parse_listener_address("[fe80::1]:8883"), Address("fe80::1", 8883))

    def test_ipv6WithoutBrackets(self) -> None:
        """
        An IPv6 address without brackets is ambiguous and rejected with a hint.
        """
        e = self.assertRaises(ConfigValueError, t.parse_ip_port, "::1:1883")
        self.assertIn("[::1]:1883", str(e))

    def test_unixSocket(self) -> None:
        """
        VerneMQ's C{local:/path:0} is a unix socket.
        """
        self.assertEqual(
            t.parse_listener_address("local:/var/run/vernemq.sock:0"),
            Address(None, None, "/var/run/vernemq.sock"),
        )

    def test_unixSocketBad(self) -> None:
        """
        A unix socket without its C{:0} suffix is rejected.
        """
        e = self.assertRaises(ConfigValueError, t.parse_listener_address, "local:/tmp/s")
        self.assertEqual(
            str(e), "expected local:/path/to/socket:0 for a unix socket, got 'local:/tmp/s'"
        )

    def test_bad(self) -> None:
        """
        Missing ports, bad ports and bad addresses are rejected.
        """
        for raw, reason in [
            ("127.0.0.1", "expected ip:port such as 127.0.0.1:1883, got '127.0.0.1'"),
            ("127.0.0.1:http", "expected a port number after ':', got '127.0.0.1:http'"),
            ("127.0.0.1:70000", "port must be between 0 and 65535, got 70000"),
            ("300.0.0.1:1883", "invalid IPv4 address '300.0.0.1'"),
            ("[::g]:1883", "invalid IPv6 address '::g'"),
            ("[::1]1883", "expected [IPv6]:port such as [::1]:1883, got '[::1]1883'"),
        ]:
            e = self.assertRaises(ConfigValueError, t.parse_listener_address, raw)
            self.assertEqual(str(e), reason)


class SpecialValueTests(SynchronousTestCase):
    """
    Parsers for single keys with their own syntax.
    """

    def test_persistentClientExpiration(self) -> None:
        """
        C{never} is C{None}; other values are seconds, with VerneMQ's month
        of 4 weeks and year of 12 such months.
        """
        parse = t.parse_persistent_client_expiration
        self.assertIsNone(parse("never"))
        self.assertEqual(parse("2h"), 7200)
        self.assertEqual(parse("1d"), 86400)
        self.assertEqual(parse("1w"), 604800)
        self.assertEqual(parse("1m"), 4 * 604800)
        self.assertEqual(parse("1y"), 48 * 604800)
        e = self.assertRaises(ConfigValueError, parse, "1s")
        self.assertIn("expected never or an integer followed by h, d, w, m or y", str(e))

    def test_maxLastWillDelay(self) -> None:
        """
        C{client} is C{None}; durations are seconds.
        """
        self.assertIsNone(t.parse_client_or_seconds("client"))
        self.assertEqual(t.parse_client_or_seconds("1h"), 3600)
        self.assertEqual(t.parse_client_or_seconds("90"), 90)
        self.assertRaises(ConfigValueError, t.parse_client_or_seconds, "server")

    def test_mountpoint(self) -> None:
        """
        C{off} means no mountpoint, C{""}.
        """
        self.assertEqual(t.parse_mountpoint("off"), "")
        self.assertEqual(t.parse_mountpoint("tenant1"), "tenant1")

    def test_paths(self) -> None:
        """
        A required path must not be empty; an optional one becomes C{None}.
        """
        self.assertEqual(t.parse_path("./data"), "./data")
        self.assertRaises(ConfigValueError, t.parse_path, "")
        self.assertIsNone(t.parse_optional_path(""))
        self.assertEqual(t.parse_optional_path("/etc/cert.pem"), "/etc/cert.pem")

    def test_rotationKeep(self) -> None:
        """
        C{current} keeps only the current file, 0 rotated ones.
        """
        self.assertEqual(t.parse_rotation_keep("current"), 0)
        self.assertEqual(t.parse_rotation_keep("5"), 5)
        self.assertRaises(ConfigValueError, t.parse_rotation_keep, "-1")
