"""`candlecast tune`: a walk-forward search that never reads a calibration slice or a test block."""

from __future__ import annotations

from pathlib import Path

from models.dataset import SplitSizes, WindowSpec, load_windows, walk_forward
from models.training import TrainConfig
from models.tuning import SearchSpace, tune
from tests.models.synthetic import weekday_candles, write_csv

SIZES = SplitSizes(folds=2, test=40, validation=20, calibration=30, purge=5)
SPACE = SearchSpace(windows=(32, 48), hidden=(8, 16), members=("lstm", "multiscale"), learning_rate=(1e-3, 3e-3))
BASE = TrainConfig(members=("lstm",), epochs=1, patience=1, batch_size=64, seed=3, threads=1)


def spec_of(length: int) -> WindowSpec:
    return WindowSpec.build(
        length=length, interval="1d", calendar="weekdays", gap_policy="tolerate", max_missing=3, horizons=(1, 5)
    )


def test_tuning_never_reads_calibration_slices_or_test_blocks(tmp_path: Path) -> None:
    """Prices from the first calibration slice on, changed at will, change no trial's objective."""
    rows = weekday_candles()
    data = write_csv(tmp_path / "a.csv", rows)
    first_calibration = min(walk_forward(load_windows(data, spec_of(n)), SIZES)[0].cutoffs[1] for n in SPACE.windows)
    # Every price from then on doubled: a market-wide jump that no window before it holds.
    shifted = [
        (ts, s, o * 2, h * 2, lo * 2, c * 2, v) if ts >= first_calibration else (ts, s, o, h, lo, c, v)
        for ts, s, o, h, lo, c, v in rows
    ]
    other = write_csv(tmp_path / "b.csv", shifted)
    runs = [
        tune(path, spec_of=spec_of, sizes=SIZES, base=BASE, space=SPACE, trials=3, timeout_s=None, tuning_folds=2)
        for path in (data, other)
    ]
    assert [t["value"] for t in runs[0]["trials"]] == [t["value"] for t in runs[1]["trials"]]
    assert runs[0]["budget"]["trials"] == 3
    assert runs[0]["best"]["params"]["window"] in SPACE.windows
    assert all(t["state"] in {"COMPLETE", "PRUNED"} for t in runs[0]["trials"])
