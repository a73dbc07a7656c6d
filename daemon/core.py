"""The pure core of a daemon, built from settings and a model: shared by the daemon and the backtest.

No I/O: validation, windows, the strategy and signal building, as ``daemon.service`` and
``candlecast backtest`` both need them, so that both make the same decisions. The settings are
only read here; loading them (``daemon.settings``: TOML, the environment) belongs to the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from candlecast.errors import ConfigError
from daemon.candle import CandleValidator
from daemon.clock import Clock, SystemClock, utc_iso
from daemon.dispatch import DEFAULT_ROUTE
from daemon.engine import CandleIngestor, SignalBuilder
from daemon.intervals import Interval
from daemon.ports import Scorer
from daemon.signal import strategy_ref
from daemon.window import GapMode, GapPolicy, WindowStore
from strategies import registry as strategies
from strategies.base import OutputSpec

if TYPE_CHECKING:
    # Only read: loading settings (pydantic-settings, TOML and the environment) stays at the edge.
    from daemon.settings import Settings


@dataclass(frozen=True, slots=True)
class Core:
    """The pure parts of a daemon built from settings and a model."""

    intervals: dict[str, Interval]
    store: WindowStore
    ingestor: CandleIngestor
    builder: SignalBuilder
    spec: OutputSpec
    gap_policies: dict[str, GapPolicy]


def build_core(settings: Settings, model: Scorer, clock: Clock | None = None, *, route: str = DEFAULT_ROUTE) -> Core:
    """Windows, validation, strategy and signal building for a model, as the settings ask; candle
    times are checked against ``clock``'s wall time (the system's by default), and signals stamped with
    it and named after ``route`` and the model."""
    manifest = model.manifest
    stamp = clock or SystemClock()
    spec = OutputSpec(tuple(manifest.horizons), tuple(manifest.quantiles))
    strategy = strategies.create(settings.strategy.name, spec, settings.strategy.params)
    served = settings.windows.intervals.get(manifest.interval)
    calendar = served.calendar if served else manifest.calendar
    policy = (
        GapPolicy(served.gap_policy, served.max_missing)
        if served
        else GapPolicy(GapMode(manifest.gap_policy), manifest.max_missing)
    )
    expiry = settings.windows.idle_expiry_intervals
    if expiry and expiry <= policy.max_missing:
        raise ConfigError(
            f"windows.idle_expiry_intervals ({expiry}) must exceed the {manifest.interval} gap policy's "
            f"max_missing ({policy.max_missing}), or be 0: a window may not expire inside a gap it would bridge"
        )
    intervals = {manifest.interval: Interval.parse(manifest.interval, calendar)}
    gap_policies = {manifest.interval: policy}
    store = WindowStore(
        manifest.window,
        intervals=intervals,
        gap_policies=gap_policies,
        history=strategy.memory - 1,
        capacity=settings.windows.max_windows,
        idle_expiry=settings.windows.idle_expiry_intervals,
    )
    validator = CandleValidator(
        intervals,
        max_message_bytes=settings.validation.max_message_bytes,
        future_tolerance_ms=int(settings.validation.future_tolerance_s * 1000),
        clock_tolerance_ms=int(settings.validation.clock_tolerance_s * 1000),
        clock_ms=lambda: int(stamp.time() * 1000),
    )
    builder = SignalBuilder(
        strategy,
        spec,
        strategy_ref(strategy.name, strategy.params),
        lambda: utc_iso(stamp),
        model=manifest.name,
        route=route,
    )
    ingestor = CandleIngestor(validator, store, strategy.memory, on_release=builder.release)
    return Core(intervals, store, ingestor, builder, spec, gap_policies)
