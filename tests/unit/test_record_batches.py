"""Grouping a publish batch's records by partition, as the producer's own ``send`` would place them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataResponse_v0
from hypothesis import given
from hypothesis import strategies as st

from daemon.record_batches import KeyHashes, Record, partition_of, partitioned

TOPIC = "signals"

partition_lists = st.lists(st.integers(0, 200), min_size=1, max_size=24, unique=True)
keys = st.binary(min_size=0, max_size=40)
records = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from([b"AAPL", b"MSFT", b"S00042", b"", b"\xff\x00key"]), keys),
        st.binary(max_size=8),
        st.lists(st.tuples(st.sampled_from(["source", "route"]), st.binary(max_size=4)), max_size=2),
    ),
    max_size=60,
)


def producer_placement(key: bytes, partitions: list[int], leaderless: set[int]) -> tuple[int, list[int]]:
    """What an aiokafka producer with this topic metadata picks for ``key``, and the topic's partitions
    as its ``partitions_for`` lists them."""

    async def place() -> tuple[int, list[int]]:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
        brokers = [(0, "127.0.0.1", 9)]
        described = [(0, p, -1 if p in leaderless else 0, [0], [0]) for p in partitions]
        producer.client.cluster.update_metadata(MetadataResponse_v0(brokers, [(0, TOPIC, described)]))
        try:
            chosen: int = producer._partition(TOPIC, None, key, b"v", key, b"v")
            return chosen, list(producer.client.cluster.partitions_for_topic(TOPIC))
        finally:
            await producer.stop()

    return asyncio.run(place())


@given(keys, partition_lists, st.data())
def test_a_keyed_record_goes_where_the_producers_own_send_puts_it(
    key: bytes, partitions: list[int], data: st.DataObject
) -> None:
    """For any key and topic layout (leaderless partitions included), the grouping picks the partition that
    the producer's ``_partition`` (its default partitioner over its metadata) picks."""
    leaderless = data.draw(st.sets(st.sampled_from(partitions)))
    chosen, listed = producer_placement(key, partitions, leaderless)
    grouped = partitioned([(key, b"v", [])], listed, KeyHashes(murmur2))
    assert list(grouped.by_partition) == [chosen]


@given(keys, partition_lists)
def test_partition_of_is_the_default_partitioners_choice_for_any_partition_order(
    key: bytes, partitions: list[int]
) -> None:
    """Indexing the partitions as given by the key's murmur2 hash equals ``DefaultPartitioner``, whatever
    the order the partitions are listed in."""
    hashes = KeyHashes(murmur2)
    assert partition_of(hashes.of(key), partitions) == DefaultPartitioner()(key, partitions, partitions)


@given(records, partition_lists)
def test_grouping_keeps_every_record_once_and_each_partitions_order(
    given_records: list[Record], partitions: list[int]
) -> None:
    """Every keyed record lands in its key's partition, each partition's records keep their order in the
    batch, and keyless ones are left to the producer in their order."""
    hashes = KeyHashes(murmur2)
    grouped = partitioned(given_records, partitions, hashes)
    keyed = [r for r in given_records if r[0] is not None]
    for partition, in_partition in grouped.by_partition.items():
        expected = [r for r in keyed if r[0] is not None and partition_of(hashes.of(r[0]), partitions) == partition]
        assert in_partition == expected
        assert in_partition
    assert sum(len(group) for group in grouped.by_partition.values()) == len(keyed)
    assert grouped.keyless == [r for r in given_records if r[0] is None]


def test_each_keys_hash_is_computed_once_and_the_remembered_keys_are_bounded() -> None:
    """A repeated key is not hashed again; past ``max_keys`` distinct keys all are forgotten, and hashes stay right."""
    calls: list[bytes] = []

    def counting(key: bytes) -> int:
        calls.append(key)
        hashed: int = murmur2(key)
        return hashed

    hashes = KeyHashes(counting, max_keys=3)
    for key in [b"a", b"b", b"a", b"b", b"a"]:
        assert hashes.of(key) == murmur2(key) & 0x7FFFFFFF
    assert calls == [b"a", b"b"]
    for key in [b"c", b"d", b"e"]:
        hashes.of(key)
    assert len(hashes) <= 3
    assert hashes.of(b"a") == murmur2(b"a") & 0x7FFFFFFF
    assert calls[-1] == b"a"


def test_a_topic_without_partitions_is_refused() -> None:
    """Grouping needs the topic's partitions: an empty list is an error, not a silent drop."""
    with pytest.raises(ValueError, match="without partitions"):
        partitioned([(b"k", b"v", [])], [], KeyHashes(murmur2))
