"""Candles from Kafka: a consumer-group member that rebuilds its windows from the log.

On assignment, each partition's committed offset ``C`` comes back with the rebuild offset ``R``
stored in its metadata (``daemon.checkpoint``). The consumer seeks to ``R``; records before
``C`` only rebuild windows (``PartitionRecords.replay``), records from ``C`` on are live. On
revocation, the pipeline is drained first, so the offsets of every record this instance has
taken are committed (in exactly-once mode, inside their transaction) before another instance
can take the partition.

The group's deadlines are explicit (``kafka.rebalance_timeout_ms``, ``kafka.max_poll_interval_ms``)
and a revocation's drain must end before them (``kafka.drain_deadline_ms``). A drain that cannot
finish gives its partitions up: the committer refuses every later commit (the open transaction
aborts) and the next poll raises ``FencedError``, so nothing of them is committed after the
group hands them on. Commits are also fenced by the group generation they were assigned under
(``daemon.kafka_commit``), which covers an instance paused past its session.

aiokafka logs and swallows an error raised in an assignment callback, which would leave the
partitions paused for good; planning is retried with backoff instead, and if it still fails the
partitions stay paused (``candlecast_paused_partitions``, not ready) and the next poll raises
``TransportError``, so the daemon exits for a restart to take them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from prometheus_client import CollectorRegistry, Counter, Gauge

from candlecast.errors import CandlecastError, FencedError, TransportError
from daemon.assignment_retries import paused_reason, plan_with_retries
from daemon.checkpoint import Scoring, plan_start, rebuild_offset_from, scored_since
from daemon.engine import SourceRecord
from daemon.kafka_commit import GroupMembership, KafkaCommitter
from daemon.kafka_offsets import StableOffsets
from daemon.kafka_topics import topic_answer
from daemon.ports import PartitionRecords, RevokeHandler
from daemon.settings import KafkaSettings

log = structlog.get_logger("candlecast.kafka")


class HideSaslExchanges(logging.Filter):
    """aiokafka logs every request at DEBUG, SASL PLAIN's username and password bytes included;
    those records are dropped whatever level an operator sets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SaslAuthenticateRequest" not in record.getMessage()


logging.getLogger("aiokafka.conn").addFilter(HideSaslExchanges())


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumers, producers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.password()
    return options


class SourceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "candlecast_consumer_lag", "Records in the partition not yet fetched.", ["partition"], registry=registry
        )
        self.assigned = Gauge(
            "candlecast_assigned_partitions", "Partitions assigned to this instance.", registry=registry
        )
        self.rebuilding = Gauge(
            "candlecast_rebuilding_partitions", "Assigned partitions still replaying into windows.", registry=registry
        )
        self.rebuild_remaining = Gauge(
            "candlecast_rebuild_remaining_records", "Records left to replay before scoring resumes.", registry=registry
        )
        self.rebalances = Counter("candlecast_rebalances", "Partition assignments received.", registry=registry)
        self.paused = Gauge(
            "candlecast_paused_partitions",
            "Assigned partitions paused: draining, planning a rebuild, or stuck after a failed assignment.",
            registry=registry,
        )
        self.rebuild_incomplete = Counter(
            "candlecast_rebuild_incomplete",
            "Rebuilds that found their start offset deleted by retention (windows re-warm).",
            registry=registry,
        )


class KafkaCandleSource:
    """A consumer-group member yielding ``PartitionRecords`` for the pipeline."""

    def __init__(
        self,
        settings: KafkaSettings,
        registry: CollectorRegistry,
        *,
        on_revoke: RevokeHandler,
    ) -> None:
        self.settings = settings
        self.metrics = SourceMetrics(registry)
        self.committer = KafkaCommitter(settings.group_id, lambda: self.consumer, registry)
        """Commits the offsets of what the sink published (the sink calls it)."""
        self._on_revoke = on_revoke
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: StableOffsets | None = None
        self._replay_until: dict[TopicPartition, int] = {}
        self._replay_from: dict[TopicPartition, int] = {}
        self._scored_since: dict[TopicPartition, Scoring | None] = {}
        self._replayed: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._next_offset: dict[TopicPartition, int] = {}
        self._joined = False
        self._epoch = 0
        """Bumped by every revocation and assignment: records a poll holds across one are stale."""
        self.reachable = False
        self.candle_topic_exists: bool | None = None
        """As ``check_reachable`` last saw it (``None``: not yet asked); readiness waits for the topic."""
        self._failure: CandlecastError | None = None
        """A rebalance callback's failure, raised by the next poll (aiokafka swallows it otherwise)."""

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the source is not started")
        return self._consumer

    @property
    def group_id(self) -> str:
        return self.settings.group_id

    @property
    def warm(self) -> bool:
        """Joined the group, its candle topic exists, and no partition is still rebuilding its windows
        or paused."""
        return (
            self._joined
            and self.candle_topic_exists is True
            and not self._replay_until
            and self._failure is None
            and not (self._consumer is not None and self._consumer.paused())
        )

    @property
    def paused_reason(self) -> str | None:
        paused = [] if self._consumer is None else [tp.partition for tp in self._consumer.paused()]
        return paused_reason(paused, self._failure)

    @property
    def candle_topic_missing(self) -> str | None:
        if self.candle_topic_exists is None:
            return "the broker has not been asked about the candle topic yet"
        return None if self.candle_topic_exists else f"topic {self.settings.candles_topic!r} does not exist"

    async def start(self) -> None:
        options = client_options(self.settings)
        self._admin = AIOKafkaAdminClient(client_id=f"candlecast-{self.settings.instance_id}-admin", **options)
        self._offsets = StableOffsets(options, self.settings.group_id)
        self._consumer = AIOKafkaConsumer(
            group_id=self.settings.group_id,
            client_id=f"candlecast-{self.settings.instance_id}",
            enable_auto_commit=False,
            auto_offset_reset=self.settings.auto_offset_reset,
            isolation_level="read_committed",
            session_timeout_ms=self.settings.session_timeout_ms,
            rebalance_timeout_ms=self.settings.rebalance_timeout_ms,
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            **options,
        )
        try:
            await self._admin.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self.stop()
            raise TransportError(f"cannot connect to Kafka at {self.settings.bootstrap_servers}: {exc}") from exc
        self._consumer.subscribe([self.settings.candles_topic], listener=_Listener(self))
        self.reachable = True

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        if self._offsets is not None:
            await self._offsets.close()

    async def poll(self) -> list[PartitionRecords]:
        if self._failure is not None:
            raise self._failure
        consumer = self.consumer
        fetched = await consumer.getmany(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.fetch_max_records
        )
        if self._failure is not None:
            # Set by a rebalance callback that failed during the fetch (a drain that failed or ran past
            # its deadline, a rebuild plan that never succeeded): what was fetched must not be touched.
            raise self._failure
        epoch = self._epoch
        polled: list[PartitionRecords] = []
        for tp, messages in fetched.items():
            if tp not in self._assigned:
                continue
            topic, partition = tp.topic, tp.partition
            records = [SourceRecord(topic, partition, m.offset, m.key, m.value or b"", m.timestamp) for m in messages]
            part = PartitionRecords(topic, partition)
            until = self._replay_until.get(tp)
            if until is None:
                part.live = records
            else:
                part.replay = [record for record in records if record.offset < until]
                part.live = [record for record in records if record.offset >= until]
                self._replayed[tp] = self._replayed.get(tp, 0) + len(part.replay)
            polled.append(part)
        if not await self._finish_rebuilds(polled, epoch):
            # The group rebalanced while we held these records: they belong to the old assignment,
            # and aiokafka restarts every partition of the new one from its committed offset.
            return []
        self._observe_lag(polled)
        self.metrics.paused.set(len(consumer.paused()))
        return polled

    async def _finish_rebuilds(self, polled: list[PartitionRecords], epoch: int) -> bool:
        """Mark partitions whose replay is complete; ``False`` when the group rebalanced meanwhile."""
        if not self._replay_until:
            return True
        by_tp = {(p.topic, p.partition): p for p in polled}
        remaining = 0
        for tp, until in list(self._replay_until.items()):
            position = await self.consumer.position(tp)
            if epoch != self._epoch:
                return False
            if position < until:
                remaining += until - position
                continue
            del self._replay_until[tp]
            part = by_tp.get((tp.topic, tp.partition))
            if part is None:
                part = PartitionRecords(tp.topic, tp.partition)
                polled.append(part)
            part.rebuilt = True
            part.scored_since = self._scored_since.pop(tp, None)
            log.info(
                "windows rebuilt",
                partition=tp.partition,
                replayed_from=self._replay_from.pop(tp, None),
                records=self._replayed.pop(tp, 0),
                resume_offset=until,
            )
        self.metrics.rebuilding.set(len(self._replay_until))
        self.metrics.rebuild_remaining.set(remaining)
        return True

    def _observe_lag(self, polled: list[PartitionRecords]) -> None:
        for part in polled:
            last = part.live[-1] if part.live else part.replay[-1] if part.replay else None
            if last is not None:
                self._next_offset[TopicPartition(part.topic, part.partition)] = last.offset + 1
        for tp in self._assigned:
            highwater = self.consumer.highwater(tp)
            position = self._next_offset.get(tp)
            if highwater is not None and position is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, highwater - position))

    async def check_reachable(self, timeout_s: float = 3.0) -> bool:
        """Ask the cluster for its metadata and whether the candle topic exists; used by readiness."""
        if self._admin is None:
            return False
        exists = await topic_answer(self._admin, self.settings.candles_topic, timeout_s)
        self.reachable = exists is not None
        if exists is not None:
            self._candle_topic_seen(exists)
        return self.reachable

    def _candle_topic_seen(self, exists: bool) -> None:
        topic = self.settings.candles_topic
        if not exists and self.candle_topic_exists is not False:
            log.warning("candle topic does not exist; not ready until it is created", topic=topic)
        elif exists and self.candle_topic_exists is False:
            log.info("candle topic created; joining it", topic=topic)
        self.candle_topic_exists = exists

    async def _revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        self._epoch += 1
        # No new records of these partitions while what was taken drains.
        self.consumer.pause(*revoked)
        partitions = [(tp.topic, tp.partition) for tp in revoked]
        log.info("partitions revoked; draining", partitions=[p for _, p in partitions])
        self.metrics.paused.set(len(self.consumer.paused()))
        deadline_s = self.settings.drain_deadline_ms / 1000
        try:
            drained = await _within(self._on_revoke(partitions), deadline_s)
        except Exception as exc:
            self.committer.give_up(f"the drain of revoked partitions failed: {exc!r}")
            self._failure = TransportError(f"the drain of revoked partitions failed: {exc!r}")
            raise
        if not drained:
            reason = (
                f"the drain of revoked partitions {[p for _, p in partitions]} did not finish within "
                f"kafka.drain_deadline_ms ({self.settings.drain_deadline_ms} ms); they are given up with "
                f"nothing more committed, for the group's next owner to take from the committed offsets"
            )
            log.error("drain past its deadline; giving the partitions up and exiting", reason=reason)
            self.committer.give_up(reason)
            self._failure = FencedError(reason)
            return
        for tp in revoked:
            self._assigned.discard(tp)
            self._replay_until.pop(tp, None)
            self._next_offset.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(str(tp.partition))
        self.metrics.assigned.set(len(self._assigned))

    async def _assigned_partitions(self, assigned: Iterable[TopicPartition]) -> None:
        tps = sorted(assigned)
        self._epoch += 1
        # Paused before the first await: records aiokafka fetches from its own idea of the start
        # while we plan must never reach the windows ahead of the replay.
        self.consumer.pause(*tps)
        self.metrics.paused.set(len(self.consumer.paused()))
        self.metrics.rebalances.inc()
        coordinator = self.consumer._coordinator
        self.committer.membership = GroupMembership(coordinator.generation, coordinator.member_id)
        if self._failure is not None:
            return
        if tps and not await self._plan_with_retries(tps):
            return
        self._assigned = set(tps)
        self.metrics.assigned.set(len(tps))
        self.consumer.resume(*tps)
        self.metrics.paused.set(len(self.consumer.paused()))
        self._joined = True
        log.info(
            "partitions assigned",
            partitions=[tp.partition for tp in tps],
            rebuilding={tp.partition: [self._replay_from[tp], until] for tp, until in self._replay_until.items()},
        )

    async def _plan_with_retries(self, tps: list[TopicPartition]) -> bool:
        """Plan, retrying with backoff; ``False`` (partitions left paused, failure set) if it never succeeds."""
        failure = await plan_with_retries(
            lambda: self._plan_rebuild(tps),
            [tp.partition for tp in tps],
            (KafkaError, TransportError, TimeoutError, OSError),
            asyncio.sleep,
        )
        if failure is None:
            return True
        self._failure = failure
        return False

    async def _plan_rebuild(self, tps: list[TopicPartition]) -> None:
        """Seek every assigned partition: to its rebuild offset when its windows need replaying,
        else to its committed offset; partitions the group never committed follow auto_offset_reset."""
        assert self._offsets is not None
        wanted: dict[str, list[int]] = {}
        for tp in tps:
            wanted.setdefault(tp.topic, []).append(tp.partition)
        committed = await self._offsets.fetch(wanted, self.settings.stable_offsets_timeout_ms / 1000)
        beginnings = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            meta = committed.get((tp.topic, tp.partition))
            plan = None if meta is None else plan_start(meta.offset, meta.metadata, beginnings[tp])
            if plan is None:
                continue
            if plan.truncated:
                log.error(
                    "rebuild start was deleted by retention; windows of this partition re-warm from the oldest record",
                    partition=tp.partition,
                    rebuild_from=rebuild_offset_from(meta.metadata if meta else None),
                    log_start=plan.seek,
                )
                self.metrics.rebuild_incomplete.inc()
            self.consumer.seek(tp, plan.seek)
            if plan.replay_until is not None:
                self._replay_until[tp] = plan.replay_until
                self._replay_from[tp] = plan.seek
                self._scored_since[tp] = scored_since(meta.metadata if meta else None)
        self.metrics.rebuilding.set(len(self._replay_until))


async def _within(work: Awaitable[None], seconds: float) -> bool:
    """Whether ``work`` finished within ``seconds`` (it is cancelled if not)."""
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        return False
    return True


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaCandleSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._source._revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._source._assigned_partitions(assigned)
