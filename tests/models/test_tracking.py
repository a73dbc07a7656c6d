"""Experiment tracking: `train`, `evaluate`, `export` and `tune` recorded in MLflow, read back through its client."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import typer
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from candlecast.errors import ConfigError, DataError
from daemon.settings import load_settings
from models.artifact import Manifest
from models.commands import evaluate, export, models_app, train, tune
from models.contenders import CONSTANT, ENSEMBLE, LOGISTIC
from models.dataset import table_digest
from models.registry import Registry
from models.tracking import TrackedRun
from models.training import read_run

app = typer.Typer()
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("export")(export)
app.command("tune")(tune)
app.add_typer(models_app, name="models")
runner = CliRunner()

TINY = (
    "--window", "32", "--horizons", "1,5", "--members", "lstm,multiscale", "--folds", "2", "--test-candles", "40",
    "--validation-candles", "30", "--calibration-candles", "30", "--epochs", "3", "--patience", "3", "--threads", "1",
    "--quiet", "--name", "tracked", "--version", "0.3.0",
)  # fmt: skip

TINY_TUNE = (
    "--windows", "32", "--hidden", "8", "--members", "lstm;multiscale", "--learning-rates", "1e-3,3e-3",
    "--trials", "3", "--folds", "2", "--search-folds", "2", "--test-candles", "40", "--validation-candles", "20",
    "--calibration-candles", "30", "--purge", "5", "--horizons", "1,5", "--epochs", "1", "--patience", "1",
    "--batch-size", "64", "--seed", "3", "--threads", "1",
)  # fmt: skip


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def the_only_run(uri: str, experiment_name: str) -> Run:
    """The one run the store at ``uri`` holds in ``experiment_name``."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def test_training_evaluation_and_export_are_recorded_in_mlflow(candles_csv: Path, tmp_path: Path) -> None:
    """A tracked training run, its evaluation and its export read back from the MLflow store match
    run.json, the report and the registry's artifact and manifest."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    invoke("train", "--data", str(candles_csv), "--out", str(out), "--tracking-uri", uri, *TINY)
    run = read_run(out)
    assert run.tracking is not None and run.tracking.uri == uri
    client = MlflowClient(tracking_uri=uri)
    recorded = client.get_run(run.tracking.run_id)
    assert recorded.info.status == "FINISHED"
    assert client.get_experiment(recorded.info.experiment_id).name == "tracked"
    assert str(tmp_path / "mlruns") in recorded.info.artifact_uri

    params = recorded.data.params
    assert (params["data.name"], params["data.sha256"], params["data.rows"]) == (
        run.data.name,
        run.data.sha256,
        str(run.data.rows),
    )
    assert params["symbols"] == ",".join(run.symbols)
    assert (params["data.start"], params["data.end"]) == (run.folds[0].train.start, run.folds[-1].test.end)
    for key, value in run.config.items():
        assert params[f"config.{key}"] == (",".join(map(str, value)) if isinstance(value, list) else str(value))
    for key, value in run.sizes.items():
        assert params[f"sizes.{key}"] == str(value)
    for fold in run.folds:
        assert params[f"fold{fold.index}.test.start"] == fold.test.start
        assert params[f"fold{fold.index}.train.end"] == fold.train.end
        assert params[f"fold{fold.index}.weights_sha256"] == fold.weights_sha256
        for member in fold.members:
            key = f"fold{fold.index}/{member.name}"
            history = client.get_metric_history(run.tracking.run_id, f"{key}/validation_loss")
            assert [(m.step, m.value) for m in history] == [(e + 1, h[1]) for e, h in enumerate(member.history)]
            history = client.get_metric_history(run.tracking.run_id, f"{key}/train_loss")
            assert [m.value for m in sorted(history, key=lambda m: m.step)] == [h[0] for h in member.history]
            assert recorded.data.metrics[f"{key}/best_epoch"] == member.best_epoch
    stored_run = Path(client.download_artifacts(run.tracking.run_id, "run.json", str(tmp_path / "download")))
    assert stored_run.read_bytes() == (out / "run.json").read_bytes()

    registry = tmp_path / "registry"
    invoke("export", "--run", str(out), "--registry", str(registry))
    entry = Registry(registry).entry("tracked/0.3.0")
    assert entry.tracking() == run.tracking
    artifact = Path(client.download_artifacts(run.tracking.run_id, "model/model.pt", str(tmp_path / "download")))
    assert sha256(artifact) == entry.recorded_sha256 == sha256(entry.artifact)
    manifest_path = client.download_artifacts(run.tracking.run_id, "model/manifest.json", str(tmp_path / "download"))
    manifest = msgspec.json.decode(Path(manifest_path).read_bytes(), type=Manifest)
    assert manifest == entry.manifest()
    tags = client.get_run(run.tracking.run_id).data.tags
    assert tags["candlecast.registry_version"] == "tracked/0.3.0"
    assert tags["candlecast.weights_sha256"] == manifest.weights_sha256
    shown = json.loads(invoke("models", "show", "tracked/0.3.0", "--registry", str(registry)))
    assert shown["tracking"] == {"uri": uri, "run_id": run.tracking.run_id}

    reports = tmp_path / "reports"
    invoke("evaluate", "--run", str(out), "--report-dir", str(reports), "--bootstrap", "30", "--no-walk-forward")
    (child,) = client.search_runs(
        [recorded.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.tracking.run_id}'"
    )
    assert child.info.status == "FINISHED"
    figures = json.loads((reports / "report.json").read_text())
    metrics = child.data.metrics
    for model, name in ((ENSEMBLE, "ensemble"), (LOGISTIC, "logistic-regression"), (CONSTANT, "constant-probability")):
        for horizon in ("1", "5"):
            entry_figures = figures["sets"]["last-fold"]["models"][model]["horizons"][horizon]
            prefix = f"last-fold/{name}/h{horizon}"
            for figure in ("log_loss", "brier", "ece", "accuracy"):
                assert metrics[f"{prefix}/{figure}"] == pytest.approx(entry_figures[figure], rel=1e-12)
            assert metrics[f"{prefix}/log_loss_ci/low"] == pytest.approx(entry_figures["log_loss_ci"]["low"])
            assert metrics[f"{prefix}/log_loss_ci/high"] == pytest.approx(entry_figures["log_loss_ci"]["high"])
    trading = figures["sets"]["last-fold"]["trading"]["buy-and-hold"]
    assert metrics["last-fold/trading/buy-and-hold/sharpe"] == pytest.approx(trading["sharpe"])
    assert child.data.params["data.candles.csv.sha256"] == run.data.sha256
    assert child.data.params["settings.fee_bps"] == "2.0"
    stored = {f.path for f in client.list_artifacts(child.info.run_id, "report")}
    assert {"report/report.json", "report/report.md", "report/img"} <= stored
    plots = client.list_artifacts(child.info.run_id, "report/img")
    assert plots and all(f.path.endswith(".png") for f in plots)

    invoke("evaluate", "--model", "tracked/0.3.0", "--registry", str(registry), "--data", str(candles_csv),
           "--report-dir", str(tmp_path / "artifact-report"), "--bootstrap", "30")  # fmt: skip
    children = client.search_runs(
        [recorded.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.tracking.run_id}'"
    )
    (artifact_child,) = [c for c in children if c.info.run_id != child.info.run_id]
    scored = json.loads((tmp_path / "artifact-report" / "report.json").read_text())
    (set_key,) = scored["sets"]
    ensemble_h1 = scored["sets"][set_key]["models"][ENSEMBLE]["horizons"]["1"]
    assert artifact_child.data.metrics[f"{set_key}/ensemble/h1/log_loss"] == pytest.approx(ensemble_h1["log_loss"])


def test_a_search_and_each_trial_are_recorded_in_mlflow(candles_csv: Path, tmp_path: Path) -> None:
    """A tracked `tune` leaves one run in experiment "tune" whose options, data digest, budget and best
    equal the result JSON it wrote (stored as its artifact), and one child run per trial with the
    trial's choices, running validation log loss per fold, state and, when complete, objective."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "tune.json"
    invoke("tune", "--data", str(candles_csv), "--out", str(out), "--tracking-uri", uri, *TINY_TUNE)
    result = json.loads(out.read_text())
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tune")
    assert experiment is not None
    (search,) = client.search_runs([experiment.experiment_id], filter_string="tags.`candlecast.kind` = 'tune'")
    assert search.info.status == "FINISHED"
    params = search.data.params
    assert (params["data.name"], params["data.sha256"]) == (candles_csv.name, table_digest(candles_csv))
    assert params["data.start"] < params["data.end"] and params["symbols"]
    assert params["space.members"] == ";".join(result["space"]["members"]) == "lstm;multiscale"
    assert params["space.learning_rate"] == ",".join(map(str, result["space"]["learning_rate"]))
    assert {key: params[f"sizes.{key}"] for key in result["sizes"]} == {k: str(v) for k, v in result["sizes"].items()}
    assert (params["options.trials"], params["options.search_folds"], params["options.epochs"]) == ("3", "2", "1")
    metrics = search.data.metrics
    budget = result["budget"]
    assert {key: metrics[f"budget/{key}"] for key in ("trials", "complete", "pruned", "seconds")} == {
        key: budget[key] for key in ("trials", "complete", "pruned", "seconds")
    }
    assert metrics["best_objective"] == result["best"]["value"]
    assert params["best.window"] == str(result["best"]["params"]["window"])
    stored = Path(client.download_artifacts(search.info.run_id, out.name, str(tmp_path / "download")))
    assert stored.read_bytes() == out.read_bytes()

    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{search.info.run_id}'"
    )
    assert budget["trials"] == len(result["trials"]) == len(children) == 3
    by_number = {int(child.data.params["number"]): child for child in children}
    for trial in result["trials"]:
        child = by_number[trial["number"]]
        assert child.info.status == "FINISHED"
        assert child.data.tags["candlecast.trial_state"] == trial["state"]
        assert {key: child.data.params[key] for key in ("window", "hidden", "members", "learning_rate")} == {
            key: str(value) for key, value in trial["params"].items()
        }
        history = client.get_metric_history(child.info.run_id, "validation_log_loss")
        assert sorted((m.step, m.value) for m in history) == list(enumerate(trial["fold_values"]))
        assert child.data.metrics.get("objective") == (trial["value"] if trial["state"] == "COMPLETE" else None)
    assert {trial["state"] for trial in result["trials"]} == {"COMPLETE", "PRUNED"}


def test_a_failed_search_is_recorded_as_failed(
    candles_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search that stops on an error, tracked through CANDLECAST_TRACKING__URI, leaves its run
    marked FAILED with its settings and no trial."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("CANDLECAST_TRACKING__URI", uri)
    with pytest.raises(DataError, match="no candles for NOPE"):
        invoke("tune", "--data", str(candles_csv), "--out", str(tmp_path / "t.json"), *TINY_TUNE, "--symbols", "NOPE")
    failed = the_only_run(uri, "tune")
    assert (failed.info.status, failed.data.params["options.trials"]) == ("FAILED", "3")


def test_a_failed_training_is_recorded_as_failed(
    candles_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training that stops on an error leaves its MLflow run marked FAILED, not running; the
    environment's CANDLECAST_TRACKING__URI turns tracking on as the option does."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("CANDLECAST_TRACKING__URI", uri)
    with pytest.raises(DataError, match="purge gap 2"):
        invoke("train", "--data", str(candles_csv), "--out", str(tmp_path / "run"), *TINY, "--purge", "2")
    failed = the_only_run(uri, "tracked")
    assert failed.info.status == "FAILED"


def test_runs_interrupted_are_killed_and_children_name_their_parent(tmp_path: Path) -> None:
    """Ctrl-C marks a run KILLED; a run started with a parent in the same store is its child, and one
    in another store only names it (the API tune's trials use, and retrain is to)."""
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(KeyboardInterrupt), TrackedRun.start(uri, experiment="x", name="parent") as parent:
        raise KeyboardInterrupt
    with TrackedRun.start(uri, experiment="x", name="child", parent=parent.ref) as child:
        child.log_metrics([("loss", 0.5, 1), ("undefined", math.nan, 1)])
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(parent.ref.run_id).info.status == "KILLED"
    recorded = client.get_run(child.ref.run_id)
    assert (recorded.info.status, recorded.data.metrics) == ("FINISHED", {"loss": 0.5})
    assert (
        recorded.data.tags["mlflow.parentRunId"] == recorded.data.tags["candlecast.training_run"] == parent.ref.run_id
    )
    elsewhere = f"sqlite:///{tmp_path / 'b.db'}"
    with TrackedRun.start(elsewhere, experiment="x", name="other", parent=parent.ref) as other:
        pass
    tags = MlflowClient(tracking_uri=elsewhere).get_run(other.ref.run_id).data.tags
    assert tags["candlecast.training_run"] == parent.ref.run_id and "mlflow.parentRunId" not in tags


def test_the_daemon_settings_accept_the_tracking_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """CANDLECAST_TRACKING__URI, set for the training commands, is no error for the daemon's settings."""
    monkeypatch.setenv("CANDLECAST_KAFKA__CANDLES_TOPIC", "bars")
    monkeypatch.setenv("CANDLECAST_TRACKING__URI", "sqlite:///mlflow.db")
    assert load_settings().kafka.candles_topic == "bars"


def test_tracking_without_mlflow_installed_is_a_clear_error(
    candles_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking for tracking where MLflow is not installed names the extra to install, before training."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"candlecast\[tracking\]"):
        invoke("train", "--data", str(candles_csv), "--out", str(tmp_path / "run"), "--track", *TINY)
    assert not (tmp_path / "run").exists()


NO_MLFLOW = """
import json, sys
from pathlib import Path
import daemon.service, candlecast.cli
from typer.testing import CliRunner
out, data = Path(sys.argv[1]), sys.argv[2]
train_args, tune_args = json.loads(sys.argv[3]), json.loads(sys.argv[4])
result = CliRunner().invoke(candlecast.cli.app, ["train", "--data", data, "--out", str(out / "run"), *train_args])
assert result.exit_code == 0, result.output
result = CliRunner().invoke(candlecast.cli.app, ["tune", "--data", data, "--out", str(out / "tune.json"), *tune_args])
assert result.exit_code == 0, result.output
loaded = "mlflow" in sys.modules
tracking = json.loads((out / "run" / "run.json").read_text())["tracking"]
trials = len(json.loads((out / "tune.json").read_text())["trials"])
import models.tracking
print(json.dumps({"loaded": loaded, "tracking": tracking, "trials": trials, "detected": "mlflow" in sys.modules}))
"""


def test_the_daemon_and_untracked_training_and_tuning_never_import_mlflow(candles_csv: Path, tmp_path: Path) -> None:
    """Importing the daemon and the CLI, training and tuning without tracking, as today, loads no
    MLflow (which the same check sees once models.tracking is imported)."""
    train_args = [*TINY, "--folds", "1", "--epochs", "1"]
    tune_args = [*TINY_TUNE, "--trials", "1"]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_MLFLOW,
            str(tmp_path),
            str(candles_csv),
            json.dumps(train_args),
            json.dumps(tune_args),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "CANDLECAST_TRACKING__URI"},
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "loaded": False,
        "tracking": None,
        "trials": 1,
        "detected": True,
    }
