"""The stream-cost bench's round plan."""

from __future__ import annotations

from candlecast.bench.stream_cost import Arm, StreamCostOptions, arm_order


def test_every_round_runs_each_arm_once_and_each_arm_leads_in_turn() -> None:
    """Rotated orders: each round has every arm once, and over as many rounds as arms each arm goes first
    once, so no arm always runs right after the same other one."""
    arms: tuple[Arm, ...] = ("without", "with", "niced")
    orders = [arm_order(arms, r) for r in range(6)]
    assert all(sorted(order) == sorted(arms) for order in orders)
    assert [order[0] for order in orders[:3]] == ["without", "with", "niced"]
    assert orders[3] == orders[0]
    assert [arm_order(("without", "with"), r) for r in range(2)] == [["without", "with"], ["with", "without"]]


def test_the_separate_arm_joins_the_rotation_only_when_asked_for() -> None:
    """``--separate`` adds the stream-server arm after the others; every round still runs each arm once."""
    assert StreamCostOptions().arms == ("without", "with")
    arms = StreamCostOptions(niced=True, separate=True).arms
    assert arms == ("without", "with", "niced", "separate")
    assert StreamCostOptions(separate=True).arms == ("without", "with", "separate")
    assert StreamCostOptions(in_daemon=False, separate=True).arms == ("without", "separate")
    assert all(sorted(arm_order(arms, r)) == sorted(arms) for r in range(4))
    assert [arm_order(arms, r)[0] for r in range(4)] == list(arms)
