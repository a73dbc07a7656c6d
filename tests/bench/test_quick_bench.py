"""`candlecast bench --quick` on the test broker: every figure comes out, and batching still works.

Only gross properties are asserted, measured side by side in the same run: timings on a shared
2-core machine are too noisy for anything finer (docs/benchmarks.md holds the real figures).
"""

from __future__ import annotations

import json

import pytest

from tests.bench.conftest import QuickBench

pytestmark = pytest.mark.kafka


def test_quick_bench_batches_and_reports_every_figure(quick_bench: QuickBench) -> None:
    """The windowed daemon scores a backlog in batches, faster than one candle per forward pass; every stream
    client gets every signal; every steady candle is split by stage; the report shows every figure and torch's
    threads are restored."""
    result = quick_bench.result
    assert quick_bench.threads_after == quick_bench.threads_before, "the bench restores torch's threads"

    run = result.runs[0]
    assert run.scoring == "window"
    assert result.naive_mean_batch == 1.0
    assert run.throughput_mean_batch > 4, "a backlog must be scored in batches"
    assert run.throughput_per_s > 2 * result.naive_per_s, "batching must beat one candle per forward pass"
    assert result.ceiling.windows_per_s > result.ceiling.forwards_per_s > 0
    assert run.steady.count > 0 and run.burst.count > 0
    (close,) = run.close_bursts
    assert close.latency.count == close.symbols and close.mean_batch > 1
    assert result.memory is not None and 0 < result.memory.bytes_per_symbol < 10_000
    (pair,) = run.stream_pairs
    assert pair.without is run.steady and pair.with_clients.steady.count == run.steady.count
    assert pair.with_clients.disconnected == 0, "stream clients that read everything are never cut off"
    counts = pair.with_clients.counts
    assert counts.published == run.steady.count
    assert counts.received == [counts.published] * pair.with_clients.clients, "every client gets every signal"
    assert result.fencing is not None
    assert result.fencing.fenced.count == result.fencing.unfenced.count == result.fencing.transactions
    stages = run.steady_stages
    assert stages.tail_split is not None and stages.p50_split is not None, "every steady candle was stamped"
    assert 1 <= stages.tail_split.count < stages.p50_split.count == run.steady.count
    assert stages.pauses is not None

    for label in (
        "model ceiling",
        "I/O ceiling",
        "naive baseline",
        "sustained throughput",
        "end to end / naive",
        "produce retries",
        "stream clients",
        "group-fenced commit",
        "slowest 1% by stage",
        "p50 by stage",
    ):
        assert label in quick_bench.text
    figures = json.loads(result.to_json())
    assert figures["ratios"]["end_to_end_over_naive"] > 2
    assert figures["ratios"]["fenced_commit_p50_over_unfenced"] > 0
    assert figures["memory"]["bytes_per_symbol"] == result.memory.bytes_per_symbol
