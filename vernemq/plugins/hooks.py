# -*- test-case-name: tests.test_plugins_hooks -*-
"""
The plugin hook chain, with VerneMQ's semantics (C{vmq_plugin}).

Plugins provide interfaces from L{vernemq.interfaces}; L{HookChain.register}
adds each provided hook method to the chain of that hook, ordered by
priority (lower first, as C{plugins.<name>.priority}) and then by
registration order.

Answers of a hook are L{Ok} (optionally with modifiers), L{NEXT} or
L{Error}, or a L{Deferred} that fires with one of them.
L{HookChain.all_till_ok} runs a conditional chain and returns the first
L{Ok} or L{Error} -- synchronously when every hook answered synchronously,
so the broker's hot path pays no Deferred when no plugin is asynchronous.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vernemq.interfaces import (
    IAuthOnPublish,
    IAuthOnPublishM5,
    IAuthOnRegister,
    IAuthOnRegisterM5,
    IAuthOnSubscribe,
    IAuthOnSubscribeM5,
    IOnAuthM5,
    IOnClientLifecycle,
    IOnPublish,
    IOnRegister,
    IOnSubscribe,
    IOnUnsubscribe,
    IPlugin,
)


@dataclass(frozen=True, slots=True)
class Ok:
    """
    A hook accepts.

    @ivar modifiers: changes the hook asks for (see each hook's interface),
        or empty.
    """

    modifiers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    """
    A hook rejects; the chain stops.

    @ivar reason: VerneMQ's reason atom as text, e.g. C{invalid_credentials},
        C{not_allowed}.
    @ivar reason_code: for C{_m5} hooks, the MQTT 5.0 reason code to send
        (L{None}: the broker picks one from C{reason}).
    """

    reason: str = "not_allowed"
    reason_code: int | None = None


class _Next:
    """The type of L{NEXT}."""

    _instance: _Next | None = None

    def __new__(cls) -> _Next:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEXT"


NEXT: Final = _Next()
"""A hook has no opinion; the chain asks the next plugin."""

OK: Final = Ok()
"""A plain accept without modifiers."""

HookResult = Ok | Error
"""What a conditional chain finally answers."""

HookAnswer = Union[Ok, Error, _Next, "Deferred[Any]"]
"""What one hook may answer."""

NO_MATCHING_HOOK: Final = Error("no_matching_hook_found")
"""The answer of a conditional chain nobody implements."""

CHAIN_EXHAUSTED: Final = Error("plugin_chain_exhausted")
"""The answer of a conditional chain in which every hook said next."""

HOOK_FAILED: Final = Error("hook_failed")
"""The answer when a hook raised or answered nonsense (the failure is logged)."""


#: hook name -> interface that declares it.
HOOK_INTERFACES: Final[dict[str, Any]] = {
    "auth_on_register": IAuthOnRegister,
    "auth_on_register_m5": IAuthOnRegisterM5,
    "auth_on_publish": IAuthOnPublish,
    "auth_on_publish_m5": IAuthOnPublishM5,
    "auth_on_subscribe": IAuthOnSubscribe,
    "auth_on_subscribe_m5": IAuthOnSubscribeM5,
    "on_auth_m5": IOnAuthM5,
    "on_register": IOnRegister,
    "on_publish": IOnPublish,
    "on_subscribe": IOnSubscribe,
    "on_unsubscribe": IOnUnsubscribe,
    "on_client_wakeup": IOnClientLifecycle,
    "on_client_offline": IOnClientLifecycle,
    "on_client_gone": IOnClientLifecycle,
    "on_session_expired": IOnClientLifecycle,
}


@dataclass(order=True, slots=True)
class _Entry:
    priority: int
    seq: int
    plugin: object = field(compare=False)
    fn: Callable[..., Any] = field(compare=False)


def plugin_name(plugin: object) -> str:
    """A plugin's L{IPlugin} name, else its class name."""
    if IPlugin.providedBy(plugin):
        return str(plugin.name)
    return type(plugin).__name__


class HookChain:
    """
    The hooks of all registered plugins, by hook name.

    Lookups on the hot path are one dict access: L{all_till_ok} and L{all}
    return at once when no plugin implements a hook.

    @ivar publish_open: whether every plugin in the C{auth_on_publish} and
        C{auth_on_publish_m5} chains allows every publish unchanged (a
        plugin says so with a true C{allows_every_publish} attribute, as
        L{AllowAllACL} does), so the broker may skip the chain per message.
    @ivar observes_publish: whether any plugin implements C{on_publish}.
    """

    publish_open = False
    observes_publish = False

    log = Logger()

    def __init__(self) -> None:
        self._entries: dict[str, list[_Entry]] = {}
        self._fns: dict[str, tuple[Callable[..., Any], ...]] = {}
        self._seq = 0

    def register(self, plugin: object, priority: int = 0) -> list[str]:
        """
        Add every hook C{plugin} provides to its chain.

        @param priority: lower runs first; equal priorities run in
            registration order.
        @return: the names of the hooks added.
        """
        added: list[str] = []
        for name, iface in HOOK_INTERFACES.items():
            if iface.providedBy(plugin):
                self._seq += 1
                entry = _Entry(priority, self._seq, plugin, getattr(plugin, name))
                entries = self._entries.setdefault(name, [])
                entries.append(entry)
                entries.sort()
                self._fns[name] = tuple(e.fn for e in entries)
                added.append(name)
        self._summarize()
        return added

    def unregister(self, plugin: object) -> None:
        """Remove every hook of C{plugin}."""
        for name in list(self._entries):
            entries = [e for e in self._entries[name] if e.plugin is not plugin]
            if entries:
                self._entries[name] = entries
                self._fns[name] = tuple(e.fn for e in entries)
            else:
                del self._entries[name]
                del self._fns[name]
        self._summarize()

    def refresh(self) -> None:
        """
        Recompute the hot-path flags (L{publish_open}, L{observes_publish})
        after a registered plugin changed its C{allows_every_publish}
        attribute, as C{vmq_acl} does when its file is reloaded.
        """
        self._summarize()

    def _summarize(self) -> None:
        """Recompute the flags the hot path reads instead of the chains."""
        chains = [self._entries.get(n) for n in ("auth_on_publish", "auth_on_publish_m5")]
        self.publish_open = all(
            entries and all(getattr(e.plugin, "allows_every_publish", False) for e in entries)
            for entries in chains
        )
        self.observes_publish = "on_publish" in self._fns

    def implemented(self, name: str) -> bool:
        """Whether any plugin implements hook C{name}."""
        return name in self._fns

    def plugins(self, name: str) -> list[object]:
        """The plugins in the chain of C{name}, in call order."""
        return [e.plugin for e in self._entries.get(name, ())]

    def all_till_ok(self, name: str, *args: Any) -> HookResult | Deferred[HookResult]:
        """
        Run the conditional chain of C{name}.

        @return: the first L{Ok} or L{Error}; L{CHAIN_EXHAUSTED} if every
            plugin said next; L{NO_MATCHING_HOOK} if there is no plugin.
            A L{Deferred} (never failing) when some hook was asynchronous.
        """
        fns = self._fns.get(name)
        if fns is None:
            return NO_MATCHING_HOOK
        return self._run(name, fns, 0, args)

    def _run(
        self, name: str, fns: tuple[Callable[..., Any], ...], i: int, args: tuple[Any, ...]
    ) -> HookResult | Deferred[HookResult]:
        n = len(fns)
        while i < n:
            fn = fns[i]
            i += 1
            try:
                answer = fn(*args)
            except Exception:
                self.log.failure("hook {hook} raised", hook=name)
                return HOOK_FAILED
            if answer is NEXT:
                continue
            if answer.__class__ is Ok or answer.__class__ is Error:
                return answer
            if isinstance(answer, Deferred):
                d: Deferred[HookResult] = answer.addCallbacks(
                    self._resume, self._failed, (name, fns, i, args), {}, (name,)
                )
                return d
            self.log.error(
                "hook {hook} answered {answer!r}, not Ok, NEXT or Error",
                hook=name,
                answer=answer,
            )
            return HOOK_FAILED
        return CHAIN_EXHAUSTED

    def _resume(
        self,
        answer: object,
        name: str,
        fns: tuple[Callable[..., Any], ...],
        i: int,
        args: tuple[Any, ...],
    ) -> HookResult | Deferred[HookResult]:
        if answer is NEXT:
            return self._run(name, fns, i, args)
        if isinstance(answer, (Ok, Error)):
            return answer
        self.log.error(
            "hook {hook} answered {answer!r}, not Ok, NEXT or Error", hook=name, answer=answer
        )
        return HOOK_FAILED

    def _failed(self, failure: Failure, name: str) -> HookResult:
        self.log.failure("hook {hook} failed", failure, hook=name)
        return HOOK_FAILED

    def all(self, name: str, *args: Any) -> None:
        """
        Call every hook of the informational chain C{name}; answers are
        ignored, exceptions and failed Deferreds are logged.
        """
        fns = self._fns.get(name)
        if fns is None:
            return
        for fn in fns:
            try:
                answer = fn(*args)
            except Exception:
                self.log.failure("hook {hook} raised", hook=name)
                continue
            if isinstance(answer, Deferred):
                answer.addErrback(self._failed, name)


@implementer(IPlugin, IAuthOnPublish, IAuthOnPublishM5, IAuthOnSubscribe, IAuthOnSubscribeM5)
class AllowAllACL:
    """
    A stand-in for C{vmq_acl} with VerneMQ's default C{vmq.acl}
    (C{topic #}: everybody may publish and subscribe to everything).

    The broker used it before L{vernemq.auth.acl.VmqACL} existed; tests
    still use it as the simplest allow-all authorization plugin.
    """

    name = "vmq_acl"

    #: Lets the broker skip the publish chain while this is the only ACL.
    allows_every_publish = True

    def auth_on_publish(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
    ) -> Ok:
        """Allow."""
        return OK

    def auth_on_publish_m5(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
        properties: dict[str, object],
    ) -> Ok:
        """Allow."""
        return OK

    def auth_on_subscribe(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
    ) -> Ok:
        """Allow."""
        return OK

    def auth_on_subscribe_m5(
        self,
        username: str | None,
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
        properties: dict[str, object],
    ) -> Ok:
        """Allow."""
        return OK
