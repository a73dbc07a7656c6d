"""The bench's candle close is repeated: each repeat is every symbol's next candle, and the report gives the
median and the worst repeat's last signal (text, JSON and the window-over-stream ratio)."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from candlecast.bench.load import Workload
from candlecast.bench.options import BenchOptions
from candlecast.bench.report import (
    CloseBurst,
    DeliveryRun,
    Latency,
    SteadyStages,
)
from candlecast.errors import ConfigError
from daemon.candle import CandleMessage
from daemon.intervals import Interval
from tests.support.bench_report import bench_result, rendered_rows


def _open_times(messages: list[tuple[int, bytes, bytes]]) -> dict[bytes, int]:
    decoded = {key: msgspec.json.decode(value, type=CandleMessage) for _, key, value in messages}
    return {key: int(message.ts) for key, message in decoded.items()}


def test_each_repeat_of_a_close_is_every_symbols_next_candle() -> None:
    """Two closes of the same symbols give each symbol two candles, the second one interval slot after the first."""
    interval = Interval.parse("1d", "weekdays")
    workload = Workload("C", 20, interval, partitions=3, seed=1)
    first = _open_times(workload.first(8))
    second = _open_times(workload.first(8))
    assert list(first) == list(second) == [f"C{i:05d}".encode() for i in range(8)]
    for key, opened in first.items():
        assert second[key] == interval.slot_time(interval.slot_index(opened) + 1)


def _run(scoring: str, lasts: list[float]) -> DeliveryRun:
    nothing = Latency.of(np.array([]))
    close = CloseBurst(
        symbols=10_000, last_signal_each_ms=lasts, lower_bound_ms=100.0, latency=nothing, mean_batch=512.0
    )
    return DeliveryRun(
        delivery="exactly_once",
        scoring=scoring,
        throughput_per_s=1000.0,
        throughput_signals=100,
        throughput_mean_batch=10.0,
        steady_rate_per_s=100.0,
        steady=nothing,
        steady_stages=SteadyStages(consume=nothing, forward_ms=1.0, publish_ms=1.0, mean_batch=1.0),
        burst_rate_per_s=1000.0,
        burst=nothing,
        burst_phase=nothing,
        close_bursts=[close],
    )


def test_the_report_gives_the_median_and_the_worst_close() -> None:
    """The text row and the JSON give the median and the worst of the repeats, and the window-over-stream ratio
    is taken between medians, so one slow close does not decide it."""
    result = bench_result(10_000, [_run("window", [2000.0, 1800.0, 5000.0]), _run("stream", [900.0, 1000.0, 4000.0])])
    rows = rendered_rows(result, "10,000 symbols close at once")
    assert len(rows) == 2
    assert "2000 ms" in rows[0] and "median of 3 closes (worst 5000 ms)" in rows[0]
    assert "1000 ms" in rows[1] and "median of 3 closes (worst 4000 ms)" in rows[1]
    written = json.loads(result.to_json())
    closes = [run["close_bursts"][0] for run in written["runs"]]
    assert [c["last_signal_median_ms"] for c in closes] == [2000.0, 1000.0]
    assert [c["last_signal_worst_ms"] for c in closes] == [5000.0, 4000.0]
    assert closes[0]["last_signal_each_ms"] == [2000.0, 1800.0, 5000.0]
    assert written["ratios"]["window_over_stream_close_10000_exactly_once"] == pytest.approx(2.0)


def test_close_repeats_default_and_bounds() -> None:
    """The full bench repeats each close; the suite's quick bench closes once; no repeats at all is refused."""
    assert BenchOptions().close_repeats > 1
    assert BenchOptions.quick().close_repeats == 1
    with pytest.raises(ConfigError, match="close repeats"):
        BenchOptions(close_repeats=0).check()
