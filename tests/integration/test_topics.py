"""A topic that does not exist on the real broker: a message naming it, and a daemon that is not ready."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import structlog

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from candlecast.topics import MissingTopicError, create_topics, default_topics
from tests.support.kafka import Topics, daemon_settings, running_daemon, wait_until
from tests.support.kafka import create_topics as create_test_topics

pytestmark = pytest.mark.kafka

CANDLECAST = str(Path(sys.executable).with_name("candlecast"))


async def test_replay_to_a_missing_topic_is_refused_naming_it(kafka: LocalKafka) -> None:
    """publish_candles raises MissingTopicError naming the topic, before sending anything."""
    topic = f"absent-{uuid.uuid4().hex[:8]}"
    messages = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(2).messages("1d")
    with pytest.raises(MissingTopicError, match=topic):
        await publish_candles(messages, bootstrap_servers=kafka.bootstrap_servers, topic=topic)


def test_candlecast_replay_to_a_missing_topic_prints_one_line_and_fails(kafka: LocalKafka) -> None:
    """`candlecast replay` to a missing topic exits 1 with one error line naming it, no traceback."""
    topic = f"absent-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [
            CANDLECAST,
            "replay",
            "--data",
            str(bundled_path("us_stocks_1d.csv")),
            "--last",
            "2",
            "--topic",
            topic,
            "--bootstrap-servers",
            kafka.bootstrap_servers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and topic in lines[0], done.stderr


async def test_the_default_topics_are_created_once(kafka: LocalKafka) -> None:
    """create_topics makes the settings' default topics and leaves existing ones alone on a second call."""
    wanted = default_topics()
    assert set(wanted) == {"candles", "signals", "candles.dlq"}
    first = await create_topics(kafka.bootstrap_servers, wanted)
    again = await create_topics(kafka.bootstrap_servers, wanted)
    assert set(first) <= set(wanted) and again == []


def test_a_restarted_local_broker_formats_nothing_again_and_keeps_its_topics(tmp_path: Path) -> None:
    """`make kafka-down` then `make kafka-up`: the broker starts again on its data, topics included."""
    broker = LocalKafka(tmp_path / "broker").start()
    try:
        asyncio.run(create_topics(broker.bootstrap_servers, {"kept": 1}))
    finally:
        broker.stop()
    again = LocalKafka(tmp_path / "broker", ports=[broker.members[0].port]).start()
    try:
        assert asyncio.run(create_topics(again.bootstrap_servers, {"kept": 1})) == []
    finally:
        again.stop()


async def test_the_daemon_is_not_ready_until_its_candle_topic_exists(kafka: LocalKafka, test_artifact: Path) -> None:
    """With its candle topic missing the daemon joins the broker but is not ready, says which topic it
    waits for (once in its log, and as the candle_topic check's reason), and becomes ready once the
    topic is created."""
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(f"candles-{suffix}", f"signals-{suffix}", f"dlq-{suffix}", f"group-{suffix}")
    await create_test_topics(kafka.bootstrap_servers, {topics.signals: 1, topics.dead_letters: 1})
    with structlog.testing.capture_logs() as logs:
        async with running_daemon(daemon_settings(kafka.bootstrap_servers, topics, test_artifact)) as daemon:

            def missing_reported() -> bool:
                return any(e["event"].startswith("candle topic does not exist") for e in logs)

            def joined() -> bool:
                return any(e["event"] == "partitions assigned" for e in logs)

            # Everything that made it ready before: joined the group, broker reachable. Not ready now.
            await wait_until(lambda: missing_reported() and joined(), timeout_s=60)
            await wait_until(lambda: daemon.health.readiness().get("broker_reachable", False), timeout_s=30)
            assert not daemon.became_ready.is_set()
            checks, reasons = daemon.health.report()
            assert checks["candle_topic"] is False
            assert reasons["candle_topic"] == f"topic {topics.candles!r} does not exist"
            await create_test_topics(kafka.bootstrap_servers, {topics.candles: 2})
            await asyncio.wait_for(daemon.became_ready.wait(), 90)
            assert all(daemon.health.readiness().values())
    reports = [e for e in logs if e["event"].startswith("candle topic does not exist")]
    assert len(reports) == 1 and reports[0]["topic"] == topics.candles
    assert any(e["event"] == "candle topic created; joining it" for e in logs)
