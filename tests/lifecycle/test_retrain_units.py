"""systemd/candlecast-retrain.service and .timer: a weekly, persistent, limited process of its own,
checked by systemd's own tools where they are installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.retrain import EXIT_REFUSED
from tests.observability.test_systemd_unit import INSTALLED_EXEC, SYSTEMD_ANALYZE, UNIT_DIR, directives

SERVICE = UNIT_DIR / "candlecast-retrain.service"
TIMER = UNIT_DIR / "candlecast-retrain.timer"


def test_the_service_runs_retrain_alone_under_limits() -> None:
    """A oneshot ``candlecast retrain`` (never the daemon) with CPU, memory, nice and idle-I/O limits,
    for which a refusal (exit 3) is a success."""
    unit = directives(SERVICE)
    [command] = unit["ExecStart"]
    assert command.startswith(f"{INSTALLED_EXEC} retrain ")
    assert unit["Type"] == ["oneshot"]
    assert unit["SuccessExitStatus"] == [str(EXIT_REFUSED)]
    assert unit["CPUQuota"] == ["100%"]
    assert unit["MemoryMax"] == ["4G"]
    assert unit["Nice"] == ["19"]
    assert unit["IOSchedulingClass"] == ["idle"]
    assert unit["User"] == ["candlecast"]


def test_the_timer_is_weekly_persistent_and_spread() -> None:
    """Once a week, catching up after downtime, with a random delay."""
    timer = directives(TIMER)
    assert timer["OnCalendar"] == ["Sat *-*-* 02:00:00 UTC"]
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"] == ["2h"]
    assert timer["Unit"] == [SERVICE.name]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_both_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about either unit (ExecStart pointed at this
    environment's ``candlecast``), and the timer's calendar expression parses."""
    assert SYSTEMD_ANALYZE is not None
    executable = Path(sys.executable).parent / "candlecast"
    (tmp_path / SERVICE.name).write_text(SERVICE.read_text().replace(INSTALLED_EXEC, str(executable)))
    shutil.copy(TIMER, tmp_path / TIMER.name)
    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", SERVICE.name, TIMER.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    calendar = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", directives(TIMER)["OnCalendar"][0]], capture_output=True, text=True, check=True
    )
    assert "Next elapse: Sat" in calendar.stdout
