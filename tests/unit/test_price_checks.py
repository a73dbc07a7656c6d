"""``check_prices``: its chained pre-check accepts exactly the candles its full checks accept."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from daemon.candle import FLOAT32_MAX, FLOAT32_TINY, Candle, CandleMessage, Rejection, check_prices

TS = 1_704_672_000_000
EDGES = [
    0.0,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    1.0,
    2.0,
    -1.0,
    5e-324,
    FLOAT32_TINY,
    math.nextafter(FLOAT32_TINY, 0.0),
    math.nextafter(FLOAT32_TINY, math.inf),
    -FLOAT32_TINY,
    FLOAT32_MAX,
    math.nextafter(FLOAT32_MAX, 0.0),
    math.nextafter(FLOAT32_MAX, math.inf),
    -FLOAT32_MAX,
]
VALUES = st.one_of(st.sampled_from(EDGES), st.floats())


def full_checks_accept(o: float, h: float, low: float, c: float, v: float) -> bool:
    """The price rules as the documentation states them, one by one."""
    prices = (o, h, low, c)
    return (
        all(math.isfinite(x) for x in (*prices, v))
        and min(prices) > 0.0
        and v >= 0.0
        and max(*prices, v) <= FLOAT32_MAX
        and min(prices) >= FLOAT32_TINY
        and h >= low
        and h >= max(o, c)
        and low <= min(o, c)
    )


@given(VALUES, VALUES, VALUES, VALUES, VALUES)
@example(1.0, 2.0, 1.0, 1.0, 0.0)
@example(1.0, 2.0, 1.0, math.nan, 0.0)
def test_check_prices_accepts_exactly_what_the_full_checks_accept(
    o: float, h: float, low: float, c: float, v: float
) -> None:
    """A candle is accepted, unchanged, exactly when every price rule holds; otherwise it is a rejection."""
    result = check_prices(CandleMessage("AAPL", "1h", TS, o, h, low, c, v), TS)
    if full_checks_accept(o, h, low, c, v):
        assert result == Candle("AAPL", "1h", TS, o, h, low, c, v)
    else:
        assert isinstance(result, Rejection)
