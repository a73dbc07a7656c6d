"""A partition's rebuild offset, kept with every window write, is the smallest offset its windows hold,
as computed from the windows themselves, after every record of random streams."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.engine import SourceRecord
from daemon.window import GapMode, GapPolicy, WindowStore
from tests.unit.test_ingest_runs import SYMBOLS, Setup, _ingestor, _record, spoiled

PARTITIONS = (0, 1)


def held_minimum(store: WindowStore, partition: int) -> int | None:
    """The definition: over the partition's live windows, the offset of each one's oldest candle, least first."""
    live = np.flatnonzero(store._partition[: len(store._keys)] == partition)
    if live.size == 0:
        return None
    oldest = (store._head[live] - store._count[live]) % store.span
    return int(store._offsets[live, oldest].min())


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([GapMode.RESET, GapMode.TOLERATE, GapMode.FORWARD_FILL]),
    st.integers(1, 6),
    st.sampled_from([0, 3]),
    st.lists(
        st.tuples(
            st.integers(0, len(SYMBOLS) - 1),
            st.sampled_from([1, 1, 1, 0, -1, 2, 3, 5]),
            st.integers(0, 9),
            spoiled,
            st.sampled_from(["one", "run", "run", "replay", "drop"]),
        ),
        min_size=1,
        max_size=80,
    ),
)
def test_the_rebuild_offset_is_the_oldest_offset_held(
    mode: GapMode, capacity: int, idle_expiry: int, steps: list[tuple[int, int, int, str, str]]
) -> None:
    """Record by record, in runs, replayed, with gaps of every policy, evictions, expiries, a symbol moving
    partition and partitions dropped: each partition's rebuild offset and live slots are those the windows
    say, whichever way they were written."""
    released: list[tuple[tuple[str, str], int]] = []
    ingestor = _ingestor(Setup(GapPolicy(mode, 1), 2, capacity, idle_expiry), released)
    store = ingestor.store
    hours = dict.fromkeys(range(len(SYMBOLS)), 0)
    run: list[SourceRecord] = []
    for offset, (symbol, step, partition_draw, kind, how) in enumerate([*steps, (0, 0, 0, "", "one")]):
        hours[symbol] = max(0, hours[symbol] + step)
        partition = symbol % 2 if partition_draw else 1 - symbol % 2
        record = _record(offset, (symbol, hours[symbol], partition, kind))
        if how == "run":
            run.append(record)  # consecutive ones go in together, written with one array write
            continue
        if run:
            ingestor.ingest_many(run, [None] * len(run), 0, len(run))
            run.clear()
            assert_held(store)
        if how == "one":
            ingestor.ingest(record, 0)
        elif how == "replay":
            ingestor.replay(record)
        else:
            store.drop_partition(partition)
        assert_held(store)


def assert_held(store: WindowStore) -> None:
    for partition in PARTITIONS:
        assert store.rebuild_offset(partition) == held_minimum(store, partition)
        live = np.flatnonzero(store._partition[: len(store._keys)] == partition)
        assert store.slots_in(partition).tolist() == live.tolist()
