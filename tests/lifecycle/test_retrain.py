"""``candlecast retrain`` on the bundled hourly BTC candles: a worse challenger is refused, a better one
promoted, and the registry holds each decision with both models' figures on the same held-out rows; a
running daemon (in-memory transports, fake timer) switches to a promoted challenger once, between batches."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from candlecast.candlefile import read_candles
from candlecast.cli import app
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker
from daemon.settings import BatchingSettings, HttpSettings, ModelSettings, Settings
from models.decision import DECISION_FILE, Decision
from models.evaluation import EvaluationSettings
from models.registry import Registry
from models.retrain import EXIT_REFUSED, RetrainOptions, retrain
from tests.flow.harness import STRATEGY, all_committed, load_model, running_daemon
from tests.lifecycle.models import HOLDOUT, NAME, champion_registry, recent_csv, shuffled_trainer

runner = CliRunner()
QUICK = EvaluationSettings(samples=400)
GUARD_S = 120
"""Only keeps a failing test from hanging on the reload (a real artifact loads on a worker thread)."""


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Path, Decision]:
    """The real champion btc-test/1.0.0 against a challenger trained on shuffled candles without shrinkage."""
    directory = tmp_path_factory.mktemp("retrain")
    registry = champion_registry(directory)
    candles = recent_csv(directory)
    decision = retrain(
        registry,
        NAME,
        read_candles(candles),
        source={"source": "files", "files": [candles.name]},
        work=directory / "work",
        command="test",
        options=RetrainOptions(holdout_candles=HOLDOUT, evaluation=QUICK),
        trainer=shuffled_trainer,
    )
    return registry, candles, decision


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def retrain_command(root: Path, candles: Path, *options: str) -> tuple[int, str]:
    """``candlecast retrain`` of the test model in the registry at ``root``, on ``candles``, with the
    tests' holdout and bootstrap."""
    return invoke(
        "retrain",
        f"--registry={root}",
        f"--model={NAME}",
        f"--data={candles}",
        f"--holdout-candles={HOLDOUT}",
        "--bootstrap=400",
        *options,
    )


def test_a_challenger_trained_on_shuffled_labels_is_refused_and_the_champion_stays(
    refused: tuple[Registry, Path, Decision],
) -> None:
    """A challenger worse in log loss is refused: ``current`` stays, the challenger stays beside it
    with the decision, both models' figures on the same held-out rows."""
    registry, _, decision = refused
    assert decision.outcome == "refused"
    assert "higher" in decision.reason
    assert registry.current_ref() == f"{NAME}/1.0.0" == decision.current_after == decision.current_before
    assert (decision.champion.ref, decision.challenger.ref) == (f"{NAME}/1.0.0", f"{NAME}/1.0.1")
    champion, challenger = decision.champion.horizons["1"], decision.challenger.horizons["1"]
    assert champion["count"] == challenger["count"] == decision.holdout["labels"]["1"] > 250
    assert decision.difference["1"].estimate == pytest.approx(challenger["log_loss"] - champion["log_loss"])
    assert decision.difference["1"].estimate > 0
    assert decision.holdout["start"] > decision.training["end"]
    assert decision.holdout["champion_trained_to"] < decision.holdout["start"]
    assert registry.entry(f"{NAME}/1.0.1").decision() == decision
    assert registry.champion(NAME) == registry.entry(f"{NAME}/1.0.0")


def test_models_show_prints_the_decision(refused: tuple[Registry, Path, Decision]) -> None:
    """``candlecast models show`` prints the recorded decision under "decision"."""
    registry, _, decision = refused
    code, output = invoke("models", "show", f"{NAME}/1.0.1", "--registry", str(registry.root))
    assert code == 0
    shown = json.loads(output)["decision"]
    assert shown["outcome"] == "refused"
    assert shown["champion"]["horizons"]["1"]["log_loss"] == decision.champion.horizons["1"]["log_loss"]
    assert shown["challenger"]["horizons"]["6"]["log_loss"] == decision.challenger.horizons["6"]["log_loss"]


def test_a_better_challenger_is_promoted_by_the_command(
    refused: tuple[Registry, Path, Decision], tmp_path: Path
) -> None:
    """With the poor model current, ``candlecast retrain`` trains a normal challenger with its
    configuration, promotes it (exit 0) and records why: lower log loss by the margin, interval below 0."""
    registry, candles, _ = refused
    root = Path(shutil.copytree(registry.root, tmp_path / "registry"))
    Registry(root).promote(f"{NAME}/1.0.1")
    code, output = retrain_command(root, candles)
    assert code == 0, output
    assert f"promoted {NAME}/1.0.2" in output
    store = Registry(root)
    assert store.current_ref() == f"{NAME}/1.0.2"
    decision = store.entry(f"{NAME}/1.0.2").decision()
    assert decision is not None and decision.outcome == "promoted"
    assert decision.champion.ref == f"{NAME}/1.0.1"
    assert decision.difference["1"].estimate <= -decision.margin
    assert decision.difference["1"].high < 0
    assert decision.current_before == f"{NAME}/1.0.1"
    assert decision.training["source"] == "files"
    assert decision.training["config"]["hidden"] == 8
    assert (store.entry(f"{NAME}/1.0.2").directory / DECISION_FILE).is_file()


def test_a_challenger_not_better_by_the_margin_is_refused_with_exit_status_3(
    refused: tuple[Registry, Path, Decision], tmp_path: Path
) -> None:
    """A margin no model can meet refuses even a normal challenger; the command exits 3 and names why."""
    registry, candles, _ = refused
    root = Path(shutil.copytree(registry.root, tmp_path / "registry"))
    code, output = retrain_command(root, candles, "--margin=1.0", "--version=2.0.0")
    assert code == EXIT_REFUSED, output
    assert f"refused {NAME}/2.0.0" in output
    assert Registry(root).current_ref() == f"{NAME}/1.0.0"
    decision = Registry(root).entry(f"{NAME}/2.0.0").decision()
    assert decision is not None and "margin 1.00000" in decision.reason


def _settings(model: ModelSettings) -> Settings:
    return Settings(
        model=model,
        http=HttpSettings(port=0),
        batching=BatchingSettings(max_batch=8, queue_chunks=1),
        strategy=STRATEGY,
    )


def _feed(broker: MemoryBroker, messages: list[tuple[str, CandleMessage]]) -> None:
    for record in candle_records(messages):
        broker.append(0, record.key, record.value, record.timestamp_ms)


async def _backtest(artifact: Path, messages: list[tuple[str, CandleMessage]]) -> dict[str, dict[str, float]]:
    """What an uninterrupted run of one model makes of the candles: probabilities by candle time."""
    settings = _settings(ModelSettings(artifact=artifact, threads=1))
    model = load_model(settings.model, torch.device("cpu"))
    core = build_core(settings, model)
    signals = await backtest(candle_records(messages), core.ingestor, core.builder, model, BatchPolicy(8))
    return {signal.ts: signal.probabilities for signal in signals}


async def test_after_a_promotion_the_running_daemon_switches_version_once_and_keeps_its_windows(
    refused: tuple[Registry, Path, Decision], tmp_path: Path
) -> None:
    """A daemon serving the registry's poor ``current`` picks up the retrained challenger at its next
    poll, between two batches: signals before carry the old version, after it the new one, never back,
    and each equals its model's output on the full window, so no window was lost in the swap."""
    registry, candles, _ = refused
    root = Path(shutil.copytree(registry.root, tmp_path / "registry"))
    Registry(root).promote(f"{NAME}/1.0.1")
    messages = read_candles(candles).tail_per_symbol(150).messages("1h")
    settings = _settings(ModelSettings(registry=root, threads=1, reload_poll_s=5.0))
    broker = MemoryBroker(partitions=1)
    _feed(broker, messages[:100])
    async with running_daemon(settings, broker, loader=load_model) as running:
        daemon = running.daemon
        await all_committed(broker)
        running.sink.hold()
        _feed(broker, messages[100:125])
        await running.sink.holding.wait()

        decision = retrain(
            Registry(root),
            NAME,
            read_candles(candles),
            source={"source": "files", "files": [candles.name]},
            work=tmp_path / "work",
            command="test",
            options=RetrainOptions(holdout_candles=HOLDOUT, evaluation=QUICK),
        )
        assert decision.outcome == "promoted"
        asleep = len(running.clock.deadlines)
        await running.clock.run_for(5.0)
        async with asyncio.timeout(GUARD_S):
            await running.clock.sleeping(asleep)  # the reload loop waits again: the load and swap are done
        assert daemon.model is not None and daemon.model.version == "1.0.2"
        running.sink.release()
        _feed(broker, messages[125:])
        await all_committed(broker)
        await running.stopped()

    published = sorted(broker.signals, key=lambda s: s.ts)
    versions = [s.model_version for s in published]
    assert len(published) == 150 - 32 + 1
    assert versions == sorted(versions) and set(versions) == {"1.0.1", "1.0.2"}
    expected = {
        version: await _backtest(root / NAME / version / "model.pt", messages) for version in ("1.0.1", "1.0.2")
    }
    for signal in published:
        assert signal.probabilities == expected[signal.model_version][signal.ts]
