"""TxnOffsetCommit v3 as the daemon sends it, and the group deadlines the settings accept."""

from __future__ import annotations

from io import BytesIO

import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import ValidationError

from daemon.kafka_commit import FencedTxnOffsetCommitRequest, GroupMembership, TxnOffsetCommitRequest_v3
from daemon.settings import KafkaSettings


def test_the_commit_carries_the_generation_and_member_of_the_assignment() -> None:
    """The v3 request names the transaction, the group, the producer and the membership, and every offset
    with its rebuild metadata, and decodes back to the same fields."""
    offsets = {
        TopicPartition("candles", 1): OffsetAndMetadata(42, '{"v":1,"rebuild_from":7}'),
        TopicPartition("candles", 0): OffsetAndMetadata(9, ""),
    }
    request = FencedTxnOffsetCommitRequest("tx", "group", (1234, 5), GroupMembership(17, "member-a"), offsets)
    struct = request.prepare({28: (0, 4)})
    assert isinstance(struct, TxnOffsetCommitRequest_v3)
    decoded = TxnOffsetCommitRequest_v3.SCHEMA.decode(BytesIO(struct.encode()))
    assert decoded[:7] == ("tx", "group", 1234, 5, 17, "member-a", None)
    ((topic, partitions, _),) = decoded[7]
    assert topic == "candles"
    assert [p[:4] for p in partitions] == [(0, 9, -1, ""), (1, 42, -1, '{"v":1,"rebuild_from":7}')]


def test_a_broker_without_v3_is_refused() -> None:
    """A broker older than KIP-447 (TxnOffsetCommit up to v2) cannot fence zombies: the request is not built."""
    request = FencedTxnOffsetCommitRequest("tx", "group", (1, 0), GroupMembership(1, "m"), {})
    with pytest.raises(NotImplementedError):
        request.prepare({28: (0, 2)})


def test_a_drain_must_end_before_the_rebalance_timeout() -> None:
    """A drain deadline at or above the rebalance timeout, or a session longer than it, is refused."""
    KafkaSettings(rebalance_timeout_ms=30000, drain_deadline_ms=20000)
    with pytest.raises(ValidationError, match="drain_deadline_ms must be below"):
        KafkaSettings(rebalance_timeout_ms=30000, drain_deadline_ms=30000)
    with pytest.raises(ValidationError, match="at least session_timeout_ms"):
        KafkaSettings(session_timeout_ms=40000, rebalance_timeout_ms=30000, drain_deadline_ms=20000)
