# -*- test-case-name: tests.test_config_types -*-
"""
Value parsers for C{vernemq.conf}.

Every parser takes the raw text to the right of C{=} (already stripped of
surrounding blanks and of a trailing C{# comment}) and returns a typed value,
or raises L{ConfigValueError} whose message is the I{reason} part of a
L{vernemq.config.ConfigError} (C{"expected an integer, got 'abc'"}).

Conventions (the same everywhere in the schema):

  - flags (C{on}/C{off}) become C{bool};
  - C{infinity} (where a key allows it) becomes C{None}, meaning "no limit";
  - durations become an C{int} in the unit VerneMQ uses for that key (the
    parser is built with L{duration} and that unit); a plain integer is taken
    to be in that unit already;
  - byte sizes become an C{int} number of bytes (C{KB}/C{MB}/C{GB} are powers
    of 1024, as in cuttlefish);
  - comma lists become C{tuple}s;
  - plain C{ip:port} values become L{HostPort} (a named tuple), listener
    addresses (which may be unix sockets) become L{Address}.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

Parser = Callable[[str], Any]


class ConfigValueError(ValueError):
    """
    A raw value could not be parsed; C{str(error)} is the user-facing reason.
    """


def _show(raw: str) -> str:
    return repr(raw)


def parse_flag(raw: str) -> bool:
    """
    Parse a cuttlefish flag: C{on}/C{off} (also C{true}/C{false}).
    """
    lowered = raw.lower()
    if lowered in ("on", "true"):
        return True
    if lowered in ("off", "false"):
        return False
    raise ConfigValueError(f"expected on or off, got {_show(raw)}")


_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


def parse_integer(raw: str) -> int:
    """
    Parse a decimal integer (may be negative, as in C{max_online_messages = -1}).
    """
    if not _INT_RE.match(raw):
        raise ConfigValueError(f"expected an integer, got {_show(raw)}")
    return int(raw)


def bounded_integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """
    Build a parser for an integer within C{[minimum, maximum]} (either bound
    may be C{None} for none).
    """

    def parse(raw: str) -> int:
        value = parse_integer(raw)
        if minimum is not None and value < minimum:
            raise ConfigValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigValueError(f"must be at most {maximum}, got {value}")
        return value

    parse.__doc__ = f"integer in [{minimum}, {maximum}]"
    return parse


def parse_integer_or_infinity(raw: str) -> int | None:
    """
    Parse an integer or C{infinity}; C{infinity} becomes C{None} ("no limit").
    """
    if raw.lower() == "infinity":
        return None
    if not _INT_RE.match(raw):
        raise ConfigValueError(f"expected an integer or infinity, got {_show(raw)}")
    value = int(raw)
    if value < 0:
        raise ConfigValueError(f"must be at least 0 or infinity, got {value}")
    return value


# cuttlefish duration units, in milliseconds.  "f" is a fortnight.
_DURATION_UNITS_MS: dict[str, int] = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
    "f": 14 * 24 * 60 * 60 * 1000,
}
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|f|w|d|h|m|s)")
_UNIT_NAMES = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}


def duration(unit: str) -> Parser:
    """
    Build a parser for a cuttlefish duration returned as an C{int} in C{unit}
    (one of C{ms}, C{s}, C{m}, C{h}).

    Accepts C{100ms}, C{30s}, C{5m}, C{24h}, C{1d}, C{1w}, C{1f}, combinations
    such as C{1h30m}, and a plain integer, which is already in C{unit}.  A
    value that is not a whole number of C{unit} is rounded up.
    """
    unit_ms = _DURATION_UNITS_MS[unit]

    def parse(raw: str) -> int:
        text = raw.strip().lower()
        if _INT_RE.match(text):
            value = int(text)
            if value < 0:
                raise ConfigValueError(f"must not be negative, got {value}")
            return value
        pos = 0
        total_ms = 0.0
        while pos < len(text):
            match = _DURATION_PART_RE.match(text, pos)
            if match is None:
                raise ConfigValueError(
                    f"expected a duration such as 100ms, 30s, 5m, 24h, 1d or 1w, got {_show(raw)}"
                )
            total_ms += float(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
            pos = match.end()
        if not text:
            raise ConfigValueError(f"expected a duration, got {_show(raw)}")
        whole, rest = divmod(total_ms, unit_ms)
        return int(whole) + (1 if rest else 0)

    parse.__doc__ = f"duration in {_UNIT_NAMES[unit]}"
    return parse


_BYTESIZE_RE = re.compile(r"([0-9]+)\s*(b|kb|mb|gb|tb|k|m|g)?\Z", re.IGNORECASE)
_BYTESIZE_UNITS = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "tb": 1024**4,
}


def parse_bytesize(raw: str) -> int:
    """
    Parse a byte size: a plain integer, or C{64KB}, C{1MB}, C{2GB}
    (powers of 1024, as cuttlefish's C{bytesize}).
    """
    match = _BYTESIZE_RE.match(raw.strip())
    if match is None:
        raise ConfigValueError(f"expected a byte size such as 65536, 64KB or 1MB, got {_show(raw)}")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _BYTESIZE_UNITS[unit]


def enum(*choices: str) -> Parser:
    """
    Build a parser accepting exactly one of C{choices} (case-sensitive, as
    cuttlefish) and returning it as a C{str}.
    """

    def parse(raw: str) -> str:
        if raw in choices:
            return raw
        raise ConfigValueError(f"expected one of {', '.join(choices)}, got {_show(raw)}")

    parse.__doc__ = "one of " + "|".join(choices)
    return parse


def parse_string(raw: str) -> str:
    """
    Return the value as is (a string may be empty).
    """
    return raw


def parse_path(raw: str) -> str:
    """
    Return a non-empty file system path, as written (relative paths stay
    relative to the directory C{twistd} runs in, as in VerneMQ).
    """
    if not raw:
        raise ConfigValueError("expected a path, got an empty value")
    return raw


def parse_optional_path(raw: str) -> str | None:
    """
    Return a file system path as written, or C{None} for an empty value
    (VerneMQ writes unset TLS files as C{""}).
    """
    return raw or None


def parse_bytesize_or_infinity(raw: str) -> int | None:
    """
    Parse a byte size (as L{parse_bytesize}) or C{infinity} (C{None}).
    """
    if raw.strip().lower() == "infinity":
        return None
    try:
        return parse_bytesize(raw)
    except ConfigValueError:
        raise ConfigValueError(
            f"expected a byte size such as 10MB, or infinity, got {_show(raw)}"
        ) from None


def parse_rotation_keep(raw: str) -> int:
    """
    Parse a log rotation count: a non-negative integer, or C{current}
    (keep only the current file), which is 0.
    """
    if raw == "current":
        return 0
    if not _INT_RE.match(raw) or int(raw) < 0:
        raise ConfigValueError(f"expected current or a non-negative integer, got {_show(raw)}")
    return int(raw)


def parse_int_list(raw: str) -> tuple[int, ...]:
    """
    Parse a comma separated list of integers such as C{3,4,5}.
    """
    items = [item.strip() for item in raw.split(",")]
    if not raw.strip() or any(not _INT_RE.match(item) for item in items):
        raise ConfigValueError(f"expected a comma separated list of integers, got {_show(raw)}")
    return tuple(int(item) for item in items)


def parse_string_list(raw: str) -> tuple[str, ...]:
    """
    Parse a comma separated list of words such as C{vmq_passwd,vmq_acl}.
    """
    items = tuple(item.strip() for item in raw.split(","))
    if not raw.strip() or any(not item for item in items):
        raise ConfigValueError(f"expected a comma separated list, got {_show(raw)}")
    return items


def parse_protocol_versions(raw: str) -> tuple[int, ...]:
    """
    Parse C{allowed_protocol_versions}: a comma list drawn from 3 (MQTT 3.1),
    4 (3.1.1), 5 (5.0), 131 and 132 (bridge variants of 3.1 and 3.1.1).
    """
    versions = parse_int_list(raw)
    for version in versions:
        if version not in (3, 4, 5, 131, 132):
            raise ConfigValueError(
                f"unknown MQTT protocol version {version}; "
                "expected a list drawn from 3, 4, 5, 131, 132"
            )
    return versions


class HostPort(NamedTuple):
    """
    A plain C{ip:port} value such as C{manhole.listener}; unpacks as
    C{host, port = value}.

    @ivar host: an IPv4 or IPv6 literal (IPv6 without brackets) or a host name.
    @ivar port: the TCP port.
    """

    host: str
    port: int


@dataclass(frozen=True)
class Address:
    """
    A listening address: either C{host}/C{port} or a unix socket C{unix_path}.

    @ivar host: an IPv4 or IPv6 literal (IPv6 without brackets), or a host
        name; C{None} for a unix socket.
    @ivar port: the TCP port; C{None} for a unix socket.
    @ivar unix_path: the unix socket path, for C{local:/path:0}.
    """

    host: str | None
    port: int | None
    unix_path: str | None = None


def _port(text: str, raw: str) -> int:
    if not text.isdigit():
        raise ConfigValueError(f"expected a port number after ':', got {_show(raw)}")
    port = int(text)
    if not 0 <= port <= 65535:
        raise ConfigValueError(f"port must be between 0 and 65535, got {port}")
    return port


def parse_ip_port(raw: str) -> HostPort:
    """
    Parse C{IP:PORT}: C{127.0.0.1:1883}, C{0.0.0.0:44053}, C{[::1]:1883} or
    C{localhost:6022}.
    """
    text = raw.strip()
    if text.startswith("["):
        close = text.find("]")
        if close == -1 or text[close + 1 : close + 2] != ":":
            raise ConfigValueError(f"expected [IPv6]:port such as [::1]:1883, got {_show(raw)}")
        host = text[1:close]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigValueError(f"invalid IPv6 address {host!r}") from None
        return HostPort(host, _port(text[close + 2 :], raw))
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigValueError(f"expected ip:port such as 127.0.0.1:1883, got {_show(raw)}")
    if ":" in host:
        raise ConfigValueError(
            f"write IPv6 addresses in brackets, e.g. [::1]:1883, got {_show(raw)}"
        )
    if host[0].isdigit() and host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ConfigValueError(f"invalid IPv4 address {host!r}") from None
    elif not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        raise ConfigValueError(f"invalid host name {host!r}")
    return HostPort(host, _port(port_text, raw))


def parse_listener_address(raw: str) -> Address:
    """
    Parse a listener address: C{ip:port} as L{parse_ip_port}, or a unix
    socket written C{local:/path/to/socket:0} (VerneMQ's form; the trailing
    port must be 0).
    """
    text = raw.strip()
    if text.startswith("local:"):
        path, sep, port_text = text[len("local:") :].rpartition(":")
        if not sep or not path or port_text != "0":
            raise ConfigValueError(
                f"expected local:/path/to/socket:0 for a unix socket, got {_show(raw)}"
            )
        return Address(None, None, path)
    host, port = parse_ip_port(text)
    return Address(host, port)


def parse_persistent_client_expiration(raw: str) -> int | None:
    """
    Parse C{persistent_client_expiration}: C{never} (C{None}) or an integer
    followed by C{h}, C{d}, C{w}, C{m} or C{y}, returned in seconds.

    As in VerneMQ, a month C{m} is 4 weeks and a year C{y} is 12 such
    months (336 days); C{1w} is 604800.
    """
    if raw == "never":
        return None
    week = 7 * 86400
    units = {"h": 3600, "d": 86400, "w": week, "m": 4 * week, "y": 12 * 4 * week}
    match = re.fullmatch(r"([0-9]+)([hdwmy])", raw)
    if match is None:
        raise ConfigValueError(
            f"expected never or an integer followed by h, d, w, m or y (e.g. 1w), got {_show(raw)}"
        )
    return int(match.group(1)) * units[match.group(2)]


def parse_client_or_seconds(raw: str) -> int | None:
    """
    Parse C{max_last_will_delay}: C{client} (C{None}: the client's value is
    used) or a duration in seconds (C{1h}, C{3600}).
    """
    if raw == "client":
        return None
    try:
        return int(duration("s")(raw))
    except ConfigValueError:
        raise ConfigValueError(
            f"expected client or a duration such as 1h or 3600, got {_show(raw)}"
        ) from None


def parse_mountpoint(raw: str) -> str:
    """
    Parse a mountpoint: C{off} (or empty) means none, returned as C{""}.
    """
    if raw in ("off", ""):
        return ""
    return raw


def parse_buffer_sizes(raw: str) -> tuple[int, int, int]:
    """
    Parse C{buffer_sizes}: three byte sizes C{sndbuf,recbuf,buffer}.
    """
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 3:
        raise ConfigValueError(
            f"expected three sizes sndbuf,recbuf,buffer such as 4096,16384,32768, got {_show(raw)}"
        )
    sizes = tuple(parse_bytesize(part) for part in parts)
    return (sizes[0], sizes[1], sizes[2])
