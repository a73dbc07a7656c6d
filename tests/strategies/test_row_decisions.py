"""Batch decisions over arrays (``decide_rows``) equal the per-output ``decide``, bit for bit."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.base import Action, BatchStrategy, EnsembleOutput, OutputRows
from strategies.threshold import ThresholdStrategy
from tests.strategies.outputs import SPEC, ensemble_outputs, output
from tests.strategies.test_properties import build, configured

FAST = settings(max_examples=150, deadline=None)
SPECIAL = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.5, 0.0, 1.0])


def as_rows(outputs: list[EnsembleOutput]) -> OutputRows:
    """The outputs as the model hands them on: float32 arrays."""
    return OutputRows(
        np.array([o.probabilities for o in outputs], dtype=np.float32),
        np.array([o.quantiles for o in outputs], dtype=np.float32),
        np.array([o.disagreement for o in outputs], dtype=np.float32),
    )


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


@st.composite
def batches(draw: st.DrawFn) -> OutputRows:
    """Rows of outputs, some with a NaN, an infinity or a value on a threshold in any field."""
    outputs = draw(st.lists(ensemble_outputs(), min_size=1, max_size=40))
    rows = as_rows(outputs)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        array = draw(st.sampled_from([rows.probabilities, rows.quantiles, rows.disagreement]))
        array.flat[draw(st.integers(min_value=0, max_value=array.size - 1))] = draw(SPECIAL)
    return rows


@FAST
@given(configured(hysteresis=False, cooldown=False), batches())
def test_rows_decide_as_each_output_alone(setup: tuple[str, dict[str, Any]], rows: OutputRows) -> None:
    """Every built-in strategy without memory decides a batch of rows as ``decide([row])`` decides each:
    the same actions and bit-identical confidences, NaN and infinities included."""
    strategy = build(*setup)
    assert isinstance(strategy, BatchStrategy)
    decided = strategy.decide_rows(rows)
    assert decided is not None
    each = [strategy.decide([rows.output(i)]) for i in range(len(rows.probabilities))]
    assert decided.actions == [d.action for d in each]
    assert [bits(c) for c in decided.confidences] == [bits(d.confidence) for d in each]
    assert all(type(c) is float for c in decided.confidences)


@FAST
@given(configured(), batches())
def test_strategies_with_memory_leave_the_batch_to_decide(setup: tuple[str, dict[str, Any]], rows: OutputRows) -> None:
    """A strategy whose decisions use earlier outputs (hysteresis or cooldown) answers ``None``: each key
    is then decided with its own history."""
    strategy = build(*setup)
    assert isinstance(strategy, BatchStrategy)
    assert (strategy.decide_rows(rows) is None) == (strategy.memory > 1)


class Contrarian(ThresholdStrategy):
    """A third-party subclass that changes the band rule only."""

    name: ClassVar[str] = "contrarian"

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        action = super().band(output, previous)
        return {Action.BUY: Action.SELL, Action.SELL: Action.BUY}.get(action, Action.HOLD)


def test_a_subclass_without_its_own_batch_rule_is_decided_one_by_one() -> None:
    """A subclass overriding ``band`` but not ``band_rows`` would be decided wrongly by its parent's batch
    rule: it answers ``None``, so the daemon uses its ``decide``."""
    strategy = Contrarian.from_params(SPEC, {})
    rows = as_rows([output(0.9)])
    assert strategy.decide([rows.output(0)]).action is Action.SELL
    assert strategy.decide_rows(rows) is None
    assert ThresholdStrategy.from_params(SPEC, {}).decide_rows(rows) is not None
