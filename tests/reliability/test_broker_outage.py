"""The broker goes away for 30 seconds: the daemon waits, says it is not ready, and resumes on its own."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon, wait_until
from tests.support.signals import by_candle

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 30.0


async def test_single_broker_outage(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """Stop the only broker for 30 s mid-stream, restart it: not ready during the outage, ready again
    without help, and the signals equal an uninterrupted run's, each exactly once."""
    table = workload()
    messages = table.messages("1d")
    half = len(messages) // 2

    broker = LocalKafka(tmp_path / "broker").start()
    node = broker.members[0]
    try:
        topics = await fresh_topics(broker.bootstrap_servers)
        await publish_candles(messages[:half], bootstrap_servers=broker.bootstrap_servers, topic=topics.candles)
        async with running_daemon(daemon_settings(broker.bootstrap_servers, topics, test_artifact)) as daemon:
            await wait_until(daemon.became_ready.is_set, timeout_s=60)
            await read_records(broker.bootstrap_servers, topics.signals, expected=100, timeout_s=60)

            await asyncio.to_thread(broker.kill_node, node, signal.SIGTERM)
            stopped = time.monotonic()
            await wait_until(lambda: not all(daemon.health.readiness().values()), timeout_s=20)
            not_ready_after = time.monotonic() - stopped
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            assert not all(daemon.health.readiness().values())

            await asyncio.to_thread(broker.start_node, node)
            restarted = time.monotonic()
            await wait_until(lambda: all(daemon.health.readiness().values()), timeout_s=90)
            ready_after = time.monotonic() - restarted
            await publish_candles(messages[half:], bootstrap_servers=broker.bootstrap_servers, topic=topics.candles)
            records = await read_records(
                broker.bootstrap_servers,
                topics.signals,
                expected=sum(map(len, reference.values())),
                timeout_s=90,
                settle_s=3,
            )
    finally:
        broker.stop()

    print(f"outage: not ready {not_ready_after:.1f} s after the stop; ready {ready_after:.1f} s after the restart")
    assert by_candle(records) == reference
