"""What one full garbage collection costs the daemon with the query API's signal store filled: each
symbol's latest signal and a full resumption ring (docs/benchmarks.md, "Where the steady-state tail
comes from").

The daemon makes its store at start-up and freezes its start-up heap once its models are warm
(``daemon.heap``), so a full collection walks only the objects made since, of which what the store
keeps of each signal is the part that grows with the symbols. Here the store is made, everything alive
is frozen the same way, the store is filled, and a collection's cost is this thread's CPU time (the
event loop's pause), the least of ``repeats`` (a loaded machine only adds).

``python -m candlecast.bench.store_collection [--symbols 2000 10000 100000] [--ring 10000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from candlecast.bench.fanout import HOUR_MS, synthetic_signal
from daemon.signal_store import SignalStore

BATCH = 500
"""Signals recorded at a time, about a committed batch of a candle close."""


@dataclass(frozen=True)
class Collection:
    tracked: int
    """Objects the collector tracks beyond the frozen heap, with the store filled."""
    cpu_ms: float
    """CPU time of one full collection, the least of the repeats."""


def empty_store(symbols: int, ring: int) -> SignalStore:
    """Made before the freeze, as the daemon's is at start-up."""
    return SignalStore(ring=ring, client_buffer=1, max_clients=0, keys=symbols, clock_ms=lambda: 0)


def fill(store: SignalStore, symbols: int) -> None:
    """Record a signal of every symbol (synthetic, of the daemon's shape), a batch at a time."""
    for first in range(0, symbols, BATCH):
        batch = range(first, min(first + BATCH, symbols))
        store.record("bench", [(synthetic_signal(n, symbols), 0, HOUR_MS) for n in batch])


def full_collection(make: Callable[[], None], repeats: int) -> Collection:
    """Freeze what is alive, ``make`` (what it keeps alive is measured), then time full collections."""
    gc.collect()
    gc.freeze()
    try:
        make()
        gc.collect()
        tracked = len(gc.get_objects())
        times = []
        for _ in range(repeats):
            started = time.thread_time()
            gc.collect()
            times.append(time.thread_time() - started)
        return Collection(tracked, 1000 * min(times))
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m candlecast.bench.store_collection", description=__doc__)
    parser.add_argument("--symbols", type=int, nargs="+", default=[2_000, 10_000, 100_000])
    parser.add_argument("--ring", type=int, default=10_000, help="the store's ring ([api] ring)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sys.stdout.write("| symbols | tracked objects | full collection, CPU |\n| ---: | ---: | ---: |\n")
    for symbols in args.symbols:
        store = empty_store(symbols, args.ring)
        found = full_collection(functools.partial(fill, store, symbols), args.repeats)
        del store
        sys.stdout.write(f"| {symbols:,} | {found.tracked:,} | {found.cpu_ms:.2f} ms |\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
