"""
Tests for L{vernemq.config}: reading vernemq.conf, errors with line numbers,
the listener cascade, endpoints, and the bundled etc/vernemq.conf.
"""

import ipaddress
import os

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import (
    Config,
    ConfigError,
    ListenerSpec,
    config_from_text,
    load_config,
)
from vernemq.config.types import HostPort

BUNDLED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "vernemq.conf"
)


def _error(text: str, path: str = "vernemq.conf") -> str:
    """
    The message of the L{ConfigError} that C{text} raises.
    """
    try:
        config_from_text(text, path)
    except ConfigError as e:
        return str(e)
    raise AssertionError(f"no error for {text!r}")


class ReadingTests(SynchronousTestCase):
    """
    The file format: comments, blanks, values.
    """

    def test_typedValues(self) -> None:
        """
        Values come back typed; unset keys give the default.
        """
        config = config_from_text(
            "## Default: off\n"
            "allow_anonymous = on\n"
            "\n"
            "   # an indented comment\n"
            "max_inflight_messages = 5   # inline comment\n"
            "persistent_client_expiration = 1w\n"
            "mqtt_connect_timeout = 10s\n"
        )
        self.assertIs(config["allow_anonymous"], True)
        self.assertEqual(config["max_inflight_messages"], 5)
        self.assertEqual(config["persistent_client_expiration"], 604800)
        self.assertEqual(config["mqtt_connect_timeout"], 10000)
        self.assertEqual(config["max_online_messages"], 1000)

    def test_quotedValue(self) -> None:
        """
        Quotes around a value, as VerneMQ's docs write some, are removed.
        """
        config = config_from_text("reg_views = \"[vmq_reg_trie]\"\nnodename = 'a@b'\n")
        self.assertEqual(config["reg_views"], "[vmq_reg_trie]")
        self.assertEqual(config["nodename"], "a@b")

    def test_duplicateLaterWins(self) -> None:
        """
        A key set twice takes the later value, and its line.
        """
        config = config_from_text("max_inflight_messages = 5\nmax_inflight_messages = 7\n")
        self.assertEqual(config["max_inflight_messages"], 7)
        self.assertEqual(config.line_of("max_inflight_messages"), 2)

    def test_lineOf(self) -> None:
        """
        L{Config.line_of} gives the 1-based line of a key, C{None} if unset.
        """
        config = config_from_text("# c\n\nretry_interval = 3\n")
        self.assertEqual(config.line_of("retry_interval"), 3)
        self.assertIsNone(config.line_of("max_inflight_messages"))

    def test_unknownKeyIsKeyError(self) -> None:
        """
        Asking for a key the schema does not know raises C{KeyError}.
        """
        config = config_from_text("")
        self.assertRaises(KeyError, lambda: config["no_such_key"])
        self.assertNotIn("no_such_key", config)
        self.assertIn("max_inflight_messages", config)

    def test_explicitlySet(self) -> None:
        """
        Only keys present in the file, in file order, with typed values.
        """
        config = config_from_text("retry_interval = 3\nallow_anonymous = off\n")
        self.assertEqual(
            list(config.explicitly_set().items()),
            [("retry_interval", 3), ("allow_anonymous", False)],
        )

    def test_describe(self) -> None:
        """
        L{Config.describe} lists global keys with their value and doc, and
        leaves out per-protocol listener keys.
        """
        config = config_from_text("max_inflight_messages = 3\n")
        described = {key: (value, doc) for key, value, doc in config.describe()}
        value, doc = described["max_inflight_messages"]
        self.assertEqual(value, 3)
        self.assertIn("0 = unlimited", doc)
        self.assertIn("listener.max_connections", described)
        self.assertNotIn("listener.tcp.max_connections", described)


class ErrorTests(SynchronousTestCase):
    """
    Every error is C{PATH:LINE: KEY: reason}.
    """

    def test_badValue(self) -> None:
        """
        A bad value names the file, the line, the key and what was expected.
        """
        self.assertEqual(
            _error("# first\nallow_anonymous = on\nmax_inflight_messages = abc\n"),
            "vernemq.conf:3: max_inflight_messages: expected an integer, got 'abc'",
        )

    def test_pathAsGiven(self) -> None:
        """
        The path is reported as given.
        """
        self.assertEqual(
            _error("allow_anonymous = maybe\n", path="conf/my.conf"),
            "conf/my.conf:1: allow_anonymous: expected on or off, got 'maybe'",
        )

    def test_unknownKeySuggestion(self) -> None:
        """
        An unknown key close to a known one suggests it.
        """
        self.assertEqual(
            _error("\nmax_inflight_mesages = 3\n"),
            "vernemq.conf:2: max_inflight_mesages: unknown key; "
            "did you mean max_inflight_messages?",
        )
        self.assertEqual(
            _error(
                "listener.tcp.default = 127.0.0.1:1883\nlistener.tcp.default.max_conections = 3\n"
            ),
            "vernemq.conf:2: listener.tcp.default.max_conections: unknown key; "
            "did you mean listener.tcp.default.max_connections?",
        )

    def test_unknownKeyNoSuggestion(self) -> None:
        """
        An unknown key far from every known one is just unknown.
        """
        self.assertEqual(_error("frobnicate = 1\n"), "vernemq.conf:1: frobnicate: unknown key")

    def test_misspeltProtocolSetting(self) -> None:
        """
        A misspelt protocol-level setting looks like a listener named after
        it; the error says what went wrong and suggests the setting.
        """
        self.assertEqual(
            _error("listener.tcp.max_conections = 5\n"),
            "vernemq.conf:1: listener.tcp.max_conections: expected ip:port such as "
            "127.0.0.1:1883, got '5'; did you mean listener.tcp.max_connections?",
        )

    def test_notKeyValue(self) -> None:
        """
        A line without C{=} (or a configobj section) is rejected with key C{-}.
        """
        self.assertEqual(
            _error("allow_anonymous = on\nthis is not a setting\n"),
            "vernemq.conf:2: -: expected 'key = value', got 'this is not a setting'",
        )
        self.assertEqual(
            _error("[section]\n"), "vernemq.conf:1: -: expected 'key = value', got '[section]'"
        )
        self.assertEqual(_error(" = 3\n"), "vernemq.conf:1: -: missing key before '='")

    def test_badKeyName(self) -> None:
        """
        A key with characters keys never have is rejected.
        """
        self.assertEqual(
            _error("max inflight = 3\n"), "vernemq.conf:1: max inflight: invalid key name"
        )

    def test_multiLine(self) -> None:
        """
        configobj's triple-quoted multi-line values are not VerneMQ's format.
        """
        self.assertEqual(
            _error("nodename = '''a\nb'''\n"),
            "vernemq.conf:1: nodename: multi-line values are not supported",
        )

    def test_settingForUndefinedListener(self) -> None:
        """
        A setting for a listener the file never defines is an error: usually
        a misspelt listener name.
        """
        self.assertEqual(
            _error(
                "listener.tcp.default = 127.0.0.1:1883\nlistener.tcp.defualt.max_connections = 5\n"
            ),
            "vernemq.conf:2: listener.tcp.defualt.max_connections: no listener "
            "tcp.defualt is defined; add listener.tcp.defualt = ip:port",
        )

    def test_sameAddressTwice(self) -> None:
        """
        Two listeners on one address cannot both bind.
        """
        self.assertEqual(
            _error("listener.tcp.a = 127.0.0.1:1883\nlistener.ws.b = 127.0.0.1:1883\n"),
            "vernemq.conf:2: listener.ws.b: same address as listener.tcp.a (line 1)",
        )

    def test_portRange(self) -> None:
        """
        The distribution port range must not be upside down.
        """
        self.assertEqual(
            _error(
                "erlang.distribution.port_range.minimum = 7000\n"
                "erlang.distribution.port_range.maximum = 6000\n"
            ),
            "vernemq.conf:2: erlang.distribution.port_range.maximum: "
            "must not be below minimum 7000",
        )

    def test_unreadableFile(self) -> None:
        """
        A missing file is reported at line 0 with key C{-}.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:0: -: cannot read: No such file or directory")
        self.assertEqual((e.path, e.line, e.key), (path, 0, "-"))

    def test_notUtf8(self) -> None:
        """
        A file that is not UTF-8 is reported at the offending line.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"allow_anonymous = on\nnodename = caf\xe9@host\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:2: -: not valid UTF-8")

    def test_loadFile(self) -> None:
        """
        L{load_config} reads a file and remembers its path.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("retry_interval = 7\n")
        config = load_config(path)
        self.assertEqual(config.path, path)
        self.assertEqual(config["retry_interval"], 7)


class CascadeTests(SynchronousTestCase):
    """
    Listener settings cascade global -> protocol -> named listener.
    """

    def _spec(self, text: str, name: str = "default") -> ListenerSpec:
        config = config_from_text(text)
        [spec] = [s for s in config.listeners if s.name == name]
        return spec

    def test_threeLevels(self) -> None:
        """
        The most specific level that is set wins.
        """
        base = "listener.tcp.default = 127.0.0.1:1883\nlistener.tcp.other = 127.0.0.1:1884\n"
        self.assertEqual(self._spec(base).settings["max_connections"], 10000)
        text = base + "listener.max_connections = 100\n"
        self.assertEqual(self._spec(text).settings["max_connections"], 100)
        text += "listener.tcp.max_connections = 50\n"
        self.assertEqual(self._spec(text).settings["max_connections"], 50)
        text += "listener.tcp.default.max_connections = 7\n"
        self.assertEqual(self._spec(text).settings["max_connections"], 7)
        self.assertEqual(self._spec(text, "other").settings["max_connections"], 50)

    def test_protocolDoesNotLeak(self) -> None:
        """
        A protocol-level value applies to that protocol only.
        """
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.ws.default = 127.0.0.1:8080\n"
            "listener.ws.mountpoint = web\n"
        )
        tcp, ws = config.listeners
        self.assertEqual(tcp.settings["mountpoint"], "")
        self.assertEqual(ws.settings["mountpoint"], "web")

    def test_minusOneInherits(self) -> None:
        """
        VerneMQ's C{-1} below the global level means "inherit".
        """
        spec = self._spec(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.max_connections = 100\n"
            "listener.tcp.max_connections = -1\n"
        )
        self.assertEqual(spec.settings["max_connections"], 100)

    def test_infinity(self) -> None:
        """
        C{infinity} connections is C{None}.
        """
        spec = self._spec(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.default.max_connections = infinity\n"
        )
        self.assertIsNone(spec.settings["max_connections"])

    def test_protocolVersionsAndAnonymous(self) -> None:
        """
        allowed_protocol_versions and allow_anonymous_override cascade too.
        """
        spec = self._spec(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.tcp.allowed_protocol_versions = 3,4\n"
            "listener.tcp.default.allow_anonymous_override = on\n"
        )
        self.assertEqual(spec.settings["allowed_protocol_versions"], (3, 4))
        self.assertIs(spec.settings["allow_anonymous_override"], True)
        default = self._spec("listener.tcp.default = 127.0.0.1:1883\n")
        self.assertEqual(default.settings["allowed_protocol_versions"], (3, 4, 5, 131))

    def test_mountpointOff(self) -> None:
        """
        C{listener.mountpoint = off} means no mountpoint; a named listener can
        still set one.
        """
        spec = self._spec(
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.mountpoint = off\n"
            "listener.tcp.default.mountpoint = tenant\n"
        )
        self.assertEqual(spec.settings["mountpoint"], "tenant")

    def test_tls(self) -> None:
        """
        TLS keys cascade protocol -> listener, with VerneMQ's defaults.
        """
        spec = self._spec(
            "listener.ssl.default = 127.0.0.1:8883\n"
            "listener.ssl.certfile = /etc/cert.pem\n"
            "listener.ssl.keyfile = /etc/key.pem\n"
            "listener.ssl.default.require_certificate = on\n"
        )
        self.assertEqual(spec.settings["certfile"], "/etc/cert.pem")
        self.assertIs(spec.settings["require_certificate"], True)
        self.assertEqual(spec.settings["tls_version"], "tlsv1.2")
        self.assertNotIn("certfile", self._spec("listener.tcp.default = 127.0.0.1:1\n").settings)

    def test_configGetterCascades(self) -> None:
        """
        C{config["listener.tcp.<name>.<setting>"]} gives the cascaded value.
        """
        config = config_from_text(
            "listener.tcp.default = 127.0.0.1:1883\nlistener.max_connections = 9\n"
        )
        self.assertEqual(config["listener.tcp.default.max_connections"], 9)
        self.assertEqual(config["listener.tcp.max_connections"], 9)


class ListenerTests(SynchronousTestCase):
    """
    L{Config.listeners} and L{ListenerSpec.endpoint_description}.
    """

    def test_fileOrder(self) -> None:
        """
        Listeners of every kind come in file order; only MQTT ones are in
        L{Config.mqtt_listeners}.
        """
        config = config_from_text(
            "listener.http.default = 127.0.0.1:8888\n"
            "listener.tcp.b = 127.0.0.1:1884\n"
            "listener.vmq.clustering = 0.0.0.0:44053\n"
            "listener.tcp.a = 127.0.0.1:1883\n"
            "listener.wss.secure = 127.0.0.1:8443\n"
        )
        self.assertEqual(
            [(s.kind, s.name) for s in config.listeners],
            [
                ("http", "default"),
                ("tcp", "b"),
                ("vmq", "clustering"),
                ("tcp", "a"),
                ("wss", "secure"),
            ],
        )
        self.assertEqual(
            [(s.kind, s.name) for s in config.mqtt_listeners()],
            [("tcp", "b"), ("tcp", "a"), ("wss", "secure")],
        )

    def test_noDefaultListeners(self) -> None:
        """
        A file without listeners has none.
        """
        self.assertEqual(config_from_text("allow_anonymous = off\n").listeners, [])

    def test_ipv4(self) -> None:
        """
        An IPv4 listener binds that interface and port.
        """
        [spec] = config_from_text("listener.tcp.default = 127.0.0.1:1883\n").listeners
        self.assertEqual((spec.host, spec.port, spec.unix_path), ("127.0.0.1", 1883, None))
        self.assertEqual(spec.endpoint_description(), "tcp:1883:interface=127.0.0.1:backlog=1024")
        self.assertEqual(self._listen(spec), (1883, "127.0.0.1"))

    def test_ipv6(self) -> None:
        """
        An IPv6 listener's colons are escaped in the endpoint description,
        and Twisted reads the interface back unchanged.
        """
        [spec] = config_from_text("listener.tcp.v6 = [::1]:1883\n").listeners
        self.assertEqual(spec.host, "::1")
        self.assertEqual(spec.endpoint_description(), "tcp:1883:interface=\\:\\:1:backlog=1024")
        self.assertEqual(self._listen(spec), (1883, "::1"))
        self.assertTrue(ipaddress.ip_address(spec.host).version == 6)

    def test_unixSocket(self) -> None:
        """
        C{local:/path:0} is a unix socket listener.
        """
        [spec] = config_from_text("listener.tcp.local = local:/tmp/vmq.sock:0\n").listeners
        self.assertEqual((spec.host, spec.port, spec.unix_path), (None, None, "/tmp/vmq.sock"))
        self.assertEqual(spec.endpoint_description(), "unix:/tmp/vmq.sock")
        reactor = MemoryReactor()
        serverFromString(reactor, spec.endpoint_description()).listen(Factory.forProtocol(Protocol))
        self.assertEqual(reactor.unixServers[0][0], "/tmp/vmq.sock")

    def test_tlsDescription(self) -> None:
        """
        TLS listeners describe an C{ssl:} endpoint with their key and
        certificate.
        """
        [spec] = config_from_text(
            "listener.ssl.default = 127.0.0.1:8883\n"
            "listener.ssl.default.keyfile = /etc/k.pem\n"
            "listener.ssl.default.certfile = /etc/c.pem\n"
        ).listeners
        self.assertEqual(
            spec.endpoint_description(),
            "ssl:8883:interface=127.0.0.1:backlog=1024:privateKey=/etc/k.pem:certKey=/etc/c.pem",
        )

    def _listen(self, spec: ListenerSpec) -> tuple[int, str]:
        """
        Listen on C{spec}'s endpoint in a L{MemoryReactor}; return the port
        and interface Twisted was asked for.
        """
        reactor = MemoryReactor()
        serverFromString(reactor, spec.endpoint_description()).listen(Factory.forProtocol(Protocol))
        port, _factory, _backlog, interface = reactor.tcpServers[0]
        return port, interface


class UnimplementedTests(SynchronousTestCase):
    """
    L{Config.unimplemented_keys}.
    """

    def test_onlySetUnimplementedKeys(self) -> None:
        """
        Keys set in the file whose feature is missing are listed in file
        order; defaults and implemented keys are not.
        """
        config = config_from_text(
            "allow_anonymous = on\n"
            "listener.tcp.default = 127.0.0.1:1883\n"
            "listener.http.default = 127.0.0.1:8888\n"
            "listener.vmqs.clustering = 0.0.0.0:44054\n"
            "listener.tcp.active_n = 2\n"
            "max_inflight_messages = 10\n"
        )
        self.assertEqual(
            config.unimplemented_keys(),
            ["listener.http.default", "listener.tcp.active_n"],
        )


class ReplaceTests(SynchronousTestCase):
    """
    L{Config.replace}.
    """

    def test_replace(self) -> None:
        """
        A copy with typed or textual overrides; the original is unchanged.
        """
        config = config_from_text("max_inflight_messages = 3\n")
        other = config.replace(max_inflight_messages=9, **{"manhole.listener": "127.0.0.1:0"})
        self.assertIsInstance(other, Config)
        self.assertEqual(other["max_inflight_messages"], 9)
        self.assertEqual(other["manhole.listener"], HostPort("127.0.0.1", 0))
        self.assertEqual(config["max_inflight_messages"], 3)
        self.assertEqual(config["manhole.listener"], HostPort("127.0.0.1", 6022))

    def test_replaceListener(self) -> None:
        """
        Replacing a listener address changes the listeners.
        """
        config = config_from_text("listener.tcp.default = 127.0.0.1:1883\n")
        other = config.replace(**{"listener.tcp.default": "127.0.0.1:0"})
        self.assertEqual(other.listeners[0].port, 0)
        self.assertEqual(config.listeners[0].port, 1883)

    def test_replaceBad(self) -> None:
        """
        Unknown keys raise C{KeyError}; bad text raises L{ConfigError} at line 0.
        """
        config = config_from_text("")
        self.assertRaises(KeyError, config.replace, no_such_key=1)
        e = self.assertRaises(ConfigError, config.replace, retry_interval="soon")
        self.assertTrue(str(e).startswith("vernemq.conf:0: retry_interval: "))


class BundledConfigTests(SynchronousTestCase):
    """
    etc/vernemq.conf runs a local node out of the box.
    """

    def test_loadsCleanly(self) -> None:
        """
        It loads without errors and without unimplemented-feature warnings.
        """
        config = load_config(BUNDLED)
        self.assertEqual(config.unimplemented_keys(), [])
        self.assertEqual(config["nodename"], "VerneMQ@127.0.0.1")
        self.assertEqual(config["platform_data_dir"], "./data")
        self.assertIs(config["manhole"], False)
        [spec] = config.mqtt_listeners()
        self.assertEqual(
            (spec.kind, spec.name, spec.host, spec.port), ("tcp", "default", "127.0.0.1", 1883)
        )

    def test_anonymousOnlyOnLoopback(self) -> None:
        """
        Anonymous access is on, and every MQTT listener is on loopback.
        """
        config = load_config(BUNDLED)
        self.assertIs(config["allow_anonymous"], True)
        for spec in config.mqtt_listeners():
            assert spec.host is not None
            self.assertTrue(ipaddress.ip_address(spec.host).is_loopback, spec)

    def test_documentsEveryKeyItSets(self) -> None:
        """
        Every key the file sets has VerneMQ-style "## Default:" documentation
        above it.
        """
        with open(BUNDLED) as f:
            lines = f.read().splitlines()
        config = load_config(BUNDLED)
        for key, number in ((k, config.line_of(k)) for k in config.explicitly_set()):
            assert number is not None
            above = lines[max(0, number - 40) : number - 1]
            self.assertTrue(any(line.startswith("## Default:") for line in above), key)


class EncodingTests(SynchronousTestCase):
    """
    Files saved by editors that add a byte order mark still load.
    """

    def test_byteOrderMark(self) -> None:
        """
        A UTF-8 byte order mark before the first key is ignored.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbfallow_anonymous = on\n")
        self.assertIs(load_config(path)["allow_anonymous"], True)
