"""Training windows are the daemon's windows, labels are as documented, splits do not leak."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from candlecast.candlefile import CandleTable, read_candles
from candlecast.errors import DataError
from daemon.candle import CandleValidator, Rejection
from daemon.intervals import DAY_MS, Interval
from daemon.window import GapMode, GapPolicy, Push, WindowStore
from models.dataset import NO_LABEL, SplitSizes, WindowSet, WindowSpec, build_windows, walk_forward
from tests.models.synthetic import weekday_candles, write_csv

LENGTH = 16


def spec(mode: str, max_missing: int = 3, calendar: str = "weekdays") -> WindowSpec:
    return WindowSpec.build(
        length=LENGTH, interval="1d", calendar=calendar, gap_policy=mode, max_missing=max_missing, horizons=(1, 3)
    )


@pytest.fixture(scope="module")
def messy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Candles with what real files contain: holidays, a long gap, an inconsistent candle, a
    weekend candle and a duplicate."""
    rows = weekday_candles(days=160, seed=5)
    ts, symbol, o, _, lo, c, v = rows[40]
    rows[40] = (ts, symbol, o, lo * 0.99, lo, c, v)  # high below low: the validator rejects it
    rows.insert(60, (rows[60][0] - DAY_MS, *rows[60][1:]))  # a duplicate open time
    saturday = next(r for r in rows if (r[0] // DAY_MS + 3) % 7 == 4)  # a Friday candle...
    rows.append((saturday[0] + DAY_MS, *saturday[1:]))  # ...copied to the Saturday after
    return write_csv(tmp_path_factory.mktemp("messy") / "messy.csv", rows)


def daemon_windows(path: Path, window_spec: WindowSpec) -> dict[tuple[str, int], np.ndarray]:
    """Every window the daemon scores: messages validated, then pushed into its ``WindowStore``."""
    table = read_candles(path)
    interval = window_spec.interval
    validator = CandleValidator({"1d": interval})
    store = WindowStore(LENGTH, intervals={"1d": interval}, gap_policies={"1d": window_spec.policy})
    out = {}
    for offset, (symbol, message) in enumerate(table.messages("1d")):
        candle = validator.check(message, symbol.encode(), record_ts_ms=int(message.ts) + 1)
        if isinstance(candle, Rejection):
            continue
        outcome, slot = store.push(candle, 0, offset)
        if outcome is Push.READY:
            out[symbol, candle.ts] = store.gather([slot])[0].copy()
    return out


@pytest.mark.parametrize(("mode", "max_missing"), [("tolerate", 3), ("reset", 0), ("forward_fill", 3), ("reset", 5)])
def test_training_windows_equal_the_daemons(messy_csv: Path, mode: str, max_missing: int) -> None:
    window_spec = spec(mode, max_missing)
    data = build_windows(read_candles(messy_csv), window_spec)
    expected = daemon_windows(messy_csv, window_spec)
    got = {(str(s), int(t)): w for s, t, w in zip(data.symbols, data.end_ts, data.windows, strict=True)}
    assert got.keys() == expected.keys()
    for key, window in expected.items():
        np.testing.assert_array_equal(got[key], window, err_msg=str(key))


def test_labels_are_strict_and_stay_within_a_run() -> None:
    day0 = 19_002  # a Monday
    closes = [10.0, 11.0, 11.0, 10.5, 12.0, 12.0, 13.0]
    rows = [((day0 + d) * DAY_MS, "X", c, c, c, c, 1.0) for d, c in enumerate(closes[:5])]
    rows += [((day0 + 14 + d) * DAY_MS, "X", c, c, c, c, 1.0) for d, c in enumerate(closes[5:])]  # after a gap
    table = CandleTable(
        np.array([r[1] for r in rows]), np.array([r[0] for r in rows]), np.array([r[2:] for r in rows], dtype=float)
    )
    data = build_windows(
        table,
        WindowSpec.build(
            length=2, interval="1d", calendar="weekdays", gap_policy="tolerate", max_missing=3, horizons=(1, 2)
        ),
    )
    # Windows end on days 1..4 of the first run and day 1 of the second.
    assert data.end_ts.tolist() == [(day0 + d) * DAY_MS for d in (1, 2, 3, 4)] + [(day0 + 15) * DAY_MS]
    assert data.up[:, 0].tolist() == [False, False, True, False, False]  # 11 -> 11 is a tie: not up
    assert data.up[:, 1].tolist() == [False, True, False, False, False]
    # No label crosses the reset: the last candle before the gap has none, nor does the end of the data.
    assert data.label_ts[3].tolist() == [NO_LABEL, NO_LABEL]
    assert data.label_ts[4].tolist() == [NO_LABEL, NO_LABEL]
    assert data.label_ts[0].tolist() == [(day0 + 2) * DAY_MS, (day0 + 3) * DAY_MS]
    np.testing.assert_allclose(data.log_return[0], [0.0, np.log(10.5 / 11.0)])


@pytest.fixture(scope="module")
def long_windows(tmp_path_factory: pytest.TempPathFactory) -> WindowSet:
    path = write_csv(tmp_path_factory.mktemp("long") / "long.csv", weekday_candles(("A", "B", "C"), days=900, seed=9))
    return build_windows(read_candles(path), spec("tolerate"))


def test_walk_forward_splits_do_not_leak(long_windows: WindowSet) -> None:
    sizes = SplitSizes(folds=3, test=60, validation=40, calibration=40, purge=5)
    folds = walk_forward(long_windows, sizes)
    times = np.unique(long_windows.end_ts)
    previous_test_end = None
    for fold in folds:
        parts = [fold.part(long_windows, s) for s in ("train", "validation", "calibration", "test")]
        assert all(len(p) for p in parts)
        for earlier, later in itertools.pairwise(parts):
            # Strictly in time order, with at least `purge` candles (>= the longest horizon) between.
            assert earlier.end_ts.max() < later.end_ts.min()
            between = np.sum((times > earlier.end_ts.max()) & (times < later.end_ts.min()))
            assert between >= sizes.purge >= max(long_windows.horizons)
            # No label of a split is realised at or after the next split's first window.
            labelled = earlier.label_ts[earlier.valid]
            assert labelled.size and labelled.max() < later.end_ts.min()
        test = parts[3]
        if previous_test_end is not None:
            assert test.end_ts.min() > previous_test_end
        previous_test_end = test.end_ts.max()
        assert len(np.unique(test.end_ts)) == sizes.test
    # Expanding windows: later folds train on more, and the last test block ends with the data.
    assert [len(f.train) for f in folds] == sorted(len(f.train) for f in folds)
    assert long_windows.end_ts[folds[-1].test].max() == times[-1]


def test_a_purge_shorter_than_the_longest_horizon_is_refused(long_windows: WindowSet) -> None:
    with pytest.raises(DataError, match="purge gap 2 is shorter than the longest horizon 3"):
        walk_forward(long_windows, SplitSizes(folds=1, test=10, validation=10, calibration=10, purge=2))


def test_too_little_data_for_the_folds_is_refused(long_windows: WindowSet) -> None:
    with pytest.raises(DataError, match="too few"):
        walk_forward(long_windows, SplitSizes(folds=20, test=60, validation=40, calibration=40, purge=5))


def test_a_bad_spec_is_refused() -> None:
    with pytest.raises(DataError, match="calendar"):
        spec("tolerate", calendar="lunar")
    with pytest.raises(DataError, match="horizons"):
        WindowSpec.build(
            length=8, interval="1d", calendar="weekdays", gap_policy="reset", max_missing=0, horizons=(5, 1)
        )
    assert Interval.parse("1d", "weekdays") == spec("reset").interval
    assert spec("forward_fill").policy == GapPolicy(GapMode.FORWARD_FILL, 3)
