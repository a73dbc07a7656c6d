"""The stream's fan-out alone: what committed batches cost the daemon's process with stream clients
connected, without Kafka or a model (docs/benchmarks.md, "Stream clients").

The query API is served as the daemon serves it (``HttpServer``, a real socket), and its signal store
is fed synthetic signals at ``rate`` in batches of ``batch``, first with no client, then with
``clients`` clients of every symbol held by another process (``candlecast.bench.streams``). It
prints this process's CPU microseconds per signal in each case; ``--profile`` adds cProfile's
top functions of the second.

``python -m candlecast.bench.fanout [--clients 100] [--rate 2000] [--batch 50] [--seconds 5] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from candlecast.bench.report import ClientCounts
from candlecast.bench.streams import stream_clients
from daemon.api import ApiContext
from daemon.http import Health, HttpServer
from daemon.settings import ApiSettings
from daemon.signal import Signal
from daemon.signal_store import SignalStore

HOUR_MS = 3_600_000


def synthetic_signal(n: int, symbols: int) -> Signal:
    """A signal of the daemon's shape and about its size on the wire (3 horizons, 5 quantiles)."""
    return Signal(
        signal_id=f"00000000-0000-5000-8000-{n:012d}",
        symbol=f"S{n % symbols:05d}",
        interval="1d",
        ts="2024-01-02T00:00:00Z",
        action="HOLD",
        confidence=0.532,
        probability=0.532,
        horizon=1,
        probabilities={"1": 0.532, "5": 0.541, "20": 0.563},
        quantiles={h: [-0.031, -0.012, 0.001, 0.014, 0.033] for h in ("1", "5", "20")},
        quantile_levels=[0.05, 0.25, 0.5, 0.75, 0.95],
        disagreement=0.012,
        model_version="1.1.0",
        strategy="threshold(buy_above=0.6,sell_below=0.4,hysteresis=0.0,cooldown=0)",
        produced_at="2024-01-03T00:00:01.123Z",
    )


@dataclass(frozen=True)
class Fanout:
    alone_us: float
    """This process's CPU per signal with no client."""
    fanned_us: float
    """The same with the clients connected."""
    cut_off: int
    counts: ClientCounts


async def cpu_per_signal(store: SignalStore, rate: float, batch: int, seconds: float, first: int) -> float:
    """Feed ``seconds`` of paced batches; this process's CPU microseconds per signal, settling included."""
    batches = int(seconds * rate / batch)
    started, cpu = time.perf_counter(), time.process_time()
    for b in range(batches):
        wait = started + b * batch / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        n = first + b * batch
        store.record("bench", [(synthetic_signal(n + i, 2000), 0, HOUR_MS) for i in range(batch)])
    await asyncio.sleep(0.5)  # the writers finish the last batch
    return (time.process_time() - cpu) / (batches * batch) * 1e6


async def measure(clients: int, rate: float, batch: int, seconds: float, profile: bool) -> Fanout:
    store = SignalStore(ring=10_000, client_buffer=1_000, max_clients=clients, keys=100_000, clock_ms=lambda: 0)
    registry = CollectorRegistry()
    server = HttpServer(registry, Health(registry), "127.0.0.1", 0)
    server.serve_api(ApiContext([], store, ApiSettings(), store.clock_ms))
    port = await server.start()
    try:
        alone = await cpu_per_signal(store, rate, batch, seconds, 0)
        async with stream_clients("127.0.0.1", port, clients) as connected:
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()
            published = store.recorded
            fanned = await cpu_per_signal(store, rate, batch, seconds, published)
            if profiler is not None:
                profiler.disable()
            counts = await connected.settle(store.recorded - published)
    finally:
        await server.stop()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return Fanout(alone, fanned, store.disconnected, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    figures = asyncio.run(measure(options.clients, options.rate, options.batch, options.seconds, options.profile))
    counts = figures.counts
    sys.stdout.write(
        f"{options.rate:g} signals/s in batches of {options.batch}, {options.seconds:g} s each:\n"
        f"  no client:   {figures.alone_us:7.1f} us of CPU per signal\n"
        f"  {options.clients} clients: {figures.fanned_us:7.1f} us of CPU per signal; {figures.cut_off} cut off; "
        f"events per client {min(counts.received)}-{max(counts.received)} of {counts.published}; "
        f"clients' process {counts.cpu_s:.2f} s of CPU\n"
    )


if __name__ == "__main__":
    main()
