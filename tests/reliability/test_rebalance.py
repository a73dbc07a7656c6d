"""Instances joining and leaving one consumer group mid-stream: every candle scored once, as by one instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import fresh_topics, read_records
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

    first, second = instance("a"), instance("b")
    third: DaemonProcess | None = None
    feeding = asyncio.create_task(
        publish_candles(table.messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles, rate=100)
    )
    try:
        await asyncio.gather(asyncio.to_thread(first.wait_ready, 90), asyncio.to_thread(second.wait_ready, 90))
        await asyncio.sleep(6)
        third = instance("c")
        await asyncio.to_thread(third.wait_ready, 90)
        await asyncio.sleep(4)
        assert await asyncio.to_thread(first.stop) == 0, first.log_tail()
        await feeding
        records = await read_records(
            kafka.bootstrap_servers,
            topics.signals,
            expected=sum(map(len, reference.values())),
            timeout_s=90,
            settle_s=3,
        )
    finally:
        feeding.cancel()
        for daemon in (first, second, third):
            if daemon is not None:
                assert daemon.stop() == 0, daemon.log_tail()

    published = by_candle(records)
    assert published == reference
    assert in_symbol_order(records)
    assert third is not None
    logs = "".join(d.log_path.read_text() for d in (first, second, third))
    assert logs.count("partitions assigned") >= 4, "the group rebalanced as instances came and went"
