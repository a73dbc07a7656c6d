"""Export: the artifact is the trained model, verified on load; a corrupted one is refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch

from candlecast.errors import ArtifactError
from models.artifact import MANIFEST_FILE, Manifest
from models.dataset import walk_forward
from models.export import export_run
from models.features import FEATURE_NAMES
from models.networks import Ensemble
from models.torchscript import load_artifact, read_manifest, save_artifact
from models.training import RunInfo, predict, run_data


@pytest.fixture(scope="module")
def exported(trained: tuple[Path, RunInfo], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ensemble]:
    out, _ = trained
    path = tmp_path_factory.mktemp("artifact") / "model.pt"
    _, ensemble = export_run(out, path)
    return path, ensemble


def test_export_round_trip(exported: tuple[Path, Ensemble], trained: tuple[Path, RunInfo], candles_csv: Path) -> None:
    path, ensemble = exported
    out, run = trained
    model = load_artifact(path)
    manifest = model.manifest
    assert (manifest.name, manifest.version, manifest.window, manifest.interval) == ("tiny", "0.1.0", 32, "1d")
    assert (manifest.calendar, manifest.gap_policy, manifest.max_missing) == ("weekdays", "tolerate", 3)
    assert manifest.horizons == [1, 5] and manifest.features == list(FEATURE_NAMES)
    assert manifest.weights_sha256 == run.folds[-1].weights_sha256
    assert [m.kind for m in manifest.members] == ["lstm", "multiscale"]
    assert manifest.calibration.scale == pytest.approx(run.folds[-1].calibration_scale)
    assert manifest.training.calibration == run.folds[-1].calibration
    assert manifest.training.test == run.folds[-1].test
    assert {"calibration", "test", "test_constant"} <= manifest.metrics.keys()
    assert "accuracy_h1" in manifest.metrics["test"] and "log_loss_h5" in manifest.metrics["test"]
    assert set(manifest.reference.features) == set(FEATURE_NAMES)
    assert manifest.framework["torch"] == str(torch.__version__)
    assert read_manifest(path) == manifest
    assert path.stat().st_size < 5_000_000

    # TorchScript equals eager on the test windows, and the eager model is the run's last fold.
    _, data = run_data(run, candles_csv)
    test = walk_forward(data, run.split_sizes())[-1].part(data, "test")
    scored = model.score(test.windows)
    eager = predict(ensemble, test.windows)
    np.testing.assert_allclose(scored.probabilities, eager.probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scored.quantiles, eager.quantiles, rtol=1e-5, atol=1e-6)
    assert out.exists()


def _rewrite(source: Path, target: Path, **changes: object) -> Path:
    """The same archive with manifest fields replaced (a forged or stale manifest)."""
    manifest = read_manifest(source)
    module = torch.jit.load(str(source))
    save_artifact(module, msgspec.structs.replace(manifest, **changes), target)
    return target


def test_a_flipped_byte_is_refused(exported: tuple[Path, Ensemble], tmp_path: Path) -> None:
    path, _ = exported
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 1000)
    data[info.header_offset + 200] ^= 0x01  # inside a weight tensor's bytes
    broken = tmp_path / "flipped.pt"
    broken.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"flipped\.pt: (weights sha256|not a loadable)"):
        load_artifact(broken)
    # Loading from a registry checks the recorded file digest first.
    with pytest.raises(ArtifactError, match="differs from the registry's"):
        load_artifact(broken, expected_sha256="0" * 64)


def test_a_wrong_weights_digest_is_refused(exported: tuple[Path, Ensemble], tmp_path: Path) -> None:
    forged = _rewrite(exported[0], tmp_path / "digest.pt", weights_sha256="ab" * 32)
    with pytest.raises(ArtifactError, match=r"weights sha256 \w+ differs from the manifest's abab"):
        load_artifact(forged)


def test_a_missing_manifest_is_refused(exported: tuple[Path, Ensemble], tmp_path: Path) -> None:
    bare = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.load(str(exported[0])), str(bare))
    with pytest.raises(ArtifactError, match=f"has no {MANIFEST_FILE}"):
        load_artifact(bare)
    not_torchscript = tmp_path / "notes.pt"
    not_torchscript.write_text("not a model")
    with pytest.raises(ArtifactError, match="not a loadable TorchScript archive"):
        load_artifact(not_torchscript)


def test_golden_outputs_that_do_not_match_are_refused(exported: tuple[Path, Ensemble], tmp_path: Path) -> None:
    manifest: Manifest = read_manifest(exported[0])
    shifted = [[p + 0.01 for p in row] for row in manifest.golden.probabilities]
    forged = _rewrite(
        exported[0], tmp_path / "golden.pt", golden=msgspec.structs.replace(manifest.golden, probabilities=shifted)
    )
    with pytest.raises(ArtifactError, match=r"golden outputs differ from the manifest by 0\.01"):
        load_artifact(forged)
