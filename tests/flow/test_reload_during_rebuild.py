"""A reload that arrives while a partition's rebuild re-scores its history waits for the re-scoring to
end: a partition's history is scored by one model version, never split between two (on one partition,
so that the swap cannot land between two partitions' rebuilds, where it is exact too)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import torch

from daemon.memory_transport import MemoryBroker
from daemon.serving import ServedModel
from daemon.settings import ModelSettings, Settings
from daemon.signal import Signal
from tests.flow.harness import (
    WARM_CANDLES,
    FakeServedModel,
    all_committed,
    candle_table,
    feed,
    flow_settings,
    running_daemon,
    without_produce_time,
)

CANDLES = 100


class Candidate(FakeServedModel):
    """Version 0.0.2, telling when a reload compares it with the running model (just before it swaps)."""

    def __init__(self) -> None:
        super().__init__("0.0.2", 0.004)
        self.compared = asyncio.Event()

    @property
    def file_sha256(self) -> str:
        self.compared.set()
        return "fake 0.0.2"

    @file_sha256.setter
    def file_sha256(self, _value: str) -> None:
        pass


def loader(*models: ServedModel) -> Callable[[ModelSettings, torch.device], ServedModel]:
    """Loads these models in turn: the first at start, the next at each reload."""
    queue = list(models)

    def load(_settings: ModelSettings, _device: torch.device) -> ServedModel:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return load


def settings() -> Settings:
    """Two windows a forward pass, so a rebuild's history takes several passes."""
    return flow_settings(max_batch=2)


async def reference_after_reload() -> list[Signal]:
    """An uninterrupted run serving 0.0.1 for the first ``WARM_CANDLES`` candles of each symbol, reloaded
    to 0.0.2 at that point (no rebuild in progress): the signals it publishes after the reload."""
    table = candle_table(CANDLES)
    warmed = WARM_CANDLES * len(table.symbol_slices())
    broker = MemoryBroker(partitions=1)
    feed(broker, table, stop=warmed)
    load = loader(FakeServedModel("0.0.1", 0.0), FakeServedModel("0.0.2", 0.004))
    async with running_daemon(settings(), broker, loader=load) as running:
        await all_committed(broker)
        before = len(broker.signals)
        assert await running.daemon.reload(running.daemon.routes[0])
        feed(broker, table, start=warmed)
        await all_committed(broker)
        await running.stopped()
    return broker.signals[before:]


async def test_a_reload_during_a_rebuild_lands_after_the_history_is_rescored() -> None:
    """A daemon that committed with 0.0.2 is followed by one that starts on 0.0.1 and is reloaded to 0.0.2
    while it re-scores the rebuilt partitions' history. The swap waits until that history is scored (by
    0.0.1 alone), so the new daemon's signals equal those of an uninterrupted run reloaded at the point
    where it resumed; a swap in the middle of the history kept some of it, scored by 0.0.2, in the
    strategy's memory of some symbols and not of others."""
    table = candle_table(CANDLES)
    warmed = WARM_CANDLES * len(table.symbol_slices())
    broker = MemoryBroker(partitions=1)
    feed(broker, table, stop=warmed)
    async with running_daemon(settings(), broker, loader=loader(FakeServedModel("0.0.2", 0.004))) as first:
        await all_committed(broker)
        await first.stopped()
    before = len(broker.signals)

    candidate = Candidate()
    load = loader(FakeServedModel("0.0.1", 0.0), candidate)
    async with running_daemon(settings(), broker, hold=True, loader=load) as second:
        await second.sink.holding.wait()  # the history's first passes are scored; the rest wait behind the sink
        daemon = second.daemon
        reloading = asyncio.create_task(daemon.reload(daemon.routes[0]))
        await candidate.compared.wait()  # the next step swaps it in, when the pipeline lets it
        for _ in range(10):
            await asyncio.sleep(0)
        second.sink.release()
        assert await reloading
        feed(broker, table, start=warmed)
        await all_committed(broker)
        await second.stopped()

    resumed = broker.signals[before:]
    assert {s.model_version for s in resumed} == {"0.0.2"}
    assert without_produce_time(resumed) == without_produce_time(await reference_after_reload())
