"""Kill the partition leader of a 3-node KRaft cluster mid-stream: the daemon carries on by itself."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import daemon_settings, fresh_topics, read_records, running_daemon, wait_until
from tests.support.signals import by_candle

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def busiest_leader(bootstrap: str, topics: list[str]) -> int:
    """The node leading most partitions of the given topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for topic in described for p in topic["partitions"])
    node: int = leaders.most_common(1)[0][0]
    return node


async def test_leader_failover(kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference) -> None:
    """Replication 3, min.insync.replicas 2: SIGKILL the busiest leader under load; no operator action,
    the signals equal an uninterrupted run's, each exactly once; the recovery time is reported."""
    table = workload()
    cluster = LocalKafka(tmp_path / "cluster", nodes=3).start()
    try:
        topics = await fresh_topics(cluster.bootstrap_servers, replication=3)
        feeding = asyncio.create_task(
            publish_candles(
                table.messages("1d"), bootstrap_servers=cluster.bootstrap_servers, topic=topics.candles, rate=150
            )
        )
        async with running_daemon(daemon_settings(cluster.bootstrap_servers, topics, test_artifact)) as daemon:
            await wait_until(daemon.became_ready.is_set, timeout_s=60)
            await read_records(cluster.bootstrap_servers, topics.signals, expected=150, timeout_s=60)
            leader = await busiest_leader(cluster.bootstrap_servers, [topics.candles, topics.signals])
            killed_at_ms = time.time() * 1000
            await asyncio.to_thread(cluster.kill_node, cluster.members[leader - 1], signal.SIGKILL)
            await feeding
            records = await read_records(
                cluster.bootstrap_servers,
                topics.signals,
                expected=sum(map(len, reference.values())),
                timeout_s=120,
                settle_s=3,
            )
    finally:
        feeding.cancel()
        cluster.stop()

    assert by_candle(records) == reference
    after = sorted(r.timestamp for r in records if r.timestamp >= killed_at_ms)
    assert after, "signals were published after the leader died"
    print(f"failover: first signal {after[0] - killed_at_ms:.0f} ms after the leader was killed")
