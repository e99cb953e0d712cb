# -*- test-case-name: tests.test_admin_registry -*-
"""
The registry of C{vmq-admin} commands, with VerneMQ's syntax and output.

VerneMQ builds C{vmq-admin} on clique; this is the same model, so that
commands, arguments and outputs look the same:

  - a command is a path of words (C{cluster join}) registered with its
    B{keys} (C{key=value} arguments), its B{flags} (C{--long[=value]} or
    C{-s [value]}) and a handler;
  - the global flags C{--format=human|json} and C{--help} work everywhere;
    C{--help} (or a path that is only a family, like C{cluster}) prints the
    usage registered for that path;
  - a handler gets the typed keys and flags and returns B{elements}:
    L{Text}, L{Table} and L{Alert} (an error: the exit status is 1);
  - the human writer prints text lines and clique's tables (columns as
    wide as their widest cell, cells centred, C{+---+} borders, shrunk to
    fit 100 columns); the JSON writer prints the element list as clique's
    JSON writer does: C{[{"type":"table","table":[{"Node":...}]}]}.

Later issues add families (session, listener, retain, metrics...) with
L{CommandRegistry.register} and L{CommandRegistry.registerUsage}.

Nothing here touches the network: L{CommandRegistry.run} turns an argument
list into C{(exit status, output text)}; C{vmq:admin_command/1}
(L{vernemq.admin.cli}) carries both over the distribution.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger

#: The width clique fits tables in when there is no terminal (always, for
#: a command run on the node).
MAX_LINE_LEN = 100


# -- output elements ------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A line (or lines) of text."""

    text: str


@dataclass(frozen=True)
class Table:
    """
    A table: a list of rows, each a list of C{(column, value)} pairs (the
    columns of the first row are the header).  Values are printed as
    Erlang's clique prints them: C{True} as C{true}, numbers in decimal.
    """

    rows: list[list[tuple[str, Any]]]


@dataclass(frozen=True)
class Alert:
    """An error: its elements are printed; the exit status is 1."""

    elements: list[Text | Table]


@dataclass(frozen=True)
class Usage:
    """A usage text (printed as is)."""

    text: str


Element = Union[Text, Table, Alert, Usage]  # noqa: UP007 (a runtime alias)


class UsageError(Exception):
    """The command line does not fit the command; the message says why."""


# -- specs ---------------------------------------------------------------------------


def _identity(value: str) -> Any:
    return value


@dataclass(frozen=True)
class KeySpec:
    """
    A C{key=value} argument.

    @ivar typecast: turns the text into the value; raising L{ValueError}
        makes it an invalid argument.
    """

    name: str
    typecast: Callable[[str], Any] = _identity


@dataclass(frozen=True)
class FlagSpec:
    """
    A flag: C{--longname}, C{--longname=value} or C{-shortname [value]}.

    @ivar name: the key the handler finds it under.
    @ivar shortname: one letter, or L{None}.
    @ivar longname: defaults to C{name}.
    @ivar typecast: for flags that take a value; L{None} for a switch
        (whose value is C{True}).
    """

    name: str
    shortname: str | None = None
    longname: str | None = None
    typecast: Callable[[str], Any] | None = None

    @property
    def long(self) -> str:
        """The long name."""
        return self.longname or self.name


Handler = Callable[[dict[str, Any], dict[str, Any]], Any]


@dataclass
class Command:
    """A registered command."""

    path: tuple[str, ...]
    handler: Handler
    keys: tuple[KeySpec, ...] = ()
    flags: tuple[FlagSpec, ...] = ()
    usage: str | None = None


@dataclass
class Parsed:
    """A command line matched to a command."""

    command: Command
    keys: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    format: str = "human"


GLOBAL_FLAGS = ("format", "help")


# -- the registry ---------------------------------------------------------------------


class CommandRegistry:
    """
    Commands by path, and usage texts by path.

    @ivar script: the program name usages start with (C{vmq-admin}).
    """

    log = Logger()

    def __init__(self, script: str = "vmq-admin") -> None:
        self.script = script
        self._commands: dict[tuple[str, ...], Command] = {}
        self._usage: dict[tuple[str, ...], str] = {}

    def register(
        self,
        path: Sequence[str],
        handler: Handler,
        keys: Sequence[KeySpec] = (),
        flags: Sequence[FlagSpec] = (),
        usage: str | None = None,
    ) -> None:
        """
        Register the command C{path} (e.g. C{("cluster", "join")}).

        C{handler(keys, flags)} returns a list of elements, or a
        L{Deferred} / awaitable that gives one.
        """
        key = tuple(path)
        self._commands[key] = Command(key, handler, tuple(keys), tuple(flags), usage)
        if usage is not None:
            self._usage[key] = usage

    def registerUsage(self, path: Sequence[str], usage: str) -> None:
        """The usage text for C{path} (a family such as C{("cluster",)}, or C{()})."""
        self._usage[tuple(path)] = usage

    def commands(self) -> list[tuple[str, ...]]:
        """Every registered command path, sorted."""
        return sorted(self._commands)

    def usage(self, path: Sequence[str]) -> str:
        """The usage text of C{path}, or of the nearest registered ancestor."""
        key = tuple(path)
        while True:
            text = self._usage.get(key)
            if text is not None:
                return text
            if not key:
                return self._defaultUsage()
            key = key[:-1]

    def _defaultUsage(self) -> str:
        families = sorted({path[0] for path in self._commands})
        lines = [f"Usage: {self.script} <sub-command>", "", "  Sub-commands:"]
        lines += [f"    {name}" for name in families]
        lines += ["", "  Use --help after a sub-command for more details."]
        return "\n".join(lines) + "\n"

    # -- parsing ---------------------------------------------------------------------

    def parse(self, argv: Sequence[str]) -> Parsed | Usage:
        """
        Match C{argv} (without the program name) to a command and parse its
        keys and flags; a L{Usage} when help is asked for or the words name
        no command.

        @raise UsageError: an unknown key or flag, or a bad value.
        """
        words: list[str] = []
        for arg in argv:
            if arg.startswith("-") or "=" in arg:
                break
            words.append(arg)
        command: Command | None = None
        for n in range(len(words), 0, -1):
            command = self._commands.get(tuple(words[:n]))
            if command is not None:
                break
        rest = list(argv[len(command.path) :]) if command is not None else list(argv[len(words) :])
        wantsHelp = "--help" in rest or "-h" in rest
        if command is None:
            if words and tuple(words) not in self._usage and not wantsHelp:
                raise UsageError(f"Invalid command: {' '.join(words)}")
            return Usage(self.usage(words))
        if wantsHelp:
            return Usage(self.usage(command.path))
        parsed = Parsed(command)
        keys = {spec.name: spec for spec in command.keys}
        longs = {spec.long: spec for spec in command.flags}
        shorts = {spec.shortname: spec for spec in command.flags if spec.shortname}
        i = 0
        while i < len(rest):
            arg = rest[i]
            i += 1
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                if name == "format":
                    if not eq or value not in ("human", "json"):
                        raise UsageError(f"Invalid format: {value or '(none)'} (human or json)")
                    parsed.format = value
                    continue
                flag = longs.get(name)
                if flag is None:
                    raise UsageError(f"Invalid flag: --{name}")
                if flag.typecast is None:
                    if eq:
                        raise UsageError(f"Flag --{name} takes no value")
                    parsed.flags[flag.name] = True
                    continue
                if not eq:
                    if i >= len(rest):
                        raise UsageError(f"Flag --{name} needs a value")
                    value = rest[i]
                    i += 1
                parsed.flags[flag.name] = _cast(flag.typecast, value, f"--{name}")
            elif arg.startswith("-") and len(arg) >= 2:
                name = arg[1]
                flag = shorts.get(name)
                if flag is None:
                    raise UsageError(f"Invalid flag: -{name}")
                if flag.typecast is None:
                    if len(arg) > 2:
                        raise UsageError(f"Flag -{name} takes no value")
                    parsed.flags[flag.name] = True
                    continue
                if len(arg) > 2:
                    value = arg[2:].removeprefix("=")
                elif i < len(rest):
                    value = rest[i]
                    i += 1
                else:
                    raise UsageError(f"Flag -{name} needs a value")
                parsed.flags[flag.name] = _cast(flag.typecast, value, f"-{name}")
            elif "=" in arg:
                name, _, value = arg.partition("=")
                spec = keys.get(name)
                if spec is None:
                    raise UsageError(f"Invalid argument: {name}")
                parsed.keys[name] = _cast(spec.typecast, value, name)
            else:
                raise UsageError(f"Invalid argument: {arg}")
        return parsed

    # -- running ---------------------------------------------------------------------

    async def run(self, argv: Sequence[str]) -> tuple[int, str]:
        """
        Run a command line: C{(exit status, output)}.  Status 0 on
        success, 1 for an alert, a usage error or a failed handler.
        """
        format = "json" if "--format=json" in argv else "human"
        try:
            parsed = self.parse(argv)
        except UsageError as error:
            return 1, write([Alert([Text(str(error))])], format)
        if isinstance(parsed, Usage):
            status = 0 if ("--help" in argv or "-h" in argv or not argv) else 1
            return status, write([parsed], format)
        try:
            result = parsed.command.handler(parsed.keys, parsed.flags)
            if isinstance(result, Deferred) or inspect.isawaitable(result):
                result = await _await(result)
        except Exception as error:
            self.log.failure("vmq-admin {command} failed", command=" ".join(parsed.command.path))
            return 1, write([Alert([Text(f"Error: {error}")])], parsed.format)
        elements: list[Element] = list(result or [])
        status = 1 if any(isinstance(e, Alert) for e in elements) else 0
        return status, write(elements, parsed.format)


async def _await(result: Deferred[Any] | Awaitable[Any]) -> Any:
    return await result


def _cast(typecast: Callable[[str], Any], value: str, name: str) -> Any:
    try:
        return typecast(value)
    except (ValueError, TypeError) as error:
        detail = f": {error}" if str(error) else ""
        raise UsageError(f"Invalid value for {name}: {value}{detail}") from None


# -- writers -----------------------------------------------------------------------------


def write(elements: Sequence[Element], format: str = "human") -> str:
    """The output of C{elements} in C{format} (C{human} or C{json})."""
    if format == "json":
        return json.dumps([_json(e) for e in elements], separators=(",", ":")) + "\n"
    return "".join(_human(e) for e in elements)


def _human(element: Element) -> str:
    if isinstance(element, Text):
        return element.text + "\n"
    if isinstance(element, Usage):
        return element.text
    if isinstance(element, Table):
        return renderTable(element.rows)
    return "".join(_human(e) for e in element.elements)


def _json(element: Element) -> Any:
    if isinstance(element, Text):
        return {"type": "text", "text": element.text}
    if isinstance(element, Usage):
        return {"type": "usage", "usage": element.text}
    if isinstance(element, Table):
        return {
            "type": "table",
            "table": [{column: _jsonValue(v) for column, v in row} for row in element.rows],
        }
    return {"type": "alert", "alert": [_json(e) for e in element.elements]}


def _jsonValue(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip()
    return cell(value)


# -- clique's tables -------------------------------------------------------------------


def cell(value: Any) -> str:
    """A value as clique prints it in a table cell."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "undefined"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def centre(text: str, width: int) -> str:
    """Erlang's C{string:centre/2}: the odd space goes to the right."""
    length = len(text)
    if length >= width:
        skip = (length - width) // 2
        return text[skip : skip + width]
    left = (width - length) // 2
    return " " * left + text + " " * (width - length - left)


def _fieldLength(value: str) -> int:
    return max((len(line) for line in value.split("\n") if line), default=0)


def _round(x: float) -> int:
    """Erlang's C{round/1}: halves away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def fitWidths(widths: list[int], maxWidth: int) -> list[int]:
    """Shrink column widths to fit C{maxWidth}, as clique does."""
    total = sum(widths)
    toNarrow = total - maxWidth
    if toNarrow <= 0 or total == 0:
        return widths
    new = [max(1, w - _round(toNarrow * (w / total))) for w in widths]
    current = sum(new)
    if maxWidth <= current:
        return new
    gap = current - maxWidth
    widest = max(range(len(new)), key=lambda i: (new[i], -i))
    new[widest] = max(1, new[widest] - gap)
    return new


def _align(text: str, width: int) -> str:
    if len(text) >= width:
        return text[:width] + "|"
    return centre(text, width) + "|"


def renderTable(rows: Sequence[Sequence[tuple[str, Any]]], maxLineLen: int = MAX_LINE_LEN) -> str:
    """
    A table as clique's human writer prints it, followed by an empty line;
    nothing for no rows.
    """
    if not rows:
        return ""
    header = [column for column, _ in rows[0]]
    body = [[cell(value) for _, value in row] for row in rows]
    widths = [len(h) for h in header]
    for line in body:
        widths = [max(w, _fieldLength(v)) for w, v in zip(widths, line, strict=True)]
    widths = fitWidths(widths, maxLineLen - (1 + len(header)))
    border = "+" + "".join("-" * w + "+" for w in widths) + "\n"
    out = [border, "|" + "".join(_align(h, w) for h, w in zip(header, widths, strict=True))]
    out.append("\n")
    out.append(border)
    for line in body:
        fields = [[part for part in value.split("\n") if part] or [""] for value in line]
        height = max(len(f) for f in fields)
        for n in range(height):
            parts = [f[n] if n < len(f) else "" for f in fields]
            out.append("|" + "".join(_align(p, w) for p, w in zip(parts, widths, strict=True)))
            out.append("\n")
    out.append(border)
    return "".join(out) + "\n"


__all__ = [
    "Alert",
    "Command",
    "CommandRegistry",
    "FlagSpec",
    "KeySpec",
    "Table",
    "Text",
    "Usage",
    "UsageError",
    "renderTable",
    "write",
]
