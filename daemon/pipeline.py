"""The asyncio pipeline: ingest -> score -> publish, joined by bounded queues.

Three tasks in a TaskGroup. The ingest task pulls records from the source and runs them through
the ``CandleIngestor``; the score task forms batches (``BatchPolicy``) and runs the model in one
dedicated thread, so the event loop keeps consuming, publishing and serving metrics; the publish
task turns outputs into signals and hands them, with dead letters and the offsets they complete,
to the sink, which publishes and commits them together.

Everything flows first in, first out, so per-partition order (and so per-symbol order) holds end
to end, and a checkpoint is committed only after every record before it has been published.
Full queues stop the ingest task: backpressure reaches the source instead of growing memory.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np
import structlog

from daemon.batching import BatchPolicy
from daemon.checkpoint import Checkpoint
from daemon.engine import CandleIngestor, ScoreRequest, SignalBuilder
from daemon.metrics import DaemonMetrics
from daemon.ports import CandleSource, Chunk, PartitionRecords, PublishBatch, ScoredChunk, Scorer, SignalSink
from daemon.timer import SystemTimer, Timer
from models.artifact import ModelOutputs

T = TypeVar("T")
ScorerT = TypeVar("ScorerT", bound=Scorer)


class ModelHolder(Generic[ScorerT]):
    """The model in service; swapped between batches by hot reload."""

    def __init__(self, model: ScorerT) -> None:
        self.model = model


def concat_outputs(parts: Sequence[ModelOutputs]) -> ModelOutputs:
    if len(parts) == 1:
        return parts[0]
    return ModelOutputs(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in ModelOutputs.__dataclass_fields__)
    )


def slice_outputs(outputs: ModelOutputs, start: int, stop: int) -> ModelOutputs:
    return ModelOutputs(*(getattr(outputs, name)[start:stop] for name in ModelOutputs.__dataclass_fields__))


class Pipeline(Generic[ScorerT]):
    """Runs ingest, scoring and publishing until stopped, then drains what is in flight."""

    def __init__(
        self,
        *,
        source: CandleSource,
        sink: SignalSink,
        ingestor: CandleIngestor,
        builder: SignalBuilder,
        models: ModelHolder[ScorerT],
        policy: BatchPolicy,
        metrics: DaemonMetrics,
        clock: Timer | None = None,
        executor: Executor | None = None,
        queue_size: int = 64,
        queue_bytes: int = 256 << 20,
        observers: Sequence[Callable[[ScoredChunk], None]] = (),
        on_published: Sequence[Callable[[PublishBatch], None]] = (),
    ) -> None:
        self.source = source
        self.sink = sink
        self.ingestor = ingestor
        self.builder = builder
        self.models = models
        self.policy = policy
        self.metrics = metrics
        self.clock = clock or SystemTimer()
        """Stamps and durations, and the batcher's ``max_wait_s`` wait."""
        self._observers = list(observers)
        """Called with each scored chunk before it is published (drift and quality monitors)."""
        self._on_published = list(on_published)
        """Called with each batch once it is published and committed (secondary transports); must not block."""
        self._to_score: asyncio.Queue[Chunk | None] = asyncio.Queue(queue_size)
        self._to_publish: asyncio.Queue[ScoredChunk | None] = asyncio.Queue(queue_size)
        self._queue_bytes = queue_bytes
        """Bound of the bytes (windows, dead letters' values) of the chunks in flight through both queues."""
        self._queued_bytes = 0
        self._bytes_freed = asyncio.Event()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="candlecast-infer")
        """One inference thread by default; tests pass one that runs the model inline, to stay single-threaded."""
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._ended = False
        """The run has ended (drained, or failed): what is still in flight will never be committed."""
        self._stopping = asyncio.Event()
        self._model_lock = asyncio.Lock()

    def add_published_hook(self, hook: Callable[[PublishBatch], None]) -> None:
        """Also call ``hook`` with each batch once it is published and committed (must not block)."""
        self._on_published.append(hook)

    @property
    def model_lock(self) -> asyncio.Lock:
        """Held around each forward pass; a reload takes it to swap models between batches."""
        return self._model_lock

    def stop(self) -> None:
        """Stop taking new records; what is in flight is still scored, published and committed."""
        self._stopping.set()

    async def drain(self) -> None:
        """Wait until every ingested record is published and committed, or the run has ended (a
        fenced sink, a stop past its deadline): a revocation must not wait for records that can no
        longer commit, nor a consumer's close for that revocation."""
        # Records ingested between the event being set and this waiter resuming are in flight too.
        while self._in_flight and not self._ended:
            await self._idle.wait()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._ingest_loop(), name="ingest")
                group.create_task(self._score_loop(), name="score")
                group.create_task(self._publish_loop(), name="publish")
        finally:
            self._ended = True
            self._idle.set()
            self._executor.shutdown(wait=True)

    async def run_in_model_thread(self, work: Callable[[], T]) -> T:
        """Run blocking model work (scoring, warm-up, verification) on the inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _ingest_loop(self) -> None:
        while not self._stopping.is_set():
            polled = await self._poll_or_stop()
            if not polled:
                continue
            # The poll stays in flight (entered when taken) until its last chunk is queued: a drain
            # must not end between two chunks of one poll. Chunks are made one at a time, so a
            # rebuild's history or a large backlog never stalls the loop or sits in memory at once.
            for chunk in self._ingest(polled):
                if chunk.requests or chunk.dead_letters or chunk.checkpoint:
                    self._enter()
                    await self._take_bytes(chunk.nbytes)
                    await self._to_score.put(chunk)
            self._leave()
        await self._to_score.put(None)

    async def _take_bytes(self, size: int) -> None:
        """Wait until a chunk of ``size`` bytes fits the byte bound (one always fits an empty pipeline)."""
        while self._queued_bytes and self._queued_bytes + size > self._queue_bytes:
            self._bytes_freed.clear()
            await self._bytes_freed.wait()
        self._queued_bytes += size

    async def _poll_taken(self) -> list[PartitionRecords]:
        polled = await self.source.poll()
        if polled:
            # Taken records are in flight from now on: a revocation's drain waits for them even
            # before they are ingested (this task ends before the ingest loop resumes).
            self._enter()
        return polled

    async def _poll_or_stop(self) -> list[PartitionRecords]:
        poll = asyncio.ensure_future(self._poll_taken())
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if poll.done():  # also when it finished after the stop woke us: its records are counted in flight
            return poll.result()
        poll.cancel()
        return []

    def _ingest(self, polled: list[PartitionRecords]) -> Iterator[Chunk]:
        """Chunks of at most ``max_batch`` requests (live or a rebuild's history), each with the
        checkpoint of the records it covers: a large poll (a backlog, a candle close across many
        symbols, a rebuilt partition's history) is then scored and published a forward pass at a time."""
        now = int(self.clock.monotonic() * 1e9)
        chunk = Chunk([], [], {})
        dead_letters = 0
        limit = self.policy.max_batch
        ingestor = self.ingestor
        for part in polled:
            for record in part.replay:
                ingestor.replay(record)
            if part.rebuilt:
                self.builder.seed((part.topic, part.partition), part.scored_since)
                for history in ingestor.history_batches(part.partition, part.topic, limit, part.scored_since):
                    if len(chunk.requests) + len(history) > limit:
                        yield chunk
                        chunk = Chunk([], [], {})
                    chunk.requests.extend(history)
            for record in part.live:
                result = ingestor.ingest(record, now)
                if isinstance(result, ScoreRequest):
                    chunk.requests.append(result)
                    if len(chunk.requests) >= limit and record is not part.live[-1]:
                        self._checkpoint(chunk, part, record.offset + 1)
                        yield chunk
                        chunk = Chunk([], [], {})
                elif result is not None:
                    chunk.dead_letters.append(result)
                    dead_letters += 1
            if part.live:
                self._checkpoint(chunk, part, part.live[-1].offset + 1)
        self.metrics.observe_ingest(ingestor, dead_letters)
        yield chunk

    def _checkpoint(self, chunk: Chunk, part: PartitionRecords, next_offset: int) -> None:
        """Mark a partition's records up to ``next_offset`` as completed by ``chunk`` (taken now, so
        that the rebuild offset is the one for exactly these records)."""
        if part.committable:
            rebuild = self.ingestor.store.rebuild_offset(part.partition)
            chunk.checkpoint[(part.topic, part.partition)] = Checkpoint(
                next_offset, next_offset if rebuild is None else rebuild
            )

    async def _take_chunks(self) -> list[Chunk] | None:
        """Chunks for the next forward passes per the batch policy; ``None`` once ingest ended."""
        first = await self._to_score.get()
        if first is None:
            return None
        chunks = [first]
        pending = len(first.requests)
        enqueued = self.clock.monotonic()
        while True:
            while not self._to_score.empty() and pending < self.policy.max_batch:
                item = self._to_score.get_nowait()
                if item is None:
                    self._to_score.put_nowait(None)
                    return chunks
                chunks.append(item)
                pending += len(item.requests)
            wait = self.policy.wait_before_flush(pending, enqueued, self.clock.monotonic())
            if not wait:
                return chunks
            try:
                item = await self._get_within(wait)
            except TimeoutError:
                return chunks
            if item is None:
                self._to_score.put_nowait(None)
                return chunks
            chunks.append(item)
            pending += len(item.requests)

    async def _get_within(self, seconds: float) -> Chunk | None:
        """The next queued item if one comes within ``seconds`` on the clock; ``TimeoutError`` otherwise."""
        getting = asyncio.ensure_future(self._to_score.get())
        sleeping = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({getting, sleeping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            if not getting.done():
                getting.cancel()  # a cancelled get leaves its item in the queue
        if not getting.done():
            raise TimeoutError
        return getting.result()

    async def _score_loop(self) -> None:
        while (chunks := await self._take_chunks()) is not None:
            requests = [r for chunk in chunks for r in chunk.requests]
            outputs: ModelOutputs | None = None
            async with self._model_lock:
                model = self.models.model
                if requests:
                    outputs = await self.run_in_model_thread(functools.partial(self._score, model, requests))
            start = 0
            for chunk in chunks:
                stop = start + len(chunk.requests)
                part = None if outputs is None or stop == start else slice_outputs(outputs, start, stop)
                await self._to_publish.put(ScoredChunk(chunk, part, model.version))
                start = stop
        await self._to_publish.put(None)

    def _score(self, model: Scorer, requests: Sequence[ScoreRequest]) -> ModelOutputs:
        started = int(self.clock.monotonic() * 1e9)
        for request in requests:
            self.metrics.queue_wait.observe((started - request.received_ns) / 1e9 if request.received_ns else 0.0)
        parts = []
        for start, stop in self.policy.split(len(requests)):
            windows = np.stack([r.window for r in requests[start:stop]])
            began = self.clock.monotonic()
            parts.append(model.score(windows))
            self.metrics.observe_forward(stop - start, self.clock.monotonic() - began)
        return concat_outputs(parts)

    async def _publish_loop(self) -> None:
        finished = False
        while not finished:
            first = await self._to_publish.get()
            if first is None:
                break
            scored = [first]
            while not self._to_publish.empty():
                item = self._to_publish.get_nowait()
                if item is None:
                    finished = True
                    break
                scored.append(item)
            await self._publish(scored)
            for item in scored:
                self._queued_bytes -= item.chunk.nbytes
                self._leave()
            self._bytes_freed.set()

    async def _publish(self, scored: Sequence[ScoredChunk]) -> None:
        batch = PublishBatch([], [], {})
        for item in scored:
            chunk = item.chunk
            if item.outputs is not None:
                built = self.builder.build(chunk.requests, item.outputs, item.model_version)
                batch.signals.extend((s, r) for s, r in zip(built, chunk.requests, strict=True) if s is not None)
            batch.dead_letters.extend(chunk.dead_letters)
            batch.checkpoint.update(self.builder.stamped(chunk.checkpoint))
            for observe in self._observers:
                observe(item)
        self.metrics.observe_outputs(self.builder)
        began = self.clock.monotonic()
        # What the sink logs about this batch (a failed publish, a retry) names the model and offsets.
        with structlog.contextvars.bound_contextvars(
            model_version=scored[-1].model_version,
            offsets={f"{topic}/{partition}": c.offset for (topic, partition), c in batch.checkpoint.items()},
        ):
            await self.sink.publish(batch)
        acked_ms = self.clock.time() * 1000.0
        self.metrics.observe_publish(batch, self.clock.monotonic() - began, acked_ms)
        for hook in self._on_published:
            hook(batch)
