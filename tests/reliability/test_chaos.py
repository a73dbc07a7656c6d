"""Chaos on a 3-node cluster: 3 instances, 6 partitions, a paced feed with bad messages, and faults at
seeded random moments (SIGKILL, SIGSTOP past the session then SIGCONT, leader kill, an instance removed
or added). Committed output equals an uninterrupted single-instance run's: 0 duplicates, 0 missing,
0 different. ``make soak`` runs the long version (CANDLECAST_CHAOS_FAULTS, at least 20)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from tests.reliability.conftest import Reference, workload
from tests.reliability.test_broker_failover import busiest_leader
from tests.support.kafka import Topics, fresh_topics, read_records
from tests.support.process import DaemonProcess, write_config
from tests.support.signals import by_candle

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FAULTS = int(os.environ.get("CANDLECAST_CHAOS_FAULTS", "4"))
"""4 in the suite; `make soak` sets CANDLECAST_CHAOS_FAULTS for the long run."""
RATE = float(os.environ.get("CANDLECAST_CHAOS_RATE", "30"))
"""Candles per second of the paced feed (the long run slows it so that the feed outlasts the faults)."""
SEED = int(os.environ.get("CANDLECAST_CHAOS_SEED", "20261201"))
SESSION_S = 6.0
"""The test config's session timeout (tests/support/process.py)."""
BAD_MESSAGES = 40
KINDS = ("sigkill", "sigstop", "leader_kill", "scale")


@dataclass
class Fleet:
    """Up to four named instances, restarted when they exit as systemd's Restart=on-failure would."""

    configs: dict[str, Path]
    logs: Path
    running: dict[str, DaemonProcess] = field(default_factory=dict)
    exits: Counter[int] = field(default_factory=Counter)

    def start(self, name: str) -> None:
        self.running[name] = DaemonProcess(self.configs[name], self.logs / f"{name}.log").start()

    def reap(self) -> None:
        """Record and restart instances that exited by themselves (fenced, drain deadline)."""
        for name, process in list(self.running.items()):
            if not process.alive:
                self.exits[process.returncode or 0] += 1
                self.start(name)

    def wait_all_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.reap()
            if all(p.ready() for p in self.running.values()):
                return
            time.sleep(0.2)
        tails = "\n".join(f"--- {n}\n{p.log_tail(15)}" for n, p in self.running.items())
        raise AssertionError(f"instances not ready in {timeout_s} s:\n{tails}")


async def send_bad_messages(bootstrap: str, topic: str, symbols: list[str], rng: random.Random) -> int:
    """Malformed, mistyped and keyless records between the genuine candles; returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(BAD_MESSAGES):
            symbol = symbols[n % len(symbols)]
            value = [b"{not json", b'{"symbol": "' + symbol.encode() + b'", "open": "x"}', b"\x00\xff"][n % 3]
            await producer.send_and_wait(topic, value, key=symbol.encode())
            await asyncio.sleep(rng.uniform(0.1, 1.0))
    finally:
        await producer.stop()
    return BAD_MESSAGES


async def inject(kind: str, fleet: Fleet, cluster: LocalKafka, topics: Topics, rng: random.Random) -> None:
    names = sorted(fleet.running)
    victim = rng.choice(names)
    if kind == "sigkill":
        await asyncio.to_thread(fleet.running[victim].kill)
        fleet.start(victim)
    elif kind == "sigstop":
        # A zombie: expelled while stopped, it resumes holding records of its old assignment.
        fleet.running[victim].send(signal.SIGSTOP)
        await asyncio.sleep(SESSION_S + rng.uniform(1.0, 4.0))
        fleet.running[victim].send(signal.SIGCONT)
    elif kind == "leader_kill":
        leader = await busiest_leader(cluster.bootstrap_servers, [topics.candles, topics.signals])
        node = cluster.members[leader - 1]
        await asyncio.to_thread(cluster.kill_node, node, signal.SIGKILL)
        await asyncio.sleep(rng.uniform(2.0, 6.0))
        await asyncio.to_thread(cluster.start_node, node)
    elif len(names) > 2 and rng.random() < 0.5:
        await asyncio.to_thread(fleet.running.pop(victim).stop)
    else:
        fleet.start(next(n for n in sorted(fleet.configs) if n not in fleet.running))


@pytest.mark.timeout(240 + 120 * FAULTS)
async def test_chaos(test_artifact: Path, tmp_path: Path, reference: Reference) -> None:
    """Faults at random moments on a 3-node cluster with 3 instances: every candle's signal exactly once,
    equal to an uninterrupted run's, and every bad message dead-lettered exactly once."""
    rng = random.Random(SEED)
    table = workload()
    cluster = LocalKafka(tmp_path / "cluster", nodes=3).start()
    feeding: asyncio.Task[float] | None = None
    fleet: Fleet | None = None
    report: list[str] = []
    try:
        topics = await fresh_topics(cluster.bootstrap_servers, candle_partitions=6, replication=3)
        configs = {
            name: write_config(
                tmp_path / f"{name}.toml",
                bootstrap=cluster.bootstrap_servers,
                topics=topics,
                artifact=test_artifact,
                instance_id=name,
                kafka_extra={"rebalance_timeout_ms": 20000, "drain_deadline_ms": 15000},
            )
            for name in ("a", "b", "c", "d")
        }
        fleet = Fleet(configs, tmp_path)
        for name in ("a", "b", "c"):
            fleet.start(name)
        await asyncio.to_thread(fleet.wait_all_ready)
        feeding = asyncio.create_task(
            publish_candles(
                table.messages("1d"), bootstrap_servers=cluster.bootstrap_servers, topic=topics.candles, rate=RATE
            )
        )
        bad = asyncio.create_task(
            send_bad_messages(cluster.bootstrap_servers, topics.candles, sorted(table.symbol_slices()), rng)
        )
        for n in range(FAULTS):
            await asyncio.sleep(rng.uniform(1.0, 6.0))
            kind = KINDS[n % len(KINDS)] if n < len(KINDS) else rng.choice(KINDS)
            await inject(kind, fleet, cluster, topics, rng)
            began = time.monotonic()
            await asyncio.to_thread(fleet.wait_all_ready)
            report.append(f"{kind}:{time.monotonic() - began:.1f}s")
        await feeding
        sent_bad = await bad
        expected = sum(map(len, reference.values()))
        records = await read_records(
            cluster.bootstrap_servers, topics.signals, expected=expected, timeout_s=240, settle_s=5
        )
        letters = await read_records(
            cluster.bootstrap_servers, topics.dead_letters, expected=sent_bad, timeout_s=60, settle_s=2
        )
        fleet.reap()
    finally:
        if feeding is not None:
            feeding.cancel()
        if fleet is not None:
            for process in fleet.running.values():
                if process.alive:
                    process.send(signal.SIGCONT)
                process.stop()
        cluster.stop()

    published = by_candle(records)
    duplicates = sum(len(copies) - 1 for copies in published.values())
    missing = len(reference.keys() - published.keys())
    different = sum(1 for key, copies in published.items() if key in reference and copies[0] != reference[key][0])
    print(
        f"chaos: {FAULTS} faults, {len(published)} signals compared against {len(reference)}, "
        f"{duplicates} duplicates, {missing} missing, {different} different; dead letters {len(letters)} of "
        f"{sent_bad}; restarts after exit statuses {dict(fleet.exits)}; "
        f"every instance ready again, after each fault's end: {', '.join(report)}"
    )
    assert (duplicates, missing, different) == (0, 0, 0)
    assert published == reference
    assert len(letters) == sent_bad
