# -*- test-case-name: tests.test_manhole -*-
"""
A live-debugging manhole: a Python prompt inside the running broker, over SSH.

It is off by default.  When the config turns it on (``manhole = on``), the
tap module calls L{makeManholeService} with the ``manhole.*`` settings and a
namespace of live objects (broker, sessions, config, reactor, root service).
Someone holding the configured credentials can then run::

    ssh -p 6022 vernemq@127.0.0.1

and inspect or poke the running node.  See ``docs/manhole.md``.

Composition
===========

This is the composition from C{twisted.conch.manhole_tap}, done by hand so
that it can use key authentication and never touches the system's accounts
(C{manhole_tap}'s C{--passwd} still defaults to C{/etc/passwd}, whose C{x}
placeholders then work as plaintext passwords)::

    ManholeService (a StreamServerEndpointService on tcp:PORT:interface=HOST)
      -> ManholeFactory (ConchFactory, host key from host_key_file)
        -> Portal(ManholeRealm, [SSHPublicKeyChecker(AuthorizedKeysFile),
                                 PasswordFileChecker])
          -> ManholeRealm (TerminalRealm) -> insults.ServerProtocol
            -> VerneMQManhole (ColoredManhole) with ManholeInterpreter

Both credential files are read again on every login attempt, so keys and
passwords can be rotated without a restart; they are also read once when the
service is built, so a missing or unreadable file is a startup error
(L{ManholeConfigError}) rather than a surprise later.  Only one SSH user name
(C{manhole.user}) is ever accepted.

Design notes
============

 - There is no telnet and no fallback to system accounts: with neither an
   authorized_keys file nor a password file, L{makeManholeService} raises
   L{ManholeConfigError}.
 - Each session gets a shallow copy of the namespace (names you bind are per
   session; the objects are the live ones).  The copy is taken when the
   session opens, from the very dict the caller passed in, so entries the
   caller adds later are visible to later sessions.
 - An expression that evaluates to a coroutine is wrapped with
   L{Deferred.fromCoroutine}, so C{await}-style APIs show their result when
   it arrives, like synapse's manhole.
 - Stopping the service stops listening and then disconnects every open
   manhole session, waiting until they are gone.
 - Every timer (login grace time, failed-password delay) uses the injected
   reactor.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.conch import manhole as _conch_manhole
from twisted.conch import manhole_ssh
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.error import ConchError
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import keys, transport, userauth
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.auth.passwd import check_password, hash_password, parse_hash

__all__ = [
    "AuthorizedKeysFile",
    "ManholeConfigError",
    "ManholeFactory",
    "ManholeInterpreter",
    "ManholeRealm",
    "ManholeService",
    "PasswordFileChecker",
    "VerneMQManhole",
    "check_password",
    "hash_password",
    "load_or_create_host_key",
    "makeManholeService",
    "read_password_file",
]

#: sshd's defaults: LoginGraceTime 120 s, MaxAuthTries 6.
LOGIN_GRACE_SECONDS = 120
MAX_AUTH_TRIES = 6

# Typed handles on Twisted APIs that are not annotated (for mypy --strict).
_key_from_string: Callable[[bytes], keys.Key] = keys.Key.fromString
_key_from_file: Callable[[str], keys.Key] = keys.Key.fromFile
_server_from_string: Callable[[Any, str], IStreamServerEndpoint] = serverFromString
_quote_argument: Callable[[str], str] = quoteStringArgument
_conch_error: Callable[[str], Exception] = ConchError
_server_protocol: Callable[..., insults.ServerProtocol] = insults.ServerProtocol


def _is_public(key: keys.Key) -> bool:
    k: Any = key  # Key.isPublic is not annotated
    return bool(k.isPublic())


class ManholeConfigError(Exception):
    """
    The manhole is switched on but cannot start safely: no credentials were
    configured, or a credential or host key file is missing, unreadable or
    malformed.  The manhole never falls back to system accounts.
    """


# ---------------------------------------------------------------------------
# vmq.passwd / mosquitto_passwd hashes
# ---------------------------------------------------------------------------


# The $6$ format is owned by vernemq.auth.passwd (vmq_passwd and vmq-passwd
# use the same); hash_password and check_password are
# re-exported from there.


def read_password_file(path: str) -> dict[str, str]:
    """
    Read a C{vmq.passwd}-format file: one C{user:hash} per line, blank lines
    and C{#} comments ignored.

    @param path: The file's path.
    @return: A mapping of user name to hash string.
    @raise OSError: If the file cannot be read.
    @raise UnicodeDecodeError: If the file is not UTF-8.
    """
    entries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if sep:
                entries[user] = hashed
    return entries


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    Accept C{IUsernamePassword} credentials for one user name, checked
    against that user's line of a C{vmq.passwd}-format file.

    The file is read on every attempt, so a new password takes effect
    without a restart.  A file that has become unreadable refuses the login.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, path: str, user: str) -> None:
        """
        @param path: The password file.
        @param user: The only user name to accept.
        """
        self.path = path
        self.user = user

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """
        Check C{credentials} against the password file.

        @return: A L{Deferred} firing with the user name as bytes, or failing
            with L{UnauthorizedLogin}.
        """
        username: bytes = credentials.username
        password: bytes = credentials.password
        try:
            entries = read_password_file(self.path)
        except (OSError, UnicodeDecodeError) as e:
            self.log.error(
                "manhole: cannot read password file {path}: {error}",
                path=self.path,
                error=e,
            )
            return defer.fail(UnauthorizedLogin("password file unreadable"))
        wanted = self.user.encode("utf-8")
        userOK = hmac.compare_digest(username, wanted)
        hashed = entries.get(self.user, "")
        if check_password(password, hashed) and userOK:
            return defer.succeed(wanted)
        return defer.fail(UnauthorizedLogin("bad user name or password"))


# ---------------------------------------------------------------------------
# authorized_keys
# ---------------------------------------------------------------------------


def _read_authorized_keys(path: str) -> list[keys.Key]:
    """
    Parse an OpenSSH authorized_keys file.  Lines with options before the key
    type are accepted (the options are ignored); unparsable lines are skipped.

    @raise OSError: If the file cannot be read.
    """
    result: list[keys.Key] = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            key = _parse_authorized_keys_line(line)
            if key is not None:
                result.append(key)
    return result


def _parse_authorized_keys_line(line: bytes) -> keys.Key | None:
    # A line is "[options] keytype base64 [comment]"; try every starting
    # field so that a leading options field (which may not contain spaces
    # outside quotes in practice) is skipped.
    fields = line.split()
    for start in range(len(fields) - 1):
        try:
            key = _key_from_string(b" ".join(fields[start : start + 2]))
        except Exception:  # any garbage in the file: not a key, try on
            continue
        if _is_public(key):
            return key
    return None


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """
    An L{IAuthorizedKeysDB} that returns the keys of one OpenSSH
    authorized_keys file, and only for one user name.

    The file is read on every lookup, so edits take effect at the next login.
    """

    log = Logger()

    def __init__(self, path: str, user: str) -> None:
        """
        @param path: The authorized_keys file.
        @param user: The only user name the keys are returned for.
        """
        self.path = path
        self.user = user

    def getAuthorizedKeys(self, username: bytes) -> Iterable[keys.Key]:
        """
        Return the authorized keys for C{username}: the file's keys when it
        is the configured user, otherwise nothing.
        """
        if not hmac.compare_digest(username, self.user.encode("utf-8")):
            return []
        try:
            return _read_authorized_keys(self.path)
        except OSError as e:
            self.log.error(
                "manhole: cannot read authorized keys file {path}: {error}",
                path=self.path,
                error=e,
            )
            return []


# ---------------------------------------------------------------------------
# host key
# ---------------------------------------------------------------------------


def load_or_create_host_key(path: str) -> keys.Key:
    """
    Load the SSH host key at C{path}, generating an Ed25519 key there first
    (mode 0600, parent directories created with mode 0700) if it is missing.

    @param path: Where the private host key lives (OpenSSH or PEM format;
        any key type Conch can load).
    @return: The private key.
    @raise ManholeConfigError: If the key cannot be created, read or parsed,
        or is a public key.
    """
    log = ManholeService.log
    p = Path(path)
    if not p.exists():
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()
            )
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # someone else created it meanwhile: load theirs
        except OSError as e:
            raise ManholeConfigError(f"manhole: cannot create host key file {path}: {e}") from e
        else:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
            log.info("manhole: generated SSH host key {path}", path=path)
    try:
        key = _key_from_file(path)
    except (OSError, keys.BadKeyError, keys.EncryptedKeyError, ValueError) as e:
        raise ManholeConfigError(f"manhole: cannot load host key file {path}: {e}") from e
    if _is_public(key):
        raise ManholeConfigError(
            f"manhole: host key file {path} holds a public key, not a private one"
        )
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warn(
            "manhole: host key file {path} is accessible by group or others "
            "(mode {mode:o}); it should be 0600",
            path=path,
            mode=stat.S_IMODE(mode),
        )
    return key


# ---------------------------------------------------------------------------
# the REPL
# ---------------------------------------------------------------------------


class ManholeInterpreter(_conch_manhole.ManholeInterpreter):
    """
    Conch's interpreter, which shows Deferred results when they fire, taught
    to do the same for coroutines.
    """

    def displayhook(self, obj: object) -> None:
        """
        Show C{obj}; a coroutine is first wrapped in a L{Deferred} so that its
        result is shown when it completes.
        """
        if inspect.iscoroutine(obj):
            obj = Deferred.fromCoroutine(obj)
        super().displayhook(obj)  # type: ignore[no-untyped-call]


class VerneMQManhole(_conch_manhole.ColoredManhole):
    """
    The colouring Python prompt shown to a manhole user, using
    L{ManholeInterpreter}.
    """

    def connectionMade(self) -> None:
        """
        Set up the prompt, then swap in our interpreter.
        """
        super().connectionMade()  # type: ignore[no-untyped-call]
        self.interpreter = ManholeInterpreter(self, self.namespace)  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------
# SSH plumbing
# ---------------------------------------------------------------------------


class _ManholeSession(manhole_ssh.TerminalSession):
    """
    Conch's terminal session, plus window resizing and end-of-file, which
    the stock one leaves unimplemented.
    """

    log = Logger()
    _terminal: Any = None
    _ssh: Any = None
    width = 80
    height = 24

    def openShell(self, proto: Any) -> None:
        """
        Start the Python prompt on this channel.
        """
        self._ssh = proto
        makeTerminal: Callable[[], Any] = self.chainedProtocolFactory
        makeTransport: Callable[..., object] = self.transportFactory
        self._terminal = makeTerminal()
        avatar = IConchUser(self.original)
        self.log.info(
            "manhole: shell opened for {user}",
            user=getattr(avatar, "avatarId", b"?").decode("utf-8", "replace"),
        )
        makeTransport(proto, self._terminal, avatar, self.width, self.height)

    def execCommand(self, proto: Any, cmd: bytes) -> None:
        """
        Refuse: the manhole is an interactive shell only.
        """
        raise _conch_error("the manhole only offers a shell")

    def windowChanged(self, newWindowSize: tuple[int, int, int, int]) -> None:
        """
        Tell the prompt the terminal's new size.
        """
        self.height, self.width = newWindowSize[:2]
        if self._terminal is not None:
            self._terminal.terminalProtocol.terminalSize(self.width, self.height)

    def eofReceived(self) -> None:
        """
        The client closed its input: end the session.
        """
        if self._ssh is not None:
            self._ssh.loseConnection()


class _ManholeUser(manhole_ssh.TerminalUser):
    """
    The avatar; remembers who logged in, for the log.
    """

    def __init__(self, original: Any, avatarId: bytes) -> None:
        super().__init__(original, avatarId)  # type: ignore[no-untyped-call]
        self.avatarId = avatarId


@implementer(IRealm)
class ManholeRealm(manhole_ssh.TerminalRealm):
    """
    A terminal realm whose shells run L{VerneMQManhole} over C{namespace}.
    """

    userFactory = _ManholeUser
    sessionFactory = _ManholeSession

    def __init__(self, namespace: dict[str, object]) -> None:
        """
        @param namespace: The live objects; each session gets a shallow copy
            taken when it opens.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.namespace = namespace
        self.chainedProtocolFactory = self._makeTerminal  # type: ignore[assignment]

    def _makeTerminal(self) -> insults.ServerProtocol:
        return _server_protocol(VerneMQManhole, self.namespace)


class _UserAuthServer(userauth.SSHUserAuthServer):
    """
    User authentication with sshd-like limits, timed by the factory's
    injected reactor instead of the global one.
    """

    loginTimeout = LOGIN_GRACE_SECONDS
    attemptsBeforeDisconnect = MAX_AUTH_TRIES

    def serviceStarted(self) -> None:
        assert self.transport is not None
        self.clock = self.transport.factory.clock
        super().serviceStarted()  # type: ignore[no-untyped-call]


class _ServerTransport(transport.SSHServerTransport):
    """
    The SSH server transport, registering itself with its factory so that
    the service can close open sessions when it stops.
    """

    log = Logger()
    factory: ManholeFactory

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeer()
        self.log.info(
            "manhole: connection from {host}:{port}",
            host=getattr(peer, "host", "?"),
            port=getattr(peer, "port", "?"),
        )
        self.factory.transports[self] = []
        super().connectionMade()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        for d in self.factory.transports.pop(self, []):
            d.callback(None)


class ManholeFactory(manhole_ssh.ConchFactory):
    """
    The SSH server factory: one host key, our user-auth limits, and a
    register of open connections.

    @ivar transports: Open connections, each with the Deferreds waiting for
        it to close.
    """

    protocol = _ServerTransport

    def __init__(self, portal: Portal, hostKey: keys.Key, clock: IReactorTime) -> None:
        """
        @param portal: Authentication and the realm.
        @param hostKey: The private host key.
        @param clock: Times the login grace period and failed-password delay.
        """
        super().__init__(portal)  # type: ignore[no-untyped-call]
        key: Any = hostKey  # Key's methods are not annotated
        keyType: bytes = key.sshType()
        # Instance attributes: ConchFactory's class-level dicts are shared, and
        # annotated as bytes although they hold Keys.
        self.privateKeys: dict[bytes, Any] = {keyType: key}
        self.publicKeys: dict[bytes, Any] = {keyType: key.public()}
        self.services = dict(self.services)
        self.services[b"ssh-userauth"] = _UserAuthServer
        self.clock = clock
        self.transports: dict[_ServerTransport, list[Deferred[None]]] = {}

    def disconnectAll(self) -> Deferred[None]:
        """
        Disconnect every open manhole connection.

        @return: A L{Deferred} firing when all of them are gone.
        """
        waiting: list[Deferred[None]] = []
        for t, waiters in list(self.transports.items()):
            d: Deferred[None] = Deferred()
            waiters.append(d)
            waiting.append(d)
            t.loseConnection()  # type: ignore[no-untyped-call]
        return defer.gatherResults(waiting).addCallback(lambda _: None)


@implementer(IStreamServerEndpoint)
class _ReportingEndpoint:
    """
    Wrap a server endpoint: remember the listening port and log where it
    listens, warning when that is not a loopback address.
    """

    def __init__(self, wrapped: IStreamServerEndpoint, service: ManholeService) -> None:
        self._wrapped = wrapped
        self._service = service

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:
        d = self._wrapped.listen(protocolFactory)
        d.addCallback(self._listening)
        return d

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self._service.port = port
        addr = port.getHost()
        host = getattr(addr, "host", "?")
        self._service.log.info(
            "manhole: SSH listening on {host}:{port} (user {user!r}, host key {fingerprint})",
            host=host,
            port=getattr(addr, "port", "?"),
            user=self._service.user,
            fingerprint=self._service.fingerprint,
        )
        if not _is_loopback(self._service.host):
            self._service.log.warn(
                "manhole: listening on {host}, which is not a loopback address; "
                "anyone who can reach it may try to log in to a Python prompt "
                "inside the broker",
                host=self._service.host or "all interfaces",
            )
        return port


def _is_loopback(host: str) -> bool:
    """
    Whether C{host} names only the loopback interface.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ManholeService(StreamServerEndpointService):
    """
    Listen for manhole SSH connections; on stop, stop listening and then
    disconnect the open sessions.

    @ivar port: The listening port, once listening.
    @ivar factory: The L{ManholeFactory}.
    """

    log = Logger()
    # As strports.service does: a bind failure aborts startup.
    _raiseSynchronously = True

    port: IListeningPort | None
    factory: ManholeFactory

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: ManholeFactory,
        *,
        host: str,
        user: str,
        fingerprint: str,
    ) -> None:
        """
        @param endpoint: Where to listen.
        @param factory: The SSH server factory.
        @param host: The configured interface, for the loopback warning.
        @param user: The accepted user name, for the log.
        @param fingerprint: The host key fingerprint, for the log.
        """
        self.host = host
        self.user = user
        self.fingerprint = fingerprint
        self.port = None
        super().__init__(  # type: ignore[no-untyped-call]
            _ReportingEndpoint(endpoint, self), factory
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then close every open manhole session.
        """
        d: Deferred[None] = super().stopService()  # type: ignore[no-untyped-call]
        d.addCallback(lambda _: self.factory.disconnectAll())
        return d


def makeManholeService(
    *,
    host: str,
    port: int,
    user: str,
    authorized_keys_file: str | None,
    password_file: str | None,
    host_key_file: str,
    namespace: dict[str, object],
    reactor: Any | None = None,
) -> IService:
    """
    Build the manhole: an SSH server on C{host}:C{port} offering a Python
    prompt over C{namespace}.

    @param host: The interface to bind, normally C{127.0.0.1}.
    @param port: The TCP port (0 picks a free one).
    @param user: The only SSH user name accepted.
    @param authorized_keys_file: An OpenSSH authorized_keys file whose keys
        may log in as C{user}, or L{None}.
    @param password_file: A C{vmq.passwd}-format file whose C{user} line
        holds the password hash, or L{None}.
    @param host_key_file: The private host key; generated if missing.
    @param namespace: The live objects offered at the prompt.
    @param reactor: Listens and times logins; the global reactor if L{None}.
    @return: The service (a L{ManholeService}); not yet started.
    @raise ManholeConfigError: If no credential file is given, a given one
        cannot be read or offers no credential for C{user}, or the host key
        cannot be loaded or created.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if not user:
        raise ManholeConfigError("manhole.user must not be empty")
    if authorized_keys_file is None and password_file is None:
        raise ManholeConfigError(
            "manhole is on but neither manhole.authorized_keys_file nor "
            "manhole.password_file is set; refusing to start without "
            "credentials of its own"
        )

    checkers: list[ICredentialsChecker] = []
    usable = False
    if authorized_keys_file is not None:
        try:
            authorized = _read_authorized_keys(authorized_keys_file)
        except OSError as e:
            raise ManholeConfigError(
                f"manhole: cannot read authorized keys file {authorized_keys_file}: {e}"
            ) from e
        if authorized:
            usable = True
        else:
            ManholeService.log.warn(
                "manhole: authorized keys file {path} holds no usable key",
                path=authorized_keys_file,
            )
        checkers.append(SSHPublicKeyChecker(AuthorizedKeysFile(authorized_keys_file, user)))
    if password_file is not None:
        try:
            entries = read_password_file(password_file)
        except (OSError, UnicodeDecodeError) as e:
            raise ManholeConfigError(
                f"manhole: cannot read password file {password_file}: {e}"
            ) from e
        if user not in entries:
            ManholeService.log.warn(
                "manhole: password file {path} has no line for user {user!r}",
                path=password_file,
                user=user,
            )
        elif parse_hash(entries[user]) is None:
            ManholeService.log.warn(
                "manhole: password file {path}: the hash for {user!r} is not "
                "in the $6$salt$hash format",
                path=password_file,
                user=user,
            )
        else:
            usable = True
        checkers.append(PasswordFileChecker(password_file, user))
    if not usable:
        raise ManholeConfigError(
            "manhole: the configured credential files hold no usable key or "
            f"password for user {user!r}; refusing to start"
        )

    hostKey = load_or_create_host_key(host_key_file)
    anyKey: Any = hostKey  # Key.fingerprint is not annotated
    # Shown the way ssh(1) and ssh-keygen -lf show it.
    digest = str(anyKey.fingerprint(keys.FingerprintFormats.SHA256_BASE64))
    fingerprint = "SHA256:" + digest.rstrip("=")

    factory = ManholeFactory(Portal(ManholeRealm(namespace), checkers), hostKey, reactor)
    description = f"tcp:{port}"
    if host:
        description += f":interface={_quote_argument(host)}"
    endpoint = _server_from_string(reactor, description)
    return ManholeService(endpoint, factory, host=host, user=user, fingerprint=fingerprint)
