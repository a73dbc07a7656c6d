"""A forward pass gets its windows' origins (``WindowOrigins``) only when the route scores through a step
path: a windowed scorer ignores them, so none are built for it, and a reload that changes the scoring
mode changes what the next pass gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from daemon.memory_transport import MemoryBroker
from daemon.ports import WindowOrigins
from daemon.settings import ModelSettings
from daemon.stepped_model import SteppedModel
from models.artifact import ModelOutputs
from tests.flow.harness import (
    FakeServedModel,
    all_committed,
    candle_table,
    feed,
    flow_settings,
    running_daemon,
    warmed_up_daemon,
)
from tests.flow.test_streaming_daemon import LONGER, stream_backtest, stream_settings


class OriginsSeen(FakeServedModel):
    """The fake windowed model, noting what each forward pass was given beside its windows."""

    def __init__(self) -> None:
        super().__init__("0.0.1", 0.0)
        self.origins: list[WindowOrigins | None] = []

    def score(self, windows: npt.NDArray[np.float32], origins: object = None) -> ModelOutputs:
        assert origins is None or isinstance(origins, WindowOrigins)
        self.origins.append(origins)
        return super().score(windows, origins)


async def test_a_windowed_route_builds_no_origins() -> None:
    """Every forward pass of a windowed route is called without origins, and its signals are published."""
    served: list[OriginsSeen] = []

    def load(settings: ModelSettings, device: torch.device) -> OriginsSeen:
        served.append(OriginsSeen())
        return served[-1]

    table = candle_table(70)
    broker = MemoryBroker(partitions=2)
    async with running_daemon(flow_settings(), broker, loader=load) as running:
        feed(broker, table)
        await all_committed(broker)
        await running.stopped()
    (model,) = served
    # The start's warm-up scores golden windows with keyless origins (``warm_up``); the pipeline's passes:
    passes = [origins for origins in model.origins if origins is None or origins.keys is not None]
    assert broker.signals and len(passes) >= len(broker.signals) / flow_settings().batching.max_batch
    assert all(origins is None for origins in passes)


async def test_a_reload_from_windowed_to_step_scoring_hands_the_step_path_its_origins(
    streaming_artifact: Path, second_streaming_artifact: Path
) -> None:
    """A route scoring windowed, reloaded into a streaming artifact with ``stream``, scores every batch
    after the swap through the step path: its signals equal the new model's stream backtest."""
    settings = stream_settings(streaming_artifact, "window")
    reloaded = stream_settings(second_streaming_artifact, "stream")
    table = candle_table(LONGER)
    broker = MemoryBroker(partitions=2)
    async with warmed_up_daemon(settings, broker, table) as (running, warmed):
        assert not isinstance(running.daemon.model, SteppedModel)
        await running.hold_with_rest_in_flight(table, warmed)
        running.daemon.settings = reloaded
        assert await running.daemon.reload(running.daemon.routes[0])
        assert isinstance(running.daemon.model, SteppedModel)
        running.sink.release()
        await all_committed(broker)
        await running.stopped()

    streamed = {(s.symbol, s.ts): s for s in await stream_backtest(reloaded, table)}
    after = [s for s in broker.signals if s.model_version == "0.0.2"]
    assert after, "signals were scored after the reload"
    for signal in after:
        want = streamed[(signal.symbol, signal.ts)]
        assert (signal.probabilities, signal.quantiles) == (want.probabilities, want.quantiles)
