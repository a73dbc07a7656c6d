"""Memory soak: symbols churning through the real pipeline with a stateful strategy; the daemon's memory follows
the windows alive at a time, not every symbol ever seen.

The suite runs 1,000 symbols and checks the daemon's traced bytes (tracemalloc);
``CANDLECAST_SOAK_SYMBOLS=100000`` runs the documented soak (docs/benchmarks.md), which checks the process's
peak resident memory instead (tracing would make it many times slower).
"""

from __future__ import annotations

import asyncio
import os
import resource
import tracemalloc
from pathlib import Path

import msgspec

from daemon.candle import CandleMessage
from daemon.memory_transport import MemoryBroker
from daemon.pipeline import Pipeline
from daemon.settings import BatchingSettings, Settings, StrategySettings, WindowSettings
from tests.flow.inline_pipeline import memory_pipeline
from tests.support.scorer import FakeScorer

HOUR = 3_600_000
BASE = 1_699_999_200_000

SYMBOLS = int(os.environ.get("CANDLECAST_SOAK_SYMBOLS", "1000"))
WAVE = max(1, SYMBOLS // 50)
"""Symbols that start trading each hour; each trades ``LIFETIME`` hours and is then delisted."""
TRACED = SYMBOLS <= 10_000
LIFETIME = 8
IDLE_EXPIRY = 12
MAX_WINDOWS = 50_000
BOUND = 64 << 20
"""Traced bytes the daemon's own objects may hold (windows, strategy history, in-flight requests)."""
GROWTH_BOUND = 512 << 20
"""How far the process's resident memory may grow above its size before the first candle (docs/benchmarks.md)."""
PLATEAU_BOUND = 64 << 20
"""How far it may grow over the second half of the new symbols' arrival, once expiry keeps pace with it."""
STATEFUL = StrategySettings(
    name="threshold", params={"buy_above": 0.55, "sell_below": 0.45, "hysteresis": 0.02, "cooldown": 2, "memory": 4}
)


def wave(hour: int) -> list[tuple[bytes, bytes, int]]:
    """The candles of one hour: every symbol alive then (started within the last ``LIFETIME`` hours)."""
    first = max(0, hour - LIFETIME + 1) * WAVE
    last = min(SYMBOLS, (hour + 1) * WAVE)
    rows = []
    for index in range(first, last):
        price = 100.0 + (index % 17) + (hour % 5)
        message = CandleMessage(f"S{index}", "1h", BASE + hour * HOUR, price, price * 1.01, price * 0.99, price, 1.0)
        rows.append((f"S{index}".encode(), msgspec.json.encode(message), BASE + (hour + 1) * HOUR))
    return rows


def daemon_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still held that the daemon's core and pipeline allocated (not the in-memory broker or the feed)."""
    kept = snapshot.filter_traces(
        [
            tracemalloc.Filter(True, "*/daemon/*"),
            tracemalloc.Filter(True, "*/strategies/*"),
            tracemalloc.Filter(False, "*/daemon/memory_transport.py"),
        ]
    )
    return sum(stat.size for stat in kept.statistics("filename"))


def resident_bytes() -> int:
    """The process's resident memory now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def churn() -> tuple[Pipeline[FakeScorer], int, int, list[int]]:
    """Every hour's candles through the pipeline; returns it, the peak of the daemon's traced bytes at the end
    of an hour, the signals published, and the resident memory at the end of each hour."""
    settings = Settings(
        windows=WindowSettings(max_windows=MAX_WINDOWS, idle_expiry_intervals=IDLE_EXPIRY),
        batching=BatchingSettings(max_batch=512, queue_chunks=4),
        strategy=STATEFUL,
    )
    broker = MemoryBroker()
    pipeline, source = memory_pipeline(settings, FakeScorer(), broker, max_records=2000, max_batch=512, queue_size=4)
    await source.start()
    run = asyncio.create_task(pipeline.run())
    peak = published = 0
    resident = [resident_bytes()]
    hours = SYMBOLS // WAVE + LIFETIME + IDLE_EXPIRY
    for hour in range(hours):
        for key, value, timestamp in wave(hour):
            broker.append(0, key, value, timestamp)
        log = broker.logs[0]
        await broker.wait_committed(0, len(log))
        published += len(broker.signals)
        # The broker's copies of what was consumed and published are not the daemon's memory.
        broker.transactions.clear()
        log[: len(log)] = [None] * len(log)  # type: ignore[list-item]
        if TRACED and hour % 10 == 0:
            peak = max(peak, daemon_bytes(tracemalloc.take_snapshot()))
        resident.append(resident_bytes())
    pipeline.stop()
    await run
    return pipeline, peak, published, resident


def test_symbols_churning_through_an_instance_keep_its_memory_bounded() -> None:
    """Delisted symbols' windows expire and their strategy history goes with them: the windows and histories
    held stay at the symbols alive at a time, and the daemon's memory under its bound (traced bytes in the
    suite; in the full soak, resident growth, flat while new symbols keep arriving)."""
    if TRACED:
        tracemalloc.start()
    try:
        pipeline, peak, published, resident = asyncio.run(churn())
    finally:
        tracemalloc.stop()
    alive = LIFETIME * WAVE
    store = pipeline.lanes[0].ingestor.store
    assert published == (SYMBOLS // WAVE) * WAVE * (LIFETIME - FakeScorer().manifest.window + 1)
    assert store.stats.expired >= SYMBOLS - alive - IDLE_EXPIRY * WAVE
    assert len(store) <= alive + (IDLE_EXPIRY + 1) * WAVE
    assert pipeline.lanes[0].builder.remembered <= len(store)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"symbols={SYMBOLS} peak_traced_bytes={peak} max_rss_bytes={rss} windows_alive={len(store)}")
    print("resident MiB by hour:", [round(r / 2**20) for r in resident])
    arrivals = SYMBOLS // WAVE
    if TRACED:
        assert 0 < peak < BOUND
    else:
        assert resident[-1] - resident[0] < GROWTH_BOUND
        assert resident[arrivals] - resident[arrivals // 2] < PLATEAU_BOUND
