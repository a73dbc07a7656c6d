"""``candlecast bench``: throughput and latency of the daemon, side by side with its ceilings.

One run, one machine, one real Kafka broker (a throwaway local one unless ``bootstrap_servers``
is given), measures:

1. the model ceiling: forward passes per second at the chosen batch size, nothing else running;
2. the I/O ceiling: a plain aiokafka consume-and-produce pass-through of the same candles;
3. the naive baseline: the daemon's own pipeline scoring one candle per forward pass;
4. the daemon end to end, per delivery mode: sustained throughput over a backlog of thousands of
   symbols; latency at a steady rate of half that throughput; latency under a burst of ten times
   the steady rate; and candle-close bursts, N symbols closing a candle at the same instant;
5. the ratios between them, and window memory per symbol.

The daemon runs in this process (``Daemon``, exactly as ``candlecast run`` builds it); a hook on
its pipeline records, for every signal, the candle record's timestamp (the producer's
CreateTime) and the wall-clock time at which the signal's batch was acknowledged by the broker
(``exactly_once``: its transaction committed). Candles for the rate-paced phases come from a
separate generator process, so that producing them does not take the daemon's event loop.
See docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError
from rich.console import Console

from candlecast.bench_load import Generator, Workload, create_topics, prefill
from candlecast.bench_report import (
    BenchResult,
    CloseBurst,
    DeliveryRun,
    IoCeiling,
    Latency,
    Memory,
    ModelCeiling,
    SteadyStages,
)
from candlecast.errors import ConfigError
from daemon.intervals import Interval
from daemon.settings import (
    BatchingSettings,
    HttpSettings,
    KafkaSettings,
    ModelSettings,
    Settings,
    WindowSettings,
    bundled_registry,
    describe_validation_error,
)

if TYPE_CHECKING:
    from daemon.pipeline import PublishBatch
    from daemon.service import Daemon
    from models.artifact import LoadedModel

FORWARD_SECONDS = "candlecast_inference_seconds"
PUBLISH_SECONDS = "candlecast_publish_seconds"
Delivery = Literal["exactly_once", "at_least_once"]
Device = Literal["auto", "cpu", "cuda"]
DELIVERY_CHOICES: dict[str, tuple[Delivery, ...]] = {
    "both": ("exactly_once", "at_least_once"),
    "exactly_once": ("exactly_once",),
    "at_least_once": ("at_least_once",),
}
DEVICE_CHOICES: dict[str, Device] = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}


@dataclass(frozen=True)
class BenchOptions:
    symbols: int = 10_000
    scored_per_symbol: int = 3
    """Candles per symbol in the throughput backlog after each window is full."""
    batch: int = field(default_factory=lambda: BatchingSettings().max_batch)
    """The daemon's ``batching.max_batch`` (default the daemon's), and the batch of the model ceiling."""
    max_wait_ms: float = 0.0
    threads: int = 0
    """torch intra-op threads (``model.threads``; 0: one less than the CPU count)."""
    device: Device = "auto"
    deliveries: tuple[Delivery, ...] = ("exactly_once", "at_least_once")
    partitions: int = 6
    steady_s: float = 10.0
    steady_rate: float | None = None
    """Candles per second of the steady phase; by default half the first sustained throughput."""
    burst_s: float = 0.1
    """Length of the 10x burst."""
    close_bursts: tuple[int, ...] = (1_000, 10_000)
    naive_signals: int = 1_000
    io_messages: int = 100_000
    ceiling_s: float = 3.0
    producer: dict[str, Any] = field(default_factory=dict)
    """Producer settings of the daemon to override (``linger_ms``, ``compression``,
    ``producer_batch_bytes``, ``retry_backoff_ms``); the I/O ceiling uses them too."""
    memory_symbols: int = 100_000
    seed: int = 1

    def check(self) -> None:
        """Refuse, before anything starts, settings the daemon would refuse (``ConfigError`` naming the field)."""
        try:
            Settings(
                kafka=self.producer,
                batching={"max_batch": self.batch, "max_wait_ms": self.max_wait_ms},
                model={"threads": self.threads, "device": self.device},
            )
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from exc

    @classmethod
    def quick(cls) -> BenchOptions:
        """Seconds instead of minutes: for the test suite's gross-regression check."""
        return cls(
            symbols=300,
            scored_per_symbol=4,
            deliveries=("exactly_once",),
            partitions=3,
            steady_s=2.0,
            close_bursts=(300,),
            naive_signals=150,
            io_messages=5_000,
            ceiling_s=1.0,
            memory_symbols=10_000,
        )


def model_ceiling(model: LoadedModel, batch: int, seconds: float, threads: int) -> ModelCeiling:
    """Forward passes of ``batch`` windows back to back for ``seconds``, warm."""
    import torch

    torch.set_num_threads(threads)
    golden = np.asarray(model.manifest.golden.input, dtype=np.float32)
    windows = np.ascontiguousarray(np.resize(golden, (batch, *golden.shape[1:])))
    for _ in range(3):
        model.score(windows)
    forwards = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.score(windows)
        forwards += 1
    elapsed = time.perf_counter() - started
    single = windows[:1]
    padded = _mean_seconds(lambda: model.score(single), seconds / 3)
    tensor = torch.from_numpy(np.ascontiguousarray(single)).to(model.device)

    def unpadded() -> None:
        with torch.inference_mode():
            model.module(tensor)

    return ModelCeiling(
        device=str(model.device),
        threads=threads,
        batch=batch,
        forwards_per_s=forwards / elapsed,
        windows_per_s=forwards * batch / elapsed,
        single_padded_ms=padded * 1000,
        single_unpadded_ms=_mean_seconds(unpadded, seconds / 3) * 1000,
    )


def _mean_seconds(work: Any, seconds: float) -> float:
    for _ in range(3):
        work()
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        runs += 1
    return (time.perf_counter() - started) / runs


async def io_ceiling(bootstrap: str, source: str, sink: str, count: int, settings: Settings) -> IoCeiling:
    """A plain consume-and-produce pass-through: each candle forwarded as is, offsets committed
    after its poll's records are acknowledged (the at-least-once pattern, with no model)."""
    kafka = settings.kafka
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-io-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=kafka.linger_ms,
        max_batch_size=kafka.producer_batch_bytes,
        retry_backoff_ms=kafka.retry_backoff_ms,
        compression_type=None if kafka.compression == "none" else kafka.compression,
    )
    await consumer.start()
    await producer.start()
    passed = 0
    started: float | None = None
    try:
        while passed < count:
            fetched = await consumer.getmany(timeout_ms=200, max_records=kafka.fetch_max_records)
            if not fetched:
                continue
            if started is None:
                started = time.perf_counter()
            futures = [await producer.send(sink, m.value, key=m.key) for messages in fetched.values() for m in messages]
            await asyncio.gather(*futures)
            await consumer.commit()
            passed += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()
    assert started is not None
    return IoCeiling(passed, passed / (time.perf_counter() - started))


class Recorder:
    """A published-batch hook: each signal's candle record time and its acknowledgement time."""

    def __init__(self) -> None:
        self.candle_ms: list[int] = []
        self.taken_ms: list[float] = []
        """When the daemon took each candle's record off the source (wall clock)."""
        self.acked_ms: list[float] = []
        self._wall_minus_monotonic_ms = time.time() * 1000.0 - time.monotonic_ns() / 1e6
        self._wanted = 0
        self._reached = asyncio.Event()

    def __call__(self, batch: PublishBatch) -> None:
        acked = time.time() * 1000.0
        self.candle_ms.extend(request.timestamp_ms for _, request in batch.signals)
        shift = self._wall_minus_monotonic_ms
        self.taken_ms.extend(request.received_ns / 1e6 + shift for _, request in batch.signals)
        self.acked_ms.extend([acked] * len(batch.signals))
        if len(self) >= self._wanted:
            self._reached.set()

    def __len__(self) -> int:
        return len(self.acked_ms)

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Until ``count`` signals in all were acknowledged."""
        self._wanted = count
        self._reached.clear()
        if len(self) >= count:
            return
        try:
            await asyncio.wait_for(self._reached.wait(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"{len(self)} of {count} signals after {timeout_s:.0f} s") from None

    def latencies(self, start: int, stop: int | None = None) -> npt.NDArray[np.float64]:
        acked = np.asarray(self.acked_ms[start:stop], dtype=np.float64)
        return acked - np.asarray(self.candle_ms[start:stop], dtype=np.float64)

    def consume_latencies(self, start: int) -> npt.NDArray[np.float64]:
        """Candle record timestamp to the daemon taking the record off the source."""
        taken = np.asarray(self.taken_ms[start:], dtype=np.float64)
        return taken - np.asarray(self.candle_ms[start:], dtype=np.float64)

    def throughput(self, start: int) -> float:
        """Signals per second from the first acknowledged batch after ``start`` to the last."""
        acked = np.asarray(self.acked_ms[start:], dtype=np.float64)
        first = acked[0]
        later = acked[acked > first]
        if later.size == 0:
            return float("nan")
        return float(later.size / ((later[-1] - first) / 1000.0))


@dataclass
class Served:
    daemon: Daemon
    recorder: Recorder

    def totals(self, histogram: str = "candlecast_batch_size") -> tuple[float, float]:
        """Sum and count of one of the daemon's histograms so far (by default: rows and forward passes)."""
        registry = self.daemon.registry
        return (
            registry.get_sample_value(f"{histogram}_sum") or 0.0,
            registry.get_sample_value(f"{histogram}_count") or 0.0,
        )

    def mean_since(self, mark: tuple[float, float], histogram: str = "candlecast_batch_size") -> float:
        total, count = self.totals(histogram)
        return (total - mark[0]) / max(1.0, count - mark[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    """The daemon, built and run as ``candlecast run`` does, with a recorder on its pipeline."""
    from daemon.service import Daemon

    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    recorder = Recorder()
    try:
        # The daemon builds its pipeline inside run() (after loading the model), before it connects to Kafka.
        for _ in range(600_000):
            if daemon.pipeline is not None or task.done():
                break
            await asyncio.sleep(0.001)
        if daemon.pipeline is not None:
            daemon.pipeline.add_published_hook(recorder)
        ready = asyncio.create_task(daemon.became_ready.wait())
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            await task
            raise RuntimeError("the daemon stopped before it was ready")
        yield Served(daemon, recorder)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 300)


@dataclass
class Bench:
    """What every phase needs: the broker, the model and the options."""

    bootstrap: str
    options: BenchOptions
    model_path: Path
    model: LoadedModel
    ceiling: ModelCeiling
    console: Console

    def settings(self, *, candles: str, signals: str, group: str, delivery: Delivery, max_batch: int) -> Settings:
        options = self.options
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
            model=ModelSettings(artifact=self.model_path, threads=options.threads, device=options.device),
            batching=BatchingSettings(max_batch=max_batch, max_wait_ms=options.max_wait_ms),
            http=HttpSettings(port=0),
        )

    async def topics(self, name: str, partitions: int) -> tuple[str, str]:
        """A fresh candle topic and its signal topic (with its dead-letter topic)."""
        suffix = uuid.uuid4().hex[:6]
        candles, signals = f"bench-{name}-candles-{suffix}", f"bench-{name}-signals-{suffix}"
        await create_topics(self.bootstrap, {candles: partitions, signals: partitions, f"{signals}.dlq": 1})
        return candles, signals

    def workload(self, prefix: str, symbols: int) -> Workload:
        manifest = self.model.manifest
        interval = Interval.parse(manifest.interval, manifest.calendar)
        return Workload(prefix, symbols, interval, self.options.partitions, self.options.seed)

    def timeout(self, signals: int, per_s: float) -> float:
        return 120.0 + 3.0 * signals / max(per_s, 1.0)


async def naive_baseline(bench: Bench) -> tuple[float, float]:
    """The daemon's pipeline with ``max_batch = 1``: every candle its own forward pass."""
    options = bench.options
    symbols = min(options.symbols, options.naive_signals)
    per_symbol = -(-options.naive_signals // symbols)
    workload = bench.workload("N", symbols)
    candles, signals = await bench.topics("naive", options.partitions)
    await prefill(bench.bootstrap, candles, workload.rounds(bench.model.manifest.window - 1 + per_symbol))
    settings = bench.settings(candles=candles, signals=signals, group=signals, delivery="exactly_once", max_batch=1)
    async with serving(settings) as served:
        expected = symbols * per_symbol
        await served.recorder.wait_for(expected, bench.timeout(expected, 100.0))
        return served.recorder.throughput(0), served.mean_since((0.0, 0.0))


async def delivery_run(
    bench: Bench, delivery: Delivery, workload: Workload, candles: str, backlog: int, rate: float | None, gen: Generator
) -> tuple[DeliveryRun, int]:
    """Every end-to-end phase against one daemon; returns the figures and the candles it added."""
    options = bench.options
    _, signals = await bench.topics(delivery, options.partitions)
    settings = bench.settings(
        candles=candles, signals=signals, group=signals, delivery=delivery, max_batch=options.batch
    )
    ceiling = bench.ceiling.windows_per_s
    added = 0
    async with serving(settings) as served:
        recorder = served.recorder
        bench.console.print(f"  {delivery}: catching up on {backlog} scored candles")
        mark = served.totals()
        await recorder.wait_for(backlog, bench.timeout(backlog, ceiling / 4))
        throughput = recorder.throughput(0)
        throughput_batch = served.mean_since(mark)
        steady_rate = rate if rate is not None else throughput / 2

        bench.console.print(f"  {delivery}: steady {steady_rate:.0f} candles/s for {options.steady_s:g} s")
        start, mark = len(recorder), served.totals()
        forward_mark, publish_mark = served.totals(FORWARD_SECONDS), served.totals(PUBLISH_SECONDS)
        count = int(steady_rate * options.steady_s)
        await gen.paced(workload.stream(count), [i / steady_rate for i in range(count)])
        await recorder.wait_for(start + count, bench.timeout(count, ceiling / 4))
        steady = Latency.of(recorder.latencies(start))
        steady_stages = SteadyStages(
            consume=Latency.of(recorder.consume_latencies(start)),
            forward_ms=1000 * served.mean_since(forward_mark, FORWARD_SECONDS),
            publish_ms=1000 * served.mean_since(publish_mark, PUBLISH_SECONDS),
            mean_batch=served.mean_since(mark),
        )
        added += count

        bench.console.print(f"  {delivery}: a burst of 10x the steady rate for {options.burst_s * 1000:.0f} ms")
        before = int(steady_rate)
        burst = max(1, int(10 * steady_rate * options.burst_s))
        offsets = [i / steady_rate for i in range(before)]
        offsets += [1.0 + i / (10 * steady_rate) for i in range(burst)]
        offsets += [1.0 + options.burst_s + i / steady_rate for i in range(before)]
        start = len(recorder)
        paced = await gen.paced(workload.stream(len(offsets)), offsets)
        await recorder.wait_for(start + len(offsets), bench.timeout(len(offsets), ceiling / 4))
        added += len(offsets)
        burst_sent = paced.sent_s[before : before + burst]
        first_ms = int((paced.started + burst_sent[0]) * 1000)
        last_ms = (paced.started + burst_sent[-1]) * 1000
        candle_ms = np.asarray(recorder.candle_ms[start:], dtype=np.float64)
        phase = recorder.latencies(start)
        in_burst = (candle_ms >= first_ms) & (candle_ms <= last_ms)
        burst_rate = burst / max(burst_sent[-1] - burst_sent[0], 1e-3)

        closes = []
        for wanted in options.close_bursts:
            size = min(wanted, len(workload))
            bench.console.print(f"  {delivery}: {size} symbols close a candle at once")
            start, mark = len(recorder), served.totals()
            committed_ms = await gen.transaction(workload.first(size)) * 1000
            await recorder.wait_for(start + size, bench.timeout(size, ceiling / 4))
            added += size
            since_commit = np.asarray(recorder.acked_ms[start:], dtype=np.float64) - committed_ms
            closes.append(
                CloseBurst(
                    symbols=size,
                    last_signal_ms=float(since_commit.max()),
                    lower_bound_ms=1000 * size / ceiling,
                    latency=Latency.of(since_commit),
                    mean_batch=served.mean_since(mark),
                )
            )
    figures = DeliveryRun(
        delivery=delivery,
        throughput_per_s=throughput,
        throughput_signals=backlog,
        throughput_mean_batch=throughput_batch,
        steady_rate_per_s=steady_rate,
        steady=steady,
        steady_stages=steady_stages,
        burst_rate_per_s=burst_rate,
        burst=Latency.of(phase[in_burst]),
        burst_phase=Latency.of(phase),
        close_bursts=closes,
    )
    return figures, added


def window_memory(model: LoadedModel, symbols: int) -> Memory:
    """What the daemon keeps per symbol: its window (arrays and per-key Python objects, traced by
    tracemalloc while ``symbols`` keys are added) and the strategy's remembered outputs."""
    from daemon.candle import Candle
    from daemon.engine import ScoreRequest
    from daemon.service import build_core
    from models.artifact import ModelOutputs

    core = build_core(Settings(windows=WindowSettings(max_windows=symbols)), model)
    interval = next(iter(core.intervals.values()))
    names = [f"M{i:06d}" for i in range(symbols)]
    ts = interval.slot_time(interval.slot_index(int(time.time() * 1000)) - 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = core.store
        for offset, name in enumerate(names):
            store.push(Candle(name, interval.name, ts, 1.0, 1.0, 1.0, 1.0, 1.0), 0, offset)
        traced = tracemalloc.get_traced_memory()[0] - before
        before = tracemalloc.get_traced_memory()[0]
        horizons, quantiles = len(core.spec.horizons), len(core.spec.quantiles)
        window = np.zeros((store.length, 5), dtype=np.float32)
        step = 512
        for first in range(0, symbols, step):
            chunk = names[first : first + step]
            rows = len(chunk)
            outputs = ModelOutputs(
                np.full((rows, horizons), 0.5, dtype=np.float32),
                np.zeros((rows, horizons, quantiles), dtype=np.float32),
                np.zeros((rows, horizons), dtype=np.float32),
                np.zeros((rows, 1, horizons), dtype=np.float32),
                np.zeros((rows, 1), dtype=np.float32),
            )
            requests = [ScoreRequest((n, interval.name), ts, window, "t", 0, 0, 0, 0) for n in chunk]
            core.builder.build(requests, outputs, "bench")
        strategy = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return Memory(symbols, store.length, store.span, store.nbytes, traced, strategy)


def resolve_model(path: Path | None) -> tuple[Path, str]:
    """The artifact to benchmark: ``path``, else the bundled registry's current one."""
    from models.registry import Registry

    if path is not None:
        return path, "given"
    entry = Registry(bundled_registry()).current()
    if entry is None:
        raise ConfigError("the bundled registry has no current model: give one with --model")
    return entry.artifact, "bundled"


def machine() -> dict[str, str]:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "load_average_before": " ".join(f"{x:.2f}" for x in load),
    }


async def run_bench(
    options: BenchOptions,
    *,
    console: Console,
    bootstrap_servers: str | None = None,
    model: Path | None = None,
) -> BenchResult:
    """Every measurement, in one run; starts (and stops) a local broker unless one is given."""
    import torch

    options.check()

    from candlecast.localkafka import LocalKafka
    from daemon.serving import configure_threads, resolve_device, warm_up
    from models.artifact import load_artifact

    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="candlecast-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        host = machine()
        model_path, origin = resolve_model(model)
        threads = configure_threads(options.threads)
        loaded = load_artifact(model_path, resolve_device(options.device))
        warm_up(loaded, options.batch)
        console.print(f"model ceiling: {loaded.manifest.name}/{loaded.version} ({origin}), {threads} thread(s)")
        ceiling = model_ceiling(loaded, options.batch, options.ceiling_s, threads)
        other_threads = 2 if threads == 1 else 1
        other = model_ceiling(loaded, options.batch, options.ceiling_s, other_threads) if os.cpu_count() != 1 else None
        configure_threads(options.threads)
        kafka = None
        if bootstrap_servers is None:
            console.print("starting a local Kafka broker ...")
            kafka = await asyncio.to_thread(LocalKafka(scratch / "kafka", heap="1g").start)
            bootstrap_servers = kafka.bootstrap_servers
        try:
            bench = Bench(bootstrap_servers, options, model_path, loaded, ceiling, console)
            with _counted_produce_retries() as retries:
                result = await _measure(bench, host, origin, other)
            result.produce_retries = retries.count
        finally:
            if kafka is not None:
                await asyncio.to_thread(kafka.stop)
            torch.set_num_threads(previous_threads)
    return result


class _ProduceRetries(logging.Filter):
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
def _counted_produce_retries() -> Iterator[_ProduceRetries]:
    sender = logging.getLogger("aiokafka.producer.sender")
    counter = _ProduceRetries()
    sender.addFilter(counter)
    try:
        yield counter
    finally:
        sender.removeFilter(counter)


async def _measure(bench: Bench, host: dict[str, str], origin: str, other: ModelCeiling | None) -> BenchResult:
    options, console, manifest = bench.options, bench.console, bench.model.manifest
    workload = bench.workload("S", options.symbols)
    candles, io_sink = await bench.topics("main", options.partitions)
    rounds = manifest.window - 1 + options.scored_per_symbol
    console.print(f"writing the backlog: {options.symbols} symbols x {rounds} candles")
    await prefill(bench.bootstrap, candles, workload.rounds(rounds))
    console.print(f"I/O ceiling: passing {options.io_messages} candles through aiokafka")
    settings = bench.settings(candles=candles, signals=io_sink, group="io", delivery="at_least_once", max_batch=1)
    io = await io_ceiling(bench.bootstrap, candles, io_sink, options.io_messages, settings)
    console.print(f"naive baseline: {options.naive_signals} candles, one per forward pass")
    naive, naive_batch = await naive_baseline(bench)
    result = BenchResult(
        machine=host,
        options=asdict(options),
        model={
            "name": manifest.name,
            "version": manifest.version,
            "origin": origin,
            "members": len(manifest.members),
            "parameters": sum(m.parameters for m in manifest.members),
            "window": manifest.window,
        },
        ceiling=bench.ceiling,
        ceiling_other_threads=other,
        io=io,
        naive_per_s=naive,
        naive_mean_batch=naive_batch,
    )
    backlog = options.symbols * options.scored_per_symbol
    rate = options.steady_rate
    async with Generator(bench.bootstrap, candles) as gen:
        for delivery in options.deliveries:
            console.print(f"end to end, {delivery}:")
            run, added = await delivery_run(bench, delivery, workload, candles, backlog, rate, gen)
            result.runs.append(run)
            rate = run.steady_rate_per_s
            backlog += added
    console.print(f"memory: {options.memory_symbols} symbols")
    result.memory = window_memory(bench.model, options.memory_symbols)
    return result
