"""In-memory transports: a partitioned candle log with one group's commits, a source that reads it
as a consumer-group member, and a sink that publishes into it in transactions.

They run the real ``Pipeline`` and the real ``Daemon`` without a broker: ``candlecast backtest``
feeds a candle file through them, and the flow tests drive assignment, revocation, backpressure,
stop, reload, failing transactions and failing assignments deterministically, with no sleeps. Rebuild
planning is Kafka's own (``daemon.checkpoint.plan_start``), retried as Kafka's is
(``daemon.assignment_retries``), so a reassigned partition replays exactly what a Kafka-backed daemon
would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge

from candlecast.errors import TransportError
from daemon.assignment_retries import paused_reason, plan_with_retries
from daemon.checkpoint import Checkpoint, Scoring, plan_start, scored_since
from daemon.engine import SourceRecord
from daemon.ports import PartitionRecords, PublishBatch, RevokeHandler, ServedSink, ServedSource
from daemon.signal import DeadLetter, Signal
from daemon.timer import SystemTimer, Timer


@dataclass(slots=True)
class Transaction:
    """What one publish attempt wrote; visible to readers only once committed."""

    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    committed: bool = False


class MemoryBroker:
    """A candle topic's partitions, and the output and committed offsets of one consumer group."""

    def __init__(
        self, topic: str = "candles", partitions: int = 1, *, retain: bool = True, created: bool = True
    ) -> None:
        self.topic = topic
        self.created = created
        """Whether the candle topic exists; a source joins its partitions once it does (``create_topic``)."""
        self.up = True
        """While false, sources cannot connect (``start`` raises ``TransportError``), as with a broker that is down."""
        self.retain = retain
        """Keep committed transactions for readers; a backtest takes its signals from the pipeline instead."""
        self.logs: list[list[SourceRecord]] = [[] for _ in range(partitions)]
        self.log_start = [0] * partitions
        """Offsets below this were deleted by retention."""
        self.committed: dict[int, tuple[int, str]] = {}
        """Per partition: the next offset to consume and its checkpoint metadata."""
        self.transactions: list[Transaction] = []
        self.appends = 0
        """Records produced so far: a reader that saw this many waits for the next with ``appended``."""
        self.plan_failures = 0
        """The next assignment plans that fail, as a committed-offset fetch that gives up or
        ``beginning_offsets`` timing out during a failover (``fail_plans``)."""
        self._appended = asyncio.Event()
        self._committed = asyncio.Event()

    @property
    def partitions(self) -> int:
        return len(self.logs)

    def create_topic(self) -> None:
        """Create the candle topic: sources see it at their next ``check_reachable``, as a Kafka consumer
        sees a new topic at its next metadata refresh."""
        self.created = True

    def fail_plans(self, count: int) -> None:
        """Make the next ``count`` attempts to plan an assignment fail."""
        self.plan_failures += count

    def offsets_for_plan(self, partition: int) -> tuple[int, str, int]:
        """The committed offset (-1 if none), its metadata and the log start of a partition, as a source
        reads them to plan an assignment; ``TransportError`` while ``fail_plans`` says so."""
        if self.plan_failures:
            self.plan_failures -= 1
            raise TransportError(f"fetching the committed offsets of {self.topic!r} timed out")
        committed, metadata = self.committed.get(partition, (-1, ""))
        return committed, metadata, self.log_start[partition]

    def append(self, partition: int, key: bytes | None, value: bytes, timestamp_ms: int) -> int:
        """Produce a candle record; returns its offset."""
        log = self.logs[partition]
        offset = len(log)
        log.append(SourceRecord(self.topic, partition, offset, key, value, timestamp_ms))
        self.appends += 1
        self._appended.set()
        return offset

    def truncate(self, partition: int, before: int) -> None:
        """Retention: records before ``before`` can no longer be read."""
        self.log_start[partition] = before

    @property
    def signals(self) -> list[Signal]:
        """Signals of committed transactions, in publish order (what a ``read_committed`` reader sees)."""
        return [s for t in self.transactions if t.committed for s in t.signals]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [d for t in self.transactions if t.committed for d in t.dead_letters]

    @property
    def aborted(self) -> list[Transaction]:
        return [t for t in self.transactions if not t.committed]

    def commit(self, transaction: Transaction, checkpoint: dict[tuple[str, int], Checkpoint]) -> None:
        """Make a transaction's records and its offsets visible together."""
        for (topic, partition), mark in checkpoint.items():
            if topic == self.topic:
                self.committed[partition] = (mark.offset, mark.metadata())
        transaction.committed = True
        self._committed.set()
        if not self.retain:
            self.transactions.remove(transaction)

    def committed_offset(self, partition: int) -> int:
        """The group's committed offset of a partition (0 before any commit)."""
        return self.committed.get(partition, (0, ""))[0]

    async def wait_committed(self, partition: int, offset: int) -> None:
        """Wait until the group's committed offset of a partition reaches ``offset``."""
        while self.committed_offset(partition) < offset:
            self._committed.clear()
            await self._committed.wait()

    async def appended(self, seen: int) -> None:
        """Wait until more than ``seen`` records were produced (``seen`` read before looking at the logs,
        so a record produced in between is not missed)."""
        while self.appends == seen:
            self._appended.clear()
            await self._appended.wait()


class MemoryCandleSource:
    """A consumer-group member of a ``MemoryBroker``: ``assign`` and ``revoke`` are the rebalance events."""

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        on_revoke: RevokeHandler | None = None,
        max_records: int = 500,
        reset: Literal["earliest", "latest"] = "earliest",
        assign_on_start: Iterable[int] | None = None,
        timer: Timer | None = None,
        paused_gauge: Gauge | None = None,
    ) -> None:
        self.broker = broker
        self.timer = timer or SystemTimer()
        """What an assignment's retries wait on."""
        self.paused_gauge = paused_gauge
        self.max_records = max_records
        self.reset = reset
        self._on_revoke = on_revoke
        self._assign_on_start = list(range(broker.partitions) if assign_on_start is None else assign_on_start)
        self._position: dict[int, int] = {}
        self._replay_until: dict[int, int] = {}
        self._scored_since: dict[int, Scoring | None] = {}
        self._paused: set[int] = set()
        self._failure: TransportError | None = None
        self._wake = asyncio.Event()
        self._joined = False
        self.polls = 0
        """Polls that returned records."""
        self.reachable = True

    @property
    def warm(self) -> bool:
        return self._joined and not self._replay_until and not self._paused and self._failure is None

    @property
    def paused_reason(self) -> str | None:
        return paused_reason(self._paused, self._failure)

    @property
    def paused(self) -> list[int]:
        return sorted(self._paused)

    @property
    def candle_topic_missing(self) -> str | None:
        return None if self.broker.created else f"topic {self.broker.topic!r} does not exist"

    @property
    def assigned(self) -> list[int]:
        return sorted(self._position)

    async def start(self) -> None:
        if not self.broker.up:
            raise TransportError(f"the in-memory broker of {self.broker.topic!r} is down")
        self.reachable = True
        if self.broker.created:
            await self.assign(self._assign_on_start)

    async def stop(self) -> None:
        self.reachable = False

    async def check_reachable(self) -> bool:
        """Reachable while started; joins the partitions of a candle topic created since the start."""
        if self.reachable and self.broker.created and not self._joined:
            await self.assign(self._assign_on_start)
        return self.reachable

    async def assign(self, partitions: Iterable[int]) -> None:
        """Take partitions: each resumes from its committed offset, replaying from its rebuild offset.
        They stay paused while the plan is retried (``MemoryBroker.fail_plans``); if it never succeeds, they
        stay paused and the next poll raises the failure."""
        assigned = list(partitions)
        self._pause_assigned(assigned)
        failure = await plan_with_retries(lambda: self._plan(assigned), assigned, (TransportError,), self.timer.sleep)
        if failure is not None:
            self._failure = failure
        else:
            self.resume(*assigned)
            self._joined = True
        self._wake.set()

    def _pause_assigned(self, partitions: list[int]) -> None:
        self._paused.update(partitions)
        self._show_paused()

    async def _plan(self, partitions: list[int]) -> None:
        """Seek each partition, all or none: the offsets of every partition are read before any moves."""
        offsets = {partition: self.broker.offsets_for_plan(partition) for partition in partitions}
        for partition, (committed, metadata, log_start) in offsets.items():
            plan = plan_start(committed, metadata, log_start)
            if plan is None:
                self._position[partition] = log_start if self.reset == "earliest" else len(self.broker.logs[partition])
                continue
            self._position[partition] = plan.seek
            if plan.replay_until is not None:
                self._replay_until[partition] = plan.replay_until
                self._scored_since[partition] = scored_since(metadata)

    def _show_paused(self) -> None:
        if self.paused_gauge is not None:
            self.paused_gauge.set(len(self._paused))

    @property
    def positions(self) -> dict[int, int]:
        """Per assigned partition, the next offset a poll returns: everything before it was taken."""
        return dict(self._position)

    async def revoke(self, partitions: Iterable[int]) -> dict[int, int]:
        """Give partitions up: paused, drained by the daemon (``on_revoke``), then dropped; returns
        how far each was taken."""
        revoked = [p for p in partitions if p in self._position]
        taken = {p: self._position[p] for p in revoked}
        self._pause_assigned(revoked)
        if self._on_revoke is not None:
            await self._on_revoke([(self.broker.topic, p) for p in revoked])
        for partition in revoked:
            self._position.pop(partition, None)
            self._replay_until.pop(partition, None)
            self._paused.discard(partition)
        self._show_paused()
        return taken

    def pause(self, *partitions: int) -> None:
        self._pause_assigned(list(partitions))

    def resume(self, *partitions: int) -> None:
        self._paused.difference_update(partitions)
        self._show_paused()
        self._wake.set()

    def backlog(self) -> int:
        """Records of assigned, unpaused partitions not yet polled."""
        return sum(
            len(self.broker.logs[p]) - position for p, position in self._position.items() if p not in self._paused
        )

    async def poll(self) -> list[PartitionRecords]:
        """The next records of the assigned, unpaused partitions; waits until there are some. Raises the
        failure of an assignment that could not be planned."""
        while True:
            if self._failure is not None:
                raise self._failure
            seen = self.broker.appends
            polled = self._take()
            if polled:
                self.polls += 1
                return polled
            appended = asyncio.ensure_future(self.broker.appended(seen))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({appended, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                appended.cancel()
                woken.cancel()
            self._wake.clear()

    def _take(self) -> list[PartitionRecords]:
        budget = self.max_records
        polled: list[PartitionRecords] = []
        for partition, position in sorted(self._position.items()):
            if partition in self._paused:
                continue
            records = self.broker.logs[partition][position : position + budget]
            budget -= len(records)
            until = self._replay_until.get(partition)
            part = PartitionRecords(self.broker.topic, partition)
            for record in records:
                (part.replay if until is not None and record.offset < until else part.live).append(record)
            self._position[partition] = reached = position + len(records)
            if until is not None and reached >= until:
                del self._replay_until[partition]
                part.rebuilt = True
                part.scored_since = self._scored_since.pop(partition, None)
            if records or part.rebuilt:
                polled.append(part)
        return polled


class MemorySignalSink:
    """Publishes each batch as one transaction of a ``MemoryBroker``, retried whole after a failure
    as the Kafka sink does. ``fail`` breaks transactions off halfway; ``hold`` keeps batches waiting."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.healthy = True
        self.attempts = 0
        self._failures: list[Exception] = []
        self._open = asyncio.Event()
        self._open.set()
        self.holding = asyncio.Event()
        """Set once a batch waits at a closed ``hold``: records are in flight."""

    def fail(self, *errors: Exception) -> None:
        """The next transactions that carry signals each fail with one of these, in order, after writing
        half their signals; a ``TransportError`` is retried, any other error ends the daemon, as with Kafka."""
        self._failures.extend(errors)

    def hold(self) -> None:
        """Keep the next batches waiting before their transaction, until ``release``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, batch: PublishBatch) -> None:
        if not self._open.is_set():
            self.holding.set()
            await self._open.wait()
        while True:
            self.attempts += 1
            transaction = Transaction()
            self.broker.transactions.append(transaction)
            try:
                self._write(transaction, batch)
            except TransportError:
                self.healthy = False
                await asyncio.sleep(0)  # where the Kafka sink backs off: other tasks run meanwhile
                continue
            self.broker.commit(transaction, batch.checkpoint)
            self.healthy = True
            return

    def _write(self, transaction: Transaction, batch: PublishBatch) -> None:
        failure = self._failures.pop(0) if self._failures and batch.signals else None
        half = len(batch.signals) // 2 if failure is not None else len(batch.signals)
        transaction.signals.extend(signal for signal, _ in batch.signals[: max(half, 1)])
        if failure is not None:
            raise failure
        transaction.dead_letters.extend(batch.dead_letters)


class MemoryTransports:
    """A ``TransportFactory`` for ``Daemon``: builds a source and a sink on one broker and keeps them.
    With a ``registry``, the source shows its paused partitions in ``candlecast_paused_partitions``, as
    the Kafka source does; with a ``timer``, assignment retries wait on it."""

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        max_records: int = 500,
        timer: Timer | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.broker = broker
        self.max_records = max_records
        self.timer = timer
        self.paused_gauge = (
            None
            if registry is None
            else Gauge(
                "candlecast_paused_partitions",
                "Assigned partitions paused: draining, planning a rebuild, or stuck after a failed assignment.",
                registry=registry,
            )
        )
        self.source: MemoryCandleSource | None = None
        self.sink: MemorySignalSink | None = None

    def __call__(self, on_revoke: RevokeHandler) -> tuple[ServedSource, ServedSink]:
        self.source = MemoryCandleSource(
            self.broker,
            on_revoke=on_revoke,
            max_records=self.max_records,
            timer=self.timer,
            paused_gauge=self.paused_gauge,
        )
        self.sink = MemorySignalSink(self.broker)
        return self.source, self.sink
