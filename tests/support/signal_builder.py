"""Signals for tests of the stream path: every field a consumer does not look at filled with one fixed value."""

from __future__ import annotations

from daemon.candle import format_ts
from daemon.signal import Signal

HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000


def hourly_signal(
    signal_id: str, hour: int = 0, symbol: str = "AAA", route: str | None = "default", strategy: str = "s"
) -> Signal:
    """A BUY signal of ``symbol`` for the 1h candle ``hour`` hours after ``START_MS``."""
    return Signal(
        signal_id=signal_id,
        symbol=symbol,
        interval="1h",
        ts=format_ts(START_MS + hour * HOUR_MS),
        action="BUY",
        confidence=0.6,
        probability=0.6,
        horizon=1,
        probabilities={"1": 0.6},
        quantiles={"1": [0.0]},
        quantile_levels=[0.5],
        disagreement=0.0,
        model_version="1",
        route=route,
        strategy=strategy,
        produced_at="p",
    )
