"""The I/O floor: the daemon's Kafka consumer and sink, joined by a pass-through, forward a paced stream in each
delivery mode, and the report sets each mode's floor beside the daemon's latency at the same rate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from candlecast.bench.harness import Bench
from candlecast.bench.io_floor import io_floors
from candlecast.bench.load import Generator
from candlecast.bench.options import DELIVERY_CHOICES, BenchOptions, Delivery
from candlecast.bench.report import (
    DeliveryRun,
    Latency,
    ModelCeiling,
    RatedSteady,
    SteadyStages,
)
from candlecast.localkafka import LocalKafka
from models.torchscript import load_artifact
from tests.support.bench_report import bench_result, rendered_rows

pytestmark = pytest.mark.kafka

RATE = 200.0
OPTIONS = BenchOptions(symbols=20, partitions=3, steady_s=0.3)
CANDLES = int(RATE * OPTIONS.steady_s)


async def _values(bootstrap: str, topic: str, count: int) -> Counter[bytes]:
    """The values a read_committed reader sees on ``topic``, once it has seen ``count`` of them."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    values: Counter[bytes] = Counter()
    try:
        for _ in range(100):
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                values.update(m.value or b"" for m in messages)
            if values.total() >= count:
                break
    finally:
        await consumer.stop()
    return values


async def _topic(bootstrap: str, prefix: str) -> str:
    """The one topic named ``prefix`` and a random suffix (not its dead-letter topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names: list[str] = await admin.list_topics()
        (topic,) = [name for name in names if name.startswith(prefix) and "." not in name]
    finally:
        await admin.close()
    return topic


async def _floors(bootstrap: str, model_path: Path) -> dict[Delivery, Latency]:
    """Each mode's floor at ``RATE``; checks that its pass-through forwarded every candle sent once."""
    model = load_artifact(model_path)
    bench = Bench(bootstrap, OPTIONS, model_path, model, ModelCeiling("cpu", 1, 8, 1.0, 8.0, 1.0, 1.0), Console())
    floors: dict[Delivery, Latency] = {}
    async with Generator(bootstrap, "unused-default-topic") as gen:
        for delivery in DELIVERY_CHOICES["both"]:
            (floors[delivery],) = await io_floors(bench, gen, delivery, [RATE], quiet_s=0.0)
            sent = await _values(bootstrap, await _topic(bootstrap, f"bench-floor-{delivery}-candles-"), CANDLES)
            forwarded = await _topic(bootstrap, f"bench-floor-{delivery}-signals-")
            assert sum(sent.values()) == CANDLES
            assert await _values(bootstrap, forwarded, CANDLES) == sent
    return floors


def _run(delivery: Delivery, floor: Latency) -> DeliveryRun:
    """A daemon run whose only fixed-rate phase is twice as slow as ``floor``."""
    daemon = Latency(floor.count, 2 * floor.p50_ms, 2 * floor.p99_ms, 2 * floor.p999_ms, 2 * floor.max_ms)
    stages = SteadyStages(consume=daemon, forward_ms=1.0, publish_ms=1.0, mean_batch=1.0)
    nothing = Latency.of(np.array([]))
    return DeliveryRun(
        delivery=delivery,
        scoring="stream",
        throughput_per_s=1000.0,
        throughput_signals=100,
        throughput_mean_batch=10.0,
        steady_rate_per_s=RATE,
        steady=daemon,
        steady_stages=stages,
        burst_rate_per_s=10 * RATE,
        burst=nothing,
        burst_phase=nothing,
        close_bursts=[],
        fixed_rates=[RatedSteady(RATE, daemon, stages, 1.0, io_floor=floor)],
    )


async def test_the_floor_forwards_in_both_modes_and_is_reported_beside_the_daemon(
    kafka: LocalKafka, test_artifact: Path
) -> None:
    """Each mode's pass-through forwards every paced candle exactly once and times each; the report shows both
    modes' floors beside the daemon's figures at that rate, and the JSON the daemon's p99 over each floor."""
    deliveries = DELIVERY_CHOICES["both"]
    floors = await _floors(kafka.bootstrap_servers, test_artifact)
    for floor in floors.values():
        assert floor.count == CANDLES and floor.p50_ms > 0

    result = bench_result(20, [_run(delivery, floors[delivery]) for delivery in deliveries])
    rows = rendered_rows(result, "I/O floor, same rate")
    assert len(rows) == len(deliveries)
    for row, delivery in zip(rows, deliveries, strict=True):
        assert f"{floors[delivery].p99_ms:.1f} ms p99" in row and delivery in row and "daemon p99 2.00x" in row
    ratios = result.ratios()
    for delivery in deliveries:
        assert ratios[f"daemon_p99_over_io_floor_at_{RATE:g}_stream_{delivery}"] == pytest.approx(2.0)
    assert b'"io_floor"' in result.to_json()
