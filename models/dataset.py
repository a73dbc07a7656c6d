"""Windows and labels from candle files, built exactly as the daemon's ``WindowStore`` holds them,
and time-ordered walk-forward splits with purge gaps.

A window is the ``T`` candles the daemon would hold when a candle arrives: candles the daemon
rejects (misaligned open times, inconsistent prices, duplicates) never enter it, and the gap
policy decides, per symbol, whether a missing stretch is ignored, filled with flat candles, or
starts the window again. Training on anything else would teach the model windows it never serves.
One exception: a price jump without a market move (a split in unadjusted prices, ``models.hygiene``)
starts a new run, so no window or label straddles it; the daemon still serves such windows.

Labels: for horizon ``h``, ``up`` is ``close[t+h] > close[t]`` strictly, where ``t`` is the window's
newest candle and ``t+h`` the ``h``-th candle after it in the same run of candles (no reset in
between). A tie counts as not up. A label is missing when the run ends before ``t+h``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from candlecast.candlefile import CandleTable, read_candles
from candlecast.errors import DataError
from daemon.candle import CandleMessage, CandleValidator, Rejection
from daemon.intervals import Calendar, Interval
from daemon.window import GapMode, GapPolicy
from models.hygiene import Jump, find_jumps, jump_rows

logger = logging.getLogger(__name__)

GapPolicyName = Literal["reset", "tolerate", "forward_fill"]
CALENDARS: dict[str, Calendar] = {"continuous": "continuous", "weekdays": "weekdays"}
GAP_POLICIES: dict[str, GapPolicyName] = {"reset": "reset", "tolerate": "tolerate", "forward_fill": "forward_fill"}
NO_LABEL = -1
"""``label_ts`` of a window whose future candle is not in its run."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How windows are cut from candles: the daemon's view of one interval, plus the horizons."""

    length: int
    interval: Interval
    policy: GapPolicy
    horizons: tuple[int, ...]

    @classmethod
    def build(
        cls,
        *,
        length: int,
        interval: str,
        calendar: str,
        gap_policy: str,
        max_missing: int,
        horizons: Sequence[int],
    ) -> WindowSpec:
        if length < 2:
            raise DataError(f"window length {length}: a window needs at least 2 candles")
        if not horizons or min(horizons) < 1 or list(horizons) != sorted(set(horizons)):
            raise DataError(f"horizons {list(horizons)} must be positive, distinct and ascending")
        if calendar not in CALENDARS:
            raise DataError(f"calendar {calendar!r}: use {' or '.join(CALENDARS)}")
        try:
            parsed = Interval.parse(interval, CALENDARS[calendar])
            mode = GapMode(gap_policy)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        return cls(length, parsed, GapPolicy(mode, max_missing), tuple(horizons))


@dataclass(frozen=True)
class WindowSet:
    """Windows ``[N, T, 5]`` (float32, as the daemon holds them) with their labels, sorted by
    (symbol, end time)."""

    windows: npt.NDArray[np.float32]
    symbols: npt.NDArray[np.str_]
    end_ts: npt.NDArray[np.int64]
    """Open time of each window's newest candle (epoch ms)."""
    label_ts: npt.NDArray[np.int64]
    """``[N, H]`` open time of the candle ``h`` ahead, ``NO_LABEL`` where there is none."""
    log_return: npt.NDArray[np.float64]
    """``[N, H]`` ``log(close[t+h] / close[t])`` from the file's float64 prices; NaN without a label."""
    up: npt.NDArray[np.bool_]
    """``[N, H]`` ``close[t+h] > close[t]``; False without a label (see ``valid``)."""
    horizons: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.end_ts)

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """``[N, H]`` where a label exists."""
        mask: npt.NDArray[np.bool_] = self.label_ts != NO_LABEL
        return mask

    def select(self, rows: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> WindowSet:
        return WindowSet(
            self.windows[rows],
            self.symbols[rows],
            self.end_ts[rows],
            self.label_ts[rows],
            self.log_return[rows],
            self.up[rows],
            self.horizons,
        )

    def labels_before(self, cutoff_ts: int) -> WindowSet:
        """The same windows with every label whose future candle opens at or after ``cutoff_ts``
        dropped: what a split may learn from without seeing the next split's prices."""
        late = self.label_ts >= cutoff_ts
        label_ts = np.where(late, NO_LABEL, self.label_ts)
        return WindowSet(
            self.windows,
            self.symbols,
            self.end_ts,
            label_ts,
            np.where(late, np.nan, self.log_return),
            self.up & ~late,
            self.horizons,
        )

    def time_order(self) -> npt.NDArray[np.int64]:
        """Row order by (end time, symbol)."""
        order: npt.NDArray[np.int64] = np.lexsort((self.symbols, self.end_ts))
        return order


def concat_windows(sets: Sequence[WindowSet]) -> WindowSet:
    if not sets:
        raise DataError("nothing to concatenate")
    return WindowSet(
        np.concatenate([s.windows for s in sets]),
        np.concatenate([s.symbols for s in sets]),
        np.concatenate([s.end_ts for s in sets]),
        np.concatenate([s.label_ts for s in sets]),
        np.concatenate([s.log_return for s in sets]),
        np.concatenate([s.up for s in sets]),
        sets[0].horizons,
    )


def table_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror}") from exc


class CandleAudit(msgspec.Struct, frozen=True):
    """What became of a candle file's rows before windows were cut: the rows the daemon would
    reject, by reason (``duplicate`` for a row not newer than its symbol's last accepted one), and
    the jumps (``models.hygiene``) no window or label may straddle."""

    rows: int
    rejected: dict[str, int]
    jumps: list[Jump]


def audit_rows(table: CandleTable, spec: WindowSpec) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """Rows the daemon would accept, and the others counted by reason: valid for its
    ``CandleValidator`` (symbol, open time aligned to the calendar, consistent prices) and newer
    than the symbol's last accepted candle (the table is sorted by symbol and ts, so an older one
    can only be a duplicate)."""
    keep = np.zeros(len(table), dtype=bool)
    rejected: dict[str, int] = {}
    interval = spec.interval
    validator = CandleValidator({interval.name: interval})
    last: dict[str, int] = {}
    for row in range(len(table)):
        ts, symbol = int(table.ts[row]), str(table.symbols[row])
        o, h, lo, c, v = (float(x) for x in table.ohlcv[row])
        # A historical file has no record time: each candle counts as published when it opened.
        verdict = validator.check(CandleMessage(symbol, interval.name, ts, o, h, lo, c, v), None, ts)
        if isinstance(verdict, Rejection):
            rejected[verdict.reason.value] = rejected.get(verdict.reason.value, 0) + 1
        elif ts > last.get(symbol, -1):
            keep[row] = True
            last[symbol] = ts
        else:
            rejected["duplicate"] = rejected.get("duplicate", 0) + 1
    return keep, rejected


def accepted_rows(table: CandleTable, spec: WindowSpec) -> npt.NDArray[np.bool_]:
    """Rows the daemon would accept (see ``audit_rows``)."""
    return audit_rows(table, spec)[0]


def _series(
    ts: npt.NDArray[np.int64], ohlcv: npt.NDArray[np.float64], spec: WindowSpec, breaks: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """One symbol's candles as the window sees them: open times, values, run number and whether
    each candle was received (not forward-filled). A new run starts at every reset and at every
    candle marked in ``breaks`` (a jump)."""
    interval, policy = spec.interval, spec.policy
    slots = np.array([interval.slot_index(int(t)) for t in ts], dtype=np.int64)
    missing = np.diff(slots) - 1
    out_ts: list[int] = []
    out_values: list[npt.NDArray[np.float64]] = []
    runs: list[int] = []
    received: list[bool] = []
    run = 0
    for i in range(len(ts)):
        gap = int(missing[i - 1]) if i else 0
        if breaks[i]:
            run += 1
        elif gap > 0:
            if gap > policy.max_missing or policy.mode is GapMode.RESET:
                run += 1
            elif policy.mode is GapMode.FORWARD_FILL:
                close = float(ohlcv[i - 1, 3])
                for slot in range(int(slots[i - 1]) + 1, int(slots[i])):
                    out_ts.append(interval.slot_time(slot))
                    out_values.append(np.array([close, close, close, close, 0.0]))
                    runs.append(run)
                    received.append(False)
        out_ts.append(int(ts[i]))
        out_values.append(ohlcv[i])
        runs.append(run)
        received.append(True)
    values = np.stack(out_values) if out_values else np.zeros((0, 5))
    return (
        np.asarray(out_ts, dtype=np.int64),
        values,
        np.asarray(runs, dtype=np.int64),
        np.asarray(received, dtype=bool),
    )


def build_windows(table: CandleTable, spec: WindowSpec) -> WindowSet:
    """Every window the daemon would score for these candles, with its labels, none across a jump."""
    return audited_windows(table, spec)[0]


def audited_windows(table: CandleTable, spec: WindowSpec) -> tuple[WindowSet, CandleAudit]:
    """``build_windows``, with what was rejected and which jumps were cut out."""
    keep, rejected = audit_rows(table, spec)
    table = table.select(keep)
    jumps = find_jumps(table)
    audit = CandleAudit(len(keep), rejected, jumps)
    if jumps:
        logger.warning(
            "%d price jumps without a market move excluded (no window or label across them): %s",
            len(jumps),
            ", ".join(f"{j.symbol} {iso(j.ts)[:10]} {j.log_return:+.2f}" for j in jumps[:10]),
        )
    breaks = jump_rows(table, jumps)
    t_len, horizons = spec.length, spec.horizons
    parts: list[WindowSet] = []
    for symbol, span in table.symbol_slices().items():
        ts, values, runs, received = _series(table.ts[span], table.ohlcv[span], spec, breaks[span])
        n = len(ts)
        if n < t_len:
            continue
        # Position of each candle's run start: a window ends where at least T candles of its run are held.
        starts = np.where(np.r_[True, runs[1:] != runs[:-1]], np.arange(n), 0)
        run_start = np.maximum.accumulate(starts)
        position = np.arange(n)
        ends = position[(position - run_start + 1 >= t_len) & received]
        if ends.size == 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(values, t_len, axis=0)[ends - t_len + 1]
        label_ts = np.full((ends.size, len(horizons)), NO_LABEL, dtype=np.int64)
        log_return = np.full((ends.size, len(horizons)), np.nan)
        up = np.zeros((ends.size, len(horizons)), dtype=bool)
        close = values[:, 3]
        for j, h in enumerate(horizons):
            ahead = ends + h
            inside = ahead < n
            inside[inside] = runs[ahead[inside]] == runs[ends[inside]]
            now, later = ends[inside], ahead[inside]
            label_ts[inside, j] = ts[later]
            log_return[inside, j] = np.log(close[later] / close[now])
            up[inside, j] = close[later] > close[now]
        parts.append(
            WindowSet(
                windows.transpose(0, 2, 1).astype(np.float32),
                np.full(ends.size, symbol),
                ts[ends],
                label_ts,
                log_return,
                up,
                horizons,
            )
        )
    if not parts:
        raise DataError(f"no symbol has {t_len} consecutive candles under the {spec.policy.mode} gap policy")
    return concat_windows(parts), audit


def load_windows(path: Path, spec: WindowSpec, symbols: Sequence[str] | None = None) -> WindowSet:
    return load_audited_windows(path, spec, symbols)[0]


def load_audited_windows(
    path: Path, spec: WindowSpec, symbols: Sequence[str] | None = None
) -> tuple[WindowSet, CandleAudit]:
    table = read_candles(path)
    if symbols:
        unknown = sorted(set(symbols) - {str(s) for s in np.unique(table.symbols)})
        if unknown:
            raise DataError(f"{path}: no candles for {', '.join(unknown)}")
        table = table.only(list(symbols))
    return audited_windows(table, spec)


@dataclass(frozen=True)
class SplitSizes:
    """Lengths, in distinct window-end candles of the pooled timeline, of the walk-forward blocks."""

    folds: int
    test: int
    validation: int
    calibration: int
    purge: int


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row indices of a ``WindowSet`` and the label cut-off of each split.

    Splits follow each other in time (train, validation, calibration, test), separated by
    ``purge`` candles; a split's labels must be realised before the next split's first window
    ends (``labels_before``), so no split learns a price that a later one is judged on.
    """

    index: int
    train: npt.NDArray[np.int64]
    validation: npt.NDArray[np.int64]
    calibration: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    cutoffs: tuple[int, int, int]
    """First window-end time of validation, calibration and test."""

    def part(self, data: WindowSet, split: str) -> WindowSet:
        """A split's windows, its labels cut at the next split's start (test labels are kept)."""
        rows: npt.NDArray[np.int64] = getattr(self, split)
        subset = data.select(rows)
        cut = {"train": 0, "validation": 1, "calibration": 2}.get(split)
        return subset if cut is None else subset.labels_before(self.cutoffs[cut])


def walk_forward(data: WindowSet, sizes: SplitSizes) -> list[Fold]:
    """Expanding-window folds, the last ending with the newest window; oldest fold first.

    Fold ``k``'s test block is the ``k``-th of ``sizes.folds`` consecutive blocks of ``sizes.test``
    window-end candles at the end of the timeline; validation and calibration blocks precede it,
    and training takes everything earlier. Adjacent blocks are ``sizes.purge`` candles apart.
    """
    if sizes.purge < max(data.horizons):
        raise DataError(f"purge gap {sizes.purge} is shorter than the longest horizon {max(data.horizons)}")
    if min(sizes.folds, sizes.test, sizes.validation, sizes.calibration) < 1:
        raise DataError("folds and the test, validation and calibration blocks need at least one candle each")
    times = np.unique(data.end_ts)
    position = np.searchsorted(times, data.end_ts)
    folds: list[Fold] = []
    for k in range(sizes.folds):
        test_end = len(times) - (sizes.folds - 1 - k) * sizes.test
        test_start = test_end - sizes.test
        cal_end = test_start - sizes.purge
        cal_start = cal_end - sizes.calibration
        val_end = cal_start - sizes.purge
        val_start = val_end - sizes.validation
        train_end = val_start - sizes.purge
        if train_end < 1 or test_start >= test_end:
            raise DataError(
                f"{len(times)} window-end candles are too few for {sizes.folds} folds of {sizes.test} test, "
                f"{sizes.validation} validation and {sizes.calibration} calibration candles with a purge of "
                f"{sizes.purge}"
            )

        def rows(start: int, end: int) -> npt.NDArray[np.int64]:
            return np.flatnonzero((position >= start) & (position < end))

        folds.append(
            Fold(
                k,
                rows(0, train_end),
                rows(val_start, val_end),
                rows(cal_start, cal_end),
                rows(test_start, test_end),
                (int(times[val_start]), int(times[cal_start]), int(times[test_start])),
            )
        )
    return folds


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
