"""Strategies are found through the ``candlecast.strategies`` entry-point group, third-party ones too.

The third-party distribution here is real packaging metadata (a ``.dist-info`` directory with an
``entry_points.txt``) on ``sys.path``, found by ``importlib.metadata`` as an installed wheel would be.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from candlecast.errors import ConfigError
from strategies import registry
from strategies.base import Action, Strategy
from tests.strategies.outputs import SPEC, output

MOMENTUM = '''
from typing import ClassVar


class MomentumStrategy:
    """BUY when the primary probability rose since the candle before, SELL when it fell."""

    name: ClassVar[str] = "momentum"

    def __init__(self, step: float) -> None:
        self.step = step

    @classmethod
    def from_params(cls, spec, params):
        step = float(params.get("step", 0.01))
        if step <= 0:
            raise ValueError("step: must be positive")
        return cls(step)

    @property
    def memory(self):
        return 2

    @property
    def params(self):
        return {"step": self.step}

    def decide(self, history):
        from strategies.base import Action, Decision, directional_confidence

        p = history[-1].probabilities[0]
        before = history[-2].probabilities[0] if len(history) > 1 else p
        action = Action.BUY if p - before > self.step else Action.SELL if before - p > self.step else Action.HOLD
        return Decision(action, directional_confidence(action, p))


class NotAStrategy:
    name: ClassVar[str] = "broken"

    @classmethod
    def from_params(cls, spec, params):
        return cls()
'''


def install_distribution(site: Path, entry_points: str) -> None:
    """Write a module and the metadata pip would leave for a wheel declaring ``entry_points``."""
    (site / "momentum_strategy.py").write_text(MOMENTUM)
    info = site / "momentum_strategy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: momentum-strategy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_built_ins_are_registered_through_the_entry_point_group() -> None:
    assert set(registry.available()) >= {"threshold", "agreement", "gated"}
    for name in ("threshold", "agreement", "gated"):
        assert isinstance(registry.create(name, SPEC, {}), Strategy)


def test_a_third_party_strategy_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_distribution(
        tmp_path,
        """
        [candlecast.strategies]
        momentum = momentum_strategy:MomentumStrategy
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "momentum" in registry.available()
    strategy = registry.create("momentum", SPEC, {"step": 0.05})
    assert strategy.decide([output(0.5), output(0.6)]).action is Action.BUY
    assert strategy.params == {"step": 0.05}
    with pytest.raises(ConfigError, match=r"strategy\.params\.step: must be positive"):
        registry.create("momentum", SPEC, {"step": -1})


def test_an_entry_point_that_is_not_a_strategy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_distribution(
        tmp_path,
        """
        [candlecast.strategies]
        broken = momentum_strategy:NotAStrategy
        missing = momentum_strategy:Nowhere
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"strategy\.name: 'broken' does not implement the Strategy protocol"):
        registry.create("broken", SPEC, {})
    with pytest.raises(ConfigError, match=r"strategy\.name: cannot load 'missing' from momentum_strategy:Nowhere"):
        registry.create("missing", SPEC, {})


def test_a_name_registered_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party package cannot silently replace a built-in."""
    install_distribution(
        tmp_path,
        """
        [candlecast.strategies]
        threshold = momentum_strategy:MomentumStrategy
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"strategy\.name: 'threshold' is registered more than once"):
        registry.create("threshold", SPEC, {})
