"""Turning alert conditions into expressions that return a sample for every series they compare."""

from __future__ import annotations

import pytest

from tests.observability.promql import comparisons_as_bool, fill_variables


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="candlecast"} == 0', 'up{job="candlecast"} == bool 0'),
        ('a{x!="1", y=~"a|b"} > 0.5 and b >= 1', 'a{x!="1", y=~"a|b"} > bool 0.5 and b >= bool 1'),
        ("a < on (h) (b - 0.1)", "a < bool on (h) (b - 0.1)"),
        ('a{s="<>="} != 2', 'a{s="<>="} != bool 2'),
    ],
)
def test_comparisons_as_bool(expr: str, expected: str) -> None:
    assert comparisons_as_bool(expr) == expected


def test_grafana_variables_are_filled_in() -> None:
    assert fill_variables('rate(x{instance=~"$instance"}[$__rate_interval])') == 'rate(x{instance=~".*"}[1m])'
    with pytest.raises(AssertionError):
        fill_variables('x{a="$unknown"}')
