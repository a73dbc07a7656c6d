"""Committed signals read back from the signals topic into a ``SignalStore``: pure and synchronous.

The stream server (``daemon.stream_server``) reads the topic with ``read_committed``, so a signal of
an aborted transaction never gets here. Each poll's records are recorded in record-time order with
each partition's kept in offset order (``merged``), a run of one route's signals as one batch; the
clients are woken once per poll, so a client that keeps up costs one write per poll, whatever the
partitions. A record that is not a signal is skipped and counted.

So every process delivers each partition in offset order, but interleaves the partitions as they
were fetched, which no later process can know. At start the server reads each partition's last
``ring`` records (``tail_offsets``), keeps the ``ring`` newest (``newest``) and marks them refilled,
a partition per lane (``refill``, ``SignalStore.mark_refilled``): a client resuming after a refilled
id gets a gap event and then every signal that may have followed it (the other partitions' refilled
ones, its own partition's later ones), so it may get a signal twice (clients deduplicate by
``signal_id``, docs/signals.md) but misses none without a gap event saying so.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from daemon.candle import parse_ts
from daemon.dispatch import DEFAULT_ROUTE
from daemon.intervals import interval_ms
from daemon.signal import Signal
from daemon.signal_store import SignalStore

_decoder = msgspec.json.Decoder(Signal)


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """What the feed needs of one record of the signals topic."""

    partition: int
    offset: int
    timestamp_ms: int
    """The record's time (the producer's, CreateTime): when the daemon published it."""
    value: bytes | None


def tail_offsets(beginning: Mapping[int, int], end: Mapping[int, int], ring: int) -> dict[int, int]:
    """Where each partition's tail starts: ``ring`` offsets before its end, at most ``ring`` records. Under
    exactly-once, commit markers and aborted records take offsets too, so a partition's tail may hold fewer
    than its ``ring`` newest signals; it then starts after its beginning and ``refill`` marks it cut."""
    return {partition: max(beginning[partition], last - ring) for partition, last in end.items()}


def merged(records: Iterable[TopicRecord]) -> list[TopicRecord]:
    """Records by record time (ties to the lower partition), each partition's in offset order even where its
    record times fall back (producers on several hosts): every process delivers a partition in one order."""
    lanes: dict[int, list[TopicRecord]] = {}
    for record in records:
        lanes.setdefault(record.partition, []).append(record)
    in_order = (sorted(lanes[partition], key=lambda r: r.offset) for partition in sorted(lanes))
    return list(heapq.merge(*in_order, key=lambda r: r.timestamp_ms))


def newest(records: Iterable[TopicRecord], ring: int) -> list[TopicRecord]:
    """The last ``ring`` records in ``merged`` order, oldest first."""
    return merged(records)[-ring:] if ring else []


class RecordTime:
    """The store's clock in the stream server: the newest record time of the run being recorded (one
    record's at a refill), so a stored signal's ``committed_ms`` is when the daemon published it, not when
    it was read back."""

    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def decoded(value: bytes | None) -> tuple[Signal, int, int] | None:
    """A record's signal with its candle's open time and interval in milliseconds; ``None`` when the
    record is not a signal."""
    if value is None:
        return None
    try:
        signal = _decoder.decode(value)
        length = interval_ms(signal.interval)
    except (msgspec.DecodeError, ValueError):
        return None
    opened = parse_ts(signal.ts)
    return None if opened is None else (signal, opened, length)


def record_batch(store: SignalStore, clock: RecordTime, records: Sequence[TopicRecord]) -> int:
    """One poll's records into the store in ``merged`` order; returns how many were not signals."""
    return _record(store, clock, merged(records))[1]


def refill(
    store: SignalStore,
    clock: RecordTime,
    *,
    tail: Sequence[TopicRecord],
    starts: Mapping[int, int],
    beginning: Mapping[int, int],
    ring: int,
) -> tuple[int, int]:
    """The partitions' tails (read from ``starts``) into an empty store: the ``ring`` newest, marked refilled;
    a partition read from after its ``beginning``, or with tail records left out, is cut. Returns how many
    records were kept and how many of those were not signals."""
    kept = newest(tail, ring)
    kept_at = {(r.partition, r.offset) for r in kept}
    cut = {p for p, start in starts.items() if start > beginning[p]}
    cut.update(r.partition for r in tail if (r.partition, r.offset) not in kept_at)
    # One by one: the tail may span hours, and no client is connected yet to wake per record.
    lanes, unreadable = _record(store, clock, kept, one_by_one=True)
    store.mark_refilled(lanes, cut)
    return len(kept), unreadable


def _record(
    store: SignalStore, clock: RecordTime, ordered: Sequence[TopicRecord], *, one_by_one: bool = False
) -> tuple[list[int], int]:
    """Records into the store in this order, each run of one route's signals as one batch (each signal as
    its own with ``one_by_one``) stamped with its newest record time; returns the partition of each signal
    recorded and how many records were not signals."""
    signals = [(entry, record) for record in ordered if (entry := decoded(record.value)) is not None]
    for route, run in itertools.groupby(signals, key=lambda s: s[0][0].route or DEFAULT_ROUTE):
        batch = list(run)
        for part in [[s] for s in batch] if one_by_one else [batch]:
            clock.ms = max(r.timestamp_ms for _, r in part)
            store.record(route, [entry for entry, _ in part])
    return [r.partition for _, r in signals], len(ordered) - len(signals)
