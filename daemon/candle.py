"""Candle messages: the wire schema, and validation into a typed ``Candle`` or a ``Rejection``.

Validation is a function of the message bytes, its Kafka key and the record timestamp, so
replaying a partition reproduces every decision, with one exception: a candle is also bounded by
the daemon's own clock (a producer sets the record timestamp, so it cannot be the only bound), and
a candle rejected for opening after that clock is accepted by a replay once its time has come.
Rejecting is not an exception but a value that the daemon sends to the dead-letter topic.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from daemon.intervals import Interval

CANDLE_SCHEMA = "candlecast.candle/1"

# Open times outside this range are far more likely seconds-for-milliseconds than real candles.
MIN_TS_MS = 631_152_000_000  # 1990-01-01
MAX_TS_MS = 7_258_118_400_000  # 2200-01-01
# The model reads float32 windows: a larger value becomes infinite, a price below the smallest
# normal float32 loses precision or becomes 0, and the features take logarithms of prices.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:^=-]{0,63}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


class CandleMessage(msgspec.Struct, frozen=True, gc=False):
    """A candle as published on the candles topic (JSON, key = symbol)."""

    symbol: str
    """Instrument, e.g. ``BTCUSD`` or ``AAPL``; also the record key."""
    interval: str
    """Candle length, e.g. ``1h`` or ``1d``."""
    ts: int | str
    """Candle open time: epoch milliseconds, or ISO-8601 with a UTC offset (``2024-01-02T00:00:00Z``)."""
    open: float
    high: float
    low: float
    close: float
    volume: float


class Candle(msgspec.Struct, frozen=True, gc=False):
    """A validated candle."""

    symbol: str
    interval: str
    ts: int
    """Candle open time in epoch milliseconds (UTC)."""
    open: float
    high: float
    low: float
    close: float
    volume: float


class RejectReason(StrEnum):
    """Why a message cannot be scored; the value labels metrics and dead-letter headers."""

    OVERSIZE = "oversize"
    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    KEY_MISMATCH = "key_mismatch"
    BAD_SYMBOL = "bad_symbol"
    UNKNOWN_INTERVAL = "unknown_interval"
    NO_ROUTE = "no_route"
    BAD_TS = "bad_ts"
    MISALIGNED_TS = "misaligned_ts"
    FUTURE_TS = "future_ts"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    NON_POSITIVE_PRICE = "non_positive_price"
    OHLC_INCONSISTENT = "ohlc_inconsistent"
    NEGATIVE_VOLUME = "negative_volume"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    STALE = "stale"
    NULL_KEY = "null_key"
    PARTITION_MISMATCH = "partition_mismatch"


class Rejection(msgspec.Struct, frozen=True, gc=False):
    """A message that cannot be scored, with the reason and a human-readable detail."""

    reason: RejectReason
    detail: str


_decoder = msgspec.json.Decoder(CandleMessage)


def _decode_lenient(value: bytes, strict_error: str) -> CandleMessage | Rejection:
    """Second look at JSON that strict decoding refused, on the error path only.

    Many producers write ``NaN``, ``Infinity`` or ``1e400`` (Python's ``json.dumps`` does); the
    standard library reads them as floats, so the price checks can name them ``non_finite``
    instead of calling the whole message malformed.
    """
    try:
        loose = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return Rejection(RejectReason.MALFORMED_JSON, strict_error)
    try:
        return msgspec.convert(loose, CandleMessage)
    except msgspec.ValidationError as exc:
        return Rejection(RejectReason.SCHEMA, str(exc))


def decode_message(value: bytes) -> CandleMessage | None:
    """The message if strict decoding reads it; ``None`` leaves it to ``CandleValidator.validate``,
    which says what is wrong."""
    try:
        return _decoder.decode(value)
    except msgspec.DecodeError:
        return None


def parse_ts(value: int | str) -> int | None:
    """Epoch milliseconds from an int or an ISO-8601 string with an offset; ``None`` if unusable."""
    if isinstance(value, int):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.microsecond % 1000:
        return None
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def format_ts(ts_ms: int) -> str:
    """ISO-8601 UTC with a ``Z`` suffix, e.g. ``2024-01-02T00:00:00Z``."""
    seconds, millis = divmod(ts_ms, 1000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def wall_clock_ms() -> int:
    """Epoch milliseconds of the system clock."""
    return time.time_ns() // 1_000_000


class CandleValidator:
    """Turns candle message bytes into a ``Candle`` or a ``Rejection`` (stateless checks only).

    Checks that need the symbol's history (duplicates, order, staleness, gaps) belong to the
    window store; the key and partition checks to the ingestor.
    """

    def __init__(
        self,
        intervals: Mapping[str, Interval],
        *,
        max_message_bytes: int = 4096,
        future_tolerance_ms: int = 60_000,
        clock_tolerance_ms: int = 60_000,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._intervals = dict(intervals)
        self._max_bytes = max_message_bytes
        self._future_tolerance_ms = future_tolerance_ms
        self._clock_tolerance_ms = clock_tolerance_ms
        self._clock_ms = clock_ms

    def validate(self, value: bytes, key: bytes | None, record_ts_ms: int) -> Candle | Rejection:
        """Validate one message; ``record_ts_ms`` is the Kafka record timestamp."""
        if len(value) > self._max_bytes:
            return Rejection(RejectReason.OVERSIZE, f"{len(value)} bytes exceeds the limit of {self._max_bytes}")
        try:
            message = _decoder.decode(value)
        except msgspec.ValidationError as exc:
            if "out of range" not in str(exc):
                return Rejection(RejectReason.SCHEMA, str(exc))
            lenient = _decode_lenient(value, str(exc))
        except msgspec.DecodeError as exc:
            lenient = _decode_lenient(value, str(exc))
        else:
            return self.check(message, key, record_ts_ms)
        if isinstance(lenient, Rejection):
            return lenient
        return self.check(lenient, key, record_ts_ms)

    @property
    def max_message_bytes(self) -> int:
        return self._max_bytes

    def now_ms(self) -> int:
        """The daemon's clock, as ``check`` reads it."""
        return self._clock_ms()

    def check(
        self, message: CandleMessage, key: bytes | None, record_ts_ms: int, now_ms: int | None = None
    ) -> Candle | Rejection:
        """Validate an already decoded message; ``now_ms``: an earlier reading of the clock (``now_ms``),
        read again only for a candle that opens after it, so the decision is the one a reading now makes."""
        if not _SYMBOL_RE.match(message.symbol):
            return Rejection(RejectReason.BAD_SYMBOL, f"symbol {message.symbol!r} is not allowed")
        if key is not None and key != message.symbol.encode():
            return Rejection(
                RejectReason.KEY_MISMATCH,
                f"record key {key!r} differs from symbol {message.symbol!r}; per-symbol order needs key = symbol",
            )
        interval = self._intervals.get(message.interval)
        if interval is None:
            known = ", ".join(sorted(self._intervals)) or "none"
            return Rejection(
                RejectReason.UNKNOWN_INTERVAL, f"interval {message.interval!r} is not served (served: {known})"
            )
        ts = parse_ts(message.ts)
        if ts is None or not MIN_TS_MS <= ts < MAX_TS_MS:
            return Rejection(
                RejectReason.BAD_TS, f"ts {message.ts!r} is not epoch milliseconds or ISO-8601 with an offset"
            )
        if not interval.is_aligned(ts):
            return Rejection(
                RejectReason.MISALIGNED_TS,
                f"ts {format_ts(ts)} does not start a {interval.name} slot of the {interval.calendar} calendar",
            )
        if ts > record_ts_ms + self._future_tolerance_ms:
            return Rejection(
                RejectReason.FUTURE_TS,
                f"candle opens at {format_ts(ts)}, after the record time {format_ts(record_ts_ms)}",
            )
        if now_ms is None or ts > now_ms + self._clock_tolerance_ms:
            now = self._clock_ms()
            if ts > now + self._clock_tolerance_ms:
                return Rejection(
                    RejectReason.FUTURE_TS,
                    f"candle opens at {format_ts(ts)}, after the daemon's clock {format_ts(now)}",
                )
        return check_prices(message, ts)


def check_prices(message: CandleMessage, ts: int) -> Candle | Rejection:
    """The OHLCV consistency checks."""
    o, h, low, c, v = message.open, message.high, message.low, message.close, message.volume
    # The common case in one chained comparison (NaN fails it): exactly the candles the checks below accept.
    if FLOAT32_TINY <= low <= o <= h <= FLOAT32_MAX and low <= c <= h and 0.0 <= v <= FLOAT32_MAX:
        return Candle(message.symbol, message.interval, ts, o, h, low, c, v)
    if not all(math.isfinite(x) for x in (o, h, low, c, v)):
        return Rejection(RejectReason.NON_FINITE, "a price or the volume is NaN or infinite")
    if min(o, h, low, c) <= 0.0:
        return Rejection(RejectReason.NON_POSITIVE_PRICE, "prices must be positive")
    if v < 0.0:
        return Rejection(RejectReason.NEGATIVE_VOLUME, f"volume {v} is negative")
    if max(o, h, low, c, v) > FLOAT32_MAX or min(o, h, low, c) < FLOAT32_TINY:
        return Rejection(
            RejectReason.OUT_OF_RANGE,
            f"prices and volume must fit the model's float32 inputs ({FLOAT32_TINY:.4g} to {FLOAT32_MAX:.4g})",
        )
    if h < low or h < max(o, c) or low > min(o, c):
        return Rejection(
            RejectReason.OHLC_INCONSISTENT,
            f"high {h} and low {low} do not bound open {o} and close {c}",
        )
    return Candle(message.symbol, message.interval, ts, o, h, low, c, v)


def candle_json_schema() -> dict[str, object]:
    """JSON Schema of the candle message, as published in ``docs/schemas/``."""
    schema: dict[str, object] = msgspec.json.schema(CandleMessage)
    return schema
