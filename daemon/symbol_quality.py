"""Live quality per (symbol, interval): hit rate, Brier score and calibration of resolved predictions.

``daemon.monitoring.ModelMonitor`` resolves each prediction through its ``OutcomeTracker`` and
hands the outcomes of each key here as well as to its model-wide ``RollingQuality``. Per key only
running sums are kept (per horizon: count, hits, squared error, and the ten calibration bins'
counts and sums), so a key costs a few hundred bytes; the figures cover every outcome resolved
since the model in service was loaded and use the same definitions as ``daemon.quality``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from daemon.quality import CALIBRATION_BINS, Outcome
from daemon.window import WindowKey

_COUNT, _HITS, _SQUARED = 0, 1, 2
_BIN_COUNTS = 3
_BIN_P = _BIN_COUNTS + CALIBRATION_BINS
_BIN_UP = _BIN_P + CALIBRATION_BINS
_WIDTH = _BIN_UP + CALIBRATION_BINS


@dataclass(frozen=True, slots=True)
class KeyQualityReport:
    horizon: int
    resolved: int
    hit_rate: float
    brier: float
    ece: float


class SymbolQuality:
    """Running quality sums per key and horizon, for at most ``capacity`` keys (least recently resolved forgotten)."""

    def __init__(self, horizons: Sequence[int], *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.horizons = tuple(horizons)
        self._capacity = capacity
        self._sums: OrderedDict[WindowKey, npt.NDArray[np.float64]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sums)

    def add(self, key: WindowKey, outcomes: Sequence[Outcome]) -> None:
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = np.zeros((len(self.horizons), _WIDTH))
            while len(self._sums) > self._capacity:
                self._sums.popitem(last=False)
        else:
            self._sums.move_to_end(key)
        for index, probability, up in outcomes:
            row = sums[index]
            y = 1.0 if up else 0.0
            row[_COUNT] += 1
            row[_HITS] += (probability > 0.5) == up
            row[_SQUARED] += (probability - y) ** 2
            which = min(int(probability * CALIBRATION_BINS), CALIBRATION_BINS - 1)
            row[_BIN_COUNTS + which] += 1
            row[_BIN_P + which] += probability
            row[_BIN_UP + which] += y

    def report(self, key: WindowKey) -> list[KeyQualityReport]:
        """Figures per horizon with at least one resolved outcome; empty for an unknown key."""
        sums = self._sums.get(key)
        if sums is None:
            return []
        reports = []
        for horizon, row in zip(self.horizons, sums, strict=True):
            count = row[_COUNT]
            if count == 0:
                continue
            gap = np.abs(row[_BIN_UP:_WIDTH] - row[_BIN_P:_BIN_UP]).sum()
            reports.append(
                KeyQualityReport(
                    horizon, int(count), float(row[_HITS] / count), float(row[_SQUARED] / count), float(gap / count)
                )
            )
        return reports
