"""
In-process benchmark of the cross-node hot path, without a network.

Two brokers, each with its replicated store and L{ClusterRouter}, as two
clustered nodes have them.  A publisher on node A sends QoS 0 PUBLISH
packets (64-byte payloads) in 64 KiB reads; A routes them and forwards one
C{msg} item per message to B (into an L{OutgoingBatch}, framed at the
64 KiB flush threshold, as the data link does).  B decodes those frames
with the L{InboundDecoder} in 64 KiB reads and routes every item to a
subscriber, whose transport discards the bytes.

Prints CPU microseconds per message (process time, so that other
programs on the machine disturb it less) for each side, their sum, and the
single-node figure of the same process (publisher and subscriber on A), so
that C{(A + B) / single} shows what the cross-node path costs on one core:
the 0.5x target of C{benchmarks/cluster_bench.py} needs it at or below 2.
Not a test; run it by hand::

    python benchmarks/cluster_pipeline_bench.py [--count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from random import Random
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline_bench import CHUNK, DEFAULT_ACL, PAYLOAD, TOPIC, connect  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from vernemq.broker.broker import Broker  # noqa: E402
from vernemq.cluster.dataframes import (  # noqa: E402
    Batch,
    EncodedItem,
    InboundDecoder,
    Item,
    OutgoingBatch,
    encode_hello,
    encode_item,
)
from vernemq.cluster.metadata.store import MetadataStore  # noqa: E402
from vernemq.cluster.metadata.testing import MemoryNetwork  # noqa: E402
from vernemq.cluster.routing import ClusterRouter  # noqa: E402
from vernemq.config import config_from_text  # noqa: E402
from vernemq.mqtt.codec import encode, encode_publish  # noqa: E402
from vernemq.mqtt.packets import Subscribe, Subscription  # noqa: E402
from vernemq.mqtt.protocol import MQTTFactory  # noqa: E402

THRESHOLD = 65536


class Node:
    """A broker, its MQTT factory, store and router."""

    def __init__(self, name: str, network: MemoryNetwork, batches: dict[str, OutgoingBatch]):
        config = config_from_text(
            "allow_anonymous = on\nlistener.tcp.default = 127.0.0.1:1883\n"
            "max_online_messages = -1\nmax_inflight_messages = 0\n"
            f"vmq_acl.acl_file = {DEFAULT_ACL}\n"
        )
        self.clock = Clock()
        self.broker = Broker(config, self.clock)
        self.factory = MQTTFactory(self.broker, next(iter(config.mqtt_listeners())), self.clock)
        self.store = MetadataStore(
            name, network.attach(name, self._receive), self.clock.seconds, Random(1)
        )
        self.batches = batches
        self.router = ClusterRouter(name, self.broker, self.store, self._send, self.clock.seconds)

    def _receive(self, peer: str, message: Any) -> None:
        self.store.receive(peer, message)

    def _send(self, peer: str, item: Item) -> bool:
        # What OutgoingDataChannel.send does with an item.
        wire: Any = item
        if wire.__class__ is EncodedItem:
            encoded = wire.wire
        else:
            encoded = encode_item(*item)
        self.batches[peer].append(encoded)
        return True


def run(count: int) -> tuple[float, float, float]:
    """Return microseconds per message: A's side, B's side, single node."""
    network = MemoryNetwork(Random(0))
    batches = {"a@h": OutgoingBatch(), "b@h": OutgoingBatch()}
    a, b = Node("a@h", network, batches), Node("b@h", network, batches)
    for node in (a, b):
        node.store.set_members(["a@h", "b@h"])
    a.router.start(["b@h"])
    b.router.start(["a@h"])
    sub, subTransport = connect(b.factory, "sub", 4, 20000)
    sub.dataReceived(encode(Subscribe(1, [Subscription(TOPIC, 0)]), 4))
    for _ in range(20):
        for node in (a, b):
            node.store.flush()
            node.clock.advance(0)
        if not network.deliver() and not network.queue:
            break
    assert a.router.remote_nodes("", TOPIC) == ["b@h"], "B's subscription did not replicate"
    pub, _ = connect(a.factory, "pub", 4, 30000)
    stream = encode_publish(TOPIC, PAYLOAD, 0, False, False, None, None, 4) * count
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    start = time.process_time()
    frames: list[bytes] = []
    batch = batches["b@h"]
    for chunk in chunks:
        pub.dataReceived(chunk)
        if batch.pending_bytes >= THRESHOLD:
            frames.extend(batch.take_frames(THRESHOLD))
    frames.extend(batch.take_frames(THRESHOLD))
    sideA = time.process_time() - start

    wire = encode_hello("a@h") + b"".join(frames)
    reads = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    decoder = InboundDecoder(plain=b.router.plain_message)  # as the service wires it
    onItem = b.router.on_item
    before = subTransport.written
    start = time.process_time()
    for data in reads:
        decoder.feed(data)
        while (event := decoder.next_event()) is not None:
            if type(event) is Batch:
                for item in event.items:
                    onItem("a@h", item)
        b.clock.advance(0)
    sideB = time.process_time() - start
    assert subTransport.written - before >= count * len(PAYLOAD), "messages were lost"

    # The same publisher and flood, to a subscriber on A itself.
    local, _ = connect(a.factory, "local", 4, 20001)
    local.dataReceived(encode(Subscribe(1, [Subscription("single/+", 0)]), 4))
    a.clock.advance(0)
    stream = encode_publish("single/x", PAYLOAD, 0, False, False, None, None, 4) * count
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    start = time.process_time()
    for chunk in chunks:
        pub.dataReceived(chunk)
        a.clock.advance(0)
    single = time.process_time() - start
    return sideA / count * 1e6, sideB / count * 1e6, single / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = [run(args.count) for _ in range(args.repeat)]
    sideA = min(r[0] for r in results)
    sideB = min(r[1] for r in results)
    single = min(r[2] for r in results)
    print(f"node A (decode, route, forward):  {sideA:.2f} us per message")
    print(f"node B (frames to subscriber):    {sideB:.2f} us per message")
    print(f"cross-node total A + B:           {sideA + sideB:.2f} us per message")
    print(f"single node (publisher -> local): {single:.2f} us per message")
    print(f"(A + B) / single: {(sideA + sideB) / single:.2f} (<= 2 for 0.5x on one core); "
          f"best of {args.repeat}")


if __name__ == "__main__":
    main()
