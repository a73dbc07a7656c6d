"""The real daemon's control flow on in-memory transports: revocation, stop, reload and failing transactions.

No broker and no sleeps: each test waits on events (a batch held at the sink, a commit reaching an
offset) and checks what was committed against an uninterrupted run (the backtest of the same candles).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from candlecast.errors import TransportError
from daemon.memory_transport import MemoryBroker
from tests.flow.harness import (
    all_committed,
    candle_table,
    expected_signals,
    feed,
    flow_settings,
    running_daemon,
    warmed_up_daemon,
    without_produce_time,
)


async def test_a_revoked_partition_is_drained_and_its_next_owner_resumes_exactly() -> None:
    """Revocation waits until everything taken from the partition is published and committed; assigned
    again, the partition replays its windows from the commit and the signals equal an uninterrupted run's."""
    settings = flow_settings()
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker, hold=True) as running:
        await running.sink.holding.wait()
        revoking = asyncio.create_task(running.source.revoke([0]))
        running.sink.release()
        taken = await revoking
        assert 0 < taken[0] < len(broker.logs[0])
        assert broker.committed_offset(0) == taken[0]
        assert running.source.assigned == [1]

        await running.source.assign([0])
        await all_committed(broker)
        await running.stopped()

    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    assert without_produce_time(published) == without_produce_time(await expected_signals(settings, table))


async def test_stop_publishes_and_commits_what_is_in_flight_and_takes_nothing_more() -> None:
    """A stop requested with batches in flight ends the run cleanly once they are committed; records not yet
    taken stay for the next run, which resumes from the commit and completes an uninterrupted run's signals."""
    settings = flow_settings()
    table = candle_table(100)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        published = len(broker.signals)
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.request_stop()
        running.sink.release()
        await running.task
        taken = running.source.positions
    assert {p: broker.committed_offset(p) for p in taken} == taken
    assert sum(taken.values()) < len(table)
    stopped_with = len(broker.signals)
    assert published < stopped_with

    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        await running.stopped()
    assert stopped_with < len(broker.signals)
    assert without_produce_time(broker.signals) == without_produce_time(await expected_signals(settings, table))


async def test_a_reload_swaps_the_model_between_batches(test_artifact: Path, second_artifact: Path) -> None:
    """Batches scored before the swap carry the old version and its outputs, every later one the new
    version and its outputs; no symbol ever goes back to the old model."""
    settings = flow_settings(test_artifact)
    reloaded = settings.model_copy(update={"model": settings.model.model_copy(update={"artifact": second_artifact})})
    table = candle_table(100)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.settings = reloaded
        assert running.daemon.pipeline is not None
        assert await running.daemon.reload(running.daemon.routes[0])
        running.sink.release()
        await all_committed(broker)
        await running.stopped()

    old = {(s.symbol, s.ts): s.probabilities for s in await expected_signals(settings, table)}
    new = {(s.symbol, s.ts): s.probabilities for s in await expected_signals(reloaded, table)}
    published = broker.signals
    assert {s.model_version for s in published} == {"0.0.1", "0.0.2"}
    for signal in published:
        outputs = old if signal.model_version == "0.0.1" else new
        assert signal.probabilities == outputs[(signal.symbol, signal.ts)]
    for symbol in {s.symbol for s in published}:
        versions = [s.model_version for s in sorted(published, key=lambda s: s.ts) if s.symbol == symbol]
        assert versions == sorted(versions), symbol


async def test_a_transaction_that_fails_midway_is_aborted_and_the_batch_retried() -> None:
    """A sink error halfway through a transaction leaves none of its signals visible and no offset committed;
    the whole batch is retried, so every signal is published exactly once."""
    settings = flow_settings()
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker) as running:
        running.sink.fail(TransportError("the broker went away"))
        await all_committed(broker)
        await running.stopped()

    [aborted] = broker.aborted
    assert aborted.signals, "the failed transaction had written signals before it broke off"
    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    assert {s.signal_id for s in aborted.signals} <= {s.signal_id for s in published}
    assert without_produce_time(published) == without_produce_time(await expected_signals(settings, table))


async def test_a_sink_error_that_is_not_a_transport_error_ends_the_daemon_without_committing() -> None:
    """An unexpected error in the sink is not retried: the daemon's run raises it, the broken transaction's
    signals and offsets stay uncommitted, and a restarted daemon publishes them exactly once."""
    settings = flow_settings()
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker) as running:
        running.sink.fail(RuntimeError("producer fenced"))
        with pytest.raises(ExceptionGroup) as raised:
            await running.task
    assert raised.group_contains(RuntimeError, match="producer fenced")
    [aborted] = broker.aborted
    assert aborted.signals
    assert broker.signals == []

    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        await running.stopped()
    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    assert without_produce_time(published) == without_produce_time(await expected_signals(settings, table))
