"""Committed offsets that are *stable*: OffsetFetch v7 with ``require_stable`` (KIP-447).

A transaction's offsets become visible to readers only after the coordinator has written its
commit markers, which happens after the producer's EndTxn returns. aiokafka fetches offsets
with OffsetFetch v3, which silently returns the previous offset while such a commit is still
completing; a new partition owner would then re-process records the old owner already
published, i.e. duplicates under "exactly once". With ``require_stable`` the broker answers
UNSTABLE_OFFSET_COMMIT instead, and we retry until the commit has settled.

aiokafka's protocol layer can describe flexible (compact, tagged) requests, so this module only
declares the v7 schemas and sends the request to the group coordinator.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from candlecast.errors import TransportError

UNSTABLE_OFFSET_COMMIT = 88


class OffsetFetchResponse_v7(Response):  # noqa: N801  (Kafka's versioned protocol names)
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):  # noqa: N801
    FLEXIBLE_VERSION: ClassVar[bool] = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetchRequest(Request[OffsetFetchRequest_v7]):
    API_KEY = 9

    def __init__(self, group_id: str, partitions: dict[str, list[int]]) -> None:
        self._group_id = group_id
        self._partitions = partitions

    def build(self, request_struct_class: type[OffsetFetchRequest_v7]) -> OffsetFetchRequest_v7:
        topics: list[tuple[str, list[int], dict[int, bytes]]] = [
            (topic, indexes, {}) for topic, indexes in sorted(self._partitions.items())
        ]
        return request_struct_class(self._group_id, topics, True, {})


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    """-1 when the group never committed this partition."""
    metadata: str


class StableOffsets:
    """Fetches a group's committed offsets, waiting for in-flight transactional commits to settle."""

    def __init__(self, client_options: dict[str, Any], group_id: str) -> None:
        self._client = AIOKafkaClient(client_id=f"{group_id}-offsets", **client_options)
        self._group_id = group_id
        self._started = False

    async def close(self) -> None:
        if self._started:
            await self._client.close()

    async def fetch(
        self, partitions: dict[str, list[int]], timeout_s: float = 60.0
    ) -> dict[tuple[str, int], CommittedOffset]:
        if not self._started:
            await self._client.bootstrap()
            self._started = True
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found, unstable = await self._fetch_once(partitions)
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise TransportError(f"cannot fetch committed offsets of {self._group_id}: {exc}") from exc
            else:
                if not unstable:
                    return found
                if time.monotonic() > deadline:
                    raise TransportError(f"offsets of {self._group_id} stayed unstable for {timeout_s} s")
            await asyncio.sleep(0.05)

    async def _fetch_once(
        self, partitions: dict[str, list[int]]
    ) -> tuple[dict[tuple[str, int], CommittedOffset], bool]:
        coordinator = await self._client.coordinator_lookup(CoordinationType.GROUP, self._group_id)
        if not await self._client.ready(coordinator):
            raise for_code(15)()  # CoordinatorNotAvailable: retriable
        response = await self._client.send(coordinator, StableOffsetFetchRequest(self._group_id, partitions))
        if response.error_code:
            raise for_code(response.error_code)()
        found: dict[tuple[str, int], CommittedOffset] = {}
        unstable = False
        for topic, parts, _ in response.topics:
            for index, offset, _epoch, metadata, error, _tags in parts:
                if error == UNSTABLE_OFFSET_COMMIT:
                    unstable = True
                elif error:
                    raise for_code(error)()
                found[(topic, index)] = CommittedOffset(offset, metadata or "")
        return found, unstable
