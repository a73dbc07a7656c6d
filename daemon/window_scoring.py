"""Scoring windows sent to the query API exactly as the daemon scores candles: pure, no I/O.

Each window's candles go, in order and as the JSON messages a producer would send, through a
fresh core built from the daemon's settings (``daemon.core.build_core``): the same validation,
window store, strategy and signal builder, as ``candlecast backtest`` uses them. A window's
candles are treated as its symbol's whole history: every candle that completes a window is scored
(so a strategy with a memory sees up to ``memory - 1`` earlier outputs), and the answer is the
signal the daemon would publish for the last candle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from daemon.candle import CandleMessage, parse_ts
from daemon.core import Core
from daemon.engine import ScoreRequest, SourceRecord
from daemon.signal import DeadLetter, Signal
from models.artifact import ModelOutputs

SOURCE = "api"
"""Topic name of the records a window's candles become (it appears in no signal field)."""
_encoder = msgspec.json.Encoder()


class CandleFields(Protocol):
    """A candle of a window: the message fields without the symbol and interval, which the window gives."""

    @property
    def ts(self) -> int | str: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...


class WindowRefusedError(Exception):
    """A window the daemon would not score; ``field`` names the offending part of the window."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"{field}: {reason}: {detail}")
        self.field = field
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class PreparedWindow:
    core: Core
    requests: list[ScoreRequest]
    """Every window the candles complete, oldest first; the last one is the answer's."""


def max_candles(core: Core) -> int:
    """Candles that matter for one answer: a window, and the windows the strategy remembers before it."""
    return core.store.length + core.builder.strategy.memory - 1


def prepare(core: Core, symbol: str, interval: str, candles: Sequence[CandleFields]) -> PreparedWindow:
    """Run the candles through a fresh core; raises ``WindowRefusedError`` naming the first bad candle."""
    limit = max_candles(core)
    if len(candles) > limit:
        raise WindowRefusedError("candles", "too_many", f"{len(candles)} candles; at most {limit} change the answer")
    requests: list[ScoreRequest] = []
    key = symbol.encode()
    for index, candle in enumerate(candles):
        message = CandleMessage(
            symbol, interval, candle.ts, candle.open, candle.high, candle.low, candle.close, candle.volume
        )
        record = SourceRecord(SOURCE, 0, index, key, _encoder.encode(message), parse_ts(candle.ts) or 0)
        result = core.ingestor.ingest(record)
        if isinstance(result, DeadLetter):
            raise WindowRefusedError(f"candles.{index}", result.reason, result.detail)
        if result is not None:
            requests.append(result)
    if not requests or requests[-1].offset != len(candles) - 1:
        raise WindowRefusedError(
            "candles",
            "incomplete_window",
            f"the last candle does not complete a window of {core.store.length} candles "
            "(too few, or a gap the gap policy does not bridge)",
        )
    return PreparedWindow(core, requests)


def answer(prepared: PreparedWindow, outputs: ModelOutputs, model_version: str) -> Signal | None:
    """The signal the daemon would publish for the last candle; ``None`` when it would publish none
    (the model's output is not finite)."""
    return prepared.core.builder.build(prepared.requests, outputs, model_version)[-1]
