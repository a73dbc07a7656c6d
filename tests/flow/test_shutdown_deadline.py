"""A stop with a sink that cannot finish ends at the shutdown deadline, not at systemd's SIGKILL."""

from __future__ import annotations

import asyncio

import pytest

from candlecast.errors import ShutdownDeadlineError
from daemon.memory_transport import MemoryBroker
from daemon.settings import ShutdownSettings
from tests.flow.harness import (
    all_committed,
    candle_table,
    expected_signals,
    flow_settings,
    running_daemon,
    warmed_up_daemon,
    without_produce_time,
)

GUARD_S = 30
"""Only keeps a failing test from hanging; a passing run ends as soon as the deadline passes."""


async def test_a_stuck_sink_is_abandoned_at_the_deadline_and_nothing_it_held_is_committed() -> None:
    """A stop while the sink holds a batch ends the run with ShutdownDeadlineError once the shutdown deadline
    passes; the held batch's transaction never commits, and a restarted daemon publishes its candles exactly
    once, completing an uninterrupted run's signals."""
    settings = flow_settings().model_copy(update={"shutdown": ShutdownSettings(deadline_s=0.0)})
    table = candle_table(100)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        committed = {p: broker.committed_offset(p) for p in range(broker.partitions)}
        published = len(broker.signals)
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.request_stop()
        with pytest.raises(ShutdownDeadlineError, match=r"shutdown\.deadline_s"):
            await asyncio.wait_for(running.task, GUARD_S)
    assert {p: broker.committed_offset(p) for p in range(broker.partitions)} == committed
    assert len(broker.signals) == published

    async with running_daemon(settings.model_copy(update={"shutdown": ShutdownSettings()}), broker) as running:
        await all_committed(broker)
        await running.stopped()
    published_again = broker.signals
    assert len({s.signal_id for s in published_again}) == len(published_again)
    assert without_produce_time(published_again) == without_produce_time(await expected_signals(settings, table))
