"""Instances joining and leaving one consumer group mid-stream: every candle scored once, as by one instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.candle import CandleMessage
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import fresh_topics, read_records, wait_until
from tests.support.process import DaemonProcess, write_config
from tests.support.signals import by_candle, in_symbol_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_two_then_three_instances_then_one_leaves(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """Start two instances, add a third and stop one mid-stream (exactly_once): the published signals
    equal a single-instance run, each exactly once, in per-symbol order."""
    table = workload()
    topics = await fresh_topics(kafka.bootstrap_servers, candle_partitions=6)

    def instance(name: str) -> DaemonProcess:
        config = write_config(
            tmp_path / f"{name}.toml",
            bootstrap=kafka.bootstrap_servers,
            topics=topics,
            artifact=test_artifact,
            instance_id=name,
        )
        return DaemonProcess(config, tmp_path / f"{name}.log").start()

    def assigned(daemon: DaemonProcess) -> int:
        """Partitions the instance holds, from its /metrics."""
        status, body = daemon.get("/metrics")
        assert status == 200
        families = text_string_to_metric_families(body.decode())
        return next(int(f.samples[0].value) for f in families if f.name == "candlecast_assigned_partitions")

    async def feed(part: list[tuple[str, CandleMessage]]) -> None:
        await publish_candles(part, bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles, rate=100)

    messages = table.messages("1d")
    third_of = len(messages) // 3
    parts = [messages[:third_of], messages[third_of : 2 * third_of], messages[2 * third_of :]]
    first, second = instance("a"), instance("b")
    third: DaemonProcess | None = None
    try:
        await asyncio.gather(asyncio.to_thread(first.wait_ready, 90), asyncio.to_thread(second.wait_ready, 90))
        await feed(parts[0])

        # A third instance joins while the second part streams in: it takes partitions over.
        feeding = asyncio.create_task(feed(parts[1]))
        third = instance("c")
        await asyncio.to_thread(third.wait_ready, 90)
        await wait_until(lambda: assigned(third) > 0, timeout_s=60)
        await feeding

        # The first leaves while the third part streams in: the other two hold every partition.
        feeding = asyncio.create_task(feed(parts[2]))
        assert await asyncio.to_thread(first.stop) == 0, first.log_tail()
        await wait_until(lambda: assigned(second) + assigned(third) == 6, timeout_s=60)
        await feeding
        records = await read_records(
            kafka.bootstrap_servers,
            topics.signals,
            expected=sum(map(len, reference.values())),
            timeout_s=90,
            settle_s=3,
        )
    finally:
        for daemon in (first, second, third):
            if daemon is not None:
                assert daemon.stop() == 0, daemon.log_tail()

    published = by_candle(records)
    assert published == reference
    assert in_symbol_order(records)
