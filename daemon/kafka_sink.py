"""Signals to Kafka, committed together with the offsets of the candles they came from.

``exactly_once``: each publish batch is one Kafka transaction holding its signals, its dead
letters and the consumed offsets (``send_offsets_to_transaction``); consumers reading
``read_committed`` see every signal once. ``at_least_once``: an idempotent producer, offsets
committed only after every record of the batch is acknowledged; a crash in between repeats
signals with identical content and ``signal_id``. Either way each partition's records go to the
producer as whole record batches, on the partitions its own ``send`` would pick
(``daemon.record_batches``).

A failed batch is retried whole until it succeeds, with a fresh producer when the old one is
in an unrecoverable state (a new transactional producer fences and aborts the old one's open
transaction). While it retries, the pipeline's bounded queues stop consumption. Being fenced is
the exception: another producer owns the transactional id now, and a fresh producer would fence
it back, so the sink raises ``FencedError`` and the daemon exits. So does a commit the consumer
group refuses (``MembershipLost``, ``daemon.kafka_commit``): the group has handed this instance's
partitions on, and retrying could only publish what their new owner publishes too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import CommitFailedError, KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry, Counter

from candlecast.errors import FencedError, TransportError
from daemon.dead_letters import bounded_record
from daemon.kafka_commit import KafkaCommitter, MembershipLost
from daemon.kafka_source import client_options
from daemon.ports import PublishBatch
from daemon.record_batches import KeyHashes, Record, partitioned
from daemon.settings import KafkaSettings
from daemon.signal import encoder, signal_headers

log = structlog.get_logger("candlecast.kafka")

MAX_BACKOFF_S = 5.0


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """The signal producer's delivery and batching settings (the bench's I/O ceiling uses them too)."""
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.producer_batch_bytes,
        "retry_backoff_ms": settings.retry_backoff_ms,
        "compression_type": None if settings.compression == "none" else settings.compression,
    }


class KafkaSignalSink:
    def __init__(self, settings: KafkaSettings, committer: KafkaCommitter, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.committer = committer
        self.transactional = settings.delivery == "exactly_once"
        self.producer_errors = Counter(
            "candlecast_producer_errors", "Failed publish attempts (each is retried).", ["error"], registry=registry
        )
        self._producer: AIOKafkaProducer | None = None
        self._key_hashes = KeyHashes(murmur2)
        self.healthy = True

    @property
    def transactional_id(self) -> str:
        return f"candlecast-{self.settings.group_id}-{self.settings.instance_id}"

    def _new_producer(self) -> AIOKafkaProducer:
        options: dict[str, Any] = client_options(self.settings)
        if self.transactional:
            options["transactional_id"] = self.transactional_id
            options["transaction_timeout_ms"] = self.settings.transaction_timeout_ms
        return AIOKafkaProducer(
            client_id=f"candlecast-{self.settings.instance_id}", **producer_options(self.settings), **options
        )

    async def start(self) -> None:
        try:
            await self._ready_producer()
        except KafkaError as exc:
            raise TransportError(f"cannot start the producer for {self.settings.bootstrap_servers}: {exc}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, batch: PublishBatch) -> None:
        records = self.records(batch)
        attempt = 0
        while True:
            began = time.monotonic()
            try:
                producer = await self._ready_producer()
                if self.transactional:
                    await self._publish_transaction(producer, records, batch)
                else:
                    await self._publish_then_commit(producer, records, batch)
            except ProducerFenced as exc:
                await self._discard_producer()
                raise FencedError(self.fenced_message(time.monotonic() - began)) from exc
            except (MembershipLost, CommitFailedError) as exc:
                # The transaction is aborted (exactly-once); at-least-once repeats are allowed.
                await self._discard_producer()
                raise FencedError(self.membership_lost_message(exc)) from exc
            except KafkaError as exc:
                attempt += 1
                self.healthy = False
                self.producer_errors.labels(type(exc).__name__).inc()
                log.warning("publish failed; retrying the whole batch", error=repr(exc), attempt=attempt)
                await self._discard_producer()
                await asyncio.sleep(min(MAX_BACKOFF_S, 0.1 * 2**attempt))
            else:
                if not self.healthy:
                    log.info("publishing again", after_attempts=attempt)
                self.healthy = True
                return

    def fenced_message(self, held_s: float) -> str:
        """Why the producer was fenced: a transaction held past its timeout, or (far more likely
        when it was short) a second instance with this one's ``instance_id``."""
        names = f"kafka.instance_id {self.settings.instance_id!r}, transactional id {self.transactional_id!r}"
        if held_s * 1000 >= self.settings.transaction_timeout_ms:
            return (
                f"fenced: this instance held a transaction for {held_s:.1f} s, longer than "
                f"kafka.transaction_timeout_ms ({self.settings.transaction_timeout_ms} ms), and the broker "
                f"aborted it ({names}); exiting, a restart resumes from the committed offsets"
            )
        return (
            f"fenced: another instance with the same {names} started and took over; every instance of "
            f"group {self.settings.group_id!r} needs its own instance_id (docs/operations.md, "
            f"'Choose instance_id'); exiting instead of fencing it back"
        )

    def membership_lost_message(self, exc: Exception) -> str:
        return (
            f"fenced by consumer group {self.settings.group_id!r}: {exc}. This instance was expelled (paused "
            f"or stalled longer than kafka.session_timeout_ms or kafka.max_poll_interval_ms) or gave up a drain "
            f"longer than kafka.drain_deadline_ms, and the group handed its partitions on; this batch's offsets "
            f"were not committed (exactly_once: none of it is visible); exiting, a restart rejoins and resumes "
            f"from the committed offsets"
        )

    async def _ready_producer(self) -> AIOKafkaProducer:
        """The producer, started anew after a failure (a new transactional one fences the old)."""
        if self._producer is None:
            producer = self._new_producer()
            if self.transactional:
                self.committer.fence(producer)
            try:
                await producer.start()
            except KafkaError:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _discard_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            try:
                await old.stop()
            except (KafkaError, OSError) as exc:
                log.debug("closing a failed producer raised", error=repr(exc))

    def records(self, batch: PublishBatch) -> tuple[list[Record], list[Record]]:
        """The batch's signal and dead-letter records, encoded once for every attempt."""
        max_bytes = self.settings.dead_letter_max_bytes
        signals: list[Record] = [
            (
                signal.symbol.encode(),
                encoder.encode(signal),
                signal_headers(
                    signal, source_topic=request.topic, source_partition=request.partition, source_offset=request.offset
                ),
            )
            for signal, request in batch.signals
        ]
        letters = [bounded_record(letter, max_bytes) for letter in batch.dead_letters]
        return signals, [(letter.key, letter.value, letter.headers) for letter in letters]

    async def send_records(
        self, producer: AIOKafkaProducer, topic: str, records: list[Record]
    ) -> list[asyncio.Future[Any]]:
        """Each partition's records as whole record batches, on the partitions ``send`` would pick.

        The first batch of every partition is handed over before the second of any: the producer holds a
        partition's next batch until its last one is sent, and a partition queued only after that would
        cost a request of its own (in a transaction, an AddPartitionsToTxn round trip before its produce)."""
        if not records:
            return []
        grouped = partitioned(records, list(await producer.partitions_for(topic)), self._key_hashes)
        built: list[tuple[int, list[Any]]] = []
        for partition, in_partition in grouped.by_partition.items():
            builders = [producer.create_batch()]
            for key, value, headers in in_partition:
                if builders[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                    builders.append(producer.create_batch())
                    if builders[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                        # An empty batch always takes one record; dropping it silently would lose a signal.
                        raise TransportError(f"an empty record batch for {topic}[{partition}] refused a record")
            built.append((partition, builders))
        futures: list[asyncio.Future[Any]] = []
        for wave in range(max((len(builders) for _, builders in built), default=0)):
            for partition, builders in built:
                if wave < len(builders):
                    # The last one is left open, as ``send`` leaves its last batch: it lingers ``linger_ms``.
                    futures.append(await producer.send_batch(builders[wave], topic, partition=partition))
        for key, value, headers in grouped.keyless:
            futures.append(await producer.send(topic, value, key=key, headers=headers))
        return futures

    async def _sends(
        self, producer: AIOKafkaProducer, signals: list[Record], dead_letters: list[Record]
    ) -> list[asyncio.Future[Any]]:
        futures = await self.send_records(producer, self.settings.signals_topic, signals)
        futures += await self.send_records(producer, self.settings.dead_letter_topic, dead_letters)
        return futures

    async def _publish_transaction(
        self, producer: AIOKafkaProducer, records: tuple[list[Record], list[Record]], batch: PublishBatch
    ) -> None:
        async with producer.transaction():
            await self._sends(producer, *records)
            if batch.checkpoint:
                await self.committer.add_to_transaction(producer, batch.checkpoint)
        if batch.checkpoint:
            self.committer.committed()

    async def _publish_then_commit(
        self, producer: AIOKafkaProducer, records: tuple[list[Record], list[Record]], batch: PublishBatch
    ) -> None:
        futures = await self._sends(producer, *records)
        if futures:
            await asyncio.gather(*futures)
        if batch.checkpoint:
            await self.committer.commit(batch.checkpoint)
