"""Fenced means stop: a second instance with the same instance_id takes over, the first exits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from candlecast.errors import FencedError
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import fresh_topics, read_records, read_to_end, wait_all_committed
from tests.support.process import DaemonProcess, write_config
from tests.support.signals import by_candle

ENV_EXAMPLE = Path(__file__).parents[2] / "systemd" / "candlecast.env.example"


def test_the_environment_example_leaves_instance_id_to_each_instance() -> None:
    """The example environment file sets no instance_id: one set there would be every instance's on the host."""
    assert not re.search(r"^\s*CANDLECAST_KAFKA__INSTANCE_ID\s*=", ENV_EXAMPLE.read_text(), re.MULTILINE)


@pytest.mark.kafka
async def test_an_instance_fenced_by_its_twin_exits_instead_of_fencing_back(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """Two daemons with one instance_id: the older one, fenced by the newer one's producer, exits with the
    fenced status and a message naming the duplicate instance_id; the newer one keeps running, and every
    candle gets exactly the signal an uninterrupted run gives it."""
    messages = workload().messages("1d")
    half = len(messages) // 2
    topics = await fresh_topics(kafka.bootstrap_servers)
    config = write_config(
        tmp_path / "daemon.toml", bootstrap=kafka.bootstrap_servers, topics=topics, artifact=test_artifact
    )
    first = DaemonProcess(config, tmp_path / "first.log").start()
    second = DaemonProcess(config, tmp_path / "second.log")
    try:
        await asyncio.to_thread(first.wait_ready, 90)
        await publish_candles(messages[:half], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
        await wait_all_committed(kafka.bootstrap_servers, topics.candles, topics.group)
        before = await read_to_end(kafka.bootstrap_servers, topics.signals)
        assert before, "the first instance publishes before its twin starts"
        second.start()
        await asyncio.to_thread(second.wait_ready, 90)
        await publish_candles(messages[half:], bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
        status = await asyncio.to_thread(first.wait, 90)
        records = await read_records(
            kafka.bootstrap_servers, topics.signals, expected=sum(map(len, reference.values())), settle_s=3
        )
        assert second.alive, second.log_tail()
    finally:
        first.stop()
        stopped = second.stop() if second.process is not None else 0

    log = (tmp_path / "first.log").read_text()
    assert status == FencedError.exit_status, log[-4000:]
    assert "another instance with the same kafka.instance_id 'p0'" in log
    assert stopped == 0
    published = by_candle(records)
    assert published == reference
