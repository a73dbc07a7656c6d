"""The synchronous core that the live daemon and the backtest share.

``CandleIngestor`` turns source records into score requests (or dead letters) through
validation and the window store; ``SignalBuilder`` turns model outputs into signals through the
strategy. Neither touches asyncio, Kafka or torch: the asyncio pipeline (``daemon.pipeline``)
and ``candlecast backtest`` drive the same objects, which is what makes a backtest's signals
equal the live daemon's.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from daemon.candle import Candle, CandleValidator, Rejection, RejectReason, format_ts
from daemon.signal import DeadLetter, Signal, signal_id
from daemon.window import Push, WindowKey, WindowStore
from strategies.base import EnsembleOutput, OutputSpec, Strategy

_STORE_REJECTIONS = {
    Push.DUPLICATE: (RejectReason.DUPLICATE, "a candle with this open time is already in the window"),
    Push.OUT_OF_ORDER: (RejectReason.OUT_OF_ORDER, "older than the newest candle of the window"),
    Push.STALE: (RejectReason.STALE, "older than the oldest candle of the window"),
}


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


@dataclass(slots=True)
class ScoreRequest:
    """A full window to score, and what the signal for it needs."""

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


class CandleIngestor:
    """Validation and windows: records in, score requests and dead letters out."""

    def __init__(self, validator: CandleValidator, store: WindowStore, strategy_memory: int) -> None:
        if store.span - store.length < strategy_memory - 1:
            raise ValueError("the window store keeps too little history for the strategy's memory")
        self.validator = validator
        self.store = store
        self.counters = IngestCounters()
        self._history_limit = strategy_memory - 1

    def ingest(self, record: SourceRecord, received_ns: int = 0) -> ScoreRequest | DeadLetter | None:
        """One live record: a request when its window is full, a dead letter when it is rejected."""
        self.counters.consumed += 1
        outcome = self._push(record)
        if isinstance(outcome, Rejection):
            self.counters.rejected[outcome.reason] += 1
            return DeadLetter(
                record.key,
                record.value,
                outcome.reason.value,
                outcome.detail,
                record.topic,
                record.partition,
                record.offset,
                record.timestamp_ms,
            )
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
        )

    def replay(self, record: SourceRecord) -> None:
        """A record read again to rebuild windows: same decisions, nothing scored or dead-lettered."""
        self.counters.replayed += 1
        self._push(record)

    def _push(self, record: SourceRecord) -> tuple[Candle, int] | Rejection | None:
        if record.keyed and record.key is None:
            return Rejection(RejectReason.NULL_KEY, "a record without a key is not partitioned by its symbol")
        checked = self.validator.validate(record.value, record.key, record.timestamp_ms)
        if isinstance(checked, Rejection):
            return checked
        bound = self._bound_partition(checked)
        if bound is not None and bound != record.partition:
            return Rejection(
                RejectReason.PARTITION_MISMATCH,
                f"{checked.symbol} {checked.interval} is read from partition {bound}; "
                "a second partition would break per-symbol order",
            )
        verdict, slot = self.store.push(checked, record.partition, record.offset)
        if verdict is Push.READY:
            return checked, slot
        if verdict is Push.WARMING:
            return None
        reason, detail = _STORE_REJECTIONS[verdict]
        return Rejection(reason, f"{detail} ({format_ts(checked.ts)})")

    def _bound_partition(self, candle: Candle) -> int | None:
        """The partition a key's window is fed from: a key is bound to one partition while its
        window lives, and released with it (revocation drops a partition's windows, or eviction)."""
        slot = self.store.slot_of((candle.symbol, candle.interval))
        return None if slot is None else self.store.partition_of(slot)

    def history_requests(self, partition: int, topic: str) -> list[ScoreRequest]:
        """For every key of a partition that was just rebuilt, its newest ``memory - 1`` full
        windows (the newest included), oldest first: scoring them restores the strategy's memory
        to what it was before the restart."""
        requests: list[ScoreRequest] = []
        for slot in self.store.slots_in(partition).tolist():
            count = min(self._history_limit, self.store.full_windows(slot))
            if count == 0:
                continue
            backs = list(range(count - 1, -1, -1))
            windows = self.store.gather([slot] * count, backs)
            ends = self.store.gather_ts([slot] * count, backs)
            key = self.store.key_of(slot)
            requests.extend(
                ScoreRequest(key, int(ends[i]), windows[i], topic, partition, -1, 0, i, publish=False)
                for i in range(count)
            )
        return requests


class SignalBuilder:
    """Model outputs in, signals out, through the strategy and each key's recent outputs."""

    def __init__(self, strategy: Strategy, spec: OutputSpec, strategy_name: str, clock: Callable[[], str]) -> None:
        self.strategy = strategy
        self.spec = spec
        self.strategy_name = strategy_name
        self._clock = clock
        self._history: dict[WindowKey, deque[EnsembleOutput]] = {}
        """Each key's recent outputs; kept only for strategies with a memory (an empty deque is ~600 B)."""
        self._depth = max(0, strategy.memory - 1)
        self._horizon_keys = [str(h) for h in spec.horizons]
        self._ts_text: dict[int, str] = {}
        """Open times already formatted: every symbol's candle of one period has the same one."""
        self.not_finite = 0
        """Published windows whose model output held a NaN or an infinity: counted, never published."""

    def build(self, requests: Sequence[ScoreRequest], outputs: OutputBatch, model_version: str) -> list[Signal | None]:
        """One signal per published request (``None`` for history requests and for outputs that
        are not finite), in request order."""
        finite: list[bool] = np.asarray(
            np.isfinite(outputs.probabilities).all(axis=1)
            & np.isfinite(outputs.quantiles).all(axis=(1, 2))
            & np.isfinite(outputs.disagreement).all(axis=1),
            dtype=np.bool_,
        ).tolist()
        probabilities = outputs.probabilities.tolist()
        quantiles = outputs.quantiles.tolist()
        disagreement = outputs.disagreement.tolist()
        produced_at = self._clock()
        signals: list[Signal | None] = []
        for row, request in enumerate(requests):
            output = EnsembleOutput(
                probabilities=tuple(probabilities[row]),
                quantiles=tuple(tuple(q) for q in quantiles[row]),
                disagreement=tuple(disagreement[row]),
            )
            publish = request.publish and finite[row]
            if request.publish and not finite[row]:
                self.not_finite += 1
            signals.append(self._decide(request, output, model_version, produced_at, publish))
        return signals

    def _decide(
        self, request: ScoreRequest, output: EnsembleOutput, model_version: str, produced_at: str, publish: bool
    ) -> Signal | None:
        past = None
        if self._depth:
            past = self._history.get(request.key)
            if past is None:
                past = self._history[request.key] = deque(maxlen=self._depth)
        # An output that is not finite still takes its place in the memory, so that the windows
        # after it see the same history live and after a rebuild (NaN compares false: no band).
        if not publish:
            if past is not None:
                past.append(output)
            return None
        earlier = list(past)[len(past) - request.history :] if past is not None and request.history else []
        decision = self.strategy.decide([*earlier, output])
        if past is not None:
            past.append(output)
        symbol, interval = request.key
        keys = self._horizon_keys
        return Signal(
            signal_id=signal_id(model_version, self.strategy_name, symbol, interval, request.ts),
            symbol=symbol,
            interval=interval,
            ts=self._format_ts(request.ts),
            action=decision.action.value,
            confidence=decision.confidence,
            probability=output.probabilities[0],
            horizon=self.spec.horizons[0],
            probabilities=dict(zip(keys, output.probabilities, strict=True)),
            quantiles={key: list(q) for key, q in zip(keys, output.quantiles, strict=True)},
            quantile_levels=list(self.spec.quantiles),
            disagreement=output.disagreement[0],
            model_version=model_version,
            strategy=self.strategy_name,
            produced_at=produced_at,
        )

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
