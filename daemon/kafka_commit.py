"""The consumer group's offset commits, each with its rebuild metadata (``daemon.checkpoint``).

One object owns them: the sink hands it the checkpoint of every published batch, and it commits
through the consumer (at-least-once) or inside the producer's open transaction (exactly-once).

Exactly-once commits are fenced by the group (KIP-447). aiokafka sends ``TxnOffsetCommit`` v0,
which names the group only: a member the group has expelled (paused past its session, or draining
past the rebalance timeout) could still commit, and both it and the partitions' new owner would
publish the same candles. So the producer's sender is given a ``TxnOffsetCommit`` v3 carrying the
generation and member id of the assignment the offsets were taken under; the group coordinator
refuses a stale one (``ILLEGAL_GENERATION``, ``UNKNOWN_MEMBER_ID``), the transaction aborts, and
the instance stops (``MembershipLost``). The generation is the one captured when the partitions
were assigned, not the consumer's current one: aiokafka resets that to "none" (which the broker
does not check) as soon as a heartbeat learns of the expulsion, and a re-joined member has a new,
valid one that must not cover records taken under the old assignment.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.errors import GroupAuthorizationFailedError
from aiokafka.producer.sender import Sender, TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields
from prometheus_client import CollectorRegistry, Gauge

from daemon.checkpoint import Checkpoint
from daemon.checkpoint import TopicPartition as PartitionKey

FENCING_ERRORS = {22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 82: "FENCED_INSTANCE_ID"}
"""Group coordinator answers meaning: this member no longer owns what it commits."""


@dataclass(frozen=True, slots=True)
class GroupMembership:
    """The group generation and member id an assignment was received under."""

    generation_id: int
    member_id: str


NO_MEMBERSHIP = GroupMembership(-1, "")
"""Before any assignment: the broker checks neither field (as with v0)."""


class MembershipLost(Exception):  # noqa: N818  (a state, like aiokafka's ProducerFenced)
    """The group refused a commit of this instance: it was expelled, or gave its partitions up
    without finishing their drain. Nothing of the refused transaction is visible."""


class TxnOffsetCommitResponse_v3(Response):  # noqa: N801  (Kafka's versioned protocol names)
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):  # noqa: N801
    FLEXIBLE_VERSION: ClassVar[bool] = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
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
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class FencedTxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):
    API_KEY = 28

    def __init__(
        self,
        transactional_id: str,
        group_id: str,
        producer: tuple[int, int],
        membership: GroupMembership,
        offsets: dict[TopicPartition, Any],
    ) -> None:
        self._fields = (transactional_id, group_id, *producer, membership.generation_id, membership.member_id)
        self._offsets = offsets

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        topics: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = {}
        for tp, offset in sorted(self._offsets.items()):
            topics.setdefault(tp.topic, []).append((tp.partition, offset.offset, -1, offset.metadata, {}))
        return request_struct_class(*self._fields, None, [(topic, parts, {}) for topic, parts in topics.items()], {})


@dataclass(frozen=True, slots=True)
class _V0Errors:
    """A v3 response in the shape aiokafka's v0 handler reads."""

    errors: list[tuple[str, list[tuple[int, int]]]]


class FencedTxnOffsetCommitHandler(TxnOffsetCommitHandler):
    """aiokafka's handler, sending v3 with the membership and stopping at a fencing answer."""

    def __init__(self, sender: Sender, offsets: dict[TopicPartition, Any], group_id: str, membership: GroupMembership):
        super().__init__(sender, offsets, group_id)
        self._membership = membership

    def create_request(self) -> FencedTxnOffsetCommitRequest:
        txn = self._sender._txn_manager
        return FencedTxnOffsetCommitRequest(
            txn.transactional_id,
            self._group_id,
            (txn.producer_id, txn.producer_epoch),
            self._membership,
            self._offsets,
        )

    def handle_response(self, resp: Any) -> float | None:
        for _topic, parts, _ in resp.topics:
            for _partition, error, _tags in parts:
                if error in FENCING_ERRORS:
                    txn = self._sender._txn_manager
                    # aiokafka's error path forgets what the transaction holds, and its abort then skips
                    # EndTxn: the transaction would stay open until its timeout, holding back every
                    # read_committed reader of the signals. Keep them, so that the abort reaches the broker.
                    partitions, group = set(txn.txn_partitions), txn._txn_consumer_group
                    txn.error_transaction(
                        MembershipLost(
                            f"the group refused the offsets ({FENCING_ERRORS[error]}): generation "
                            f"{self._membership.generation_id} of member {self._membership.member_id!r} "
                            "is no longer current"
                        )
                    )
                    txn.txn_partitions.update(partitions)
                    txn._txn_consumer_group = group
                    # The offsets' waiter raises it to the sink; the abort replaces this one unread.
                    txn.wait_for_transaction_end().add_done_callback(lambda done: done.exception())
                    return None
        errors = _V0Errors([(topic, [(p, error) for p, error, _ in parts]) for topic, parts, _ in resp.topics])
        result: float | None = super().handle_response(errors)
        return result


async def _fenced_txn_offset_commit(
    sender: Sender, membership: Callable[[], GroupMembership], offsets: dict[TopicPartition, Any], group_id: str
) -> None:
    """``Sender._do_txn_offset_commit`` with the v3 handler; otherwise aiokafka's own steps."""
    if not offsets:
        return
    try:
        node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
    except GroupAuthorizationFailedError as exc:
        sender._txn_manager.error_transaction(exc)
        return
    await FencedTxnOffsetCommitHandler(sender, offsets, group_id, membership()).do(node_id)


class KafkaCommitter:
    def __init__(self, group_id: str, consumer: Callable[[], AIOKafkaConsumer], registry: CollectorRegistry) -> None:
        self.group_id = group_id
        self._consumer = consumer
        """The group member's consumer, once it is started."""
        self.membership = NO_MEMBERSHIP
        """The membership of the current assignment (set by the source when partitions are assigned)."""
        self.given_up: str | None = None
        """Why this instance may commit nothing more (a drain past its deadline), once it may not."""
        self.commit_age = Gauge(
            "candlecast_last_commit_timestamp_seconds", "Unix time of the last offset commit.", registry=registry
        )

    @staticmethod
    def offsets(checkpoint: dict[PartitionKey, Checkpoint]) -> dict[TopicPartition, tuple[int, str]]:
        """Kafka's form of a checkpoint: the next offset and the rebuild metadata, per partition."""
        return {TopicPartition(t, p): (c.offset, c.metadata()) for (t, p), c in checkpoint.items()}

    def fence(self, producer: AIOKafkaProducer) -> None:
        """Make ``producer``'s transactional offset commits carry this group's membership (KIP-447)."""
        sender = producer._sender
        sender._do_txn_offset_commit = functools.partial(_fenced_txn_offset_commit, sender, lambda: self.membership)

    def give_up(self, reason: str) -> None:
        """Refuse every later commit: what is still in flight belongs to partitions given up."""
        self.given_up = reason

    async def commit(self, checkpoint: dict[PartitionKey, Checkpoint]) -> None:
        """Commit through the consumer (at-least-once: after the batch's records are acknowledged)."""
        self._check_not_given_up()
        await self._consumer().commit(self.offsets(checkpoint))
        self.commit_age.set(time.time())

    async def add_to_transaction(self, producer: AIOKafkaProducer, checkpoint: dict[PartitionKey, Checkpoint]) -> None:
        """Add the offsets to the producer's open transaction (exactly-once); they count once it commits."""
        self._check_not_given_up()
        await producer.send_offsets_to_transaction(self.offsets(checkpoint), self.group_id)

    def committed(self) -> None:
        """The transaction holding the offsets committed."""
        self.commit_age.set(time.time())

    def _check_not_given_up(self) -> None:
        if self.given_up is not None:
            raise MembershipLost(self.given_up)
