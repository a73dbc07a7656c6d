"""The figures the daemon is measured against: the model alone, Kafka alone, and the daemon
scoring one candle per forward pass."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from candlecast.bench.harness import Bench, serving
from candlecast.bench.load import prefill
from candlecast.bench.report import IoCeiling, ModelCeiling
from daemon.kafka_sink import producer_options
from daemon.settings import Settings

if TYPE_CHECKING:
    from models.torchscript import LoadedModel


def model_ceiling(model: LoadedModel, batch: int, seconds: float, threads: int) -> ModelCeiling:
    """Forward passes of ``batch`` windows back to back for ``seconds``, warm."""
    import torch

    torch.set_num_threads(threads)
    golden = np.asarray(model.manifest.golden.input, dtype=np.float32)
    windows = np.ascontiguousarray(np.resize(golden, (batch, *golden.shape[1:])))
    for _ in range(3):
        model.score(windows)
    forwards = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.score(windows)
        forwards += 1
    elapsed = time.perf_counter() - started
    single = windows[:1]
    padded = _mean_seconds(lambda: model.score(single), seconds / 3)
    tensor = torch.from_numpy(np.ascontiguousarray(single)).to(model.device)

    def unpadded() -> None:
        with torch.inference_mode():
            model.module(tensor)

    return ModelCeiling(
        device=str(model.device),
        threads=threads,
        batch=batch,
        forwards_per_s=forwards / elapsed,
        windows_per_s=forwards * batch / elapsed,
        single_padded_ms=padded * 1000,
        single_unpadded_ms=_mean_seconds(unpadded, seconds / 3) * 1000,
    )


def _mean_seconds(work: Callable[[], object], seconds: float) -> float:
    for _ in range(3):
        work()
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        runs += 1
    return (time.perf_counter() - started) / runs


async def io_ceiling(bootstrap: str, source: str, sink: str, count: int, settings: Settings) -> IoCeiling:
    """A plain consume-and-produce pass-through: each candle forwarded as is, offsets committed
    after its poll's records are acknowledged (the at-least-once pattern, with no model), by a
    producer with the daemon's producer settings."""
    kafka = settings.kafka
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-io-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(kafka))
    await consumer.start()
    await producer.start()
    passed = 0
    started: float | None = None
    try:
        while passed < count:
            fetched = await consumer.getmany(timeout_ms=200, max_records=kafka.fetch_max_records)
            if not fetched:
                continue
            if started is None:
                started = time.perf_counter()
            futures = [await producer.send(sink, m.value, key=m.key) for messages in fetched.values() for m in messages]
            await asyncio.gather(*futures)
            await consumer.commit()
            passed += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()
    assert started is not None
    return IoCeiling(passed, passed / (time.perf_counter() - started))


async def naive_baseline(bench: Bench) -> tuple[float, float]:
    """The daemon's pipeline with ``max_batch = 1``: every candle its own forward pass; returns
    signals per second and the mean batch (1.0)."""
    options = bench.options
    symbols = min(options.symbols, options.naive_signals)
    per_symbol = -(-options.naive_signals // symbols)
    workload = bench.workload("N", symbols)
    candles, signals = await bench.topics("naive", options.partitions)
    await prefill(bench.bootstrap, candles, workload.rounds(bench.model.manifest.window - 1 + per_symbol))
    settings = bench.settings(candles=candles, signals=signals, group=signals, delivery="exactly_once", max_batch=1)
    async with serving(settings) as served:
        expected = symbols * per_symbol
        await served.recorder.wait_for(expected, bench.timeout(expected, 100.0))
        return served.recorder.throughput(0), served.mean_since((0.0, 0.0))
