"""The PromQL the operators see: expressions of the Grafana dashboard and of the alert rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "candlecast.json"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "candlecast.rules.yml"

GRAFANA_VARIABLES = {"$instance": ".*", "$__rate_interval": "1m"}
"""What Grafana would put in place of the dashboard's variables (all instances; a rate window)."""
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*\w+\)$")
_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")


@dataclass(frozen=True)
class Expression:
    where: str
    """The panel or alert it comes from."""
    expr: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def dashboard_expressions(board: dict[str, Any]) -> list[Expression]:
    """Every panel query, and the series behind each ``label_values`` variable, variables filled in."""
    found = [
        Expression(f"panel {panel['title']!r}", fill_variables(target["expr"]))
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: not a label_values() query"
            found.append(Expression(f"variable {variable['name']!r}", fill_variables(match["selector"])))
    return found


def fill_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_expressions(rules: list[dict[str, Any]]) -> list[Expression]:
    return [Expression(f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"].strip()) for rule in rules]


def comparisons_as_bool(expr: str) -> str:
    """The same expression with every comparison returning 0 or 1 instead of filtering.

    An alert's expression is empty on a healthy daemon: that is the point of it. With ``bool``
    comparisons it returns a sample for every series it compares, so an empty result then means
    a metric or label it relies on does not exist. Label matchers (inside braces) and strings
    are left alone.
    """
    out: list[str] = []
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(expr):
        char = expr[i]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(expr[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
            out.append(char)
        elif char == "{":
            depth += 1
            out.append(char)
        elif char == "}":
            depth -= 1
            out.append(char)
        elif depth == 0 and (match := _COMPARISON.match(expr, i)):
            out.append(f"{match.group()} bool")
            i = match.end()
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)
