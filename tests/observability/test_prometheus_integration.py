"""A real Prometheus scraping a real daemon fed real candles: every dashboard and alert expression has data.

The daemon runs in-process against the test broker with the test model, consumes the last
candles of the bundled daily US stocks plus a few malformed records (so rejections and dead
letters are real), and is asked to reload a broken artifact (so a reload is really refused).
Prometheus runs with ``deploy/prometheus``'s configuration and alert rules, scraping every second.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE, STDOUT

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from candlecast.candlefile import bundled_path, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from daemon.service import Daemon
from daemon.settings import ModelSettings, MonitoringSettings
from tests.observability.prometheus_server import PROMTOOL, PrometheusServer
from tests.observability.promql import (
    comparisons_as_bool,
    dashboard_expressions,
    load_dashboard,
    load_rules,
    rule_expressions,
)
from tests.support.kafka import daemon_settings, fresh_topics, running_daemon, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]

CANDLES_PER_SYMBOL = 160
MALFORMED = [b"{not json", b"[1, 2", b'{"symbol": "AAPL"']
MONITORING = MonitoringSettings(drift_window=1000, drift_min_samples=100, quality_window=500, quality_min_outcomes=50)


@dataclass(frozen=True)
class Observed:
    daemon: Daemon
    prometheus: PrometheusServer
    metrics_url: str


def sample(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.registry.get_sample_value(name, labels) or 0.0


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    await wait_until(predicate, timeout_s=timeout_s, interval_s=0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def observed(
    kafka: LocalKafka, test_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Observed]:
    root = tmp_path_factory.mktemp("prometheus")
    artifact = root / "model.pt"
    shutil.copyfile(test_artifact, artifact)
    topics = await fresh_topics(kafka.bootstrap_servers)
    settings = daemon_settings(kafka.bootstrap_servers, topics, artifact).model_copy(
        update={"monitoring": MONITORING, "model": ModelSettings(artifact=artifact, threads=1)}
    )
    table = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES_PER_SYMBOL)
    messages = table.messages("1d")
    window = 64
    expected_signals = len(table.symbol_slices()) * (CANDLES_PER_SYMBOL - window + 1)

    async with running_daemon(settings) as daemon:
        await wait_for(daemon.became_ready.is_set)
        target = f"127.0.0.1:{daemon.http.port}"
        prometheus = PrometheusServer(root, target)
        try:
            await asyncio.to_thread(prometheus.wait_ready)
            # Scrapes of the idle daemon first, so counters and histograms have a sample before traffic.
            await wait_for(lambda: bool(prometheus.query('up{job="candlecast"} == 1')))
            await publish_candles(messages, bootstrap_servers=kafka.bootstrap_servers, topic=topics.candles)
            await publish_malformed(kafka.bootstrap_servers, topics.candles)
            await wait_for(lambda: sample(daemon, "candlecast_dead_letters_published_total") == len(MALFORMED))
            await wait_for(
                lambda: (
                    sum(
                        sample(
                            daemon,
                            "candlecast_signals_published_total",
                            action=a,
                            strategy="threshold",
                            route="default",
                        )
                        for a in ("BUY", "SELL", "HOLD")
                    )
                    == expected_signals
                )
            )
            # A broken artifact: the reload is refused and the running model stays.
            artifact.write_bytes(b"not a model")
            daemon.request_reload()
            await wait_for(
                lambda: sample(daemon, "candlecast_model_reloads_total", route="default", outcome="refused") == 1
            )
            await wait_for(
                lambda: bool(
                    prometheus.query('candlecast_model_reloads_total{job="candlecast", outcome="refused"} == 1')
                )
            )
            await asyncio.sleep(3)  # a few more scrapes and rule evaluations
            yield Observed(daemon, prometheus, f"http://{target}/metrics")
        finally:
            prometheus.stop()


async def publish_malformed(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in MALFORMED:
            await producer.send_and_wait(topic, value, key=b"AAPL")
    finally:
        await producer.stop()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make system-deps)")
async def test_exposition_passes_promtool_check_metrics(observed: Observed) -> None:
    """Naming conventions (units, _total counters, help texts) on everything a fed daemon exposes."""
    assert PROMTOOL is not None
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(observed.metrics_url, timeout=10).read())
    for name in ("candlecast_feature_psi", "candlecast_live_hit_rate", "candlecast_consumer_lag", "candlecast_build"):
        assert name.encode() in body
    checker = await asyncio.create_subprocess_exec(PROMTOOL, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT)
    output, _ = await checker.communicate(body)
    assert checker.returncode == 0, output.decode()
    assert output.decode().strip() == ""


async def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    expressions = dashboard_expressions(load_dashboard())
    assert len(expressions) > 40
    empty = [f"{e.where}: {e.expr}" for e in expressions if not observed.prometheus.query(e.expr)]
    assert empty == []


async def test_every_alert_expression_evaluates_on_real_series(observed: Observed) -> None:
    """With comparisons as ``bool``, each alert returns a sample per series it compares: none may be missing.

    On this healthy daemon the alert conditions themselves are false, which
    ``deploy/prometheus/tests`` covers with promtool's rule unit tests.
    """
    rules = load_rules()
    assert {rule["alert"] for rule in rules} >= {
        "CandlecastDown",
        "CandlecastConsumerLagGrowing",
        "CandlecastEndToEndLatencyHigh",
        "CandlecastFeatureDrift",
        "CandlecastPredictionDrift",
        "CandlecastDeadLetterRate",
        "CandlecastModelReloadFailed",
        "CandlecastLiveAccuracyCollapse",
    }
    empty = []
    for expression in rule_expressions(rules):
        compared = comparisons_as_bool(expression.expr)
        assert compared != expression.expr, f"{expression.where}: no comparison to turn into bool"
        if not observed.prometheus.query(compared):
            empty.append(f"{expression.where}: {compared}")
    assert empty == []


async def test_the_refused_reload_fires_its_alert(observed: Observed) -> None:
    """The one alert this run really triggers fires in Prometheus; the healthy-daemon alerts do not."""
    deadline = time.monotonic() + 30
    firing: set[str] = set()
    while time.monotonic() < deadline and "CandlecastModelReloadFailed" not in firing:
        firing = {series["metric"]["alertname"] for series in observed.prometheus.query('ALERTS{alertstate="firing"}')}
        await asyncio.sleep(0.5)
    assert firing == {"CandlecastModelReloadFailed"}
    rejected = {
        s.labels["reason"]: s.value
        for metric in observed.daemon.registry.collect()
        if metric.name == "candlecast_candles_rejected"
        for s in metric.samples
        if s.name.endswith("_total") and s.value
    }
    assert sum(rejected.values()) == len(MALFORMED), rejected
    assert observed.daemon.model is not None  # the running model stayed
