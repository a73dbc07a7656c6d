"""A rebalance that gives the partitions up while a fetch is in flight ends the poll with its failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from candlecast.errors import FencedError
from daemon.kafka_source import KafkaCandleSource
from daemon.settings import KafkaSettings

TP = TopicPartition("candles", 0)


class _Message:
    offset = 7
    key = b"AAPL"
    value = b"{}"
    timestamp = 0


class _ConsumerGivenUpDuringFetch:
    """aiokafka's consumer as the poll sees it when the revocation callback runs inside ``getmany``:
    the callback gives the partition up (``highwater`` of an unassigned partition asserts, as aiokafka's does)."""

    def __init__(self, source: KafkaCandleSource) -> None:
        self.source = source
        self.assigned = {TP}

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[_Message]]:
        await asyncio.sleep(0)
        self.assigned.clear()
        self.source._failure = FencedError("the drain of revoked partitions [0] did not finish")
        return {TP: [_Message()]}

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assigned, "Partition is not assigned"
        return 8

    def paused(self) -> set[TopicPartition]:
        return set()


async def _no_revoke(_: Any) -> None:
    return None


async def test_a_partition_given_up_during_a_fetch_ends_the_poll_with_the_fenced_failure() -> None:
    """Records fetched for partitions a drain past its deadline gave up are dropped, and the poll raises the
    drain's ``FencedError`` (the daemon's documented exit) instead of touching the lost partitions."""
    source = KafkaCandleSource(KafkaSettings(), CollectorRegistry(), on_revoke=_no_revoke)
    source._assigned = {TP}
    source._consumer = _ConsumerGivenUpDuringFetch(source)
    with pytest.raises(FencedError, match="did not finish"):
        await source.poll()
