"""The store-collection bench: what a full collection walks with the signal store filled."""

from __future__ import annotations

import functools
import gc

from candlecast.bench.store_collection import empty_store, fill, full_collection


def test_filling_the_store_leaves_the_collector_nothing_per_symbol_and_nothing_frozen() -> None:
    """The filled store holds every symbol's latest signal, the collector tracks at most a few objects beyond
    the frozen heap (not some per symbol), and nothing stays frozen afterwards."""
    store = empty_store(1_200, ring=500)
    found = full_collection(functools.partial(fill, store, 1_200), repeats=2)
    assert len(store.latest()) == 1_200
    assert found.tracked < 50
    assert found.cpu_ms >= 0.0
    assert gc.get_freeze_count() == 0
