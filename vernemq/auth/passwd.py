# -*- test-case-name: tests.test_auth_passwd -*-
"""
C{vmq_passwd}: authentication from a password file, as in VerneMQ.

The file format
===============

One C{user:hash} entry per line, as written by C{vmq-passwd} (and by
C{mosquitto_passwd} 1.x, whose format VerneMQ took over)::

    henry:$6$<base64 salt>$<base64 sha512(password + salt)>

The salt is 12 random bytes; the digest is SHA-512 over the password's
bytes followed by the raw salt; both are standard base64 with padding.
Blank lines and lines starting with C{#} are ignored (VerneMQ itself
stops at them).  A line that is not such an entry -- a plain-text
password, say -- is skipped with a warning that names the line number
only: the file's content is never logged.  C{vmq-passwd -U} turns a
plain-text file into a hashed one.

The hooks
=========

C{auth_on_register} and C{auth_on_register_m5} answer as VerneMQ's
C{vmq_passwd:check/2} does:

  - no user name or no password: L{NEXT} (another plugin may decide);
  - a user name the file does not hold: L{NEXT};
  - the right password: L{OK};
  - a wrong password: C{Error("invalid_credentials")} (CONNACK 4 / 0x86).

When every plugin says next, the chain refuses with
C{plugin_chain_exhausted}, which the broker answers with CONNACK 5 / 0x87
(not authorized): so, as in VerneMQ, an unknown user and a wrong password
get different CONNACK codes.  They do cost the same: for an unknown user
the password is hashed with a dummy salt and compared in constant time
(L{hmac.compare_digest}) exactly as for a known one, so the time taken
does not tell whether a user name exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vernemq.auth.reload import ReloadingFile
from vernemq.interfaces import IAuthOnRegister, IAuthOnRegisterM5, IPlugin
from vernemq.plugins.hooks import NEXT, OK, Error, Ok, _Next

__all__ = [
    "SALT_LENGTH",
    "PasswordFile",
    "VmqPasswd",
    "check_password",
    "hash_password",
    "parse_hash",
    "parse_password_file",
]

#: Salt length of C{vmq-passwd} (and C{mosquitto_passwd} 1.x) C{$6$} entries.
SALT_LENGTH: Final = 12

_DIGEST_SIZE: Final = hashlib.sha512().digest_size

#: Hashed against when the user is unknown, so that every failed login
#: costs one SHA-512 and one constant-time comparison.
_DUMMY: Final = (b"\0" * SALT_LENGTH, b"\0" * _DIGEST_SIZE)

INVALID_CREDENTIALS: Final = Error("invalid_credentials")


def _sha512(password: bytes, salt: bytes) -> bytes:
    return hashlib.sha512(password + salt).digest()


def hash_password(password: str | bytes, salt: bytes | None = None) -> str:
    """
    Hash C{password} the way C{vmq-passwd} does.

    @param password: the password; L{str} is encoded as UTF-8.
    @param salt: the raw salt; C{SALT_LENGTH} random bytes when omitted.
    @return: C{$6$<base64 salt>$<base64 digest>}, the part of a
        C{vmq.passwd} line after the colon.
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    digest = _sha512(password, salt)
    return "$6${}${}".format(
        base64.b64encode(salt).decode("ascii"), base64.b64encode(digest).decode("ascii")
    )


def parse_hash(hashed: str) -> tuple[bytes, bytes] | None:
    """
    Split a C{$6$salt$digest} string into the raw salt and digest.

    @return: C{(salt, digest)}, or L{None} when C{hashed} is not in that
        format (wrong id, bad base64, a digest that is not 64 bytes).
    """
    parts = hashed.split("$")
    if len(parts) != 4 or parts[0] or parts[1] != "6":
        return None
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or len(digest) != _DIGEST_SIZE:
        return None
    return salt, digest


def check_password(password: str | bytes, hashed: str) -> bool:
    """
    Check C{password} against a C{$6$} hash in constant time.

    @return: whether they match; L{False} for a malformed hash (which costs
        the same as a mismatch).
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    parsed = parse_hash(hashed)
    salt, expected = parsed if parsed is not None else _DUMMY
    ok = hmac.compare_digest(_sha512(password, salt), expected)
    return ok and parsed is not None


@dataclass
class PasswordFile:
    """
    The parsed content of a password file.

    @ivar entries: user name -> C{(salt, digest)}.
    @ivar problems: C{(line number, what is wrong)} for each skipped line;
        never the line's content.
    """

    entries: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)


def parse_password_file(data: bytes) -> PasswordFile:
    """
    Parse the bytes of a C{vmq.passwd} file (sans-IO).

    A later entry for the same user wins, as in VerneMQ.
    """
    result = PasswordFile()
    text = data.decode("utf-8", errors="replace")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            result.problems.append((lineno, "not a user:hash entry"))
            continue
        parsed = parse_hash(hashed)
        if parsed is None:
            result.problems.append(
                (lineno, "not a $6$ hash (a plain-text password? see vmq-passwd -U)")
            )
            continue
        result.entries[user] = parsed
    return result


@implementer(IPlugin, IAuthOnRegister, IAuthOnRegisterM5)
class VmqPasswd(ReloadingFile):
    """
    The C{vmq_passwd} plugin: C{auth_on_register} and
    C{auth_on_register_m5} against C{vmq_passwd.password_file}, re-read
    every C{vmq_passwd.password_reload_interval} seconds when it changed.
    """

    name = "vmq_passwd"
    log = Logger()

    def __init__(self, path: str, interval: float, reactor: IReactorTime) -> None:
        super().__init__(path, interval, reactor)
        self._entries: dict[str, tuple[bytes, bytes]] = {}

    def __len__(self) -> int:
        """The number of users."""
        return len(self._entries)

    def apply(self, data: bytes) -> None:
        """Replace the users with those of C{data}."""
        parsed = parse_password_file(data)
        for lineno, problem in parsed.problems:
            self.log.warn(
                "vmq_passwd: {path} line {lineno} skipped: {problem}",
                path=self.path,
                lineno=lineno,
                problem=problem,
            )
        self._entries = parsed.entries
        self.log.info(
            "vmq_passwd: loaded {users} users from {path}",
            users=len(parsed.entries),
            path=self.path,
        )

    def unreadable(self, error: OSError, first: bool) -> None:
        """Log that the password file cannot be read."""
        if first:
            # VerneMQ says nothing; the file is optional while
            # allow_anonymous = on.
            self.log.info(
                "vmq_passwd: cannot read password file {path} ({error}); no client "
                "can log in with a password until it can be read",
                path=self.path,
                error=error.strerror,
            )
        else:
            self.log.error(
                "vmq_passwd: cannot read password file {path} ({error}); keeping the "
                "users loaded before",
                path=self.path,
                error=error.strerror,
            )

    def check_credentials(self, username: str | None, password: bytes | None) -> Ok | Error | _Next:
        """
        VerneMQ's C{vmq_passwd:check/2}: L{NEXT} without credentials or
        for an unknown user, L{OK} or C{Error("invalid_credentials")}.
        The work done is the same for a known and an unknown user.
        """
        if username is None or password is None:
            return NEXT
        entry = self._entries.get(username)
        salt, expected = entry if entry is not None else _DUMMY
        ok = hmac.compare_digest(_sha512(password, salt), expected)
        if entry is None:
            return NEXT
        return OK if ok else INVALID_CREDENTIALS

    def auth_on_register(
        self,
        peer: tuple[str, int],
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_session: bool,
    ) -> Ok | Error | _Next:
        """See L{check_credentials}."""
        return self.check_credentials(username, password)

    def auth_on_register_m5(
        self,
        peer: tuple[str, int],
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_start: bool,
        properties: dict[str, object],
    ) -> Ok | Error | _Next:
        """See L{check_credentials}."""
        return self.check_credentials(username, password)
