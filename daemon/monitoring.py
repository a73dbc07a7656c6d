"""Drift and live-quality monitoring of the model in service, exported to Prometheus.

``ModelMonitor.observe`` is a pipeline observer: for every scored chunk it feeds the published
rows' newest-candle features and probabilities to the ``DriftMonitor`` and their keys, times
and closes to the ``OutcomeTracker``, whose resolved outcomes go to ``RollingQuality``. The
statistics are computed when Prometheus scrapes (a custom collector), so their cost follows the
scrape rate rather than the candle rate, and they are fresh however slow the candles come.

Each route has its own monitor; ``RouteMonitors`` exports them all as one collector, every sample
labelled with its ``route``. Labels stay bounded: ``route`` takes the configured route names,
``feature`` the manifest's feature names, ``horizon`` its horizons. A hot reload (``use``) starts
every window afresh against the new model's reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon.dispatch import DEFAULT_ROUTE
from daemon.drift import DriftMonitor, DriftReport
from daemon.intervals import Interval
from daemon.quality import Outcome, OutcomeTracker, QualityReport, RollingQuality
from daemon.symbol_quality import SymbolQuality
from daemon.window import GapPolicy
from models.artifact import Manifest

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from daemon.ports import ScoredChunk
    from daemon.settings import MonitoringSettings


class RouteMonitors(Collector):
    """The monitoring metrics of every route's monitor, registered once: one family per metric name,
    a ``route`` label per monitor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.monitors: list[ModelMonitor] = []
        registry.register(self)

    def describe(self) -> Iterable[Metric]:
        # Families without samples, so that the registry can check their names for clashes.
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        out = _Families()
        for monitor in self.monitors:
            monitor.collect_into(out)
        return out.all()


class ModelMonitor:
    """Drift and live quality of one route's model in service."""

    def __init__(
        self, exported: RouteMonitors, settings: MonitoringSettings, *, capacity: int, route: str = DEFAULT_ROUTE
    ) -> None:
        self.route = route
        self.settings = settings
        self.capacity = capacity
        """Most keys whose pending predictions are remembered (the window store's capacity)."""
        self._version: str | None = None
        self._manifest: Manifest | None = None
        self._drift: DriftMonitor | None = None
        self._tracker: OutcomeTracker | None = None
        self._quality: RollingQuality | None = None
        self.by_symbol: SymbolQuality | None = None
        """Quality per key since the model was loaded (the query API's per-symbol statistics)."""
        exported.monitors.append(self)

    def use(self, manifest: Manifest, intervals: Mapping[str, Interval], policies: Mapping[str, GapPolicy]) -> None:
        """Monitor this model from now on: windows restart, chunks scored by another version are ignored."""
        settings = self.settings
        self._version = manifest.version
        self._manifest = manifest
        self._drift = DriftMonitor(
            manifest.reference,
            manifest.features,
            window=settings.drift_window,
            min_samples=settings.drift_min_samples,
        )
        self._tracker = OutcomeTracker(manifest.horizons, intervals, policies, capacity=self.capacity)
        self._quality = RollingQuality(
            manifest.horizons, window=settings.quality_window, min_outcomes=settings.quality_min_outcomes
        )
        self.by_symbol = SymbolQuality(manifest.horizons, capacity=self.capacity)

    def observe(self, scored: ScoredChunk) -> None:
        outputs = scored.outputs
        if outputs is None or scored.model_version != self._version:
            return
        assert self._drift is not None and self._tracker is not None and self._quality is not None
        assert self.by_symbol is not None
        requests = scored.chunk.requests
        rows = [row for row, request in enumerate(requests) if request.publish]
        if not rows:
            return
        # History re-scored after a rebuild (publish=False) repeats earlier predictions: left out.
        taken = np.asarray(rows) if len(rows) < len(requests) else slice(None)
        probabilities = outputs.probabilities[taken]
        self._drift.observe(outputs.last_features[taken], probabilities[:, 0])
        tracker = self._tracker
        resolved: list[Outcome] = []
        for row, probs in zip(rows, probabilities.tolist(), strict=True):
            request = requests[row]
            outcomes = tracker.observe(request.key, request.ts, float(request.window[-1, 3]), probs)
            if outcomes:
                resolved.extend(outcomes)
                self.by_symbol.add(request.key, outcomes)
        if resolved:
            self._quality.add(resolved)

    def drift_report(self) -> DriftReport | None:
        """The drift figures the gauges show; ``None`` until the window holds enough samples."""
        return self._drift.report() if self._drift is not None else None

    def quality_reports(self) -> dict[int, QualityReport]:
        """The model-wide live quality the gauges show, by horizon, for horizons with enough outcomes."""
        if self._manifest is None or self._quality is None:
            return {}
        reports = {h: self._quality.report(i) for i, h in enumerate(self._manifest.horizons)}
        return {h: r for h, r in reports.items() if r is not None}

    def collect_into(self, out: _Families) -> None:
        """This route's samples, added to the families of one scrape."""
        route = self.route
        if self._drift is not None:
            out.drift_samples.add_metric([route], len(self._drift))
            drift = self._drift.report()
            if drift is not None:
                for name, value in drift.feature_psi.items():
                    out.feature_psi.add_metric([route, name], value)
                for name, value in drift.feature_ks.items():
                    out.feature_ks.add_metric([route, name], value)
                out.prediction_psi.add_metric([route], drift.prediction_psi)
                out.prediction_ks.add_metric([route], drift.prediction_ks)
        manifest, quality, tracker = self._manifest, self._quality, self._tracker
        if manifest is not None and quality is not None and tracker is not None:
            out.pending.add_metric([route], tracker.pending)
            for index, horizon in enumerate(manifest.horizons):
                label = [route, str(horizon)]
                out.outcomes.add_metric(label, quality.samples(index))
                out.resolved.add_metric(label, quality.resolved[index])
                report = quality.report(index)
                if report is not None:
                    out.hit_rate.add_metric(label, report.hit_rate)
                    out.brier.add_metric(label, report.brier)
                    out.ece.add_metric(label, report.ece)
            # The manifest's validation figures are those of the primary (first) horizon.
            primary = [route, str(manifest.horizons[0])]
            out.reference_hit_rate.add_metric(primary, manifest.reference.hit_rate)
            out.reference_brier.add_metric(primary, manifest.reference.brier)
            out.reference_ece.add_metric(primary, manifest.reference.ece)


@dataclass(slots=True)
class _Families:
    """The monitoring metrics of one scrape."""

    drift_samples: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_drift_window_samples", "Scored candles in the drift window.", labels=["route"]
        )
    )
    feature_psi: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_feature_psi",
            "Population stability index of a newest-candle feature against the manifest's reference.",
            labels=["route", "feature"],
        )
    )
    feature_ks: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_feature_ks",
            "Kolmogorov-Smirnov distance of a newest-candle feature from the manifest's reference.",
            labels=["route", "feature"],
        )
    )
    prediction_psi: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_prediction_psi",
            "Population stability index of the primary-horizon probability against the manifest's reference.",
            labels=["route"],
        )
    )
    prediction_ks: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_prediction_ks",
            "Kolmogorov-Smirnov distance of the primary-horizon probability from the manifest's reference.",
            labels=["route"],
        )
    )
    outcomes: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_live_outcomes", "Resolved outcomes in the live-quality window.", labels=["route", "horizon"]
        )
    )
    resolved: CounterMetricFamily = field(
        default_factory=lambda: CounterMetricFamily(
            "candlecast_live_outcomes_resolved", "Predictions resolved by a later candle.", labels=["route", "horizon"]
        )
    )
    pending: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_live_predictions_pending",
            "Predictions waiting for the candle that resolves them.",
            labels=["route"],
        )
    )
    hit_rate: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_live_hit_rate",
            "Share of resolved predictions on the right side of 0.5.",
            labels=["route", "horizon"],
        )
    )
    brier: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_live_brier",
            "Brier score of the resolved predictions (lower is better).",
            labels=["route", "horizon"],
        )
    )
    ece: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_live_ece",
            "Expected calibration error of the resolved predictions.",
            labels=["route", "horizon"],
        )
    )
    reference_hit_rate: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_reference_hit_rate",
            "Hit rate of the model in service on validation.",
            labels=["route", "horizon"],
        )
    )
    reference_brier: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_reference_brier",
            "Brier score of the model in service on validation.",
            labels=["route", "horizon"],
        )
    )
    reference_ece: GaugeMetricFamily = field(
        default_factory=lambda: GaugeMetricFamily(
            "candlecast_reference_ece",
            "Expected calibration error of the model in service on validation.",
            labels=["route", "horizon"],
        )
    )

    def all(self) -> list[Metric]:
        return [getattr(self, item.name) for item in fields(self)]
