"""systemd/candlecast-stream.service: the stream server beside the daemon, below its priority and within a
CPU quota, checked by systemd's own tools where they are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.observability.test_systemd_unit import INSTALLED_EXEC, SYSTEMD_ANALYZE, UNIT_DIR, directives

SERVICE = UNIT_DIR / "candlecast-stream.service"


def test_the_unit_runs_the_stream_server_niced_within_a_cpu_quota() -> None:
    """``candlecast stream-server`` (never the daemon) on the daemon's config, notify-ready, at nice 10 and at
    most half a CPU, after the network as the daemon's unit."""
    unit = directives(SERVICE)
    daemon = directives(UNIT_DIR / "candlecast.service")
    [command] = unit["ExecStart"]
    assert command == f"{INSTALLED_EXEC} stream-server --config /etc/candlecast/candlecast.toml"
    assert unit["Type"] == ["notify"]
    assert unit["Nice"] == ["10"]
    assert unit["CPUQuota"] == ["50%"]
    assert unit["MemoryMax"] == ["1G"]
    assert unit["After"] == daemon["After"] and unit["Wants"] == daemon["Wants"]
    assert unit["User"] == ["candlecast"]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say (ExecStart pointed at this environment's ``candlecast``)."""
    assert SYSTEMD_ANALYZE is not None
    executable = Path(sys.executable).parent / "candlecast"
    (tmp_path / SERVICE.name).write_text(SERVICE.read_text().replace(INSTALLED_EXEC, str(executable)))
    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", SERVICE.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
