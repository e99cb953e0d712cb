"""
paho-mqtt over TCP, TLS, WebSocket and secure WebSocket, with blocking
helpers, for the listener interop tests.
"""

from __future__ import annotations

import queue
import ssl
from typing import Any

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover - the test extra installs it
    mqtt = None


class PahoClient:
    """
    One paho client on its own network thread.

    @ivar connacks: C{(flags, reason_code)} per CONNACK.
    """

    def __init__(
        self,
        port: int,
        clientId: str = "",
        transport: str = "tcp",
        version: int = 4,
        cafile: str | None = None,
        cert: tuple[str, str] | None = None,
        username: str | None = None,
    ) -> None:
        protocol = {4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        self.port = port
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=clientId,
            transport=transport,
            protocol=protocol,
            reconnect_on_failure=False,
        )
        if cafile is not None:
            certfile, keyfile = cert if cert is not None else (None, None)
            self.client.tls_set(
                ca_certs=cafile, certfile=certfile, keyfile=keyfile,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if username is not None:
            self.client.username_pw_set(username, "secret")
        self.messages: queue.Queue[Any] = queue.Queue()
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[Any] = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)

    def connect(self) -> int:
        """Connect and wait for the CONNACK; its reason code as an int."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        _, rc = self.connacks.get(timeout=10)
        return int(getattr(rc, "value", rc))

    def subscribe(self, topic: str, qos: int = 1) -> Any:
        """Subscribe and wait for the SUBACK."""
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and wait until it is acknowledged."""
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def receive(self, timeout: float = 10) -> Any:
        """The next message."""
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
