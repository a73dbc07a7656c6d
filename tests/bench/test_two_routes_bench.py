"""`candlecast bench --quick --two-routes` on the test broker: every candle of each route is scored by its own model.

Only counts are asserted; the figures' timings are in docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

from candlecast.bench.options import BenchOptions
from candlecast.bench.report import render
from candlecast.bench.run import run_bench
from candlecast.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


async def test_quick_bench_with_two_routes_scores_each_route_by_its_model(
    kafka: LocalKafka, test_artifact: Path
) -> None:
    """Half the backlog is hourly *USD candles, half daily ones; each half is scored by its own route and model,
    and so is each half of the steady phase's candles."""
    options = dataclasses.replace(BenchOptions.quick(), two_routes=True, stream_clients=0, close_bursts=())
    console = Console(record=True, width=200)
    result = await run_bench(options, console=console, bootstrap_servers=kafka.bootstrap_servers, model=test_artifact)

    figures = result.two_routes
    assert figures is not None
    per_route = options.symbols // 2 * options.scored_per_symbol
    assert figures.signals == 2 * per_route
    assert figures.signals_by_route == {"crypto-1h": per_route, "equities-1d": per_route}
    assert figures.misrouted == 0
    assert figures.models.keys() == {"crypto-1h", "equities-1d"}
    steady_each = int(figures.steady_rate_per_s * options.steady_s) // 2
    assert figures.steady_signals_by_route == {"crypto-1h": steady_each, "equities-1d": steady_each}
    assert figures.steady_p99_ms.keys() == {"crypto-1h", "equities-1d"}
    console.print(render(result))
    assert "two routes" in console.export_text()
