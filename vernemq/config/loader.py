# -*- test-case-name: tests.test_config -*-
"""
Load C{vernemq.conf} into one typed, validated L{Config}.

The file format is VerneMQ's (cuttlefish): one C{key = value} per line,
C{#} starts a comment (also after a value), blank lines are ignored.  The
lines are read with configobj; line numbers come from our own scan of the
same lines, since configobj does not keep them.

A key set twice: the later line wins (as in VerneMQ), and L{Config.line_of}
reports the later line.

Every problem raises L{ConfigError}, whose C{str} is
C{PATH:LINE: KEY: reason}.  C{LINE} is 0 and C{KEY} is C{-} when the problem
is not tied to one line or key (an unreadable file); C{KEY} is C{-} on a line
that has no key (C{garbage without equals sign}).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from configobj import ConfigObj, ConfigObjError

from vernemq.config import schema as s
from vernemq.config.types import Address, ConfigValueError

_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
_LISTENER_ADDRESS_RE = re.compile(r"listener\.([a-z]+)\.([^.]+)\Z")


class ConfigError(Exception):
    """
    A problem in a configuration file.

    C{str(error)} is C{PATH:LINE: KEY: reason}.

    @ivar path: the file name, as given.
    @ivar line: the 1-based line number; 0 when not tied to a line.
    @ivar key: the key; C{-} when there is none.
    @ivar reason: what is wrong, for humans.
    """

    def __init__(self, path: str, line: int, key: str, reason: str) -> None:
        super().__init__(path, line, key, reason)
        self.path = path
        self.line = line
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.reason}"


def _escape(text: str) -> str:
    """
    Escape C{text} for use inside a Twisted endpoint description.
    """
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


@dataclass(frozen=True)
class ListenerSpec:
    """
    One configured listener, with its cascaded settings.

    @ivar kind: C{tcp}, C{ssl}, C{ws}, C{wss}, C{vmq}, C{vmqs}, C{http} or
        C{https}.
    @ivar name: the C{$name} segment, e.g. C{default}.
    @ivar host: the bind address (an IPv6 address without brackets), or
        C{None} for a unix socket.
    @ivar port: the TCP port, or C{None} for a unix socket.
    @ivar unix_path: the unix socket path, or C{None}.
    @ivar settings: every cascading setting valid for C{kind} (see
        L{vernemq.config.schema.LISTENER_SETTINGS}), resolved named listener ->
        protocol -> global -> default; e.g. C{settings["max_connections"]}
        (C{int}, or C{None} for infinity), C{settings["mountpoint"]} (C{str},
        C{""} for none), C{settings["allowed_protocol_versions"]}
        (C{tuple[int, ...]}).  HTTP listeners also have C{"http_module_auth"}:
        a mapping of module name to C{apikey}/C{noauth}.
    """

    kind: str
    name: str
    host: str | None
    port: int | None
    unix_path: str | None
    settings: Mapping[str, Any] = field(hash=False, compare=True)

    @property
    def key(self) -> str:
        """
        The configuration key that defines this listener, e.g.
        C{listener.tcp.default}.
        """
        return f"listener.{self.kind}.{self.name}"

    def endpoint_description(self, tls: bool = True) -> str:
        """
        A Twisted server endpoint description for this listener, for
        L{twisted.internet.endpoints.serverFromString}.

        C{tcp:1883:interface=127.0.0.1}; IPv6 interfaces have their colons
        escaped (C{tcp:1883:interface=\\:\\:1}); unix sockets give
        C{unix:/path/to/sock}.  TLS kinds (C{ssl}, C{wss}, C{vmqs}, C{https})
        give an C{ssl:} description with C{privateKey}/C{certKey} (and
        C{extraCertChain} for a C{cafile}) when those are configured, or,
        with C{tls=False}, the plain C{tcp:} description under a TLS layer
        the caller adds (L{vernemq.listeners.tls}).
        """
        if self.unix_path is not None:
            return f"unix:{_escape(self.unix_path)}"
        tls = tls and self.kind in s.TLS_KINDS
        parts = [("ssl" if tls else "tcp"), str(self.port)]
        if self.host is not None:
            parts.append(f"interface={_escape(self.host)}")
        # Ranch's (VerneMQ's acceptor pool) listen backlog; Twisted's
        # default of 50 drops SYNs when thousands of clients reconnect.
        parts.append(f"backlog={LISTEN_BACKLOG}")
        if tls:
            keyfile = self.settings.get("keyfile")
            certfile = self.settings.get("certfile")
            cafile = self.settings.get("cafile")
            if keyfile:
                parts.append(f"privateKey={_escape(keyfile)}")
            if certfile:
                parts.append(f"certKey={_escape(certfile)}")
            if cafile:
                parts.append(f"extraCertChain={_escape(cafile)}")
        return ":".join(parts)


#: The listen backlog of TCP and TLS listeners, as Ranch's default.
LISTEN_BACKLOG = 1024


def _is_global(key: str) -> bool:
    """
    Whether C{key} is a global (non-listener, non-pattern) key to list in
    L{Config.describe} and iteration.
    """
    if "$" in key:
        return False
    parts = key.split(".")
    return not (parts[0] == "listener" and len(parts) > 2)


class Config(Mapping[str, Any]):
    """
    A validated configuration.

    C{config[key]} gives the typed value of a key: the value from the file,
    else the schema default.  Listener settings below the global level give
    their cascaded value.  Unknown keys raise C{KeyError}.  Iteration yields
    every global key plus every key set in the file.

    @ivar path: the file this came from, as given.
    @ivar listeners: the configured listeners of all kinds, in file order.
        Only listeners the file defines exist: there are no default listeners.
    """

    def __init__(
        self,
        path: str,
        values: Mapping[str, Any],
        lines: Mapping[str, int],
    ) -> None:
        self.path = path
        self._values: dict[str, Any] = dict(values)
        self._lines: dict[str, int] = dict(lines)
        self.listeners: list[ListenerSpec] = self._build_listeners()

    # -- Mapping ----------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        setting = s.SCHEMA.lookup(key)
        if setting is None:
            raise KeyError(key)
        parts = key.split(".")
        if parts[0] == "listener" and len(parts) >= 3 and parts[1] in s.LISTENER_KINDS:
            ls = s.listener_setting(parts[-1])
            if ls is not None and parts[1] in ls.kinds and len(parts) in (3, 4):
                name = parts[2] if len(parts) == 4 else None
                return self._cascade(ls, parts[1], name)
        return setting.default

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key in s.SCHEMA:
            if _is_global(key):
                seen.add(key)
                yield key
        for key in self._values:
            if key not in seen:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<Config {self.path!r}: {len(self._lines)} keys set>"

    # -- queries -----------------------------------------------------------

    def mqtt_listeners(self) -> list[ListenerSpec]:
        """
        The listeners that speak MQTT to clients (C{tcp}, C{ssl}, C{ws},
        C{wss}), in file order.
        """
        return [spec for spec in self.listeners if spec.kind in s.MQTT_KINDS]

    def line_of(self, key: str) -> int | None:
        """
        The line that set C{key}, or C{None} if the file does not set it.
        """
        return self._lines.get(key)

    def explicitly_set(self) -> dict[str, Any]:
        """
        The keys present in the file with their typed values, in file order.
        """
        return {key: self._values[key] for key in self._lines if key in self._values}

    def unimplemented_keys(self) -> list[str]:
        """
        The keys set in the file whose feature is not built yet, in file
        order.  The node logs a warning for each: C{KEY is accepted but its
        feature is not implemented yet}.
        """
        out = []
        for key in self._lines:
            setting = s.SCHEMA.lookup(key)
            if setting is not None and not setting.implemented:
                out.append(key)
        return out

    def replace(self, **overrides: Any) -> Config:
        """
        A copy with some keys changed.  Values are typed values; a C{str} is
        parsed as if it came from the file (so C{"127.0.0.1:7000"} works for
        an address).  Dotted keys go through a dict:
        C{config.replace(**{"manhole.listener": "127.0.0.1:0"})}.

        @raise KeyError: for an unknown key.
        @raise ConfigError: for a bad string value (line 0).
        """
        values = dict(self._values)
        for key, value in overrides.items():
            setting = s.SCHEMA.lookup(key)
            if setting is None:
                suggestion = s.SCHEMA.suggest(key)
                hint = f"; did you mean {suggestion}?" if suggestion else ""
                raise KeyError(f"unknown key {key}{hint}")
            if isinstance(value, str):
                try:
                    value = setting.parser(value)
                except ConfigValueError as e:
                    raise ConfigError(self.path, 0, key, str(e)) from None
            values[key] = value
        return Config(self.path, values, self._lines)

    def describe(self) -> list[tuple[str, Any, str]]:
        """
        C{(key, value, doc)} for every global key, in schema order, then any
        other key the file sets, for showing to an operator.
        """
        out = []
        for key in self:
            setting = s.SCHEMA.lookup(key)
            doc = setting.doc if setting is not None else ""
            out.append((key, self[key], doc))
        return out

    # -- listeners ---------------------------------------------------------

    def _cascade(self, ls: s.ListenerSetting, kind: str, name: str | None) -> Any:
        candidates = []
        if name is not None:
            candidates.append(f"listener.{kind}.{name}.{ls.name}")
        candidates.append(f"listener.{kind}.{ls.name}")
        if ls.global_level:
            candidates.append(f"listener.{ls.name}")
        for key in candidates:
            if key in self._values and self._values[key] is not s.INHERIT:
                return self._values[key]
        return ls.default_for(kind)

    def _build_listeners(self) -> list[ListenerSpec]:
        specs = []
        for key, value in self._values.items():
            match = _LISTENER_ADDRESS_RE.match(key)
            if match is None or not isinstance(value, Address):
                continue
            kind, name = match.groups()
            settings: dict[str, Any] = {
                ls.name: self._cascade(ls, kind, name)
                for ls in s.LISTENER_SETTINGS
                if kind in ls.kinds
            }
            if kind in s.HTTP_KINDS:
                settings["http_module_auth"] = self._http_module_auth(kind, name)
            specs.append(
                ListenerSpec(
                    kind,
                    name,
                    value.host,
                    value.port,
                    value.unix_path,
                    MappingProxyType(settings),
                )
            )
        return specs

    def _http_module_auth(self, kind: str, name: str) -> Mapping[str, str]:
        modes: dict[str, str] = {}
        for module in self["http_modules"]:
            modes[module] = self[f"http_module.{module}.auth.mode"]
        prefix = f"listener.{kind}.{name}.http_module."
        for key, value in self._values.items():
            if key.startswith("http_module.") and key.endswith(".auth.mode"):
                modes[key[len("http_module.") : -len(".auth.mode")]] = value
        for key, value in self._values.items():
            if key.startswith(prefix) and key.endswith(".auth.mode"):
                modes[key[len(prefix) : -len(".auth.mode")]] = value
        return MappingProxyType(modes)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def _scan(lines: list[str], path: str) -> list[tuple[int, str]]:
    """
    Find the C{(line number, key)} of every setting, rejecting lines that
    are not C{key = value}.
    """
    found = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise ConfigError(path, number, "-", f"expected 'key = value', got {stripped!r}")
        key, _, rest = stripped.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(path, number, "-", "missing key before '='")
        if not _KEY_RE.match(key):
            raise ConfigError(path, number, key, "invalid key name")
        if rest.lstrip().startswith(("'''", '"""')):
            raise ConfigError(path, number, key, "multi-line values are not supported")
        found.append((number, key))
    return found


def _read(lines: list[str], path: str) -> tuple[dict[str, str], dict[str, int]]:
    """
    Read raw values and their line numbers; a later duplicate wins.
    """
    found = _scan(lines, path)
    last: dict[str, int] = {}
    for number, key in found:
        last[key] = number
    # configobj refuses duplicates: hand it only the winning line of each key.
    superseded = {number for number, _ in found} - set(last.values())
    winners = ["" if number in superseded else line for number, line in enumerate(lines, 1)]
    try:
        parsed = ConfigObj(
            winners,
            list_values=False,
            interpolation=False,
            raise_errors=True,
            _inspec=False,
            encoding=None,
        )
    except ConfigObjError as e:
        number = getattr(e, "line_number", 0) or 0
        raise ConfigError(path, number, "-", f"cannot parse: {e}") from None
    raw: dict[str, str] = {}
    lines_of: dict[str, int] = {}
    for number, key in sorted((n, k) for k, n in last.items()):
        value = parsed.get(key)
        if not isinstance(value, str):
            raise ConfigError(path, number, key, "sections are not supported")
        raw[key] = _unquote(value.strip())
        lines_of[key] = number
    return raw, lines_of


def _parse_values(raw: Mapping[str, str], lines: Mapping[str, int], path: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, text in raw.items():
        number = lines[key]
        setting = s.SCHEMA.lookup(key)
        if setting is None:
            suggestion = s.SCHEMA.suggest(key)
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            raise ConfigError(path, number, key, f"unknown key{hint}")
        try:
            values[key] = setting.parser(text)
        except ConfigValueError as e:
            reason = str(e)
            match = _LISTENER_ADDRESS_RE.match(key)
            if match is not None:
                suggestion = s.SCHEMA.suggest(key)
                if suggestion is not None and suggestion != key:
                    reason += f"; did you mean {suggestion}?"
            raise ConfigError(path, number, key, reason) from None
    return values


def _check(values: Mapping[str, Any], lines: Mapping[str, int], path: str) -> None:
    """
    Checks that span several keys.
    """
    addresses: dict[tuple[str, ...], str] = {}
    for key, value in values.items():
        parts = key.split(".")
        if (
            parts[0] == "listener"
            and len(parts) >= 4
            and parts[1] in s.LISTENER_KINDS
            and f"listener.{parts[1]}.{parts[2]}" not in values
        ):
            raise ConfigError(
                path,
                lines[key],
                key,
                f"no listener {parts[1]}.{parts[2]} is defined; add "
                f"listener.{parts[1]}.{parts[2]} = ip:port",
            )
        if isinstance(value, Address) and _LISTENER_ADDRESS_RE.match(key):
            ident = (
                ("unix", value.unix_path or "")
                if value.unix_path is not None
                else ("tcp", str(value.host), str(value.port))
            )
            if value.port != 0 and ident in addresses:
                other = addresses[ident]
                raise ConfigError(
                    path,
                    lines[key],
                    key,
                    f"same address as {other} (line {lines[other]})",
                )
            addresses[ident] = key
    low = values.get("erlang.distribution.port_range.minimum")
    high = values.get("erlang.distribution.port_range.maximum")
    if low is not None and high is not None and high < low:
        key = "erlang.distribution.port_range.maximum"
        raise ConfigError(path, lines[key], key, f"must not be below minimum {low}")


def config_from_text(text: str, path: str = "vernemq.conf") -> Config:
    """
    Parse configuration text; C{path} is only used in error messages.

    @raise ConfigError: on any problem.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    raw, lines_of = _read(lines, path)
    values = _parse_values(raw, lines_of, path)
    _check(values, lines_of, path)
    return Config(path, values, lines_of)


def load_config(path: str) -> Config:
    """
    Read and validate the configuration file at C{path} (UTF-8).

    @raise ConfigError: on any problem, including an unreadable file
        (C{PATH:0: -: cannot read: ...}).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(path, 0, "-", f"cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(path, line, "-", "not valid UTF-8") from None
    return config_from_text(text, path)
