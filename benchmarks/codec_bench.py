"""
Micro-benchmark of the MQTT codec hot path.

Decodes a stream of QoS 0 PUBLISH packets with 64-byte payloads, fed in
64 KiB chunks as a TCP read would deliver them, and encodes the same
packets with L{vernemq.mqtt.codec.encode_publish}.  Prints packets per
second for each.  Not a test; run it by hand::

    python benchmarks/codec_bench.py [--count N] [--level 4|5] [--qos 0|1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vernemq.mqtt.codec import Decoder, encode, encode_publish  # noqa: E402
from vernemq.mqtt.packets import Connect  # noqa: E402

TOPIC = "sensors/building-1/floor-2/temperature"
PAYLOAD = bytes(range(64))
CHUNK = 65536


def bench_decode(count: int, level: int, qos: int) -> float:
    """Return decoded PUBLISH packets per second."""
    one = encode_publish(TOPIC, PAYLOAD, qos, False, False, 1 if qos else None, None, level)
    stream = one * count
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    connect = encode(Connect("bench", protocol_level=level), level)
    decoder = Decoder()
    decoder.feed(connect)
    decoder.next_packet()
    decoded = 0
    start = time.perf_counter()
    for chunk in chunks:
        decoder.feed(chunk)
        for _ in decoder:
            decoded += 1
    elapsed = time.perf_counter() - start
    assert decoded == count, decoded
    return count / elapsed


def bench_encode(count: int, level: int, qos: int) -> float:
    """Return encoded PUBLISH packets per second."""
    packet_id = 1 if qos else None
    start = time.perf_counter()
    for _ in range(count):
        encode_publish(TOPIC, PAYLOAD, qos, False, False, packet_id, None, level)
    return count / (time.perf_counter() - start)


def main() -> None:
    """Parse the options and print the rates."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--level", type=int, default=4, choices=(3, 4, 5))
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1, 2))
    args = parser.parse_args()
    best_decode = max(bench_decode(args.count, args.level, args.qos) for _ in range(3))
    best_encode = max(bench_encode(args.count, args.level, args.qos) for _ in range(3))
    print(
        f"PUBLISH QoS {args.qos}, 64-byte payload, protocol level {args.level}, "
        f"{args.count} packets, best of 3"
    )
    print(f"decode: {best_decode:,.0f} packets/s")
    print(f"encode: {best_encode:,.0f} packets/s")


if __name__ == "__main__":
    main()
