"""The broker goes away for longer than the daemon's group session and transaction timeouts: the daemon waits,
says it is not ready, and resumes on its own."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import (
    daemon_settings,
    fresh_topics,
    read_records,
    running_daemon,
    wait_all_committed,
    wait_until,
)
from tests.support.signals import by_candle

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TIMEOUTS_MS = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1800,
    "transaction_timeout_ms": 9000,
    "request_timeout_ms": 18000,
}
"""The daemon's group session, heartbeat, transaction and request timeouts: 0.6 of the defaults (the session at
the broker's smallest, ``group.min.session.timeout.ms``)."""
OUTAGE_S = 18.0
"""As long as the request timeout and longer than the session and transaction timeouts, as a 30 s outage is
with the defaults: the same outage relative to the daemon's deadlines, in 18 s instead of 30."""


async def test_single_broker_outage(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """Stop the only broker once the daemon has committed the first half of the candles (idle, no transaction
    open), for as long as the request timeout, past the session and transaction timeouts, restart it: not ready
    during the outage, ready again without help, and with the second half the signals equal an uninterrupted
    run's, each exactly once."""
    table = workload()
    messages = table.messages("1d")
    half = len(messages) // 2

    broker = LocalKafka(tmp_path / "broker").start()
    node = broker.members[0]
    try:
        topics = await fresh_topics(broker.bootstrap_servers)
        await publish_candles(messages[:half], bootstrap_servers=broker.bootstrap_servers, topic=topics.candles)
        settings = daemon_settings(broker.bootstrap_servers, topics, test_artifact, **TIMEOUTS_MS)
        async with running_daemon(settings) as daemon:
            await wait_until(daemon.became_ready.is_set, timeout_s=60)
            # The first half is consumed and committed (it yields only a few signals: most go to filling windows).
            await wait_all_committed(broker.bootstrap_servers, topics.candles, topics.group)

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
