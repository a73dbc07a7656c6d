"""Live model quality: each prediction is resolved by the candle ``h`` steps later, as training labels are.

Training labels (``models.dataset``): for horizon ``h``, ``up`` is ``close[t+h] > close[t]``, where
``t`` is the window's newest candle and ``t+h`` the ``h``-th candle after it in the same run of
candles, the run being what the window store holds: a gap the policy tolerates does not count
as steps, a forward-filled gap counts one step per flat candle (at the last close), and a reset
ends the run. ``OutcomeTracker`` replays that rule on the live stream of scored candles, per key,
remembering only the predictions still waiting for their outcome (at most the longest horizon per
key, for at most ``capacity`` keys: the window store's bound).

``RollingQuality`` keeps the newest resolved outcomes per horizon and reports the hit rate (the
share of predictions on the right side of 0.5: ``p > 0.5`` for up), the Brier score
(``mean((p - up)**2)``) and the expected calibration error (10 equal-width probability bins,
``sum(n_b / n * |mean(up_b) - mean(p_b)|)``). The model evaluation (``models.metrics``) computes its
figures with these same functions, so live and validation figures compare directly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from daemon.drift import SlidingSample
from daemon.intervals import Interval
from daemon.window import GapMode, GapPolicy, WindowKey

CALIBRATION_BINS = 10


@dataclass(slots=True)
class _KeyState:
    last_slot: int
    """Calendar slot of the key's newest scored candle."""
    last_close: float
    step: int = 0
    """Position of that candle in the key's current run."""
    pending: dict[int, tuple[float, ...]] = field(default_factory=dict)
    """Step -> (close, then the probability of each horizon) of predictions still waiting for an
    outcome: flat tuples of floats, which the garbage collector stops tracking at their first
    collection, so the longest horizon's worth of them per key adds nothing to a full collection's walk."""


Outcome = tuple[int, float, bool]
"""(horizon index, predicted probability of up, whether it went up): tuples, as one is made per
prediction and horizon on the hot path."""

_SLOT_CACHE_SIZE = 4096


class OutcomeTracker:
    """Remembers recent predictions per key and resolves them as later candles of the key arrive."""

    def __init__(
        self,
        horizons: Sequence[int],
        intervals: Mapping[str, Interval],
        policies: Mapping[str, GapPolicy],
        *,
        capacity: int,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.horizons = tuple(horizons)
        self._indexed = tuple(enumerate(self.horizons))
        self._longest = max(self.horizons)
        self._intervals = dict(intervals)
        self._policies = dict(policies)
        self._capacity = capacity
        self._keys: OrderedDict[WindowKey, _KeyState] = OrderedDict()
        # Every symbol's candle of one period has the same open time: its slot is computed once.
        self._slots: dict[tuple[str, int], int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def pending(self) -> int:
        """Predictions waiting for their outcome, all keys together."""
        return sum(len(state.pending) for state in self._keys.values())

    def observe(self, key: WindowKey, ts: int, close: float, probabilities: list[float]) -> list[Outcome]:
        """A scored candle of ``key``: the outcomes it resolves; then its own prediction waits."""
        slot = self._slot(key[1], ts)
        if slot is None:
            return []
        state = self._keys.get(key)
        if state is None:
            self._remember(key, _KeyState(slot, close, pending={0: (close, *probabilities)}))
            return []
        self._keys.move_to_end(key)
        advance = 1 if slot == state.last_slot + 1 else self._steps(key[1], slot - state.last_slot - 1)
        pending = state.pending
        if advance is None:
            # The run ended (a reset, or candles this tracker never saw): nothing pending can resolve.
            pending.clear()
            state.step = 0
            advance = 0
        outcomes: list[Outcome] = []
        current = state.step + advance
        for target in range(state.step + 1, current + 1):
            # Steps before the newest were forward-filled: flat candles at the last close.
            target_close = close if target == current else state.last_close
            for index, horizon in self._indexed:
                waiting = pending.get(target - horizon)
                if waiting is not None:
                    outcomes.append((index, waiting[index + 1], target_close > waiting[0]))
        oldest_needed = current - self._longest
        while pending and (oldest := next(iter(pending))) <= oldest_needed:
            del pending[oldest]
        state.step, state.last_slot, state.last_close = current, slot, close
        pending[current] = (close, *probabilities)
        return outcomes

    def _slot(self, interval_name: str, ts: int) -> int | None:
        slot = self._slots.get((interval_name, ts))
        if slot is None:
            interval = self._intervals.get(interval_name)
            if interval is None:
                return None
            if len(self._slots) >= _SLOT_CACHE_SIZE:
                self._slots.clear()
            slot = self._slots[(interval_name, ts)] = interval.slot_index(ts)
        return slot

    def _steps(self, interval_name: str, missing: int) -> int | None:
        """Steps of the run across ``missing`` empty slots; ``None`` when the run broke there."""
        if missing < 0:
            return None
        policy = self._policies.get(interval_name, GapPolicy())
        # A gap the window store reset on, or candles it held while this key was re-warming
        # (after an eviction or a reset) which were never scored, so never seen here.
        if missing > policy.max_missing or policy.mode is GapMode.RESET:
            return None
        return missing + 1 if policy.mode is GapMode.FORWARD_FILL else 1

    def _remember(self, key: WindowKey, state: _KeyState) -> None:
        self._keys[key] = state
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


@dataclass(frozen=True, slots=True)
class QualityReport:
    samples: int
    hit_rate: float
    brier: float
    ece: float


def hit_rate(probabilities: npt.ArrayLike, up: npt.ArrayLike) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean((p > 0.5) == np.asarray(up, dtype=bool)))


def brier_score(probabilities: npt.ArrayLike, up: npt.ArrayLike) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean((p - np.asarray(up, dtype=np.float64)) ** 2))


def expected_calibration_error(probabilities: npt.ArrayLike, up: npt.ArrayLike, bins: int = CALIBRATION_BINS) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(up, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=y, minlength=bins) - np.bincount(which, weights=p, minlength=bins))
    # |sum(y_b) - sum(p_b)| / n is n_b / n * |mean(y_b) - mean(p_b)|.
    return float(gap.sum() / counts.sum()) if counts.sum() else 0.0


class RollingQuality:
    """The newest ``window`` resolved outcomes per horizon, and quality figures over them."""

    def __init__(self, horizons: Sequence[int], *, window: int, min_outcomes: int) -> None:
        self.horizons = tuple(horizons)
        self._samples = [SlidingSample(window, 2) for _ in self.horizons]
        self._min_outcomes = min_outcomes
        self.resolved = [0] * len(self.horizons)
        """Outcomes ever resolved, per horizon."""
        self._reports: dict[int, QualityReport] = {}
        self._report_seen = [-1] * len(self.horizons)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        rows = np.array(outcomes, dtype=np.float64)  # columns: horizon index, probability, up
        for index, sample in enumerate(self._samples):
            mine = rows[rows[:, 0] == index, 1:]
            if len(mine):
                sample.extend(mine)
                self.resolved[index] += len(mine)

    def samples(self, horizon_index: int) -> int:
        return len(self._samples[horizon_index])

    def report(self, horizon_index: int) -> QualityReport | None:
        """Quality over the window of one horizon; ``None`` until it holds ``min_outcomes`` outcomes."""
        sample = self._samples[horizon_index]
        if len(sample) < self._min_outcomes:
            return None
        if self._report_seen[horizon_index] != sample.seen:
            rows = sample.values()
            p, up = rows[:, 0], rows[:, 1]
            self._reports[horizon_index] = QualityReport(
                len(rows), hit_rate(p, up), brier_score(p, up), expected_calibration_error(p, up)
            )
            self._report_seen[horizon_index] = sample.seen
        return self._reports[horizon_index]
