"""Thousands of bad messages among good ones, through the real broker: nothing good lost, nothing bad scored."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from candlecast.candlefile import CandleTable, bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from daemon.settings import KafkaSettings
from tests.support.kafka import (
    daemon_settings,
    fresh_topics,
    read_records,
    read_to_end,
    running_daemon,
    wait_all_committed,
)
from tests.support.signals import by_candle

pytestmark = pytest.mark.kafka

DAY = 86_400_000
BAD_PER_KIND = 160
WINDOW = 64
# A weekday midnight well after any record timestamp this test can produce.
FUTURE_MONDAY = (int(time.time() * 1000) // (7 * DAY) + 10) * 7 * DAY + 4 * DAY


def good_candles() -> CandleTable:
    return read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(90)


def bad_messages(table: CandleTable, rng: random.Random) -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected reason) for every kind of bad input the daemon must dead-letter."""
    rows = [
        (str(s), int(t), float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]))
        for s, t, v in zip(table.symbols, table.ts, table.ohlcv, strict=True)
    ]

    def candle(row: tuple[str, int, float, float, float, float, float], **changes: Any) -> dict[str, Any]:
        symbol, ts, o, h, lo, c, v = row
        fields = {
            "symbol": symbol,
            "interval": "1d",
            "ts": ts,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
        }
        fields.update(changes)
        return fields

    kinds: dict[str, Any] = {
        "malformed_json": lambda r: b'{"symbol": "' + r[0].encode() + b'", "interval": ',
        "schema": lambda r: json.dumps({k: v for k, v in candle(r).items() if k != "close"}).encode(),
        "non_finite": lambda r: json.dumps(candle(r, close=float("nan"))).encode(),
        "non_positive_price": lambda r: json.dumps(candle(r, low=-1.0)).encode(),
        "ohlc_inconsistent": lambda r: json.dumps(candle(r, high=r[5] * 0.5)).encode(),
        "negative_volume": lambda r: json.dumps(candle(r, volume=-10.0)).encode(),
        "misaligned_ts": lambda r: json.dumps(candle(r, ts=r[1] + 3_600_000)).encode(),
        "future_ts": lambda r: json.dumps(candle(r, ts=FUTURE_MONDAY)).encode(),
        "no_route": lambda r: json.dumps(candle(r, interval="5m")).encode(),
        "oversize": lambda r: json.dumps(candle(r, padding="x" * 8000)).encode(),
        "bad_ts": lambda r: json.dumps(candle(r, ts="yesterday")).encode(),
    }
    messages: list[tuple[bytes | None, bytes, str]] = []
    for reason, make in kinds.items():
        for _ in range(BAD_PER_KIND):
            row = rng.choice(rows)
            messages.append((row[0].encode(), make(row), reason))
    for _ in range(BAD_PER_KIND):
        row = rng.choice(rows)
        messages.append((b"NOT-" + row[0].encode(), json.dumps(candle(row)).encode(), "key_mismatch"))
    return messages


async def produce(bootstrap: str, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> dict[bytes, int]:
    """Send records in order; returns the partition each key went to."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, max_request_size=2**20)
    await producer.start()
    partitions: dict[bytes, int] = {}
    try:
        futures = [(key, await producer.send(topic, value, key=key)) for key, value in items]
        for key, future in futures:
            metadata = await future
            if key is not None:
                partitions[key] = metadata.partition
    finally:
        await producer.stop()
    return partitions


async def test_bad_messages_go_to_the_dead_letter_topic(kafka: LocalKafka, test_artifact: Path) -> None:
    """Every good candle gets the signal a clean run gives it; every bad message is dead-lettered with its
    original bytes, reason and source position, and counted by reason."""
    table = good_candles()
    rng = random.Random(5)
    good = [(symbol.encode(), value) for symbol, value in _encoded(table)]
    bad = bad_messages(table, rng)
    repeat_rows = rng.sample(range(len(good)), 200)
    repeats = [good[i] for i in repeat_rows]
    # A repeated candle still inside its symbol's window is a duplicate; one that has left it is stale.
    last_rows = {symbol: span.stop for symbol, span in table.symbol_slices().items()}
    order = table.time_order().tolist()
    repeat_reasons = Counter(
        "duplicate" if order[i] >= last_rows[str(table.symbols[order[i]])] - WINDOW else "stale" for i in repeat_rows
    )

    clean_topics = await fresh_topics(kafka.bootstrap_servers)
    await produce(kafka.bootstrap_servers, clean_topics.candles, good)
    async with running_daemon(daemon_settings(kafka.bootstrap_servers, clean_topics, test_artifact)):
        await wait_all_committed(kafka.bootstrap_servers, clean_topics.candles, clean_topics.group)
    clean = await read_to_end(kafka.bootstrap_servers, clean_topics.signals)

    topics = await fresh_topics(kafka.bootstrap_servers)
    stream: list[tuple[bytes | None, bytes]] = list(good)
    for key, value, _ in bad:
        stream.insert(rng.randrange(len(stream) + 1), (key, value))
    stream.extend(repeats)
    await produce(kafka.bootstrap_servers, topics.candles, stream)
    expected_letters = len(bad) + len(repeats)
    async with running_daemon(daemon_settings(kafka.bootstrap_servers, topics, test_artifact)) as daemon:
        signals = await read_records(kafka.bootstrap_servers, topics.signals, expected=len(clean), settle_s=2)
        letters = await read_records(
            kafka.bootstrap_servers, topics.dead_letters, expected=expected_letters, settle_s=2
        )
        rejected = {
            s.labels["reason"]: s.value
            for metric in daemon.registry.collect()
            if metric.name == "candlecast_candles_rejected"
            for s in metric.samples
            if s.name.endswith("_total")
        }

    assert by_candle(signals) == by_candle(clean)
    assert len(letters) == expected_letters
    reasons = Counter(dict(letter.headers)["dlq-reason"].decode() for letter in letters)
    wanted = Counter(reason for _, _, reason in bad) + repeat_reasons
    assert reasons == wanted
    assert {k: v for k, v in rejected.items() if v} == {k: float(v) for k, v in wanted.items()}
    sent = {value for _, value, _ in bad}
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq-source-topic"].decode() == topics.candles
        assert int(headers["dlq-source-offset"]) >= 0
        assert headers["dlq-detail"]
        if headers["dlq-reason"] not in (b"duplicate", b"stale"):
            assert letter.value in sent


def _encoded(table: CandleTable) -> list[tuple[str, bytes]]:
    import msgspec

    return [(symbol, msgspec.json.encode(message)) for symbol, message in table.messages("1d")]


def weekday_midnight_in(year: int) -> int:
    """Epoch milliseconds of the first weekday midnight of ``year`` (a valid daily stock candle time)."""
    day = datetime(year, 1, 1, tzinfo=UTC)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return int(day.timestamp()) * 1000


async def test_hostile_records_between_genuine_candles(kafka: LocalKafka, test_artifact: Path) -> None:
    """The issue's hostile records, sent between genuine candles by a plain producer, are dead-lettered with
    their reasons (the 2 MB gzip-compressed value cut to the budget, with its size and sha256) and every
    genuine candle still gets the signal a clean run gives it."""
    table = good_candles()
    messages = [(symbol.encode(), value) for symbol, value in _encoded(table)]
    split = len(messages) * 3 // 4
    first_symbol, second_symbol, third_symbol, fourth_symbol = sorted(table.symbol_slices())[:4]
    last_seen = dict(messages[:split])  # each symbol's newest candle before the split

    clean_topics = await fresh_topics(kafka.bootstrap_servers)
    await produce(kafka.bootstrap_servers, clean_topics.candles, messages)
    async with running_daemon(daemon_settings(kafka.bootstrap_servers, clean_topics, test_artifact)):
        await wait_all_committed(kafka.bootstrap_servers, clean_topics.candles, clean_topics.group)
    clean = await read_to_end(kafka.bootstrap_servers, clean_topics.signals)

    topics = await fresh_topics(kafka.bootstrap_servers)
    partitions = await produce(kafka.bootstrap_servers, topics.candles, messages[:split])
    async with running_daemon(daemon_settings(kafka.bootstrap_servers, topics, test_artifact)):
        # Every symbol's window is bound to its partition before the hostile records arrive.
        await wait_all_committed(kafka.bootstrap_servers, topics.candles, topics.group)
        before = await read_to_end(kafka.bootstrap_servers, topics.signals)
        assert before
        huge = b'{"symbol": "' + first_symbol.encode() + b'", "padding": "' + b"x" * 2_000_000 + b'"}'
        overflowing = json.loads(last_seen[second_symbol.encode()])
        overflowing.update(ts=overflowing["ts"] + 7 * DAY, high=1e300)
        far = weekday_midnight_in(2199)
        forged = json.loads(last_seen[third_symbol.encode()])
        forged.update(ts=far)
        fourth = fourth_symbol.encode()
        elsewhere = (partitions[fourth] + 1) % 3
        await send_hostile(
            kafka.bootstrap_servers,
            topics.candles,
            [
                Hostile(first_symbol.encode(), huge, compression="gzip"),
                Hostile(second_symbol.encode(), json.dumps(overflowing).encode()),
                Hostile(third_symbol.encode(), json.dumps(forged).encode(), timestamp_ms=far),
                Hostile(None, last_seen[fourth]),
                Hostile(fourth, last_seen[fourth], partition=elsewhere),
            ],
        )
        await produce(kafka.bootstrap_servers, topics.candles, messages[split:])
        signals = await read_records(kafka.bootstrap_servers, topics.signals, expected=len(clean), settle_s=2)
        letters = await read_records(kafka.bootstrap_servers, topics.dead_letters, expected=5, settle_s=2)

    assert by_candle(signals) == by_candle(clean)
    reasons = {dict(letter.headers)["dlq-reason"].decode(): letter for letter in letters}
    assert sorted(reasons) == ["future_ts", "null_key", "out_of_range", "oversize", "partition_mismatch"]
    assert len(letters) == 5
    cut = reasons["oversize"]
    headers = dict(cut.headers)
    assert cut.value is not None and huge.startswith(cut.value)
    assert len(cut.value) <= KafkaSettings().dead_letter_max_bytes
    assert int(headers["dlq-original-size"]) == len(huge)
    assert headers["dlq-original-sha256"].decode() == hashlib.sha256(huge).hexdigest()
    assert reasons["null_key"].key is None


@dataclass(frozen=True)
class Hostile:
    """A record as a careless or hostile producer sends it."""

    key: bytes | None
    value: bytes
    compression: str | None = None
    timestamp_ms: int | None = None
    partition: int | None = None


async def send_hostile(bootstrap: str, topic: str, records: Sequence[Hostile]) -> None:
    """Send each record with a plain producer of its own, in order, each acknowledged before the next."""
    for record in records:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, compression_type=record.compression, max_request_size=8 * 2**20
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, record.value, key=record.key, partition=record.partition, timestamp_ms=record.timestamp_ms
            )
        finally:
            await producer.stop()
