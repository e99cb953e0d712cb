# -*- test-case-name: tests.test_auth_passwd_cli -*-
"""
C{vmq-passwd}: manage a C{vmq.passwd} file, with the options and behaviour
of VerneMQ's tool::

    vmq-passwd [-c | -cf | -D] passwordfile username
    vmq-passwd -U passwordfile

  - C{vmq-passwd FILE USER} adds USER or changes its password; FILE must
    exist.
  - C{-c} creates FILE with USER; it refuses when FILE exists, C{-cf}
    overwrites it (after a warning).
  - C{-D} deletes USER (a warning, and success, when it is not there).
  - C{-U} hashes the plain-text passwords of a C{user:password} file in
    place.  Unlike VerneMQ's tool, entries that already are C{$6$} hashes
    and C{#} comment lines are kept as they are, so running it twice does
    not make the file unusable.

The password is asked for twice (C{Password:}, C{Reenter password:}):
without echo when standard input is a terminal, else read as two lines from
standard input, as the real tool does; an empty password or two different
ones are refused.  Passwords never appear on the command line.

The file is rewritten through a temporary file in the same directory and
renamed over the old one, keeping its permission bits (a new file gets the
usual C{0666 & ~umask}); a running broker notices the change at its next
C{vmq_passwd.password_reload_interval}.  Exit status: 0 on success, 1 on
any error (usage included).
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from collections.abc import Callable
from typing import TextIO

from vernemq.auth.passwd import hash_password, parse_hash

__all__ = ["main", "run"]

USAGE = """\
vmq-passwd is a tool for managing password files for VerneMQ.

Usage: vmq-passwd [-c | -D] passwordfile username
       vmq-passwd -U passwordfile
 -c[f] : create a new password file. Use -cf to (f)orce overwriting existing files.
 -D    : delete the username rather than adding/updating its password.
 -U    : update a plain text password file to use hashed passwords.
"""


class _Failed(Exception):
    """A message for standard error; exit status 1."""


def _entry(username: str, password: str) -> str:
    return f"{username}:{hash_password(password)}\n"


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.readlines()
    except OSError as e:
        raise _Failed(f"Error: Unable to open password file {path}. {e.strerror}.") from None


def _write(path: str, lines: list[str]) -> None:
    """Replace C{path} with C{lines}, atomically, keeping its mode."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode: int | None = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=".vmq-passwd-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.writelines(lines)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _Failed(f"Error: Unable to write password file {path}. {e.strerror}.") from None


def _user_of(line: str) -> str | None:
    """The user name of an entry line; L{None} for comments and blank lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.partition(":")[0]


class _Prompter:
    """Asks for the new password twice."""

    def __init__(
        self,
        stdin: TextIO,
        stdout: TextIO,
        interactive: bool,
        ask: Callable[[str], str],
    ) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = interactive
        self.ask = ask

    def _one(self, prompt: str) -> str:
        if self.interactive:
            value = self.ask(prompt)
        else:
            self.stdout.write(prompt)
            self.stdout.flush()
            value = self.stdin.readline().rstrip("\r\n")
            self.stdout.write("\n")
        if not value:
            raise _Failed("Error: Empty password.")
        return value

    def password(self) -> str:
        first = self._one("Password: ")
        second = self._one("Reenter password: ")
        if first != second:
            raise _Failed("Error: Passwords do not match.")
        return first


def _check_username(username: str) -> None:
    if not username or ":" in username or "\n" in username or "\r" in username:
        raise _Failed("Error: Usernames must not be empty or contain ':' or line breaks.")


def _create(path: str, username: str, force: bool, prompter: _Prompter, stdout: TextIO) -> None:
    _check_username(username)
    if os.path.exists(path):
        if not force:
            raise _Failed(
                f"Error: File {path} already exists. Please use -cf in case you want "
                "to overwrite the file"
            )
        stdout.write(
            "File already exists. Abort now (Ctrl-C) unless you intend to overwrite it!\n"
        )
    password = prompter.password()
    _write(path, [_entry(username, password)])


def _update(path: str, username: str, prompter: _Prompter) -> None:
    _check_username(username)
    lines = _read_lines(path)
    password = prompter.password()
    out: list[str] = []
    found = False
    for line in lines:
        if _user_of(line) == username:
            if not found:
                out.append(_entry(username, password))
                found = True
            continue
        out.append(line)
    if not found:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(_entry(username, password))
    _write(path, out)


def _delete(path: str, username: str, stderr: TextIO) -> None:
    lines = _read_lines(path)
    out = [line for line in lines if _user_of(line) != username]
    if len(out) == len(lines):
        stderr.write(f"Warning: User {username} not found in password file.\n")
    _write(path, out)


def _upgrade(path: str, stderr: TextIO) -> None:
    lines = _read_lines(path)
    out: list[str] = []
    for lineno, line in enumerate(lines, 1):
        username = _user_of(line)
        body = line.rstrip("\r\n")
        _, sep, password = body.partition(":")
        if username is None or not sep or parse_hash(password) is not None:
            out.append(line)
            continue
        if not password or not username:
            stderr.write(f"Warning: line {lineno} has an empty user name or password; kept.\n")
            out.append(line)
            continue
        out.append(_entry(username, password))
    _write(path, out)


def run(
    argv: list[str],
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    interactive: bool,
    ask: Callable[[str], str] = getpass.getpass,
) -> int:
    """
    Run C{vmq-passwd} with the arguments C{argv} (without the program name).

    @param interactive: whether standard input is a terminal (then C{ask}
        reads a password without echo).
    @return: the exit status.
    """
    prompter = _Prompter(stdin, stdout, interactive, ask)
    try:
        if len(argv) == 3:
            flag, path, username = argv
            if flag in ("-c", "-cf"):
                _create(path, username, flag == "-cf", prompter, stdout)
            elif flag == "-D":
                _delete(path, username, stderr)
            else:
                stdout.write(USAGE)
                return 1
        elif len(argv) == 2:
            if argv[0] == "-U":
                _upgrade(argv[1], stderr)
            elif argv[0].startswith("-"):
                stdout.write(USAGE)
                return 1
            else:
                _update(argv[0], argv[1], prompter)
        else:
            stdout.write(USAGE)
            return 1
    except _Failed as e:
        stderr.write(f"{e}\n")
        return 1
    except KeyboardInterrupt:
        return 1
    return 0


def main() -> None:
    """The C{vmq-passwd} console script."""
    sys.exit(
        run(sys.argv[1:], sys.stdin, sys.stdout, sys.stderr, sys.stdin.isatty())
    )


if __name__ == "__main__":
    main()
