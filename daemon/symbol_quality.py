"""Live quality per (symbol, interval): hit rate, Brier score and calibration of resolved predictions.

``daemon.monitoring.ModelMonitor`` resolves each prediction through its ``OutcomeTracker`` and
hands the outcomes of each key here as well as to its model-wide ``RollingQuality``. Per key only
running sums are kept (per horizon: count, hits, squared error, and the ten calibration bins'
counts and sums), so a key costs a few hundred bytes; the figures cover every outcome resolved
since the model in service was loaded and use the same definitions as ``daemon.quality``.

The sums of a key are a flat ``array('d')``: an element update is a plain double addition, a
fraction of a numpy scalar update's cost (several per outcome, on the publish path), with the same
result, and the collector does not track the arrays. Reports read them back as numpy arrays.
"""

from __future__ import annotations

from array import array
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
        self._sums: OrderedDict[WindowKey, array[float]] = OrderedDict()
        self._zeros = array("d", bytes(8 * len(self.horizons) * _WIDTH))

    def __len__(self) -> int:
        return len(self._sums)

    def add(self, key: WindowKey, outcomes: Sequence[Outcome]) -> None:
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = array("d", self._zeros)
            while len(self._sums) > self._capacity:
                self._sums.popitem(last=False)
        else:
            self._sums.move_to_end(key)
        for index, probability, up in outcomes:
            row = index * _WIDTH
            y = 1.0 if up else 0.0
            sums[row + _COUNT] += 1.0
            sums[row + _HITS] += (probability > 0.5) == up
            sums[row + _SQUARED] += (probability - y) ** 2
            which = row + min(int(probability * CALIBRATION_BINS), CALIBRATION_BINS - 1)
            sums[which + _BIN_COUNTS] += 1.0
            sums[which + _BIN_P] += probability
            sums[which + _BIN_UP] += y

    def report(self, key: WindowKey) -> list[KeyQualityReport]:
        """Figures per horizon with at least one resolved outcome; empty for an unknown key."""
        flat = self._sums.get(key)
        if flat is None:
            return []
        sums: npt.NDArray[np.float64] = np.frombuffer(flat, dtype=np.float64).reshape(len(self.horizons), _WIDTH)
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
