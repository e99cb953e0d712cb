# -*- test-case-name: tests.test_plugins_hooks -*-
"""
zope.interface contracts of vernemq.

Plugin hooks
============

A plugin is any object that provides one or more of the hook interfaces
below; L{vernemq.plugins.hooks.HookChain.register} finds out which with
C{providedBy} and adds the plugin's method to that hook's chain.

The semantics are VerneMQ's (C{vmq_plugin}):

  - C{auth_on_*} hooks form an "all till ok" chain.  Each plugin answers
    L{vernemq.plugins.hooks.Ok} (accept, optionally with modifiers),
    L{vernemq.plugins.hooks.NEXT} (ask the next plugin) or
    L{vernemq.plugins.hooks.Error} (reject; the chain stops).  If every
    plugin says next the result is C{Error("plugin_chain_exhausted")}; if no
    plugin implements the hook it is C{Error("no_matching_hook_found")}.
    Both are rejections.
  - C{on_*} hooks are informational: every plugin is called, answers are
    ignored.
  - A hook may answer with a L{twisted.internet.defer.Deferred} that fires
    with one of the above (a webhook does); the broker then waits before
    it handles the client's next packet.
  - MQTT 5.0 clients go through the C{_m5} variants, as in VerneMQ: a plugin
    that wants to authenticate both 3.x and 5.0 clients provides both.

Types, in Python form: C{peer} is C{(host, port)}; C{subscriber_id} is
C{(mountpoint, client_id)} (mountpoint C{""} when none); topics are
C{str} (VerneMQ passes word lists; we pass the joined topic); C{password}
is C{bytes} or L{None}; C{properties} is the MQTT 5.0 property dict of
L{vernemq.mqtt.packets}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IAuthOnRegister(Interface):
    """Authenticate an MQTT 3.1/3.1.1 CONNECT."""

    def auth_on_register(
        peer: tuple[str, int],  # noqa: N805
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_session: bool,
    ) -> object:
        """
        Decide whether the client may connect.

        @return: C{Ok()}, C{Ok(modifiers)}, C{NEXT} or C{Error(reason)}
            (C{Error("invalid_credentials")} becomes CONNACK 4, any other
            error CONNACK 5), or a Deferred firing with one of those.
            Honoured modifiers: C{max_inflight_messages},
            C{max_online_messages}, C{max_offline_messages},
            C{retry_interval} (seconds), C{upgrade_qos},
            C{max_message_size}, C{clean_session}.
        """


class IAuthOnRegisterM5(Interface):
    """Authenticate an MQTT 5.0 CONNECT."""

    def auth_on_register_m5(
        peer: tuple[str, int],  # noqa: N805
        subscriber_id: tuple[str, str],
        username: str | None,
        password: bytes | None,
        clean_start: bool,
        properties: dict[str, object],
    ) -> object:
        """
        As L{IAuthOnRegister.auth_on_register}; an C{Error} may carry a
        C{reason_code} sent in the CONNACK (default 0x87, or 0x86 for
        C{invalid_credentials}).
        """


class IOnAuthM5(Interface):
    """MQTT 5.0 enhanced authentication (AUTH exchanges and re-authentication)."""

    def on_auth_m5(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        properties: dict[str, object],
    ) -> object:
        """
        One step of an enhanced authentication: C{properties} are those of
        the CONNECT or AUTH packet (C{authentication_method},
        C{authentication_data}...).  A conditional ("all till ok") chain.

        @return: C{Ok({"reason_code": 0x18, "properties": {...}})} to
            continue the exchange (AUTH 0x18 with C{authentication_method},
            C{authentication_data} and C{reason_string} from
            C{properties}); C{Ok({"reason_code": 0, "properties": {...}})}
            when authenticated; C{Error} (optional C{reason_code}, default
            0x87) to refuse; C{NEXT}; or a Deferred of one of them.
            See L{vernemq.broker.enhanced_auth}.
        """


class IAuthOnPublish(Interface):
    """Authorize a PUBLISH (and a will at CONNECT) of a 3.x client."""

    def auth_on_publish(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
    ) -> object:
        """
        Decide whether the message may be published.

        @return: C{Ok()}; C{Ok({"payload": ..., "topic": ..., "qos": ...,
            "retain": ...})} to rewrite the message; C{NEXT};
            C{Error(reason)}; or a Deferred firing with one of those.
        """


class IAuthOnPublishM5(Interface):
    """Authorize a PUBLISH (and a will at CONNECT) of an MQTT 5.0 client."""

    def auth_on_publish_m5(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
        properties: dict[str, object],
    ) -> object:
        """As L{IAuthOnPublish.auth_on_publish}."""


class IAuthOnSubscribe(Interface):
    """Authorize the filters of a SUBSCRIBE of a 3.x client."""

    def auth_on_subscribe(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
    ) -> object:
        """
        Decide whether the client may subscribe.

        @param topics: C{(filter, qos)} pairs as sent.
        @return: C{Ok()}; C{Ok({"topics": [(filter, qos or None)]})} to
            rewrite the list (C{None} rejects that one filter); C{NEXT};
            C{Error(reason)} (every filter rejected); or a Deferred.
        """


class IAuthOnSubscribeM5(Interface):
    """Authorize the filters of a SUBSCRIBE of an MQTT 5.0 client."""

    def auth_on_subscribe_m5(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
        properties: dict[str, object],
    ) -> object:
        """As L{IAuthOnSubscribe.auth_on_subscribe}."""


class IOnRegister(Interface):
    """Told about every accepted CONNECT (all protocol versions)."""

    def on_register(
        peer: tuple[str, int],  # noqa: N805
        subscriber_id: tuple[str, str],
        username: str | None,
    ) -> None:
        """The client is connected; the answer is ignored."""


class IOnPublish(Interface):
    """Told about every authorized PUBLISH (all protocol versions)."""

    def on_publish(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        qos: int,
        topic: str,
        payload: bytes,
        retain: bool,
    ) -> None:
        """The message was routed; the answer is ignored."""


class IOnSubscribe(Interface):
    """Told about every accepted SUBSCRIBE."""

    def on_subscribe(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        topics: list[tuple[str, int]],
    ) -> None:
        """The subscriptions are in place; the answer is ignored."""


class IOnUnsubscribe(Interface):
    """Told about every UNSUBSCRIBE."""

    def on_unsubscribe(
        username: str | None,  # noqa: N805
        subscriber_id: tuple[str, str],
        topics: list[str],
    ) -> None:
        """The subscriptions are gone; the answer is ignored."""


class IOnClientLifecycle(Interface):
    """Told when sessions wake up, go offline, end or expire."""

    def on_client_wakeup(subscriber_id: tuple[str, str]) -> None:  # noqa: N805
        """A client attached to its session (after any takeover)."""

    def on_client_offline(subscriber_id: tuple[str, str]) -> None:  # noqa: N805
        """A persistent session lost its connection and lives on."""

    def on_client_gone(subscriber_id: tuple[str, str]) -> None:  # noqa: N805
        """A clean session ended with its connection."""

    def on_session_expired(subscriber_id: tuple[str, str]) -> None:  # noqa: N805
        """An offline persistent session expired and was removed."""


class IPlugin(Interface):
    """Optional: a plugin that names itself for logs and listings."""

    name = Attribute("A short name such as C{vmq_acl}.")
