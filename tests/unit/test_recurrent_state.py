"""The per-symbol state store of streaming members: the staggered restarts and when a cached state is reused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.recurrent_state import RecurrentStates, StepPlans, reader_copies, restart_slots

SPAN = 8
LOOKBACK = 4
WINDOW = SPAN + LOOKBACK


def window_slots(newest: int, gaps: list[int] | None = None) -> np.ndarray:
    """Slots ``[1, WINDOW]`` of a window ending at ``newest`` (``gaps``: slot steps, oldest first)."""
    steps = np.asarray(gaps if gaps is not None else [1] * (WINDOW - 1), dtype=np.int64)
    return (newest - np.concatenate([np.cumsum(steps[::-1])[::-1], [0]])).astype(np.int64)[None]


def plan_one(store: RecurrentStates, row: int, key: str, slots: np.ndarray) -> StepPlans:
    return store.plan([row], [key], slots)


def step_one(store: RecurrentStates, row: int, key: str, slots: np.ndarray, value: float = 1.0) -> StepPlans:
    plans = plan_one(store, row, key, slots)
    store.commit(plans, [key], np.full((1, 2, store.state_size), value, dtype=np.float32))
    return plans


@given(st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=20), st.sampled_from([2, 8, 48, 64]))
def test_the_copy_a_signal_reads_has_between_half_a_span_and_a_span_of_history(slots: list[int], span: int) -> None:
    """Copy 0 restarts at multiples of the span and copy 1 half a span later; the signal reads the
    one that restarted earlier, so its history covers ``span/2 + 1 .. span`` slots."""
    newest = np.asarray(slots, dtype=np.int64)
    restarts = restart_slots(newest, span)
    readers = reader_copies(restarts)
    history = newest - restarts[np.arange(len(newest)), readers] + 1
    assert np.all((span // 2 + 1 <= history) & (history <= span))
    assert np.all(restarts[:, 0] % span == 0)
    assert np.all((restarts[:, 1] - span // 2) % span == 0)
    assert np.all((newest[:, None] - span < restarts) & (restarts <= newest[:, None]))


def test_a_state_resumes_after_the_candle_it_last_stepped() -> None:
    """After a commit at the previous candle, each copy steps only the newest candle from its cache."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    first = step_one(store, 0, "A", window_slots(20))
    assert first.fresh.tolist() == [[True, True]]
    second = plan_one(store, 0, "A", window_slots(21))
    assert second.fresh.tolist() == [[False, False]]
    assert second.starts.tolist() == [[WINDOW - 1, WINDOW - 1]]
    assert second.steps == 2
    assert np.array_equal(store.cached(second), np.ones((1, 2, 3), dtype=np.float32))


def test_a_copy_restarts_from_zero_at_its_restart_slot() -> None:
    """At a copy's restart slot its cache is not used: it steps from zero from that candle."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    step_one(store, 0, "A", window_slots(23))
    plans = plan_one(store, 0, "A", window_slots(24))
    assert plans.fresh.tolist() == [[True, False]]
    assert plans.starts.tolist() == [[WINDOW - 1, WINDOW - 1]]
    assert np.array_equal(store.cached(plans)[0, 0], np.zeros(3, dtype=np.float32))
    assert np.array_equal(store.cached(plans)[0, 1], np.ones(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("row", "key", "newest"),
    [(0, "B", 22), (1, "A", 22), (0, "A", 20), (0, "A", 40)],
    ids=["another key in the row", "another row", "an older window", "a window past the cache"],
)
def test_a_cache_not_matching_the_window_is_rebuilt_from_the_restart(row: int, key: str, newest: int) -> None:
    """A state of another key, of a later candle, or whose candle left the window steps from zero,
    from each copy's restart: at most a span of candles."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    step_one(store, 0, "A", window_slots(20))
    step_one(store, 0, "A", window_slots(21))
    slots = window_slots(newest)
    plans = plan_one(store, row, key, slots)
    assert plans.fresh.tolist() == [[True, True]]
    restarts = restart_slots(slots[:, -1], SPAN)
    for copy in (0, 1):
        assert slots[0, plans.starts[0, copy]] == restarts[0, copy]
        assert WINDOW - plans.starts[0, copy] <= SPAN


def test_a_forgotten_row_is_rebuilt() -> None:
    """``forget`` (the window went) makes the next plan step from zero."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    step_one(store, 5, "A", window_slots(20))
    store.forget(5)
    assert plan_one(store, 5, "A", window_slots(21)).fresh.tolist() == [[True, True]]


def test_a_window_too_short_for_the_lookback_and_a_row_twice_are_refused() -> None:
    """A window that lacks the lookback before a copy's restart cannot be scored exactly, and one
    plan cannot step a row twice: ValueError."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    with pytest.raises(ValueError, match="features need 4"):
        plan_one(store, 0, "A", window_slots(23)[:, -SPAN:])
    with pytest.raises(ValueError, match="twice"):
        store.plan([0, 0], ["A", "A"], np.concatenate([window_slots(20), window_slots(21)]))


@given(
    st.lists(st.integers(1, 3), min_size=WINDOW - 1, max_size=WINDOW - 1),
    st.integers(0, 200),
    st.lists(st.integers(1, 3), min_size=1, max_size=30),
)
def test_resuming_and_rebuilding_cover_the_same_candles(gaps: list[int], first: int, advances: list[int]) -> None:
    """With gaps in the slots and any number of candles between scorings, a plan from the cache steps
    exactly the window's candles after the cached one, and a rebuild those from the copy's restart
    on; either way the copy's state covers the window's candles since its restart and at most a span
    of slots."""
    store = RecurrentStates(1, SPAN, LOOKBACK)
    slots = window_slots(first + WINDOW * 3, gaps)[0]
    covered: dict[int, list[int]] = {0: [], 1: []}
    for advance in advances:
        newest = int(slots[-1]) + advance
        slots = np.concatenate([slots[1:], [newest]])
        plans = step_one(store, 0, "A", slots[None], 0.0)
        restarts = restart_slots(slots[None, -1], SPAN)
        for copy in (0, 1):
            stepped = slots[plans.starts[0, copy] :].tolist()
            covered[copy] = stepped if plans.fresh[0, copy] else covered[copy] + stepped
            assert covered[copy] == [s for s in slots.tolist() if s >= restarts[0, copy]]
            assert covered[copy][-1] - covered[copy][0] < SPAN


def test_rows_grow_to_the_limit_and_no_further() -> None:
    """With a limit (the window store's capacity) the arrays double only up to it, so the states never
    hold more rows than the windows can; without one they double."""
    limited = RecurrentStates(3, SPAN, LOOKBACK, rows=2, limit=5)
    doubling = RecurrentStates(3, SPAN, LOOKBACK, rows=2)
    for row in range(5):
        step_one(limited, row, f"K{row}", window_slots(20))
        step_one(doubling, row, f"K{row}", window_slots(20))
    assert len(limited.states) == 5
    assert len(doubling.states) == 8


@given(st.data())
def test_a_batch_plan_follows_the_definition_row_by_row(data: st.DataObject) -> None:
    """Planned for many rows at once (each row's cache this key's or another's, the window the next
    one, an older one or one with gaps), every copy resumes exactly when its cached state is this
    key's and its candle is in the window since the copy's restart, one candle after it, and
    otherwise steps from the restart."""
    count = data.draw(st.integers(1, 12))
    store = RecurrentStates(1, SPAN, LOOKBACK)
    gap = st.lists(st.integers(1, 3), min_size=WINDOW - 1, max_size=WINDOW - 1)
    cached: list[np.ndarray | None] = []
    for row in range(count):
        if data.draw(st.booleans()):
            slots = window_slots(data.draw(st.integers(40, 80)), data.draw(gap))
            step_one(store, row, f"K{row}", slots)
            cached.append(slots[0])
        else:
            cached.append(None)
    keys = [data.draw(st.sampled_from([f"K{row}", "other"])) for row in range(count)]
    windows = []
    for row in range(count):
        before = cached[row]
        if before is not None and data.draw(st.booleans()):
            windows.append(np.concatenate([before[1:], [before[-1] + data.draw(st.integers(1, 3))]]))
        else:
            windows.append(window_slots(data.draw(st.integers(30, 90)), data.draw(gap))[0])
    slots = np.stack(windows)
    plans = store.plan(list(range(count)), keys, slots)
    restarts = restart_slots(slots[:, -1], SPAN)
    for row in range(count):
        window = slots[row].tolist()
        before = cached[row]
        last = int(before[-1]) if before is not None else None
        for copy in (0, 1):
            resume = (
                last is not None
                and keys[row] == f"K{row}"
                and restarts[row, copy] <= last <= window[-1]
                and last in window
            )
            start = window.index(last) + 1 if resume else sum(s < restarts[row, copy] for s in window)
            assert plans.fresh[row, copy] == (not resume)
            assert plans.starts[row, copy] == start
