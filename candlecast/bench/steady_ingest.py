"""The pipeline's ingest of a steady rate's polls, the current window store and ingestor side by side
with a base revision's (``git show BASE:PATH``), alternated in one process.

At a steady rate a poll holds a candle or two per partition, not a close's thousands: what costs there
is per run and per partition (a run's array operations, each polled partition's rebuild offset), on
the event loop, between the broker's records and everything else it serves. Each side's pipeline (the
current ``Pipeline`` on in-memory transports, the bundled model's interval and window, default
settings) first fills every symbol's window in large polls; then every round both ingest the same
polls of ``--per-poll`` candles over 6 partitions, in an order swapped every round, and must have made
the same requests (keys, offsets, windows, slots, histories, sequences) and checkpoints. Figures: CPU
microseconds per poll, each round's and their median, and new / old (ratios are what a loaded machine
still tells apart).

``python -m candlecast.bench.steady_ingest [--base REV] [--symbols 10000] [--per-poll 6] [--rounds 5] [--polls 2000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from candlecast.bench.load import Message, Workload
from candlecast.bench.post_model import base_module
from candlecast.bench.run import resolve_model
from daemon import engine, window
from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.dispatch import DEFAULT_ROUTE, RouteClaim
from daemon.engine import SourceRecord
from daemon.intervals import Interval
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import Lane, ModelHolder, Pipeline
from daemon.ports import PartitionRecords
from daemon.settings import Settings
from models.artifact import Manifest, ModelOutputs
from models.torchscript import read_manifest

PARTITIONS = 6
WARM_POLL = 2_000
"""Records per poll while the windows fill."""


class Unscored:
    """What the pipeline's core needs of a model (its manifest); ingest never scores."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @property
    def version(self) -> str:
        return self.manifest.version

    def score(self, windows: object, origins: object = None) -> ModelOutputs:
        raise AssertionError("the ingest bench never scores")


def side(manifest: Manifest, window_module: types.ModuleType, engine_module: types.ModuleType) -> Pipeline[Unscored]:
    """The current pipeline, its one route ingesting with these modules' window store and ingestor."""
    model = Unscored(manifest)
    core = build_core(Settings(), model)
    built = core.store
    policies = {
        name: window_module.GapPolicy(window_module.GapMode(policy.mode.value), policy.max_missing)
        for name, policy in core.gap_policies.items()
    }
    store = window_module.WindowStore(
        built.length,
        intervals=core.intervals,
        gap_policies=policies,
        history=built.span - built.length,
        capacity=built.capacity,
        idle_expiry=built.idle_expiry,
    )
    memory = built.span - built.length + 1
    ingestor = engine_module.CandleIngestor(core.ingestor.validator, store, memory, on_release=core.builder.release)
    lane = Lane(DEFAULT_ROUTE, RouteClaim("*", None), ingestor, core.builder, ModelHolder(model), BatchPolicy())
    broker = MemoryBroker()
    return Pipeline(
        source=MemoryCandleSource(broker),
        sink=MemorySignalSink(broker),
        metrics=DaemonMetrics(CollectorRegistry()),
        lanes=[lane],
    )


class Polls:
    """Candle records as a source's polls: per partition, in offset order."""

    def __init__(self) -> None:
        self._offsets = [0] * PARTITIONS
        self._now_ms = int(time.time() * 1000)

    def of(self, messages: Sequence[Message], size: int) -> list[list[PartitionRecords]]:
        polls = []
        for start in range(0, len(messages), size):
            parts: dict[int, list[SourceRecord]] = {}
            for partition, key, value in messages[start : start + size]:
                record = SourceRecord("candles", partition, self._offsets[partition], key, value, self._now_ms)
                self._offsets[partition] += 1
                parts.setdefault(partition, []).append(record)
            polls.append([PartitionRecords("candles", p, live=records) for p, records in sorted(parts.items())])
        return polls


def ingested(pipeline: Pipeline[Unscored], polls: list[list[PartitionRecords]]) -> tuple[float, list[object]]:
    """CPU seconds of ingesting ``polls``, and what it made (requests' fields and checkpoints)."""
    made: list[object] = []
    started = time.thread_time()
    chunks = [chunk for polled in polls for chunk in pipeline._ingest(polled)]
    spent = time.thread_time() - started
    for chunk in chunks:
        made.append(dict(chunk.checkpoint))
        made += [
            (r.key, r.ts, r.offset, r.window.tobytes(), r.slots.tobytes(), r.history, r.sequence, r.row)
            for r in chunk.requests
        ]
    return spent, made


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", default="HEAD", help="Revision of the old code (default HEAD: the last commit).")
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--per-poll", type=int, default=6, help="candles per poll, spread over 6 partitions")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--polls", type=int, default=2_000, help="steady polls per round")
    args = parser.parse_args(argv)
    old_window = base_module(args.base, "daemon/window.py", "_base_window")
    # The base ingestor's verdicts are the base store's: it compares them with the base ``Push``.
    old_engine = base_module(
        args.base, "daemon/engine.py", "_base_engine", Push=old_window.Push, WindowStore=old_window.WindowStore
    )
    manifest = read_manifest(resolve_model(None)[0])
    interval = Interval.parse(manifest.interval, manifest.calendar)
    workload = Workload("I", args.symbols, interval, PARTITIONS, seed=1)
    polls = Polls()
    sides = {"old": side(manifest, old_window, old_engine), "new": side(manifest, window, engine)}
    for polled in polls.of(workload.rounds(manifest.window), WARM_POLL):
        for pipeline in sides.values():
            for _ in pipeline._ingest(polled):
                pass
    per_poll: dict[str, list[float]] = {name: [] for name in sides}
    for number in range(args.rounds):
        steady = polls.of(workload.stream(args.polls * args.per_poll), args.per_poll)
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        made = {}
        for name in order:
            spent, made[name] = ingested(sides[name], steady)
            per_poll[name].append(1e6 * spent / len(steady))
        if not any(isinstance(item, tuple) for item in made["new"]):
            raise SystemExit(f"round {number + 1}: no requests were made, nothing to compare")
        if made["old"] != made["new"]:
            raise SystemExit(f"round {number + 1}: the requests or checkpoints differ between {args.base} and now")
    old, new = (statistics.median(per_poll[name]) for name in ("old", "new"))
    rounds = {name: ", ".join(f"{value:.0f}" for value in values) for name, values in per_poll.items()}
    sys.stdout.write(
        f"{args.symbols} symbols, {args.per_poll} candles a poll over {PARTITIONS} partitions, {args.rounds} rounds of "
        f"{args.polls} polls (old = {args.base}); same requests and checkpoints every round\n"
        f"  CPU per poll: old {old:.0f} us ({rounds['old']}), new {new:.0f} us ({rounds['new']}), "
        f"new/old {new / old:.2f}\n"
    )


if __name__ == "__main__":
    main()
