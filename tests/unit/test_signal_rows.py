"""``SignalBuilder`` decides a batch over arrays when its strategy can, with the same signals and state as
deciding request by request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.checkpoint import Checkpoint
from daemon.engine import ScoreRequest, SignalBuilder
from strategies.base import BatchStrategy, Decision, EnsembleOutput, OutputRows, OutputSpec, Strategy
from strategies.registry import create

SPEC = OutputSpec((1, 5, 20), (0.1, 0.5, 0.9))


class OneByOne:
    """The same strategy seen through the plain ``Strategy`` protocol only (as a third-party one without
    ``decide_rows``): the builder decides each request with ``decide``."""

    name: ClassVar[str] = "one-by-one"

    def __init__(self, inner: Strategy) -> None:
        self._inner = inner

    @property
    def memory(self) -> int:
        return self._inner.memory

    @property
    def params(self) -> Mapping[str, Any]:
        return self._inner.params

    def decide(self, history: Sequence[EnsembleOutput]) -> Decision:
        return self._inner.decide(history)


def builder(strategy: Strategy) -> SignalBuilder:
    return SignalBuilder(strategy, SPEC, "s(x=1)", lambda: "2026-12-01T00:00:00Z", model="m", route="r")


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[ScoreRequest], OutputRows, list[tuple[str, int]]]:
    """A batch of live and re-scored requests of a few keys and partitions, with outputs of which some are
    not finite, and the releases of windows made between its requests. The first request is live and
    its output finite: every batch publishes something."""
    count = draw(st.integers(min_value=1, max_value=30))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    probabilities = rng.uniform(0.0, 1.0, (count, 3)).astype(np.float32)
    quantiles = np.sort(rng.normal(0.0, 0.02, (count, 3, 3)), axis=2).astype(np.float32)
    disagreement = rng.uniform(0.0, 0.2, (count, 3)).astype(np.float32)
    for _ in range(draw(st.integers(min_value=0, max_value=3)) if count > 1 else 0):
        array = draw(st.sampled_from([probabilities, quantiles, disagreement]))[draw(st.integers(1, count - 1))]
        array.flat[draw(st.integers(min_value=0, max_value=array.size - 1))] = np.nan
    requests = []
    for i in range(count):
        publish = i == 0 or draw(st.booleans())
        requests.append(
            ScoreRequest(
                key=(draw(st.sampled_from(["AAA", "BBB", "CCC"])), "1d"),
                ts=1_700_006_400_000 + draw(st.integers(min_value=0, max_value=3)) * 86_400_000,
                window=np.zeros((1, 5), dtype=np.float32),
                topic="candles",
                partition=draw(st.integers(min_value=0, max_value=2)),
                offset=draw(st.integers(min_value=0, max_value=50)),
                timestamp_ms=0,
                history=0,
                publish=publish,
                sequence=10 + i,
                scored_by=None if publish else draw(st.sampled_from([None, "v1", "v0"])),
            )
        )
    releases = draw(st.lists(st.tuples(st.sampled_from(["AAA", "BBB"]), st.integers(5, 45)), max_size=4))
    return requests, OutputRows(probabilities, quantiles, disagreement), releases


def state(built: SignalBuilder) -> tuple[object, ...]:
    """What the builder carries to later batches and commits."""
    checkpoint = built.stamped({("candles", p): Checkpoint(100, 90) for p in range(3)})
    return built.not_finite, built.remembered, checkpoint, list(built._releases), built._decided


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["threshold", "agreement", "gated"]),
    st.lists(batches(), min_size=1, max_size=3),
)
def test_batch_decisions_publish_what_deciding_one_by_one_does(
    name: str, sequence: list[tuple[list[ScoreRequest], OutputRows, list[tuple[str, int]]]]
) -> None:
    """Through several batches (history requests of this and other versions, outputs that are not
    finite, releases), the builder deciding over arrays gives the same signals, byte for byte, and the
    same counters, checkpoint marks and pending releases as one deciding each request with ``decide``."""
    strategy = create(name, SPEC, {"max_disagreement": 0.1} if name == "gated" else {})
    assert isinstance(strategy, BatchStrategy) and strategy.memory == 1
    rows_builder, each_builder = builder(strategy), builder(OneByOne(strategy))
    assert not isinstance(OneByOne(strategy), BatchStrategy)
    for requests, rows, releases in sequence:
        for symbol, sequence_number in releases:
            rows_builder.release((symbol, "1d"), sequence_number)
            each_builder.release((symbol, "1d"), sequence_number)
        by_rows = rows_builder.build(requests, rows, "v1")
        by_each = each_builder.build(requests, rows, "v1")
        assert by_rows[0] is not None
        assert msgspec.json.encode(by_rows) == msgspec.json.encode(by_each)
        assert state(rows_builder) == state(each_builder)
