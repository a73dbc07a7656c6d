"""How the daemon plugs into the query API: each route's model served through the pipeline, the
routes, and the hook that records committed signals by route."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.api import ApiError
from daemon.clock import Clock
from daemon.core import build_core
from daemon.intervals import interval_ms
from daemon.monitoring import ModelMonitor
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import PublishBatch, Scorer, WindowOrigins
from daemon.route import Route
from daemon.settings import RouteSettings, Settings
from daemon.signal import Signal
from daemon.signal_store import SignalStore
from models.artifact import ModelOutputs


class PipelineModel:
    """A route's model as the API serves it: scored on the pipeline's inference thread, between batches."""

    def __init__(self, pipeline: Pipeline[Any], holder: ModelHolder[Any]) -> None:
        self._pipeline = pipeline
        self._holder = holder

    @property
    def current(self) -> Scorer:
        model: Scorer = self._holder.model
        return model

    async def score(
        self, windows: npt.NDArray[np.float32], origins: WindowOrigins | None = None
    ) -> tuple[Scorer, ModelOutputs]:
        async with self._pipeline.model_lock:
            model = self.current
            try:
                outputs = await self._pipeline.run_in_model_thread(functools.partial(model.score, windows, origins))
            except RuntimeError as exc:  # the inference thread is shut down: the daemon is stopping
                raise ApiError(503, "the daemon is stopping", None, "stopping") from exc
        return model, outputs


def daemon_routes(
    pipeline: Pipeline[Any], served: Sequence[tuple[RouteSettings, Settings, ModelMonitor]], clock: Clock
) -> list[Route]:
    """The daemon's routes, in match order: each route's settings, the daemon's settings as the route
    sees them, and its monitor, with its lane of the pipeline."""
    routes = []
    for lane, (route, view, monitor) in zip(pipeline.lanes, served, strict=True):
        # A scored window is one key's whole history: its core needs one window slot.
        one_window = view.model_copy(update={"windows": view.windows.model_copy(update={"max_windows": 1})})
        routes.append(
            Route(
                name=route.name,
                symbols=route.symbols,
                interval=lane.models.model.manifest.interval,
                model=PipelineModel(pipeline, lane.models),
                new_core=functools.partial(build_core, one_window, clock=clock, route=route.name),
                monitor=monitor,
                registry=None if route.model.artifact is not None else route.model.registry,
            )
        )
    return routes


def record_published(store: SignalStore, routes: Sequence[str]) -> Callable[[PublishBatch], None]:
    """A pipeline hook: each published and committed batch's signals go into the store, under the name
    of the route (by the pipeline's position) that made them."""
    length = functools.lru_cache(maxsize=64)(interval_ms)

    def record(batch: PublishBatch) -> None:
        by_route: dict[int, list[tuple[Signal, int, int]]] = {}
        for signal, request in batch.signals:
            by_route.setdefault(request.route, []).append((signal, request.ts, length(signal.interval)))
        for route, signals in by_route.items():
            store.record(routes[route], signals)

    return record
