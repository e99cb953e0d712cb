# -*- test-case-name: tests.test_auth_acl -*-
"""
C{vmq_acl}: authorisation of PUBLISH and SUBSCRIBE from an ACL file, as in
VerneMQ.

The file format
===============

::

    # comment
    topic [read|write] <filter>     # for everybody (lines before any user line)
    user <username>
    topic [read|write] <filter>     # for that user only
    pattern [read|write] <filter>   # for everybody, with substitutions

Without C{read} or C{write} a line grants both.  Filters may use the MQTT
wildcards C{+} and C{#}.  In C{pattern} lines a level that is exactly
C{%u}, C{%c} or C{%m} is replaced by the client's user name, client id
or mountpoint; C{pattern} lines apply to everybody even after a C{user}
line.  Leading and trailing blanks of a line are ignored.  A line that
is none of these, or whose filter is not a valid MQTT filter, is skipped
with a warning naming its line number (VerneMQ stops reading the file at
such a line).

VerneMQ ships C{topic #} alone ("everybody may do everything"), as
C{etc/vmq.acl} here does.

Decisions
=========

A user is allowed when one of these matches, in this order (VerneMQ's
C{vmq_acl:check/4}): the lines for everybody, the lines of the user (not
for anonymous clients), the patterns.  A pattern that needs C{%u} does
not apply to an anonymous client, and a pattern whose substituted value
contains C{/}, C{+} or C{#} does not apply either (so a client id or
user name cannot widen a pattern into a wildcard).

  - C{auth_on_publish}: L{OK} when a write rule matches the topic, else
    L{NEXT} (so another plugin may still allow it; when nobody does, the
    broker refuses: the MQTT 3.1.1 connection is closed, a 3.1 PUBLISH is
    acknowledged and dropped unless C{disconnect_on_unauthorized_publish_v3},
    MQTT 5.0 gets reason code 0x87 in PUBACK/PUBREC).
  - C{auth_on_subscribe}: each filter must be I{covered} by a read rule:
    every topic the subscription can match must be matched by the rule.
    Unlike VerneMQ, where C{+} in a rule also accepts a C{#} filter (so
    C{topic read a/+} lets a client subscribe to C{a/#}), C{#} in a
    filter is only covered by C{#} in the rule.  Shared subscriptions
    (C{$share/<group>/<filter>}) are checked by their C{<filter>}.  When
    every filter is allowed the answer is L{OK}; when none is, L{NEXT}
    (VerneMQ's answer for the whole list); when only some are, C{Ok}
    with the C{topics} modifier refusing just the others, so the SUBACK
    refuses only those (0x80 for MQTT 3, 0x87 for 5.0).

When the file grants C{#} for writing to everybody (a C{topic #},
C{topic write #}, C{pattern #} or C{pattern write #} line), the plugin's
C{allows_every_publish} is true and the broker skips the publish chain per
message (L{vernemq.plugins.hooks.HookChain.publish_open}); it is
recomputed on every reload.

Reloads do not cancel subscriptions already granted (VerneMQ does not
either); they decide every new PUBLISH and SUBSCRIBE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.auth.reload import ReloadingFile
from vernemq.broker.topics import parse_shared, validate_topic_filter
from vernemq.interfaces import (
    IAuthOnPublish,
    IAuthOnPublishM5,
    IAuthOnSubscribe,
    IAuthOnSubscribeM5,
    IPlugin,
)
from vernemq.plugins.hooks import NEXT, OK, Error, Ok, _Next

__all__ = ["ACL", "VmqACL", "covers", "parse_acl"]

Filter = tuple[str, ...]
"""A filter split into its levels."""

_SUBSTITUTIONS: Final = frozenset({"%u", "%c", "%m"})
_EVERYTHING: Final[Filter] = ("#",)


def covers(rule: Filter, wanted: Filter) -> bool:
    """
    Whether the rule filter C{rule} allows C{wanted}: a topic name (for
    PUBLISH) or a filter (for SUBSCRIBE), both split into levels.

    A topic name is covered when the rule matches it; a filter when the
    rule matches every topic the filter can match: C{+} in C{wanted} needs
    C{+} or C{#} in the rule, C{#} in C{wanted} needs C{#}.
    """
    n = len(wanted)
    for i, level in enumerate(rule):
        if level == "#":
            return True
        if i >= n:
            return False
        mine = wanted[i]
        if level == "+":
            if mine == "#":
                return False
        elif level != mine:
            return False
    return len(rule) == n


def _substitute(
    pattern: Filter, username: str | None, client_id: str, mountpoint: str
) -> Filter | None:
    """
    C{pattern} with its C{%u}, C{%c}, C{%m} levels replaced, or L{None}
    when it cannot apply (no user name for C{%u}; a value with C{/}, C{+}
    or C{#}).
    """
    out: list[str] = []
    for level in pattern:
        if level in _SUBSTITUTIONS:
            if level == "%u":
                if username is None:
                    return None
                value = username
            elif level == "%c":
                value = client_id
            else:
                value = mountpoint
            if "/" in value or "+" in value or "#" in value:
                return None
            out.append(value)
        else:
            out.append(level)
    return tuple(out)


@dataclass
class _Rules:
    """The rules of one access kind (read or write)."""

    everybody: list[Filter] = field(default_factory=list)
    users: dict[str, list[Filter]] = field(default_factory=dict)
    patterns: list[Filter] = field(default_factory=list)

    def allows(
        self, wanted: Filter, username: str | None, client_id: str, mountpoint: str
    ) -> bool:
        for rule in self.everybody:
            if covers(rule, wanted):
                return True
        if username is not None:
            for rule in self.users.get(username, ()):
                if covers(rule, wanted):
                    return True
        for pattern in self.patterns:
            substituted = _substitute(pattern, username, client_id, mountpoint)
            if substituted is not None and covers(substituted, wanted):
                return True
        return False

    def add(self, user: str | None, pattern: bool, rule: Filter) -> None:
        if pattern:
            self.patterns.append(rule)
        elif user is None:
            self.everybody.append(rule)
        else:
            self.users.setdefault(user, []).append(rule)


@dataclass
class ACL:
    """
    The parsed content of an ACL file.

    @ivar read: the rules for SUBSCRIBE.
    @ivar write: the rules for PUBLISH.
    @ivar problems: C{(line number, what is wrong)} for each skipped line.
    @ivar lines: the number of C{topic} and C{pattern} lines in force.
    """

    lines: int = 0
    read: _Rules = field(default_factory=_Rules)
    write: _Rules = field(default_factory=_Rules)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def allows_every_publish(self) -> bool:
        """Whether everybody may publish to every topic."""
        return _EVERYTHING in self.write.everybody or _EVERYTHING in self.write.patterns

    def may_publish(self, username: str | None, subscriber_id: tuple[str, str], topic: str) -> bool:
        """Whether C{topic} may be published to."""
        mountpoint, client_id = subscriber_id
        return self.write.allows(tuple(topic.split("/")), username, client_id, mountpoint)

    def may_subscribe(
        self, username: str | None, subscriber_id: tuple[str, str], topic_filter: str
    ) -> bool:
        """Whether C{topic_filter} may be subscribed to."""
        mountpoint, client_id = subscriber_id
        _, plain = parse_shared(topic_filter)
        return self.read.allows(tuple(plain.split("/")), username, client_id, mountpoint)


_KEYWORDS: Final = (
    ("topic read ", False, (True, False)),
    ("topic write ", False, (False, True)),
    ("topic ", False, (True, True)),
    ("pattern read ", True, (True, False)),
    ("pattern write ", True, (False, True)),
    ("pattern ", True, (True, True)),
)


def parse_acl(lines: Iterable[str]) -> ACL:
    """
    Parse the lines of a C{vmq.acl} file (sans-IO).
    """
    acl = ACL()
    user: str | None = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            user = line[5:].strip()
            continue
        kind = next((k for k in _KEYWORDS if line.startswith(k[0])), None)
        if kind is None:
            acl.problems.append((lineno, "not a topic, user or pattern line"))
            continue
        keyword, pattern, (read, write) = kind
        topic_filter = line[len(keyword) :].strip()
        if not validate_topic_filter(topic_filter):
            acl.problems.append((lineno, "not a valid MQTT topic filter"))
            continue
        first = topic_filter.split(" ", 1)[0]
        if first in ("readwrite", "deny"):
            acl.problems.append(
                (lineno, f"mosquitto's {first!r} is not a vmq_acl keyword; "
                 "it is taken as part of the topic")
            )
        rule = tuple(topic_filter.split("/"))
        acl.lines += 1
        if read:
            acl.read.add(user, pattern, rule)
        if write:
            acl.write.add(user, pattern, rule)
    return acl


@implementer(IPlugin, IAuthOnPublish, IAuthOnPublishM5, IAuthOnSubscribe, IAuthOnSubscribeM5)
class VmqACL(ReloadingFile):
    """
    The C{vmq_acl} plugin: C{auth_on_publish(_m5)} and
    C{auth_on_subscribe(_m5)} from C{vmq_acl.acl_file}, re-read every
    C{vmq_acl.acl_reload_interval} seconds when it changed.

    @ivar acl: the rules in force.
    @ivar allows_every_publish: see the module docstring.
    @ivar changed: called after a reload changed L{allows_every_publish}
        (the broker passes its hook chain's C{refresh}).
    """

    name = "vmq_acl"
    log = Logger()

    def __init__(
        self,
        path: str,
        interval: float,
        reactor: IReactorTime,
        changed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(path, interval, reactor)
        self.acl = ACL()
        self.allows_every_publish = False
        self.changed = changed

    def apply(self, data: bytes) -> None:
        """Replace the rules with those of C{data}."""
        acl = parse_acl(data.decode("utf-8", errors="replace").splitlines())
        for lineno, problem in acl.problems:
            self.log.warn(
                "vmq_acl: {path} line {lineno}: {problem}",
                path=self.path,
                lineno=lineno,
                problem=problem,
            )
        self.acl = acl
        self.log.info(
            "vmq_acl: loaded {rules} rules from {path}", rules=acl.lines, path=self.path
        )
        self._set_open(acl.allows_every_publish)

    def _set_open(self, value: bool) -> None:
        if value != self.allows_every_publish:
            self.allows_every_publish = value
            if self.changed is not None:
                self.changed()

    def unreadable(self, error: OSError, first: bool) -> None:
        """Log that the ACL file cannot be read."""
        if first:
            self.log.error(
                "vmq_acl: cannot read ACL file {path} ({error}); every publish and "
                "subscribe is refused until it can be read",
                path=self.path,
                error=error.strerror,
            )
        else:
            self.log.error(
                "vmq_acl: cannot read ACL file {path} ({error}); keeping the rules "
                "loaded before",
                path=self.path,
                error=error.strerror,
            )

    def auth_on_publish(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
    ) -> Ok | _Next:
        """L{OK} when a write rule covers C{topic}, else L{NEXT}."""
        return OK if self.acl.may_publish(username, subscriber_id, topic) else NEXT

    def auth_on_publish_m5(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
        properties: dict[str, object],
    ) -> Ok | _Next:
        """As L{auth_on_publish}."""
        return OK if self.acl.may_publish(username, subscriber_id, topic) else NEXT

    def auth_on_subscribe(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
    ) -> Ok | Error | _Next:
        """
        L{OK} when a read rule covers every filter, L{NEXT} when none is
        covered, else C{Ok({"topics": ...})} refusing the others.
        """
        acl = self.acl
        allowed = [acl.may_subscribe(username, subscriber_id, f) for f, _ in topics]
        if all(allowed):
            return OK
        if not any(allowed):
            return NEXT
        return Ok(
            {
                "topics": [
                    (f, qos if ok else None)
                    for (f, qos), ok in zip(topics, allowed, strict=True)
                ]
            }
        )

    def auth_on_subscribe_m5(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
        properties: dict[str, object],
    ) -> Ok | Error | _Next:
        """As L{auth_on_subscribe}."""
        return self.auth_on_subscribe(username, subscriber_id, topics)
