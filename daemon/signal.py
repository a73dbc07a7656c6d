"""Signal messages (the contract with execution engines) and dead-letter records.

A signal's ``signal_id`` is a UUIDv5 of the model version, the strategy (name and parameters),
the symbol, the interval and the candle's open time: the same candle scored by the same model and
strategy always gets the same id, so consumers deduplicate by it across redeliveries, restarts
and replays.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from daemon.candle import CANDLE_SCHEMA

SIGNAL_SCHEMA = "candlecast.signal/1"
CONTENT_TYPE = "application/json"
_NAMESPACE = uuid.UUID("6f1c3a52-3f0e-5b8e-9a57-2c1d0c8e4b11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


# Not tracked by the garbage collector (``gc=False``): its fields hold only strings, numbers and dicts
# and lists of them, so it is never part of a reference cycle, and a candle close makes one per symbol.
class Signal(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A trading signal for one scored candle (JSON on the signals topic, key = symbol)."""

    signal_id: str
    """Deterministic id: the same candle, model version and strategy always give the same id."""
    symbol: str
    interval: str
    ts: str
    """Open time of the scored candle, ISO-8601 UTC."""
    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float
    """Calibrated probability that the action's direction is right (``docs/signals.md``)."""
    probability: float
    """Calibrated probability that the close ``horizon`` candles ahead is above this candle's close."""
    horizon: int
    """The primary horizon, in candles."""
    probabilities: dict[str, float]
    """Calibrated probability of an up move for every horizon the model predicts, keyed by horizon."""
    quantiles: dict[str, list[float]]
    """Per horizon, predicted log-return quantiles at the levels in ``quantile_levels``."""
    quantile_levels: list[float]
    disagreement: float
    """Standard deviation of the members' probabilities at the primary horizon."""
    model_version: str
    model: str | None = None
    """Name of the model that scored the candle (its manifest's ``name``); absent from signals of
    daemons before routes."""
    route: str | None = None
    """The route that claimed the candle (``default`` for a daemon without ``[[routes]]``); absent
    from signals of daemons before routes."""
    strategy: str
    produced_at: str
    """When the daemon produced the signal, ISO-8601 UTC (differs between replays)."""
    schema: str = SIGNAL_SCHEMA


def strategy_ref(name: str, params: Mapping[str, Any]) -> str:
    """``name`` alone for default parameters would hide changes; the reference names them all."""
    inner = ",".join(f"{key}={params[key]}" for key in sorted(params))
    return f"{name}({inner})"


def signal_id(model_version: str, strategy: str, symbol: str, interval: str, ts_ms: int) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, built from the SHA-1 digest directly: a third of the
    cost per signal (no ``UUID`` object), the same text."""
    name = f"{model_version}|{strategy}|{symbol}|{interval}|{ts_ms}"
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def signal_headers(
    signal: Signal, *, source_topic: str, source_partition: int, source_offset: int
) -> list[tuple[str, bytes]]:
    """Kafka headers of a signal record: what a consumer routes on without reading the value."""
    return [
        *_routing_headers(signal.model_version, signal.model, signal.route),
        ("source", f"{source_topic}/{source_partition}/{source_offset}".encode()),
    ]


@functools.lru_cache(maxsize=64)
def _routing_headers(model_version: str, model: str | None, route: str | None) -> tuple[tuple[str, bytes], ...]:
    """The headers every signal of one route and model version shares, encoded once (immutable, so shared)."""
    headers = [
        ("content-type", CONTENT_TYPE.encode()),
        ("schema", SIGNAL_SCHEMA.encode()),
        ("model-version", model_version.encode()),
    ]
    if model is not None:
        headers.append(("model", model.encode()))
    if route is not None:
        headers.append(("route", route.encode()))
    return tuple(headers)


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """A message that could not be scored, to be sent with its original bytes."""

    key: bytes | None
    value: bytes
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("dlq-reason", self.reason.encode()),
            ("dlq-detail", self.detail.encode(errors="replace")[:1024]),
            ("dlq-source-topic", self.topic.encode()),
            ("dlq-source-partition", str(self.partition).encode()),
            ("dlq-source-offset", str(self.offset).encode()),
            ("dlq-source-timestamp", str(self.timestamp_ms).encode()),
            ("schema", CANDLE_SCHEMA.encode()),
        ]


encoder = msgspec.json.Encoder()


def signal_json_schema() -> dict[str, object]:
    schema: dict[str, object] = msgspec.json.schema(Signal)
    return schema
