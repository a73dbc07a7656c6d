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
