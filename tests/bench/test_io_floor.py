"""The I/O floor: the daemon's Kafka consumer and sink, joined by a pass-through, forward a paced stream in each
delivery mode, and the report sets each mode's floor beside the daemon's latency at the same rate."""

from __future__ import annotations

import uuid
from collections import Counter

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from rich.console import Console

from candlecast.bench.io_floor import paced_floor, pass_through
from candlecast.bench.load import Generator, Workload, create_topics
from candlecast.bench.options import DELIVERY_CHOICES, Delivery
from candlecast.bench.report import (
    BenchResult,
    DeliveryRun,
    IoCeiling,
    Latency,
    ModelCeiling,
    RatedSteady,
    SteadyStages,
    render,
)
from candlecast.localkafka import LocalKafka
from daemon.intervals import Interval
from daemon.settings import KafkaSettings

pytestmark = pytest.mark.kafka

RATE = 200.0
CANDLES = 60
PARTITIONS = 3


async def _forwarded_values(bootstrap: str, topic: str, count: int) -> Counter[bytes]:
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


async def _floor(bootstrap: str, gen: Generator, delivery: Delivery) -> Latency:
    """``CANDLES`` candles at ``RATE`` through a pass-through in ``delivery``; checks that each was forwarded once."""
    suffix = uuid.uuid4().hex[:6]
    candles, forwarded = f"floor-candles-{suffix}", f"floor-out-{suffix}"
    await create_topics(bootstrap, {candles: PARTITIONS, forwarded: PARTITIONS, f"{forwarded}.dlq": 1})
    workload = Workload("F", 20, Interval.parse("1d", "weekdays"), PARTITIONS, seed=1)
    messages = workload.stream(CANDLES)
    settings = KafkaSettings(
        bootstrap_servers=bootstrap,
        candles_topic=candles,
        signals_topic=forwarded,
        dead_letter_topic=f"{forwarded}.dlq",
        group_id=forwarded,
        instance_id=forwarded,
        delivery=delivery,
    )
    async with pass_through(settings) as passing:
        latency = await paced_floor(passing, gen, candles, messages, RATE, timeout_s=60)
    assert await _forwarded_values(bootstrap, forwarded, CANDLES) == Counter(value for _, _, value in messages)
    return latency


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


async def test_the_floor_forwards_in_both_modes_and_is_reported_beside_the_daemon(kafka: LocalKafka) -> None:
    """Each mode's pass-through forwards every paced candle exactly once and times each; the report shows both
    modes' floors beside the daemon's figures at that rate, and the JSON the daemon's p99 over each floor."""
    deliveries = DELIVERY_CHOICES["both"]
    async with Generator(kafka.bootstrap_servers, "unused-default-topic") as gen:
        floors = {delivery: await _floor(kafka.bootstrap_servers, gen, delivery) for delivery in deliveries}
    for floor in floors.values():
        assert floor.count == CANDLES and floor.p50_ms > 0

    ceiling = ModelCeiling("cpu", 1, 8, 1.0, 8.0, 1.0, 1.0)
    result = BenchResult(
        machine={},
        options={"symbols": 20},
        model={},
        ceiling=ceiling,
        ceiling_other_threads=None,
        io=IoCeiling(1, 1.0),
        naive_per_s=1.0,
        naive_mean_batch=1.0,
        runs=[_run(delivery, floors[delivery]) for delivery in deliveries],
    )
    console = Console(record=True, width=300)
    console.print(render(result))
    rows = [line for line in console.export_text().splitlines() if "I/O floor, same rate" in line]
    assert len(rows) == len(deliveries)
    for row, delivery in zip(rows, deliveries, strict=True):
        assert f"{floors[delivery].p99_ms:.1f} ms p99" in row and delivery in row and "daemon p99 2.00x" in row
    ratios = result.ratios()
    for delivery in deliveries:
        assert ratios[f"daemon_p99_over_io_floor_at_{RATE:g}_stream_{delivery}"] == pytest.approx(2.0)
    assert b'"io_floor"' in result.to_json()
