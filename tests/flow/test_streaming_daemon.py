"""The daemon serving a streaming artifact through its step path (``model.scoring = "stream"``): its
signals equal the windowed reference, the backtest's, and an uninterrupted run's after a restart, a
rebalance or a reload, bit for bit; an artifact without a step path is refused naming the setting.

The real daemon on in-memory transports and a fake timer, a tiny real streaming artifact
(``tests.support.model.build_streaming_test_model``: windows of 24 daily candles, span 16), the
bundled daily stocks (weekdays calendar, tolerated gaps: windows whose candle slots are not contiguous).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from candlecast.candlefile import CandleTable
from candlecast.errors import ConfigError
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import format_ts
from daemon.core import build_core
from daemon.engine import ScoreRequest
from daemon.memory_transport import MemoryBroker
from daemon.recurrent_state import reader_copies, restart_slots
from daemon.serving import load_serving_model, served_scoring
from daemon.settings import Settings
from daemon.signal import Signal
from daemon.stepped_model import SteppedModel
from tests.flow.harness import (
    all_committed,
    candle_table,
    feed,
    flow_settings,
    running_daemon,
    warmed_up_daemon,
    without_produce_time,
)
from tests.support.model import STREAM_SPAN

CANDLES = 60
"""Candles per symbol: 37 signals each past the 24-candle windows, more than two spans of steps."""
LONGER = 90
"""Candles per symbol of the tests that put work in flight after the harness's ``WARM_CANDLES`` (70)."""


def stream_settings(artifact: Path, scoring: str = "stream", *, max_batch: int = 8) -> Settings:
    settings = flow_settings(artifact, max_batch=max_batch)
    return settings.model_copy(update={"model": settings.model.model_copy(update={"scoring": scoring})})


async def stream_backtest(settings: Settings, table: CandleTable, max_batch: int = 3) -> list[Signal]:
    """The backtest of the table in the settings' scoring mode, in batches of another size than the daemon's."""
    model = served_scoring(
        load_serving_model(settings.model, torch.device("cpu")),
        settings.model.scoring,
        settings.windows.max_windows,
    )
    assert isinstance(model, SteppedModel)
    core = build_core(settings, model)
    records = candle_records(table.messages("1d"))
    return await backtest(records, core.ingestor, core.builder, model, BatchPolicy(max_batch))


def requests_of(settings: Settings, table: CandleTable) -> list[ScoreRequest]:
    """Every window the daemon scores for the table, as its core makes them."""
    model = load_serving_model(settings.model, torch.device("cpu"))
    core = build_core(settings, model)
    made = [core.ingestor.ingest(record) for record in candle_records(table.messages("1d"))]
    return [request for request in made if isinstance(request, ScoreRequest)]


def windowed_reference(settings: Settings, table: CandleTable) -> dict[tuple[str, str], np.ndarray]:
    """Per (symbol, candle time), the streaming members' windowed reference: the LSTM run from zero over
    the candles since the reading copy's restart (``models.streaming``), not stepped."""
    model = load_serving_model(settings.model, torch.device("cpu"))
    streaming = model.manifest.streaming
    assert streaming is not None
    expected = {}
    for request in requests_of(settings, table):
        restarts = restart_slots(request.slots[-1:], streaming.span)
        start = int(restarts[0, reader_copies(restarts)[0]])
        history = int(np.count_nonzero(request.slots >= start))
        with torch.inference_mode():
            outputs = model.module.reference(torch.from_numpy(request.window[None]), history)
        expected[(request.key[0], format_ts(request.ts))] = outputs[0][0].numpy()
    return expected


def assert_exactly(published: list[Signal], expected: list[Signal]) -> None:
    assert len({s.signal_id for s in published}) == len(published)
    assert without_produce_time(published) == without_produce_time(expected)


async def test_a_stream_daemon_publishes_the_windowed_reference_and_the_backtests_signals(
    streaming_artifact: Path,
) -> None:
    """With ``model.scoring = "stream"`` every candle's signal carries the probabilities of the windowed
    reference within 1e-5, though the daemon stepped them one candle at a time from carried state, and
    equals, bit for bit, the signal of a backtest in the same mode batched otherwise."""
    settings = stream_settings(streaming_artifact)
    table = candle_table(CANDLES)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        model = running.daemon.model
        assert isinstance(model, SteppedModel)
        steps = running.daemon.routes[0].steps
        [info] = [
            s.labels for f in running.daemon.registry.collect() if f.name == "candlecast_model" for s in f.samples
        ]
        await running.stopped()

    published = broker.signals
    reference = windowed_reference(settings, table)
    assert len(published) == len(reference) > 6 * (CANDLES - 24)
    worst = 0.0
    for signal in published:
        got = np.asarray([signal.probabilities[str(h)] for h in (1, 5, 20)])
        worst = max(worst, float(np.max(np.abs(got - reference[(signal.symbol, signal.ts)]))))
    assert worst < 1e-5
    assert_exactly(published, await stream_backtest(settings, table))
    assert steps.carried > steps.rebuilt > 0, "steady service goes on from cached states"
    assert info["scoring"] == "stream"


async def test_the_same_candles_scored_windowed_differ_from_the_step_path(streaming_artifact: Path) -> None:
    """The control of the test above: ``scoring = "window"`` reads the longest history the window holds,
    so its probabilities differ from the step path's (the stream test could tell the two apart)."""
    table = candle_table(CANDLES)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(stream_settings(streaming_artifact, "window"), broker) as running:
        await all_committed(broker)
        assert not isinstance(running.daemon.model, SteppedModel)
        await running.stopped()
    stepped = {
        (s.symbol, s.ts): s.probabilities for s in await stream_backtest(stream_settings(streaming_artifact), table)
    }
    differ = sum(s.probabilities != stepped[(s.symbol, s.ts)] for s in broker.signals)
    assert differ > len(broker.signals) // 2


async def test_auto_scores_a_streaming_artifact_through_its_step_path(streaming_artifact: Path) -> None:
    """``scoring = "auto"`` (the default) serves an artifact whose manifest streams through its step path."""
    table = candle_table(40)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    settings = stream_settings(streaming_artifact, "auto")
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        assert isinstance(running.daemon.model, SteppedModel)
        await running.stopped()
    assert_exactly(broker.signals, await stream_backtest(settings, table))


async def test_a_restart_mid_stream_publishes_what_an_uninterrupted_stream_run_does(streaming_artifact: Path) -> None:
    """A daemon stopped with batches in flight and started again (its states gone) rebuilds each key's
    state from its window: every signal after the restart equals an uninterrupted step-path run's bit
    for bit, and each is published exactly once."""
    settings = stream_settings(streaming_artifact)
    table = candle_table(LONGER)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.request_stop()
        running.sink.release()
        await running.task
    stopped_with = len(broker.signals)
    assert stopped_with < 6 * (LONGER - 23)

    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        rebuilt = running.daemon.routes[0].steps.rebuilt
        await running.stopped()
    assert stopped_with < len(broker.signals)
    assert rebuilt > 0
    assert_exactly(broker.signals, await stream_backtest(settings, table))


async def test_a_revoked_and_reassigned_partition_resumes_the_stream_exactly(streaming_artifact: Path) -> None:
    """A partition revoked mid-stream and assigned back (its windows dropped and rebuilt into other store
    slots, the states of those slots belonging to other keys) publishes what an uninterrupted
    step-path run does, exactly once."""
    settings = stream_settings(streaming_artifact)
    table = candle_table(CANDLES)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    async with running_daemon(settings, broker, hold=True) as running:
        await running.sink.holding.wait()
        store = running.daemon.routes[0].core.store
        before = {store.key_of(slot): slot for slot in store.slots_in(0).tolist()}
        revoking = asyncio.create_task(running.source.revoke([0]))
        running.sink.release()
        taken = await revoking
        assert 0 < taken[0] < len(broker.logs[0])
        await running.source.assign([0])
        await all_committed(broker)
        after = {store.key_of(slot): slot for slot in store.slots_in(0).tolist()}
        await running.stopped()
    assert any(after[key] != slot for key, slot in before.items()), "a key's state row now held another's"
    assert_exactly(broker.signals, await stream_backtest(settings, table))


async def test_a_reload_mid_stream_switches_versions_at_one_batch_and_starts_with_new_states(
    streaming_artifact: Path, second_streaming_artifact: Path
) -> None:
    """A reload swaps the streaming model between two batches: every signal published before carries the
    old version and its step path's outputs, every one after the new version and the new model's step
    path from states of its own (none carried over from the old weights), bit for bit."""
    settings = stream_settings(streaming_artifact)
    reloaded = settings.model_copy(
        update={"model": settings.model.model_copy(update={"artifact": second_streaming_artifact})}
    )
    table = candle_table(LONGER)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        old = running.daemon.model
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.settings = reloaded
        assert await running.daemon.reload(running.daemon.routes[0])
        new = running.daemon.model
        running.sink.release()
        await all_committed(broker)
        await running.stopped()

    assert isinstance(old, SteppedModel) and isinstance(new, SteppedModel)
    assert new.version == "0.0.2" and new.states is not old.states
    published = broker.signals
    versions = [s.model_version for s in published]
    assert versions == sorted(versions) and set(versions) == {"0.0.1", "0.0.2"}, "one switch, never back"
    by_version = {
        "0.0.1": {(s.symbol, s.ts): s for s in await stream_backtest(settings, table)},
        "0.0.2": {(s.symbol, s.ts): s for s in await stream_backtest(reloaded, table)},
    }
    for signal in published:
        want = by_version[signal.model_version][(signal.symbol, signal.ts)]
        assert (signal.probabilities, signal.quantiles) == (want.probabilities, want.quantiles)


async def test_stream_scoring_refuses_an_artifact_without_a_step_path(test_artifact: Path) -> None:
    """``scoring = "stream"`` with a windowed-only artifact stops the start, naming the setting."""
    broker = MemoryBroker(partitions=2)
    with pytest.raises(ConfigError, match=r"model\.scoring.*no step path"):
        async with running_daemon(stream_settings(test_artifact), broker):
            pass


async def test_a_reload_into_stream_scoring_without_a_step_path_is_refused_and_the_model_stays(
    test_artifact: Path,
) -> None:
    """A reload whose settings ask ``stream`` of a windowed-only artifact is refused, counted as such, and
    the running model keeps scoring; the same reload with ``auto`` goes through (the control)."""
    table = candle_table(40)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    settings = stream_settings(test_artifact, "auto")
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        daemon = running.daemon
        running_model = daemon.model
        daemon.settings = stream_settings(test_artifact, "stream")
        assert not await daemon.reload(daemon.routes[0])
        assert daemon.model is running_model
        refused = daemon.registry.get_sample_value(
            "candlecast_model_reloads_total", {"route": "default", "outcome": "refused"}
        )
        assert refused == 1
        daemon.settings = settings
        assert await daemon.reload(daemon.routes[0])
        await running.stopped()


async def test_state_metrics_show_memory_and_rebuild_work_per_route(streaming_artifact: Path) -> None:
    """The route's state memory is a gauge, and its steps are counted by whether they went on from a
    cached state or were rebuilt: a restart shows as rebuilt steps."""
    table = candle_table(40)
    broker = MemoryBroker(partitions=2)
    feed(broker, table)
    settings = stream_settings(streaming_artifact)
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        registry = running.daemon.registry
        model = running.daemon.model
        assert isinstance(model, SteppedModel)
        assert registry.get_sample_value("candlecast_state_bytes", {"route": "default"}) == model.state_bytes > 0
        carried = registry.get_sample_value("candlecast_state_steps_total", {"route": "default", "kind": "carried"})
        rebuilt = registry.get_sample_value("candlecast_state_steps_total", {"route": "default", "kind": "rebuilt"})
        await running.stopped()
    assert carried is not None and rebuilt is not None
    assert carried > rebuilt > 0
    # One carried step per copy and candle scored after the first, at most.
    assert carried <= 2 * len(broker.signals)
    assert rebuilt > STREAM_SPAN // 2
