"""SIGKILL the daemon repeatedly under steady load: nothing lost, nothing doubled, nothing different."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import fresh_topics, read_records
from tests.support.process import DaemonProcess, write_config
from tests.support.signals import by_candle, in_symbol_order

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = int(os.environ.get("CANDLECAST_SOAK_KILLS", "5"))
"""5 in the suite; `make soak` sets CANDLECAST_SOAK_KILLS for a longer run."""
RATE = float(os.environ.get("CANDLECAST_SOAK_RATE", "90"))


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
async def test_repeated_sigkill_under_load(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference, delivery: str
) -> None:
    """After 5 SIGKILLs at random points: every candle's signal equals the uninterrupted run's; exactly
    once in exactly_once mode, at least once with identical copies in at_least_once mode."""
    table = workload()
    assert len(reference) > 1000

    topics = await fresh_topics(kafka.bootstrap_servers)
    config = write_config(
        tmp_path / "daemon.toml",
        bootstrap=kafka.bootstrap_servers,
        topics=topics,
        artifact=test_artifact,
        delivery=delivery,
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    feeding = asyncio.create_task(
        publish_candles(
            table.messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles, rate=RATE
        )
    )
    rng = random.Random(20261123)
    try:
        await asyncio.to_thread(daemon.wait_ready, 90)
        for kill in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 3.5))
            await asyncio.to_thread(daemon.kill)
            daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
            if kill % 2 == 0:
                await asyncio.to_thread(daemon.wait_ready, 90)
        await feeding
        # With an even number of kills the last instance was started but not waited for; a stop that
        # reached it before its SIGTERM handler was installed would judge start-up, not the drain.
        await asyncio.to_thread(daemon.wait_ready, 90)
        records = await read_records(
            kafka.bootstrap_servers,
            topics.signals,
            expected=sum(map(len, reference.values())),
            timeout_s=120,
            settle_s=3,
        )
    finally:
        feeding.cancel()
        assert daemon.stop() == 0, daemon.log_tail()

    published = by_candle(records)
    assert published.keys() == reference.keys()
    for candle, copies in published.items():
        assert set(copies) == set(reference[candle]), f"different content for {candle}"
        if delivery == "exactly_once":
            assert len(copies) == 1, f"{candle} published {len(copies)} times"
    assert in_symbol_order(records)
