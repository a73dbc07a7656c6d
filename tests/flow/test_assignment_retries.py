"""An assignment whose plan fails (the committed-offset fetch or beginning offsets giving up) on in-memory
transports and a fake timer: retried after 1, 2 and 4 s of timer time with the partitions paused, shown
in ``candlecast_paused_partitions`` and ``/readyz``, then resumed exactly or, if it never succeeds, the
daemon exits with the transport status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from candlecast.errors import TransportError
from daemon.memory_transport import MemoryBroker, MemoryTransports
from daemon.service import Daemon
from daemon.settings import Settings
from daemon.timer import FakeTimer, settled
from tests.flow.harness import (
    CLOCK_START,
    Running,
    all_committed,
    candle_table,
    expected_signals,
    feed,
    flow_settings,
    load_model,
    without_produce_time,
)

PAUSED = "candlecast_paused_partitions"
GUARD_S = 30
"""Only keeps a failing test from hanging."""


@contextlib.asynccontextmanager
async def daemon_with_metrics(
    settings: Settings, broker: MemoryBroker
) -> AsyncIterator[tuple[Running, CollectorRegistry]]:
    """A daemon on ``broker`` whose source retries on the fake timer and reports to the daemon's registry."""
    clock = FakeTimer(CLOCK_START)
    registry = CollectorRegistry()
    transports = MemoryTransports(broker, max_records=16, timer=clock, registry=registry)
    daemon = Daemon(settings, transports=transports, clock=clock, registry=registry, load_model=load_model)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait({task, asyncio.ensure_future(daemon.pipeline_built.wait())}, return_when="FIRST_COMPLETED")
    running = Running(daemon, transports, task, clock)
    try:
        yield running, registry
    finally:
        if not task.done():
            running.sink.release()
            daemon.request_stop()
            with contextlib.suppress(Exception):
                await task


async def revoked_mid_flight(running: Running) -> int:
    """Revoke partition 0 while batches of it are held at the sink; returns the offset committed for it."""
    await running.sink.holding.wait()
    revoking = asyncio.create_task(running.source.revoke([0]))
    running.sink.release()
    taken = await revoking
    assert running.source.assigned == [1]
    return taken[0]


def paused_reason(running: Running) -> str | None:
    return running.daemon.health.report()[1].get("partitions_assigned")


async def test_a_plan_that_fails_twice_is_retried_after_1_and_2_s_and_the_partition_resumes_exactly() -> None:
    """Two failed plans keep the partition paused (metric, /readyz reason) for 1 s, then 2 s of timer time;
    the third attempt plans it, and the signals equal an uninterrupted run's, each once."""
    settings = flow_settings()
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with daemon_with_metrics(settings, broker) as (running, registry):
        running.sink.hold()
        committed = await revoked_mid_flight(running)
        assert 0 < committed < len(broker.logs[0])

        broker.fail_plans(2)
        assigning = asyncio.create_task(running.source.assign([0]))
        await settled()
        assert broker.plan_failures == 1
        assert running.source.paused == [0]
        assert registry.get_sample_value(PAUSED) == 1
        assert paused_reason(running) == (
            "partitions [0] paused (their assignment is being planned, or they are draining)"
        )
        await running.clock.run_for(0.99)
        assert broker.plan_failures == 1
        await running.clock.run_for(0.02)
        assert broker.plan_failures == 0
        await running.clock.run_for(1.97)
        assert not assigning.done()
        assert broker.committed_offset(0) == committed
        await running.clock.run_for(0.04)
        await asyncio.wait_for(assigning, GUARD_S)

        assert running.source.paused == []
        assert registry.get_sample_value(PAUSED) == 0
        await all_committed(broker)
        assert paused_reason(running) is None
        await running.stopped()

    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    assert without_produce_time(published) == without_produce_time(await expected_signals(settings, table))


async def test_a_plan_that_never_succeeds_leaves_the_partition_paused_and_ends_the_run_with_the_transport_status() -> (
    None
):
    """Four failed plans (1 + 2 + 4 s apart): the partition stays paused and is shown so, nothing more of it is
    committed, /readyz names the failure, and the run ends with a TransportError (exit status 1) naming it."""
    settings = flow_settings()
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with daemon_with_metrics(settings, broker) as (running, registry):
        running.sink.hold()
        committed = await revoked_mid_flight(running)

        broker.fail_plans(4)
        assigning = asyncio.create_task(running.source.assign([0]))
        await settled()
        await running.clock.run_for(6.99)
        assert broker.plan_failures == 1
        assert not running.task.done()
        url = f"http://127.0.0.1:{running.daemon.http.port}/readyz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 503
            body = await response.json()
        assert body["checks"]["partitions_assigned"] is False
        assert body["reasons"]["partitions_assigned"].startswith("partitions [0] paused")
        assert registry.get_sample_value(PAUSED) == 1

        await running.clock.run_for(0.02)
        await asyncio.wait_for(assigning, GUARD_S)
        assert broker.plan_failures == 0
        assert registry.get_sample_value(PAUSED) == 1
        reason = paused_reason(running)
        assert reason is not None
        assert reason.startswith("could not plan assigned partitions [0] after 4 attempts")
        with pytest.raises(TransportError, match=r"could not plan assigned partitions \[0\] after 4 attempts") as ended:
            await asyncio.wait_for(running.task, GUARD_S)
    assert ended.value.exit_status == 1
    assert broker.committed_offset(0) == committed
