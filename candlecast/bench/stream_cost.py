"""What stream clients cost the daemon's latency, in interleaved rounds with a bootstrap interval.

One daemon (the bundled model, a throwaway local Kafka broker) serves a steady candle rate. Each
round measures one steady phase per arm, in an order that rotates from round to round: ``without``
stream clients, ``with`` them (``--clients`` Server-Sent Events clients of every symbol in one child
process at the bench's own priority, so their CPU competes with the daemon's as a co-located
dashboard's would; left out with ``--no-in-daemon``), with ``--niced``, ``niced`` (the same clients
at nice 19, standing for clients on another host: the daemon's fan-out is still its own, their
reading mostly is not) and, with ``--separate``, ``separate`` (the same clients at nice 19 connected
to ``candlecast stream-server``, started for the phase at nice 10 as its systemd unit runs it,
reading the daemon's signals topic: the fan-out leaves the daemon's process; the server's start and
ring fill fall before the phase's quiet second, its CPU seconds during the phase are reported). Each
arm's p50 and p99 are set against ``without`` round by round; the summary gives the median of the
per-round ratios and the ratio of the pooled latencies, each with a 95% interval from resampled
rounds (``candlecast.bench.ratios``), and per phase the collector's full collections and the event
loop's longest stall (``candlecast.bench.pauses``), which tell a phase set by a pause from one set
by the clients.

``python -m candlecast.bench.stream_cost --out FILE.json`` (``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console

from candlecast.bench.harness import Bench, Served, local_bench, primed_serving
from candlecast.bench.load import Generator, Workload
from candlecast.bench.machine import machine
from candlecast.bench.options import DELIVERY_CHOICES, BenchOptions, Delivery
from candlecast.bench.pauses import Pauses, PauseWatch
from candlecast.bench.phases import QUIET_S
from candlecast.bench.ratios import Latencies, RatioSummary, summarize
from candlecast.bench.report import ClientCounts, Latency
from candlecast.bench.stream_server_process import StreamServerProcess, stream_server_process
from candlecast.bench.streams import StreamClients, stream_clients

Arm = Literal["without", "with", "niced", "separate"]
NICED = 19
SERVER_NICE = 10
"""The stream server's priority: the ``Nice=`` of systemd/candlecast-stream.service."""


@dataclass(frozen=True)
class StreamCostOptions:
    symbols: int = 2_000
    rate: float = 300.0
    """Candles per second of every phase."""
    steady_s: float = 10.0
    rounds: int = 8
    clients: int = 100
    in_daemon: bool = True
    """The arm with the clients on the daemon's own stream (off: more rounds of the others in the same time)."""
    niced: bool = False
    """Also an arm with the clients at nice 19."""
    separate: bool = False
    """Also an arm with the clients (at nice 19) on a stream server process of its own (at nice 10)."""
    delivery: Delivery = "at_least_once"
    partitions: int = 6
    batch: int = 512
    threads: int = 0

    @property
    def arms(self) -> tuple[Arm, ...]:
        wanted: dict[Arm, bool] = {
            "without": True,
            "with": self.in_daemon,
            "niced": self.niced,
            "separate": self.separate,
        }
        return tuple(arm for arm, on in wanted.items() if on)


@dataclass
class Phase:
    round: int
    arm: Arm
    latency: Latency
    daemon_cpu_s: float
    pauses: Pauses
    clients: ClientCounts | None
    cut_off: int
    server_cpu_s: float | None = None
    """The stream server process's CPU seconds over the phase (``separate`` only)."""


@dataclass
class StreamCostResult:
    machine: dict[str, str]
    options: dict[str, object]
    model: str
    load_before: float
    phases: list[Phase] = field(default_factory=list)
    summary: dict[str, dict[str, RatioSummary]] = field(default_factory=dict)
    """Per arm other than ``without``: its p50 and p99 summaries against ``without``."""


def arm_order(arms: tuple[Arm, ...], round_: int) -> list[Arm]:
    """Round ``round_``'s order: the arms rotated by the round, so no arm always follows the same one."""
    shift = round_ % len(arms)
    return list(arms[shift:] + arms[:shift])


async def measure(options: StreamCostOptions, console: Console) -> StreamCostResult:
    load_before = os.getloadavg()[0]
    bench_options = BenchOptions(
        symbols=options.symbols, batch=options.batch, threads=options.threads, partitions=options.partitions
    )
    async with local_bench("candlecast-stream-cost-", bench_options, console) as (bench, _):
        loaded = bench.model
        result = StreamCostResult(machine(), asdict(options), f"{loaded.manifest.name}/{loaded.version}", load_before)
        await _rounds(bench, options, result, console)
    return result


async def _rounds(bench: Bench, options: StreamCostOptions, result: StreamCostResult, console: Console) -> None:
    count = int(options.rate * options.steady_s)
    latencies: dict[Arm, list[Latencies]] = {arm: [] for arm in options.arms}
    watch = PauseWatch()
    async with primed_serving(bench, "C", "stream-cost", options.delivery) as (workload, gen, served), watch.watching():
        await served.recorder.wait_for(options.symbols, bench.timeout(options.symbols, 10.0))
        for number in range(options.rounds):
            for arm in arm_order(options.arms, number):
                console.print(f"round {number + 1}: {options.rate:g} candles/s {arm} stream clients")
                phase, values = await _phase(bench, served, workload, gen, options, number, arm, count, watch)
                result.phases.append(phase)
                latencies[arm].append(values)
    for arm in options.arms[1:]:
        result.summary[arm] = {
            "p50": summarize(latencies["without"], latencies[arm], 50),
            "p99": summarize(latencies["without"], latencies[arm], 99),
        }


async def _phase(
    bench: Bench,
    served: Served,
    workload: Workload,
    gen: Generator,
    options: StreamCostOptions,
    number: int,
    arm: Arm,
    count: int,
    watch: PauseWatch,
) -> tuple[Phase, Latencies]:
    """One steady phase of ``arm`` in round ``number``: its figures and its latencies."""
    store = served.daemon.signals
    if arm == "without":
        await asyncio.sleep(QUIET_S)
        values, cpu, pauses = await _steady(bench, served, workload, gen, options.rate, count, watch)
        return Phase(number, arm, Latency.of(values), cpu, pauses, None, 0), values
    if arm == "separate":
        return await _separate_phase(bench, served, workload, gen, options, number, count, watch)
    cut_off = store.disconnected
    niceness = NICED if arm == "niced" else 0
    async with stream_clients("127.0.0.1", served.daemon.http.port, options.clients, niceness) as connected:
        values, cpu, pauses, counts, _ = await _streamed_steady(
            bench, served, workload, gen, options, count, watch, connected
        )
    return Phase(number, arm, Latency.of(values), cpu, pauses, counts, store.disconnected - cut_off), values


async def _separate_phase(
    bench: Bench,
    served: Served,
    workload: Workload,
    gen: Generator,
    options: StreamCostOptions,
    number: int,
    count: int,
    watch: PauseWatch,
) -> tuple[Phase, Latencies]:
    """A steady phase with the clients on a stream server process fed by the daemon's signals topic."""
    async with (
        stream_server_process(served.daemon.settings, SERVER_NICE) as server,
        stream_clients("127.0.0.1", server.port, options.clients, NICED) as connected,
    ):
        values, cpu, pauses, counts, server_cpu = await _streamed_steady(
            bench, served, workload, gen, options, count, watch, connected, server
        )
    phase = Phase(number, "separate", Latency.of(values), cpu, pauses, counts, counts.closed, server_cpu)
    return phase, values


async def _streamed_steady(
    bench: Bench,
    served: Served,
    workload: Workload,
    gen: Generator,
    options: StreamCostOptions,
    count: int,
    watch: PauseWatch,
    connected: StreamClients,
    server: StreamServerProcess | None = None,
) -> tuple[Latencies, float, Pauses, ClientCounts, float | None]:
    """A steady phase, after the quiet wait, with ``connected`` clients reading: the same steps for every arm
    with clients, so their figures compare. Returns what ``_steady`` does, the clients' counts and, given the
    ``server`` they read from, its CPU seconds over the phase."""
    store = served.daemon.signals
    await asyncio.sleep(QUIET_S)
    published, server_start = store.recorded, 0.0 if server is None else server.cpu_s()
    values, cpu, pauses = await _steady(bench, served, workload, gen, options.rate, count, watch)
    counts = await connected.settle(store.recorded - published)
    return values, cpu, pauses, counts, None if server is None else server.cpu_s() - server_start


async def _steady(
    bench: Bench, served: Served, workload: Workload, gen: Generator, rate: float, count: int, watch: PauseWatch
) -> tuple[Latencies, float, Pauses]:
    recorder = served.recorder
    start, cpu, mark = len(recorder), time.process_time(), watch.mark()
    await gen.paced(workload.stream(count), [i / rate for i in range(count)])
    await recorder.wait_for(start + count, bench.timeout(count))
    return recorder.latencies(start), time.process_time() - cpu, watch.since(mark)


def render(result: StreamCostResult) -> str:
    """A Markdown table of the phases, then the ratios against ``without``."""
    lines = [
        f"model {result.model}; {result.options['rate']:g} candles/s, {result.options['steady_s']:g} s per phase, "
        f"{result.options['clients']} clients; load average before {result.load_before:.2f}",
        "",
        "| round | arm | p50 / p99 ms | daemon CPU s | full collections | longest collection ms "
        "| longest loop stall ms | clients' CPU s | stream server CPU s | cut off | events per client (min) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result.phases:
        counts = p.clients
        client_cpu = f"{counts.cpu_s:.2f}" if counts else "-"
        events = f"{min(counts.received)} of {counts.published}" if counts and counts.received else "-"
        server_cpu = "-" if p.server_cpu_s is None else f"{p.server_cpu_s:.2f}"
        lines.append(
            f"| {p.round + 1} | {p.arm} | {p.latency.p50_ms:.1f} / {p.latency.p99_ms:.1f} | {p.daemon_cpu_s:.2f} "
            f"| {p.pauses.full_collections} | {p.pauses.longest_collection_ms:.1f} | {p.pauses.longest_stall_ms:.1f} "
            f"| {client_cpu} | {server_cpu} | {p.cut_off} | {events} |"
        )
    lines += ["", "| arm | percentile | per round | median [95%] | pooled [95%] |", "|---|---|---|---|---|"]
    for arm, by_percentile in result.summary.items():
        for name, s in by_percentile.items():
            rounds = ", ".join(f"{r:.2f}" for r in s.per_round)
            median = f"{s.median:.2f} [{s.median_interval[0]:.2f}, {s.median_interval[1]:.2f}]"
            pooled = f"{s.pooled:.2f} [{s.pooled_interval[0]:.2f}, {s.pooled_interval[1]:.2f}]"
            lines.append(f"| {arm} | {name} | {rounds} | {median} | {pooled} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = StreamCostOptions()
    parser.add_argument("--symbols", type=int, default=defaults.symbols)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="candles per second of each phase")
    parser.add_argument("--steady-s", type=float, default=defaults.steady_s, help="seconds of each phase")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds of one phase per arm")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="stream clients of every symbol")
    parser.add_argument(
        "--no-in-daemon", action="store_true", help="leave out the arm with the clients on the daemon's own stream"
    )
    parser.add_argument("--niced", action="store_true", help="also an arm with the clients at nice 19")
    parser.add_argument(
        "--separate",
        action="store_true",
        help=f"also an arm with the clients (nice {NICED}) on `candlecast stream-server` (nice {SERVER_NICE})",
    )
    parser.add_argument("--delivery", choices=["exactly_once", "at_least_once"], default=defaults.delivery)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.rounds < 2 or args.clients < 1:
        parser.error("--rounds needs at least 2 (an interval), --clients at least 1")
    if args.no_in_daemon and not (args.niced or args.separate):
        parser.error("--no-in-daemon leaves no arm with clients: add --niced or --separate")
    options = StreamCostOptions(
        symbols=args.symbols,
        rate=args.rate,
        steady_s=args.steady_s,
        rounds=args.rounds,
        clients=args.clients,
        in_daemon=not args.no_in_daemon,
        niced=args.niced,
        separate=args.separate,
        delivery=DELIVERY_CHOICES[args.delivery][0],
    )
    console = Console(stderr=True)
    started = time.perf_counter()
    result = asyncio.run(measure(options, console))
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    sys.stdout.write(render(result) + "\n")
    if args.out is not None:
        args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")


if __name__ == "__main__":
    main()
