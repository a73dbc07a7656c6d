"""Committed signals read back from the signals topic into a ``SignalStore``: pure and synchronous.

The stream server (``daemon.stream_server``) reads the topic with ``read_committed``, so a signal of
an aborted transaction never gets here. Each poll's records are recorded as one batch (ordered by
record time, grouped by route as the daemon groups a published batch), so a client that keeps up
costs one write per poll, whatever the partitions. A record that is not a signal is skipped and
counted.

At start the server reads each partition's last ``ring`` records (``tail_offsets``) and keeps the
``ring`` newest of them by record time (``newest``): a client that saw a signal before the server
restarted resumes after it. With several partitions the restarted ring is in record-time order,
which can differ from the order a client saw live (partitions are fetched one poll at a time): a
resumed client may get a signal twice (clients deduplicate by ``signal_id``, docs/signals.md).
"""

from __future__ import annotations

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
    """Where each partition's tail starts: its last ``ring`` offsets hold every one of the topic's
    ``ring`` newest signals."""
    return {partition: max(beginning[partition], last - ring) for partition, last in end.items()}


def newest(records: Iterable[TopicRecord], ring: int) -> list[TopicRecord]:
    """The ``ring`` newest records by record time (then partition and offset), oldest first."""
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return ordered[-ring:] if ring else []


class RecordTime:
    """The store's clock in the stream server: the newest record time of the batch being recorded, so
    a stored signal's ``committed_ms`` is when the daemon published it, not when it was read back."""

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
    """One poll's records into the store, as one batch per route; returns how many were not signals."""
    by_route: dict[str, list[tuple[Signal, int, int]]] = {}
    unreadable = 0
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    for record in ordered:
        entry = decoded(record.value)
        if entry is None:
            unreadable += 1
            continue
        by_route.setdefault(entry[0].route or DEFAULT_ROUTE, []).append(entry)
    if ordered:
        clock.ms = max(clock.ms, ordered[-1].timestamp_ms)
    for route, signals in by_route.items():
        store.record(route, signals)
    return unreadable
