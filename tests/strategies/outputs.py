"""Ensemble outputs for strategy tests: hand-made ones and hypothesis strategies."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from strategies.base import Action, EnsembleOutput, OutputSpec, Strategy

SPEC = OutputSpec(horizons=(1, 5, 20), quantiles=(0.1, 0.5, 0.9))


def output(
    p: float, *others: float, disagreement: float = 0.0, interval: float = 0.02, horizons: int = 3
) -> EnsembleOutput:
    """An output with primary probability ``p`` (other horizons ``others``, else ``p``)."""
    probabilities = (p, *others) + (p,) * (horizons - 1 - len(others))
    half = interval / 2
    return EnsembleOutput(
        probabilities=probabilities,
        quantiles=tuple((-half, 0.0, half) for _ in probabilities),
        disagreement=(disagreement,) * len(probabilities),
    )


def outputs(*ps: float) -> list[EnsembleOutput]:
    return [output(p) for p in ps]


def decisions(strategy: Strategy, history: Sequence[EnsembleOutput]) -> list[Action]:
    """The decision for every candle of a stream, each seeing the strategy's memory, as the daemon does."""
    return [strategy.decide(history[max(0, i + 1 - strategy.memory) : i + 1]).action for i in range(len(history))]


def changes(actions: Sequence[Action]) -> list[int]:
    """Positions where the action differs from the one before."""
    return [i for i in range(1, len(actions)) if actions[i] is not actions[i - 1]]


# Probabilities cluster around the default thresholds and their hysteresis bands, where behaviour changes.
probabilities = st.one_of(
    st.sampled_from([0.3, 0.39, 0.4, 0.41, 0.45, 0.5, 0.55, 0.58, 0.59, 0.6, 0.61, 0.7]),
    st.floats(min_value=0.0, max_value=1.0),
)


@st.composite
def ensemble_outputs(draw: st.DrawFn) -> EnsembleOutput:
    ps = tuple(draw(probabilities) for _ in SPEC.horizons)
    spreads = [draw(st.floats(min_value=0.0, max_value=0.2)) for _ in SPEC.horizons]
    medians = [draw(st.floats(min_value=-0.05, max_value=0.05)) for _ in SPEC.horizons]
    return EnsembleOutput(
        probabilities=ps,
        quantiles=tuple((m - s / 2, m, m + s / 2) for m, s in zip(medians, spreads, strict=True)),
        disagreement=tuple(draw(st.floats(min_value=0.0, max_value=0.3)) for _ in SPEC.horizons),
    )


@st.composite
def streams(draw: st.DrawFn, min_size: int = 1, max_size: int = 60) -> list[EnsembleOutput]:
    """Outputs of consecutive candles; some repeat the one before, so steady spells occur as well as chatter."""
    fresh = draw(st.lists(ensemble_outputs(), min_size=min_size, max_size=max_size))
    repeat = draw(st.lists(st.booleans(), min_size=len(fresh), max_size=len(fresh)))
    stream: list[EnsembleOutput] = []
    for new, again in zip(fresh, repeat, strict=True):
        stream.append(stream[-1] if again and stream else new)
    return stream
