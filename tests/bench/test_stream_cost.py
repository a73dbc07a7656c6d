"""The stream-cost bench's round plan."""

from __future__ import annotations

from candlecast.bench.pauses import Pauses
from candlecast.bench.ratios import RatioSummary
from candlecast.bench.report import ClientCounts, Latency
from candlecast.bench.rounds import arm_order
from candlecast.bench.stream_cost import (
    CAUGHT_UP_S,
    Arm,
    Phase,
    StreamCostOptions,
    StreamCostResult,
    fell_behind,
    render,
)


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
    assert StreamCostOptions(in_daemon=False, separate=True, limited=True).arms == ("without", "separate", "limited")
    assert all(sorted(arm_order(arms, r)) == sorted(arms) for r in range(4))
    assert [arm_order(arms, r)[0] for r in range(4)] == list(arms)


def _phase(arm: Arm, received: list[int], cut_off: int = 0, caught_up_s: float = 0.0) -> Phase:
    counts = ClientCounts(3_000, received, cut_off, 1.5, caught_up_s)
    return Phase(0, arm, Latency(3_000, 20.0, 50.0, 60.0, 70.0), 10.0, Pauses(0, 1.0, 1.0, 2.0), counts, cut_off)


def test_an_arm_whose_clients_fell_behind_is_counted_and_marked_invalid() -> None:
    """Phases whose clients were cut off, read fewer signals than published, or were still reading their
    backlog ``CAUGHT_UP_S`` after the phase count against their arm, and the rendered summary says its
    ratios are invalid; an arm whose clients all kept up does not."""
    without = Phase(0, "without", Latency(3_000, 20.0, 50.0, 60.0, 70.0), 10.0, Pauses(0, 1.0, 1.0, 2.0), None, 0)
    phases = [
        without,
        _phase("separate", [3_000, 3_000], caught_up_s=0.2),
        _phase("limited", [3_000, 3_000]),
        _phase("limited", [3_000, 2_999]),
        _phase("limited", [3_000, 3_000], cut_off=1),
        _phase("limited", [3_000, 3_000], caught_up_s=CAUGHT_UP_S + 0.5),
    ]
    assert [p.kept_up for p in phases] == [True, True, True, False, False, False]
    behind = fell_behind(phases, ("separate", "limited"))
    assert behind == {"separate": 0, "limited": 3}
    ratio = RatioSummary(99, [1.0], 1.0, (1.0, 1.0), 1.0, (1.0, 1.0))
    result = StreamCostResult({}, {"rate": 300, "steady_s": 10, "clients": 2}, "m/1", 0.5, phases)
    result.summary = {arm: {"p99": ratio} for arm in behind}
    result.fell_behind = behind
    rows = {line.split("|")[1].strip(): line for line in render(result).splitlines()[-2:]}
    assert rows["separate"].endswith("| yes |")
    assert "no, in 3 of 4 phases: ratios invalid" in rows["limited"]
