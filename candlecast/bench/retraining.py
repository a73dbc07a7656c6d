"""The daemon's latency while ``candlecast retrain`` runs beside it, side by side in one run.

One daemon (the bundled model, exactly-once, a throwaway local Kafka) serves a steady candle rate;
each round measures a steady phase without a retraining, then one beside a retraining for each of
``--variants``: ``limited`` (the limits of systemd/candlecast-retrain.service as far as this host
allows), ``quota`` (the same without ``CPUWeight=1``: its CPU quota, nice and idle I/O only) and
``unlimited`` (none). The retraining is the real command in a
process of its own (the bundled crypto-1h champion, its own configuration, on the bundled hourly
BTC candles), started before the phase (which waits until it trains, at most ``--warmup-s``) and stopped after it;
it never finishes, and does not need to.

The limits, applied without systemd: ``nice -n 19``, ``ionice -c 3`` (idle I/O) and ``chrt -b 0``
(the batch scheduler) on the command line, and, where the cgroup v1 ``cpu`` and ``memory``
hierarchies are writable, a group of its own with ``cpu.cfs_quota_us`` = one period (``CPUQuota=100%``),
``cpu.shares`` = 10 (``CPUWeight=1``) and ``memory.limit_in_bytes`` = 4 GiB (``MemoryMax=4G``), joined
before the command starts. The report says which were applied.

``python -m candlecast.bench.retraining --out FILE.json`` (``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from candlecast.bench.children import stop_child
from candlecast.bench.command import report_run
from candlecast.bench.harness import Bench, local_bench, primed_serving
from candlecast.bench.machine import machine, process_cpu_s
from candlecast.bench.options import BenchOptions
from candlecast.bench.phases import paced_steady
from candlecast.bench.report import Latency
from candlecast.bench.unit_limits import CGROUP_V1, Limits, cgroup, cgroups_writable, cpu_settings, joining, memory_root
from candlecast.candlefile import bundled_path

GROUP = "candlecast-retrain-bench"
CPU_SHARES = 10
"""systemd maps ``CPUWeight=1`` to about 10 shares (weight x 1024 / 100)."""
MEMORY_MAX = 4 << 30
LIMITED = ("nice", "-n", "19", "ionice", "-c", "3", "chrt", "-b", "0")
CHAMPION = "crypto-1h"
VARIANTS = ("limited", "quota", "unlimited")
STOP_S = 30.0
"""How long a terminated retraining may take to end before it is killed."""


@dataclass(frozen=True)
class RetrainingOptions:
    symbols: int = 500
    rate: float = 100.0
    """Candles per second of every steady phase."""
    steady_s: float = 20.0
    rounds: int = 3
    warmup_s: float = 120.0
    """Longest wait from starting a retraining to the phase beside it; the phase starts earlier, as soon
    as the retraining trains (after imports, reading the candles, loading the champion)."""
    variants: tuple[str, ...] = ("limited", "unlimited")
    """Which retraining phases each round measures (``VARIANTS``), in this order."""
    batch: int = 512
    threads: int = 0
    partitions: int = 3


@dataclass(frozen=True)
class Beside:
    """One steady phase with a retraining running, and what the retraining used meanwhile."""

    limits: list[str]
    steady: Latency
    daemon_cpu_s: float
    retraining_cpu_s: float
    """CPU seconds of the retraining process (all threads) during the phase."""
    retraining_rss_mib: float
    training: bool
    """Whether the retraining had reached its training loop when the phase started."""
    waited_s: float


@dataclass
class Round:
    without: Latency
    without_cpu_s: float
    beside: dict[str, Beside]
    """Per variant."""


@dataclass
class RetrainingResult:
    machine: dict[str, str]
    options: dict[str, object]
    model: str
    retraining_command: list[str]
    phase_s: float
    variants: list[str]
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Median over rounds of the p99 with a retraining over the p99 without, per variant."""
        ratios: dict[str, list[float]] = {}
        for r in self.rounds:
            for variant, beside in r.beside.items():
                ratios.setdefault(variant, []).append(beside.steady.p99_ms / r.without.p99_ms)
        return {f"p99_ratio_{k}": sorted(v)[len(v) // 2] for k, v in ratios.items() if v}


@contextlib.contextmanager
def limits_group() -> Iterator[dict[str, Limits]]:
    """The unit's limits as far as this host allows (``limited``), and the same without its CPU
    weight (``quota``): the command-line ones always, and cgroup v1 groups standing in for CPUQuota,
    CPUWeight and MemoryMax where this process may make them (``candlecast.bench.unit_limits``)."""
    applied = ["Nice=19 (nice -n 19)", "IOSchedulingClass=idle (ionice -c 3)", "CPUSchedulingPolicy=batch (chrt -b 0)"]
    if not cgroups_writable():
        yield {"limited": Limits(applied, list(LIMITED)), "quota": Limits(applied, list(LIMITED))}
        return
    common = [
        "CPUQuota=100% (cgroup v1 cpu.cfs_quota_us = cpu.cfs_period_us)",
        "MemoryMax=4G (cgroup v1 memory.limit_in_bytes)",
        "OOMScoreAdjust=1000 (/proc/self/oom_score_adj)",
    ]
    with contextlib.ExitStack() as groups:
        memory = groups.enter_context(cgroup(memory_root() / GROUP, {"memory.limit_in_bytes": str(MEMORY_MAX)}))
        limits = {}
        for variant, name, shares in (("limited", GROUP, CPU_SHARES), ("quota", f"{GROUP}-quota", 1024)):
            cpu = groups.enter_context(cgroup(CGROUP_V1 / "cpu" / name, cpu_settings(100, shares)))
            weight = [f"CPUWeight=1 (cgroup v1 cpu.shares = {CPU_SHARES})"] if variant == "limited" else []
            join = joining([cpu, memory], ["echo 1000 > /proc/self/oom_score_adj"])
            limits[variant] = Limits([*applied, *common, *weight], [*join, *LIMITED])
        yield limits


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def retraining_command(registry: Path, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "candlecast",
        "retrain",
        f"--registry={registry}",
        f"--model={CHAMPION}",
        f"--data={bundled_path('btcusd_1h.csv')}",
        f"--work-dir={work}",
    ]


def _await_training(training: Path, pid: int, warmup_s: float) -> bool:
    """Block until the retraining trains (its run directory exists), ends, or ``warmup_s`` pass."""
    deadline = time.monotonic() + warmup_s
    while not training.exists() and time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.5)
    return training.exists()


async def beside_retraining(
    steady: Callable[[], Awaitable[tuple[Latency, float]]],
    *,
    command: list[str],
    training: Path,
    limits: Limits | None,
    warmup_s: float,
    stop_s: float = STOP_S,
) -> Beside:
    """A steady phase while the retraining runs in a child process (``limits``: None for none), started
    once it trains (``training``, its run directory, exists) or after ``warmup_s``, whichever is first;
    terminated after it, killed if it outlives ``stop_s``."""
    prefix = limits.prefix if limits is not None else []
    child = await asyncio.create_subprocess_exec(
        *prefix, *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    started = time.monotonic()
    try:
        trains = await asyncio.to_thread(_await_training, training, child.pid, warmup_s)
        if child.returncode is not None:
            raise RuntimeError(f"the retraining ended (status {child.returncode}) before the phase")
        waited, cpu = time.monotonic() - started, process_cpu_s(child.pid)
        latency, daemon_cpu = await steady()
        used, rss = process_cpu_s(child.pid) - cpu, _rss_mib(child.pid)
    finally:
        await stop_child(child, stop_s)
    return Beside(limits.applied if limits is not None else ["none"], latency, daemon_cpu, used, rss, trains, waited)


async def measure(options: RetrainingOptions, console: Console) -> RetrainingResult:
    bench_options = BenchOptions(
        symbols=options.symbols, batch=options.batch, threads=options.threads, partitions=options.partitions
    )
    async with local_bench("candlecast-retrain-bench-", bench_options, console) as (bench, scratch):
        loaded = bench.model
        result = RetrainingResult(
            machine=machine(),
            options=asdict(options),
            model=f"{loaded.manifest.name}/{loaded.version}",
            retraining_command=retraining_command(scratch / "registry", scratch / "work"),
            phase_s=options.steady_s,
            variants=list(options.variants),
        )
        await _rounds(bench, options, result, scratch, console)
    return result


async def _rounds(
    bench: Bench, options: RetrainingOptions, result: RetrainingResult, scratch: Path, console: Console
) -> None:
    count = int(options.rate * options.steady_s)
    async with primed_serving(bench, "R", "retrain", "exactly_once") as (workload, gen, served):
        await served.recorder.wait_for(options.symbols, bench.timeout(options.symbols, 10.0))

        async def steady() -> tuple[Latency, float]:
            return await paced_steady(bench, served, workload, gen, options.rate, count)

        with limits_group() as limits:
            for number in range(options.rounds):
                console.print(f"round {number + 1}: steady {options.rate:g} candles/s without a retraining")
                without, without_cpu = await steady()
                runs: dict[str, Beside] = {}
                for variant in options.variants:
                    work = scratch / f"work-{number}-{variant}"
                    registry = scratch / f"registry-{number}-{variant}"
                    shutil.rmtree(registry, ignore_errors=True)
                    console.print(f"round {number + 1}: the same beside a retraining, {variant}")
                    runs[variant] = await beside_retraining(
                        steady,
                        command=retraining_command(registry, work),
                        training=work / "run",
                        limits=limits.get(variant),
                        warmup_s=options.warmup_s,
                    )
                result.rounds.append(Round(without, without_cpu, runs))


def render(result: RetrainingResult) -> str:
    """A Markdown table of the rounds and the median ratios."""
    variants = result.variants
    lines = [
        f"model {result.model}; {result.options['rate']:g} candles/s for {result.phase_s:g} s per phase",
        "",
        "| round | p99 without | " + " | ".join(f"p99 beside the {v} retraining" for v in variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]

    def cell(beside: Beside | None) -> str:
        if beside is None:
            return "-"
        trains = "training" if beside.training else "not yet training"
        return f"{beside.steady.p99_ms:.0f} ms ({trains}, {beside.retraining_cpu_s:.1f} CPU s in the phase)"

    for number, r in enumerate(result.rounds, start=1):
        cells = " | ".join(cell(r.beside.get(v)) for v in variants)
        lines.append(f"| {number} | {r.without.p99_ms:.0f} ms | {cells} |")
    lines += ["", json.dumps(result.summary())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = RetrainingOptions()
    parser.add_argument("--symbols", type=int, default=defaults.symbols)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="candles per second of each phase")
    parser.add_argument("--steady-s", type=float, default=defaults.steady_s, help="seconds of each phase")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--warmup-s", type=float, default=defaults.warmup_s, help="longest wait for the retraining to train"
    )
    parser.add_argument(
        "--variants", default=",".join(defaults.variants), help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants {args.variants!r}: a comma-separated choice of {', '.join(VARIANTS)}")
    options = RetrainingOptions(
        symbols=args.symbols,
        rate=args.rate,
        steady_s=args.steady_s,
        rounds=args.rounds,
        warmup_s=args.warmup_s,
        variants=variants,
    )
    report_run(
        lambda console: measure(options, console),
        render,
        lambda result: asdict(result) | {"summary": result.summary()},
        args.out,
    )


if __name__ == "__main__":
    main()
