"""Ingesting a run of records at once (``CandleIngestor.ingest_many``, ``WindowStore.append``) decides
exactly as ingesting them one by one: requests, dead letters, releases, counters and windows."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.candle import CandleMessage, CandleValidator, decode_message
from daemon.engine import SHORT_RUN, CandleIngestor, ScoreRequest, SourceRecord
from daemon.intervals import Interval
from daemon.signal import DeadLetter
from daemon.window import GapMode, GapPolicy, WindowKey, WindowStore

HOUR = 3_600_000
BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z
LENGTH = 3
SYMBOLS = "ABCDE"
_encoder = msgspec.json.Encoder()


@dataclass
class Setup:
    policy: GapPolicy
    memory: int
    capacity: int
    idle_expiry: int
    short_run: int = 1
    """``CandleIngestor.short_run``: 1 sends every run through the run path."""


@dataclass
class Ingested:
    requests: list[ScoreRequest]
    letters: list[DeadLetter]
    released: list[tuple[WindowKey, int]]
    ingestor: CandleIngestor


def _ingestor(setup: Setup, released: list[tuple[WindowKey, int]]) -> CandleIngestor:
    intervals = {"1h": Interval.parse("1h")}
    store = WindowStore(
        LENGTH,
        intervals=intervals,
        gap_policies={"1h": setup.policy},
        history=setup.memory - 1,
        capacity=setup.capacity,
        idle_expiry=setup.idle_expiry,
    )
    validator = CandleValidator(intervals, max_message_bytes=200)
    return CandleIngestor(
        validator,
        store,
        setup.memory,
        lambda key, sequence: released.append((key, sequence)),
        short_run=setup.short_run,
    )


def _record(offset: int, item: tuple[int, int, int, str]) -> SourceRecord:
    """A record of symbol ``item[0]`` at hour ``item[1]`` on partition ``item[2]``, spoiled as ``item[3]`` says."""
    symbol, hour, partition, kind = SYMBOLS[item[0]], item[1], item[2], item[3]
    price = 100.0 + (hour * 7 + item[0]) % 13
    low = price * (1.5 if kind == "inconsistent" else 0.99)
    message = CandleMessage(
        symbol, "1d" if kind == "interval" else "1h", BASE + hour * HOUR, price, price * 1.01, low, price, 10.0
    )
    value = {"malformed": b"{", "oversize": b" " * 300}.get(kind, _encoder.encode(message))
    key = None if kind == "null_key" else symbol.encode()
    return SourceRecord("candles", partition, offset, key, value, BASE + hour * HOUR)


def _one_by_one(setup: Setup, records: list[SourceRecord]) -> Ingested:
    released: list[tuple[WindowKey, int]] = []
    ingestor = _ingestor(setup, released)
    requests, letters = [], []
    for record in records:
        result = ingestor.ingest(record, 7)
        if isinstance(result, ScoreRequest):
            requests.append(result)
        elif isinstance(result, DeadLetter):
            letters.append(result)
    return Ingested(requests, letters, released, ingestor)


def _in_runs(setup: Setup, records: list[SourceRecord], rooms: list[int], decoded: bool, alone: bool) -> Ingested:
    """``ingest_many`` with rooms taken in turn from ``rooms``, on all the records left (``alone``: on
    one at a time, so every candle of a known key takes the path that writes it with the run)."""
    released: list[tuple[WindowKey, int]] = []
    ingestor = _ingestor(setup, released)
    requests, letters = [], []
    messages = [decode_message(record.value) if decoded else None for record in records]
    start = 0
    for room in rooms * len(records):
        if start >= len(records):
            break
        stop = start + 1 if alone else len(records)
        made, refused, taken = ingestor.ingest_many(records[start:stop], messages[start:stop], 7, room)
        assert taken >= 1 and len(made) <= room
        assert len(made) == room or start + taken == stop, "a run stops only when its room is full"
        requests += made
        letters += refused
        start += taken
    assert start == len(records)
    return Ingested(requests, letters, released, ingestor)


def _fields(request: ScoreRequest) -> tuple[object, ...]:
    return (
        request.key,
        request.ts,
        request.window.tobytes(),
        request.window.shape,
        request.topic,
        request.partition,
        request.offset,
        request.timestamp_ms,
        request.history,
        request.received_ns,
        request.sequence,
        request.row,
        request.slots.tolist(),
    )


def _store_state(store: WindowStore) -> tuple[object, ...]:
    keys = list(store._slots)  # least recently updated first: eviction order
    slots = [store.slot_of(key) or 0 for key in keys]
    counts = [store.count(slot) for slot in slots]
    full = [slot for slot, count in zip(slots, counts, strict=True) if count >= store.length]
    return (
        keys,
        slots,
        counts,
        store.gather(full).tobytes(),
        store.gather_slots(full).tolist(),
        [store.rebuild_offset(partition) for partition in (0, 1)],
        [store.history_available(slot) for slot in slots],
        store.stats,
    )


spoiled = st.sampled_from(["", "", "", "", "", "", "malformed", "oversize", "null_key", "interval", "inconsistent"])


_GAPS = [(0, 1, 1, ""), (0, 3, 1, ""), (1, 1, 1, ""), (0, 1, 1, ""), (1, 2, 1, ""), (0, 5, 1, "")]
"""Gaps of one, two and four candles on known keys, each its own run when ``alone``."""


@settings(max_examples=300, deadline=None)
@example(GapMode.FORWARD_FILL, 2, 2, 6, 0, _GAPS, [8], True, True, 1)
@example(GapMode.TOLERATE, 2, 3, 6, 3, _GAPS, [8], True, True, 1)
@example(GapMode.RESET, 2, 1, 6, 3, _GAPS, [8], False, True, 1)
@given(
    st.sampled_from([GapMode.RESET, GapMode.TOLERATE, GapMode.FORWARD_FILL]),
    st.integers(0, 2),
    st.integers(1, 3),
    st.integers(2, 6),
    st.sampled_from([0, 3]),
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from([1, 1, 1, 0, -1, -3, 2, 2, 3, 5]), st.integers(0, 9), spoiled),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(1, 8), min_size=1, max_size=5),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 1, 3, SHORT_RUN]),
)
def test_runs_decide_as_one_by_one(
    mode: GapMode,
    max_missing: int,
    memory: int,
    capacity: int,
    idle_expiry: int,
    steps: list[tuple[int, int, int, str]],
    rooms: list[int],
    decoded: bool,
    alone: bool,
    short_run: int,
) -> None:
    """Random streams (gaps, duplicates, late candles, evictions, expiries, a symbol moving partition,
    every kind of rejection), in runs of random room, short runs taken record by record or not: the same
    outcomes as record by record."""
    expiry = idle_expiry if idle_expiry > max_missing else 0
    setup = Setup(GapPolicy(mode, max_missing), memory, capacity, expiry, short_run)
    hours = dict.fromkeys(range(len(SYMBOLS)), LENGTH - 1)
    items = [(0, hour, 0, "") for hour in range(LENGTH)]  # at least one full window
    for symbol, step, partition_draw, kind in steps:
        hours[symbol] = max(0, hours[symbol] + step)
        # A symbol stays on its partition but now and then shows up on the other one.
        partition = symbol % 2 if partition_draw else 1 - symbol % 2
        items.append((symbol, hours[symbol], partition, kind))
    records = [_record(offset, item) for offset, item in enumerate(items)]

    expected = _one_by_one(setup, records)
    got = _in_runs(setup, records, rooms, decoded, alone)

    assert [_fields(r) for r in got.requests] == [_fields(r) for r in expected.requests]
    assert got.letters == expected.letters
    assert got.released == expected.released
    assert got.ingestor.counters == expected.ingestor.counters
    assert _store_state(got.ingestor.store) == _store_state(expected.ingestor.store)
    assert expected.requests, "the stream makes requests to compare"


def test_a_close_is_one_array_write() -> None:
    """A candle close across many keys writes each window array once for the run, not once per candle."""
    released: list[tuple[WindowKey, int]] = []
    setup = Setup(GapPolicy(), memory=1, capacity=100, idle_expiry=0)
    ingestor = _ingestor(setup, released)
    symbols = [f"S{i}" for i in range(50)]

    def close(hour: int) -> list[SourceRecord]:
        records = []
        for i, symbol in enumerate(symbols):
            ts = BASE + hour * HOUR
            message = CandleMessage(symbol, "1h", ts, 1.0, 1.0, 1.0, 1.0, 1.0)
            records.append(SourceRecord("candles", 0, hour * 50 + i, symbol.encode(), _encoder.encode(message), ts))
        return records

    for hour in range(LENGTH - 1):
        ingestor.ingest_many(close(hour), [None] * len(symbols), 0, 1000)
    writes: list[object] = []
    store = ingestor.store
    original = store._write_run

    def counted(run: object) -> None:
        writes.append(run)
        original(run)  # type: ignore[arg-type]

    store._write_run = counted  # type: ignore[method-assign]
    requests, letters, taken = ingestor.ingest_many(close(LENGTH - 1), [None] * len(symbols), 0, 1000)
    assert (len(requests), letters, taken) == (len(symbols), [], len(symbols))
    assert len(writes) == 1
    assert np.array_equal(np.stack([r.window for r in requests]), store.gather([r.row for r in requests]))
