"""
Tests for L{vernemq.auth.passwd_cli}, the C{vmq-passwd} tool.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from vernemq.auth.passwd import check_password, hash_password, parse_password_file
from vernemq.auth.passwd_cli import USAGE, run


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


class CLITests(SynchronousTestCase):
    """vmq-passwd's options, as VerneMQ's tool has them."""

    def setUp(self) -> None:
        self.path = self.mktemp()

    def vmq_passwd(
        self, *argv: str, stdin: str = "", tty: list[str] | None = None
    ) -> Result:
        out, err = io.StringIO(), io.StringIO()
        answers = list(tty or [])
        prompts: list[str] = []

        def ask(prompt: str) -> str:
            prompts.append(prompt)
            return answers.pop(0)

        code = run(list(argv), io.StringIO(stdin), out, err, tty is not None, ask)
        if tty is not None:
            self.assertEqual(prompts, ["Password: ", "Reenter password: "][: len(prompts)])
        return Result(code, out.getvalue(), err.getvalue())

    def read(self) -> str:
        with open(self.path) as f:
            return f.read()

    def users(self) -> dict[str, tuple[bytes, bytes]]:
        with open(self.path, "rb") as f:
            return parse_password_file(f.read()).entries

    def hashOf(self, user: str) -> str:
        for line in self.read().splitlines():
            if line.startswith(user + ":"):
                return line.split(":", 1)[1]
        raise AssertionError(f"no {user}")

    def test_createFromStdin(self) -> None:
        """-c reads the password twice from standard input and hashes it."""
        r = self.vmq_passwd("-c", self.path, "henry", stdin="pw1\npw1\n")
        self.assertEqual((r.code, r.stderr), (0, ""))
        self.assertIn("Password: ", r.stdout)
        self.assertIn("Reenter password: ", r.stdout)
        self.assertTrue(check_password("pw1", self.hashOf("henry")))
        self.assertNotIn("pw1", self.read())

    def test_createInteractive(self) -> None:
        """On a terminal the password is asked for twice without echo."""
        r = self.vmq_passwd("-c", self.path, "henry", tty=["pw1", "pw1"])
        self.assertEqual(r.code, 0)
        self.assertTrue(check_password("pw1", self.hashOf("henry")))

    def test_createRefusesExisting(self) -> None:
        """-c refuses an existing file; -cf overwrites it."""
        self.vmq_passwd("-c", self.path, "henry", stdin="a\na\n")
        r = self.vmq_passwd("-c", self.path, "bob", stdin="b\nb\n")
        self.assertEqual(r.code, 1)
        self.assertIn("already exists", r.stderr)
        self.assertEqual(list(self.users()), ["henry"])
        r = self.vmq_passwd("-cf", self.path, "bob", stdin="b\nb\n")
        self.assertEqual(r.code, 0)
        self.assertEqual(list(self.users()), ["bob"])

    def test_mismatch(self) -> None:
        """Two different passwords, or an empty one, change nothing."""
        self.vmq_passwd("-c", self.path, "henry", stdin="a\na\n")
        before = self.read()
        r = self.vmq_passwd(self.path, "henry", stdin="x\ny\n")
        self.assertEqual((r.code, r.stderr), (1, "Error: Passwords do not match.\n"))
        r = self.vmq_passwd(self.path, "henry", stdin="\n\n")
        self.assertEqual((r.code, r.stderr), (1, "Error: Empty password.\n"))
        r = self.vmq_passwd(self.path, "henry", stdin="")
        self.assertEqual(r.code, 1)
        self.assertEqual(self.read(), before)

    def test_addAndUpdate(self) -> None:
        """Without a flag a user is added, or its password changed in place."""
        with open(self.path, "w") as f:
            f.write("# keep me\n")
        self.assertEqual(self.vmq_passwd(self.path, "a", stdin="1\n1\n").code, 0)
        self.assertEqual(self.vmq_passwd(self.path, "b", stdin="2\n2\n").code, 0)
        self.assertEqual(self.vmq_passwd(self.path, "a", stdin="3\n3\n").code, 0)
        lines = self.read().splitlines()
        self.assertEqual(lines[0], "# keep me")
        self.assertEqual([line.split(":")[0] for line in lines[1:]], ["a", "b"])
        self.assertTrue(check_password("3", self.hashOf("a")))
        self.assertTrue(check_password("2", self.hashOf("b")))

    def test_updateNeedsFile(self) -> None:
        """Adding to a missing file is an error (use -c)."""
        r = self.vmq_passwd(self.path, "a", stdin="1\n1\n")
        self.assertEqual(r.code, 1)
        self.assertIn("Unable to open password file", r.stderr)
        self.assertFalse(os.path.exists(self.path))

    def test_delete(self) -> None:
        """-D removes the user; an unknown user is a warning."""
        self.vmq_passwd("-c", self.path, "a", stdin="1\n1\n")
        self.vmq_passwd(self.path, "b", stdin="2\n2\n")
        r = self.vmq_passwd("-D", self.path, "a")
        self.assertEqual(r.code, 0)
        self.assertEqual(list(self.users()), ["b"])
        r = self.vmq_passwd("-D", self.path, "zed")
        self.assertEqual(r.code, 0)
        self.assertIn("Warning: User zed not found", r.stderr)

    def test_upgrade(self) -> None:
        """-U hashes plain-text passwords; hashes and comments are kept."""
        hashed = hash_password("old")
        with open(self.path, "w") as f:
            f.write(f"# users\nalice:plain:with:colons\nbob:{hashed}\n\ncarol:x\n")
        r = self.vmq_passwd("-U", self.path)
        self.assertEqual(r.code, 0)
        text = self.read()
        self.assertNotIn("plain", text)
        self.assertIn(f"bob:{hashed}\n", text)
        self.assertTrue(text.startswith("# users\n"))
        self.assertTrue(check_password("plain:with:colons", self.hashOf("alice")))
        self.assertTrue(check_password("x", self.hashOf("carol")))
        again = self.vmq_passwd("-U", self.path)
        self.assertEqual((again.code, self.read()), (0, text))

    def test_keepsMode(self) -> None:
        """Rewriting keeps the file's permission bits."""
        self.vmq_passwd("-c", self.path, "a", stdin="1\n1\n")
        os.chmod(self.path, 0o640)
        self.vmq_passwd(self.path, "b", stdin="2\n2\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)

    def test_usage(self) -> None:
        """Bad arguments print the usage and fail."""
        for argv in [(), ("-x", self.path, "u"), ("-U",), ("-Z", self.path), ("a", "b", "c", "d")]:
            r = self.vmq_passwd(*argv)
            self.assertEqual((r.code, r.stdout), (1, USAGE), argv)

    def test_badUsername(self) -> None:
        """User names may not contain a colon."""
        r = self.vmq_passwd("-c", self.path, "a:b", stdin="1\n1\n")
        self.assertEqual(r.code, 1)
        self.assertFalse(os.path.exists(self.path))


class ScriptTests(SynchronousTestCase):
    """The module runs as a program (what the console script calls)."""

    def test_pipe(self) -> None:
        """Passwords piped on standard input; the file is usable by the broker."""
        path = self.mktemp()
        proc = subprocess.run(
            [sys.executable, "-m", "vernemq.auth.passwd_cli", "-c", path, "henry"],
            input=b"s3cret\ns3cret\n",
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(path, "rb") as f:
            entries = parse_password_file(f.read()).entries
        self.assertEqual(list(entries), ["henry"])
