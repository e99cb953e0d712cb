# -*- test-case-name: tests.test_broker_mqtt5 -*-
"""
MQTT 5.0 enhanced authentication: the AUTH packet exchange, routed to the
C{on_auth_m5} hook chain as VerneMQ does (C{vmq_mqtt5_fsm}).

A CONNECT that carries an Authentication Method starts an exchange
(L{EnhancedAuth.start}).  Each step asks the C{on_auth_m5} chain
(C{all_till_ok}) with C{(username, subscriber_id, properties)}, the
properties being those of the CONNECT or AUTH packet (authentication
method and data among them).  A plugin answers:

  - C{Ok({"reason_code": 0x18, "properties": {...}})}: continue; the
    broker sends AUTH 0x18 with the authentication method, data and
    reason string from C{properties}, and waits for the client's AUTH
    0x18;
  - C{Ok({"reason_code": 0, "properties": {...}})} (or a plain C{Ok}):
    authenticated; during CONNECT the broker goes on with the usual
    C{auth_on_register_m5} step (unless C{allow_anonymous}), and the
    CONNACK carries the method, data and reason string;
  - C{Error}: refused with its C{reason_code} (default 0x87, not
    authorized) -- CONNACK during CONNECT, DISCONNECT afterwards;
  - C{NEXT}: the next plugin decides.

When no plugin implements C{on_auth_m5}, or every plugin says next, the
node does not support the method: CONNACK 0x8C (bad authentication
method), or DISCONNECT 0x8C for a re-authentication.

After CONNACK the client may re-authenticate with AUTH 0x19 (then 0x18 for
further steps); success is answered with AUTH 0x00.  An AUTH with another
method, an unexpected reason code, or an AUTH from a client whose CONNECT
had no method is a protocol error (0x82).  While the exchange of a CONNECT
is going on, only AUTH and DISCONNECT are accepted, and each step must
come within C{mqtt_connect_timeout}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from vernemq.mqtt.packets import Auth, Connect, ProtocolError
from vernemq.plugins.hooks import Error, Ok

if TYPE_CHECKING:
    from vernemq.broker.broker import Broker
    from vernemq.mqtt.protocol import MQTTProtocol

__all__ = ["CONTINUE", "REAUTHENTICATE", "EnhancedAuth"]

#: AUTH reason code: Continue authentication.
CONTINUE = 0x18
#: AUTH reason code: Re-authenticate.
REAUTHENTICATE = 0x19
#: CONNACK/DISCONNECT reason code: Bad authentication method.
BAD_METHOD = 0x8C

#: The properties of a hook's answer that reach the client (as VerneMQ).
_PASSED = ("authentication_method", "authentication_data", "reason_string")

#: Chain answers meaning that nobody handles enhanced authentication.
_UNSUPPORTED = frozenset({"no_matching_hook_found", "plugin_chain_exhausted"})


class EnhancedAuth:
    """
    The enhanced authentication of one MQTT 5.0 connection.

    @ivar method: the Authentication Method of the CONNECT; every AUTH
        must carry the same.
    @ivar connack_properties: what the CONNACK carries once the exchange
        of the CONNECT succeeded.
    @ivar reauthenticating: a re-authentication is in progress.
    """

    log = Logger()

    def __init__(self, broker: Broker, conn: MQTTProtocol, connect: Connect) -> None:
        self.broker = broker
        self.conn = conn
        self.method: str = connect.properties["authentication_method"]
        #: Reason strings in AUTH only if the client did not refuse them.
        self._problem_info = connect.properties.get("request_problem_information", 1) != 0
        self.connack_properties: dict[str, Any] = {}
        self.reauthenticating = False
        self._connect: Connect | None = connect
        self._sid: tuple[str, str] = ("", "")
        self._assigned: str | None = None

    def start(self, sid: tuple[str, str], assigned: str | None) -> Deferred[Any] | None:
        """
        Start the exchange of the CONNECT.

        @param sid: the subscriber id.
        @param assigned: the client id the broker assigned, if any.
        @return: a L{Deferred} while an asynchronous hook decides.
        """
        connect = self._connect
        assert connect is not None
        self._sid = sid
        self._assigned = assigned
        return self._ask(connect.username, connect.properties)

    def on_auth(self, pkt: Auth) -> Deferred[Any] | None:
        """
        An AUTH packet from the client.

        @raise ProtocolError: another method, or a reason code that does
            not fit the state of the exchange.
        """
        method = pkt.properties.get("authentication_method")
        if method != self.method:
            raise ProtocolError(
                f"AUTH with authentication method {method!r}, not {self.method!r}"
            )
        if self._connect is not None or self.reauthenticating:
            expected = CONTINUE
        else:
            expected = REAUTHENTICATE
        if pkt.reason_code != expected:
            raise ProtocolError(
                f"AUTH with reason code 0x{pkt.reason_code:02X} where 0x{expected:02X} "
                "is expected"
            )
        if self._connect is not None:
            username = self._connect.username
        else:
            session = self.conn.session
            username = session.username if session is not None else None
            self.reauthenticating = True
        return self._ask(username, pkt.properties)

    # -- internals -----------------------------------------------------------

    def _ask(self, username: str | None, properties: dict[str, Any]) -> Deferred[Any] | None:
        answer = self.broker.hooks.all_till_ok("on_auth_m5", username, self._sid, properties)
        if isinstance(answer, Deferred):
            return answer.addCallback(self._answered)
        return self._answered(answer)

    def _outcome(self, answer: Ok | Error) -> tuple[int, dict[str, Any], str]:
        """The reason code, properties and log text of a chain's answer."""
        if isinstance(answer, Ok):
            mods = answer.modifiers
            code = int(mods.get("reason_code", 0))
            given = mods.get("properties") or {}
            props = {k: given[k] for k in _PASSED if k in given}
            if code not in (0, CONTINUE):
                return 0x80, {}, f"on_auth_m5 answered Ok with reason code {code}"
            if props.setdefault("authentication_method", self.method) != self.method:
                return 0x80, {}, "on_auth_m5 answered with another authentication method"
            if not self._problem_info:
                props.pop("reason_string", None)
            return code, props, ""
        if answer.reason in _UNSUPPORTED:
            return BAD_METHOD, {}, f"authentication method {self.method!r} not supported"
        code = answer.reason_code if answer.reason_code and answer.reason_code >= 0x80 else 0x87
        return code, {}, f"enhanced authentication failed: {answer.reason}"

    def _answered(self, answer: Ok | Error) -> Deferred[Any] | None:
        conn = self.conn
        if conn.closed:
            return None
        code, props, why = self._outcome(answer)
        connect = self._connect
        if connect is not None:
            if code == CONTINUE:
                conn.send_packet(Auth(CONTINUE, props))
                conn.await_auth()
                return None
            if code == 0:
                self._connect = None
                self.connack_properties = props
                return self.broker.register(conn, connect, self._sid, self._assigned)
            conn.refuse(code, why)
            return None
        if code == CONTINUE:
            conn.send_packet(Auth(CONTINUE, props))
            return None
        self.reauthenticating = False
        if code == 0:
            conn.send_packet(Auth(0, props))
            self.log.info(
                "client {client_id} from {peer} re-authenticated",
                client_id=conn.client_id,
                peer=conn.peer_text,
            )
            return None
        self.log.warn(
            "client {client_id} from {peer} failed to re-authenticate: {why}",
            client_id=conn.client_id,
            peer=conn.peer_text,
            why=why,
            reason_code=code,
        )
        conn.disconnect(code, send_will=True)
        return None
