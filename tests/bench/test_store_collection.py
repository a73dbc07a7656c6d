"""The store-collection bench: what a full collection walks with the signal store filled."""

from __future__ import annotations

import gc

from candlecast.bench.store_collection import filled_store, full_collection


def test_a_filled_store_leaves_the_frozen_heap_and_the_collector_as_they_were() -> None:
    """The store holds every symbol's latest signal, the collector tracks a few objects beyond the frozen heap
    (not some per symbol), and nothing stays frozen afterwards."""
    stores = []

    def build() -> object:
        stores.append(filled_store(1_200, ring=500))
        return stores[-1]

    found = full_collection(build, repeats=2)
    assert len(stores[0].latest()) == 1_200
    assert found.tracked < 50
    assert found.cpu_ms >= 0.0
    assert gc.get_freeze_count() == 0
