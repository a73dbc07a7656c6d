"""Properties every built-in strategy keeps, for any stream of ensemble outputs (hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import registry
from strategies.base import Action, EnsembleOutput, Strategy
from tests.strategies.outputs import SPEC, changes, decisions, streams

BUILT_INS = ("threshold", "agreement", "gated")
FAST = settings(max_examples=80, deadline=None)


@st.composite
def band_params(draw: st.DrawFn, *, hysteresis: bool = True, cooldown: bool = True) -> dict[str, Any]:
    buy = draw(st.sampled_from([0.55, 0.6, 0.65]))
    sell = draw(st.sampled_from([0.35, 0.4, 0.45]))
    return {
        "buy_above": buy,
        "sell_below": sell,
        "hysteresis": draw(st.sampled_from([0.0, 0.02, 0.05])) if hysteresis else 0.0,
        "cooldown": draw(st.integers(min_value=0, max_value=4)) if cooldown else 0,
        "memory": draw(st.integers(min_value=1, max_value=10)),
    }


@st.composite
def configured(draw: st.DrawFn, *, hysteresis: bool = True, cooldown: bool = True) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(BUILT_INS))
    params = draw(band_params(hysteresis=hysteresis, cooldown=cooldown))
    if name == "agreement":
        params["horizons"] = draw(st.sampled_from([None, (1, 5), (5, 20, 1)]))
    if name == "gated":
        params["max_disagreement"] = draw(st.sampled_from([None, 0.05, 0.15]))
        params["max_interval"] = draw(st.sampled_from([None, 0.05, 0.1])) if params["max_disagreement"] else 0.1
    return name, params


def build(name: str, params: dict[str, Any]) -> Strategy:
    return registry.create(name, SPEC, params)


def reference_probability(name: str, params: dict[str, Any], output: EnsembleOutput) -> float:
    """The probability a strategy's confidence is about: its horizon (threshold, gated) or first horizon."""
    horizons = params.get("horizons") or SPEC.horizons
    horizon = horizons[0] if name == "agreement" else params.get("horizon") or SPEC.horizons[0]
    return output.probabilities[SPEC.horizons.index(horizon)]


@FAST
@given(configured(), streams())
def test_decisions_are_deterministic(setup: tuple[str, dict[str, Any]], stream: list[EnsembleOutput]) -> None:
    """Two instances built from the same parameters decide alike, and deciding again changes nothing."""
    first, second = build(*setup), build(*setup)
    assert first.decide(stream) == second.decide(stream) == first.decide(list(stream))


@FAST
@given(configured(), streams(min_size=0, max_size=30), streams(min_size=1, max_size=40))
def test_decisions_depend_only_on_the_last_memory_outputs(
    setup: tuple[str, dict[str, Any]], older: list[EnsembleOutput], recent: list[EnsembleOutput]
) -> None:
    """Whatever came before the last ``memory`` outputs, the decision is the same: recovery is exact."""
    strategy = build(*setup)
    stream = older + recent
    assert strategy.decide(stream) == strategy.decide(stream[-strategy.memory :])
    if len(stream) >= strategy.memory:
        assert strategy.decide(recent + stream[-strategy.memory :]) == strategy.decide(stream)


@FAST
@given(configured(), streams())
def test_confidence_is_the_probability_of_the_direction_taken(
    setup: tuple[str, dict[str, Any]], stream: list[EnsembleOutput]
) -> None:
    """BUY: p; SELL: 1 - p; HOLD: max(p, 1 - p), with p at the strategy's reference horizon; always in [0, 1]."""
    decision = build(*setup).decide(stream)
    p = reference_probability(*setup, stream[-1])
    expected = {Action.BUY: p, Action.SELL: 1 - p, Action.HOLD: max(p, 1 - p)}[decision.action]
    assert decision.confidence == expected
    assert 0.0 <= decision.confidence <= 1.0


@FAST
@given(configured(), st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40))
def test_hold_while_every_probability_stays_inside_the_band(
    setup: tuple[str, dict[str, Any]], fractions: list[float]
) -> None:
    """Probabilities within [sell_below + hysteresis, buy_above - hysteresis] never trigger BUY or SELL."""
    name, params = setup
    low, high = params["sell_below"] + params["hysteresis"], params["buy_above"] - params["hysteresis"]
    stream = [
        EnsembleOutput((p, p, p), ((-0.01, 0.0, 0.01),) * 3, (0.0,) * 3)
        for p in (low + f * (high - low) for f in fractions)
    ]
    assert build(name, params).decide(stream).action is Action.HOLD


@FAST
@given(configured(), streams(max_size=80))
def test_cooldown_keeps_every_action_at_least_cooldown_plus_one_candles(
    setup: tuple[str, dict[str, Any]], stream: list[EnsembleOutput]
) -> None:
    """Changes of the published action are at least ``cooldown + 1`` candles apart, so n candles hold at most
    ``1 + (n - 2) // (cooldown + 1)`` changes, whatever the probabilities do."""
    name, params = setup
    found = changes(decisions(build(name, params), stream))
    assert all(later - earlier > params["cooldown"] for earlier, later in itertools.pairwise(found))
    if len(stream) >= 2:
        assert len(found) <= 1 + (len(stream) - 2) // (params["cooldown"] + 1)


@FAST
@given(configured(hysteresis=False, cooldown=False), st.sampled_from([0.02, 0.05, 0.1]), streams(max_size=80))
def test_hysteresis_never_flips_more_than_plain_thresholds(
    setup: tuple[str, dict[str, Any]], hysteresis: float, stream: list[EnsembleOutput]
) -> None:
    """The same stream decided with hysteresis changes action at most as often as without."""
    name, params = setup
    plain = changes(decisions(build(name, params), stream))
    sticky = changes(decisions(build(name, {**params, "hysteresis": hysteresis}), stream))
    assert len(sticky) <= len(plain)


@pytest.mark.parametrize("name", BUILT_INS)
def test_hysteresis_removes_flicker_around_a_threshold(name: str) -> None:
    """A probability wobbling just around buy_above: plain thresholds flip every candle, hysteresis holds BUY."""
    wobble = [EnsembleOutput((p, p, p), ((-0.01, 0.0, 0.01),) * 3, (0.0,) * 3) for p in [0.61, 0.59] * 10]
    params = {"max_disagreement": 0.1} if name == "gated" else {}
    plain = decisions(build(name, params), wobble)
    sticky = decisions(build(name, {**params, "hysteresis": 0.05}), wobble)
    assert len(changes(plain)) == len(wobble) - 1
    assert sticky == [Action.BUY] * len(wobble)


@FAST
@given(band_params(cooldown=False), streams())
def test_gated_holds_on_any_uncertain_candle_without_cooldown(
    params: dict[str, Any], stream: list[EnsembleOutput]
) -> None:
    """Members that disagree more than the limit force HOLD, whatever the probability says; with no
    disagreement in the strategy's memory it decides as the threshold strategy."""
    strategy = build("gated", {**params, "max_disagreement": 0.1})
    if stream[-1].disagreement[0] > 0.1:
        assert strategy.decide(stream).action is Action.HOLD
    elif all(output.disagreement[0] <= 0.1 for output in stream[-strategy.memory :]):
        assert strategy.decide(stream) == build("threshold", params).decide(stream)
