"""How the daemon plugs into the query API: its model served through the pipeline, its one route,
the hook that records committed signals, and the stream's metrics."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from daemon.api import ApiError
from daemon.clock import Clock
from daemon.core import build_core
from daemon.intervals import interval_ms
from daemon.monitoring import ModelMonitor
from daemon.pipeline import Pipeline
from daemon.ports import PublishBatch, Scorer
from daemon.route import DEFAULT_ROUTE, Route
from daemon.settings import Settings
from daemon.signal_store import SignalStore
from models.artifact import ModelOutputs


class PipelineModel:
    """The daemon's model as a route serves it: scored on the pipeline's inference thread, between batches."""

    def __init__(self, pipeline: Pipeline[Any]) -> None:
        self._pipeline = pipeline

    @property
    def current(self) -> Scorer:
        model: Scorer = self._pipeline.models.model
        return model

    async def score(self, windows: npt.NDArray[np.float32]) -> tuple[Scorer, ModelOutputs]:
        async with self._pipeline.model_lock:
            model = self.current
            try:
                outputs = await self._pipeline.run_in_model_thread(functools.partial(model.score, windows))
            except RuntimeError as exc:  # the inference thread is shut down: the daemon is stopping
                raise ApiError(503, "the daemon is stopping", None, "stopping") from exc
        return model, outputs


def daemon_routes(settings: Settings, pipeline: Pipeline[Any], monitor: ModelMonitor, clock: Clock) -> list[Route]:
    """The daemon's one route today: every symbol of the served model's interval."""
    manifest = pipeline.models.model.manifest
    # A scored window is one key's whole history: its core needs one window slot.
    one_window = settings.model_copy(update={"windows": settings.windows.model_copy(update={"max_windows": 1})})
    return [
        Route(
            name=DEFAULT_ROUTE,
            symbols="*",
            interval=manifest.interval,
            model=PipelineModel(pipeline),
            new_core=lambda scorer: build_core(one_window, scorer, clock),
            monitor=monitor,
            registry=None if settings.model.artifact is not None else settings.model.registry,
        )
    ]


def record_published(store: SignalStore, route: str) -> Callable[[PublishBatch], None]:
    """A pipeline hook: each published and committed batch's signals go into the store."""
    length = functools.lru_cache(maxsize=64)(interval_ms)

    def record(batch: PublishBatch) -> None:
        if batch.signals:
            store.record(route, ((s, request.ts, length(s.interval)) for s, request in batch.signals))

    return record


class StreamCollector(Collector):
    """The stream's clients and the ones cut off for falling behind, read from the store at scrape time."""

    def __init__(self, store: SignalStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        clients = GaugeMetricFamily("candlecast_stream_clients", "Clients connected to the signal stream.")
        clients.add_metric([], self._store.clients)
        cut_off = CounterMetricFamily(
            "candlecast_stream_clients_cut_off", "Stream clients disconnected for falling behind their buffer."
        )
        cut_off.add_metric([], self._store.disconnected)
        return [clients, cut_off]
