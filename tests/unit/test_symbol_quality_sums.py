"""Per-key live quality kept in flat double arrays reports what numpy rows of the same sums report, bit for bit."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.quality import CALIBRATION_BINS, Outcome
from daemon.symbol_quality import KeyQualityReport, SymbolQuality
from daemon.window import WindowKey

HORIZONS = (1, 5, 20)
WIDTH = 3 + 3 * CALIBRATION_BINS


def reference_reports(outcomes: list[tuple[WindowKey, list[Outcome]]], key: WindowKey) -> list[KeyQualityReport]:
    """The sums as numpy rows updated one outcome at a time (how they were kept before), then the figures."""
    sums: npt.NDArray[np.float64] = np.zeros((len(HORIZONS), WIDTH))
    for owner, resolved in outcomes:
        if owner != key:
            continue
        for index, probability, up in resolved:
            row = sums[index]
            y = 1.0 if up else 0.0
            row[0] += 1
            row[1] += (probability > 0.5) == up
            row[2] += (probability - y) ** 2
            which = min(int(probability * CALIBRATION_BINS), CALIBRATION_BINS - 1)
            row[3 + which] += 1
            row[3 + CALIBRATION_BINS + which] += probability
            row[3 + 2 * CALIBRATION_BINS + which] += y
    reports = []
    for horizon, row in zip(HORIZONS, sums, strict=True):
        count = row[0]
        if count == 0:
            continue
        gap = np.abs(row[3 + 2 * CALIBRATION_BINS :] - row[3 + CALIBRATION_BINS : 3 + 2 * CALIBRATION_BINS]).sum()
        reports.append(
            KeyQualityReport(horizon, int(count), float(row[1] / count), float(row[2] / count), float(gap / count))
        )
    return reports


outcome = st.tuples(
    st.integers(min_value=0, max_value=len(HORIZONS) - 1),
    st.one_of(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 0.5, 0.1, 0.3, 0.7, 0.9, 1.0])),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.lists(outcome, min_size=1, max_size=6)), max_size=40))
def test_flat_sums_report_as_numpy_rows(batches: list[tuple[str, list[Outcome]]]) -> None:
    """Any sequence of resolved outcomes of a few keys gives every key the reports the numpy-row sums
    give, float for float (the same additions in the same order)."""
    quality = SymbolQuality(HORIZONS, capacity=10)
    keyed = [((symbol, "1d"), resolved) for symbol, resolved in batches]
    for key, resolved in keyed:
        quality.add(key, resolved)
    for symbol in "ABC":
        key = (symbol, "1d")
        assert quality.report(key) == reference_reports(keyed, key)
        assert bool(quality.report(key)) == any(owner == key for owner, _ in keyed)
