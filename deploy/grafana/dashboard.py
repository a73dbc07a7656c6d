"""Generates the candlecast Grafana dashboard (dashboards/candlecast.json) with grafana-foundation-sdk.

    .venv/bin/python deploy/grafana/dashboard.py          # rewrite dashboards/candlecast.json
    .venv/bin/python deploy/grafana/dashboard.py --check  # exit 1 if the JSON is not what this file generates

Edit this file, not the JSON. Every query selects ``job="candlecast"`` and the ``$instance``
variable; ``tests/observability/test_prometheus_integration.py`` runs each one against a real
Prometheus scraping a real daemon and requires data back.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueTextMode,
    GraphThresholdsStyleMode,
    StackingMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)

OUTPUT = Path(__file__).parent / "dashboards" / "candlecast.json"
UID = "candlecast"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTOR = 'job="candlecast", instance=~"$instance"'
RATE = "$__rate_interval"
PSI_MODERATE, PSI_ACT = 0.1, 0.25
LATENCY_BUDGET_S = 0.5


def m(metric: str, extra: str = "") -> str:
    """A metric selected on the dashboard's job and instances."""
    return f"{metric}{{{SELECTOR}{', ' + extra if extra else ''}}}"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def queries(*pairs: tuple[str, str]) -> list[cogbuilder.Builder[Dataquery]]:
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def series(title: str, description: str, unit: str, *pairs: tuple[str, str], span: int = 8) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(queries(*pairs))
        .unit(unit)
        .span(span)
        .height(8)
        .fill_opacity(10)
        .show_points(VisibilityMode.NEVER)
    )


def single(title: str, description: str, unit: str, expr: str, legend: str, *, span: int = 4) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([query(expr, legend)])
        .unit(unit)
        .span(span)
        .height(4)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def threshold_lines(panel: timeseries.Panel, steps: dashboard.ThresholdsConfig) -> timeseries.Panel:
    return panel.thresholds(steps).thresholds_style(
        common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
    )


def unit_of(panel: timeseries.Panel, legend: str, unit: str) -> timeseries.Panel:
    """Give the series named ``legend`` its own unit."""
    return panel.override_by_name(legend, [DynamicConfigValue(id_val="unit", value=unit)])


def quantiles(histogram: str, *, by_route: bool = False) -> list[tuple[str, str]]:
    bucket = m(f"{histogram}_bucket")
    by, legend = ("le, route", " {{route}}") if by_route else ("le", "")
    return [
        (f"histogram_quantile({q}, sum by ({by}) (rate({bucket}[{RATE}])))", f"p{round(q * 100)}{legend}")
        for q in (0.5, 0.9, 0.99)
    ]


def overview() -> list[stat.Panel]:
    up_or_down = thresholds((None, "red"), (1, "green"))
    return [
        single("Up", "Prometheus can scrape the daemon.", "none", f"min({m('up')})", "up")
        .thresholds(up_or_down)
        .color_mode(BigValueColorMode.BACKGROUND),
        single(
            "Ready",
            "1 when /readyz passes: model loaded, partitions assigned, windows rebuilt, broker reachable.",
            "none",
            f"min({m('candlecast_ready')})",
            "ready",
        )
        .thresholds(up_or_down)
        .color_mode(BigValueColorMode.BACKGROUND),
        single(
            "Model",
            "Each route's model in service (candlecast_model_info).",
            "none",
            m("candlecast_model_info"),
            "{{route}}: {{name}} {{version}} on {{device}} ({{members}})",
            span=8,
        ).text_mode(BigValueTextMode.NAME),
        single(
            "Model age",
            "Time since each route's model in service was loaded (start-up or hot reload).",
            "s",
            f"time() - max by (route) ({m('candlecast_model_loaded_timestamp_seconds')})",
            "{{route}}",
        ),
        single(
            "Event-loop lag",
            "How late the heartbeat task woke up: a busy or blocked loop delays everything.",
            "s",
            f"max({m('candlecast_event_loop_lag_seconds')})",
            "lag",
        ).thresholds(thresholds((None, "green"), (0.1, "orange"), (1.0, "red"))),
        single(
            "Build",
            "Versions of candlecast and what it runs on (candlecast_build_info).",
            "none",
            m("candlecast_build_info"),
            "candlecast {{candlecast}}, torch {{torch}}, Python {{python}}",
            span=24,
        ).text_mode(BigValueTextMode.NAME),
    ]


def traffic() -> list[timeseries.Panel]:
    signals = m("candlecast_signals_published_total")
    return [
        series(
            "Candles",
            "Candle records per second: consumed live, and replayed to rebuild windows after an assignment.",
            "reqps",
            (f"sum(rate({m('candlecast_candles_consumed_total')}[{RATE}]))", "consumed"),
            (f"sum(rate({m('candlecast_candles_replayed_total')}[{RATE}]))", "replayed"),
        ),
        series(
            "Signals by action",
            "Signals published per second, by action, route and strategy.",
            "reqps",
            (f"sum by (action, route, strategy) (rate({signals}[{RATE}]))", "{{action}} {{route}} ({{strategy}})"),
        ),
        series(
            "Share of BUY / SELL / HOLD",
            "Each action's share of the signals published over the last 30 minutes.",
            "percentunit",
            (
                f"sum by (action) (rate({signals}[30m])) / ignoring (action) group_left sum(rate({signals}[30m]))",
                "{{action}}",
            ),
        ).stacking(common.StackingConfig().mode(StackingMode.NORMAL)),
    ]


def latency() -> list[timeseries.Panel]:
    return [
        threshold_lines(
            series(
                "End to end",
                "From the candle record's timestamp to its signal acknowledged by the broker. "
                f"The alert budget is {LATENCY_BUDGET_S * 1000:.0f} ms at p99.",
                "s",
                *quantiles("candlecast_end_to_end_latency_seconds"),
                span=12,
            ),
            thresholds((None, "green"), (LATENCY_BUDGET_S, "red")),
        ),
        series(
            "Queue wait",
            "From taking a record off the source to the start of its forward pass.",
            "s",
            *quantiles("candlecast_queue_wait_seconds"),
            span=12,
        ),
        series(
            "Inference per batch",
            "One forward pass of a route's ensemble, by route.",
            "s",
            *quantiles("candlecast_inference_seconds", by_route=True),
        ),
        series(
            "Publish",
            "Publishing one batch of signals and committing its offsets (one transaction in exactly-once mode).",
            "s",
            *quantiles("candlecast_publish_seconds"),
        ),
        series(
            "Batch size",
            "Windows per forward pass: median, p99 and mean.",
            "none",
            *quantiles("candlecast_batch_size")[::2],
            (
                f"sum(rate({m('candlecast_batch_size_sum')}[{RATE}]))"
                f" / sum(rate({m('candlecast_batch_size_count')}[{RATE}]))",
                "mean",
            ),
        ),
    ]


def kafka() -> list[timeseries.Panel]:
    return [
        series(
            "Consumer lag",
            "Records in each assigned partition not yet fetched.",
            "none",
            (f"sum by (partition) ({m('candlecast_consumer_lag')})", "partition {{partition}}"),
        ),
        series(
            "Partitions",
            "Assigned to the instances, and of those still replaying the log into windows.",
            "none",
            (f"sum({m('candlecast_assigned_partitions')})", "assigned"),
            (f"sum({m('candlecast_rebuilding_partitions')})", "rebuilding"),
        ),
        series(
            "Warm-up",
            "Records left to replay before scoring resumes (rebuild after an assignment).",
            "none",
            (f"sum({m('candlecast_rebuild_remaining_records')})", "records to replay"),
        ),
        series(
            "Rebalances",
            "Partition assignments received, and rebuilds whose start was deleted by retention.",
            "none",
            (f"sum(increase({m('candlecast_rebalances_total')}[{RATE}]))", "rebalances"),
            (f"sum(increase({m('candlecast_rebuild_incomplete_total')}[{RATE}]))", "incomplete rebuilds"),
        ),
        series(
            "Since the last commit",
            "Seconds since offsets were last committed (in a transaction in exactly-once mode).",
            "s",
            (f"time() - ({m('candlecast_last_commit_timestamp_seconds')} > 0)", "{{instance}}"),
        ),
        unit_of(
            series(
                "Live windows",
                "Windows held in memory, and the bytes allocated for them.",
                "none",
                (f"sum({m('candlecast_windows_live')})", "windows"),
                (f"sum({m('candlecast_window_bytes')})", "bytes"),
            ),
            "bytes",
            "bytes",
        ),
        series(
            "Window gaps, evictions and expiries",
            "Gaps between candles of a window by what the gap policy did, evictions at max_windows, and windows "
            "expired after idle_expiry_intervals.",
            "none",
            (f"sum by (outcome) (increase({m('candlecast_window_gaps_total')}[{RATE}]))", "gap {{outcome}}"),
            (f"sum(increase({m('candlecast_window_evictions_total')}[{RATE}]))", "evicted"),
            (f"sum(increase({m('candlecast_window_expiries_total')}[{RATE}]))", "expired"),
        ),
    ]


def drift() -> list[timeseries.Panel]:
    psi_steps = thresholds((None, "green"), (PSI_MODERATE, "orange"), (PSI_ACT, "red"))
    return [
        threshold_lines(
            series(
                "Feature PSI",
                "Population stability index of each newest-candle feature against the training reference: "
                f"under {PSI_MODERATE} stable, over {PSI_ACT} a shift worth acting on (alert).",
                "none",
                (m("candlecast_feature_psi"), "{{route}} {{feature}}"),
                span=12,
            ),
            psi_steps,
        ),
        series(
            "Feature KS",
            "Largest distance between each feature's live CDF and the reference CDF.",
            "none",
            (m("candlecast_feature_ks"), "{{route}} {{feature}}"),
            span=12,
        ),
        threshold_lines(
            series(
                "Prediction drift",
                "PSI and KS of the primary-horizon probability against validation.",
                "none",
                (m("candlecast_prediction_psi"), "{{route}} PSI"),
                (m("candlecast_prediction_ks"), "{{route}} KS"),
                span=12,
            ),
            psi_steps,
        ),
        series(
            "Drift window",
            "Scored candles the drift statistics cover (they appear once drift_min_samples are held).",
            "none",
            (f"sum by (route) ({m('candlecast_drift_window_samples')})", "{{route}} samples"),
            span=12,
        ),
    ]


def quality() -> list[timeseries.Panel]:
    def live_and_reference(title: str, description: str, name: str, unit: str) -> timeseries.Panel:
        return series(
            title,
            description,
            unit,
            (m(f"candlecast_live_{name}"), "{{route}} live, horizon {{horizon}}"),
            (m(f"candlecast_reference_{name}"), "{{route}} validation, horizon {{horizon}}"),
        )

    return [
        live_and_reference(
            "Hit rate",
            "Share of resolved predictions on the right side of 0.5, live and on validation.",
            "hit_rate",
            "percentunit",
        ),
        live_and_reference(
            "Brier score", "Mean squared error of the probabilities (lower is better).", "brier", "none"
        ),
        live_and_reference(
            "Calibration error", "Expected calibration error over 10 probability bins.", "ece", "percentunit"
        ),
        series(
            "Outcomes",
            "Predictions resolved per second by the candle h steps later, and predictions still waiting.",
            "none",
            (
                f"sum by (route, horizon) (rate({m('candlecast_live_outcomes_resolved_total')}[{RATE}]))",
                "{{route}} resolved/s, horizon {{horizon}}",
            ),
            (f"sum by (route) ({m('candlecast_live_predictions_pending')})", "{{route}} pending"),
            span=24,
        ),
    ]


def errors() -> list[timeseries.Panel]:
    return [
        series(
            "Rejected candles",
            "Candle records that cannot be scored, by reason (each goes to the dead-letter topic).",
            "reqps",
            (f"sum by (reason) (rate({m('candlecast_candles_rejected_total')}[{RATE}]))", "{{reason}}"),
        ),
        unit_of(
            series(
                "Dead letters",
                "Records published to the dead-letter topic, per second and as a share of consumed candles.",
                "reqps",
                (f"sum(rate({m('candlecast_dead_letters_published_total')}[{RATE}]))", "dead letters/s"),
                (
                    f"sum(rate({m('candlecast_dead_letters_published_total')}[{RATE}])) "
                    f"/ sum(rate({m('candlecast_candles_consumed_total')}[{RATE}]))",
                    "share",
                ),
            ),
            "share",
            "percentunit",
        ),
        series(
            "Producer errors",
            "Failed publish attempts by error (each is retried); no series means none happened.",
            "none",
            (f"sum by (error) (increase({m('candlecast_producer_errors_total')}[{RATE}])) or vector(0)", "{{error}}"),
        ),
        series(
            "Model reloads",
            "Reload attempts by outcome: loaded, unchanged, or refused (the running model stays).",
            "none",
            (
                f"sum by (route, outcome) (increase({m('candlecast_model_reloads_total')}[{RATE}]))",
                "{{route}} {{outcome}}",
            ),
        ),
    ]


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("candlecast")
        .uid(UID)
        .description("Is candlecast alive, fast, and does its model still see the world it was trained on?")
        .tags(["candlecast", "trading", "kafka"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("Instance")
            .datasource(DATASOURCE)
            .query('label_values(candlecast_build_info{job="candlecast"}, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
    )
    sections: list[tuple[str, list[stat.Panel] | list[timeseries.Panel]]] = [
        ("Overview", overview()),
        ("Traffic", traffic()),
        ("Latency", latency()),
        ("Kafka", kafka()),
        ("Drift", drift()),
        ("Live model quality", quality()),
        ("Errors", errors()),
    ]
    ids = itertools.count(1)
    for title, panels in sections:
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    return board


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the JSON differs from what this file generates")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT} is out of date: run {Path(__file__).name} without --check\n")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
