"""Refitting a run's combinations under a new version."""

from __future__ import annotations

import shutil
from pathlib import Path

from models.training import RunInfo, read_run, recalibrate_run


def test_a_refitted_run_is_recorded_under_the_version_given(trained: tuple[Path, RunInfo], tmp_path: Path) -> None:
    """`calibrate --version` records the refitted run under that version; without it the version stays."""
    out, run = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    assert recalibrate_run(copy, Path(run.data_path)).version == run.version
    refitted = recalibrate_run(copy, Path(run.data_path), "9.9.9")
    assert refitted.version == "9.9.9" and refitted.recalibrated
    assert read_run(copy).version == "9.9.9"
    assert [f.weights_sha256 for f in read_run(copy).folds] == [f.weights_sha256 for f in refitted.folds]
