"""The daemon under test: run in this process as ``candlecast run`` builds it, with a recorder on
its pipeline, on fresh topics of the bench's broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from rich.console import Console

from candlecast.bench.load import Generator, Workload, create_topics, prefill
from candlecast.bench.options import BenchOptions, Delivery, Scoring
from candlecast.bench.report import DaemonMemory, ModelCeiling
from candlecast.bench.stage_split import CandleStamps
from daemon.intervals import Interval
from daemon.settings import BatchingSettings, HttpSettings, KafkaSettings, ModelSettings, Settings

if TYPE_CHECKING:
    from daemon.engine import ScoreRequest
    from daemon.pipeline import Stage
    from daemon.ports import PublishBatch
    from daemon.service import Daemon
    from models.torchscript import LoadedModel


WINDOWS_GAUGE = "candlecast_windows_live"
WINDOW_BYTES_GAUGE = "candlecast_window_bytes"
STATE_BYTES_GAUGE = "candlecast_state_bytes"


class CountWait:
    """A growing count that a coroutine can wait on until it reaches a number; its owner calls
    ``grew`` after each growth."""

    def __init__(self, counted: Callable[[], int], what: str) -> None:
        self._counted = counted
        self._what = what
        self._wanted = 0
        self._reached = asyncio.Event()

    def grew(self) -> None:
        if self._counted() >= self._wanted:
            self._reached.set()

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Until the count reaches ``count``; a ``TimeoutError`` saying how far it got after ``timeout_s``."""
        self._wanted = count
        self._reached.clear()
        if self._counted() >= count:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._reached.wait()
        except TimeoutError:
            raise TimeoutError(f"{self._counted()} of {count} {self._what} after {timeout_s:.0f} s") from None


class Recorder:
    """A published-batch hook: each signal's candle record time and its acknowledgement time."""

    def __init__(self) -> None:
        self.candle_ms: list[int] = []
        self.taken_ms: list[float] = []
        """When the daemon took each candle's record off the source (wall clock)."""
        self.acked_ms: list[float] = []
        self.forward_ms: list[tuple[float, float]] = []
        """When each candle's forward pass began and ended (wall clock; NaN if no stage hook saw it)."""
        self.publish_began_ms: list[float] = []
        self._wall_minus_monotonic_ms = time.time() * 1000.0 - time.monotonic_ns() / 1e6
        self._forwarded: dict[int, tuple[float, float]] = {}
        """Forward stamps of requests not yet published, by the request's id (alive until it is published)."""
        self._publish_began = float("nan")
        self._acked = CountWait(self.__len__, "signals")

    def stage(self, stage: Stage, requests: Sequence[ScoreRequest], began: float, ended: float) -> None:
        """A pipeline stage hook: stamps each request's forward pass, and the publish the next batch is."""
        shift = self._wall_minus_monotonic_ms
        if stage == "forward":
            stamps = (began * 1000.0 + shift, ended * 1000.0 + shift)
            for request in requests:
                self._forwarded[id(request)] = stamps
        else:
            self._publish_began = began * 1000.0 + shift

    def __call__(self, batch: PublishBatch) -> None:
        acked = time.time() * 1000.0
        self.candle_ms.extend(request.timestamp_ms for _, request in batch.signals)
        shift = self._wall_minus_monotonic_ms
        self.taken_ms.extend(request.received_ns / 1e6 + shift for _, request in batch.signals)
        unseen = (float("nan"), float("nan"))
        self.forward_ms.extend(self._forwarded.pop(id(request), unseen) for _, request in batch.signals)
        self.publish_began_ms.extend([self._publish_began] * len(batch.signals))
        self._publish_began = float("nan")
        self.acked_ms.extend([acked] * len(batch.signals))
        self._acked.grew()

    def stamps(self, start: int) -> CandleStamps | None:
        """The stage stamps of the signals since ``start``; ``None`` if there are none or some went unstamped."""
        forward = np.asarray(self.forward_ms[start:], dtype=np.float64).reshape(-1, 2)
        stamps = CandleStamps(
            candle=np.asarray(self.candle_ms[start:], dtype=np.float64),
            taken=np.asarray(self.taken_ms[start:], dtype=np.float64),
            forward_began=forward[:, 0],
            forward_ended=forward[:, 1],
            publish_began=np.asarray(self.publish_began_ms[start:], dtype=np.float64),
            acked=np.asarray(self.acked_ms[start:], dtype=np.float64),
        )
        if stamps.candle.size == 0 or np.isnan(forward).any() or np.isnan(stamps.publish_began).any():
            return None
        return stamps

    def __len__(self) -> int:
        return len(self.acked_ms)

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Until ``count`` signals in all were acknowledged."""
        await self._acked.wait_for(count, timeout_s)

    def latencies(self, start: int, stop: int | None = None) -> npt.NDArray[np.float64]:
        acked = np.asarray(self.acked_ms[start:stop], dtype=np.float64)
        return acked - np.asarray(self.candle_ms[start:stop], dtype=np.float64)

    def consume_latencies(self, start: int) -> npt.NDArray[np.float64]:
        """Candle record timestamp to the daemon taking the record off the source."""
        taken = np.asarray(self.taken_ms[start:], dtype=np.float64)
        return taken - np.asarray(self.candle_ms[start:], dtype=np.float64)

    def daemon_latencies(self, start: int) -> npt.NDArray[np.float64]:
        """The daemon taking the record off the source to the signal acknowledged: the daemon's own share."""
        taken = np.asarray(self.taken_ms[start:], dtype=np.float64)
        return np.asarray(self.acked_ms[start:], dtype=np.float64) - taken

    def throughput_after_first_round(self, start: int) -> float:
        """Signals per second after ``start``, from the last acknowledgement of a candle of the backlog's
        first scored round (the oldest candle time: every symbol's first signal, which a streaming
        daemon scores by rebuilding its state) to the last acknowledgement, counting what came between."""
        acked = np.asarray(self.acked_ms[start:], dtype=np.float64)
        candles = np.asarray(self.candle_ms[start:], dtype=np.int64)
        return _rate_after(acked, acked[candles == candles.min()].max())

    def throughput(self, start: int) -> float:
        """Signals per second from the first acknowledged batch after ``start`` to the last."""
        acked = np.asarray(self.acked_ms[start:], dtype=np.float64)
        return _rate_after(acked, acked[0])


def _rate_after(acked: npt.NDArray[np.float64], first: float) -> float:
    """Signals per second of the acknowledgements later than ``first``, from ``first`` to the last of them."""
    later = acked[acked > first]
    if later.size == 0:
        return float("nan")
    return float(later.size / ((later[-1] - first) / 1000.0))


@dataclass
class Served:
    daemon: Daemon
    recorder: Recorder

    def totals(self, histogram: str = "candlecast_batch_size") -> tuple[float, float]:
        """Sum and count of one of the daemon's histograms so far, over every route (by default: rows and
        forward passes)."""
        samples = [s for metric in self.daemon.registry.collect() if metric.name == histogram for s in metric.samples]
        return (
            sum(s.value for s in samples if s.name == f"{histogram}_sum"),
            sum(s.value for s in samples if s.name == f"{histogram}_count"),
        )

    def gauge(self, name: str) -> float | None:
        """One of the daemon's gauges, summed over its labels; ``None`` when the daemon has no such gauge."""
        samples = [s.value for metric in self.daemon.registry.collect() if metric.name == name for s in metric.samples]
        return sum(samples) if samples else None

    def memory(self) -> DaemonMemory:
        """What the daemon's gauges say it holds now for its windows and recurrent states."""
        return DaemonMemory(
            windows=int(self.gauge(WINDOWS_GAUGE) or 0),
            window_bytes=int(self.gauge(WINDOW_BYTES_GAUGE) or 0),
            state_bytes=None if (states := self.gauge(STATE_BYTES_GAUGE)) is None else int(states),
        )

    def mean_since(self, mark: tuple[float, float], histogram: str = "candlecast_batch_size") -> float:
        total, count = self.totals(histogram)
        return (total - mark[0]) / max(1.0, count - mark[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings, *hooks: Callable[[PublishBatch], None]) -> AsyncIterator[Served]:
    """The daemon, built and run as ``candlecast run`` does, with a recorder (and ``hooks``) on its pipeline."""
    from daemon.service import Daemon

    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    recorder = Recorder()
    try:
        await _first_of(daemon.pipeline_built, task)
        if daemon.pipeline is not None:
            daemon.pipeline.add_stage_hook(recorder.stage)
            daemon.pipeline.add_published_hook(recorder)
            for hook in hooks:
                daemon.pipeline.add_published_hook(hook)
        await _first_of(daemon.became_ready, task)
        if task.done():
            await task
            raise RuntimeError("the daemon stopped before it was ready")
        yield Served(daemon, recorder)
    finally:
        daemon.request_stop()
        async with asyncio.timeout(300):
            await task


async def _first_of(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Until ``event`` is set or ``task`` ends, whichever comes first."""
    waiting = asyncio.create_task(event.wait())
    await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()


@dataclass(frozen=True)
class ServedArtifact:
    """What a daemon run serves and how: an artifact, its scoring, and the model ceiling of that scoring
    (windows or candles per second at the bench's batch), the lower bound of a candle close."""

    scoring: Scoring
    path: Path
    name: str
    ceiling_per_s: float


@dataclass
class Bench:
    """What every phase needs: the broker, the model and the options."""

    bootstrap: str
    options: BenchOptions
    model_path: Path
    model: LoadedModel
    ceiling: ModelCeiling
    console: Console

    def windowed(self) -> ServedArtifact:
        """The bench's model, scored window by window."""
        manifest = self.model.manifest
        return ServedArtifact(
            "window", self.model_path, f"{manifest.name}/{manifest.version}", self.ceiling.windows_per_s
        )

    def settings(
        self,
        *,
        candles: str,
        signals: str,
        group: str,
        delivery: Delivery,
        max_batch: int,
        routes: Sequence[dict[str, Any]] = (),
        served: ServedArtifact | None = None,
        max_wait_ms: float | None = None,
    ) -> Settings:
        """The daemon's settings on these topics: the bench's model windowed unless ``served`` says otherwise."""
        options = self.options
        served = served or self.windowed()
        buffer = options.stream_client_buffer
        stream_buffer: dict[str, Any] = {} if buffer is None else {"api": {"client_buffer": buffer}}
        return Settings(
            kafka=KafkaSettings(
                bootstrap_servers=self.bootstrap,
                candles_topic=candles,
                signals_topic=signals,
                dead_letter_topic=f"{signals}.dlq",
                group_id=group,
                instance_id=group,
                delivery=delivery,
                **options.producer,
            ),
            model=ModelSettings(
                artifact=served.path, threads=options.threads, device=options.device, scoring=served.scoring
            ),
            batching=BatchingSettings(
                max_batch=max_batch, max_wait_ms=options.max_wait_ms if max_wait_ms is None else max_wait_ms
            ),
            http=HttpSettings(port=0),
            routes=list(routes),
            **stream_buffer,
        )

    async def topics(self, name: str, partitions: int) -> tuple[str, str]:
        """A fresh candle topic and its signal topic (with its dead-letter topic)."""
        suffix = uuid.uuid4().hex[:6]
        candles, signals = f"bench-{name}-candles-{suffix}", f"bench-{name}-signals-{suffix}"
        await create_topics(self.bootstrap, {candles: partitions, signals: partitions, f"{signals}.dlq": 1})
        return candles, signals

    def workload(self, prefix: str, symbols: int, model: LoadedModel | None = None, suffix: str = "") -> Workload:
        """Candles of ``model``'s interval (by default the bench's model)."""
        manifest = (model or self.model).manifest
        interval = Interval.parse(manifest.interval, manifest.calendar)
        return Workload(prefix, symbols, interval, self.options.partitions, self.options.seed, suffix)

    def timeout(self, signals: int, per_s: float | None = None) -> float:
        """Seconds to wait for ``signals`` at ``per_s`` (by default a quarter of the model's ceiling), generously."""
        if per_s is None:
            per_s = self.ceiling.windows_per_s / 4
        return 120.0 + 3.0 * signals / max(per_s, 1.0)


@contextlib.asynccontextmanager
async def local_bench(prefix: str, options: BenchOptions, console: Console) -> AsyncIterator[tuple[Bench, Path]]:
    """A bench of the bundled model on a throwaway local Kafka broker, and its scratch directory."""
    from candlecast.bench.ceilings import model_ceiling
    from candlecast.bench.run import resolve_model
    from candlecast.localkafka import LocalKafka
    from daemon.serving import configure_threads, warm_up
    from models.torchscript import load_artifact

    with tempfile.TemporaryDirectory(prefix=prefix) as scratch_dir:
        scratch = Path(scratch_dir)
        model_path, _ = resolve_model(None)
        threads = configure_threads(options.threads)
        loaded = load_artifact(model_path)
        warm_up(loaded, options.batch)
        ceiling = model_ceiling(loaded, options.batch, 1.0, threads)
        configure_threads(options.threads)
        console.print("starting a local Kafka broker ...")
        kafka = await asyncio.to_thread(LocalKafka(scratch / "kafka", heap="1g").start)
        try:
            yield Bench(kafka.bootstrap_servers, options, model_path, loaded, ceiling, console), scratch
        finally:
            await asyncio.to_thread(kafka.stop)


@contextlib.asynccontextmanager
async def primed_serving(
    bench: Bench, prefix: str, name: str, delivery: Delivery
) -> AsyncIterator[tuple[Workload, Generator, Served]]:
    """A daemon on fresh topics ``name`` whose every symbol already holds a full window, and a generator of
    ``prefix`` candles for it; the caller waits for the daemon's first signals."""
    options = bench.options
    workload = bench.workload(prefix, options.symbols)
    candles, signals = await bench.topics(name, options.partitions)
    await prefill(bench.bootstrap, candles, workload.rounds(bench.model.manifest.window))
    settings = bench.settings(
        candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch
    )
    async with Generator(bench.bootstrap, candles) as gen, serving(settings) as served:
        yield workload, gen, served


class ProduceRetries(logging.Filter):
    """Counts, instead of printing, produce requests the broker refused with NOT_ENOUGH_REPLICAS.

    On a single broker that is a transaction's first produce colliding with the previous
    transaction's commit markers (the broker's answer to clients older than KIP-890); the producer
    retries it after ``kafka.retry_backoff_ms``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "NotEnoughReplicas" in record.getMessage():
            self.count += 1
            return False
        return True


@contextlib.contextmanager
def counted_produce_retries() -> Iterator[ProduceRetries]:
    sender = logging.getLogger("aiokafka.producer.sender")
    counter = ProduceRetries()
    sender.addFilter(counter)
    try:
        yield counter
    finally:
        sender.removeFilter(counter)
