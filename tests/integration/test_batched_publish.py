"""The sink's record batches put on the topics exactly what one producer ``send`` a record put there."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from aiokafka import ConsumerRecord

from candlecast.bench.publish_cost import Delivery, new_sink, signal_batch, sink_settings
from candlecast.localkafka import LocalKafka
from daemon.ports import PublishBatch
from daemon.settings import KafkaSettings
from daemon.signal import DeadLetter
from tests.support.kafka import create_topics, read_records

pytestmark = pytest.mark.kafka

PARTITIONS = 5


def mixed_batch() -> PublishBatch:
    """Signals of many symbols (some twice, with other headers) and dead letters with, without and with
    an oversized key and value."""
    base = signal_batch(300)
    again = [(msgspec.structs.replace(s, route="second", model="m2"), r) for s, r in base.signals[:40]]
    letters = [
        DeadLetter(b"AAPL", b"not json", "invalid_json", "line 1", "candles", 0, 7, 1_700_000_000_000),
        DeadLetter(None, b"{}", "no_key", "", "candles", 1, 8, 1_700_000_000_001),
        DeadLetter(b"K" * 400, b"v" * 200_000, "too_large", "cut", "candles", 2, 9, 1_700_000_000_002),
    ]
    return PublishBatch(signals=base.signals + again, dead_letters=letters, checkpoint={})


def by_partition(records: list[ConsumerRecord[bytes, bytes]]) -> dict[int, list[tuple[Any, ...]]]:
    """Each partition's records in offset order: key, value and headers (all a consumer reads but the time)."""
    placed: dict[int, list[tuple[Any, ...]]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        placed.setdefault(record.partition, []).append((record.key, record.value, list(record.headers)))
    return placed


async def publish(settings: KafkaSettings, batch: PublishBatch, *, per_record: bool) -> None:
    sink = new_sink(settings, per_record=per_record)
    await sink.start()
    try:
        await sink.publish(batch)
    finally:
        await sink.stop()


@pytest.mark.parametrize(
    ("delivery", "batch_bytes"),
    [("exactly_once", 262_144), ("at_least_once", 262_144), ("exactly_once", 1024), ("at_least_once", 1024)],
)
async def test_batched_records_equal_the_per_record_path_byte_for_byte(
    kafka: LocalKafka, delivery: Delivery, batch_bytes: int
) -> None:
    """Published through record batches (one or, at 1 KiB, many per partition), every signal and dead letter
    lands on the partition one ``send`` a record put it on, in the same order, with identical key, value
    and headers; the keyless dead letter, which the producer places at random, is there once."""
    bootstrap = kafka.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    batch = mixed_batch()
    expected_signals = len(batch.signals)
    placements = {}
    for path in ("per-record", "batched"):
        topic = f"batched-{run}-{path}"
        await create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": 3})
        settings = sink_settings(bootstrap, delivery, topic, f"{run}-{path}").model_copy(
            update={"producer_batch_bytes": batch_bytes}
        )
        await publish(settings, batch, per_record=path == "per-record")
        signals = await read_records(bootstrap, topic, expected=expected_signals, settle_s=0.5)
        letters = await read_records(bootstrap, f"{topic}.dlq", expected=3, settle_s=0.5)
        assert len(signals) == expected_signals
        assert len(letters) == 3
        placements[path] = (signals, letters)
    (old_signals, old_letters), (new_signals, new_letters) = placements["per-record"], placements["batched"]
    assert len(by_partition(old_signals)) == PARTITIONS
    assert by_partition(new_signals) == by_partition(old_signals)
    keyed = [r for r in old_letters if r.key is not None]
    assert by_partition([r for r in new_letters if r.key is not None]) == by_partition(keyed)
    assert len(keyed) == 2
    assert sorted((r.value, list(r.headers)) for r in new_letters if r.key is None) == sorted(
        (r.value, list(r.headers)) for r in old_letters if r.key is None
    )
