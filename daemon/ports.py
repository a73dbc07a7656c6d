"""What flows through the pipeline, and the ports its transports and model plug into.

Sans-IO: plain data and ``Protocol`` classes, no asyncio, Kafka or torch. ``daemon.pipeline``
drives these; Kafka (``daemon.kafka_source``, ``daemon.kafka_sink``), MQTT and the in-memory
transport (``daemon.memory_transport``) implement ``CandleSource`` and ``SignalSink``; the
TorchScript ensemble (``models.torchscript.LoadedModel``) and test fakes implement ``Scorer``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from daemon.checkpoint import Checkpoint, Scoring, TopicPartition
from daemon.engine import ScoreRequest, SourceRecord
from daemon.signal import DeadLetter, Signal
from daemon.window import WindowKey
from models.artifact import Manifest, ModelOutputs

ITEM_OVERHEAD = 256
"""Bytes a request or dead letter takes beside its window or value (objects, references), with margin."""


@dataclass(slots=True)
class PartitionRecords:
    """Records of one partition from one poll, split by whether they only rebuild windows."""

    topic: str
    partition: int
    replay: list[SourceRecord] = field(default_factory=list)
    live: list[SourceRecord] = field(default_factory=list)
    rebuilt: bool = False
    """This poll completed the partition's rebuild: re-score strategy history before live records."""
    scored_since: Scoring | None = None
    """With ``rebuilt``: per route, the committed model version and first offset it scored
    (``checkpoint.scored_since``)."""
    committable: bool = True
    """Kafka records: their offsets go into the checkpoint. False for sources without Kafka offsets (MQTT)."""


@dataclass(slots=True)
class Chunk:
    """Ingested records on their way through the pipeline."""

    requests: list[ScoreRequest]
    dead_letters: list[DeadLetter]
    checkpoint: dict[TopicPartition, Checkpoint]
    _nbytes: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Bytes it holds, roughly: windows and dead letters' values and keys, plus a fixed cost each.
        Counted once, when first asked: the pipeline asks as it queues the complete chunk, and frees the
        same count once it is published."""
        if self._nbytes is None:
            windows = sum(request.window.nbytes + request.slots.nbytes for request in self.requests)
            letters = sum(len(letter.value) + len(letter.key or b"") for letter in self.dead_letters)
            self._nbytes = windows + letters + ITEM_OVERHEAD * (len(self.requests) + len(self.dead_letters))
        return self._nbytes


@dataclass(slots=True)
class ScoredChunk:
    chunk: Chunk
    outputs: ModelOutputs | None
    model_version: str


@dataclass(slots=True)
class PublishBatch:
    """Signals, dead letters and the checkpoint they complete, published as one unit."""

    signals: list[tuple[Signal, ScoreRequest]]
    dead_letters: list[DeadLetter]
    checkpoint: dict[TopicPartition, Checkpoint]

    def __len__(self) -> int:
        return len(self.signals) + len(self.dead_letters)


RevokeHandler = Callable[[list[TopicPartition]], Awaitable[None]]
"""Called by a source when partitions are taken away, before they go: the daemon drains there."""


class CandleSource(Protocol):
    async def poll(self) -> list[PartitionRecords]:
        """The next records, grouped by partition in offset order (may be empty)."""
        ...


class SignalSink(Protocol):
    async def publish(self, batch: PublishBatch) -> None:
        """Publish signals and dead letters and commit the checkpoint, all or nothing."""
        ...


@dataclass(frozen=True, slots=True)
class WindowOrigins:
    """Where each window of a batch comes from: what a scorer with per-symbol state (a streaming
    artifact's step path) needs beside the windows; a windowed scorer ignores it."""

    slots: npt.NDArray[np.int64]
    """``[B, T]`` slot index of each window's candles, oldest first."""
    keys: Sequence[WindowKey] | None = None
    """Each window's key; ``None``: keep no state, score each window from a zero state (the query API)."""
    rows: Sequence[int] = ()
    """Each window's slot in its route's window store: where the key's state is kept."""

    @classmethod
    def of(cls, requests: Sequence[ScoreRequest]) -> WindowOrigins:
        return cls(np.stack([r.slots for r in requests]), [r.key for r in requests], [r.row for r in requests])


class Scorer(Protocol):
    """The model as the pipeline uses it: a manifest and a batch forward pass."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def version(self) -> str: ...

    def score(self, windows: npt.NDArray[np.float32], origins: WindowOrigins | None = None) -> ModelOutputs:
        """Outputs for ``[B, T, 5]`` windows; a row's outputs never depend on the other rows, nor on
        the windows scored before (a state kept from them only saves work)."""
        ...


class ServedSource(CandleSource, Protocol):
    """A source the daemon runs: connected and closed by it, and asked for readiness."""

    @property
    def warm(self) -> bool:
        """Assigned its partitions and none of them is still rebuilding windows."""
        ...

    @property
    def candle_topic_missing(self) -> str | None:
        """Why the candle topic cannot be consumed yet (``topic 'candles' does not exist``); ``None`` once it can."""
        ...

    @property
    def paused_reason(self) -> str | None:
        """Which assigned partitions are paused and why (an assignment being planned or that failed)."""
        ...

    @property
    def reachable(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check_reachable(self) -> bool:
        """Ask the broker whether it answers and whether the candle topic exists (the daemon probes periodically)."""
        ...


class ServedSink(SignalSink, Protocol):
    """A sink the daemon runs: connected and closed by it, and asked for readiness."""

    @property
    def healthy(self) -> bool:
        """The last publish went through (false while a failed batch is retried)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


TransportFactory = Callable[[RevokeHandler], tuple[ServedSource, ServedSink]]
"""Builds the daemon's source and sink; the source calls the handler on revocation."""
