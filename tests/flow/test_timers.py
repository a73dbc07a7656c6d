"""The daemon's timed behaviour on a fake timer: liveness, the batcher's wait, watchdog keep-alives,
readiness with its reasons and the shutdown deadline. Time moves only when a test advances it; nothing
here reads the wall clock."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import torch
from prometheus_client import CollectorRegistry

from candlecast.errors import ShutdownDeadlineError
from daemon.batching import BatchPolicy
from daemon.http import Health
from daemon.memory_transport import MemoryBroker
from daemon.service import PROBE_EVERY_S
from daemon.serving import ServedModel
from daemon.settings import ModelSettings, ShutdownSettings
from daemon.systemd import SystemdNotifier
from daemon.timer import FakeTimer, settled
from models.registry import Registry
from tests.flow.harness import (
    CLOCK_START,
    FakeServedModel,
    all_committed,
    candle_table,
    feed,
    flow_settings,
    running_daemon,
    warmed_up_daemon,
)
from tests.flow.test_pipeline import feed_hours, pipeline_on
from tests.support.scorer import FakeScorer

GUARD_S = 30
"""Only keeps a failing test from hanging; a passing run ends as soon as the timer passes the deadline."""


async def test_health_stalls_after_stall_after_s_without_a_heartbeat() -> None:
    """Liveness holds while the heartbeat task ticks on the timer, and fails once ``stall_after_s`` of
    timer time pass without a tick."""
    clock = FakeTimer(CLOCK_START)
    health = Health(CollectorRegistry(), clock=clock, tick_s=0.25, stall_after_s=2.0)
    beating = asyncio.create_task(health.heartbeat())
    await clock.sleeping()
    await clock.run_for(10.0)
    assert health.alive()
    assert health.since_heartbeat() < health.tick_s

    beating.cancel()
    await settled()
    clock.advance(1.99 - health.since_heartbeat())
    assert health.alive()
    clock.advance(0.01)
    assert not health.alive()


async def test_the_batcher_flushes_a_partial_batch_when_max_wait_passes() -> None:
    """With ``max_wait_s``, fewer requests than ``max_batch`` wait for the timer: no forward pass until
    ``max_wait_s`` of timer time has passed, then one pass with all of them."""
    broker = MemoryBroker()
    feed_hours(broker, symbols=3, hours=6)
    clock = FakeTimer(CLOCK_START)
    scorer = FakeScorer()
    pipeline, source, _sink = pipeline_on(broker, scorer, BatchPolicy(max_batch=100, max_wait_s=0.5), clock=clock)
    await source.start()
    run = asyncio.create_task(pipeline.run())
    await clock.sleeping()
    await settled()
    assert scorer.batches == []
    clock.advance(0.49)
    await settled()
    assert scorer.batches == []

    clock.advance(0.01)
    await broker.wait_committed(0, len(broker.logs[0]))
    assert scorer.batches == [3 * (6 - 3)]
    pipeline.stop()
    await run


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, with a 4 s watchdog (keep-alives every 2 s)."""
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = str(Path(folder) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            server.setblocking(False)
            yield server, path


def received(server: socket.socket) -> list[str]:
    datagrams = []
    while True:
        try:
            datagrams.append(server.recv(4096).decode())
        except BlockingIOError:
            return datagrams


async def test_watchdog_keep_alives_follow_the_timer(notify_socket: tuple[socket.socket, str]) -> None:
    """Once ready the daemon sends a keep-alive every half watchdog timeout of timer time, and none
    while the timer stands still."""
    server, path = notify_socket
    broker = MemoryBroker(partitions=2)
    feed(broker, candle_table())
    async with running_daemon(flow_settings(), broker, notifier=SystemdNotifier(path)) as running:
        await running.daemon.became_ready.wait()
        await settled()
        first = received(server)
        assert any(d.startswith("READY=1") for d in first)
        assert first.count("WATCHDOG=1") == 1

        await settled(200)
        assert received(server) == []
        await running.clock.run_for(10.0)
        assert received(server).count("WATCHDOG=1") == 5
        await running.stopped()


async def test_readiness_names_a_missing_candle_topic_until_it_exists() -> None:
    """With its candle topic missing the daemon is not ready and /readyz says which topic; once the
    topic is created the next broker probe (timer time) joins it and the daemon becomes ready."""
    broker = MemoryBroker(partitions=2, created=False)
    async with running_daemon(flow_settings(), broker) as running:
        daemon = running.daemon
        await running.clock.sleeping(3)
        await running.clock.run_for(5.0)
        url = f"http://127.0.0.1:{daemon.http.port}/readyz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 503
            body = await response.json()
        assert body["checks"]["candle_topic"] is False
        assert body["reasons"] == {"candle_topic": "topic 'candles' does not exist"}
        assert not daemon.became_ready.is_set()

        broker.create_topic()
        await running.clock.run_for(PROBE_EVERY_S)
        assert daemon.became_ready.is_set()
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            body = await response.json()
        assert "reasons" not in body
        assert all(body["checks"].values())
        await running.stopped()


async def test_a_stop_that_cannot_drain_is_abandoned_when_the_deadline_passes_on_the_timer() -> None:
    """With the sink stuck, a stop keeps the run waiting for the whole ``shutdown.deadline_s`` of timer
    time (ten minutes, never waited for in real time), and ends it with ShutdownDeadlineError once that passes."""
    settings = flow_settings().model_copy(update={"shutdown": ShutdownSettings(deadline_s=600.0)})
    table = candle_table(100)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.request_stop()
        await settled()
        await running.clock.run_for(599.9)
        assert not running.task.done()

        await running.clock.run_for(0.1)
        with pytest.raises(ShutdownDeadlineError, match=r"shutdown\.deadline_s \(600 s\)"):
            await asyncio.wait_for(running.task, GUARD_S)


async def test_a_new_current_version_in_the_registry_is_served_after_one_poll_interval(tmp_path: Path) -> None:
    """The reload loop looks at the registry's ``current`` pointer every ``reload_poll_s`` of timer time:
    a version promoted just after a look is not loaded before the next one, and is served from then on."""
    (tmp_path / "current").write_text("fake/0.0.1\n")

    def load_current(settings: ModelSettings, _device: torch.device) -> ServedModel:
        ref = Registry(settings.registry).current_ref()
        assert ref is not None
        return FakeServedModel(ref.partition("/")[2], bias=0.0)

    settings = flow_settings()
    model = settings.model.model_copy(update={"artifact": None, "registry": tmp_path, "reload_poll_s": 5.0})
    settings = settings.model_copy(update={"model": model})
    broker = MemoryBroker(partitions=2)
    async with running_daemon(settings, broker, loader=load_current) as running:
        daemon = running.daemon
        await running.clock.sleeping(4)
        (tmp_path / "current").write_text("fake/0.0.2\n")
        await running.clock.run_for(4.9)
        assert daemon.model is not None
        assert daemon.model.version == "0.0.1"

        await running.clock.run_for(0.1)
        await running.clock.sleeping(4)  # the reload loop waits again: the load (on a worker thread) is done
        assert daemon.model.version == "0.0.2"
        assert (
            daemon.registry.get_sample_value(
                "candlecast_model_reloads_total", {"route": "default", "outcome": "loaded"}
            )
            == 1
        )
        await running.stopped()


async def test_connecting_retries_with_a_doubling_back_off_on_the_timer() -> None:
    """While the broker is down the daemon retries after 0.5 s of timer time, doubling up to 10 s, and
    connects and serves at the first retry after the broker is back."""
    table = candle_table()
    broker = MemoryBroker(partitions=2)
    broker.up = False
    feed(broker, table)
    async with running_daemon(flow_settings(), broker) as running:
        clock = running.clock
        waits = []
        for _ in range(7):
            await clock.sleeping()
            [deadline] = clock.deadlines
            waits.append(deadline - clock.monotonic())
            await clock.run_for(waits[-1])
        assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        assert broker.transactions == []

        broker.up = True
        await clock.sleeping()
        await clock.run_for(clock.deadlines[0] - clock.monotonic())
        await all_committed(broker)
        await running.stopped()
    assert broker.signals
