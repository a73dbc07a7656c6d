"""Checkpoints: the offset to commit per partition, and where a restart must replay from.

The rebuild offset travels in the committed offset's metadata (``{"v":1,"rebuild_from":N}``),
so Kafka alone holds everything a restarted daemon needs: it seeks back to ``rebuild_from``,
replays up to the committed offset into its windows without scoring, and resumes exactly where
an uninterrupted daemon would be. With several routes (models) the metadata names, per route, the
model version that scored the partition (``"routes":{"crypto-1h":["1.0.0",M]}``).
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
    model: str = ""
    """The model version that scored the partition's latest windows ("" when none did yet)."""
    model_from: int = -1
    """The first offset whose window ``model`` scored: older windows were scored by another version,
    and a rebuild does not restore them into the strategy's memory."""
    routes: tuple[tuple[str, str, int], ...] = ()
    """With several routes: per route that scored the partition, its name, ``model`` and ``model_from``
    (``model`` is then unused)."""

    def metadata(self) -> str:
        if self.routes:
            routes = msgspec.json.encode({name: (version, first) for name, version, first in self.routes}).decode()
            return f'{{"v":1,"rebuild_from":{self.rebuild_from},"routes":{routes}}}'
        if not self.model:
            return f'{{"v":1,"rebuild_from":{self.rebuild_from}}}'
        model = msgspec.json.encode(self.model).decode()
        return f'{{"v":1,"rebuild_from":{self.rebuild_from},"model":{model},"model_from":{self.model_from}}}'


class _Metadata(msgspec.Struct):
    v: int
    rebuild_from: int
    model: str = ""
    model_from: int = -1
    routes: dict[str, tuple[str, int]] = {}


ScoredSince = tuple[str, int]
"""A model version and the first offset of the partition whose window it scored."""

Scoring = dict[str, ScoredSince]
"""Per route name, what scored a partition (``ScoredSince``); the single-route format's is under ``SOLE_ROUTE``."""

SOLE_ROUTE = ""
"""The key of ``Scoring`` for metadata that names one model for the whole partition (one route)."""


def scored_since(metadata: str | None) -> Scoring | None:
    """The versions that scored a partition's latest windows, per route, and from which offset, as committed."""
    parsed = _ours(metadata)
    if parsed is None:
        return None
    if parsed.routes:
        return dict(parsed.routes)
    return {SOLE_ROUTE: (parsed.model, parsed.model_from)} if parsed.model else None


def rebuild_offset_from(metadata: str | None) -> int | None:
    """The rebuild offset in committed metadata; ``None`` when absent or written by someone else."""
    parsed = _ours(metadata)
    return parsed.rebuild_from if parsed is not None and parsed.rebuild_from >= 0 else None


def _ours(metadata: str | None) -> _Metadata | None:
    """Committed metadata in our format (version 1); ``None`` for anything else."""
    if not metadata:
        return None
    try:
        parsed = msgspec.json.decode(metadata, type=_Metadata)
    except msgspec.DecodeError:
        return None
    return parsed if parsed.v == 1 else None


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
