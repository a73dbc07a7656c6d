"""`candlecast bench --quick --scoring window,stream --fixed-rates --max-waits-ms` on the test broker: a windowed
and a streaming daemon side by side, and the batch policy's phase.

Only counts and what each daemon holds are asserted; the figures' timings are in docs/benchmarks.md.
"""

from __future__ import annotations

import json

import pytest

from tests.bench.conftest import QuickBench

pytestmark = pytest.mark.kafka


def test_quick_bench_measures_both_scorings_and_the_batch_policy(quick_bench: QuickBench) -> None:
    """Each scoring's daemon scores the whole backlog, a fixed-rate steady phase and a candle close, the streaming
    one holding recurrent states and the windowed one none; then each max_wait_ms daemon scores every lone candle
    in a forward pass of its own."""
    options, result = quick_bench.options, quick_bench.result

    window, stream = result.runs
    assert (window.scoring, stream.scoring) == ("window", "stream")
    assert stream.model.endswith("untrained-streaming/0.0.0")
    for run in result.runs:
        assert run.throughput_signals == options.symbols * options.scored_per_symbol
        (rated,) = run.fixed_rates
        assert rated.rate_per_s == 50.0 and rated.latency.count == int(50.0 * options.steady_s)
        (close,) = run.close_bursts
        assert close.latency.count == close.symbols
        assert run.memory is not None and run.memory.windows == options.symbols
    assert window.memory is not None and not window.memory.state_bytes
    assert stream.memory is not None and stream.memory.state_bytes
    policy = result.batch_policy
    assert policy is not None and policy.scoring == "stream"
    assert [run.max_wait_ms for run in policy.runs] == [0.0, 5.0]
    for waited in policy.runs:
        assert waited.lone.count == options.lone_candles
        assert waited.lone_stages.mean_batch == 1.0, "a lone candle is scored alone"
        assert waited.steady.count == int(policy.steady_rate_per_s * options.steady_s)

    assert "batch policy" in quick_bench.text and "daemon's memory gauges" in quick_bench.text
    ratios = json.loads(result.to_json())["ratios"]
    assert {"stream_over_window_sustained_exactly_once", "window_over_stream_p99_at_50_exactly_once"} <= ratios.keys()
