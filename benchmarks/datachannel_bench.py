"""
Micro-benchmark of the cluster data channel's byte path, in process.

For N routed messages with 64-byte payloads (L{RoutedMessage}, QoS 1, a
four-level topic) it measures, separately and end to end:

  - encode: C{RoutedMessage.to_item()} + L{encode_item} (what
    L{OutgoingDataChannel.send} does per item) into an L{OutgoingBatch};
  - frame: L{OutgoingBatch.take_frames} at the 64 KiB flush threshold;
  - decode: L{InboundDecoder} fed the frames in 64 KiB chunks, as TCP
    reads deliver them, then L{RoutedMessage.from_term} on every item (what
    a router does on receipt).

Prints items per second for each stage and for the whole path.  Not a
test; run it by hand::

    python benchmarks/datachannel_bench.py [--count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vernemq.cluster.datachannel import RoutedMessage  # noqa: E402
from vernemq.cluster.dataframes import (  # noqa: E402
    InboundDecoder,
    OutgoingBatch,
    encode_hello,
    encode_item,
)

TOPIC = "sensors/building-1/floor-2/temperature"
PAYLOAD = bytes(range(64))
CHUNK = 65536
THRESHOLD = 65536


def run(count: int) -> tuple[float, float, float, int]:
    """
    One round: return the seconds spent encoding, framing and decoding, and
    the bytes on the wire.
    """
    messages = [RoutedMessage(TOPIC, PAYLOAD, qos=1, msg_ref=b"%016d" % i) for i in range(count)]
    batch = OutgoingBatch()
    append = batch.append

    t0 = time.perf_counter()
    for message in messages:
        append(encode_item(*message.to_item()))
    t1 = time.perf_counter()
    frames = batch.take_frames(THRESHOLD)
    t2 = time.perf_counter()

    stream = encode_hello("bench@127.0.0.1") + b"".join(frames)
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    decoder = InboundDecoder()
    from_term = RoutedMessage.from_term
    received = 0
    t3 = time.perf_counter()
    for chunk in chunks:
        decoder.feed(chunk)
        while (event := decoder.next_event()) is not None:
            items = getattr(event, "items", None)
            if items is not None:
                for _tag, term in items:
                    from_term(term)
                received += len(items)
    t4 = time.perf_counter()
    if received != count:
        raise SystemExit(f"decoded {received} items, expected {count}")
    return t1 - t0, t2 - t1, t4 - t3, len(stream)


def main() -> None:
    """Parse the arguments, run, print the best round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rounds = [run(args.count) for _ in range(args.repeat)]
    encode_s = min(r[0] for r in rounds)
    frame_s = min(r[1] for r in rounds)
    decode_s = min(r[2] for r in rounds)
    total_s = min(r[0] + r[1] + r[2] for r in rounds)
    wire = rounds[0][3]
    n = args.count
    print(f"{n} msg items, 64-byte payloads, {wire / n:.1f} wire bytes per item")
    print(f"encode        {n / encode_s:12,.0f} items/s")
    print(f"frame         {n / frame_s:12,.0f} items/s")
    print(f"decode        {n / decode_s:12,.0f} items/s  (incl. RoutedMessage.from_term)")
    print(f"end to end    {n / total_s:12,.0f} items/s")


if __name__ == "__main__":
    main()
