"""The monitor as the daemon wires it: scored chunks of the real test model in, Prometheus samples out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from daemon.engine import ScoreRequest
from daemon.intervals import Interval
from daemon.monitoring import ModelMonitor, RouteMonitors
from daemon.ports import Chunk, ScoredChunk
from daemon.settings import MonitoringSettings
from daemon.window import GapMode, GapPolicy
from models.torchscript import LoadedModel, load_artifact
from tests.support.model import synthetic_windows

SYMBOLS = 8
STEPS = 40
SETTINGS = MonitoringSettings(drift_window=1000, drift_min_samples=100, quality_window=500, quality_min_outcomes=50)


@pytest.fixture(scope="module")
def model(test_artifact: Path) -> LoadedModel:
    return load_artifact(test_artifact)


def chunks(model: LoadedModel, *, steps: int = STEPS, version: str | None = None) -> list[ScoredChunk]:
    """One chunk per day: a candle for each symbol, consecutive weekdays, scored by the model."""
    interval = Interval.parse("1d", "weekdays")
    windows = synthetic_windows(SYMBOLS * steps, seed=11).reshape(steps, SYMBOLS, -1, 5)
    out = []
    for step in range(steps):
        ts = interval.slot_time(20_000 + step)
        requests = [
            ScoreRequest((f"S{i}", "1d"), ts, windows[step, i], "candles", 0, step, ts, 0) for i in range(SYMBOLS)
        ]
        outputs = model.score(np.stack([r.window for r in requests]))
        out.append(ScoredChunk(Chunk(requests, [], {}), outputs, version or model.version))
    return out


@pytest.fixture(scope="module")
def forty_days(model: LoadedModel) -> list[ScoredChunk]:
    """Scored once for the module: the monitor never changes a chunk."""
    return chunks(model)


def monitor_for(model: LoadedModel, registry: CollectorRegistry) -> ModelMonitor:
    monitor = ModelMonitor(RouteMonitors(registry), SETTINGS, capacity=100)
    monitor.use(model.manifest, {"1d": Interval.parse("1d", "weekdays")}, {"1d": GapPolicy(GapMode.TOLERATE, 3)})
    return monitor


def sample(registry: CollectorRegistry, name: str, route: str = "default", **labels: str) -> float | None:
    return registry.get_sample_value(name, {"route": route, **labels})


def test_nothing_is_exported_before_a_model_is_in_service() -> None:
    registry = CollectorRegistry()
    ModelMonitor(RouteMonitors(registry), SETTINGS, capacity=100)
    assert [m.samples for m in registry.collect() if m.name.startswith("candlecast_")] == [[]] * 14


def test_drift_and_quality_from_scored_chunks(model: LoadedModel, forty_days: list[ScoredChunk]) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model, registry)
    manifest = model.manifest
    for scored in forty_days:
        monitor.observe(scored)

    assert sample(registry, "candlecast_drift_window_samples") == SYMBOLS * STEPS
    for feature in manifest.features:
        psi = sample(registry, "candlecast_feature_psi", feature=feature)
        ks = sample(registry, "candlecast_feature_ks", feature=feature)
        assert psi is not None and ks is not None
        assert 0.0 <= psi < 10.0
        assert 0.0 <= ks <= 1.0
    assert sample(registry, "candlecast_prediction_psi") is not None
    assert sample(registry, "candlecast_prediction_ks") is not None

    # Horizon h resolves the predictions of the first STEPS - h days.
    for horizon in manifest.horizons:
        resolved = SYMBOLS * (STEPS - horizon)
        assert sample(registry, "candlecast_live_outcomes_resolved_total", horizon=str(horizon)) == resolved
        assert sample(registry, "candlecast_live_outcomes", horizon=str(horizon)) == min(resolved, 500)
        hit = sample(registry, "candlecast_live_hit_rate", horizon=str(horizon))
        if resolved >= SETTINGS.quality_min_outcomes:
            assert hit is not None and 0.0 <= hit <= 1.0
            brier = sample(registry, "candlecast_live_brier", horizon=str(horizon))
            ece = sample(registry, "candlecast_live_ece", horizon=str(horizon))
            assert brier is not None and 0.0 <= brier <= 1.0
            assert ece is not None and 0.0 <= ece <= 1.0
        else:
            assert hit is None
    assert sample(registry, "candlecast_live_predictions_pending") == SYMBOLS * max(manifest.horizons)
    primary = str(manifest.horizons[0])
    assert sample(registry, "candlecast_reference_hit_rate", horizon=primary) == manifest.reference.hit_rate
    assert sample(registry, "candlecast_reference_brier", horizon=primary) == manifest.reference.brier
    assert sample(registry, "candlecast_reference_ece", horizon=primary) == manifest.reference.ece
    assert sample(registry, "candlecast_reference_hit_rate", horizon=str(manifest.horizons[1])) is None


def test_history_rows_and_other_models_are_left_out(model: LoadedModel) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model, registry)
    scored = chunks(model, steps=2)
    for request in scored[0].chunk.requests[: SYMBOLS // 2]:
        request.publish = False  # re-scored history after a rebuild: already seen before
    monitor.observe(scored[0])
    assert sample(registry, "candlecast_drift_window_samples") == SYMBOLS - SYMBOLS // 2
    for other in chunks(model, steps=2, version="some-other-version"):
        monitor.observe(other)
    assert sample(registry, "candlecast_drift_window_samples") == SYMBOLS - SYMBOLS // 2
    monitor.observe(ScoredChunk(Chunk([], [], {}), None, model.version))  # dead letters only
    assert sample(registry, "candlecast_drift_window_samples") == SYMBOLS - SYMBOLS // 2


def test_a_reload_starts_the_windows_afresh(model: LoadedModel, forty_days: list[ScoredChunk]) -> None:
    registry = CollectorRegistry()
    monitor = monitor_for(model, registry)
    for scored in forty_days:
        monitor.observe(scored)
    assert sample(registry, "candlecast_feature_psi", feature=model.manifest.features[0]) is not None
    monitor.use(model.manifest, {"1d": Interval.parse("1d", "weekdays")}, {"1d": GapPolicy(GapMode.TOLERATE, 3)})
    assert sample(registry, "candlecast_drift_window_samples") == 0
    assert sample(registry, "candlecast_feature_psi", feature=model.manifest.features[0]) is None
    assert sample(registry, "candlecast_live_outcomes_resolved_total", horizon="1") == 0


def test_each_routes_figures_carry_its_route(model: LoadedModel, forty_days: list[ScoredChunk]) -> None:
    """Two routes' monitors on one registry export their drift and quality side by side, labelled by route:
    the route that saw candles has figures, the other only its reference."""
    registry = CollectorRegistry()
    exported = RouteMonitors(registry)
    intervals, policies = {"1d": Interval.parse("1d", "weekdays")}, {"1d": GapPolicy(GapMode.TOLERATE, 3)}
    busy = ModelMonitor(exported, SETTINGS, capacity=100, route="stocks-1d")
    idle = ModelMonitor(exported, SETTINGS, capacity=100, route="crypto-1h")
    for monitor in (busy, idle):
        monitor.use(model.manifest, intervals, policies)
    for scored in forty_days:
        busy.observe(scored)
    primary = str(model.manifest.horizons[0])
    assert sample(registry, "candlecast_drift_window_samples", route="stocks-1d") == SYMBOLS * STEPS
    assert sample(registry, "candlecast_drift_window_samples", route="crypto-1h") == 0
    assert sample(registry, "candlecast_prediction_psi", route="stocks-1d") is not None
    assert sample(registry, "candlecast_prediction_psi", route="crypto-1h") is None
    resolved = sample(registry, "candlecast_live_outcomes_resolved_total", route="stocks-1d", horizon=primary)
    assert resolved is not None and resolved > 0
    assert sample(registry, "candlecast_live_outcomes_resolved_total", route="crypto-1h", horizon=primary) == 0
    for route in ("stocks-1d", "crypto-1h"):
        assert (
            sample(registry, "candlecast_reference_brier", route=route, horizon=primary)
            == model.manifest.reference.brier
        )
