"""A fenced sink ends the daemon, also while a revocation drains: nothing waits for records that cannot commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from candlecast.errors import FencedError
from daemon.memory_transport import MemoryBroker
from tests.flow.harness import candle_table, feed, flow_settings, running_daemon

GUARD_S = 30
"""Only keeps a failing test from hanging; a passing run ends as soon as the sink is fenced."""


async def test_fenced_while_a_revocation_drains_ends_the_run_and_the_drain(test_artifact: Path) -> None:
    """The sink is fenced while a revocation waits for the in-flight records: the run ends with FencedError and
    the revocation returns (with Kafka, closing the consumer waits for it), committing nothing more."""
    settings = flow_settings(test_artifact)
    broker = MemoryBroker(partitions=2)
    feed(broker, candle_table())
    async with running_daemon(settings, broker, hold=True) as running:
        await running.sink.holding.wait()
        revoking = asyncio.create_task(running.source.revoke([0]))
        running.sink.fail(FencedError("another instance with the same kafka.instance_id took over"))
        running.sink.release()
        with pytest.raises(FencedError, match="took over"):
            await asyncio.wait_for(running.task, GUARD_S)
        await asyncio.wait_for(revoking, GUARD_S)
    [fenced] = broker.aborted
    assert fenced.signals
    assert broker.signals == []
