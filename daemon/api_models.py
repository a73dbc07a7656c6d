"""What the query API reads and answers: its request and response bodies, as pydantic models.

FastAPI builds the OpenAPI document's schemas from these; ``SignalBody`` mirrors the signal message
of the signals topic field for field (a test holds them together).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from daemon.candle import SYMBOL_PATTERN
from daemon.signal import Signal
from daemon.signal_store import StoredSignal


class ErrorBody(BaseModel):
    error: str
    field: str | None = Field(None, description="The offending field, dotted (body.windows.0.candles.3.high).")
    reason: str | None = Field(None, description="Machine-readable reason (a dead-letter reason for candles).")


class SignalBody(BaseModel):
    """A published signal, as on the signals topic (docs/signals.md)."""

    model_config = ConfigDict(title="Signal", populate_by_name=True)

    signal_id: str
    symbol: str
    interval: str
    ts: str = Field(description="Open time of the scored candle, ISO-8601 UTC.")
    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float
    probability: float
    horizon: int
    probabilities: dict[str, float]
    quantiles: dict[str, list[float]]
    quantile_levels: list[float]
    disagreement: float
    model_version: str
    model: str | None = Field(None, description="Name of the model that scored the candle.")
    route: str | None = Field(None, description="The route that claimed the candle.")
    strategy: str
    produced_at: str
    schema_: str = Field(alias="schema")

    @classmethod
    def of(cls, signal: Signal) -> SignalBody:
        return cls.model_validate(msgspec.to_builtins(signal))


class StoredSignalBody(BaseModel):
    route: str
    committed_at_ms: int = Field(description="When the daemon committed it (epoch milliseconds).")
    signal: SignalBody

    @classmethod
    def of(cls, stored: StoredSignal) -> StoredSignalBody:
        return cls(route=stored.route, committed_at_ms=stored.committed_ms, signal=SignalBody.of(stored.signal))


class RankedSignalBody(StoredSignalBody):
    age_s: float = Field(description="Seconds since the scored candle closed.")


class Figures(BaseModel):
    hit_rate: float
    brier: float
    ece: float


class ModelSummary(BaseModel):
    route: str
    name: str
    version: str
    created_at: str
    interval: str
    window: int
    horizons: list[int]
    members: list[str]
    metrics: dict[str, dict[str, float]] = Field(description="The evaluation figures recorded in the manifest.")
    reference: Figures = Field(
        description="Validation quality at the primary horizon (what live quality is compared to)."
    )


class RegistryVersion(BaseModel):
    ref: str
    created_at: str | None
    current: bool


class ModelDetails(ModelSummary):
    manifest: dict[str, Any] = Field(description="The artifact's manifest (docs/schemas/manifest.v1.json).")
    registry_versions: list[RegistryVersion] = Field(
        description="Versions of this name in the registry the model is served from (empty for a file)."
    )


class RouteBody(BaseModel):
    name: str
    symbols: str = Field(description="Shell-style pattern of the symbols the route claims.")
    interval: str
    model: str
    model_version: str
    strategy: str


class QualityBody(BaseModel):
    horizon: int
    resolved: int
    hit_rate: float
    brier: float
    ece: float = Field(description="Expected calibration error (10 bins).")


class DriftBody(BaseModel):
    samples: int
    feature_psi: dict[str, float]
    feature_ks: dict[str, float]
    prediction_psi: float
    prediction_ks: float


class RouteStats(BaseModel):
    route: str
    interval: str
    model: str
    model_version: str
    signals: dict[str, int] = Field(description="Signals committed since start, by action.")
    quality: list[QualityBody] = Field(description="This symbol's resolved predictions since the model was loaded.")
    route_quality: list[QualityBody] = Field(
        description="The route's live quality over all its symbols (the candlecast_live_* gauges)."
    )
    drift: DriftBody | None = Field(
        description="The route's drift over all its symbols (the candlecast_*_psi/_ks gauges); "
        "null until enough samples."
    )


class SymbolStats(BaseModel):
    symbol: str
    routes: list[RouteStats]


Price = Annotated[float, Field(allow_inf_nan=False)]


class CandleBody(BaseModel):
    """A candle of a window; the window gives the symbol and interval."""

    model_config = ConfigDict(extra="forbid")

    ts: Annotated[int, Field(ge=0, le=2**53)] | Annotated[str, Field(max_length=40)] = Field(
        description="Open time: epoch milliseconds or ISO-8601 with a UTC offset."
    )
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Price


class WindowBody(BaseModel):
    """One symbol's newest candles, oldest first; the last one is scored."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL_PATTERN)
    interval: str = Field(max_length=16)
    candles: list[CandleBody] = Field(
        min_length=1,
        max_length=4096,
        description="At least the model's window; up to window + strategy memory - 1 (the strategy's history).",
    )


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[WindowBody] = Field(min_length=1, description="Windows to score in one forward pass.")


class ScoreAnswer(BaseModel):
    route: str
    model: str
    model_version: str
    published: bool = Field(description="False when the daemon would publish nothing (output not finite).")
    signal: SignalBody | None


class BatchAnswer(BaseModel):
    answers: list[ScoreAnswer]
