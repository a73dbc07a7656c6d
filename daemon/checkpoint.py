"""Checkpoints: the offset to commit per partition, and where a restart must replay from.

The rebuild offset travels in the committed offset's metadata (``{"v":1,"rebuild_from":N}``),
so Kafka alone holds everything a restarted daemon needs: it seeks back to ``rebuild_from``,
replays up to the committed offset into its windows without scoring, and resumes exactly where
an uninterrupted daemon would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What to commit for a partition once everything before it is published."""

    offset: int
    """The next offset to consume."""
    rebuild_from: int
    """The oldest offset still inside a window of this partition."""

    def metadata(self) -> str:
        return f'{{"v":1,"rebuild_from":{self.rebuild_from}}}'


class _Metadata(msgspec.Struct):
    v: int
    rebuild_from: int


def rebuild_offset_from(metadata: str | None) -> int | None:
    """The rebuild offset in committed metadata; ``None`` when absent or written by someone else."""
    if not metadata:
        return None
    try:
        parsed = msgspec.json.decode(metadata, type=_Metadata)
    except msgspec.DecodeError:
        return None
    return parsed.rebuild_from if parsed.v == 1 and parsed.rebuild_from >= 0 else None


@dataclass(frozen=True, slots=True)
class PartitionStart:
    """Where a newly assigned partition is read from, planned from its committed offset."""

    seek: int
    """The first offset to fetch."""
    replay_until: int | None
    """Records before this offset only rebuild windows; ``None`` when nothing is replayed."""
    truncated: bool
    """The rebuild offset was deleted by retention: the replay starts at the log's start instead."""


def plan_start(committed: int, metadata: str | None, log_start: int) -> PartitionStart | None:
    """Where to read a partition from: its rebuild offset (or the log's start, if retention deleted
    that) when its windows need replaying up to ``committed``, else ``committed`` itself; ``None``
    when the group never committed it (``committed < 0``: the consumer's reset policy decides)."""
    if committed < 0:
        return None
    start = rebuild_offset_from(metadata)
    if start is None or start >= committed:
        return PartitionStart(committed, None, truncated=False)
    truncated = start < log_start
    if truncated:
        start = log_start
    return PartitionStart(start, committed if start < committed else None, truncated)
