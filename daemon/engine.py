"""The synchronous core that the live daemon and the backtest share.

``CandleIngestor`` turns source records into score requests (or dead letters) through
validation and the window store; ``SignalBuilder`` turns model outputs into signals through the
strategy. Neither touches asyncio, Kafka or torch: the asyncio pipeline (``daemon.pipeline``)
and ``candlecast backtest`` drive the same objects, which is what makes a backtest's signals
equal the live daemon's.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from daemon.candle import Candle, CandleMessage, CandleValidator, Rejection, RejectReason, format_ts
from daemon.checkpoint import Checkpoint, ScoredSince, TopicPartition
from daemon.signal import DeadLetter, Signal, signal_id
from daemon.window import Push, WindowKey, WindowStore
from strategies.base import BatchStrategy, Decision, EnsembleOutput, OutputRows, OutputSpec, RowDecisions, Strategy

_STORE_REJECTIONS = {
    Push.DUPLICATE: (RejectReason.DUPLICATE, "a candle with this open time is already in the window"),
    Push.OUT_OF_ORDER: (RejectReason.OUT_OF_ORDER, "older than the newest candle of the window"),
    Push.STALE: (RejectReason.STALE, "older than the oldest candle of the window"),
}
_NULL_KEY = Rejection(RejectReason.NULL_KEY, "a record without a key is not partitioned by its symbol")


class SourceRecord(msgspec.Struct, frozen=True, gc=False):
    """A message from any candle source (Kafka, MQTT, a file), with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    """The record timestamp (Kafka CreateTime/LogAppendTime); candle times are checked against it."""
    keyed: bool = True
    """The transport has record keys (Kafka), so a record without one is rejected; MQTT has none."""


class ScoreRequest(msgspec.Struct, gc=False):
    """A full window to score, and what the signal for it needs (a struct the collector does not
    track: one is made per scored candle)."""

    key: WindowKey
    ts: int
    window: npt.NDArray[np.float32]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    history: int
    """How many earlier outputs of this key the strategy may use."""
    publish: bool = True
    """False for re-scored history after a rebuild: it feeds the strategy, nothing is published."""
    received_ns: int = 0
    """Monotonic clock when the record was taken from the source (for queue-wait metrics)."""
    sequence: int = 0
    """Position among the ingestor's requests: releases of windows are applied in this order."""
    scored_by: str | None = None
    """For re-scored history: the model version that scored this window before the restart, as the
    commit says; an output of another version does not enter the strategy's memory."""
    route: int = 0
    """Which of the pipeline's routes (by position) scores it: set by the pipeline at ingest."""
    row: int = -1
    """The window store's slot holding the key's window: a streaming scorer keeps its states there."""
    slots: npt.NDArray[np.int64] = msgspec.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Slot index (``Interval.slot_index``) of each candle of ``window``, oldest first: the step
    path's restarts and its cached states go by them."""


class OutputBatch(Protocol):
    """Model outputs for a batch, indexable by row (``models.artifact.ModelOutputs`` fits)."""

    @property
    def probabilities(self) -> npt.NDArray[np.float32]: ...
    @property
    def quantiles(self) -> npt.NDArray[np.float32]: ...
    @property
    def disagreement(self) -> npt.NDArray[np.float32]: ...


@dataclass(slots=True)
class IngestCounters:
    consumed: int = 0
    replayed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


ReleaseHandler = Callable[[WindowKey, int], None]
"""Told of a key whose window went (evicted, expired, dropped), with the sequence of the next request."""


SHORT_RUN = 8
"""Runs of fewer records than this are ingested record by record: at a steady rate a poll holds a
candle or two per partition, and for those the run path's array operations cost more than they
save (a run of one 27-64 µs against 13-16 µs; the two break even at about 8-12)."""


class CandleIngestor:
    """Validation and windows: records in, score requests and dead letters out."""

    def __init__(
        self,
        validator: CandleValidator,
        store: WindowStore,
        strategy_memory: int,
        on_release: ReleaseHandler | None = None,
        *,
        short_run: int = SHORT_RUN,
    ) -> None:
        if store.span - store.length < strategy_memory - 1:
            raise ValueError("the window store keeps too little history for the strategy's memory")
        self.validator = validator
        self.store = store
        self.counters = IngestCounters()
        self.on_release = on_release
        self._history_limit = strategy_memory - 1
        self._issued = 0
        """Requests made so far; the next one's sequence."""
        self.short_run = short_run
        """``ingest_many`` takes runs shorter than this record by record (``SHORT_RUN``)."""

    def _next_sequence(self) -> int:
        sequence = self._issued
        self._issued += 1
        return sequence

    def _report_released(self) -> None:
        released = self.store.take_released()
        if self.on_release is not None:
            for key in released:
                self.on_release(key, self._issued)

    def ingest(self, record: SourceRecord, received_ns: int = 0) -> ScoreRequest | DeadLetter | None:
        """One live record: a request when its window is full, a dead letter when it is rejected."""
        self.counters.consumed += 1
        outcome = self._push(record)
        self._report_released()
        if isinstance(outcome, Rejection):
            self.counters.rejected[outcome.reason] += 1
            return _dead_letter(record, outcome)
        if outcome is None:
            return None
        candle, slot = outcome
        return ScoreRequest(
            key=(candle.symbol, candle.interval),
            ts=candle.ts,
            window=self.store.newest_window(slot),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            history=min(self._history_limit, self.store.history_available(slot)),
            received_ns=received_ns,
            sequence=self._next_sequence(),
            row=slot,
            slots=self.store.newest_slots(slot),
        )

    def ingest_many(
        self, records: Sequence[SourceRecord], messages: Sequence[CandleMessage | None], received_ns: int, room: int
    ) -> tuple[list[ScoreRequest], list[DeadLetter], int]:
        """``ingest`` of each live record in order until ``room`` requests are made: the requests, the
        dead letters, and how many records were taken. ``messages[i]`` is ``records[i]``'s value decoded
        (``decode_message``), or ``None`` to validate it from its bytes. The windows are written a run
        at a time (``WindowStore.append``) and the clock read once unless a candle opens after it; a
        run shorter than ``short_run`` goes record by record (``ingest``)."""
        self._report_released()
        requests: list[ScoreRequest] = []
        letters: list[DeadLetter] = []
        taken = 0
        while taken < len(records) and len(requests) < room:
            # Each record makes at most one request: this run cannot overshoot ``room``.
            run = records[taken : taken + room - len(requests)]
            if len(run) < self.short_run:
                for record in run:
                    outcome = self.ingest(record, received_ns)
                    if isinstance(outcome, ScoreRequest):
                        requests.append(outcome)
                    elif outcome is not None:
                        letters.append(outcome)
            else:
                self._ingest_run(run, messages[taken : taken + len(run)], received_ns, requests, letters)
            taken += len(run)
        return requests, letters, taken

    def _ingest_run(
        self,
        records: Sequence[SourceRecord],
        messages: Sequence[CandleMessage | None],
        received_ns: int,
        requests: list[ScoreRequest],
        letters: list[DeadLetter],
    ) -> None:
        validator = self.validator
        max_bytes = validator.max_message_bytes
        now_ms = validator.now_ms()
        checked: list[Candle | Rejection] = []
        for record, message in zip(records, messages, strict=True):
            if record.keyed and record.key is None:
                checked.append(_NULL_KEY)
            elif message is None or len(record.value) > max_bytes:
                checked.append(validator.validate(record.value, record.key, record.timestamp_ms))
            else:
                checked.append(validator.check(message, record.key, record.timestamp_ms, now_ms))
        candles = [c for c in checked if isinstance(c, Candle)]
        accepted = [r for r, c in zip(records, checked, strict=True) if isinstance(c, Candle)]
        appended = self.store.append(candles, [r.partition for r in accepted], [r.offset for r in accepted])
        if self.on_release is not None:
            for key, before in appended.released:
                self.on_release(key, self._issued + before)
        self.counters.consumed += len(records)
        ready = 0
        verdicts = iter(zip(appended.verdicts, appended.slots, strict=True))
        for record, outcome in zip(records, checked, strict=True):
            if isinstance(outcome, Rejection):
                rejection = outcome
            else:
                verdict, slot = next(verdicts)
                if verdict is Push.READY:
                    requests.append(
                        ScoreRequest(
                            key=(outcome.symbol, outcome.interval),
                            ts=outcome.ts,
                            window=appended.windows[ready],
                            topic=record.topic,
                            partition=record.partition,
                            offset=record.offset,
                            timestamp_ms=record.timestamp_ms,
                            history=min(self._history_limit, appended.histories[ready]),
                            received_ns=received_ns,
                            sequence=self._next_sequence(),
                            row=slot,
                            slots=appended.indices[ready],
                        )
                    )
                    ready += 1
                    continue
                if verdict is Push.WARMING:
                    continue
                rejection = _store_rejection(outcome, verdict, slot)
            self.counters.rejected[rejection.reason] += 1
            letters.append(_dead_letter(record, rejection))

    def replay(self, record: SourceRecord) -> None:
        """A record read again to rebuild windows: same decisions, nothing scored or dead-lettered."""
        self.counters.replayed += 1
        self._push(record)
        self._report_released()

    def _push(self, record: SourceRecord) -> tuple[Candle, int] | Rejection | None:
        if record.keyed and record.key is None:
            return _NULL_KEY
        checked = self.validator.validate(record.value, record.key, record.timestamp_ms)
        if isinstance(checked, Rejection):
            return checked
        bound = self._bound_partition(checked)
        if bound is not None and bound != record.partition:
            return _store_rejection(checked, None, bound)
        verdict, slot = self.store.push(checked, record.partition, record.offset)
        if verdict is Push.READY:
            return checked, slot
        if verdict is Push.WARMING:
            return None
        return _store_rejection(checked, verdict, slot)

    def _bound_partition(self, candle: Candle) -> int | None:
        """The partition a key's window is fed from: a key is bound to one partition while its
        window lives, and released with it (revocation drops a partition's windows, or eviction)."""
        slot = self.store.slot_of((candle.symbol, candle.interval))
        return None if slot is None else self.store.partition_of(slot)

    def history_requests(self, partition: int, topic: str) -> list[ScoreRequest]:
        """Every history request of a partition that was just rebuilt (``history_batches``), in one list."""
        return [request for batch in self.history_batches(partition, topic) for request in batch]

    def history_batches(
        self, partition: int, topic: str, size: int = 512, scored: ScoredSince | None = None
    ) -> Iterator[list[ScoreRequest]]:
        """For every key of a partition that was just rebuilt, those of its newest ``memory - 1``
        full windows (the newest included) that end at a received candle, oldest first, in lists of
        at most ``size``: scoring them restores the strategy's memory to what it was before the
        restart. Windows ending at a forward-filled candle were never scored live, so neither are
        they here, nor, when the commit names the model version that scored the partition
        (``scored``), windows older than the first one it scored. Made lazily, a batch at a time, so a
        rebuild of many keys is never one long stall."""
        version, first = scored if scored is not None else (None, 0)
        batch: list[ScoreRequest] = []
        for slot in self.store.slots_in(partition).tolist():
            backs = self.store.scored_backs(slot, self._history_limit)
            offsets = self.store.gather_offsets([slot] * len(backs), backs).tolist()
            backs = [back for back, offset in zip(backs, offsets, strict=True) if offset >= first]
            if not backs:
                continue
            windows = self.store.gather([slot] * len(backs), backs)
            slots = self.store.gather_slots([slot] * len(backs), backs)
            ends = self.store.gather_ts([slot] * len(backs), backs)
            offsets = offsets[len(offsets) - len(backs) :]
            key = self.store.key_of(slot)
            for i in range(len(backs)):
                batch.append(
                    ScoreRequest(
                        key,
                        int(ends[i]),
                        windows[i],
                        topic,
                        partition,
                        offsets[i],
                        0,
                        i,
                        publish=False,
                        sequence=self._next_sequence(),
                        scored_by=version,
                        row=slot,
                        slots=slots[i],
                    )
                )
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch


def _store_rejection(candle: Candle, verdict: Push | None, bound: int) -> Rejection:
    """Why the window store refused a candle; ``verdict`` ``None``: its key's window is fed from
    partition ``bound`` (a key is bound to one partition while its window lives)."""
    if verdict is None:
        return Rejection(
            RejectReason.PARTITION_MISMATCH,
            f"{candle.symbol} {candle.interval} is read from partition {bound}; "
            "a second partition would break per-symbol order",
        )
    reason, detail = _STORE_REJECTIONS[verdict]
    return Rejection(reason, f"{detail} ({format_ts(candle.ts)})")


def _dead_letter(record: SourceRecord, rejection: Rejection) -> DeadLetter:
    return DeadLetter(
        record.key,
        record.value,
        rejection.reason.value,
        rejection.detail,
        record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms,
    )


class SignalBuilder:
    """Model outputs in, signals out, through the strategy and each key's recent outputs."""

    def __init__(
        self,
        strategy: Strategy,
        spec: OutputSpec,
        strategy_name: str,
        clock: Callable[[], str],
        *,
        model: str,
        route: str,
    ) -> None:
        self.strategy = strategy
        self.spec = spec
        self.strategy_name = strategy_name
        self.model = model
        """The name of the route's model: a reload keeps it (``daemon.serving.check_compatible``)."""
        self.route = route
        self._clock = clock
        self._history: dict[WindowKey, deque[tuple[str, EnsembleOutput]]] = {}
        """Each key's recent outputs with the model version that made them; kept only for strategies
        with a memory (an empty deque is ~600 B), and only while the key's window lives."""
        self._releases: deque[tuple[int, WindowKey]] = deque()
        """Keys whose windows went, with the sequence of the first request made after: forgotten once
        every request before it is decided (requests still in the pipeline need their history)."""
        self._decided = 0
        """Sequence of the request decided last (see ``release``)."""
        self._scored: dict[TopicPartition, ScoredSince] = {}
        """Per partition, the model version that scored its latest windows and the first offset it
        scored: committed with each checkpoint, so that a rebuild restores only that version's outputs."""
        self._depth = max(0, strategy.memory - 1)
        self._horizon_keys = [str(h) for h in spec.horizons]
        self._ts_text: dict[int, str] = {}
        """Open times already formatted: every symbol's candle of one period has the same one."""
        self.not_finite = 0
        """Published windows whose model output held a NaN or an infinity: counted, never published."""

    def build(self, requests: Sequence[ScoreRequest], outputs: OutputBatch, model_version: str) -> list[Signal | None]:
        """One signal per published request (``None`` for history requests and for outputs that
        are not finite), in request order."""
        if not requests:
            return []
        finite: list[bool] = np.asarray(
            np.isfinite(outputs.probabilities).all(axis=1)
            & np.isfinite(outputs.quantiles).all(axis=(1, 2))
            & np.isfinite(outputs.disagreement).all(axis=1),
            dtype=np.bool_,
        ).tolist()
        rows = OutputRows(outputs.probabilities, outputs.quantiles, outputs.disagreement)
        decided = self._decide_rows(rows)
        if decided is None:
            return self._build_each(requests, rows, finite, model_version)
        return self._build_rows(requests, rows, finite, decided, model_version)

    def _decide_rows(self, rows: OutputRows) -> RowDecisions | None:
        """The whole batch's decisions over arrays, where the strategy can (memory of one candle, a
        ``decide_rows``); ``None``: decide each request with ``decide`` and its history."""
        if self._depth or not isinstance(self.strategy, BatchStrategy):
            return None
        return self.strategy.decide_rows(rows)

    def _build_rows(
        self,
        requests: Sequence[ScoreRequest],
        rows: OutputRows,
        finite: list[bool],
        decided: RowDecisions,
        model_version: str,
    ) -> list[Signal | None]:
        """``_build_each`` for a strategy without memory whose decisions were made for the whole batch:
        no history is kept, so releases are applied once for the batch."""
        self._apply_releases(requests[-1].sequence, max(request.sequence for request in requests))
        actions, confidences = decided.actions, decided.confidences
        make = self._signal_maker(model_version, rows.probabilities.tolist(), rows.quantiles.tolist(), rows)
        signals: list[Signal | None] = []
        for row, request in enumerate(requests):
            if not self._gate(request, finite[row], model_version):
                signals.append(None)
                continue
            signals.append(make(request, row, actions[row].value, confidences[row]))
        return signals

    def _build_each(
        self, requests: Sequence[ScoreRequest], rows: OutputRows, finite: list[bool], model_version: str
    ) -> list[Signal | None]:
        """Each request decided by ``decide`` over its own recent outputs, in request order."""
        probabilities = rows.probabilities.tolist()
        quantiles = rows.quantiles.tolist()
        disagreement = rows.disagreement.tolist()
        make = self._signal_maker(model_version, probabilities, quantiles, rows)
        signals: list[Signal | None] = []
        for row, request in enumerate(requests):
            self._apply_releases(request.sequence)
            publish = self._gate(request, finite[row], model_version)
            if publish is None:
                signals.append(None)
                continue
            output = EnsembleOutput(
                probabilities=tuple(probabilities[row]),
                quantiles=tuple(tuple(q) for q in quantiles[row]),
                disagreement=tuple(disagreement[row]),
            )
            decision = self._decide(request, output, model_version, publish)
            if decision is None:
                signals.append(None)
                continue
            signals.append(make(request, row, decision.action.value, decision.confidence))
        return signals

    def _gate(self, request: ScoreRequest, finite: bool, model_version: str) -> bool | None:
        """``None`` for a request another version scored before the restart (not this memory); otherwise
        it is noted as scored, and whether its signal is published (a non-finite output is counted, not)."""
        if not request.publish and request.scored_by not in (None, model_version):
            return None
        self._note_scored((request.topic, request.partition), model_version, request.offset)
        if request.publish and not finite:
            self.not_finite += 1
            return False
        return request.publish

    def _note_scored(self, partition: TopicPartition, model_version: str, offset: int) -> None:
        scored = self._scored.get(partition)
        if scored is None or scored[0] != model_version or offset < scored[1]:
            self._scored[partition] = (model_version, offset)

    def seed(self, partition: TopicPartition, scored: ScoredSince | None) -> None:
        """A partition just rebuilt: what its commit says about the version that scored it."""
        if scored is None:
            self._scored.pop(partition, None)
        else:
            self._scored[partition] = scored

    def stamped(self, checkpoint: dict[TopicPartition, Checkpoint]) -> dict[TopicPartition, Checkpoint]:
        """The checkpoint with, per partition, the model version that scored it and from which offset."""
        stamped = {}
        for partition, mark in checkpoint.items():
            scored = self._scored.get(partition)
            stamped[partition] = mark if scored is None else replace(mark, model=scored[0], model_from=scored[1])
        return stamped

    def release(self, key: WindowKey, sequence: int) -> None:
        """A key's window went before request ``sequence`` was made: forget its history once every
        earlier request is decided (at once when they all are)."""
        if sequence <= self._decided:
            self._history.pop(key, None)
        else:
            self._releases.append((sequence, key))

    def _apply_releases(self, sequence: int, newest: int | None = None) -> None:
        """Request ``sequence`` is being decided, after every request up to ``newest`` (default: itself)."""
        releases = self._releases
        newest = sequence if newest is None else newest
        while releases and releases[0][0] <= newest:
            self._history.pop(releases.popleft()[1], None)
        self._decided = sequence

    @property
    def remembered(self) -> int:
        """Keys whose recent outputs are held."""
        return len(self._history)

    def _decide(
        self, request: ScoreRequest, output: EnsembleOutput, model_version: str, publish: bool
    ) -> Decision | None:
        past = None
        if self._depth:
            past = self._history.get(request.key)
            if past is None:
                past = self._history[request.key] = deque(maxlen=self._depth)
        # An output that is not finite still takes its place in the memory, so that the windows
        # after it see the same history live and after a rebuild (NaN compares false: no band).
        if not publish:
            if past is not None:
                past.append((model_version, output))
            return None
        earlier: list[EnsembleOutput] = []
        if past is not None and request.history:
            # The strategy's memory starts again at a model version change: only outputs of the
            # version deciding now count (docs/reliability.md, "Strategy memory").
            for version, remembered in reversed(list(past)[max(0, len(past) - request.history) :]):
                if version != model_version:
                    break
                earlier.append(remembered)
            earlier.reverse()
        decision = self.strategy.decide([*earlier, output])
        if past is not None:
            past.append((model_version, output))
        return decision

    def _signal_maker(
        self,
        model_version: str,
        probabilities: list[list[float]],
        quantiles: list[list[list[float]]],
        rows: OutputRows,
    ) -> Callable[[ScoreRequest, int, str, float], Signal]:
        """Builds the signal of a request from its row of the outputs (``rows``, and its probabilities and
        quantiles as lists: Python floats that are exact copies of the float32 outputs, a fresh list per
        row that the signal takes) and its decision (action, confidence). What every signal of the batch
        shares is looked up once."""
        produced_at = self._clock()
        disagreement = rows.disagreement[:, 0].tolist()
        keys = self._horizon_keys
        horizon = self.spec.horizons[0]
        levels = self.spec.quantiles
        strategy, model, route = self.strategy_name, self.model, self.route
        format_ts = self._format_ts

        def make(request: ScoreRequest, row: int, action: str, confidence: float) -> Signal:
            symbol, interval = request.key
            p = probabilities[row]
            return Signal(
                signal_id=signal_id(model_version, strategy, symbol, interval, request.ts),
                symbol=symbol,
                interval=interval,
                ts=format_ts(request.ts),
                action=action,  # type: ignore[arg-type]  # an Action's value
                confidence=confidence,
                probability=p[0],
                horizon=horizon,
                # The model's outputs have one column per horizon of the spec (``check_compatible``): zip's
                # strict check, a third of the dicts' cost, is not needed.
                probabilities=dict(zip(keys, p, strict=False)),
                quantiles=dict(zip(keys, quantiles[row], strict=False)),
                quantile_levels=list(levels),
                disagreement=disagreement[row],
                model_version=model_version,
                model=model,
                route=route,
                strategy=strategy,
                produced_at=produced_at,
            )

        return make

    def _format_ts(self, ts: int) -> str:
        text = self._ts_text.get(ts)
        if text is None:
            if len(self._ts_text) >= 4096:
                self._ts_text.clear()
            text = self._ts_text[ts] = format_ts(ts)
        return text

    def forget(self, keys: Iterable[WindowKey]) -> None:
        """Drop the remembered outputs of keys whose windows were dropped."""
        for key in keys:
            self._history.pop(key, None)
