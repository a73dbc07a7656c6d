"""The stream server's pure part: where each partition's tail starts, which tail records the ring keeps,
and a poll's records into the signal store."""

from __future__ import annotations

import msgspec

from daemon.signal import Signal
from daemon.signal_feed import RecordTime, TopicRecord, decoded, newest, record_batch, refill, tail_offsets
from daemon.signal_store import SignalStore
from daemon.sse import signal_frame
from tests.support.signal_builder import HOUR_MS, START_MS, hourly_signal


def signal(n: int, symbol: str = "AAA", route: str | None = "default") -> Signal:
    return hourly_signal(f"id-{n}", n, symbol, route)


def record(
    n: int,
    partition: int = 0,
    at_ms: int | None = None,
    value: bytes | None = None,
    symbol: str = "AAA",
    route: str | None = "default",
) -> TopicRecord:
    body = msgspec.json.encode(signal(n, symbol, route)) if value is None else value
    return TopicRecord(partition, n, START_MS + n if at_ms is None else at_ms, body)


def store(ring: int = 100) -> tuple[SignalStore, RecordTime]:
    clock = RecordTime()
    return SignalStore(ring=ring, client_buffer=100, max_clients=4, keys=100, clock_ms=clock), clock


def test_each_partition_tail_starts_ring_offsets_before_its_end_or_at_its_beginning() -> None:
    """A partition longer than the ring is read from ``end - ring``; a shorter or truncated one from its start."""
    starts = tail_offsets({0: 0, 1: 0, 2: 40}, {0: 100, 1: 3, 2: 45}, ring=10)
    assert starts == {0: 90, 1: 0, 2: 40}


def test_the_ring_keeps_the_newest_records_by_record_time_across_partitions() -> None:
    """Tails of several partitions merge by record time (ties to the lower partition), each partition's in offset
    order even where its record times fall back; the last ``ring`` stay."""
    records = [record(1, 0, 10), record(2, 1, 30), record(3, 0, 20), record(4, 1, 20), record(5, 2, 5)]
    assert [r.offset for r in newest(records, 3)] == [3, 2, 4]
    assert [r.offset for r in newest([record(6, 0, 30), *records], 4)] == [3, 6, 2, 4]
    assert newest(records, 0) == []


def test_a_record_that_is_not_a_signal_is_skipped_and_counted() -> None:
    """Bytes that are not a signal, or a signal whose time or interval cannot be read, never reach the store."""
    s, clock = store()
    bad_ts = msgspec.json.encode(msgspec.structs.replace(signal(2), ts="yesterday"))
    bad_interval = msgspec.json.encode(msgspec.structs.replace(signal(3), interval="hourly"))
    records = [record(1), record(2, value=bad_ts), record(3, value=bad_interval), record(4, value=b"{}")]
    assert decoded(None) is None
    assert record_batch(s, clock, records) == 3
    assert [stored.signal_id for stored in s.latest()] == ["id-1"]


def test_a_poll_is_recorded_in_record_time_order_with_the_daemons_frames_and_routes() -> None:
    """The store gets each signal's own frame (as the daemon's stream sends it), its route (``default`` for a
    signal without one), its candle time, and as commit time the batch's newest record time."""
    s, clock = store()
    client, _ = s.subscribe(None, None, lambda: None)
    polled = [record(2, 1, START_MS + 50, symbol="BBB"), record(1, 0, START_MS + 40, route=None)]
    assert record_batch(s, clock, polled) == 0
    frames = client.take()
    assert frames == signal_frame(signal(1, route=None)) + signal_frame(signal(2, "BBB"))
    latest = {stored.symbol: stored for stored in s.latest()}
    assert latest["AAA"].route == "default" and latest["BBB"].route == "default"
    assert latest["AAA"].ts_ms == START_MS + HOUR_MS
    assert latest["AAA"].interval_ms == HOUR_MS
    assert latest["AAA"].committed_ms == START_MS + 50


def test_signals_of_two_routes_in_one_poll_are_recorded_per_route() -> None:
    """Each route's signals are recorded under its name, as the daemon records a published batch."""
    s, clock = store()
    record_batch(s, clock, [record(1, route="crypto"), record(2, symbol="BBB", route="equities")])
    assert {stored.symbol: stored.route for stored in s.latest()} == {"AAA": "crypto", "BBB": "equities"}


def test_each_refilled_signal_keeps_its_own_record_time_as_commit_time() -> None:
    """Refilled signals of one route, published hours apart, each show when the daemon published it."""
    s, clock = store()
    tail = [
        record(1, 0, START_MS),
        record(2, 1, START_MS + HOUR_MS, symbol="BBB"),
        record(3, 0, START_MS + 2 * HOUR_MS),
    ]
    refill(s, clock, tail=tail, starts={0: 0, 1: 0}, beginning={0: 0, 1: 0}, ring=10)
    committed = {stored.signal_id: stored.committed_ms for stored in s.after("id-1") or []}
    assert committed == {"id-2": START_MS + HOUR_MS, "id-3": START_MS + 2 * HOUR_MS}
    assert {stored.symbol: stored.committed_ms for stored in s.latest()} == {
        "AAA": START_MS + 2 * HOUR_MS,
        "BBB": START_MS + HOUR_MS,
    }
