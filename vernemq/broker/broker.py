# -*- test-case-name: tests.test_broker_broker -*-
"""
The broker: node-wide state shared by every MQTT listener.

L{Broker} owns

  - the session registry C{sessions}: C{(mountpoint, client_id)} ->
    L{vernemq.broker.session.Session}, online and offline;
  - one L{vernemq.broker.router.Topics} (subscription trie + retained
    store) per mountpoint;
  - the plugin hook chain (L{vernemq.plugins.hooks.HookChain});
  - CONNECT handling: client id rules, MQTT 5.0 enhanced authentication
    (L{vernemq.broker.enhanced_auth}), authentication, the will's
    authorization, session takeover, session present, the MQTT 5.0
    connection properties (outbound topic aliases, Maximum Packet Size,
    Server Keep Alive with C{max_keepalive}), CONNACK;
  - the write batching of every connection (see below);
  - node counters (L{Broker.stats}).

Write batching
==============

Connections do not write to their transport per packet.  They collect
outgoing bytes and register once in the broker's dirty list.  Input
handling runs inside L{Broker.begin}/L{Broker.end}; the outermost
L{Broker.end} flushes every dirty connection with one C{transport.write}.
A publisher's read that fans out to N subscribers thus costs N writes,
whatever the number of PUBLISH packets in the read.  Bytes produced
outside a batch (timers, async hook results) are flushed by a
C{callLater(0)}.

Shutdown
========

L{Broker.shutdown} does what VerneMQ does when a node stops: every client
connection is closed as if it was lost, so wills are published (MQTT 5.0
clients first get DISCONNECT 0x8B, server shutting down).  All wills are
routed before any connection closes, so clients that stay connected to
the end receive them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vernemq.auth import filePlugins
from vernemq.auth.reload import ReloadingFile
from vernemq.broker.enhanced_auth import EnhancedAuth
from vernemq.broker.message import Message
from vernemq.broker.router import Stats, Topics, route
from vernemq.broker.session import Limits, Session
from vernemq.broker.shared import POLICIES
from vernemq.broker.topics import validate_topic_name
from vernemq.config import Config
from vernemq.mqtt.packets import ConnAck, Connect
from vernemq.plugins.hooks import Error, HookChain, Ok

if TYPE_CHECKING:
    from vernemq.cluster.routing import ClusterRouter
    from vernemq.cluster.sessions import ClusterSessions
    from vernemq.mqtt.protocol import MQTTProtocol

__all__ = ["Broker"]

T = TypeVar("T")
R = TypeVar("R")


def _then(value: T | Deferred[T], fn: Callable[..., R], *args: Any) -> R | Deferred[R]:
    """Call C{fn(value, *args)} now, or when C{value} (a Deferred) fires."""
    if isinstance(value, Deferred):
        return value.addCallback(fn, *args)
    return fn(value, *args)


class Broker:
    """
    Node-wide MQTT state.

    @ivar config: the node's configuration.
    @ivar reactor: the clock every timer goes through.
    @ivar hooks: the plugin hook chain: the one given, else one holding the
        C{vmq_passwd} and C{vmq_acl} plugins the configuration enables.
    @ivar sessions: C{(mountpoint, client_id)} -> session (live mapping).
    @ivar counters: hot-path counters (see L{stats}).
    @ivar connections: the open MQTT connections of every listener.
    """

    log = Logger()

    def __init__(
        self, config: Config, reactor: IReactorTime, hooks: HookChain | None = None
    ) -> None:
        self.config = config
        self.reactor = reactor
        #: The file-based auth plugins (vmq_passwd, vmq_acl) built from the
        #: configuration; the node runs them as services (file reloads).
        self.auth_plugins: list[ReloadingFile] = []
        if hooks is None:
            hooks = HookChain()
            self.auth_plugins = filePlugins(config, reactor, hooks)
        self.hooks = hooks
        self.sessions: dict[tuple[str, str], Session] = {}
        self.counters = Stats()
        #: True while the cluster is not ready (a netsplit); set by
        #: L{vernemq.cluster.readiness}.  See L{netsplit_allows}.
        self.netsplit = False
        #: True while this node has cluster peers: publishes and
        #: subscription changes then also go to C{cluster_router}
        #: (L{vernemq.cluster.routing.ClusterRouter}); a single node checks
        #: this flag and does nothing more.
        self.clustered = False
        self.cluster_router: ClusterRouter | None = None
        #: Registration coordination and session moves across nodes
        #: (L{vernemq.cluster.sessions.ClusterSessions}), used while
        #: C{clustered}.
        self.cluster_sessions: ClusterSessions | None = None
        #: Operations refused because of a netsplit, by VerneMQ metric name.
        self.netsplit_errors = {
            "mqtt_connect_error": 0,
            "mqtt_publish_error": 0,
            "mqtt_subscribe_error": 0,
            "mqtt_unsubscribe_error": 0,
        }
        self.connections: set[MQTTProtocol] = set()
        self.shutting_down = False
        self._topics: dict[str, Topics] = {}
        self._dirty: list[MQTTProtocol] = []
        self._batch = 0
        self._flush_call: IDelayedCall | None = None

    # -- topic trees -------------------------------------------------------

    def topics(self, mountpoint: str) -> Topics:
        """The topic tree of C{mountpoint} (created on first use)."""
        topics = self._topics.get(mountpoint)
        if topics is None:
            topics = self._topics[mountpoint] = Topics(
                mountpoint,
                self.config["shared_subscription_policy"],
                policy_overrides=self._shared_policy_of,
            )
        return topics

    def _shared_policy_of(self, origin: object) -> str | None:
        """The publisher's own shared subscription policy (a register modifier)."""
        session = self.sessions.get(origin)  # type: ignore[call-overload]
        return None if session is None else session.limits.shared_policy

    def mountpoints(self) -> list[str]:
        """The mountpoints that have a topic tree."""
        return list(self._topics)

    # -- routing -------------------------------------------------------------

    def publish(self, topics: Topics, msg: Message, session: Session | None = None) -> int:
        """
        Route C{msg} in C{topics} (retained store included) and tell the
        C{on_publish} hooks.

        @return: the number of subscribers reached.
        """
        n = route(topics, msg, self.counters)
        if self.clustered and self.cluster_router is not None:
            n += self.cluster_router.forward(topics, msg)
        if self.hooks.observes_publish:
            self.hooks.all(
                "on_publish",
                session.username if session is not None else None,
                session.sid if session is not None else (topics.mountpoint, ""),
                msg.qos,
                msg.topic,
                msg.payload,
                msg.retain,
            )
        return n

    def publish_will(self, session: Session, will: Message) -> None:
        """Publish a session's will now (its expiry interval starts now)."""
        interval = will.properties.get("message_expiry_interval")
        if interval is not None:
            will.expires_at = self.reactor.seconds() + interval
        self.publish(session.topics, will, session)

    # -- sessions --------------------------------------------------------------

    def session_expiry(self, interval: int) -> int | None:
        """
        The session expiry in force for an MQTT 5.0 interval: C{0xFFFFFFFF}
        (never) is capped by C{persistent_client_expiration} when set.
        """
        if interval >= 0xFFFFFFFF:
            cap: int | None = self.config["persistent_client_expiration"]
            return cap
        return interval

    def end_session(self, session: Session, why: str) -> None:
        """
        Remove a session: C{why} is C{"gone"} (clean session ended with its
        connection), C{"expired"}, C{"replaced"} (a clean start took the
        client id) or C{"shutdown"}.
        """
        session.finish()
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
        if why == "gone":
            self.hooks.all("on_client_gone", session.sid)
        elif why == "expired":
            self.hooks.all("on_session_expired", session.sid)

    def limits(self, modifiers: Any = None) -> Limits:
        """The session limits from the configuration and register modifiers."""
        config = self.config
        limits = Limits(
            max_inflight=config["max_inflight_messages"],
            max_online=config["max_online_messages"],
            max_offline=config["max_offline_messages"],
            retry_interval=config["retry_interval"],
            upgrade_qos=config["upgrade_outgoing_qos"],
            lifo=config["queue_type"] == "lifo",
            max_message_size=config["max_message_size"],
            max_message_rate=config["max_message_rate"],
        )
        if modifiers:
            get = modifiers.get
            limits.max_inflight = int(get("max_inflight_messages", limits.max_inflight))
            limits.max_online = int(get("max_online_messages", limits.max_online))
            limits.max_offline = int(get("max_offline_messages", limits.max_offline))
            limits.max_message_size = int(get("max_message_size", limits.max_message_size))
            limits.max_message_rate = int(get("max_message_rate", limits.max_message_rate))
            # VerneMQ starts a second lifetime timer; the earlier one wins.
            limits.max_connection_lifetime = float(get("max_connection_lifetime", 0))
            if "retry_interval" in modifiers:
                # Register modifiers give it in milliseconds (VerneMQ's webhooks).
                limits.retry_interval = float(modifiers["retry_interval"]) / 1000.0
            limits.upgrade_qos = bool(get("upgrade_qos", limits.upgrade_qos))
            allowed = {
                f"allow_{op}": bool(modifiers[f"allow_{op}"])
                for op in ("publish", "subscribe", "unsubscribe")
                if f"allow_{op}" in modifiers
            }
            if allowed:
                limits.netsplit = allowed
            policy = get("shared_subscription_policy")
            if policy is not None:
                if policy in POLICIES:
                    limits.shared_policy = policy
                else:
                    self.log.warn(
                        "ignoring unknown shared_subscription_policy modifier {policy!r}",
                        policy=policy,
                    )
        return limits

    def netsplit_allows(self, operation: str, overrides: Any = None) -> bool:
        """
        Whether C{operation} (C{register}, C{publish}, C{subscribe},
        C{unsubscribe}) may go on while the cluster is not ready: the
        session's C{allow_<operation>} register modifier if given, else
        C{allow_<operation>_during_netsplit}, else C{trade_consistency}.
        """
        if overrides:
            override = overrides.get(f"allow_{operation}")
            if override is not None:
                return bool(override)
        config = self.config
        return bool(
            config[f"allow_{operation}_during_netsplit"] or config["trade_consistency"]
        )

    def _client_id(self) -> str:
        """A fresh client id for a client that sent none (VerneMQ style)."""
        return "anon-" + base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")

    # -- CONNECT ---------------------------------------------------------------

    def connect(self, conn: MQTTProtocol, pkt: Connect) -> Deferred[None] | None:
        """
        Handle the CONNECT of C{conn}: answer CONNACK and attach a session,
        or refuse and close.

        @return: a Deferred when an asynchronous hook is involved.
        """
        config = self.config
        settings = conn.listener.settings
        v5 = pkt.version == 5
        allowed = settings.get("allowed_protocol_versions", (3, 4, 5, 131))
        if pkt.protocol_level not in allowed:
            conn.refuse(0x84, f"protocol level {pkt.protocol_level} not allowed here")
            return None
        client_id = pkt.client_id
        assigned: str | None = None
        if not client_id:
            if pkt.version == 3 or (pkt.version == 4 and not pkt.clean_start):
                conn.refuse(0x85, "empty client id")
                return None
            client_id = self._client_id()
            if v5:
                assigned = client_id
        elif len(client_id.encode("utf-8")) > config["max_client_id_size"]:
            conn.refuse(0x85, f"client id longer than {config['max_client_id_size']} bytes")
            return None
        conn.client_id = client_id
        sid = (settings.get("mountpoint", ""), client_id)
        if v5 and "authentication_method" in pkt.properties:
            # Enhanced authentication first (on_auth_m5); it calls
            # register() once the exchange succeeded.
            conn.auth = EnhancedAuth(self, conn, pkt)
            return conn.auth.start(sid, assigned)
        return self.register(conn, pkt, sid, assigned)

    def register(
        self, conn: MQTTProtocol, pkt: Connect, sid: tuple[str, str], assigned: str | None
    ) -> Deferred[None] | None:
        """
        The authentication step of a CONNECT (after any enhanced
        authentication): C{auth_on_register} / C{auth_on_register_m5}
        unless anonymous clients are allowed, then the will, then CONNACK.

        @return: a Deferred when an asynchronous hook is involved.
        """
        config = self.config
        settings = conn.listener.settings
        v5 = pkt.version == 5
        if config["allow_anonymous"] or settings.get("allow_anonymous_override", False):
            answer: Ok | Error | Deferred[Ok | Error] = Ok()
        elif v5:
            answer = self.hooks.all_till_ok(
                "auth_on_register_m5",
                conn.peer,
                sid,
                pkt.username,
                pkt.password,
                pkt.clean_start,
                pkt.properties,
            )
        else:
            answer = self.hooks.all_till_ok(
                "auth_on_register", conn.peer, sid, pkt.username, pkt.password, pkt.clean_start
            )
        result: Any = _then(answer, self._registered, conn, pkt, sid, assigned)
        return result if isinstance(result, Deferred) else None

    def _registered(
        self,
        answer: Ok | Error,
        conn: MQTTProtocol,
        pkt: Connect,
        sid: tuple[str, str],
        assigned: str | None,
    ) -> Deferred[None] | None:
        if conn.closed:
            return None
        if not isinstance(answer, Ok):
            if answer.reason == "invalid_credentials":
                code = 0x86
            elif answer.reason_code and pkt.version == 5:
                code = answer.reason_code
            else:
                code = 0x87
            conn.refuse(code, f"authentication failed: {answer.reason}")
            return None
        modifiers = answer.modifiers
        will = pkt.will
        if will is None:
            return self._accept(conn, pkt, sid, assigned, modifiers, None, 0)
        max_depth = self.config["topic_max_depth"]
        if not validate_topic_name(will.topic, max_depth):
            conn.refuse(0x90, f"invalid will topic {will.topic!r}")
            return None
        props = dict(will.properties)
        delay = int(props.pop("will_delay_interval", 0))
        cap = self.config["max_last_will_delay"]
        if cap is not None and delay > cap:
            delay = cap
        msg = Message(will.topic, will.payload, will.qos, will.retain, props, None, 0, sid)
        if pkt.version == 5:
            check = self.hooks.all_till_ok(
                "auth_on_publish_m5",
                pkt.username,
                sid,
                will.qos,
                will.topic,
                will.payload,
                will.retain,
                will.properties,
            )
        else:
            check = self.hooks.all_till_ok(
                "auth_on_publish", pkt.username, sid, will.qos, will.topic, will.payload,
                will.retain,
            )
        result: Any = _then(
            check, self._will_checked, conn, pkt, sid, assigned, modifiers, msg, delay
        )
        return result if isinstance(result, Deferred) else None

    def _will_checked(
        self,
        answer: Ok | Error,
        conn: MQTTProtocol,
        pkt: Connect,
        sid: tuple[str, str],
        assigned: str | None,
        modifiers: Any,
        will: Message,
        delay: int,
    ) -> Deferred[None] | None:
        if conn.closed:
            return None
        if not isinstance(answer, Ok):
            conn.refuse(0x87, f"will to {will.topic!r} not authorized: {answer.reason}")
            return None
        return self._accept(conn, pkt, sid, assigned, modifiers, will, delay)

    def _accept(
        self,
        conn: MQTTProtocol,
        pkt: Connect,
        sid: tuple[str, str],
        assigned: str | None,
        modifiers: Any,
        will: Message | None,
        will_delay: int,
    ) -> Deferred[None] | None:
        """
        Register the session (taking over any older connection, on this
        node or, while clustered, another: L{vernemq.cluster.sessions}),
        CONNACK.
        """
        if self.netsplit and not self.netsplit_allows("register", modifiers):
            # VerneMQ: registration answers not_ready; CONNACK 3 / 0x88.
            self.netsplit_errors["mqtt_connect_error"] += 1
            conn.refuse(0x88, f"can't register client {sid[1]!r} due to reason not_ready")
            return None
        coordinator = self.cluster_sessions
        if self.clustered and coordinator is not None:
            d = coordinator.register(sid, pkt.clean_start)
            if d is not None:
                args = (conn, pkt, sid, assigned, modifiers, will, will_delay)
                return d.addCallbacks(
                    lambda _: self._register_local(*args),
                    lambda failure: self._not_registered(failure, conn, sid),
                )
        self._register_local(conn, pkt, sid, assigned, modifiers, will, will_delay)
        return None

    def _not_registered(self, failure: Any, conn: MQTTProtocol, sid: tuple[str, str]) -> None:
        """The cluster could not coordinate the registration: C{not_ready}."""
        if conn.closed:
            return
        self.netsplit_errors["mqtt_connect_error"] += 1
        conn.refuse(
            0x88,
            f"can't register client {sid[1]!r} due to reason not_ready "
            f"({failure.getErrorMessage()})",
        )

    def _register_local(
        self,
        conn: MQTTProtocol,
        pkt: Connect,
        sid: tuple[str, str],
        assigned: str | None,
        modifiers: Any,
        will: Message | None,
        will_delay: int,
    ) -> None:
        """Register the session on this node (taking over a local one), CONNACK."""
        if conn.closed:
            return
        config = self.config
        v5 = pkt.version == 5
        props = pkt.properties
        if v5:
            requested = int(props.get("session_expiry_interval", 0))
            expiry = self.session_expiry(requested)
        else:
            requested = -1
            expiry = 0 if pkt.clean_start else config["persistent_client_expiration"]
        if modifiers and "clean_session" in modifiers and not v5:
            expiry = 0 if modifiers["clean_session"] else config["persistent_client_expiration"]
        session = self.sessions.get(sid)
        if session is not None:
            old = session.conn
            if old is not None:
                self.log.info(
                    "client {client_id} (mountpoint {mountpoint!r}) taken over by {peer}",
                    client_id=sid[1],
                    mountpoint=sid[0],
                    peer=conn.peer_text,
                )
                session.connection_lost(
                    old, send_will=not config["suppress_lwt_on_session_takeover"]
                )
                old.taken_over()
            session = self.sessions.get(sid)
            if session is not None and pkt.clean_start:
                self.end_session(session, "replaced")
                session = None
        present = session is not None
        limits = self.limits(modifiers)
        if session is None:
            session = Session(self, self.topics(sid[0]), sid[1], limits, expiry)
            self.sessions[sid] = session
        else:
            session.limits = limits
            session.expiry = expiry
        session.username = pkt.username
        session.bridge = pkt.bridge
        session.max_depth = config["topic_max_depth"]
        window = limits.max_inflight or 65535
        if v5:
            window = min(
                window,
                int(props.get("receive_maximum", 65535)),
                config["receive_max_client"],
            )
            session.receive_max_in = config["receive_max_broker"]
        else:
            session.receive_max_in = 65535
        session.window = window
        session.attach(conn)
        if v5:
            session.set_outbound(
                min(int(props.get("topic_alias_maximum", 0)), config["topic_alias_max_broker"]),
                int(props.get("maximum_packet_size", 0)),
            )
        session.will = will
        session.will_delay = will_delay
        keep_alive = pkt.keep_alive
        server_keep_alive = config["max_keepalive"]
        if v5 and server_keep_alive and not 0 < keep_alive <= server_keep_alive:
            keep_alive = server_keep_alive
        else:
            server_keep_alive = 0
        conn.attach(session, keep_alive)
        ack_props: dict[str, Any] = {}
        if v5:
            if assigned is not None:
                ack_props["assigned_client_identifier"] = assigned
            if config["receive_max_broker"] < 65535:
                ack_props["receive_maximum"] = config["receive_max_broker"]
            # As VerneMQ: topic_alias_max_client is what clients may use,
            # topic_alias_max_broker what the broker uses towards clients
            # (never more than the client's Topic Alias Maximum allows).
            if config["topic_alias_max_client"]:
                ack_props["topic_alias_maximum"] = config["topic_alias_max_client"]
            if limits.max_message_size:
                ack_props["maximum_packet_size"] = limits.max_message_size
            granted = 0xFFFFFFFF if expiry is None else expiry
            if granted != requested:
                ack_props["session_expiry_interval"] = granted
            if server_keep_alive:
                ack_props["server_keep_alive"] = server_keep_alive
            if conn.auth is not None:
                ack_props.update(conn.auth.connack_properties)
        conn.send_packet(ConnAck(present, 0, ack_props))
        self.counters.connects += 1
        self.log.info(
            "client {client_id} connected from {peer} (MQTT level {protocol_level}, "
            "session present: {present}, username: {username!r})",
            client_id=sid[1],
            peer=conn.peer_text,
            protocol_level=pkt.protocol_level,
            present=present,
            username=pkt.username,
        )
        session.resume()
        if self.clustered and self.cluster_router is not None:
            # This node hosts the session now: its subscriber entry says so
            # (or goes, for a clean start that replaced one elsewhere).
            self.cluster_router.subscriptions_changed(session)
        self.hooks.all("on_register", conn.peer, sid, pkt.username)
        self.hooks.all("on_client_wakeup", sid)

    # -- write batching ----------------------------------------------------------

    def mark_dirty(self, conn: MQTTProtocol) -> None:
        """
        C{conn} has output to flush.  Called once per batch by the
        connection, when its buffer goes from empty to non-empty.
        """
        self._dirty.append(conn)
        if not self._batch and self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush_later)

    def begin(self) -> None:
        """Start handling input: writes are collected until L{end}."""
        self._batch += 1

    def end(self) -> None:
        """Finish handling input; the outermost call flushes."""
        self._batch -= 1
        if not self._batch and self._dirty:
            self.flush()

    def flush(self) -> None:
        """Write out every connection's collected output."""
        dirty = self._dirty
        while dirty:
            self._dirty = []
            for conn in dirty:
                conn.flush()
            dirty = self._dirty

    def _flush_later(self) -> None:
        self._flush_call = None
        self.flush()

    # -- node ----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """
        Counters: C{connections}, C{connects}, C{publish_in}, C{publish_out},
        C{routed}, C{unrouted}, C{dropped}, C{expired}, C{sessions},
        C{sessions_online}, C{subscriptions}, C{retained}.
        """
        out = self.counters.as_dict()
        out["sessions"] = len(self.sessions)
        out["sessions_online"] = sum(1 for s in self.sessions.values() if s.conn is not None)
        out["subscriptions"] = sum(t.subscription_count() for t in self._topics.values())
        out["retained"] = sum(len(t.retained) for t in self._topics.values())
        return out

    def shutdown(self) -> None:
        """
        Close every client connection: publish all wills first (as VerneMQ
        does for a stopping node), then close.
        """
        self.shutting_down = True
        conns = list(self.connections)
        self.begin()
        try:
            # Route the wills due now while every session is still attached:
            # a connection's shutdown detaches its session, which would then
            # miss the wills of the connections visited after it.
            for conn in conns:
                session = conn.session
                if session is not None and not conn.closed:
                    self._publish_will_now(session)
            for conn in conns:
                conn.shutdown()
        finally:
            self.end()
        for conn in conns:
            conn.close_transport()

    def _publish_will_now(self, session: Session) -> None:
        """
        Publish C{session}'s will if it would go out at once when its
        connection is lost (no will delay, or a session ending sooner);
        a delayed will is left to the session.
        """
        will = session.will
        if will is None:
            return
        delay = session.will_delay
        if session.expiry is not None and session.expiry < delay:
            delay = session.expiry
        if delay <= 0:
            session.will = None
            self.publish_will(session, will)
