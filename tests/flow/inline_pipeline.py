"""The real pipeline on in-memory transports with a fake timer and the model run inline. Nothing here loads
torch, so a test built on it (the memory soak) measures the daemon's resident memory, not torch's."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline, ScorerT
from daemon.settings import Settings
from daemon.timer import FakeTimer

CLOCK_START = 4_000_000_000.0
"""Year 2096: after every bundled candle, so none opens after the daemon's (fake) clock."""


T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each submitted call at once, in the caller's thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the awaiting task, as a thread pool would
            future.set_exception(exc)
        return future


def memory_pipeline(
    settings: Settings,
    scorer: ScorerT,
    broker: MemoryBroker,
    *,
    max_records: int,
    max_batch: int,
    queue_size: int,
    queue_bytes: int = 256 << 20,
) -> tuple[Pipeline[ScorerT], MemoryCandleSource]:
    """The real pipeline of ``settings`` on ``broker``'s in-memory transports, ``scorer`` run inline, a fake
    timer, and polls of at most ``max_records``; with its source (started by the caller)."""
    clock = FakeTimer(CLOCK_START)
    core = build_core(settings, scorer, clock)
    source = MemoryCandleSource(broker, max_records=max_records)
    pipeline = Pipeline(
        source=source,
        sink=MemorySignalSink(broker),
        ingestor=core.ingestor,
        builder=core.builder,
        models=ModelHolder(scorer),
        policy=BatchPolicy(max_batch=max_batch),
        metrics=DaemonMetrics(CollectorRegistry()),
        clock=clock,
        executor=InlineExecutor(),
        queue_size=queue_size,
        queue_bytes=queue_bytes,
    )
    return pipeline, source
