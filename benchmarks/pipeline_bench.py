"""
In-process benchmark of the whole broker hot path, without a network.

A publisher's PUBLISH packets (64-byte payloads) are fed to the real
L{vernemq.mqtt.protocol.MQTTProtocol} in 64 KiB reads, as TCP would deliver
them; they are decoded, authorized, routed through the trie and written to
the subscribers' transports (which discard the bytes).  QoS 1 subscribers
acknowledge each batch.  Prints microseconds per delivered message, so a
change to decode, route, encode or write shows up without the noise of
sockets and a second process.  Not a test; run it by hand::

    python benchmarks/pipeline_bench.py [--count N] [--subs N] [--qos 0|1] [--level 4|5]

The side-by-side comparison with mosquitto is C{benchmarks/compare.py}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from vernemq.broker.broker import Broker  # noqa: E402
from vernemq.config import config_from_text  # noqa: E402
from vernemq.mqtt.codec import Decoder, encode, encode_publish  # noqa: E402
from vernemq.mqtt.packets import Connect, PubAck, Publish, Subscribe, Subscription  # noqa: E402
from vernemq.mqtt.protocol import MQTTFactory, MQTTProtocol  # noqa: E402

TOPIC = "sensors/building-1/floor-2/temperature"
PAYLOAD = bytes(range(64))
CHUNK = 65536
#: VerneMQ's default ACL (everybody may do everything), shipped in etc/.
DEFAULT_ACL = Path(__file__).resolve().parent.parent / "etc" / "vmq.acl"


class NullTransport:
    """A transport that counts and discards what is written."""

    disconnecting = False

    def __init__(self, port: int) -> None:
        self.peer = IPv4Address("TCP", "127.0.0.1", port)
        self.written = 0
        self.keep = False
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.keep:
            self.data.append(data)

    def writeSequence(self, seq: list[bytes]) -> None:
        for d in seq:
            self.write(d)

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1883)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True


def connect(factory: MQTTFactory, client_id: str, level: int, port: int) -> tuple[
    MQTTProtocol, NullTransport
]:
    transport = NullTransport(port)
    proto = factory.buildProtocol(transport.peer)
    proto.makeConnection(transport)  # type: ignore[arg-type]
    proto.dataReceived(encode(Connect(client_id, protocol_level=level), level))
    return proto, transport


def run(count: int, subs: int, qos: int, level: int) -> float:
    """Return microseconds per delivered message."""
    config = config_from_text(
        "allow_anonymous = on\nlistener.tcp.default = 127.0.0.1:1883\n"
        "max_online_messages = -1\nmax_inflight_messages = 0\n"
        f"vmq_acl.acl_file = {DEFAULT_ACL}\n"
    )
    clock = Clock()
    broker = Broker(config, clock)
    factory = MQTTFactory(broker, next(iter(config.mqtt_listeners())), clock)
    subscribers = []
    for i in range(subs):
        proto, transport = connect(factory, f"sub{i}", level, 20000 + i)
        proto.dataReceived(encode(Subscribe(1, [Subscription(TOPIC, qos)]), level))
        transport.keep = qos > 0
        subscribers.append((proto, transport, Decoder(protocol_level=level, server=False)))
    clock.advance(0)
    pub, _ = connect(factory, "pub", level, 30000)
    one = encode_publish(TOPIC, PAYLOAD, qos, False, False, 1 if qos else None, None, level)
    stream = one * count
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    for _, transport, _ in subscribers:
        transport.data.clear()
    start = time.perf_counter()
    for chunk in chunks:
        pub.dataReceived(chunk)
        if qos:
            for proto, transport, decoder in subscribers:
                for data in transport.data:
                    decoder.feed(data)
                transport.data.clear()
                acks = [
                    encode(PubAck(p.packet_id), level)  # type: ignore[arg-type]
                    for p in decoder
                    if isinstance(p, Publish) and p.packet_id is not None
                ]
                if acks:
                    proto.dataReceived(b"".join(acks))
    elapsed = time.perf_counter() - start
    return elapsed / (count * subs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--subs", type=int, default=1)
    parser.add_argument("--qos", type=int, default=0, choices=[0, 1])
    parser.add_argument("--level", type=int, default=4, choices=[3, 4, 5])
    args = parser.parse_args()
    best = min(run(args.count, args.subs, args.qos, args.level) for _ in range(3))
    print(
        f"{args.subs} subscriber(s), QoS {args.qos}, level {args.level}: "
        f"{best:.2f} us per delivered message ({1e6 / best:,.0f} deliveries/s), best of 3"
    )


if __name__ == "__main__":
    main()
