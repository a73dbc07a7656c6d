"""`candlecast bench --quick --two-routes` on the test broker: every candle of each route is scored by its own model.

Only counts are asserted; the figures' timings are in docs/benchmarks.md.
"""

from __future__ import annotations

import pytest

from tests.bench.conftest import QuickBench

pytestmark = pytest.mark.kafka


def test_quick_bench_with_two_routes_scores_each_route_by_its_model(quick_bench: QuickBench) -> None:
    """Half the backlog is hourly *USD candles, half daily ones; each half is scored by its own route and model,
    and so is each half of the steady phase's candles."""
    options = quick_bench.options
    figures = quick_bench.result.two_routes
    assert figures is not None
    per_route = options.symbols // 2 * options.scored_per_symbol
    assert figures.signals == 2 * per_route
    assert figures.signals_by_route == {"crypto-1h": per_route, "equities-1d": per_route}
    assert figures.misrouted == 0
    assert figures.models.keys() == {"crypto-1h", "equities-1d"}
    steady_each = int(figures.steady_rate_per_s * options.steady_s) // 2
    assert figures.steady_signals_by_route == {"crypto-1h": steady_each, "equities-1d": steady_each}
    assert figures.steady_p99_ms.keys() == {"crypto-1h", "equities-1d"}
    assert "two routes" in quick_bench.text
