"""The streaming phase of the bench: figures for both scorings from one run, and a gross-regression guard."""

from __future__ import annotations

from candlecast.bench.streaming import DEFAULT_SHAPES, render_streaming, run_streaming_bench


def test_streaming_scoring_is_measured_beside_the_windowed_and_is_not_slower() -> None:
    """One run measures the windowed and the streaming ceilings, the close, one candle alone and the
    memory per symbol; streaming from cached states is faster than windowed scoring (the goal is
    10x on the full bench; this only guards against a gross regression such as rebuilding every time)."""
    figures = run_streaming_bench(
        None, streaming_model=None, batch=64, seconds=0.6, threads=1, close_symbols=130, memory_symbols=300
    )
    assert figures.windowed_per_s > 0
    assert figures.rebuild_per_s > 0
    assert figures.streaming_per_s > figures.rebuild_per_s
    assert figures.streaming_per_s > figures.windowed_per_s
    assert figures.close_ms > 0
    values = sum(2 * hidden * layers for hidden, layers in DEFAULT_SHAPES)
    assert figures.state_bytes_per_symbol == 2 * (4 * values + 8)
    assert figures.window_bytes_per_symbol > 0
    assert render_streaming(figures).row_count == 6
