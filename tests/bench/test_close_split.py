"""The close split's report: per arm the medians over its closes, and each arm's last signal against its
delivery's default arm and each delivery's default against the first's, round by round."""

from __future__ import annotations

from candlecast.bench.close_split import Close, CloseResult, render
from candlecast.bench.options import Delivery


def _close(number: int, delivery: Delivery, arm: str, last_ms: float) -> Close:
    return Close(
        round=number,
        delivery=delivery,
        arm=arm,
        last_signal_ms=last_ms,
        publishes=4,
        publish_mean_ms=10.0,
        publish_total_ms=40.0,
        between_publishes_ms=5.0,
        first_publish_ms=20.0,
        after_last_forward_ms=30.0,
        forwards=20,
        forward_total_ms=100.0,
        produce_retries=0,
    )


def test_the_report_sets_each_arm_against_its_baseline_round_by_round() -> None:
    """Medians and ranges per arm; ``slim`` over ``default`` of its delivery, at-least-once over exactly-once."""
    closes = [
        _close(0, "exactly_once", "default", 1000.0),
        _close(0, "exactly_once", "slim", 800.0),
        _close(0, "at_least_once", "default", 500.0),
        _close(1, "exactly_once", "default", 1200.0),
        _close(1, "exactly_once", "slim", 1200.0),
        _close(1, "at_least_once", "default", 1200.0),
    ]
    options: dict[str, object] = {"symbols": 10_000, "rounds": 2}
    text = render(CloseResult({}, options, "m/1", 1.0, closes))
    assert "| exactly_once | default | 1100 (1000-1200) | 4 (4-4) |" in text
    assert "exactly_once slim over exactly_once default, round by round: 0.80, 1.00; median 0.90" in text
    assert "at_least_once default over exactly_once default, round by round: 0.50, 1.00; median 0.75" in text
