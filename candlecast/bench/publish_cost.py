"""What publishing a batch of signals costs a signal: the sink's record batches (one per partition)
against one producer ``send`` a record, the sink before them, alternated in one process against a
real broker, in each delivery mode (docs/benchmarks.md, "Publishing in record batches").

Each round publishes the same batch of synthetic signals (the daemon's shape, each symbol once, no
offsets to commit) through both sinks, in turn and in alternating order; a figure is the median over
the rounds of the round's wall time, and of the event loop's CPU time (this thread's: the daemon's
per-candle cost), per signal. The broker runs on the same machine, so wall time includes its work.

``python -m candlecast.bench.publish_cost [--bootstrap HOST:PORT] [--signals 10000] [--partitions 8] [--rounds 7]``
(without ``--bootstrap`` a local broker is started, as in tests/).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from candlecast.bench.fanout import synthetic_signal
from candlecast.bench.load import create_topics
from candlecast.localkafka import LocalKafka
from daemon.engine import ScoreRequest
from daemon.kafka_commit import KafkaCommitter
from daemon.kafka_sink import KafkaSignalSink
from daemon.ports import PublishBatch
from daemon.record_batches import Record
from daemon.settings import KafkaSettings

Delivery = Literal["exactly_once", "at_least_once"]
DELIVERIES: tuple[Delivery, ...] = ("exactly_once", "at_least_once")
PATHS = ("per record", "batched")


class PerRecordSink(KafkaSignalSink):
    """The sink as it published before record batches: one producer ``send`` a record, the producer's
    partitioner placing each (the reference the batched records are compared with)."""

    async def send_records(
        self, producer: AIOKafkaProducer, topic: str, records: list[Record]
    ) -> list[asyncio.Future[Any]]:
        return [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]


def signal_batch(signals: int, source_topic: str = "candles") -> PublishBatch:
    """``signals`` synthetic signals of distinct symbols, each with the request it came from."""
    window = np.zeros((0, 0), dtype=np.float32)
    return PublishBatch(
        signals=[
            (synthetic_signal(n, signals), ScoreRequest((f"S{n:05d}", "1d"), 0, window, source_topic, n % 8, n, 0, 0))
            for n in range(signals)
        ],
        dead_letters=[],
        checkpoint={},
    )


def sink_settings(bootstrap: str, delivery: Delivery, signals_topic: str, instance_id: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        signals_topic=signals_topic,
        dead_letter_topic=f"{signals_topic}.dlq",
        delivery=delivery,
        group_id=f"publish-cost-{instance_id}",
        instance_id=instance_id,
    )


def new_sink(settings: KafkaSettings, *, per_record: bool) -> KafkaSignalSink:
    registry = CollectorRegistry()

    def no_consumer() -> Any:
        raise RuntimeError("this bench commits no offsets")

    kind = PerRecordSink if per_record else KafkaSignalSink
    return kind(settings, KafkaCommitter(settings.group_id, no_consumer, registry), registry)


@dataclass(frozen=True)
class PublishCost:
    delivery: Delivery
    path: str
    wall_us: float
    """Median wall time of a round's publish, per signal."""
    loop_cpu_us: float
    """Median CPU time of the event loop's thread in a round's publish, per signal."""


async def measure(bootstrap: str, signals: int, partitions: int, rounds: int) -> list[PublishCost]:
    run = uuid.uuid4().hex[:8]
    topic = f"publish-cost-{run}"
    await create_topics(bootstrap, {topic: partitions, f"{topic}.dlq": 1})
    batch = signal_batch(signals)
    costs: list[PublishCost] = []
    for delivery in DELIVERIES:
        sinks = {
            path: new_sink(sink_settings(bootstrap, delivery, topic, f"{run}-{delivery}-{n}"), per_record=n == 0)
            for n, path in enumerate(PATHS)
        }
        walls: dict[str, list[float]] = {path: [] for path in PATHS}
        cpus: dict[str, list[float]] = {path: [] for path in PATHS}
        try:
            for sink in sinks.values():
                await sink.start()
                await sink.publish(signal_batch(10))
            for round_ in range(rounds):
                for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    await sinks[path].publish(batch)
                    cpus[path].append(time.thread_time() - cpu)
                    walls[path].append(time.perf_counter() - wall)
        finally:
            for sink in sinks.values():
                await sink.stop()
        for path in PATHS:
            wall_us, cpu_us = (1e6 * statistics.median(times[path]) / signals for times in (walls, cpus))
            costs.append(PublishCost(delivery, path, wall_us, cpu_us))
    return costs


def table(costs: list[PublishCost]) -> str:
    lines = [
        "| delivery | path | wall per signal | event loop CPU per signal |",
        "| --- | --- | ---: | ---: |",
    ]
    lines += [f"| {c.delivery} | {c.path} | {c.wall_us:.1f} us | {c.loop_cpu_us:.1f} us |" for c in costs]
    for delivery in DELIVERIES:
        old, new = (next(c for c in costs if c.delivery == delivery and c.path == path) for path in PATHS)
        lines.append(
            f"\n{delivery}: batched / per record = {new.wall_us / old.wall_us:.2f} (wall), "
            f"{new.loop_cpu_us / old.loop_cpu_us:.2f} (event loop CPU)"
        )
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> list[PublishCost]:
    if args.bootstrap is not None:
        return await measure(args.bootstrap, args.signals, args.partitions, args.rounds)
    with tempfile.TemporaryDirectory(prefix="publish-cost-") as root, LocalKafka(Path(root)) as kafka:
        return await measure(kafka.bootstrap_servers, args.signals, args.partitions, args.rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m candlecast.bench.publish_cost", description=__doc__)
    parser.add_argument("--bootstrap", help="a running broker; a local one is started when not given")
    parser.add_argument("--signals", type=int, default=10_000, help="signals in the published batch")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the signals topic")
    parser.add_argument("--rounds", type=int, default=7, help="publishes of each path, alternated")
    args = parser.parse_args(argv)
    sys.stdout.write(table(asyncio.run(_run(args))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
