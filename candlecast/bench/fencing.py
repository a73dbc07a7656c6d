"""What fencing commits by the group generation costs: transactions with aiokafka's TxnOffsetCommit v0
and with the daemon's v3 (``daemon.kafka_commit``), alternated on one broker in one run."""

from __future__ import annotations

import time
import uuid

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from candlecast.bench.report import CommitFencing, Latency
from daemon.kafka_commit import GroupMembership, KafkaCommitter


async def commit_fencing_cost(bootstrap: str, transactions: int) -> CommitFencing:
    """``transactions`` of each kind (one record and the consumed offset, as the daemon's batches hold),
    alternated so that a noisy machine slows both alike; the group has a real member whose generation
    the v3 commits carry."""
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"bench-fencing-{suffix}", f"bench-fencing-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    member = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await member.start()
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{group}-v0")
    fenced = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{group}-v3")
    committer = KafkaCommitter(group, lambda: member, CollectorRegistry())
    committer.fence(fenced)
    await plain.start()
    await fenced.start()
    try:
        while not member.assignment():
            await member.getmany(timeout_ms=100)
        coordinator = member._coordinator
        committer.membership = GroupMembership(coordinator.generation, coordinator.member_id)
        times: dict[bool, list[float]] = {False: [], True: []}
        tp = TopicPartition(topic, 0)
        for n in range(2 * transactions):
            is_fenced = n % 2 == 1
            producer = fenced if is_fenced else plain
            began = time.perf_counter()
            async with producer.transaction():
                await producer.send(topic, b"x")
                await producer.send_offsets_to_transaction({tp: n}, group)
            times[is_fenced].append((time.perf_counter() - began) * 1000)
    finally:
        await plain.stop()
        await fenced.stop()
        await member.stop()
    return CommitFencing(
        unfenced=Latency.of(np.array(times[False])), fenced=Latency.of(np.array(times[True])), transactions=transactions
    )
