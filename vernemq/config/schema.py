# -*- test-case-name: tests.test_config_schema -*-
"""
The schema of C{vernemq.conf}: every key's type, default and one-line doc.

This is the one module that owns those facts.  Keys are written as VerneMQ
writes them; a C{$name} segment stands for one user-chosen dotted segment
(C{listener.tcp.$name} matches C{listener.tcp.default}).

Typed-value conventions (see L{vernemq.config.types}):

  - flags are C{bool};
  - C{infinity} is C{None} ("no limit");
  - durations are C{int} in the unit VerneMQ uses for that key, stated in the
    key's doc (C{retry_interval} seconds, C{mqtt_connect_timeout}
    milliseconds, ...);
  - byte sizes are C{int} bytes;
  - "unset" defaults are C{None};
  - plain C{ip:port} values are L{vernemq.config.types.HostPort} (a named
    tuple: C{host, port = value}); listener addresses are
    L{vernemq.config.types.Address} (host/port or unix_path).

Every entry carries an C{implemented} flag: C{False} means the key is
accepted and validated, but the feature behind it is not built yet, so the
node warns when a file sets it.

Listener settings cascade C{listener.<setting>} (global) ->
C{listener.<kind>.<setting>} (protocol) -> C{listener.<kind>.<name>.<setting>}
(one listener).  They are described once in L{LISTENER_SETTINGS} and expanded
into schema keys for each listener kind that supports them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vernemq.config import types as t

#: Listener kinds that speak MQTT to clients.
MQTT_KINDS: tuple[str, ...] = ("tcp", "ssl", "ws", "wss")
#: Listener kinds for the cluster data channel.
CLUSTER_KINDS: tuple[str, ...] = ("vmq", "vmqs")
#: Listener kinds for the HTTP API.
HTTP_KINDS: tuple[str, ...] = ("http", "https")
#: Every listener kind, in VerneMQ's order.
LISTENER_KINDS: tuple[str, ...] = MQTT_KINDS + CLUSTER_KINDS + HTTP_KINDS
#: Listener kinds that take TLS settings.
TLS_KINDS: tuple[str, ...] = ("ssl", "wss", "vmqs", "https")
#: Listener kinds that exist in this implementation today.
IMPLEMENTED_KINDS: tuple[str, ...] = ("tcp", "ssl", "ws", "wss", "vmq", "vmqs")


class _Inherit:
    """
    Marker for a protocol- or listener-level value of C{-1}, which VerneMQ
    reads as "inherit from the level above".
    """

    _instance: _Inherit | None = None

    def __new__(cls) -> _Inherit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INHERIT"


#: The value a cascaded setting holds when written as C{-1} below the global level.
INHERIT = _Inherit()


def _inheritable(parser: t.Parser) -> t.Parser:
    """
    Wrap C{parser} so that C{-1} means L{INHERIT}.
    """

    def parse(raw: str) -> Any:
        if raw.strip() == "-1":
            return INHERIT
        return parser(raw)

    parse.__doc__ = parser.__doc__
    return parse


@dataclass(frozen=True)
class Setting:
    """
    One key of the schema.

    @ivar key: the key, possibly with C{$name} segments.
    @ivar parser: turns the raw text into the typed value.
    @ivar default: the typed default; C{None} when unset.
    @ivar doc: one line for humans, including the unit of the typed value.
    @ivar implemented: whether the feature behind the key works yet.
    @ivar hidden: VerneMQ leaves the key out of its generated conf file.
    """

    key: str
    parser: t.Parser
    default: Any
    doc: str
    implemented: bool = False
    hidden: bool = False

    @property
    def is_pattern(self) -> bool:
        """
        Whether the key has C{$name} segments.
        """
        return "$" in self.key


@dataclass(frozen=True)
class ListenerSetting:
    """
    A setting that cascades global -> protocol -> named listener.

    @ivar name: the last key segment, e.g. C{max_connections}.
    @ivar kinds: listener kinds that accept it.
    @ivar global_level: whether C{listener.<name>} exists.
    @ivar kind_defaults: per-kind defaults overriding C{default}.
    @ivar inherit_minus_one: whether C{-1} below the global level means inherit.
    """

    name: str
    parser: t.Parser
    default: Any
    doc: str
    kinds: tuple[str, ...]
    global_level: bool = False
    implemented: bool = False
    kind_defaults: tuple[tuple[str, Any], ...] = ()
    inherit_minus_one: bool = False

    def default_for(self, kind: str) -> Any:
        """
        The default of this setting for listeners of C{kind}.
        """
        return dict(self.kind_defaults).get(kind, self.default)


_FLAG = t.parse_flag
_INT = t.parse_integer
_NONNEG = t.bounded_integer(0)
_STR = t.parse_string


def _NODENAME(raw: str) -> str:
    """A node name, C{alive@host} with both parts non-empty."""
    name = t.parse_string(raw)
    alive, at, host = name.partition("@")
    if not at or not alive or not host or "@" in host:
        raise t.ConfigValueError(f"expected a node name such as VerneMQ@127.0.0.1, got {name!r}")
    return name


_PATH = t.parse_path
_OPTPATH = t.parse_optional_path
_MS = t.duration("ms")
_SEC = t.duration("s")
_TLS_VERSIONS = t.enum("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")

_LS = ListenerSetting

#: The cascading listener settings.
LISTENER_SETTINGS: tuple[ListenerSetting, ...] = (
    _LS(
        "max_connections",
        t.parse_integer_or_infinity,
        10000,
        "maximum concurrent connections per listener; int, or None for infinity",
        LISTENER_KINDS,
        global_level=True,
        implemented=True,
        inherit_minus_one=True,
    ),
    _LS(
        "nr_of_acceptors",
        t.bounded_integer(1),
        10,
        "number of acceptor processes (no effect on Twisted's single acceptor)",
        LISTENER_KINDS,
        global_level=True,
        implemented=True,
        inherit_minus_one=True,
    ),
    _LS(
        "mountpoint",
        t.parse_mountpoint,
        "",
        "topic-tree prefix isolating this listener's clients; '' (or off) for none",
        MQTT_KINDS + CLUSTER_KINDS,
        global_level=True,
        implemented=True,
    ),
    _LS(
        "max_connection_lifetime",
        _SEC,
        0,
        "seconds after which a client is disconnected; 0 = unlimited",
        MQTT_KINDS,
        global_level=True,
        implemented=True,
    ),
    _LS(
        "allowed_protocol_versions",
        t.parse_protocol_versions,
        (3, 4, 5, 131),
        "tuple of MQTT protocol levels accepted: 3=3.1, 4=3.1.1, 5=5.0, 131/132=bridges",
        MQTT_KINDS,
        implemented=True,
    ),
    _LS(
        "allow_anonymous_override",
        _FLAG,
        False,
        "allow anonymous clients on this listener (ORed with allow_anonymous)",
        MQTT_KINDS,
        implemented=True,
    ),
    _LS(
        "proxy_protocol",
        _FLAG,
        False,
        "expect a PROXY protocol v1/v2 header on each connection",
        ("tcp", "ws", "http"),
        implemented=True,
    ),
    _LS(
        "proxy_protocol_use_cn_as_username",
        _FLAG,
        True,
        "with proxy_protocol, use the TLS client certificate CN as username",
        ("tcp", "ws"),
        implemented=True,
    ),
    _LS(
        "proxy_xff_support",
        _FLAG,
        False,
        "take the peer address from X-Forwarded-For",
        ("ws", "wss"),
        implemented=True,
    ),
    _LS(
        "buffer_sizes",
        t.parse_buffer_sizes,
        None,
        "socket (sndbuf, recbuf, buffer) in bytes; None = OS defaults",
        LISTENER_KINDS,
    ),
    _LS("active_n", t.bounded_integer(1), 1, "packets read per socket activation", MQTT_KINDS),
    _LS(
        "auth_plugins",
        t.parse_string_list,
        None,
        "tuple of plugin names to run for authentication on this listener",
        MQTT_KINDS,
    ),
    _LS(
        "authz_plugins",
        t.parse_string_list,
        None,
        "tuple of plugin names to run for authorisation on this listener",
        MQTT_KINDS,
    ),
    _LS(
        "high_watermark",
        t.parse_bytesize,
        8192,
        "socket send-queue high watermark in bytes",
        CLUSTER_KINDS,
    ),
    _LS(
        "low_watermark",
        t.parse_bytesize,
        4096,
        "socket send-queue low watermark in bytes",
        CLUSTER_KINDS,
    ),
    _LS(
        "high_msgq_watermark",
        t.parse_bytesize,
        8192,
        "port message-queue high watermark in bytes",
        CLUSTER_KINDS,
    ),
    _LS(
        "low_msgq_watermark",
        t.parse_bytesize,
        4096,
        "port message-queue low watermark in bytes",
        CLUSTER_KINDS,
    ),
    # TLS.
    _LS(
        "cafile", _OPTPATH, None, "PEM file of trusted CA certificates", TLS_KINDS, implemented=True
    ),
    _LS(
        "certfile",
        _OPTPATH,
        None,
        "PEM file of the server certificate",
        TLS_KINDS,
        implemented=True,
    ),
    _LS(
        "keyfile", _OPTPATH, None, "PEM file of the server private key", TLS_KINDS, implemented=True
    ),
    _LS(
        "capath",
        _OPTPATH,
        None,
        "directory of trusted CA certificates",
        TLS_KINDS,
        implemented=True,
    ),
    _LS(
        "crlfile", _OPTPATH, None, "PEM certificate revocation list", TLS_KINDS, implemented=True
    ),
    _LS(
        "ciphers",
        _STR,
        "",
        "colon separated OpenSSL cipher list (TLS <= 1.2); '' = defaults",
        TLS_KINDS,
        implemented=True,
    ),
    _LS("eccs", t.parse_string_list, None, "tuple of elliptic curves; None = defaults", TLS_KINDS),
    _LS("depth", _NONNEG, 1, "maximum certificate chain depth", TLS_KINDS, implemented=True),
    _LS(
        "require_certificate",
        _FLAG,
        False,
        "require a client certificate valid for cafile",
        TLS_KINDS,
        implemented=True,
    ),
    _LS(
        "verify_nodename",
        _FLAG,
        True,
        "with require_certificate, a peer's certificate must name the host of its node name"
        " (subjectAltName DNS/IP, else CN), inbound and outbound; off = the CA chain only",
        ("vmqs",),
        implemented=True,
    ),
    _LS(
        "use_identity_as_username",
        _FLAG,
        False,
        "use the client certificate CN as the MQTT username",
        ("ssl", "wss"),
        implemented=True,
    ),
    _LS(
        "tls_version",
        _TLS_VERSIONS,
        "tlsv1.2",
        "minimum TLS version",
        TLS_KINDS,
        implemented=True,
    ),
    _LS("psk_support", _FLAG, False, "accept TLS-PSK cipher suites", ("ssl", "wss")),
    _LS("psk_identity_hint", _STR, "VMQ_PSK", "TLS-PSK identity hint", ("ssl", "wss")),
    _LS(
        "tls_handshake_timeout",
        _MS,
        5000,
        "TLS handshake timeout in milliseconds",
        TLS_KINDS,
        implemented=True,
    ),
    # HTTP.
    _LS(
        "http_modules",
        t.parse_string_list,
        None,
        "tuple of HTTP modules served by this listener; None = http_modules",
        HTTP_KINDS,
    ),
    _LS(
        "max_request_line_length",
        t.bounded_integer(1),
        8000,
        "longest accepted HTTP request line in bytes",
        HTTP_KINDS,
    ),
    _LS(
        "max_header_value_length",
        t.bounded_integer(1),
        4096,
        "longest accepted HTTP header value in bytes",
        HTTP_KINDS,
    ),
    _LS("config_mod", _STR, "vmq_metrics_http", "legacy routing module (hidden)", HTTP_KINDS),
    _LS("config_fun", _STR, "routes", "legacy routing function (hidden)", HTTP_KINDS),
)

_LISTENER_SETTINGS_BY_NAME = {setting.name: setting for setting in LISTENER_SETTINGS}


def listener_setting(name: str) -> ListenerSetting | None:
    """
    The cascading listener setting called C{name}, if any.
    """
    return _LISTENER_SETTINGS_BY_NAME.get(name)


def listener_setting_implemented(ls: ListenerSetting, kind: str) -> bool:
    """
    Whether per-listener setting C{ls} works for listeners of C{kind}.  The
    data channel (C{vmq}, C{vmqs}) serves its address and, for C{vmqs},
    the TLS settings (those only TLS kinds take): its other per-listener
    settings (C{max_connections}, C{mountpoint}, ...) have no effect yet.
    """
    if not (ls.implemented and kind in IMPLEMENTED_KINDS):
        return False
    if kind in CLUSTER_KINDS:
        return kind in TLS_KINDS and set(ls.kinds) <= set(TLS_KINDS)
    return True


def _listener_settings() -> list[Setting]:
    out: list[Setting] = []
    for kind in LISTENER_KINDS:
        out.append(
            Setting(
                f"listener.{kind}.$name",
                t.parse_listener_address,
                None,
                f"address of a {kind} listener: ip:port, [ipv6]:port or local:/path:0",
                implemented=kind in IMPLEMENTED_KINDS,
            )
        )
    for ls in LISTENER_SETTINGS:
        if ls.global_level:
            out.append(
                Setting(
                    f"listener.{ls.name}", ls.parser, ls.default, ls.doc, implemented=ls.implemented
                )
            )
        below = _inheritable(ls.parser) if ls.inherit_minus_one else ls.parser
        for kind in ls.kinds:
            implemented = listener_setting_implemented(ls, kind)
            doc = f"{ls.doc} (for {kind} listeners)"
            out.append(
                Setting(
                    f"listener.{kind}.{ls.name}",
                    below,
                    None,
                    doc,
                    implemented=implemented,
                    hidden=True,
                )
            )
            out.append(
                Setting(
                    f"listener.{kind}.$name.{ls.name}",
                    below,
                    None,
                    doc,
                    implemented=implemented,
                    hidden=True,
                )
            )
    for kind in HTTP_KINDS:
        out.append(
            Setting(
                f"listener.{kind}.$name.http_module.$module.auth.mode",
                t.enum("apikey", "noauth"),
                None,
                "per-listener override of http_module.<module>.auth.mode",
                hidden=True,
            )
        )
    return out


_S = Setting
_ERLANG_LOG_LEVELS = t.enum(
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
    "none",
)

_GLOBAL_SETTINGS: tuple[Setting, ...] = (
    # --- 3.1 listener-related globals --------------------------------------
    _S(
        "max_ws_frame_size",
        _NONNEG,
        268435456,
        "largest accepted WebSocket frame in bytes; 0 = no limit",
        implemented=True,
    ),
    _S(
        "mqtt_connect_timeout",
        _MS,
        5000,
        "milliseconds a new connection may take to send CONNECT",
        implemented=True,
        hidden=True,
    ),
    _S(
        "tcp_listen_options",
        _STR,
        None,
        "Erlang socket options term (accepted, ignored)",
        hidden=True,
    ),
    # --- 3.2 node and distribution ----------------------------------------
    _S(
        "nodename",
        _NODENAME,
        "VerneMQ@127.0.0.1",
        "name of this node, name@host; must be unique and stable",
        implemented=True,
    ),
    _S(
        "distributed_cookie",
        _STR,
        "vmq",
        "Erlang distribution cookie shared by the cluster",
        implemented=True,
    ),
    _S(
        "erlang.distribution.port_range.minimum",
        t.bounded_integer(0, 65535),
        None,
        "lowest distribution listen port; None = any port",
        hidden=True,
        implemented=True,
    ),
    _S(
        "erlang.distribution.port_range.maximum",
        t.bounded_integer(0, 65535),
        None,
        "highest distribution listen port; None = same as minimum",
        hidden=True,
        implemented=True,
    ),
    _S(
        "erlang.distribution.net_ticktime",
        t.bounded_integer(1),
        60,
        "seconds after which a silent peer node is considered down",
        implemented=True,
    ),
    _S(
        "erlang.async_threads",
        t.bounded_integer(0, 1024),
        64,
        "Erlang async thread pool size (no effect here)",
    ),
    _S("erlang.max_ports", t.bounded_integer(1024), 262144, "Erlang port limit (no effect here)"),
    _S(
        "erlang.process_limit",
        t.bounded_integer(1024),
        256000,
        "Erlang process limit (no effect here)",
    ),
    _S(
        "erlang.max_ets_tables",
        t.bounded_integer(1),
        256000,
        "Erlang ETS table limit (no effect here)",
    ),
    _S("erlang.K", _FLAG, True, "Erlang kernel polling (no effect here)", hidden=True),
    _S(
        "erlang.W",
        t.enum("i", "w", "e"),
        "w",
        "Erlang warning-message mapping (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.smp",
        t.enum("enable", "auto", "disable"),
        "enable",
        "Erlang SMP support (no effect here)",
        hidden=True,
    ),
    _S("erlang.schedulers.total", _NONNEG, None, "Erlang schedulers (no effect here)", hidden=True),
    _S(
        "erlang.schedulers.online",
        _NONNEG,
        None,
        "Erlang online schedulers (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.schedulers.force_wakeup_interval",
        _NONNEG,
        None,
        "Erlang scheduler wakeup interval (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.schedulers.compaction_of_load",
        _FLAG,
        None,
        "Erlang scheduler load compaction (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.schedulers.utilization_balancing",
        _FLAG,
        None,
        "Erlang scheduler balancing (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.async_threads.stack_size",
        t.parse_bytesize,
        None,
        "Erlang async thread stack size (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.crash_dump",
        _PATH,
        "./log/erl_crash.dump",
        "Erlang crash dump file (no effect here)",
    ),
    _S(
        "erlang.fullsweep_after",
        _NONNEG,
        0,
        "Erlang GC fullsweep interval (no effect here)",
        hidden=True,
    ),
    _S(
        "erlang.distribution_buffer_size",
        t.parse_bytesize,
        None,
        "distribution output buffer busy limit in bytes",
        hidden=True,
    ),
    _S(
        "erlang.shutdown_time",
        _MS,
        None,
        "milliseconds allowed for an orderly shutdown",
        hidden=True,
    ),
    _S(
        "erlang.epmd.port",
        t.bounded_integer(1, 65535),
        4369,
        "port of the Erlang port mapper (epmd); unset = $ERL_EPMD_PORT, else 4369",
        implemented=True,
    ),
    _S(
        "erlang.epmd.address",
        _STR,
        None,
        "addresses (comma-separated) epmd binds to when this node serves it, plus "
        "loopback; unset = $ERL_EPMD_ADDRESS, else all IPv4 interfaces",
        implemented=True,
    ),
    _S(
        "erlang.epmd.mode",
        t.enum("auto", "serve", "client", "off"),
        "auto",
        "epmd: auto (register with a running one, else serve it), serve, client or off",
        implemented=True,
    ),
    # --- 3.3 MQTT / session ------------------------------------------------
    _S(
        "allow_anonymous",
        _FLAG,
        False,
        "accept clients without credentials; auth hooks are then not called",
        implemented=True,
    ),
    _S(
        "allow_register_during_netsplit",
        _FLAG,
        False,
        "accept CONNECT while the cluster is not ready",
        implemented=True,
    ),
    _S(
        "allow_publish_during_netsplit",
        _FLAG,
        False,
        "accept PUBLISH while the cluster is not ready",
        implemented=True,
    ),
    _S(
        "allow_subscribe_during_netsplit",
        _FLAG,
        False,
        "accept SUBSCRIBE while the cluster is not ready",
        implemented=True,
    ),
    _S(
        "allow_unsubscribe_during_netsplit",
        _FLAG,
        False,
        "accept UNSUBSCRIBE while the cluster is not ready",
        implemented=True,
    ),
    _S(
        "trade_consistency",
        _FLAG,
        False,
        "legacy: all four *_during_netsplit flags at once",
        hidden=True,
        implemented=True,
    ),
    _S(
        "coordinate_registrations",
        _FLAG,
        True,
        "serialise registrations of a client ID on one elected node",
    ),
    _S(
        "allow_multiple_sessions",
        _FLAG,
        False,
        "non-standard: several sessions may share one client ID",
    ),
    _S(
        "max_inflight_messages",
        _NONNEG,
        20,
        "QoS 1/2 messages in flight per session; 0 = unlimited",
        implemented=True,
    ),
    _S(
        "max_online_messages",
        t.bounded_integer(-1),
        1000,
        "messages queued per online session; -1 = unlimited, 0 blocks delivery",
        implemented=True,
    ),
    _S(
        "max_offline_messages",
        t.bounded_integer(-1),
        1000,
        "QoS 1/2 messages kept per offline session; -1 = unlimited, 0 = none",
        implemented=True,
    ),
    _S(
        "override_max_online_messages",
        _FLAG,
        False,
        "on reconnect, move the whole offline queue online instead of dropping what "
        "exceeds max_online_messages",
        implemented=True,
    ),
    _S(
        "retry_interval",
        _SEC,
        20,
        "seconds before an unacknowledged QoS 1/2 message is resent",
        implemented=True,
    ),
    _S(
        "max_client_id_size",
        t.bounded_integer(1),
        100,
        "longest accepted client ID in bytes",
        implemented=True,
    ),
    _S(
        "max_subscriptions_per_client",
        _NONNEG,
        0,
        "subscriptions per client; 0 = unlimited",
        implemented=True,
        hidden=True,
    ),
    _S(
        "persistent_client_expiration",
        t.parse_persistent_client_expiration,
        None,
        "seconds an offline persistent session is kept; None = never expires",
        implemented=True,
    ),
    _S(
        "max_last_will_delay",
        t.parse_client_or_seconds,
        None,
        "cap on MQTT 5 will delay in seconds; None = client's value",
        implemented=True,
    ),
    _S(
        "max_message_size",
        _NONNEG,
        0,
        "largest accepted MQTT packet in bytes; 0 = unlimited",
        implemented=True,
    ),
    _S(
        "message_size_limit",
        _NONNEG,
        0,
        "legacy alias of max_message_size in bytes; 0 = unlimited",
        hidden=True,
    ),
    _S(
        "max_message_rate",
        _NONNEG,
        0,
        "incoming publishes per second per session (reading is throttled); 0 = unlimited",
        implemented=True,
        hidden=True,
    ),
    _S(
        "upgrade_outgoing_qos",
        _FLAG,
        False,
        "non-standard: deliver with the subscription QoS, not the publish QoS",
        implemented=True,
    ),
    _S(
        "shared_subscription_policy",
        t.enum("prefer_local", "local_only", "random", "prefer_online_before_local"),
        "prefer_local",
        "how a shared-subscription member is chosen",
        implemented=True,
    ),
    _S(
        "shared_subscription_timeout_action",
        t.enum("ignore", "requeue"),
        "ignore",
        "on remote enqueue timeout: ignore (may lose) or requeue (may duplicate)",
        hidden=True,
        implemented=True,
    ),
    _S(
        "topic_max_depth",
        t.bounded_integer(1),
        10,
        "most levels accepted in a topic or filter",
        implemented=True,
    ),
    _S(
        "receive_max_client",
        t.bounded_integer(1, 65535),
        65535,
        "MQTT 5 receive maximum the broker honours towards clients",
        implemented=True,
        hidden=True,
    ),
    _S(
        "receive_max_broker",
        t.bounded_integer(1, 65535),
        65535,
        "MQTT 5 receive maximum the broker announces",
        implemented=True,
        hidden=True,
    ),
    _S(
        "topic_alias_max_client",
        t.bounded_integer(0, 65535),
        0,
        "MQTT 5 topic aliases clients may use (announced in CONNACK)",
        implemented=True,
        hidden=True,
    ),
    _S(
        "topic_alias_max_broker",
        t.bounded_integer(0, 65535),
        0,
        "MQTT 5 topic aliases the broker uses towards clients that allow them",
        implemented=True,
        hidden=True,
    ),
    _S(
        "max_keepalive",
        t.bounded_integer(0, 65535),
        0,
        "non-standard (mosquitto): MQTT 5 clients asking for a longer or no keep "
        "alive get this Server Keep Alive in seconds; 0 = the client's value",
        implemented=True,
        hidden=True,
    ),
    _S(
        "suppress_lwt_on_session_takeover",
        _FLAG,
        False,
        "do not publish the will when a session is taken over",
        implemented=True,
        hidden=True,
    ),
    _S(
        "disconnect_on_unauthorized_publish_v3",
        _FLAG,
        False,
        "close MQTT 3.1 connections that publish without permission (3.1.1 ones "
        "always are; otherwise the publish is acknowledged and dropped)",
        implemented=True,
    ),
    _S(
        "queue_type",
        t.enum("fifo", "lifo"),
        "fifo",
        "offline/online queue order",
        implemented=True,
        hidden=True,
    ),
    _S(
        "queue_deliver_mode",
        t.enum("fanout", "balance"),
        "fanout",
        "delivery to several sessions of one client ID",
        hidden=True,
    ),
    _S(
        "queue_sup_sup_children",
        t.bounded_integer(1),
        50,
        "number of queue supervisors (no effect here)",
        hidden=True,
    ),
    _S(
        "max_drain_time",
        _MS,
        500,
        "milliseconds a migrated queue lingers for stragglers",
        hidden=True,
    ),
    _S(
        "max_msgs_per_drain_step",
        t.bounded_integer(1),
        100,
        "messages moved per queue migration step",
        hidden=True,
    ),
    _S("expire_retain_cache", _SEC, 0, "seconds retained messages stay cached; 0 = forever"),
    _S(
        "subscriber_retain_mode",
        t.enum("immediate", "syncwait"),
        "immediate",
        "deliver retained messages immediately or after subscription sync",
        hidden=True,
    ),
    _S("default_reg_view", _STR, "vmq_reg_trie", "routing view (no effect here)", hidden=True),
    _S(
        "vmq_reg_view",
        _STR,
        "vmq_reg_trie",
        "alias of default_reg_view used in VerneMQ's docs (no effect here)",
        hidden=True,
    ),
    _S(
        "systree_reg_view",
        _STR,
        "vmq_reg_trie",
        "routing view of $SYS (no effect here)",
        hidden=True,
    ),
    _S(
        "leveldb_message_store.directory",
        _PATH,
        "./data/msgstore",
        "legacy message store directory",
        hidden=True,
    ),
    _S("plumtree.directory", _PATH, "./data/meta", "legacy metadata directory", hidden=True),
    _S("setup.log_dir", _PATH, "./log/", "legacy setup log directory", hidden=True),
    _S("setup.data_dir", _PATH, "./data/", "legacy setup data directory", hidden=True),
    _S("reg_views", _STR, "[vmq_reg_trie]", "routing views started (no effect here)", hidden=True),
    _S(
        "outgoing_clustering_buffer_size",
        t.parse_bytesize,
        67108864,
        "bytes buffered per unreachable peer before dropping",
        hidden=True,
        implemented=True,
    ),
    _S(
        "incoming_clustering_buffer_size",
        t.parse_bytesize,
        67108864,
        "largest accepted cluster frame/buffer in bytes",
        hidden=True,
        implemented=True,
    ),
    _S(
        "outgoing_clustering_flush_threshold",
        t.parse_bytesize,
        65536,
        "pending bytes that trigger a cluster batch flush",
        hidden=True,
        implemented=True,
    ),
    _S(
        "outgoing_cluster_handshake_ack_timeout",
        _MS,
        250,
        "milliseconds to wait for vmq-connect-ack",
        hidden=True,
        implemented=True,
    ),
    _S(
        "outgoing_connect_timeout",
        _MS,
        10000,
        "milliseconds to connect to a peer's data port",
        hidden=True,
        implemented=True,
    ),
    _S(
        "outgoing_connect_options",
        _STR,
        "[{keepalive, true}, {send_timeout, 0}]",
        "Erlang socket options for cluster data links (accepted, ignored)",
        hidden=True,
    ),
    _S(
        "outgoing_connect_params_module",
        _STR,
        "vmq_cluster_node",
        "module answering a peer's data-port probe (accepted, ignored)",
        hidden=True,
    ),
    _S(
        "remote_enqueue_timeout",
        _MS,
        5000,
        "milliseconds to wait for a remote enqueue",
        hidden=True,
        implemented=True,
    ),
    _S(
        "cluster_ready_rpc_timeout",
        _MS,
        5000,
        "milliseconds for the readiness probe of all members",
        hidden=True,
        implemented=True,
    ),
    _S(
        "netsplit_detection_time",
        _MS,
        5000,
        "milliseconds within which a member that stopped answering is detected "
        "(vernemq; VerneMQ relies on net_ticktime, about a minute)",
        implemented=True,
    ),
    # --- 3.4 plugins ------------------------------------------------------
    _S("plugins.$name", _FLAG, False, "enable the plugin <name>"),
    _S("plugins.$name.path", _OPTPATH, None, "directory of a user plugin"),
    _S("plugins.$name.priority", _INT, None, "plugin load order; lower first"),
    _S(
        "plugins.vmq_passwd",
        _FLAG,
        True,
        "password file authentication plugin",
        implemented=True,
    ),
    _S("plugins.vmq_acl", _FLAG, True, "ACL file authorisation plugin", implemented=True),
    _S("plugins.vmq_diversity", _FLAG, False, "Lua scripting plugin"),
    _S("plugins.vmq_webhooks", _FLAG, False, "webhooks plugin"),
    _S("plugins.vmq_bridge", _FLAG, False, "MQTT bridge plugin"),
    _S(
        "vmq_acl.acl_file",
        _PATH,
        "./etc/vmq.acl",
        "ACL file (topic/user/pattern lines); unreadable = everything refused",
        implemented=True,
    ),
    _S(
        "vmq_acl.acl_reload_interval",
        _SEC,
        10,
        "seconds between checks of the ACL file for changes; 0 = never",
        implemented=True,
    ),
    _S(
        "vmq_passwd.password_file",
        _PATH,
        "./etc/vmq.passwd",
        "password file (user:$6$ hash lines, see vmq-passwd)",
        implemented=True,
    ),
    _S(
        "vmq_passwd.password_reload_interval",
        _SEC,
        10,
        "seconds between checks of the password file for changes; 0 = never",
        implemented=True,
    ),
    _S("vmq_webhooks.$name.hook", _STR, None, "hook that webhook <name> handles"),
    _S("vmq_webhooks.$name.endpoint", _STR, None, "URL that webhook <name> posts to"),
    _S(
        "vmq_webhooks.$name.base64payload",
        _FLAG,
        True,
        "base64-encode payloads sent to webhook <name>",
    ),
    _S(
        "vmq_webhooks.$name.no_payload",
        _FLAG,
        False,
        "leave payloads out of requests to webhook <name>",
    ),
    _S("vmq_webhooks.$name.response_timeout", _MS, 5000, "milliseconds to wait for webhook <name>"),
    _S(
        "vmq_webhooks.pool_max_connections",
        t.bounded_integer(1),
        100,
        "HTTP connection pool size of the webhooks plugin",
    ),
    _S("vmq_webhooks.pool_timeout", _MS, 60000, "milliseconds an idle webhook connection is kept"),
    _S("vmq_webhooks.cafile", _OPTPATH, None, "CA file for HTTPS webhooks"),
    _S("vmq_webhooks.certfile", _OPTPATH, None, "client certificate for HTTPS webhooks"),
    _S("vmq_webhooks.keyfile", _OPTPATH, None, "client key for HTTPS webhooks"),
    _S("vmq_webhooks.verify_peer", _FLAG, True, "verify HTTPS webhook servers"),
    _S("vmq_bridge.$type.$name", _STR, None, "bridge <name> to host:port over tcp or ssl (type)"),
    _S("vmq_bridge.$type.$name.$option", _STR, None, "option of bridge <name>"),
    _S("vmq_diversity.script_dir", _OPTPATH, None, "directory of Lua scripts"),
    _S("vmq_diversity.$name.file", _OPTPATH, None, "Lua script <name>"),
    _S("vmq_diversity.$section.$option", _STR, None, "vmq_diversity setting"),
    _S("vmq_diversity.$section.$sub.$option", _STR, None, "vmq_diversity setting"),
    # --- 3.4 metadata and storage ------------------------------------------
    _S(
        "metadata_plugin",
        t.enum("vmq_plumtree", "vmq_swc"),
        "vmq_swc",
        "replicated metadata store implementation",
    ),
    _S(
        "message_store_plugin",
        _STR,
        "vmq_generic_msg_store",
        "offline message store implementation",
        hidden=True,
    ),
    _S(
        "vmq_generic_msg_store.db_backend",
        t.enum("leveldb", "rocksdb", "leveled"),
        "leveldb",
        "message store backend",
    ),
    _S("vmq_generic_msg_store.nr_of_buckets", t.bounded_integer(1), 12, "message store buckets"),
    _S("vmq_generic_msg_store.store_dir", _PATH, "./data/msgstore", "message store directory"),
    _S(
        "leveldb.maximum_memory.percent",
        t.bounded_integer(1, 100),
        70,
        "percent of RAM LevelDB may use",
    ),
    _S("leveldb.maximum_memory", t.parse_bytesize, None, "bytes LevelDB may use"),
    _S("leveldb.compression", _FLAG, True, "compress LevelDB blocks"),
    _S(
        "leveldb.compression.algorithm",
        t.enum("snappy", "lz4"),
        "lz4",
        "LevelDB compression algorithm",
    ),
    _S("leveldb.data_root", _OPTPATH, None, "LevelDB directory"),
    _S("leveldb.sync_on_write", _FLAG, False, "fsync every LevelDB write"),
    _S("leveldb.limited_developer_mem", _FLAG, False, "LevelDB small-memory mode"),
    _S(
        "leveldb.write_buffer_size_min",
        t.parse_bytesize,
        31457280,
        "LevelDB minimum write buffer in bytes",
    ),
    _S(
        "leveldb.write_buffer_size_max",
        t.parse_bytesize,
        62914560,
        "LevelDB maximum write buffer in bytes",
    ),
    _S("leveldb.threads", t.bounded_integer(1), 71, "LevelDB worker threads"),
    _S("leveldb.verify_checksums", _FLAG, True, "verify LevelDB checksums on read"),
    _S("leveldb.verify_compaction", _FLAG, True, "verify LevelDB checksums on compaction"),
    _S("leveldb.block.size", t.parse_bytesize, 4096, "LevelDB block size in bytes"),
    _S("leveldb.block.size_steps", _NONNEG, 16, "LevelDB block size steps"),
    _S(
        "leveldb.block.restart_interval",
        t.bounded_integer(1),
        16,
        "LevelDB keys between restart points",
    ),
    _S(
        "leveldb.block_cache_threshold",
        t.parse_bytesize,
        33554432,
        "LevelDB block cache threshold in bytes",
    ),
    _S("leveldb.bloomfilter", _FLAG, True, "LevelDB bloom filters"),
    _S("leveldb.fadvise_willneed", _FLAG, False, "LevelDB fadvise WILLNEED"),
    _S("leveldb.delete_threshold", _NONNEG, 1000, "LevelDB tombstone compaction trigger"),
    _S("leveldb.tiered", t.parse_string, "off", "LevelDB tiered storage level or off"),
    _S("leveldb.tiered.path.fast", _OPTPATH, None, "LevelDB fast tier directory"),
    _S("leveldb.tiered.path.slow", _OPTPATH, None, "LevelDB slow tier directory"),
    _S(
        "leveldb.compaction.trigger.tombstone_count",
        t.parse_string,
        "1000",
        "LevelDB grooming trigger (count or off)",
    ),
    _S("vmq_swc.swc_groups", t.bounded_integer(1), 10, "SWC replication groups", hidden=True),
    _S(
        "vmq_swc.sync_interval",
        _MS,
        5000,
        "milliseconds between SWC anti-entropy exchanges",
        hidden=True,
    ),
    _S(
        "vmq_swc.sync_interval.leeway",
        _MS,
        2500,
        "random milliseconds added to the SWC sync interval",
        hidden=True,
    ),
    _S(
        "vmq_swc.gc_interval",
        _MS,
        15000,
        "milliseconds between SWC garbage collections",
        hidden=True,
    ),
    _S("vmq_swc.periodic_gc", _FLAG, True, "run SWC garbage collection periodically", hidden=True),
    _S("vmq_swc.sync_timeout", _MS, 60000, "milliseconds an SWC exchange may take", hidden=True),
    _S("vmq_swc.fast_call_timeout", _MS, 5000, "milliseconds for fast SWC calls", hidden=True),
    _S("vmq_swc.enable_broadcast", _FLAG, True, "broadcast SWC writes eagerly", hidden=True),
    _S(
        "vmq_swc.exchange_batch_size",
        t.bounded_integer(1),
        100,
        "keys per SWC exchange batch",
        hidden=True,
    ),
    _S("vmq_swc.init_sync_procedure", _FLAG, False, "run a full sync when joining", hidden=True),
    _S(
        "vmq_swc.prevent_nonempty_join",
        _FLAG,
        True,
        "refuse to join a cluster while holding data",
        hidden=True,
    ),
    _S(
        "vmq_swc.db_backend",
        t.enum("leveldb", "rocksdb", "leveled"),
        "leveldb",
        "SWC storage backend",
        hidden=True,
    ),
    # --- 3.4 monitoring -----------------------------------------------------
    _S("systree_enabled", _FLAG, True, "publish $SYS metrics"),
    _S("systree_interval", _MS, 20000, "milliseconds between $SYS publications; 0 = disabled"),
    _S("systree_qos", t.bounded_integer(0, 2), 0, "QoS of $SYS messages", hidden=True),
    _S("systree_retain", _FLAG, False, "retain $SYS messages", hidden=True),
    _S("systree_mountpoint", _STR, "", "mountpoint of $SYS messages", hidden=True),
    _S("systree_prefix", _STR, "$SYS/", "topic prefix of $SYS messages", hidden=True),
    _S("graphite_enabled", _FLAG, False, "push metrics to Graphite"),
    _S("graphite_host", _STR, "localhost", "Graphite host"),
    _S("graphite_port", t.bounded_integer(1, 65535), 2003, "Graphite port"),
    _S("graphite_interval", _MS, 20000, "milliseconds between Graphite pushes"),
    _S("graphite_prefix", _STR, "", "prefix of Graphite metric names"),
    _S("graphite_api_key", _STR, "", "Graphite API key"),
    _S("graphite_connect_timeout", _MS, 5000, "milliseconds to connect to Graphite", hidden=True),
    _S(
        "graphite_reconnect_timeout",
        _MS,
        15000,
        "milliseconds before reconnecting to Graphite",
        hidden=True,
    ),
    _S("graphite_include_labels", _FLAG, False, "add labels to Graphite metric names", hidden=True),
    _S("prometheus_namespace", _STR, "vernemq_", "prefix of Prometheus metric names"),
    _S(
        "http_modules",
        t.parse_string_list,
        (
            "vmq_metrics_http",
            "vmq_http_mgmt_api",
            "vmq_status_http",
            "vmq_health_http",
            "vmq_http_v2_api",
        ),
        "tuple of HTTP modules served by default",
        hidden=True,
    ),
    _S(
        "http_module.$module.auth.mode",
        t.enum("apikey", "noauth"),
        "noauth",
        "authentication of HTTP module <module>",
    ),
    _S(
        "http_module.vmq_http_mgmt_api.auth.mode",
        t.enum("apikey", "noauth"),
        "apikey",
        "authentication of the management API",
    ),
    _S(
        "http_module.vmq_http_v2_api.auth.mode",
        t.enum("apikey", "noauth"),
        "apikey",
        "authentication of the v2 API",
    ),
    _S(
        "http_module.vmq_http_pub.auth.mode",
        t.enum("apikey", "noauth"),
        "apikey",
        "authentication of the HTTP publish API",
    ),
    _S("min_apikey_length", _NONNEG, 0, "shortest accepted API key", hidden=True),
    _S(
        "max_apikey_expiry_days",
        _NONNEG,
        None,
        "days an API key may live; None = unlimited",
        hidden=True,
    ),
    # --- 3.4 logging --------------------------------------------------------
    _S(
        "log.console",
        t.enum("off", "file", "console", "both"),
        "file",
        "where the console log goes",
        implemented=True,
    ),
    _S(
        "log.console.level",
        _ERLANG_LOG_LEVELS,
        "info",
        "lowest level logged to the console log",
        implemented=True,
    ),
    _S("log.console.file", _PATH, "./log/console.log", "console log file", implemented=True),
    _S(
        "log.console.file.format",
        t.enum("text", "json"),
        "text",
        "format of the console log file",
        implemented=True,
    ),
    _S(
        "log.console.console.format",
        t.enum("text", "json"),
        "text",
        "format of console log lines on stdout",
        implemented=False,
    ),
    _S(
        "log.console.rotation.size",
        t.parse_bytesize_or_infinity,
        None,
        "bytes before the console log rotates; None = infinity",
        implemented=True,
    ),
    _S(
        "log.console.rotation.keep",
        t.parse_rotation_keep,
        5,
        "rotated console logs kept",
        implemented=True,
    ),
    _S("log.error", _FLAG, True, "write an error log"),
    _S("log.error.file", _PATH, "./log/error.log", "error log file"),
    _S("log.crash", _FLAG, False, "write a crash log"),
    _S("log.crash.file", _PATH, "./log/crash.log", "crash log file"),
    _S(
        "log.crash.maximum_message_size",
        t.parse_bytesize,
        65536,
        "largest crash log message in bytes",
    ),
    _S("log.crash.size", t.parse_bytesize, 10485760, "bytes before the crash log rotates"),
    _S("log.crash.rotation", _STR, "$D0", "crash log rotation schedule"),
    _S("log.crash.rotation.keep", t.parse_rotation_keep, 5, "rotated crash logs kept"),
    _S("log.error.redirect", _FLAG, True, "redirect Erlang error_logger messages", hidden=True),
    _S(
        "log.error.messages_per_second",
        _NONNEG,
        100,
        "error_logger messages handled per second",
        hidden=True,
    ),
    _S("sasl", _FLAG, False, "Erlang's built-in error logger (no effect here)", hidden=True),
    _S("log.sasl", _FLAG, False, "log SASL reports"),
    _S("log.syslog", _FLAG, False, "log to syslog"),
    _S("log.syslog.ident", _STR, "vernemq", "syslog identity"),
    _S("log.syslog.level", _ERLANG_LOG_LEVELS, "info", "lowest level sent to syslog"),
    _S("log.syslog.format", t.enum("rfc3164", "rfc5424"), "rfc3164", "syslog format"),
    _S("log.syslog.facility", _STR, "daemon", "syslog facility"),
    _S("log.syslog.remote.host", _STR, None, "remote syslog host; None = local"),
    _S("log.syslog.remote.port", t.bounded_integer(1, 65535), 514, "remote syslog port"),
    _S("log.syslog.remote.protocol", t.enum("udp", "tcp"), "udp", "remote syslog transport"),
    _S(
        "logging.keepalive_as_warning",
        _FLAG,
        True,
        "log keepalive timeouts as warnings (else info)",
    ),
    _S(
        "logging.obfuscation_secret",
        _STR,
        None,
        "secret for obfuscating client data in logs; None = random",
    ),
    # --- platform directories -----------------------------------------------
    _S("platform_data_dir", _PATH, "./data", "directory for durable state", implemented=True),
    _S("platform_log_dir", _PATH, "./log", "directory for log files", implemented=True),
    _S("platform_etc_dir", _PATH, "./etc", "directory for configuration files", implemented=True),
    _S(
        "platform_bin_dir",
        _PATH,
        "./bin",
        "VerneMQ's bin directory (unused here)",
        implemented=True,
        hidden=True,
    ),
    _S(
        "platform_lib_dir",
        _PATH,
        "./lib",
        "VerneMQ's lib directory (unused here)",
        implemented=True,
        hidden=True,
    ),
    # --- manhole --------------------------------------------------------------
    _S(
        "manhole", _FLAG, False, "serve an SSH Python shell into the running node", implemented=True
    ),
    _S(
        "manhole.listener",
        t.parse_ip_port,
        t.HostPort("127.0.0.1", 6022),
        "ip:port of the manhole SSH server",
        implemented=True,
    ),
    _S("manhole.user", _STR, "vernemq", "SSH user name the manhole accepts", implemented=True),
    _S(
        "manhole.authorized_keys_file",
        _OPTPATH,
        None,
        "OpenSSH authorized_keys file of accepted public keys; None = no key login",
        implemented=True,
    ),
    _S(
        "manhole.password_file",
        _OPTPATH,
        None,
        "vmq.passwd-format file (user:hash lines); None = no password login",
        implemented=True,
    ),
    _S(
        "manhole.host_key_file",
        _OPTPATH,
        None,
        "SSH host key; None = <platform_data_dir>/manhole_host_key",
        implemented=True,
    ),
)


class Schema(Mapping[str, Setting]):
    """
    All keys of C{vernemq.conf}, indexed by key (patterns keep C{$name}).

    Look a concrete key up with L{lookup}: an exact key wins over a pattern,
    and among patterns the one with the most literal segments wins.
    """

    def __init__(self, settings: list[Setting]) -> None:
        self._settings: dict[str, Setting] = {}
        for setting in settings:
            if setting.key in self._settings:
                raise ValueError(f"duplicate schema key {setting.key}")
            self._settings[setting.key] = setting
        patterns = [s for s in settings if s.is_pattern]
        patterns.sort(key=lambda s: -sum(1 for seg in s.key.split(".") if "$" not in seg))
        self._patterns = [
            (
                re.compile(
                    r"\.".join(
                        r"[^.]+" if seg.startswith("$") else re.escape(seg)
                        for seg in s.key.split(".")
                    )
                    + r"\Z"
                ),
                s,
            )
            for s in patterns
        ]

    def __getitem__(self, key: str) -> Setting:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def lookup(self, key: str) -> Setting | None:
        """
        The setting that governs the concrete key C{key}, or C{None}.
        """
        setting = self._settings.get(key)
        if setting is not None:
            return setting
        for regex, candidate in self._patterns:
            if regex.match(key):
                return candidate
        return None

    def suggest(self, key: str) -> str | None:
        """
        The known key closest to the unknown C{key}, if one is close enough.
        """
        candidates: list[str] = []
        segments = key.split(".")
        for schema_key in self._settings:
            pattern = schema_key.split(".")
            if "$" not in schema_key:
                candidates.append(schema_key)
            elif len(pattern) == len(segments):
                candidates.append(
                    ".".join(
                        mine if seg.startswith("$") else seg
                        for seg, mine in zip(pattern, segments, strict=True)
                    )
                )
        candidates = [candidate for candidate in candidates if candidate != key]
        matches = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
        return matches[0] if matches else None


#: The schema of every key.
SCHEMA = Schema(list(_GLOBAL_SETTINGS) + _listener_settings())
