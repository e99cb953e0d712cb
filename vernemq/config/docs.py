# -*- test-case-name: tests.test_config_docs -*-
"""
Generate C{docs/configuration.md} from the schema
(L{vernemq.config.schema}), so the reference cannot drift from the code::

    python -m vernemq.config.docs > docs/configuration.md

C{tests/test_config_docs.py} regenerates it and fails, naming this command,
when the committed file differs.  Hand-written prose lives in this module
(the format of C{vmq.passwd} and C{vmq.acl}); keys, defaults and one-line
descriptions come from the schema only.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from vernemq.config import schema as s
from vernemq.config.types import HostPort

__all__ = ["COMMAND", "format_default", "render"]

#: How to regenerate the file (quoted by the drift test).
COMMAND = "python -m vernemq.config.docs > docs/configuration.md"

#: A C{$name} segment of a schema key, shown as C{<name>}.
_PLACEHOLDER = re.compile(r"\$([a-z_]+)")

#: Global keys shown in the authentication section, in this order.
AUTH_KEYS: tuple[str, ...] = (
    "allow_anonymous",
    "plugins.vmq_passwd",
    "vmq_passwd.password_file",
    "vmq_passwd.password_reload_interval",
    "plugins.vmq_acl",
    "vmq_acl.acl_file",
    "vmq_acl.acl_reload_interval",
    "disconnect_on_unauthorized_publish_v3",
)

#: Cascading listener settings that are about authentication.
AUTH_LISTENER_SETTINGS: tuple[str, ...] = (
    "allow_anonymous_override",
    "auth_plugins",
    "authz_plugins",
    "use_identity_as_username",
    "proxy_protocol_use_cn_as_username",
)

#: Global keys shown in the listener section.
LISTENER_GLOBAL_KEYS: tuple[str, ...] = (
    "max_ws_frame_size",
    "mqtt_connect_timeout",
    "tcp_listen_options",
)

_AUTH_PROSE = """\
Clients are authenticated and authorised through one hook chain
(`auth_on_register`, `auth_on_publish`, `auth_on_subscribe` and their
`_m5` forms; each plugin answers ok, next or error, as in VerneMQ).
With `allow_anonymous = on` (or `allow_anonymous_override = on` on the
listener) `auth_on_register` is not called at all; the ACL still applies.

**vmq_passwd** reads `user:$6$<base64 salt>$<base64 sha512(password + salt)>`
lines (VerneMQ's and mosquitto_passwd 1.x's format; `#` lines are comments)
written by `vmq-passwd`:

    vmq-passwd -c etc/vmq.passwd henry    # create the file (-cf: overwrite)
    vmq-passwd etc/vmq.passwd bob         # add bob or change his password
    vmq-passwd -D etc/vmq.passwd bob      # delete bob
    vmq-passwd -U etc/vmq.passwd          # hash a user:plain-text file

The password is asked for twice (from standard input when it is not a
terminal).  A right password connects; a wrong one is refused with CONNACK 4
(MQTT 3.x) / 0x86 (5.0); a user name the file does not know, or no
credentials, is left to the next plugin and, when none accepts, refused with
5 / 0x87 -- VerneMQ's codes.  Both cases cost one SHA-512 and one
constant-time comparison.

**vmq_acl** reads lines `topic [read|write] <filter>` (before any `user`
line: for everybody), `user <name>` (the following `topic` lines are that
user's) and `pattern [read|write] <filter>` (for everybody; a level that is
exactly `%u`, `%c` or `%m` becomes the user name, client id or mountpoint).
Without `read`/`write` a line grants both.  The shipped `etc/vmq.acl` is
VerneMQ's `topic #`: everybody may do everything, and the broker then skips
the publish check per message.  A subscription needs a read rule that
covers its whole filter (`#` in a filter only by `#` in the rule); only the
refused filters of a SUBSCRIBE get 0x80 (3.x) / 0x87 (5.0).  A refused
PUBLISH closes an MQTT 3.1.1 connection, is acknowledged and dropped for
3.1 (closed with `disconnect_on_unauthorized_publish_v3 = on`), and gets
PUBACK/PUBREC 0x87 for 5.0.  An ACL file that cannot be read refuses every
publish and subscribe.

Both files are checked every reload interval and re-read when their size,
times or inode changed; a file that becomes unreadable keeps the rules read
before.  Relative paths are relative to the directory the node runs in.
"""


def format_default(value: Any) -> str:
    """A typed default as it would be written in C{vernemq.conf}."""
    if value is None:
        return "unset"
    if value is s.INHERIT:
        return "-1 (inherit)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, HostPort):
        return f"{value.host}:{value.port}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if value == "":
        return '""'
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _listener_setting_rows(names: tuple[str, ...] | None, exclude: tuple[str, ...]) -> list[str]:
    rows = [
        _row("setting", "keys", "kinds", "default", "implemented for", "description"),
        _row("---", "---", "---", "---", "---", "---"),
    ]
    for ls in s.LISTENER_SETTINGS:
        if names is not None and ls.name not in names:
            continue
        if ls.name in exclude:
            continue
        keys = []
        if ls.global_level:
            keys.append(_code(f"listener.{ls.name}"))
        keys.append(_code(f"listener.<kind>.{ls.name}"))
        keys.append(_code(f"listener.<kind>.<name>.{ls.name}"))
        default = format_default(ls.default)
        per_kind = ", ".join(
            f"{kind}: {format_default(value)}" for kind, value in ls.kind_defaults
        )
        if per_kind:
            default += f" ({per_kind})"
        if ls.inherit_minus_one:
            default += "; -1 below the global level = inherit"
        implemented = [k for k in ls.kinds if s.listener_setting_implemented(ls, k)]
        rows.append(
            _row(
                _code(ls.name),
                " ".join(keys),
                ", ".join(ls.kinds),
                default,
                ", ".join(implemented) or "no",
                ls.doc,
            )
        )
    return rows


def _key_rows(keys: list[str]) -> list[str]:
    rows = [
        _row("key", "default", "implemented", "hidden", "description"),
        _row("---", "---", "---", "---", "---"),
    ]
    for key in keys:
        setting = s.SCHEMA[key]
        rows.append(
            _row(
                _code(key),
                format_default(setting.default),
                _yes(setting.implemented),
                _yes(setting.hidden),
                setting.doc,
            )
        )
    return rows


def render() -> str:
    """The whole of C{docs/configuration.md}."""
    out: list[str] = [
        "# Configuration reference (`vernemq.conf`)",
        "",
        "<!-- Generated from vernemq/config/schema.py; do not edit.",
        f"     Regenerate with: {COMMAND} -->",
        "",
        "Every key the node accepts, with its default, generated from the schema",
        f"(`{COMMAND}`; `tests/test_config_docs.py` fails when this file is stale).",
        "The format is VerneMQ's: one `key = value` per line, `#` comments, flags",
        "`on`/`off`; a later line for the same key wins.  *implemented* says",
        "whether the feature behind a key works yet: other keys are accepted,",
        "validated and warned about at startup.  *hidden* keys are absent from",
        "VerneMQ's generated file but may be set.  `<name>` stands for a name of",
        "your choice, `<kind>` for a listener kind.",
        "",
        "## Listeners",
        "",
        "### Addresses",
        "",
        "A listener exists only when its address is set: `ip:port`, `[ipv6]:port`,",
        "or `local:/path/to/socket:0` for a Unix socket.",
        "",
    ]
    out += _key_rows([f"listener.{kind}.$name" for kind in s.LISTENER_KINDS])
    out += [
        "",
        "### Settings",
        "",
        "Each setting cascades: the global key (where there is one), then the",
        "kind's key, then the named listener's key; the most specific one set wins.",
        "",
    ]
    out += _listener_setting_rows(None, AUTH_LISTENER_SETTINGS)
    out += ["", "### Related keys", ""]
    out += _key_rows(
        list(LISTENER_GLOBAL_KEYS)
        + [f"listener.{kind}.$name.http_module.$module.auth.mode" for kind in s.HTTP_KINDS]
    )
    out += ["", "## Authentication and authorisation", "", _AUTH_PROSE.rstrip(), ""]
    out += _key_rows(list(AUTH_KEYS))
    out += ["", "Per listener:", ""]
    out += _listener_setting_rows(AUTH_LISTENER_SETTINGS, ())
    shown = set(AUTH_KEYS) | set(LISTENER_GLOBAL_KEYS)
    rest = [k for k in s.SCHEMA if not k.startswith("listener.") and k not in shown]
    out += ["", "## Every other key", ""]
    out += _key_rows(rest)
    out.append("")
    return _PLACEHOLDER.sub(r"<\1>", "\n".join(out))


def main() -> None:
    """Write the reference to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
