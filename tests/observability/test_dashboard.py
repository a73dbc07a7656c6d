"""The Grafana dashboard and its provisioning files, as shipped in deploy/grafana."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from tests.observability.promql import DASHBOARD, ROOT, dashboard_expressions, load_dashboard

GRAFANA = ROOT / "deploy" / "grafana"
ROWS = ["Overview", "Traffic", "Latency", "Kafka", "Drift", "Live model quality", "Errors"]


def test_json_is_what_the_generator_makes() -> None:
    """deploy/grafana/dashboard.py (grafana-foundation-sdk) is the source; the JSON must not drift from it."""
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboard.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def panels_by_row(board: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel)
    return rows


def test_rows_panels_and_queries() -> None:
    board = load_dashboard()
    rows = panels_by_row(board)
    assert list(rows) == ROWS
    assert all(rows.values())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'job="candlecast", instance=~"$instance"' in target["expr"], target["expr"]
    # No per-symbol label anywhere: cardinality stays bounded.
    assert all("symbol" not in e.expr for e in dashboard_expressions(board))
    titles = {p["title"] for p in panels}
    assert {
        "End to end",
        "Consumer lag",
        "Feature PSI",
        "Hit rate",
        "Dead letters",
        "Share of BUY / SELL / HOLD",
    } <= titles


def test_grid_does_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_provisioning_points_at_the_dashboard() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "candlecast.yml").read_text())
    [source] = sources["datasources"]
    assert source["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "candlecast.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/candlecast")
    assert DASHBOARD.parent.name == "dashboards"
    assert load_dashboard()["uid"] == "candlecast"
