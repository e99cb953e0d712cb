# -*- test-case-name: tests.test_cluster_durable_config -*-
"""
Durable configuration: overrides kept in the replicated metadata store
(VerneMQ's C{vmq_config}).

Entries live under the prefix C{{vmq, config}}:

  - C{{App, Key}}: a I{global} value, for every node of the cluster;
  - C{{Node, App, Key}}: a I{per-node} value, which wins over the global
    one on that node.

App, key and node are atoms (C{vmq_server}, C{max_inflight_messages},
C{'VerneMQ@10.0.0.1'}).  Values are stored as terms that replicate
unchanged (see L{vernemq.cluster.metadata.store}): flags as the atoms
C{true}/C{false}, integers as integers, enumerations as atoms ("no limit"
or "unset" as C{undefined}), text as binaries.  L{DurableConfig} converts at
the edges: its API takes and gives the typed values of L{vernemq.config}
(C{bool}, C{int}, C{str}, C{None}).

What the durable values mean
============================

For the app C{vmq_server}, the keys in L{OVERRIDABLE} (the keys of
VerneMQ's C{vmq-admin set} whitelist that this broker reads while it runs)
override the node's C{vernemq.conf}: whenever the store changes (a local
write, or one replicated from a peer) and once at start-up after the store
is loaded, the value in force on this node (per-node, else global, else the
file or its default) is applied to the broker (C{broker.config} is replaced
by a copy of the file's configuration with the overrides), with one log
line per value that changed.  Removing the overrides goes back to the
file's value.  A value a peer wrote that does not fit the key's type is
logged and ignored (the next scope applies).

Settings are read when they are needed, so a new value applies to what
happens next: the netsplit flags and C{allow_anonymous} to the next
operation, C{remote_enqueue_timeout} to the next remote enqueue,
C{shared_subscription_policy} to the next shared publish (existing topic
trees are updated), the session limits (C{max_inflight_messages},
C{max_online_messages}, C{max_offline_messages}, C{retry_interval},
C{queue_type}, ...) to sessions that connect afterwards.

Other apps and keys can be stored (as VerneMQ stores, say, its API keys),
listed, reset and watched with L{DurableConfig.subscribe}; nothing applies
them to the broker.

VerneMQ has no command that writes durable config (C{vmq-admin set} is
not durable); L{DurableConfig.set} is the Python API (tests, the manhole).
C{vmq-admin config show} and C{vmq-admin config reset} are in
L{vernemq.admin.config}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from twisted.application.service import Service
from twisted.logger import Logger

from vernemq.cluster.metadata import MetadataStore, check_value
from vernemq.config import SCHEMA, Config
from vernemq.config.types import ConfigValueError
from vernemq.dist.etf import Atom

if TYPE_CHECKING:
    from vernemq.broker.broker import Broker

__all__ = [
    "CONFIG",
    "OVERRIDABLE",
    "SERVER_APP",
    "DurableConfig",
    "DurableValue",
]

#: The metadata prefix of durable configuration.
CONFIG: Final = (Atom("vmq"), Atom("config"))

#: The app whose overridable keys are applied to the broker.
SERVER_APP: Final = "vmq_server"

_TRUE: Final = Atom("true")
_FALSE: Final = Atom("false")
_UNDEFINED: Final = Atom("undefined")

# How a key's value is stored: flag (true/false), int, optional int
# (undefined = None), or an enumeration (an atom).
_FLAG: Final = "flag"
_INT: Final = "int"
_OPT_INT: Final = "opt_int"
_ENUM: Final = "enum"

#: The C{vmq_server} keys that durable config overrides on the running
#: broker, with how each is stored.
OVERRIDABLE: Final[Mapping[str, str]] = {
    "allow_anonymous": _FLAG,
    "allow_register_during_netsplit": _FLAG,
    "allow_publish_during_netsplit": _FLAG,
    "allow_subscribe_during_netsplit": _FLAG,
    "allow_unsubscribe_during_netsplit": _FLAG,
    "coordinate_registrations": _FLAG,
    "disconnect_on_unauthorized_publish_v3": _FLAG,
    "max_client_id_size": _INT,
    "max_inflight_messages": _INT,
    "max_last_will_delay": _OPT_INT,
    "max_message_rate": _INT,
    "max_message_size": _INT,
    "max_offline_messages": _INT,
    "max_online_messages": _INT,
    "max_subscriptions_per_client": _INT,
    "mqtt_connect_timeout": _INT,
    "override_max_online_messages": _FLAG,
    "persistent_client_expiration": _OPT_INT,
    "queue_type": _ENUM,
    "receive_max_broker": _INT,
    "receive_max_client": _INT,
    "remote_enqueue_timeout": _INT,
    "retry_interval": _INT,
    "shared_subscription_policy": _ENUM,
    "suppress_lwt_on_session_takeover": _FLAG,
    "topic_alias_max_broker": _INT,
    "topic_alias_max_client": _INT,
    "upgrade_outgoing_qos": _FLAG,
}


@dataclass(frozen=True)
class DurableValue:
    """
    One durable config entry.

    @ivar app: the application (C{vmq_server}).
    @ivar key: the key within it.
    @ivar scope: C{"node"} or C{"global"}.
    @ivar node: the node of a per-node entry, else L{None}.
    @ivar value: the typed value (see the module docstring).
    """

    app: str
    key: str
    scope: str
    node: str | None
    value: Any


#: C{callback(app, key, value)}: the durable value in force on this node
#: changed (L{None}: none is left; the file's value applies).
Listener = Callable[[str, str, DurableValue | None], None]


# -- conversion at the edges -------------------------------------------------------


def _generic_term(value: Any) -> Any:
    """A Python value as a term that replicates unchanged."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if value is None:
        return _UNDEFINED
    if type(value) is str:
        return value.encode("utf-8")
    if isinstance(value, tuple):
        return tuple(_generic_term(v) for v in value)
    if isinstance(value, list):
        return [_generic_term(v) for v in value]
    if isinstance(value, dict):
        return {k: _generic_term(v) for k, v in value.items()}
    return value


def _generic_value(term: Any) -> Any:
    """The inverse of L{_generic_term}."""
    if type(term) is Atom:
        if term == "true":
            return True
        if term == "false":
            return False
        if term == "undefined":
            return None
        return term
    if isinstance(term, bytes):
        try:
            return term.decode("utf-8")
        except UnicodeDecodeError:
            return term
    if isinstance(term, tuple):
        return tuple(_generic_value(v) for v in term)
    if isinstance(term, list):
        return [_generic_value(v) for v in term]
    if isinstance(term, dict):
        return {k: _generic_value(v) for k, v in term.items()}
    return term


def _parse(key: str, text: str) -> Any:
    setting = SCHEMA.lookup(key)
    assert setting is not None, key
    try:
        return setting.parser(text)
    except ConfigValueError as error:
        raise ValueError(f"{key}: {error}") from None


def to_term(app: str, key: str, value: Any) -> Any:
    """
    The stored term for a typed value: a key of L{OVERRIDABLE} is checked
    against its type (a C{str} is parsed as in C{vernemq.conf}, so
    C{"30s"} or C{"on"} work); other values are converted generically.

    @raise ValueError: a value that does not fit the key.
    @raise TypeError: a value that cannot be stored.
    """
    kind = OVERRIDABLE.get(key) if app == SERVER_APP else None
    if kind is None:
        term = _generic_term(value)
        check_value(term)
        return term
    if isinstance(value, str):
        value = _parse(key, value)
    if kind == _FLAG:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected a flag (True or False), got {value!r}")
        return _TRUE if value else _FALSE
    if kind == _ENUM:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a name, got {value!r}")
        return Atom(value)
    if value is None and kind == _OPT_INT:
        return _UNDEFINED
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if kind == _INT:
        _parse(key, str(value))  # bounds
    elif value < 0:
        raise ValueError(f"{key}: must not be negative, got {value}")
    return value


def from_term(app: str, key: str, term: Any) -> Any:
    """
    The typed value of a stored term (the inverse of L{to_term}).

    @raise ValueError: a term that does not fit an L{OVERRIDABLE} key.
    """
    kind = OVERRIDABLE.get(key) if app == SERVER_APP else None
    if kind is None:
        return _generic_value(term)
    if kind == _FLAG:
        if type(term) is Atom and term in ("true", "false"):
            return term == "true"
    elif kind == _ENUM:
        if type(term) is Atom:
            return _parse(key, str(term))
    elif kind == _OPT_INT and type(term) is Atom and term == "undefined":
        return None
    elif type(term) is int:
        return to_term(app, key, term)
    raise ValueError(f"{key}: {term!r} does not fit a {kind} setting")


def _split(key: Any) -> tuple[str | None, str, str] | None:
    """C{(node or None, app, key)} of a store key, or L{None} if malformed."""
    if type(key) is not tuple or not all(type(part) is Atom for part in key):
        return None
    if len(key) == 2:
        return None, str(key[0]), str(key[1])
    if len(key) == 3:
        return str(key[0]), str(key[1]), str(key[2])
    return None


# -- the service -----------------------------------------------------------------------


class DurableConfig(Service):
    """
    This node's view of the durable config store, applied to its broker.

    Start it after the metadata service (so the store is loaded): it then
    applies the overrides in force and follows changes.

    @ivar store: the replicated metadata store.
    @ivar broker: the broker the overrides apply to, or L{None}.
    @ivar base: the configuration without overrides (the broker's at
        construction: C{vernemq.conf} and defaults).
    @ivar node: this node's name.
    """

    log = Logger()
    name = "durable-config"

    def __init__(
        self, store: MetadataStore, broker: Broker | None = None, base: Config | None = None
    ) -> None:
        self.store = store
        self.broker = broker
        self.base: Config | None = (
            base if base is not None else (broker.config if broker is not None else None)
        )
        self.node = str(store.node)
        self._overrides: dict[str, Any] = {}
        self._inForce: dict[tuple[str, str], DurableValue] = {}
        self._listeners: list[Listener] = []
        self._cancel: Callable[[], None] | None = None

    # -- the service ------------------------------------------------------------------

    def startService(self) -> None:
        """Apply the overrides in the (loaded) store, then follow changes."""
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._cancel = self.store.subscribe(CONFIG, self._changed)
        self.applyAll()

    def stopService(self) -> None:
        """Stop following the store (the values in force stay)."""
        Service.stopService(self)  # type: ignore[no-untyped-call]
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    # -- writing ----------------------------------------------------------------------

    def _storeKey(self, app: str, key: str, node: str | None) -> tuple[Atom, ...]:
        if node is None:
            return (Atom(app), Atom(key))
        return (Atom(node), Atom(app), Atom(key))

    def set(self, app: str, key: str, value: Any, node: str | None = None) -> None:
        """
        Store C{value} for C{app}/C{key}: globally, or for C{node} only
        (C{node=durable.node} for this one).  It replicates to every member
        and applies where it is in force.

        @raise ValueError: a value that does not fit an overridable key.
        @raise TypeError: a value that cannot be stored.
        """
        if app == SERVER_APP and key not in OVERRIDABLE and SCHEMA.lookup(key) is not None:
            self.log.warn(
                "durable config {key} is stored but not applied: only {count} keys are"
                " overridable at runtime",
                key=key,
                count=len(OVERRIDABLE),
            )
        self.store.put(CONFIG, self._storeKey(app, key, node), to_term(app, key, value))

    def unset(self, app: str, key: str, node: str | None = None) -> bool:
        """
        Delete the global (or C{node}'s) value of C{app}/C{key}.

        @return: whether there was one.
        """
        storeKey = self._storeKey(app, key, node)
        if self.store.get(CONFIG, storeKey) is None:
            return False
        self.store.delete(CONFIG, storeKey)
        return True

    def reset(
        self, app: str, key: str | None = None, *, local: bool = True, globally: bool = True
    ) -> int:
        """
        Delete C{app}'s values (only C{key}'s if given): this node's
        per-node ones if C{local}, the global ones if C{globally}.  Other
        nodes' per-node values are left alone.

        @return: how many entries were deleted.
        """
        doomed = [
            entry
            for entry in self.entries(app)
            if (key is None or entry.key == key)
            and (
                (local and entry.scope == "node" and entry.node == self.node)
                or (globally and entry.scope == "global")
            )
        ]
        for entry in doomed:
            self.store.delete(CONFIG, self._storeKey(entry.app, entry.key, entry.node))
        return len(doomed)

    # -- reading ----------------------------------------------------------------------

    def get(self, app: str, key: str, node: str | None = None, default: Any = None) -> Any:
        """The stored global (or C{node}'s) value of C{app}/C{key}, or C{default}."""
        term = self.store.get(CONFIG, self._storeKey(app, key, node))
        if term is None:
            return default
        return from_term(app, key, term)

    def entries(self, app: str | None = None) -> list[DurableValue]:
        """
        Every stored entry (of C{app}), of every node, sorted by key, global
        first; values that do not fit their key are left out.
        """
        out = []
        for storeKey, term in self.store.items(CONFIG):
            parts = _split(storeKey)
            if parts is None or (app is not None and parts[1] != app):
                continue
            node, entryApp, key = parts
            try:
                value = from_term(entryApp, key, term)
            except ValueError:
                continue
            scope = "global" if node is None else "node"
            out.append(DurableValue(entryApp, key, scope, node, value))
        out.sort(key=lambda e: (e.app, e.key, e.node is not None, e.node or ""))
        return out

    def lookup(self, app: str, key: str, warn: bool = False) -> DurableValue | None:
        """
        The durable value in force on this node for C{app}/C{key}: its
        per-node value, else the global one; L{None} if there is neither.
        A value that does not fit its key is skipped (and logged if C{warn}).
        """
        for node in (self.node, None):
            term = self.store.get(CONFIG, self._storeKey(app, key, node))
            if term is None:
                continue
            try:
                value = from_term(app, key, term)
            except ValueError as error:
                if not warn:
                    continue
                self.log.warn(
                    "ignoring durable config {app}.{key} ({scope}): {error}",
                    app=app,
                    key=key,
                    scope="node" if node else "global",
                    error=str(error),
                )
                continue
            return DurableValue(app, key, "node" if node else "global", node, value)
        return None

    def baseValue(self, app: str, key: str) -> tuple[bool, Any]:
        """
        C{(found, value)}: C{app}/C{key} in the configuration without
        overrides (C{vmq_server} keys are top-level keys, other apps' are
        C{app.key}, such as C{vmq_acl.acl_file}).
        """
        if self.base is None:
            return False, None
        name = key if app == SERVER_APP else f"{app}.{key}"
        try:
            return True, self.base[name]
        except KeyError:
            return False, None

    # -- following changes -------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """
        Call C{listener(app, key, value)} whenever the durable value in
        force on this node for a key changes.

        @return: a function that cancels the subscription.
        """
        self._listeners.append(listener)

        def cancel() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return cancel

    def _changed(self, storeKey: Any, old: Any, new: Any) -> None:
        parts = _split(storeKey)
        if parts is None:
            return
        node, app, key = parts
        if node is not None and node != self.node:
            return
        self._refresh([(app, key)])

    def applyAll(self) -> int:
        """
        Apply every durable value in force on this node (at start-up, after
        the store is loaded).

        @return: how many settings changed.
        """
        keys = set()
        for storeKey, _ in self.store.items(CONFIG):
            parts = _split(storeKey)
            if parts is not None and parts[0] in (None, self.node):
                keys.add((parts[1], parts[2]))
        return self._refresh(sorted(keys))

    def _refresh(self, keys: Iterable[tuple[str, str]]) -> int:
        """Recompute C{keys}; apply the overridable ones that changed."""
        changed: list[tuple[str, Any, str]] = []
        for app, key in keys:
            found = self.lookup(app, key, warn=True)
            if self._inForce.get((app, key)) == found:
                continue
            if found is None:
                self._inForce.pop((app, key), None)
            else:
                self._inForce[(app, key)] = found
            for listener in list(self._listeners):
                try:
                    listener(app, key, found)
                except Exception:
                    self.log.failure(
                        "durable config listener {listener!r} failed", listener=listener
                    )
            if app != SERVER_APP or key not in OVERRIDABLE or self.base is None:
                continue
            if found is None:
                if key not in self._overrides:
                    continue
                del self._overrides[key]
                value, source = self.base[key], "configuration file"
            else:
                self._overrides[key] = value = found.value
                source = "durable, this node" if found.scope == "node" else "durable, global"
            if self.broker is not None and self.broker.config[key] != value:
                changed.append((key, value, source))
        if changed and self.broker is not None and self.base is not None:
            self.broker.config = self.base.replace(**self._overrides)
            for key, value, source in changed:
                if key == "shared_subscription_policy":
                    self._sharedPolicy(self.broker, value)
                self.log.info(
                    "config {key} = {value} ({source})",
                    key=key,
                    value=_show(value),
                    source=source,
                    event_id="vmq.config.applied",
                )
        return len(changed)

    @staticmethod
    def _sharedPolicy(broker: Broker, name: str) -> None:
        """The topic trees built so far take the new policy too."""
        from vernemq.broker.shared import POLICIES

        for mountpoint in broker.mountpoints():
            broker.topics(mountpoint).shared.policy = POLICIES[name]

    @property
    def overrides(self) -> dict[str, Any]:
        """The C{vmq_server} keys overridden on this node now, with their values."""
        return dict(self._overrides)


def _show(value: Any) -> str:
    """A typed value as in C{vernemq.conf} (C{on}/C{off}, C{undefined})."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "undefined"
    return str(value)
