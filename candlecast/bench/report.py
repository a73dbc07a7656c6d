"""The benchmark's figures, as one table and as JSON (``candlecast bench``, docs/benchmarks.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from rich.table import Table

from candlecast.bench.pauses import Pauses
from candlecast.bench.streaming import StreamingCeiling, streaming_rows
from candlecast.bench.two_routes import TwoRoutes, two_route_rows


@dataclass(frozen=True)
class Latency:
    """Candle record timestamp to signal acknowledged, over ``count`` signals, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @classmethod
    def of(cls, values_ms: npt.NDArray[np.float64]) -> Latency:
        if values_ms.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        p50, p99, p999 = np.percentile(values_ms, [50, 99, 99.9]).tolist()
        return cls(int(values_ms.size), p50, p99, p999, float(values_ms.max()))


@dataclass(frozen=True)
class ModelCeiling:
    device: str
    threads: int
    batch: int
    forwards_per_s: float
    windows_per_s: float
    single_padded_ms: float
    """One window through ``LoadedModel.score``: padded to 8 rows, as the daemon runs it."""
    single_unpadded_ms: float
    """One window straight through the module, without padding (reference only)."""


@dataclass(frozen=True)
class IoCeiling:
    messages: int
    per_s: float


@dataclass(frozen=True)
class CommitFencing:
    """One record and its offset per transaction, with aiokafka's TxnOffsetCommit v0 and with the
    generation-fenced v3 (docs/reliability.md, "Zombies"), alternated in one run."""

    transactions: int
    unfenced: Latency
    fenced: Latency


@dataclass(frozen=True)
class CloseBurst:
    """``symbols`` symbols closing a candle at once, repeated: each repeat is every symbol's next candle."""

    symbols: int
    last_signal_each_ms: list[float]
    """Per repeat, from the burst's transaction commit to the last of its signals acknowledged."""
    lower_bound_ms: float
    """``symbols`` divided by the model ceiling: no scheduler can beat it."""
    latency: Latency
    """Commit to acknowledgement of every signal of every repeat."""
    mean_batch: float

    @property
    def last_signal_median_ms(self) -> float:
        """The median repeat's last signal: one close alone is too noisy to compare."""
        return float(np.median(self.last_signal_each_ms))

    @property
    def last_signal_worst_ms(self) -> float:
        return max(self.last_signal_each_ms)


@dataclass(frozen=True)
class StageSplit:
    """Milliseconds of a candle's latency per stage (``candlecast.bench.stage_split``)."""

    consume_ms: float
    """Record timestamp to the daemon taking the record off the source."""
    queue_ms: float
    """To the start of its forward pass: ingest, the batcher, the forward pass before it."""
    forward_ms: float
    """Its forward pass, on the inference thread."""
    to_publish_ms: float
    """To the start of its batch's publish: the event loop picking up the result, signal building, the publish
    before it."""
    publish_ms: float
    """The publish: produce, acknowledgement and offset commit (or transaction), to the acknowledgement seen."""
    count: int
    """Candles it is taken over."""

    def render(self) -> str:
        return (
            f"consume {self.consume_ms:.1f}, queue {self.queue_ms:.1f}, forward {self.forward_ms:.1f}, "
            f"to publish {self.to_publish_ms:.1f}, publish {self.publish_ms:.1f} ms"
        )


@dataclass(frozen=True)
class SteadyStages:
    """Where the steady phase's latency goes."""

    consume: Latency
    """Candle record timestamp to the daemon taking the record off the source."""
    forward_ms: float
    """Mean forward pass, under the phase's load (beside the model ceiling's quiet one)."""
    publish_ms: float
    """Mean publish of one batch: produce, acknowledgement and offset commit (or transaction)."""
    mean_batch: float
    in_daemon: Latency | None = None
    """The daemon taking the record off the source to the signal acknowledged (what is not *consume*)."""
    p50_split: StageSplit | None = None
    """Each stage's median over the phase's candles."""
    tail_split: StageSplit | None = None
    """Each stage's mean over the phase's slowest 1% of candles (those at or above its p99): where the tail goes."""
    pauses: Pauses | None = None
    """The event loop's collections and longest stall during the phase."""


@dataclass(frozen=True)
class ClientCounts:
    """What the stream clients got during one phase."""

    published: int
    """Signals the daemon committed (and so streamed to every client) during the phase."""
    received: list[int]
    """Signal events each client read."""
    closed: int
    """Clients whose connection the daemon closed."""
    cpu_s: float
    """CPU seconds of the clients' process over the phase."""
    caught_up_s: float
    """Seconds from telling the clients ``published`` after the phase to their answer: every client had read
    that many, was closed, or gave up."""


@dataclass(frozen=True)
class StreamLoad:
    """The steady phase again, at the same rate, with stream clients connected to the query API."""

    clients: int
    steady: Latency
    disconnected: int
    """Clients the daemon cut off for falling behind during the phase."""
    counts: ClientCounts
    daemon_cpu_s: float
    """CPU seconds of the daemon's process (event loop and inference thread) over the phase."""


@dataclass(frozen=True)
class StreamPair:
    """The steady phase without stream clients, then again with them: side by side, same rate and length."""

    without: Latency
    without_cpu_s: float
    """CPU seconds of the daemon's process over the phase without clients."""
    with_clients: StreamLoad

    @property
    def p99_ratio(self) -> float:
        return self.with_clients.steady.p99_ms / self.without.p99_ms

    @property
    def p50_ratio(self) -> float:
        return self.with_clients.steady.p50_ms / self.without.p50_ms


@dataclass(frozen=True)
class RatedSteady:
    """A steady phase at a given rate (``BenchOptions.fixed_rates``)."""

    rate_per_s: float
    latency: Latency
    stages: SteadyStages
    daemon_cpu_s: float
    io_floor: Latency | None = None
    """The daemon's Kafka consumer and sink alone at the same rate and delivery mode, with no model, measured
    right after this daemon stopped (``BenchOptions.io_floor``)."""

    @property
    def p99_over_io_floor(self) -> float | None:
        """The daemon's p99 over its Kafka I/O's at the same rate: what the daemon adds, as a factor."""
        return None if self.io_floor is None else self.latency.p99_ms / self.io_floor.p99_ms


@dataclass(frozen=True)
class DaemonMemory:
    """What the daemon's own gauges said at the end of a run."""

    windows: int
    window_bytes: int
    """Bytes allocated for the window arrays."""
    state_bytes: int | None
    """Bytes allocated for streaming members' recurrent states (``None``: the daemon reports none)."""

    @property
    def bytes_per_window(self) -> float:
        return (self.window_bytes + (self.state_bytes or 0)) / max(1, self.windows)


@dataclass(frozen=True)
class DeliveryRun:
    delivery: str
    throughput_per_s: float
    throughput_signals: int
    throughput_mean_batch: float
    steady_rate_per_s: float
    steady: Latency
    steady_stages: SteadyStages
    burst_rate_per_s: float
    burst: Latency
    """Latency of the candles sent during the 10x burst."""
    burst_phase: Latency
    """Latency of every candle of the burst phase (steady before and after, and the burst)."""
    close_bursts: list[CloseBurst]
    stream_pairs: list[StreamPair] = field(default_factory=list)
    """Steady without, then with stream clients, ``stream_rounds`` times (the first without is ``steady``)."""
    scoring: str = "window"
    model: str = ""
    throughput_after_first_per_s: float = float("nan")
    """Sustained throughput after each symbol's first signal (which a streaming daemon scores by
    rebuilding the symbol's state): the streaming daemon's steady-state throughput."""
    fixed_rates: list[RatedSteady] = field(default_factory=list)
    memory: DaemonMemory | None = None


@dataclass(frozen=True)
class PolicyRun:
    """One daemon with one ``max_wait_ms``."""

    max_wait_ms: float
    throughput_per_s: float
    throughput_mean_batch: float
    lone: Latency
    """Candle record timestamp to signal acknowledged, for candles sent one at a time."""
    lone_stages: SteadyStages
    steady: Latency
    steady_stages: SteadyStages
    steady_cpu_s: float
    """CPU seconds of the daemon's process during the steady phase."""


@dataclass(frozen=True)
class BatchPolicy:
    scoring: str
    model: str
    symbols: int
    backlog: int
    """Scored candles of the backlog each daemon catches up on first."""
    steady_rate_per_s: float
    runs: list[PolicyRun]


@dataclass(frozen=True)
class Memory:
    symbols: int
    window_length: int
    window_span: int
    array_bytes: int
    traced_bytes: int
    """Everything the window store allocated for them: arrays and per-key Python objects."""
    strategy_state_bytes: int
    """Each key's remembered outputs for the strategy (``SignalBuilder``), besides the windows."""

    @property
    def bytes_per_symbol(self) -> float:
        return self.traced_bytes / self.symbols


@dataclass
class BenchResult:
    machine: dict[str, str]
    options: dict[str, Any]
    model: dict[str, Any]
    ceiling: ModelCeiling
    ceiling_other_threads: ModelCeiling | None
    io: IoCeiling
    naive_per_s: float
    naive_mean_batch: float
    runs: list[DeliveryRun] = field(default_factory=list)
    memory: Memory | None = None
    produce_retries: int = 0
    """Produce requests refused with NOT_ENOUGH_REPLICAS and retried, over the whole run."""
    fencing: CommitFencing | None = None
    streaming: StreamingCeiling | None = None
    """Streaming scoring beside the windowed ensemble (``candlecast.bench.streaming``)."""
    two_routes: TwoRoutes | None = None
    """The backlog through two routes (``candlecast.bench.two_routes``)."""
    batch_policy: BatchPolicy | None = None
    """Lone candles and the ``max_wait_ms`` trade-off (``candlecast.bench.policy``)."""

    def run_of(self, scoring: str, delivery: str) -> DeliveryRun | None:
        return next((r for r in self.runs if r.scoring == scoring and r.delivery == delivery), None)

    def ratios(self) -> dict[str, float]:
        if not self.runs:
            return {}
        main = self.runs[0]
        bound = min(self.ceiling.windows_per_s, self.io.per_s)
        ratios = {
            "end_to_end_over_ceiling": main.throughput_per_s / bound,
            "end_to_end_over_naive": main.throughput_per_s / self.naive_per_s,
        }
        by_mode = {run.delivery: run for run in self.runs if run.scoring == main.scoring}
        if "exactly_once" in by_mode and "at_least_once" in by_mode:
            eos, alo = by_mode["exactly_once"], by_mode["at_least_once"]
            ratios["exactly_once_throughput_over_at_least_once"] = eos.throughput_per_s / alo.throughput_per_s
            ratios["exactly_once_minus_at_least_once_p50_ms"] = eos.steady.p50_ms - alo.steady.p50_ms
            ratios["exactly_once_minus_at_least_once_p99_ms"] = eos.steady.p99_ms - alo.steady.p99_ms
        if main.stream_pairs:
            p99 = sorted(pair.p99_ratio for pair in main.stream_pairs)
            ratios["steady_p99_with_streams_over_without_median"] = float(np.median(p99))
            ratios["steady_p99_with_streams_over_without_max"] = p99[-1]
            ratios["steady_p50_with_streams_over_without_median"] = float(
                np.median([pair.p50_ratio for pair in main.stream_pairs])
            )
        for delivery in ("exactly_once", "at_least_once"):
            window, stream = self.run_of("window", delivery), self.run_of("stream", delivery)
            if window is None or stream is None:
                continue
            ratios[f"stream_over_window_sustained_{delivery}"] = (
                stream.throughput_after_first_per_s / window.throughput_per_s
            )
            for mine, theirs in zip(window.close_bursts, stream.close_bursts, strict=False):
                key = f"window_over_stream_close_{mine.symbols}_{delivery}"
                ratios[key] = mine.last_signal_median_ms / theirs.last_signal_median_ms
            for mine_rated, theirs_rated in zip(window.fixed_rates, stream.fixed_rates, strict=False):
                key = f"window_over_stream_p99_at_{mine_rated.rate_per_s:g}_{delivery}"
                ratios[key] = mine_rated.latency.p99_ms / theirs_rated.latency.p99_ms
        for run in self.runs:
            for rated in run.fixed_rates:
                if (over_floor := rated.p99_over_io_floor) is not None:
                    key = f"daemon_p99_over_io_floor_at_{rated.rate_per_s:g}_{run.scoring}_{run.delivery}"
                    ratios[key] = over_floor
        if self.fencing is not None:
            ratios["fenced_commit_p50_over_unfenced"] = self.fencing.fenced.p50_ms / self.fencing.unfenced.p50_ms
            ratios["fenced_commit_p99_over_unfenced"] = self.fencing.fenced.p99_ms / self.fencing.unfenced.p99_ms
        return ratios

    def to_json(self) -> bytes:
        document = asdict(self)
        document["ratios"] = self.ratios()
        if self.memory is not None:
            document["memory"]["bytes_per_symbol"] = self.memory.bytes_per_symbol
        if self.two_routes is not None:
            document["two_routes"]["bound_per_s"] = self.two_routes.bound_per_s
        for run, written in zip(self.runs, document["runs"], strict=True):
            for close, close_written in zip(run.close_bursts, written["close_bursts"], strict=True):
                close_written["last_signal_median_ms"] = close.last_signal_median_ms
                close_written["last_signal_worst_ms"] = close.last_signal_worst_ms
        return msgspec.json.format(msgspec.json.encode(document), indent=2)


def batch_policy_rows(figures: BatchPolicy) -> list[tuple[str, str, str]]:
    """The figures as (measurement, figure, detail) rows."""
    rows = []
    for run in figures.runs:
        lone, stages = run.lone, run.lone_stages
        rows += [
            (
                f"max_wait_ms {run.max_wait_ms:g}: lone candle",
                f"{lone.p50_ms:.1f} ms p50",
                f"p99 {lone.p99_ms:.1f}, max {lone.max_ms:.1f} ms (n={lone.count}); consume p50 "
                f"{stages.consume.p50_ms:.1f} ms; {_in_daemon(stages)}mean forward pass {stages.forward_ms:.1f} ms, "
                f"mean publish {stages.publish_ms:.1f} ms",
            ),
            (
                f"  steady {figures.steady_rate_per_s:,.0f}/s",
                f"{run.steady.p99_ms:.1f} ms p99",
                f"p50 {run.steady.p50_ms:.1f} ms; consume p99 {run.steady_stages.consume.p99_ms:.1f} ms; "
                f"{_in_daemon(run.steady_stages)}mean batch {run.steady_stages.mean_batch:.1f}, mean forward pass "
                f"{run.steady_stages.forward_ms:.1f} ms; daemon CPU {run.steady_cpu_s:.1f} s",
            ),
            *_split_rows(run.steady_stages),
            (
                "  sustained throughput",
                f"{run.throughput_per_s:,.0f} /s",
                f"{figures.backlog:,} candles of {figures.symbols:,} symbols first, mean batch "
                f"{run.throughput_mean_batch:.0f}",
            ),
        ]
    return rows


def _split_rows(stages: SteadyStages) -> list[tuple[str, str, str]]:
    """The phase's median stages, its slowest 1% candles' stages, and its event loop's pauses."""
    rows = []
    if stages.p50_split is not None:
        rows.append(("    p50 by stage", "", stages.p50_split.render()))
    if stages.tail_split is not None:
        rows.append((f"    slowest 1% by stage (n={stages.tail_split.count})", "", stages.tail_split.render()))
    if stages.pauses is not None:
        pauses = stages.pauses
        rows.append(
            (
                "    event loop",
                f"{pauses.longest_stall_ms:.1f} ms stall",
                f"longest stall; {pauses.full_collections} full collections, longest collection "
                f"{pauses.longest_collection_ms:.1f} ms, collections' CPU {pauses.collection_cpu_ms:.1f} ms",
            )
        )
    return rows


def _in_daemon(stages: SteadyStages) -> str:
    if stages.in_daemon is None:
        return ""
    return f"in the daemon p50 {stages.in_daemon.p50_ms:.1f} p99 {stages.in_daemon.p99_ms:.1f} ms; "


def _ms(latency: Latency) -> str:
    return (
        f"p50 {latency.p50_ms:.1f}  p99 {latency.p99_ms:.1f}  p99.9 {latency.p999_ms:.1f}  "
        f"max {latency.max_ms:.1f} ms  (n={latency.count})"
    )


def _delivery_rows(run: DeliveryRun, symbols: int) -> list[tuple[str, str, str]]:
    """One end-to-end run's figures as (measurement, figure, detail) rows."""
    rows: list[tuple[str, str, str]] = []
    rows.append((f"[bold]end to end, {run.delivery}[/]", "", f"{run.scoring} scoring, {run.model}"))
    rows.append(
        (
            "  sustained throughput",
            f"{run.throughput_per_s:,.0f} /s",
            f"{run.throughput_signals} candles of {symbols} symbols, "
            f"mean batch {run.throughput_mean_batch:.0f}; after each symbol's first signal "
            f"{run.throughput_after_first_per_s:,.0f}/s",
        )
    )
    steadies: list[tuple[float, Latency, SteadyStages, Latency | None]] = [
        (run.steady_rate_per_s, run.steady, run.steady_stages, None)
    ]
    steadies += [(rated.rate_per_s, rated.latency, rated.stages, rated.io_floor) for rated in run.fixed_rates]
    for rate, latency, stages, floor in steadies:
        rows.append(
            (
                f"  steady {rate:,.0f}/s",
                f"{latency.p99_ms:.1f} ms p99",
                f"{_ms(latency)}, mean batch {stages.mean_batch:.1f}",
            )
        )
        if floor is not None:
            rows.append(_io_floor_row(run.delivery, latency, floor))
        rows.append(
            (
                "    where it goes",
                "",
                f"consume p50 {stages.consume.p50_ms:.1f} p99 {stages.consume.p99_ms:.1f} ms; {_in_daemon(stages)}"
                f"mean forward pass {stages.forward_ms:.1f} ms, mean publish {stages.publish_ms:.1f} ms",
            )
        )
        rows += _split_rows(stages)
    for number, pair in enumerate(run.stream_pairs, 1):
        streams, counts = pair.with_clients, pair.with_clients.counts
        rows.append(
            (
                f"  pair {number}: steady without stream clients",
                f"{pair.without.p99_ms:.1f} ms p99",
                f"{_ms(pair.without)}; daemon CPU {pair.without_cpu_s:.1f} s",
            )
        )
        rows.append(
            (
                f"  pair {number}: with {streams.clients} stream clients",
                f"{streams.steady.p99_ms:.1f} ms p99",
                f"{_ms(streams.steady)}; p99 {pair.p99_ratio:.2f}x, p50 {pair.p50_ratio:.2f}x without "
                f"(goal p99 < 1.10x); daemon CPU {streams.daemon_cpu_s:.1f} s",
            )
        )
        rows.append(
            (
                "    stream clients",
                f"{streams.disconnected} cut off",
                f"events received per client {min(counts.received, default=0):,}-{max(counts.received, default=0):,} "
                f"of {counts.published:,} published; {counts.closed} closed; "
                f"clients' process CPU {counts.cpu_s:.1f} s",
            )
        )
    rows.append(
        (
            f"  burst at {run.burst_rate_per_s:,.0f}/s",
            f"{run.burst.p99_ms:.1f} ms p99",
            f"burst candles: {_ms(run.burst)}; whole phase p99 {run.burst_phase.p99_ms:.1f} ms",
        )
    )
    rows += [
        (
            f"  {close.symbols:,} symbols close at once",
            f"{close.last_signal_median_ms:.0f} ms",
            f"last signal, median of {len(close.last_signal_each_ms)} closes (worst "
            f"{close.last_signal_worst_ms:.0f} ms); lower bound N/ceiling {close.lower_bound_ms:.0f} ms; "
            f"p50 {close.latency.p50_ms:.0f} ms, mean batch {close.mean_batch:.0f}",
        )
        for close in run.close_bursts
    ]
    if run.memory is not None:
        memory = run.memory
        states = "none" if memory.state_bytes is None else f"{memory.state_bytes / 2**20:.1f} MiB"
        rows.append(
            (
                "  daemon's memory gauges",
                f"{memory.bytes_per_window:,.0f} B/window",
                f"{memory.windows:,} windows: arrays {memory.window_bytes / 2**20:.1f} MiB, states {states}",
            )
        )
    return rows


def _io_floor_row(delivery: str, daemon: Latency, floor: Latency) -> tuple[str, str, str]:
    return (
        "    I/O floor, same rate",
        f"{floor.p99_ms:.1f} ms p99",
        f"p50 {floor.p50_ms:.1f}  max {floor.max_ms:.1f} ms (n={floor.count}): the daemon's consumer and sink "
        f"alone, {delivery}, no model; daemon p99 {daemon.p99_ms / floor.p99_ms:.2f}x, "
        f"p50 {daemon.p50_ms / floor.p50_ms:.2f}x the floor's",
    )


def _ratio_rows(result: BenchResult) -> list[tuple[str, str, str]]:
    ratios = result.ratios()
    if not ratios:
        return []
    ceiling = result.ceiling
    rows = [
        ("[bold]ratios[/]", "", ""),
        (
            "  end to end / min(ceilings)",
            f"{ratios['end_to_end_over_ceiling']:.2f}",
            f"min({ceiling.windows_per_s:,.0f}, {result.io.per_s:,.0f})",
        ),
        ("  end to end / naive", f"{ratios['end_to_end_over_naive']:.1f}x", ""),
    ]
    if "exactly_once_throughput_over_at_least_once" in ratios:
        rows.append(
            (
                "  exactly-once / at-least-once",
                f"{ratios['exactly_once_throughput_over_at_least_once']:.2f}",
                f"throughput; steady p50 {ratios['exactly_once_minus_at_least_once_p50_ms']:+.1f} ms, "
                f"p99 {ratios['exactly_once_minus_at_least_once_p99_ms']:+.1f} ms",
            )
        )
    rows += [
        (f"  {key.replace('_', ' ')}", f"{value:.2f}x", "same run, scorings side by side")
        for key, value in ratios.items()
        if key.startswith(("stream_over_window", "window_over_stream"))
    ]
    rows += [
        (f"  {key.replace('_', ' ')}", f"{value:.2f}x", "same run: the daemon's p99 over its Kafka I/O's alone")
        for key, value in ratios.items()
        if key.startswith("daemon_p99_over_io_floor")
    ]
    return rows


def render(result: BenchResult) -> Table:
    """The figures as one table, in the order of docs/benchmarks.md."""
    table = Table(title="candlecast bench", show_lines=False)
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("detail")
    ceiling = result.ceiling
    table.add_row(
        f"model ceiling, batch {ceiling.batch}",
        f"{ceiling.windows_per_s:,.0f} /s",
        f"{ceiling.forwards_per_s:.1f} forwards/s on {ceiling.device}, {ceiling.threads} thread(s)",
    )
    if result.ceiling_other_threads is not None:
        other = result.ceiling_other_threads
        table.add_row(
            f"  same, {other.threads} thread(s)",
            f"{other.windows_per_s:,.0f} /s",
            "reference: not the daemon's setting",
        )
    table.add_row(
        "  one window per forward",
        f"{ceiling.single_padded_ms:.2f} ms",
        f"padded to 8 rows as the daemon runs it; unpadded {ceiling.single_unpadded_ms:.2f} ms",
    )
    table.add_row("I/O ceiling", f"{result.io.per_s:,.0f} /s", f"aiokafka pass-through of {result.io.messages} candles")
    if result.fencing is not None:
        fencing = result.fencing
        table.add_row(
            "transaction, group-fenced commit (v3)",
            f"{fencing.fenced.p50_ms:.1f} ms",
            f"{_ms(fencing.fenced)}; unfenced v0 {_ms(fencing.unfenced)}",
        )
    table.add_row(
        "naive baseline",
        f"{result.naive_per_s:,.0f} /s",
        f"daemon, max_batch 1 (mean batch {result.naive_mean_batch:.1f})",
    )
    for run in result.runs:
        for row in _delivery_rows(run, result.options["symbols"]):
            table.add_row(*row)
    for row in _ratio_rows(result):
        table.add_row(*row)
    table.add_row(
        "produce retries",
        f"{result.produce_retries:,}",
        "NOT_ENOUGH_REPLICAS: a transaction's first produce met the last one's commit markers",
    )
    if result.memory is not None:
        memory = result.memory
        table.add_row(
            f"window memory, {memory.symbols:,} symbols",
            f"{memory.bytes_per_symbol:,.0f} B/symbol",
            f"{memory.traced_bytes / 2**20:.0f} MiB in all ({memory.array_bytes / 2**20:.0f} MiB arrays, "
            f"span {memory.window_span}); strategy state {memory.strategy_state_bytes / memory.symbols:.0f} B/symbol",
        )
    if result.streaming is not None:
        table.add_row("[bold]streaming scoring (issue 14)[/]", "", "")
        for row in streaming_rows(result.streaming):
            table.add_row(*row)
    if result.batch_policy is not None:
        policy = result.batch_policy
        table.add_row(
            "[bold]batch policy[/]",
            "",
            f"{policy.scoring} scoring, {policy.model}, at-least-once, {policy.symbols:,} symbols",
        )
        for row in batch_policy_rows(policy):
            table.add_row(*row)
    if result.two_routes is not None:
        table.add_row("[bold]two routes (issue 15)[/]", "", "")
        for row in two_route_rows(result.two_routes):
            table.add_row(*row)
    return table
