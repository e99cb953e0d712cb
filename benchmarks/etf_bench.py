"""
Micro-benchmark of the Erlang external term format codec
(L{vernemq.dist.etf}) on typical cluster messages.

Measures encode and decode cost, in microseconds per operation, for:

    - a routed message, C{{vmq_msg, <<"topic/a/b">>, <<64 bytes>>, 1, false, #{}}};
    - a gen_server call, C{{'$gen_call', {Pid, Ref}, {call, M, F, Args, Pid}}};
    - a pass-through distribution frame body: a REG_SEND control tuple and
      the gen_call message, each with its version byte (C{decode_many}).

Prints a small table (best of several rounds).  Not a test; run it by hand::

    python benchmarks/etf_bench.py [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vernemq.dist.etf import (  # noqa: E402
    Atom,
    Pid,
    Reference,
    decode,
    decode_many,
    encode,
)

NODE = Atom("vernemq@host-1")
PID = Pid(NODE, 4711, 0, 1795699750)
REF = Reference(NODE, 1795699750, (84291, 1338769409, 2282953575))

VMQ_MSG: tuple[Any, ...] = (Atom("vmq_msg"), b"topic/a/b", bytes(range(64)), 1, False, {})
GEN_CALL: tuple[Any, ...] = (
    Atom("$gen_call"),
    (PID, REF),
    (Atom("call"), Atom("vmq_reg"), Atom("publish"), [b"topic/a/b", bytes(range(64)), 1], PID),
)
REG_SEND: tuple[Any, ...] = (6, PID, Atom(""), Atom("vmq_cluster"))


def perOp(function: Callable[[], Any], count: int, rounds: int) -> float:
    """Return the best time per call of C{function}, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def encodeFrame(terms: list[Any]) -> bytes:
    """Encode C{terms} as a pass-through frame body carries them."""
    return b"".join(map(encode, terms))


def main() -> None:
    """Parse the options and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frame = encode(REG_SEND) + encode(GEN_CALL)
    rows: list[tuple[str, int, float, float]] = []
    for name, term in (("vmq_msg", VMQ_MSG), ("$gen_call", GEN_CALL)):
        data = encode(term)
        assert encode(decode(data)) == data
        rows.append(
            (
                name,
                len(data),
                perOp(partial(encode, term), args.count, args.rounds),
                perOp(partial(decode, data), args.count, args.rounds),
            )
        )
    terms = [REG_SEND, GEN_CALL]
    rows.append(
        (
            "REG_SEND frame",
            len(frame),
            perOp(partial(encodeFrame, terms), args.count, args.rounds),
            perOp(partial(decode_many, frame), args.count, args.rounds),
        )
    )
    version = sys.version.split()[0]
    print(f"vernemq.dist.etf, best of {args.rounds} x {args.count} ops, Python {version}")
    print(f"{'term':<16} {'bytes':>6} {'encode µs':>10} {'decode µs':>10}")
    for name, size, encodeTime, decodeTime in rows:
        print(f"{name:<16} {size:>6} {encodeTime:>10.2f} {decodeTime:>10.2f}")


if __name__ == "__main__":
    main()
