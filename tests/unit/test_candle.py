"""Candle parsing and validation."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.candle import (
    Candle,
    CandleValidator,
    Rejection,
    RejectReason,
    format_ts,
    parse_ts,
)
from daemon.intervals import Interval

DAY = 86_400_000
TS = 1_704_672_000_000  # 2024-01-08T00:00:00Z, a Monday
NOW = TS + 2 * DAY
HOUR = 3_600_000
INTERVALS = {"1d": Interval.parse("1d", "weekdays"), "1h": Interval.parse("1h")}
VALIDATOR = CandleValidator(INTERVALS)


def validator_at(now_ms: int) -> CandleValidator:
    """A validator whose clock stands at ``now_ms``."""
    return CandleValidator(INTERVALS, clock_ms=lambda: now_ms)


def message(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "symbol": "AAPL",
        "interval": "1d",
        "ts": TS,
        "open": 100.0,
        "high": 105.0,
        "low": 99.0,
        "close": 104.0,
        "volume": 1e6,
    }
    base.update(changes)
    return base


def validate(payload: dict[str, Any] | bytes, key: bytes | None = b"AAPL", now: int = NOW) -> Candle | Rejection:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return VALIDATOR.validate(raw, key, now)


def reason(result: Candle | Rejection) -> RejectReason:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    return result.reason


class TestAccepted:
    def test_epoch_millis(self) -> None:
        """A well-formed candle becomes a typed record."""
        assert validate(message()) == Candle("AAPL", "1d", TS, 100.0, 105.0, 99.0, 104.0, 1e6)

    def test_iso_timestamp(self) -> None:
        """ISO-8601 with Z or an offset is accepted."""
        assert isinstance(validate(message(ts="2024-01-08T00:00:00Z")), Candle)
        assert isinstance(validate(message(ts="2024-01-08T01:00:00+01:00")), Candle)

    def test_integers_for_prices(self) -> None:
        """JSON integers are valid prices."""
        assert isinstance(validate(message(open=100, high=105, low=99, close=104, volume=0)), Candle)

    def test_extra_fields_are_ignored(self) -> None:
        """Producers may add fields; consumers of v1 ignore them."""
        assert isinstance(validate(message(vwap=101.2)), Candle)

    def test_no_key(self) -> None:
        """A record without a key is accepted (the symbol still partitions downstream)."""
        assert isinstance(validate(message(), key=None), Candle)


class TestRejected:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (b"{not json", RejectReason.MALFORMED_JSON),
            (b"", RejectReason.MALFORMED_JSON),
            (b"[]", RejectReason.SCHEMA),
            (json.dumps({"symbol": "AAPL"}).encode(), RejectReason.SCHEMA),
            (json.dumps(message(open="100")).encode(), RejectReason.SCHEMA),
            (json.dumps(message(ts=True)).encode(), RejectReason.SCHEMA),
            (json.dumps(message()).replace("105.0", "1e400").encode(), RejectReason.NON_FINITE),
            (json.dumps(message(close=float("nan"))).encode(), RejectReason.NON_FINITE),
            (json.dumps(message(volume=float("inf"))).encode(), RejectReason.NON_FINITE),
            (b'{"symbol":"AAPL","interval":"1d","ts":NaN}', RejectReason.SCHEMA),
            (b"\xff\xfe", RejectReason.MALFORMED_JSON),
        ],
    )
    def test_bad_payloads(self, payload: bytes, expected: RejectReason) -> None:
        """Malformed JSON and wrong types are named as such."""
        assert reason(validate(payload)) is expected

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"symbol": ""}, RejectReason.BAD_SYMBOL),
            ({"symbol": "A/B"}, RejectReason.BAD_SYMBOL),
            ({"interval": "5m"}, RejectReason.UNKNOWN_INTERVAL),
            ({"ts": "yesterday"}, RejectReason.BAD_TS),
            ({"ts": 1_704_672_000}, RejectReason.BAD_TS),
            ({"ts": "2024-01-08T00:00:00"}, RejectReason.BAD_TS),
            ({"ts": TS + 3_600_000}, RejectReason.MISALIGNED_TS),
            ({"ts": TS - 2 * DAY}, RejectReason.MISALIGNED_TS),
            ({"ts": NOW + 7 * DAY}, RejectReason.FUTURE_TS),
            ({"low": 0.0}, RejectReason.NON_POSITIVE_PRICE),
            ({"open": -1.0}, RejectReason.NON_POSITIVE_PRICE),
            ({"volume": -5.0}, RejectReason.NEGATIVE_VOLUME),
            ({"high": 98.0}, RejectReason.OHLC_INCONSISTENT),
            ({"high": 103.0}, RejectReason.OHLC_INCONSISTENT),
            ({"low": 101.0}, RejectReason.OHLC_INCONSISTENT),
        ],
    )
    def test_bad_values(self, changes: dict[str, Any], expected: RejectReason) -> None:
        """Each check names its reason."""
        assert reason(validate(message(**changes))) is expected

    def test_key_must_match_symbol(self) -> None:
        """A key that differs from the symbol would break per-symbol order."""
        assert reason(validate(message(), key=b"MSFT")) is RejectReason.KEY_MISMATCH

    def test_oversize(self) -> None:
        """Messages over the size limit are rejected before parsing."""
        assert reason(validate(message(note="x" * 5000))) is RejectReason.OVERSIZE

    def test_future_tolerance_is_relative_to_the_record_time(self) -> None:
        """The check uses the Kafka record timestamp, so replays decide the same way."""
        assert isinstance(validate(message(), now=TS - 30_000), Candle)
        assert reason(validate(message(), now=TS - 3_600_000)) is RejectReason.FUTURE_TS

    def test_open_time_is_bounded_by_the_daemon_clock(self) -> None:
        """A candle dated 2199 with a matching record timestamp is rejected by the daemon's own clock."""
        far = parse_ts("2199-01-01T00:00:00Z")
        assert far is not None
        forged = json.dumps(message(interval="1h", ts=far)).encode()
        assert reason(validator_at(NOW).validate(forged, b"AAPL", far)) is RejectReason.FUTURE_TS
        assert isinstance(validator_at(far).validate(forged, b"AAPL", far), Candle)

    def test_clock_tolerance_is_configurable(self) -> None:
        """A candle opening within ``clock_tolerance_ms`` of the daemon's clock is accepted, one after it is not."""
        next_hour = json.dumps(message(interval="1h", ts=NOW + HOUR)).encode()
        strict = CandleValidator(INTERVALS, clock_ms=lambda: NOW, clock_tolerance_ms=HOUR - 1)
        lenient = CandleValidator(INTERVALS, clock_ms=lambda: NOW, clock_tolerance_ms=HOUR)
        assert reason(strict.validate(next_hour, b"AAPL", NOW + HOUR)) is RejectReason.FUTURE_TS
        assert isinstance(lenient.validate(next_hour, b"AAPL", NOW + HOUR), Candle)


class TestModelRange:
    @pytest.mark.parametrize(
        "changes",
        [
            {"high": 1e300},
            {"volume": 1e39},
            {"low": 1e-40},
            {"open": 1e-46, "high": 1e-46, "low": 1e-46, "close": 1e-46},
        ],
    )
    def test_values_the_float32_inputs_cannot_hold(self, changes: dict[str, Any]) -> None:
        """Finite values the model's float32 windows turn into infinity, a denormal or 0 are rejected."""
        assert reason(validate(message(**changes))) is RejectReason.OUT_OF_RANGE

    def test_float32_extremes_are_accepted(self) -> None:
        """The largest float32 and the smallest normal one are valid prices."""
        top = float(np.finfo(np.float32).max)
        bottom = float(np.finfo(np.float32).tiny)
        assert isinstance(validate(message(open=top, high=top, low=top, close=top, volume=top)), Candle)
        assert isinstance(validate(message(open=bottom, high=bottom, low=bottom, close=bottom, volume=0.0)), Candle)


class TestFuzz:
    @given(st.binary(max_size=600))
    def test_arbitrary_bytes_never_raise(self, payload: bytes) -> None:
        """Any bytes give a candle or a rejection, never an exception."""
        assert isinstance(VALIDATOR.validate(payload, None, NOW), Candle | Rejection)

    @given(
        st.fixed_dictionaries(
            {
                "symbol": st.one_of(st.text(max_size=8), st.integers()),
                "interval": st.sampled_from(["1d", "1h", "1m", "", 7]),
                "ts": st.one_of(st.integers(), st.text(max_size=30), st.floats()),
                "open": st.one_of(st.floats(), st.integers(), st.none()),
                "high": st.floats(),
                "low": st.floats(allow_nan=False),
                "close": st.one_of(st.floats(), st.text(max_size=3)),
                "volume": st.floats(),
            }
        )
    )
    def test_near_valid_candles_never_raise(self, fields: dict[str, Any]) -> None:
        """Structured near-valid messages are either valid candles or named rejections."""
        payload = msgspec.json.encode(fields)
        result = VALIDATOR.validate(payload, None, NOW)
        if isinstance(result, Candle):
            assert result.low <= min(result.open, result.close) <= max(result.open, result.close) <= result.high
            assert result.low > 0 and result.volume >= 0
        else:
            assert result.detail


class TestTimestamps:
    @given(st.integers(min_value=631_152_000_000, max_value=7_258_118_399_999))
    def test_format_and_parse_round_trip(self, ts: int) -> None:
        """Formatted timestamps parse back to the same millisecond."""
        assert parse_ts(format_ts(ts)) == ts

    def test_whole_seconds_have_no_fraction(self) -> None:
        assert format_ts(TS) == "2024-01-08T00:00:00Z"
