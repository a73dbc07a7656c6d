"""The per-symbol state store of streaming members: the staggered restarts and when a cached state is reused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.recurrent_state import RecurrentStates, reader_copy, restart_slot

SPAN = 8
LOOKBACK = 4
WINDOW = SPAN + LOOKBACK


def window_slots(newest: int, gaps: list[int] | None = None) -> np.ndarray:
    """Slots of a window of ``WINDOW`` candles ending at ``newest`` (``gaps``: slot steps, oldest first)."""
    steps = np.asarray(gaps if gaps is not None else [1] * (WINDOW - 1), dtype=np.int64)
    return (newest - np.concatenate([np.cumsum(steps[::-1])[::-1], [0]])).astype(np.int64)


@given(st.integers(-10_000, 10_000), st.sampled_from([2, 8, 48, 64]))
def test_the_copy_a_signal_reads_has_between_half_a_span_and_a_span_of_history(slot: int, span: int) -> None:
    """Copy 0 restarts at multiples of the span and copy 1 half a span later; the signal reads the
    one that restarted earlier, so its history covers ``span/2 + 1 .. span`` slots."""
    reader = reader_copy(slot, span)
    history = slot - restart_slot(slot, reader, span) + 1
    assert span // 2 + 1 <= history <= span
    assert restart_slot(slot, 0, span) % span == 0
    assert (restart_slot(slot, 1, span) - span // 2) % span == 0
    assert all(slot - span < restart_slot(slot, copy, span) <= slot for copy in (0, 1))


def test_a_state_resumes_after_the_candle_it_last_stepped() -> None:
    """After a commit at the previous candle, each copy steps only the newest candle from its cache."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    first = store.plan(0, "A", window_slots(20))
    assert first.fresh == (True, True)
    store.commit(first, "A", np.ones((2, 3), dtype=np.float32))
    second = store.plan(0, "A", window_slots(21))
    assert second.fresh == (False, False)
    assert second.starts == (WINDOW - 1, WINDOW - 1)
    assert second.steps == 2
    assert np.array_equal(store.cached(second), np.ones((2, 3), dtype=np.float32))


def test_a_copy_restarts_from_zero_at_its_restart_slot() -> None:
    """At a copy's restart slot its cache is not used: it steps from zero from that candle."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    store.commit(store.plan(0, "A", window_slots(23)), "A", np.ones((2, 3), dtype=np.float32))
    plan = store.plan(0, "A", window_slots(24))
    assert plan.fresh == (True, False)
    assert plan.starts == (WINDOW - 1, WINDOW - 1)
    assert np.array_equal(store.cached(plan)[0], np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("row", "key", "newest"),
    [(0, "B", 21), (1, "A", 21), (0, "A", 20), (0, "A", 40)],
    ids=["another key in the row", "another row", "an older window", "a window past the cache"],
)
def test_a_cache_not_matching_the_window_is_rebuilt_from_the_restart(row: int, key: str, newest: int) -> None:
    """A state of another key, of a later candle, or whose candle left the window steps from zero,
    from each copy's restart: at most a span of candles."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    store.commit(store.plan(0, "A", window_slots(20)), "A", np.ones((2, 3), dtype=np.float32))
    store.commit(store.plan(0, "A", window_slots(21)), "A", np.ones((2, 3), dtype=np.float32))
    slots = window_slots(newest)
    plan = store.plan(row, key, slots)
    assert plan.fresh == (True, True)
    for copy in (0, 1):
        assert slots[plan.starts[copy]] == restart_slot(newest, copy, SPAN)
        assert WINDOW - plan.starts[copy] <= SPAN


def test_a_forgotten_row_is_rebuilt() -> None:
    """``forget`` (the window went) makes the next plan step from zero."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    store.commit(store.plan(5, "A", window_slots(20)), "A", np.ones((2, 3), dtype=np.float32))
    store.forget(5)
    assert store.plan(5, "A", window_slots(21)).fresh == (True, True)


def test_a_window_too_short_for_the_lookback_is_refused() -> None:
    """A window that lacks the lookback before a copy's restart cannot be scored exactly: ValueError."""
    store = RecurrentStates(3, SPAN, LOOKBACK)
    with pytest.raises(ValueError, match="features need 4"):
        store.plan(0, "A", window_slots(23)[-SPAN:])


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
    slots = window_slots(first + WINDOW * 3, gaps)
    covered: dict[int, list[int]] = {0: [], 1: []}
    for advance in advances:
        newest = int(slots[-1]) + advance
        slots = np.concatenate([slots[1:], [newest]])
        plan = store.plan(0, "A", slots)
        for copy in (0, 1):
            stepped = slots[plan.starts[copy] :].tolist()
            covered[copy] = stepped if plan.fresh[copy] else covered[copy] + stepped
            restart = restart_slot(newest, copy, SPAN)
            assert covered[copy] == [s for s in slots.tolist() if s >= restart]
            assert covered[copy][-1] - covered[copy][0] < SPAN
        store.commit(plan, "A", np.zeros((2, 1), dtype=np.float32))
