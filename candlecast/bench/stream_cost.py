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
ring fill fall before the phase's quiet second, its CPU seconds during the phase are reported) and,
with ``--limited``, ``limited``: the same as ``separate``, deployed as the units say, with cgroup v1
groups standing in for what systemd would apply (``candlecast.bench.unit_limits``): the stream server
under systemd/candlecast-stream.service's ``CPUQuota=50%``, ``CPUWeight=20`` (against the daemon's
default 100) and ``MemoryMax=1G``, the clients, standing for other hosts, in a group with the least CPU
weight and at most ``--clients-quota`` percent of one CPU. A phase whose clients did not keep up (one
cut off, one short of the phase's signals, or their backlog still being read ``CAUGHT_UP_S`` after the
phase) is counted, and its arm's ratios are marked invalid: throttled clients would flatter them. Each
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
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console

from candlecast.bench.command import report_run
from candlecast.bench.harness import Bench, Served, local_bench, primed_serving
from candlecast.bench.load import Generator, Workload
from candlecast.bench.machine import machine
from candlecast.bench.options import DELIVERY_CHOICES, BenchOptions, Delivery
from candlecast.bench.pauses import Pauses, PauseWatch
from candlecast.bench.phases import QUIET_S
from candlecast.bench.ratios import Latencies, RatioSummary, summarize
from candlecast.bench.report import ClientCounts, Latency
from candlecast.bench.rounds import arm_order
from candlecast.bench.stream_server_process import StreamServerProcess, stream_server_process
from candlecast.bench.streams import StreamClients, stream_clients
from candlecast.bench.unit_limits import (
    CGROUP_V1,
    MIN_CPU_SHARES,
    Limits,
    cgroup,
    cgroups_writable,
    cpu_settings,
    joining,
    memory_root,
    nice_weight,
    unwritable,
)

Arm = Literal["without", "with", "niced", "separate", "limited"]
NICED = 19
SERVER_NICE = 10
"""The stream server's priority: the ``Nice=`` of systemd/candlecast-stream.service."""
SERVER_QUOTA = 50
"""Percent of one CPU: the stream unit's ``CPUQuota=``."""
SERVER_WEIGHT = 20
"""The stream unit's ``CPUWeight=``, against the daemon unit's default ``DAEMON_WEIGHT``."""
DAEMON_WEIGHT = 100
SERVER_MEMORY_MAX = 1 << 30
"""The stream unit's ``MemoryMax=1G``."""
CLIENTS_QUOTA = 50
"""Percent of one CPU the clients' group may use by default: above what 100 clients read at 300 signals/s
(14-26% in the quiet runs), so a bound, not a throttle."""
GROUP = "candlecast-stream-cost"
"""The groups' names start with this and the bench's pid (so two runs, or a test, never share one)."""
CAUGHT_UP_S = 1.0
"""Longest the clients may take after the phase to read its last signals: a fetch or two of the stream
server's (``kafka.poll_timeout_ms``, 100 ms) and the fan-out; longer means they fell behind during it."""


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
    limited: bool = False
    """Also the ``separate`` arm under the units' limits, stood in for by cgroup v1 groups."""
    clients_quota: int = CLIENTS_QUOTA
    """Percent of one CPU the ``limited`` arm's clients may use."""
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
            "limited": self.limited,
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
    """The stream server process's CPU seconds over the phase (``separate`` and ``limited`` only)."""

    @property
    def kept_up(self) -> bool:
        """Whether the clients (if any) each read every signal of the phase, none cut off, within
        ``CAUGHT_UP_S`` of its end: they read as they went rather than being held back by their limits."""
        counts = self.clients
        if counts is None:
            return True
        complete = all(received >= counts.published for received in counts.received)
        return self.cut_off == 0 and complete and counts.caught_up_s <= CAUGHT_UP_S


@dataclass
class StreamCostResult:
    machine: dict[str, str]
    options: dict[str, object]
    model: str
    load_before: float
    phases: list[Phase] = field(default_factory=list)
    summary: dict[str, dict[str, RatioSummary]] = field(default_factory=dict)
    """Per arm other than ``without``: its p50 and p99 summaries against ``without``."""
    fell_behind: dict[str, int] = field(default_factory=dict)
    """Per arm other than ``without``: phases whose clients did not keep up; any makes its ratios invalid."""
    limits: dict[str, list[str]] = field(default_factory=dict)
    """The ``limited`` arm's stand-ins, for the stream server and for the clients."""


@dataclass(frozen=True)
class Deployed:
    """The ``limited`` arm's command-line prefixes: the stream server's and the clients'."""

    server: Limits
    clients: Limits


@contextlib.contextmanager
def deployed_limits(clients_quota: int, root: Path = CGROUP_V1) -> Iterator[Deployed]:
    """The stream unit's limits for the server and a bounded group for the clients, as cgroup v1 groups;
    raises ``RuntimeError`` (saying why) where this process may not make them.

    The server's ``CPUWeight=20`` is set against this process's own weight (the daemon runs in it), as
    systemd sets it against the daemon unit's default of 100; its ``Nice=10`` then only orders its own
    threads, as it does inside a systemd service's group. The clients get the least weight there is
    (CPU only where the daemon, the broker and the server leave some) and at most ``clients_quota``
    percent of one CPU: a bound standing in for their being on other hosts, which cannot be had here."""
    if not cgroups_writable(root=root):
        raise RuntimeError(f"--limited: {unwritable(root=root)}")
    niceness = os.nice(0)
    own_weight = nice_weight(niceness)
    server_shares = max(MIN_CPU_SHARES, round(own_weight * SERVER_WEIGHT / DAEMON_WEIGHT))
    name = f"{GROUP}-{os.getpid()}"
    with contextlib.ExitStack() as groups:
        server_cpu = cgroup(root / "cpu" / f"{name}-server", cpu_settings(SERVER_QUOTA, server_shares))
        server_memory = cgroup(memory_root(root) / f"{name}-server", {"memory.limit_in_bytes": str(SERVER_MEMORY_MAX)})
        clients_cpu = cgroup(root / "cpu" / f"{name}-clients", cpu_settings(clients_quota, MIN_CPU_SHARES))
        server = Limits(
            [
                f"Nice={SERVER_NICE} (nice -n {SERVER_NICE}, inside its group)",
                f"CPUQuota={SERVER_QUOTA}% (cgroup v1 cpu.cfs_quota_us = cpu.cfs_period_us x {SERVER_QUOTA / 100:g})",
                f"CPUWeight={SERVER_WEIGHT} against the daemon's {DAEMON_WEIGHT} (cgroup v1 cpu.shares = "
                f"{server_shares}, {SERVER_WEIGHT}/{DAEMON_WEIGHT} of the daemon's {own_weight:.0f} "
                f"at nice {niceness})",
                "MemoryMax=1G (cgroup v1 memory.limit_in_bytes)",
                "not applied: MemoryHigh=768M (no cgroup v1 equivalent), the sandbox",
            ],
            joining([groups.enter_context(server_cpu), groups.enter_context(server_memory)]),
        )
        clients = Limits(
            [
                f"other hosts: cgroup v1 cpu.shares = {MIN_CPU_SHARES} (the least), "
                f"cpu.cfs_quota_us = cpu.cfs_period_us x {clients_quota / 100:g}"
            ],
            joining([groups.enter_context(clients_cpu)]),
        )
        yield Deployed(server, clients)


def fell_behind(phases: list[Phase], arms: tuple[Arm, ...]) -> dict[str, int]:
    """Per arm of ``arms``: its phases whose clients did not keep up."""
    return {arm: sum(not p.kept_up for p in phases if p.arm == arm) for arm in arms}


async def measure(options: StreamCostOptions, console: Console) -> StreamCostResult:
    load_before = os.getloadavg()[0]
    bench_options = BenchOptions(
        symbols=options.symbols, batch=options.batch, threads=options.threads, partitions=options.partitions
    )
    with contextlib.ExitStack() as stack:
        deployed = stack.enter_context(deployed_limits(options.clients_quota)) if options.limited else None
        async with local_bench("candlecast-stream-cost-", bench_options, console) as (bench, _):
            loaded = bench.model
            model = f"{loaded.manifest.name}/{loaded.version}"
            result = StreamCostResult(machine(), asdict(options), model, load_before)
            if deployed is not None:
                result.limits = {"stream server": deployed.server.applied, "clients": deployed.clients.applied}
            await _rounds(bench, options, deployed, result, console)
    return result


async def _rounds(
    bench: Bench, options: StreamCostOptions, deployed: Deployed | None, result: StreamCostResult, console: Console
) -> None:
    count = int(options.rate * options.steady_s)
    latencies: dict[Arm, list[Latencies]] = {arm: [] for arm in options.arms}
    watch = PauseWatch()
    async with primed_serving(bench, "C", "stream-cost", options.delivery) as (workload, gen, served), watch.watching():
        await served.recorder.wait_for(options.symbols, bench.timeout(options.symbols, 10.0))
        for number in range(options.rounds):
            for arm in arm_order(options.arms, number):
                console.print(f"round {number + 1}: {options.rate:g} candles/s {arm} stream clients")
                phase, values = await _phase(bench, served, workload, gen, options, deployed, number, arm, count, watch)
                result.phases.append(phase)
                latencies[arm].append(values)
    for arm in options.arms[1:]:
        result.summary[arm] = {
            "p50": summarize(latencies["without"], latencies[arm], 50),
            "p99": summarize(latencies["without"], latencies[arm], 99),
        }
    result.fell_behind = fell_behind(result.phases, options.arms[1:])


async def _phase(
    bench: Bench,
    served: Served,
    workload: Workload,
    gen: Generator,
    options: StreamCostOptions,
    deployed: Deployed | None,
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
    if arm == "limited":
        assert deployed is not None
        return await _separate_phase(bench, served, workload, gen, options, number, count, watch, deployed)
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
    deployed: Deployed | None = None,
) -> tuple[Phase, Latencies]:
    """A steady phase with the clients on a stream server process fed by the daemon's signals topic; given
    ``deployed``, the server and the clients each under its limits (the ``limited`` arm)."""
    server_prefix = [] if deployed is None else deployed.server.prefix
    clients_prefix = [] if deployed is None else deployed.clients.prefix
    async with (
        stream_server_process(served.daemon.settings, SERVER_NICE, server_prefix) as server,
        stream_clients("127.0.0.1", server.port, options.clients, NICED, clients_prefix) as connected,
    ):
        values, cpu, pauses, counts, server_cpu = await _streamed_steady(
            bench, served, workload, gen, options, count, watch, connected, server
        )
    arm: Arm = "separate" if deployed is None else "limited"
    phase = Phase(number, arm, Latency.of(values), cpu, pauses, counts, counts.closed, server_cpu)
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
        *(f"{who} (limited arm): {'; '.join(applied)}" for who, applied in result.limits.items()),
        "",
        "| round | arm | p50 / p99 ms | daemon CPU s | full collections | longest collection ms "
        "| longest loop stall ms | clients' CPU s | stream server CPU s | cut off | events per client (min) "
        "| caught up s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in result.phases:
        counts = p.clients
        client_cpu = f"{counts.cpu_s:.2f}" if counts else "-"
        events = f"{min(counts.received)} of {counts.published}" if counts and counts.received else "-"
        server_cpu = "-" if p.server_cpu_s is None else f"{p.server_cpu_s:.2f}"
        caught_up = f"{counts.caught_up_s:.2f}" if counts else "-"
        lines.append(
            f"| {p.round + 1} | {p.arm} | {p.latency.p50_ms:.1f} / {p.latency.p99_ms:.1f} | {p.daemon_cpu_s:.2f} "
            f"| {p.pauses.full_collections} | {p.pauses.longest_collection_ms:.1f} | {p.pauses.longest_stall_ms:.1f} "
            f"| {client_cpu} | {server_cpu} | {p.cut_off} | {events} | {caught_up} |"
        )
    lines += [
        "",
        "| arm | percentile | per round | median [95%] | pooled [95%] | clients kept up |",
        "|---|---|---|---|---|---|",
    ]
    for arm, by_percentile in result.summary.items():
        behind = result.fell_behind.get(arm, 0)
        phases = sum(p.arm == arm for p in result.phases)
        kept_up = "yes" if behind == 0 else f"**no, in {behind} of {phases} phases: ratios invalid**"
        for name, s in by_percentile.items():
            rounds = ", ".join(f"{r:.2f}" for r in s.per_round)
            median = f"{s.median:.2f} [{s.median_interval[0]:.2f}, {s.median_interval[1]:.2f}]"
            pooled = f"{s.pooled:.2f} [{s.pooled_interval[0]:.2f}, {s.pooled_interval[1]:.2f}]"
            lines.append(f"| {arm} | {name} | {rounds} | {median} | {pooled} | {kept_up} |")
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
    parser.add_argument(
        "--limited",
        action="store_true",
        help="also the separate arm as deployed: the stream server in cgroup v1 groups standing in for its unit's "
        f"CPUQuota={SERVER_QUOTA}%%, CPUWeight={SERVER_WEIGHT} and MemoryMax=1G, the clients (standing for other "
        "hosts) in a group of the least CPU weight and --clients-quota (needs writable cgroup v1 cpu and memory)",
    )
    parser.add_argument(
        "--clients-quota",
        type=int,
        default=defaults.clients_quota,
        help="percent of one CPU the limited arm's clients may use",
    )
    parser.add_argument("--delivery", choices=["exactly_once", "at_least_once"], default=defaults.delivery)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.rounds < 2 or args.clients < 1:
        parser.error("--rounds needs at least 2 (an interval), --clients at least 1")
    if args.no_in_daemon and not (args.niced or args.separate or args.limited):
        parser.error("--no-in-daemon leaves no arm with clients: add --niced, --separate or --limited")
    if not 1 <= args.clients_quota <= 200:
        parser.error(f"--clients-quota {args.clients_quota}: a percent of one CPU, 1 to 200")
    if args.limited and not cgroups_writable():
        parser.error(f"--limited: {unwritable()}")
    options = StreamCostOptions(
        symbols=args.symbols,
        rate=args.rate,
        steady_s=args.steady_s,
        rounds=args.rounds,
        clients=args.clients,
        in_daemon=not args.no_in_daemon,
        niced=args.niced,
        separate=args.separate,
        limited=args.limited,
        clients_quota=args.clients_quota,
        delivery=DELIVERY_CHOICES[args.delivery][0],
    )
    report_run(lambda console: measure(options, console), render, asdict, args.out)


if __name__ == "__main__":
    main()
