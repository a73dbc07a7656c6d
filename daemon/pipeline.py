"""The asyncio pipeline: ingest -> score -> publish, joined by bounded queues.

Three tasks in a TaskGroup. The ingest task pulls records from the source and runs them through
the ``CandleIngestor``; the score task forms batches (``BatchPolicy``) and runs the model in one
dedicated thread, so the event loop keeps consuming, publishing and serving metrics; the publish
task turns outputs into signals and hands them, with dead letters and the offsets they complete,
to the sink, which publishes and commits them together.

Everything flows first in, first out, so per-partition order (and so per-symbol order) holds end
to end, and a checkpoint is committed only after every record before it has been published.
Full queues stop the ingest task: backpressure reaches the source instead of growing memory.

Several routes (models) share the one ordered sequence of chunks: each record goes to the route
that claims it (``daemon.dispatch``), a chunk holds requests of any route, and each forward pass
scores one route's requests of the chunks taken. So a partition holding candles of two routes is
still committed only once every earlier record of it, of either route, is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, TypeVar

import numpy as np
import structlog

from daemon.batching import BatchPolicy
from daemon.candle import decode_message
from daemon.checkpoint import SOLE_ROUTE, Checkpoint, ScoredSince, Scoring, TopicPartition
from daemon.dispatch import DEFAULT_ROUTE, Dispatcher, RouteClaim
from daemon.engine import CandleIngestor, ScoreRequest, SignalBuilder
from daemon.metrics import DaemonMetrics
from daemon.ports import (
    CandleSource,
    Chunk,
    PartitionRecords,
    PublishBatch,
    ScoredChunk,
    Scorer,
    SignalSink,
    WindowOrigins,
)
from daemon.signal import DeadLetter
from daemon.timer import SystemTimer, Timer
from models.artifact import ModelOutputs

T = TypeVar("T")
ScorerT = TypeVar("ScorerT", bound=Scorer)
Stage = Literal["forward", "publish"]
StageHook = Callable[[Stage, Sequence[ScoreRequest], float, float], None]
"""Called with a stage, its requests, and when it began and ended (``Pipeline.add_stage_hook``)."""


class ModelHolder(Generic[ScorerT]):
    """The model in service; swapped between batches by hot reload."""

    def __init__(self, model: ScorerT, *, stepped: bool = True) -> None:
        self.model = model
        self.stepped = stepped
        """The model keeps per-symbol state (``daemon.stepped_model``): its forward passes need the windows'
        origins. ``False`` for a windowed scorer, which ignores them, so that none are made for it."""

    def swap(self, model: ScorerT, *, stepped: bool) -> None:
        """Serve ``model`` from the next forward pass on (the caller holds ``Pipeline.between_batches``)."""
        self.model = model
        self.stepped = stepped


@dataclass(slots=True)
class Lane(Generic[ScorerT]):
    """One route as the pipeline runs it: the candles it claims, its windows and strategy (the
    ingestor and builder of its core), its batch policy and its model."""

    name: str
    claim: RouteClaim
    ingestor: CandleIngestor
    builder: SignalBuilder
    models: ModelHolder[ScorerT]
    policy: BatchPolicy
    observers: list[Callable[[ScoredChunk], None]] = field(default_factory=list)
    """Called with the route's part of each scored chunk before it is published (drift and quality monitors)."""


@dataclass(slots=True)
class _Scored:
    """A chunk and, per route with requests in it, those requests scored (in the chunk's order)."""

    chunk: Chunk
    parts: list[tuple[int, ScoredChunk]]


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
        ingestor: CandleIngestor | None = None,
        builder: SignalBuilder | None = None,
        models: ModelHolder[ScorerT] | None = None,
        policy: BatchPolicy | None = None,
        metrics: DaemonMetrics,
        lanes: Sequence[Lane[ScorerT]] = (),
        describe_routes: Callable[[], str] = lambda: "",
        max_message_bytes: int = 4096,
        clock: Timer | None = None,
        executor: Executor | None = None,
        queue_size: int = 64,
        queue_bytes: int = 256 << 20,
        observers: Sequence[Callable[[ScoredChunk], None]] = (),
        on_published: Sequence[Callable[[PublishBatch], None]] = (),
    ) -> None:
        if not lanes:
            # One route taking every candle: the backtest's and the single-model tests' pipeline.
            assert ingestor is not None and builder is not None and models is not None
            claim = RouteClaim("*", None)
            lanes = [Lane(DEFAULT_ROUTE, claim, ingestor, builder, models, policy or BatchPolicy(), list(observers))]
        self.lanes = list(lanes)
        """The routes, in match order: a record goes to the first that claims it."""
        self.dispatcher = Dispatcher([lane.claim for lane in self.lanes], describe_routes, max_message_bytes)
        self._max_bytes = max_message_bytes
        self.source = source
        self.sink = sink
        self.metrics = metrics
        metrics.use_routes([lane.name for lane in self.lanes])
        self.clock = clock or SystemTimer()
        """Stamps and durations, and the batcher's ``max_wait_s`` wait."""
        self._chunk_limit = max(lane.policy.max_batch for lane in self.lanes)
        self._on_published = list(on_published)
        """Called with each batch once it is published and committed (secondary transports); must not block."""
        self._stage_hooks: list[StageHook] = []
        self._to_score: asyncio.Queue[Chunk | None] = asyncio.Queue(queue_size)
        self._to_publish: asyncio.Queue[_Scored | None] = asyncio.Queue(queue_size)
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
        self._rebuilding = 0
        """Rebuilt partitions whose history requests are still being made."""
        self._history_unscored = 0
        """History requests made but not yet scored."""
        self._not_rescoring = asyncio.Event()
        self._not_rescoring.set()
        """Set while no rebuild's history is being re-scored: a model swap may land."""

    def add_published_hook(self, hook: Callable[[PublishBatch], None]) -> None:
        """Also call ``hook`` with each batch once it is published and committed (must not block)."""
        self._on_published.append(hook)

    def add_stage_hook(self, hook: StageHook) -> None:
        """Also call ``hook`` with each forward pass (on the inference thread) and each publish: the stage,
        its requests and when it began and ended on the clock (``monotonic`` seconds). Must be cheap: the
        bench splits each candle's latency by stage with it."""
        self._stage_hooks.append(hook)

    @property
    def model_lock(self) -> asyncio.Lock:
        """Held around each forward pass (the query API's scoring takes it too); a model swap goes
        through ``between_batches``."""
        return self._model_lock

    @contextlib.asynccontextmanager
    async def between_batches(self) -> AsyncIterator[None]:
        """Held while a model is swapped: between two forward passes, and never while a rebuild's
        history is being re-scored (a swap there would score that history with two versions, so the
        strategy's memory would no longer be what an uninterrupted run's is)."""
        while True:
            await self._not_rescoring.wait()
            await self._model_lock.acquire()
            if self._not_rescoring.is_set() or self._ended:
                break
            self._model_lock.release()
        try:
            yield
        finally:
            self._model_lock.release()

    def _note_rescoring(self, rebuilding: int = 0, history: int = 0) -> None:
        self._rebuilding += rebuilding
        self._history_unscored += history
        if self._rebuilding or self._history_unscored:
            self._not_rescoring.clear()
        else:
            self._not_rescoring.set()

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
            self._not_rescoring.set()  # nothing more is scored: a waiting swap may go ahead
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
        limit = self._chunk_limit
        lanes = self.lanes
        dispatcher = self.dispatcher
        for part in polled:
            for record in part.replay:
                route = dispatcher.replayed(record)
                if route is not None:
                    lanes[route].ingestor.replay(record)
            if part.rebuilt:
                self._note_rescoring(rebuilding=1)
                try:
                    for history in self._history(part, limit):
                        if len(chunk.requests) + len(history) > limit:
                            yield chunk
                            chunk = Chunk([], [], {})
                        chunk.requests.extend(history)
                finally:
                    self._note_rescoring(rebuilding=-1)
            chunk, letters = yield from self._ingest_live(part, chunk, now)
            dead_letters += letters
            if part.live:
                self._checkpoint(chunk, part, part.live[-1].offset + 1)
        self.metrics.observe_ingest([lane.ingestor for lane in lanes], dead_letters, dispatcher.counters)
        yield chunk

    def _ingest_live(self, part: PartitionRecords, chunk: Chunk, now: int) -> Generator[Chunk, None, tuple[Chunk, int]]:
        """A partition's live records into ``chunk``, yielding each chunk they fill; the chunk left open,
        and how many dead letters were made. Each value is decoded once, for routing and validation
        alike, and each run of records of one route ingested in one call, up to the chunk's room."""
        live = part.live
        limit = self._chunk_limit
        messages = [decode_message(r.value) if len(r.value) <= self._max_bytes else None for r in live]
        routes = [self.dispatcher.route(record, message) for record, message in zip(live, messages, strict=True)]
        dead_letters = 0
        start = 0
        while start < len(live):
            route = routes[start]
            if isinstance(route, DeadLetter):
                chunk.dead_letters.append(route)
                dead_letters += 1
                start += 1
                continue
            stop = start + 1
            while stop < len(live) and routes[stop] == route:
                stop += 1
            # At least one request: a chunk that history filled takes one more, as it always has.
            room = max(1, limit - len(chunk.requests))
            requests, letters, taken = self.lanes[route].ingestor.ingest_many(
                live[start:stop], messages[start:stop], now, room
            )
            for request in requests:
                request.route = route
            chunk.requests.extend(requests)
            chunk.dead_letters.extend(letters)
            dead_letters += len(letters)
            start += taken
            # Only a run that added requests closes the chunk: one that history filled waits for one.
            if requests and len(chunk.requests) >= limit and start < len(live):
                self._checkpoint(chunk, part, live[start - 1].offset + 1)
                yield chunk
                chunk = Chunk([], [], {})
        return chunk, dead_letters

    def _history(self, part: PartitionRecords, limit: int) -> Iterator[list[ScoreRequest]]:
        """A rebuilt partition's history requests, route by route, each restoring what its commit says."""
        partition = (part.topic, part.partition)
        for index, lane in enumerate(self.lanes):
            scored = self._scored_by(lane, part.scored_since)
            lane.builder.seed(partition, scored)
            for history in lane.ingestor.history_batches(part.partition, part.topic, limit, scored):
                for request in history:
                    request.route = index
                self._note_rescoring(history=len(history))
                yield history

    def _scored_by(self, lane: Lane[ScorerT], scoring: Scoring | None) -> ScoredSince | None:
        """What the commit says scored a partition for this route (the one-model format: the only route)."""
        if scoring is None:
            return None
        if len(self.lanes) == 1 and SOLE_ROUTE in scoring:
            return scoring[SOLE_ROUTE]
        return scoring.get(lane.name)

    def _checkpoint(self, chunk: Chunk, part: PartitionRecords, next_offset: int) -> None:
        """Mark a partition's records up to ``next_offset`` as completed by ``chunk`` (taken now, so
        that the rebuild offset is the one for exactly these records, over every route's windows)."""
        if part.committable:
            offsets = [lane.ingestor.store.rebuild_offset(part.partition) for lane in self.lanes]
            rebuild = min((offset for offset in offsets if offset is not None), default=None)
            chunk.checkpoint[(part.topic, part.partition)] = Checkpoint(
                next_offset, next_offset if rebuild is None else rebuild
            )

    async def _take_chunks(self) -> list[Chunk] | None:
        """Chunks for the next forward passes per the routes' batch policies; ``None`` once ingest ended."""
        first = await self._to_score.get()
        if first is None:
            return None
        chunks = [first]
        pending = [0] * len(self.lanes)
        self._count(first, pending)
        enqueued = self.clock.monotonic()
        while True:
            while not self._to_score.empty() and not self._full(pending):
                item = self._to_score.get_nowait()
                if item is None:
                    self._to_score.put_nowait(None)
                    return chunks
                chunks.append(item)
                self._count(item, pending)
            wait = self._wait(pending, enqueued)
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
            self._count(item, pending)

    @staticmethod
    def _count(chunk: Chunk, pending: list[int]) -> None:
        for request in chunk.requests:
            pending[request.route] += 1

    def _full(self, pending: list[int]) -> bool:
        return any(count >= lane.policy.max_batch for count, lane in zip(pending, self.lanes, strict=True))

    def _wait(self, pending: list[int], enqueued: float) -> float | None:
        """How long to wait before scoring: until the first route that has requests wants its pass."""
        now = self.clock.monotonic()
        waits = [
            lane.policy.wait_before_flush(count, enqueued, now)
            for count, lane in zip(pending, self.lanes, strict=True)
            if count
        ]
        return min((w for w in waits if w is not None), default=None)

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
            by_route: dict[int, list[ScoreRequest]] = {}
            for chunk in chunks:
                for request in chunk.requests:
                    by_route.setdefault(request.route, []).append(request)
            scored: dict[int, tuple[Scorer, ModelOutputs]] = {}
            async with self._model_lock:
                for route, requests in sorted(by_route.items()):
                    lane = self.lanes[route]
                    model = lane.models.model
                    score = functools.partial(self._score, route, model, lane.models.stepped, requests)
                    scored[route] = (model, await self.run_in_model_thread(score))
            history = sum(1 for requests in by_route.values() for r in requests if not r.publish)
            if history:
                self._note_rescoring(history=-history)
            cursors = dict.fromkeys(scored, 0)
            for chunk in chunks:
                await self._to_publish.put(_Scored(chunk, self._parts(chunk, scored, cursors)))
        await self._to_publish.put(None)

    def _parts(
        self, chunk: Chunk, scored: dict[int, tuple[Scorer, ModelOutputs]], cursors: dict[int, int]
    ) -> list[tuple[int, ScoredChunk]]:
        """The chunk's requests per route with their rows of that route's outputs (``cursors``: rows used)."""
        if len(self.lanes) == 1:
            if 0 not in scored:
                return [(0, ScoredChunk(chunk, None, self.lanes[0].models.model.version))]
            model, outputs = scored[0]
            start = cursors[0]
            stop = cursors[0] = start + len(chunk.requests)
            rows = slice_outputs(outputs, start, stop) if stop > start else None
            return [(0, ScoredChunk(chunk, rows, model.version))]
        by_route: dict[int, list[ScoreRequest]] = {}
        for request in chunk.requests:
            by_route.setdefault(request.route, []).append(request)
        parts = []
        for route, requests in sorted(by_route.items()):
            model, outputs = scored[route]
            start = cursors[route]
            cursors[route] = start + len(requests)
            rows = slice_outputs(outputs, start, start + len(requests))
            parts.append((route, ScoredChunk(Chunk(requests, [], {}), rows, model.version)))
        return parts

    def _score(self, route: int, model: Scorer, stepped: bool, requests: Sequence[ScoreRequest]) -> ModelOutputs:
        """One route's requests through its model, in forward passes of at most its ``max_batch``; with
        the windows' origins when the model is ``stepped``."""
        started = int(self.clock.monotonic() * 1e9)
        for request in requests:
            self.metrics.observe_queue_wait(
                (started - request.received_ns) / 1e9 if request.received_ns else 0.0, route
            )
        parts = []
        for start, stop in self.lanes[route].policy.split(len(requests)):
            batch = requests[start:stop]
            windows = np.stack([r.window for r in batch])
            began = self.clock.monotonic()
            parts.append(model.score(windows, WindowOrigins.of(batch) if stepped else None))
            ended = self.clock.monotonic()
            self.metrics.observe_forward(stop - start, ended - began, route)
            for hook in self._stage_hooks:
                hook("forward", batch, began, ended)
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

    async def _publish(self, scored: Sequence[_Scored]) -> None:
        batch = PublishBatch([], [], {})
        versions: list[str] = []
        for item in scored:
            for route, part in item.parts:
                lane = self.lanes[route]
                if part.outputs is not None:
                    built = lane.builder.build(part.chunk.requests, part.outputs, part.model_version)
                    batch.signals.extend(
                        (s, r) for s, r in zip(built, part.chunk.requests, strict=True) if s is not None
                    )
                    versions.append(part.model_version)
                for observe in lane.observers:
                    observe(part)
            batch.dead_letters.extend(item.chunk.dead_letters)
            batch.checkpoint.update(self._stamped(item.chunk.checkpoint))
        self.metrics.observe_outputs([lane.builder for lane in self.lanes])
        began = self.clock.monotonic()
        # What the sink logs about this batch (a failed publish, a retry) names the model and offsets.
        with structlog.contextvars.bound_contextvars(
            model_version=versions[-1] if versions else self.lanes[0].models.model.version,
            offsets={f"{topic}/{partition}": c.offset for (topic, partition), c in batch.checkpoint.items()},
        ):
            await self.sink.publish(batch)
        acked_ms = self.clock.time() * 1000.0
        ended = self.clock.monotonic()
        self.metrics.observe_publish(batch, ended - began, acked_ms)
        if self._stage_hooks:
            requests = [request for _, request in batch.signals]
            for stage_hook in self._stage_hooks:
                stage_hook("publish", requests, began, ended)
        for hook in self._on_published:
            hook(batch)

    def _stamped(self, checkpoint: dict[TopicPartition, Checkpoint]) -> dict[TopicPartition, Checkpoint]:
        """The checkpoint with the model versions that scored each partition: one route's in the one-model
        format, else every route's that scored it."""
        if len(self.lanes) == 1:
            return self.lanes[0].builder.stamped(checkpoint)
        stamped = {}
        for partition, mark in checkpoint.items():
            routes = []
            for lane in self.lanes:
                scored = lane.builder.stamped({partition: mark})[partition]
                if scored.model:
                    routes.append((lane.name, scored.model, scored.model_from))
            stamped[partition] = replace(mark, routes=tuple(routes))
        return stamped
