"""
Tests for L{vernemq.config.schema}: the keys, their defaults and which
features are implemented.
"""

from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import SCHEMA, config_from_text
from vernemq.config.schema import LISTENER_KINDS, TLS_KINDS
from vernemq.config.types import HostPort


class DefaultsTests(SynchronousTestCase):
    """
    Defaults are VerneMQ's, as listed in the reference notes (section 3).
    """

    def test_spec33(self) -> None:
        """
        MQTT/session defaults, in the documented units.
        """
        config = config_from_text("")
        expected = {
            "allow_anonymous": False,
            "allow_register_during_netsplit": False,
            "allow_publish_during_netsplit": False,
            "allow_subscribe_during_netsplit": False,
            "allow_unsubscribe_during_netsplit": False,
            "coordinate_registrations": True,
            "max_inflight_messages": 20,
            "max_online_messages": 1000,
            "max_offline_messages": 1000,
            "override_max_online_messages": False,
            "retry_interval": 20,
            "max_client_id_size": 100,
            "max_subscriptions_per_client": 0,
            "persistent_client_expiration": None,
            "max_last_will_delay": None,
            "max_message_size": 0,
            "max_message_rate": 0,
            "upgrade_outgoing_qos": False,
            "shared_subscription_policy": "prefer_local",
            "topic_max_depth": 10,
            "receive_max_client": 65535,
            "receive_max_broker": 65535,
            "topic_alias_max_client": 0,
            "topic_alias_max_broker": 0,
            "suppress_lwt_on_session_takeover": False,
            "queue_type": "fifo",
            "queue_deliver_mode": "fanout",
            "max_drain_time": 500,
            "max_msgs_per_drain_step": 100,
            "expire_retain_cache": 0,
            "subscriber_retain_mode": "immediate",
            "outgoing_clustering_buffer_size": 67108864,
            "incoming_clustering_buffer_size": 67108864,
            "outgoing_clustering_flush_threshold": 65536,
            "outgoing_cluster_handshake_ack_timeout": 250,
            "remote_enqueue_timeout": 5000,
            "cluster_ready_rpc_timeout": 5000,
            "netsplit_detection_time": 5000,
            "mqtt_connect_timeout": 5000,
            "disconnect_on_unauthorized_publish_v3": False,
        }
        self.assertEqual({key: config[key] for key in expected}, expected)

    def test_spec31And32(self) -> None:
        """
        Listener globals and node/distribution defaults.
        """
        config = config_from_text("")
        expected = {
            "listener.max_connections": 10000,
            "listener.nr_of_acceptors": 10,
            "listener.mountpoint": "",
            "listener.max_connection_lifetime": 0,
            "max_ws_frame_size": 268435456,
            "nodename": "VerneMQ@127.0.0.1",
            "distributed_cookie": "vmq",
            "erlang.distribution.port_range.minimum": None,
            "erlang.distribution.port_range.maximum": None,
            "erlang.distribution.net_ticktime": 60,
            "erlang.async_threads": 64,
            "erlang.max_ports": 262144,
            "erlang.process_limit": 256000,
            "erlang.max_ets_tables": 256000,
            "erlang.epmd.port": 4369,
            "erlang.epmd.address": None,
            "erlang.epmd.mode": "auto",
        }
        self.assertEqual({key: config[key] for key in expected}, expected)

    def test_spec34(self) -> None:
        """
        Plugins, storage, monitoring and logging defaults.
        """
        config = config_from_text("")
        expected = {
            "plugins.vmq_passwd": True,
            "plugins.vmq_acl": True,
            "plugins.vmq_diversity": False,
            "plugins.vmq_webhooks": False,
            "plugins.vmq_bridge": False,
            "plugins.my_plugin": False,
            "vmq_acl.acl_file": "./etc/vmq.acl",
            "vmq_acl.acl_reload_interval": 10,
            "vmq_passwd.password_reload_interval": 10,
            "metadata_plugin": "vmq_swc",
            "message_store_plugin": "vmq_generic_msg_store",
            "vmq_generic_msg_store.db_backend": "leveldb",
            "vmq_generic_msg_store.nr_of_buckets": 12,
            "leveldb.maximum_memory.percent": 70,
            "leveldb.compression": True,
            "leveldb.compression.algorithm": "lz4",
            "systree_enabled": True,
            "systree_interval": 20000,
            "systree_qos": 0,
            "systree_retain": False,
            "graphite_enabled": False,
            "graphite_host": "localhost",
            "graphite_port": 2003,
            "graphite_interval": 20000,
            "graphite_connect_timeout": 5000,
            "graphite_reconnect_timeout": 15000,
            "prometheus_namespace": "vernemq_",
            "http_module.vmq_http_mgmt_api.auth.mode": "apikey",
            "http_module.vmq_metrics_http.auth.mode": "noauth",
            "log.console": "file",
            "log.console.level": "info",
            "log.console.file": "./log/console.log",
            "log.console.rotation.size": None,
            "log.console.rotation.keep": 5,
            "log.error": True,
            "log.crash": False,
            "log.syslog": False,
            "log.syslog.remote.port": 514,
            "logging.keepalive_as_warning": True,
            "vmq_swc.swc_groups": 10,
            "vmq_swc.sync_interval": 5000,
            "vmq_swc.sync_interval.leeway": 2500,
            "vmq_swc.gc_interval": 15000,
            "vmq_swc.sync_timeout": 60000,
            "vmq_swc.exchange_batch_size": 100,
            "vmq_swc.prevent_nonempty_join": True,
        }
        self.assertEqual({key: config[key] for key in expected}, expected)

    def test_ourKeys(self) -> None:
        """
        Keys of this implementation: platform directories and the manhole,
        which is off, loopback-only and without credentials by default.
        """
        config = config_from_text("")
        expected = {
            "platform_data_dir": "./data",
            "platform_log_dir": "./log",
            "platform_etc_dir": "./etc",
            "manhole": False,
            "manhole.listener": HostPort("127.0.0.1", 6022),
            "manhole.user": "vernemq",
            "manhole.authorized_keys_file": None,
            "manhole.password_file": None,
            "manhole.host_key_file": None,
        }
        self.assertEqual({key: config[key] for key in expected}, expected)

    def test_listenerDefaults(self) -> None:
        """
        Protocol-level listener keys give the cascaded default: TLS version
        1.2, allowed versions 3,4,5,131.
        """
        config = config_from_text("")
        self.assertEqual(config["listener.tcp.allowed_protocol_versions"], (3, 4, 5, 131))
        self.assertEqual(config["listener.ssl.tls_version"], "tlsv1.2")
        self.assertEqual(config["listener.ssl.psk_identity_hint"], "VMQ_PSK")
        self.assertEqual(config["listener.vmq.nr_of_acceptors"], 10)
        self.assertEqual(config["listener.http.max_request_line_length"], 8000)


class ImplementedTests(SynchronousTestCase):
    """
    The C{implemented} flags match what this issue builds.
    """

    def test_implemented(self) -> None:
        """
        The broker-core keys are implemented.
        """
        for key in [
            "listener.tcp.default",
            "listener.tcp.allowed_protocol_versions",
            "listener.tcp.default.max_connections",
            "listener.max_connections",
            "listener.tcp.default.mountpoint",
            "listener.max_connection_lifetime",
            "allow_anonymous",
            "max_inflight_messages",
            "max_online_messages",
            "max_offline_messages",
            "override_max_online_messages",
            "max_message_size",
            "max_message_rate",
            "max_subscriptions_per_client",
            "listener.tcp.default.max_connection_lifetime",
            "retry_interval",
            "persistent_client_expiration",
            "topic_alias_max_client",
            "topic_alias_max_broker",
            "max_keepalive",
            "mqtt_connect_timeout",
            "nodename",
            "platform_data_dir",
            "manhole.password_file",
            "log.console.level",
            "shared_subscription_policy",
            "erlang.epmd.mode",
            "erlang.epmd.port",
            "erlang.epmd.address",
            "distributed_cookie",
            "erlang.distribution.port_range.minimum",
            "erlang.distribution.port_range.maximum",
            "erlang.distribution.net_ticktime",
            # Listeners (issue 7).
            "listener.ssl.default",
            "listener.ssl.certfile",
            "listener.ssl.default.keyfile",
            "listener.ssl.cafile",
            "listener.ssl.default.crlfile",
            "listener.ssl.ciphers",
            "listener.ssl.tls_version",
            "listener.ssl.require_certificate",
            "listener.ssl.default.use_identity_as_username",
            "listener.ssl.tls_handshake_timeout",
            "listener.ws.default",
            "listener.wss.default",
            "listener.wss.certfile",
            "listener.wss.default.mountpoint",
            "max_ws_frame_size",
            "listener.tcp.proxy_protocol",
            "listener.ws.default.proxy_protocol",
            "listener.tcp.proxy_protocol_use_cn_as_username",
            "listener.ws.proxy_xff_support",
            "listener.nr_of_acceptors",
            "listener.tcp.default.nr_of_acceptors",
            "listener.tcp.default.allow_anonymous_override",
            "listener.ssl.allowed_protocol_versions",
            "listener.ws.default.max_connections",
            # Authentication and authorisation (issue 7).
            "plugins.vmq_passwd",
            "plugins.vmq_acl",
            "vmq_passwd.password_file",
            "vmq_passwd.password_reload_interval",
            "vmq_acl.acl_file",
            "vmq_acl.acl_reload_interval",
            "disconnect_on_unauthorized_publish_v3",
            # Membership, readiness and netsplit gating (issue 6).
            "allow_register_during_netsplit",
            "allow_publish_during_netsplit",
            "allow_subscribe_during_netsplit",
            "allow_unsubscribe_during_netsplit",
            "trade_consistency",
            "cluster_ready_rpc_timeout",
            "netsplit_detection_time",
            # The data channel and cluster routing (issue 6).
            "listener.vmq.clustering",
            "listener.vmq.default",
            "outgoing_clustering_buffer_size",
            "incoming_clustering_buffer_size",
            "outgoing_clustering_flush_threshold",
            "outgoing_cluster_handshake_ack_timeout",
            "outgoing_connect_timeout",
            # The data channel over TLS (issue 7).
            "listener.vmqs.clustering",
            "listener.vmqs.certfile",
            "listener.vmqs.keyfile",
            "listener.vmqs.cafile",
            "listener.vmqs.default.require_certificate",
            "listener.vmqs.default.tls_version",
            "listener.vmqs.ciphers",
            "listener.vmqs.crlfile",
            "listener.vmqs.depth",
            "listener.vmqs.tls_handshake_timeout",
        ]:
            setting = SCHEMA.lookup(key)
            assert setting is not None, key
            self.assertTrue(setting.implemented, key)

    def test_notImplemented(self) -> None:
        """
        The data channel's per-listener settings other than TLS, HTTP, PSK, socket tuning
        and some plugins are accepted but not implemented.
        """
        for key in [
            "listener.vmq.max_connections",
            "listener.vmq.clustering.mountpoint",
            "listener.vmqs.max_connections",
            "listener.vmqs.clustering.mountpoint",
            "listener.vmqs.eccs",
            "listener.vmqs.high_watermark",
            "listener.http.default",
            "listener.http.proxy_protocol",
            "listener.https.certfile",
            "listener.ssl.psk_support",
            "listener.ssl.eccs",
            "listener.tcp.buffer_sizes",
            "listener.tcp.active_n",
            "message_size_limit",
            "plugins.vmq_webhooks",
            "metadata_plugin",
            "graphite_enabled",
        ]:
            setting = SCHEMA.lookup(key)
            assert setting is not None, key
            self.assertFalse(setting.implemented, key)


class LookupTests(SynchronousTestCase):
    """
    L{SCHEMA.lookup} and L{SCHEMA.suggest}.
    """

    def test_exactBeatsPattern(self) -> None:
        """
        C{listener.tcp.max_connections} is the protocol setting, not a
        listener named C{max_connections}.
        """
        setting = SCHEMA.lookup("listener.tcp.max_connections")
        assert setting is not None
        self.assertEqual(setting.key, "listener.tcp.max_connections")
        named = SCHEMA.lookup("listener.tcp.internal")
        assert named is not None
        self.assertEqual(named.key, "listener.tcp.$name")

    def test_everyKindHasTheSameShape(self) -> None:
        """
        Every listener kind has an address key and max_connections at both
        levels; every TLS kind has certfile at the listener level.
        """
        for kind in LISTENER_KINDS:
            for key in [
                f"listener.{kind}.x",
                f"listener.{kind}.max_connections",
                f"listener.{kind}.x.max_connections",
            ]:
                self.assertIsNotNone(SCHEMA.lookup(key), key)
        for kind in TLS_KINDS:
            self.assertIsNotNone(SCHEMA.lookup(f"listener.{kind}.x.certfile"))
        self.assertIsNone(SCHEMA.lookup("listener.tcp.x.certfile"))

    def test_suggest(self) -> None:
        """
        A misspelt key suggests the closest one, keeping the user's names.
        """
        self.assertEqual(SCHEMA.suggest("max_inflight_mesages"), "max_inflight_messages")
        self.assertEqual(
            SCHEMA.suggest("listener.tcp.internal.max_conections"),
            "listener.tcp.internal.max_connections",
        )
        self.assertIsNone(SCHEMA.suggest("completely_unrelated"))

    def test_everyKeyDocumented(self) -> None:
        """
        Every key has a one-line doc.
        """
        for key, setting in SCHEMA.items():
            self.assertTrue(setting.doc and "\n" not in setting.doc, key)
