"""The cooldown's finite-memory rule, checked on every short sequence of band actions."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.base import Action
from strategies.smoothing import Smoothing, settled_action
from tests.strategies.outputs import changes

B, S, H = Action.BUY, Action.SELL, Action.HOLD


def published(band: list[Action], confirm: int, expiry: int) -> list[Action]:
    """What the signal is after each candle, each decided from the window the strategy keeps."""
    smoothing = Smoothing(hysteresis=False, cooldown=confirm - 1, memory=expiry)
    assert smoothing.expiry == expiry
    window = smoothing.settle_memory
    return [
        settled_action(band[max(0, i + 1 - window) : i + 1], confirm=confirm, expiry=expiry) for i in range(len(band))
    ]


@pytest.mark.parametrize("expiry", [1, 2])
def test_every_action_lasts_at_least_confirm_candles_for_every_short_band_sequence(expiry: int) -> None:
    """Exhaustive over all 3^10 band sequences, longer than the window each decision sees: consecutive
    changes are at least ``confirm`` apart, fallbacks to HOLD after chatter included."""
    for band in itertools.product((B, S, H), repeat=10):
        found = changes(published(list(band), 2, expiry))
        assert all(b - a >= 2 for a, b in itertools.pairwise(found)), band


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=5), st.data())
def test_every_action_lasts_at_least_confirm_candles_for_long_band_sequences(confirm: int, data: st.DataObject) -> None:
    expiry = data.draw(st.integers(min_value=max(1, confirm - 1), max_value=8))
    steps = data.draw(st.lists(st.tuples(st.sampled_from([B, S, H]), st.integers(1, 2 * confirm)), max_size=30))
    band = [action for action, repeat in steps for _ in range(repeat)]
    found = changes(published(band, confirm, expiry))
    assert all(b - a >= confirm for a, b in itertools.pairwise(found))


def test_an_action_is_taken_once_confirmed_and_kept_until_another_is() -> None:
    band = [H, B, B, B, S, B, S, S, S, H]
    assert published(band, confirm=3, expiry=8) == [H, H, H, B, B, B, B, B, S, S]


def test_chatter_falls_back_to_hold_and_the_fallback_lasts() -> None:
    """No action confirmed for ``expiry`` candles: HOLD; a run that began before the fallback counts only
    once it has been asked for ``confirm`` candles after it."""
    band = [B, B, S, B, S, B, B, B, B]
    assert published(band, confirm=2, expiry=2) == [H, B, B, B, H, H, B, B, B]


def test_a_lock_out_cooldown_would_flicker_in_a_sliding_window() -> None:
    """Why the cooldown confirms instead of locking: replaying "change, then lock for c candles" from HOLD
    over each sliding window gives decisions that change on consecutive candles."""

    def lock_out(band: list[Action], cooldown: int) -> Action:
        state, since = H, cooldown
        for wanted in band:
            if wanted is not state and since >= cooldown:
                state, since = wanted, 0
            else:
                since += 1
        return state

    band = [B, S, B, S, B, S, B, S]
    flickering = [lock_out(band[max(0, i - 2) : i + 1], cooldown=2) for i in range(len(band))]
    assert changes(flickering) == [3, 4, 5, 6, 7]
    assert changes(published(band, confirm=3, expiry=4)) == []


def test_the_fallback_never_comes_sooner_than_the_cooldown() -> None:
    """With a memory shorter than the cooldown, a confirmed action still outlives its last confirmation
    by ``cooldown`` candles, so an action confirmed late is kept ``cooldown + 1`` candles."""
    assert Smoothing(hysteresis=False, cooldown=5, memory=2).expiry == 5
