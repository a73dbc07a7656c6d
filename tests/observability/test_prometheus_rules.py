"""The shipped Prometheus configuration and alert rules: valid for promtool, unit-tested, documented."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.observability.prometheus_server import PROMTOOL
from tests.observability.promql import PROMETHEUS_DIR, ROOT, RULES, load_rules

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make system-deps)"),
]
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_config_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_rules_are_valid() -> None:
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", str(RULES.relative_to(PROMETHEUS_DIR)))


def test_rule_unit_tests_pass() -> None:
    """Each alert fires when it should, not before its ``for``, and not on a healthy instance."""
    tests = sorted(p.relative_to(PROMETHEUS_DIR) for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    assert "SUCCESS" in promtool("test", "rules", *map(str, tests))


def test_every_alert_is_unit_tested_and_has_a_runbook_section() -> None:
    tested = (PROMETHEUS_DIR / "tests" / "candlecast.rules.test.yml").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in load_rules():
        name = rule["alert"]
        assert f"alertname: {name}\n" in tested, f"{name} has no promtool unit test"
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/operations.md has no section for {name}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
