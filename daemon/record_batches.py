"""A publish batch's records grouped by the partition the producer would have sent each one to.

The sink hands the producer whole record batches, each partition's records in as few as fit (``create_batch``
and ``send_batch``), instead of one ``send`` per record: a ``send`` waits on metadata, checks sizes,
partitions and makes futures for every record, the main cost of publishing a large batch. The
partition must stay the one ``send`` picks, aiokafka's ``DefaultPartitioner`` (murmur2 of the key
over the topic's partitions, as the Java client), so that every symbol keeps its partition. Its
pure-Python hash costs about 10 us a key, so each key's hash is remembered. The hash is the
producer's own (``aiokafka.partitioner.murmur2``), handed in by the sink: this module stays free of
Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

MAX_REMEMBERED_KEYS = 1 << 17
"""Keys whose hash is kept (about 120 bytes each, key included): every symbol of a large instance. Past it all are
forgotten at once, which bounds what keys of malformed messages (dead letters) can make it hold."""


Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
"""One record as produced, ``(key, value, headers)``: what a consumer reads but the producer's
timestamp. A plain tuple, the cheapest thing to make for every signal (a named tuple costs 4x)."""


class KeyHashes:
    """The default partitioner's hash of each key (``key_hash``, sign bit cleared), computed once a key."""

    def __init__(self, key_hash: Callable[[bytes], int], max_keys: int = MAX_REMEMBERED_KEYS) -> None:
        self._key_hash = key_hash
        self._max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._hashes)

    def of(self, key: bytes) -> int:
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            found = self._hashes[key] = self._key_hash(key) & 0x7FFFFFFF
        return found


def partition_of(key_hash: int, partitions: Sequence[int]) -> int:
    """``DefaultPartitioner``'s choice for a key: its hash modulo the count, indexing ``partitions``
    in the order the producer's metadata lists them."""
    return partitions[key_hash % len(partitions)]


@dataclass(slots=True)
class PartitionedRecords:
    """One topic's records by partition, each partition's in the order given."""

    by_partition: dict[int, list[Record]] = field(default_factory=dict)
    keyless: list[Record] = field(default_factory=list)
    """Records without a key: the default partitioner picks among the partitions with a leader at
    random, which only the producer's own ``send`` knows."""


def partitioned(records: Iterable[Record], partitions: Sequence[int], hashes: KeyHashes) -> PartitionedRecords:
    """Group ``records`` (of one topic with ``partitions``) as the producer's ``send`` would place them."""
    if not partitions:
        raise ValueError("a topic without partitions")
    grouped = PartitionedRecords()
    by_partition = grouped.by_partition
    for record in records:
        key = record[0]
        if key is None:
            grouped.keyless.append(record)
            continue
        partition = partition_of(hashes.of(key), partitions)
        found = by_partition.get(partition)
        if found is None:
            by_partition[partition] = [record]
        else:
            found.append(record)
    return grouped
