"""A zombie cannot commit: an instance expelled while it holds taken records publishes none of them."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from candlecast.errors import FencedError, TransportError
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.service import Daemon
from daemon.serving import ServedModel, load_serving_model
from daemon.settings import BatchingSettings, ModelSettings
from tests.reliability.conftest import Reference, workload
from tests.support.kafka import daemon_settings, fresh_topics, read_records, wait_until
from tests.support.process import DaemonProcess, write_config
from tests.support.signals import by_candle

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SESSION_MS = 6000
"""The test config's session timeout: a process stopped longer than this is expelled."""


async def first_signal(bootstrap: str, topic: str, timeout_s: float = 120.0) -> None:
    """Return as soon as any signal is written (committed or not): the instance is mid-backlog."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.getone(), timeout_s)
    finally:
        await consumer.stop()


async def stop_past_session_while_a_successor_joins(
    zombie_config: Path, successor_config: Path, tmp_path: Path, kafka: LocalKafka, signals: str, reference: Reference
) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
    """Start the zombie on the backlog, SIGSTOP it mid-backlog, start the successor, SIGCONT the zombie once
    the successor owns every partition; returns the committed signals once the successor caught up, and the
    zombie's exit status."""
    first = DaemonProcess(zombie_config, tmp_path / "zombie.log").start()
    second = DaemonProcess(successor_config, tmp_path / "successor.log")
    try:
        await first_signal(kafka.bootstrap_servers, signals)
        first.send(signal.SIGSTOP)
        second.start()
        # Expelled after its session, the first leaves every partition to the second, which (once the
        # first's open transaction is over) starts from the committed offsets.
        await wait_until(lambda: owns_or_plans(second, partitions=3), timeout_s=180, interval_s=0.5)
        first.send(signal.SIGCONT)
        status = await asyncio.to_thread(first.wait, 120)
        await wait_until(lambda: caught_up(second, partitions=3), timeout_s=180, interval_s=0.5)
        records = await read_records(
            kafka.bootstrap_servers, signals, expected=sum(map(len, reference.values())), settle_s=5
        )
        assert second.alive, second.log_tail()
    finally:
        if first.alive:
            first.send(signal.SIGCONT)
        first.stop()
        second.stop()
    return records, status


async def test_an_instance_expelled_mid_backlog_publishes_nothing_its_successor_publishes(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """The first instance takes a backlog and is stopped (SIGSTOP) past its session while a second joins and
    is given every partition; resumed, the first still holds records it took under the old assignment. Its
    commits are refused by the group (it exits with the fenced status), and every candle's signal is
    published exactly once, equal to an uninterrupted run's."""
    topics = await fresh_topics(kafka.bootstrap_servers)
    await publish_candles(workload().messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)

    def config(instance: str) -> Path:
        # Small batches and a long transaction timeout: the backlog is held in many chunks, and a stop
        # longer than the session does not make the broker abort an open transaction by itself.
        return write_config(
            tmp_path / f"{instance}.toml",
            bootstrap=kafka.bootstrap_servers,
            topics=topics,
            artifact=test_artifact,
            instance_id=instance,
            kafka_extra={"transaction_timeout_ms": 120000},
            extra="\n[batching]\nmax_batch = 8\n",
        )

    records, status = await stop_past_session_while_a_successor_joins(
        config("zombie"), config("successor"), tmp_path, kafka, topics.signals, reference
    )

    published = by_candle(records)
    duplicates = {candle: len(copies) for candle, copies in published.items() if len(copies) > 1}
    print(f"zombie: {len(records)} signals for {len(reference)} candles, {len(duplicates)} duplicated")
    assert not duplicates, f"{len(duplicates)} candles published more than once"
    assert published == reference
    log = (tmp_path / "zombie.log").read_text()
    assert status == FencedError.exit_status, log[-4000:]
    assert "fenced by consumer group" in log


async def test_an_expelled_at_least_once_instance_stops_instead_of_retrying_its_commit(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """at_least_once: an instance stopped past its session mid-backlog finds its offset commit refused when it
    resumes; it exits with the fenced status instead of retrying the commit for ever, and every copy of every
    candle's signal equals an uninterrupted run's."""
    topics = await fresh_topics(kafka.bootstrap_servers)
    await publish_candles(workload().messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    configs = [
        write_config(
            tmp_path / f"{instance}.toml",
            bootstrap=kafka.bootstrap_servers,
            topics=topics,
            artifact=test_artifact,
            instance_id=instance,
            delivery="at_least_once",
            extra="\n[batching]\nmax_batch = 8\n",
        )
        for instance in ("zombie", "successor")
    ]
    records, status = await stop_past_session_while_a_successor_joins(
        configs[0], configs[1], tmp_path, kafka, topics.signals, reference
    )

    published = by_candle(records)
    assert published.keys() == reference.keys()
    assert all(set(copies) == set(reference[candle]) for candle, copies in published.items())
    log = (tmp_path / "zombie.log").read_text()
    assert status == FencedError.exit_status, log[-4000:]
    assert "fenced by consumer group" in log


async def test_an_assignment_that_cannot_be_planned_is_retried_then_exits(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path
) -> None:
    """A committed offset that never settles (a transaction holding it stays open) makes the stable-offset
    fetch give up at assignment: the daemon retries, shows the partitions paused and is not ready meanwhile,
    then exits non-zero saying why, instead of staying paused for good."""
    topics = await fresh_topics(kafka.bootstrap_servers, candle_partitions=1)
    hanging = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        transactional_id=f"hang-{topics.group}",
        transaction_timeout_ms=120000,
    )
    await hanging.start()
    try:
        await hanging.begin_transaction()
        await hanging.send_offsets_to_transaction({TopicPartition(topics.candles, 0): 0}, topics.group)
        config = write_config(
            tmp_path / "daemon.toml",
            bootstrap=kafka.bootstrap_servers,
            topics=topics,
            artifact=test_artifact,
            kafka_extra={"stable_offsets_timeout_ms": 500},
        )
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        seen_paused = False
        while daemon.alive and not seen_paused:
            seen_paused = await asyncio.to_thread(paused_partitions, daemon) > 0 and not daemon.ready()
            await asyncio.sleep(0.2)
        status = await asyncio.to_thread(daemon.wait, 120)
    finally:
        await hanging.stop()

    log = (tmp_path / "daemon.log").read_text()
    assert seen_paused, log[-3000:]
    assert status == TransportError.exit_status, log[-3000:]
    assert "could not plan assigned partitions [0] after 4 attempts" in log


def gauges(daemon: DaemonProcess) -> dict[str, list[float]]:
    """The daemon's gauges now, by name (empty while it cannot answer)."""
    try:
        _, body = daemon.get("/metrics")
    except OSError:
        return {}
    return {f.name: [s.value for s in f.samples] for f in text_string_to_metric_families(body.decode())}


def paused_partitions(daemon: DaemonProcess) -> float:
    return sum(gauges(daemon).get("candlecast_paused_partitions", [0.0]))


def owns_or_plans(daemon: DaemonProcess, *, partitions: int) -> bool:
    """Was assigned ``partitions`` partitions (still planning them, or done)."""
    now = gauges(daemon)
    return partitions in (*now.get("candlecast_assigned_partitions", []), *now.get("candlecast_paused_partitions", []))


def caught_up(daemon: DaemonProcess, *, partitions: int) -> bool:
    """Owns ``partitions`` partitions and has fetched each to its end."""
    now = gauges(daemon)
    lags = now.get("candlecast_consumer_lag", [])
    return now.get("candlecast_assigned_partitions") == [partitions] and len(lags) == partitions and not any(lags)


class HeldModel:
    """The real model with each forward pass held: a revocation then drains for longer than its deadline."""

    def __init__(self, model: ServedModel, hold_s: float) -> None:
        self._model = model
        self._hold_s = hold_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def score(self, windows: Any, origins: Any = None) -> Any:
        time.sleep(self._hold_s)
        return self._model.score(windows, origins)


async def test_a_drain_past_its_deadline_gives_the_partitions_up(
    kafka: LocalKafka, test_artifact: Path, tmp_path: Path, reference: Reference
) -> None:
    """An instance with a slow model holds a backlog when a second joins; its revocation cannot drain within
    kafka.drain_deadline_ms, so it commits nothing more of those partitions and ends with the fenced status
    saying so, and every candle's signal is published exactly once, equal to an uninterrupted run's."""
    topics = await fresh_topics(kafka.bootstrap_servers)
    await publish_candles(workload().messages("1d"), bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
    settings = daemon_settings(
        kafka.bootstrap_servers,
        topics,
        test_artifact,
        instance_id="slow",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        rebalance_timeout_ms=8000,
        drain_deadline_ms=3000,
    ).model_copy(update={"batching": BatchingSettings(max_batch=8)})

    def held(model_settings: ModelSettings, device: torch.device) -> ServedModel:
        return cast(ServedModel, HeldModel(load_serving_model(model_settings, device), 0.2))

    slow = Daemon(settings, load_model=held)
    running = asyncio.create_task(slow.run())
    second = DaemonProcess(
        write_config(
            tmp_path / "second.toml", bootstrap=kafka.bootstrap_servers, topics=topics, artifact=test_artifact
        ),
        tmp_path / "second.log",
    )
    try:
        await first_signal(kafka.bootstrap_servers, topics.signals)
        second.start()
        with pytest.raises(FencedError, match=r"did not finish within kafka\.drain_deadline_ms \(3000 ms\)"):
            await asyncio.wait_for(running, 180)
        await wait_until(lambda: caught_up(second, partitions=3), timeout_s=180, interval_s=0.5)
        records = await read_records(
            kafka.bootstrap_servers, topics.signals, expected=sum(map(len, reference.values())), settle_s=5
        )
        assert second.alive, second.log_tail()
    finally:
        running.cancel()
        second.stop()

    published = by_candle(records)
    assert all(len(copies) == 1 for copies in published.values())
    assert published == reference
