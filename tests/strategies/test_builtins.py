"""The built-in strategies on hand-made outputs: what each parameter does."""

from __future__ import annotations

import pytest

from candlecast.errors import ConfigError
from strategies import registry
from strategies.agreement import AgreementStrategy
from strategies.base import Action, Decision
from strategies.gated import GatedStrategy
from strategies.threshold import ThresholdStrategy
from tests.strategies.outputs import SPEC, decisions, output, outputs

B, S, H = Action.BUY, Action.SELL, Action.HOLD


class TestThreshold:
    @pytest.mark.parametrize(
        ("p", "action", "confidence"),
        [(0.61, B, 0.61), (0.6, H, 0.6), (0.5, H, 0.5), (0.45, H, 0.55), (0.4, H, 0.6), (0.39, S, 0.61)],
    )
    def test_defaults_buy_above_0_6_and_sell_below_0_4(self, p: float, action: Action, confidence: float) -> None:
        decision = ThresholdStrategy.from_params(SPEC, {}).decide([output(p)])
        assert decision.action is action
        assert decision.confidence == pytest.approx(confidence)

    def test_is_stateless_by_default(self) -> None:
        assert ThresholdStrategy.from_params(SPEC, {}).memory == 1

    def test_hysteresis_keeps_an_action_near_its_threshold_for_at_most_memory_candles(self) -> None:
        strategy = ThresholdStrategy.from_params(SPEC, {"hysteresis": 0.05, "memory": 3})
        assert decisions(strategy, outputs(0.62, 0.58, 0.56, 0.56, 0.54, 0.38, 0.42, 0.46)) == [B, B, B, H, H, S, S, H]

    def test_cooldown_takes_an_action_after_cooldown_plus_one_candles(self) -> None:
        strategy = ThresholdStrategy.from_params(SPEC, {"cooldown": 2})
        assert decisions(strategy, outputs(0.7, 0.7, 0.7, 0.5, 0.3, 0.5, 0.5, 0.5)) == [H, H, B, B, B, B, B, H]

    def test_acts_on_the_configured_horizon(self) -> None:
        strategy = ThresholdStrategy.from_params(SPEC, {"horizon": 20})
        decision = strategy.decide([output(0.5, 0.5, 0.7)])
        assert decision == Decision(B, 0.7)


class TestAgreement:
    def test_buys_only_when_every_horizon_is_above(self) -> None:
        strategy = AgreementStrategy.from_params(SPEC, {})
        assert strategy.decide([output(0.7, 0.65, 0.61)]).action is B
        assert strategy.decide([output(0.7, 0.65, 0.59)]).action is H
        assert strategy.decide([output(0.3, 0.35, 0.39)]).action is S
        assert strategy.decide([output(0.3, 0.7, 0.3)]).action is H

    def test_chosen_horizons_and_per_horizon_thresholds(self) -> None:
        strategy = AgreementStrategy.from_params(
            SPEC, {"horizons": [5, 1], "buy_above": {"1": 0.55, "5": 0.65}, "sell_below": 0.45}
        )
        decision = strategy.decide([output(0.56, 0.66, 0.1)])
        assert decision == Decision(B, 0.66)
        assert strategy.decide([output(0.56, 0.64, 0.9)]).action is H

    def test_threshold_order_does_not_change_the_strategy_reference(self) -> None:
        one = AgreementStrategy.from_params(SPEC, {"buy_above": {"20": 0.6, "1": 0.6, "5": 0.7}})
        other = AgreementStrategy.from_params(SPEC, {"buy_above": {"1": 0.6, "5": 0.7, "20": 0.6}})
        assert one.params == other.params

    def test_hysteresis_holds_while_every_horizon_stays_close(self) -> None:
        strategy = AgreementStrategy.from_params(SPEC, {"hysteresis": 0.05})
        assert decisions(strategy, [output(0.7), output(0.58), output(0.58, 0.58, 0.54)]) == [B, B, H]


class TestGated:
    def test_holds_when_members_disagree(self) -> None:
        strategy = GatedStrategy.from_params(SPEC, {"max_disagreement": 0.05})
        assert strategy.decide([output(0.8, disagreement=0.04)]).action is B
        held = strategy.decide([output(0.8, disagreement=0.06)])
        assert held == Decision(H, 0.8)

    def test_holds_when_the_quantile_interval_is_wide(self) -> None:
        strategy = GatedStrategy.from_params(SPEC, {"max_disagreement": None, "max_interval": 0.05})
        assert strategy.decide([output(0.2, interval=0.04)]).action is S
        assert strategy.decide([output(0.2, interval=0.06)]).action is H

    def test_interval_levels_come_from_the_model(self) -> None:
        with pytest.raises(ValueError, match=r"interval: the model predicts quantiles \[0.1, 0.5, 0.9\], not 0.25"):
            GatedStrategy.from_params(SPEC, {"max_interval": 0.05, "interval": [0.25, 0.9]})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("threshold", {"buy_above": 0.4}, r"strategy\.params\.buy_above: Input should be greater than 0\.5"),
        ("threshold", {"hysteresis": 0.25}, r"strategy\.params: .*hysteresis must be smaller"),
        ("threshold", {"horizon": 7}, r"strategy\.params\.horizon: the model predicts horizons \[1, 5, 20\], not 7"),
        ("threshold", {"cooldwon": 2}, r"strategy\.params\.cooldwon: Extra inputs are not permitted"),
        ("agreement", {"buy_above": {"1": 0.6}}, r"strategy\.params\.buy_above: no threshold for horizons \[5, 20\]"),
        ("agreement", {"sell_below": 0.6}, r"strategy\.params\.sell_below: 0\.6 for horizon 1 is not between"),
        ("gated", {"max_disagreement": None}, r"strategy\.params: .*set max_disagreement or max_interval"),
        ("momentum", {}, r"strategy\.name: unknown strategy 'momentum'; available: agreement, gated, threshold"),
    ],
)
def test_bad_configuration_names_the_field(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry.create(name, SPEC, params)
