"""The publish metrics of a batch, counted batch-wise, expose what observing each signal exposed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from daemon.engine import ScoreRequest
from daemon.metrics import LATENCY_BUCKETS, DaemonMetrics, observe_each
from daemon.ports import PublishBatch
from daemon.signal import Signal

amounts = st.lists(
    st.one_of(
        st.sampled_from([0.0, *LATENCY_BUCKETS, float("inf"), float("nan")]),
        st.floats(min_value=0.0, max_value=60.0),
    ),
    max_size=60,
)


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("latency", "Latency.", ["route"], buckets=LATENCY_BUCKETS, registry=registry)


@settings(max_examples=200, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=4))
def test_observing_a_batch_exposes_what_observing_each_amount_does(batches: list[list[float]]) -> None:
    """Bucket counts, count and sum (added in the same order, so the same float) are the same text in the
    exposition, for amounts on bucket bounds, past the last, infinite or NaN."""
    each, batched = CollectorRegistry(), CollectorRegistry()
    one_by_one, at_once = histogram(each).labels("r"), histogram(batched).labels("r")
    for batch in batches:
        for amount in batch:
            one_by_one.observe(amount)
        observe_each(at_once, batch)
    assert exposition(batched) == exposition(each)


def exposition(registry: CollectorRegistry) -> list[bytes]:
    """The samples' lines, without the creation time (each registry's own)."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def signal(action: str, strategy: str) -> Signal:
    return Signal(
        signal_id="id",
        symbol="S",
        interval="1d",
        ts="t",
        action=action,  # type: ignore[arg-type]
        confidence=0.6,
        probability=0.6,
        horizon=1,
        probabilities={},
        quantiles={},
        quantile_levels=[],
        disagreement=0.0,
        model_version="1",
        strategy=strategy,
        produced_at="t",
    )


def request(route: int, timestamp_ms: int) -> ScoreRequest:
    zeros = np.zeros((1, 5), dtype=np.float32)
    return ScoreRequest(("S", "1d"), 0, zeros, "candles", 0, 0, timestamp_ms, 0, route=route)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BUY", "SELL", "HOLD"]),
            st.sampled_from(["threshold(a=1)", "threshold(a=2)", "gated()"]),
            st.integers(min_value=0, max_value=1),
            st.integers(min_value=0, max_value=40_000),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_publish_metrics_count_per_action_strategy_and_route(rows: list[tuple[str, str, int, int]]) -> None:
    """Signals per (action, strategy name, route) and end-to-end latencies per route are what a signal-by-
    signal count gives."""
    metrics = DaemonMetrics(CollectorRegistry())
    metrics.use_routes(["one", "two"])
    batch = PublishBatch([(signal(a, s), request(r, t)) for a, s, r, t in rows], [], {})
    metrics.observe_publish(batch, 0.01, 40_000.0)
    expected = CollectorRegistry()
    latency = histogram(expected)
    for action, strategy, route, timestamp_ms in rows:
        name = ["one", "two"][route]
        assert metrics.signals.labels(action, strategy.partition("(")[0], name)._value.get() == sum(
            1 for a, s, r, _ in rows if (a, s.partition("(")[0], r) == (action, strategy.partition("(")[0], route)
        )
        latency.labels(name).observe(max(0.0, (40_000.0 - timestamp_ms) / 1000.0))
    for name in ("one", "two"):
        mine = metrics.end_to_end.labels(name)
        theirs = latency.labels(name)
        assert mine._sum.get() == theirs._sum.get()
        assert [b.get() for b in mine._buckets] == [b.get() for b in theirs._buckets]
