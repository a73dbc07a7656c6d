"""systemd/candlecast.service and its companions, checked by systemd's own tools.

``systemd-analyze verify`` resolves ExecStart, so it runs on a copy of the unit whose ExecStart
is this environment's ``candlecast`` instead of ``/opt/candlecast/venv/bin/candlecast``; nothing
else changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.service import DEBUG_BLOCK_LOOP_VARIABLE
from daemon.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT_DIR = ROOT / "systemd"
UNIT = UNIT_DIR / "candlecast.service"
INSTALLED_EXEC = "/opt/candlecast/venv/bin/candlecast"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEMD_SYSUSERS = shutil.which("systemd-sysusers")
EXPOSURE_LIMIT = 2.0


def directives(path: Path) -> dict[str, list[str]]:
    """Each key's values in file order (systemd keys may repeat, so configparser will not do)."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def local_copy(tmp_path: Path) -> Path:
    executable = Path(sys.executable).parent / "candlecast"
    assert executable.exists()
    copy = tmp_path / "candlecast.service"
    text = UNIT.read_text()
    assert INSTALLED_EXEC in text
    copy.write_text(text.replace(INSTALLED_EXEC, str(executable)))
    return copy


def test_unit_asks_for_what_operations_needs() -> None:
    unit = directives(UNIT)
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "Restart": ["on-failure"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "User": ["candlecast"],
        "EnvironmentFile": ["-/etc/candlecast/candlecast.env"],
        "ProtectSystem": ["strict"],
        "NoNewPrivileges": ["yes"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "CapabilityBoundingSet": [""],
        "SystemCallFilter": ["@system-service", "~@privileged"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    }
    for key, values in expected.items():
        assert unit.get(key) == values, key
    [watchdog] = unit["WatchdogSec"]
    assert int(watchdog) >= 10  # keep-alives every WatchdogSec/2 from the event loop
    assert unit["ExecStart"] == [f"{INSTALLED_EXEC} run --config /etc/candlecast/candlecast.toml"]
    for companion in ("candlecast.service", "candlecast.env.example"):
        assert DEBUG_BLOCK_LOOP_VARIABLE not in (UNIT_DIR / companion).read_text()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(local_copy(tmp_path))], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_exposure_score_is_low_and_documented(tmp_path: Path) -> None:
    """``systemd-analyze security --offline=yes`` (systemd >= 250) scores the unit file itself."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for candlecast\.service: (\d+\.\d+) (\w+)", done.stdout)
    assert match, done.stdout
    score = float(match[1])
    assert score <= EXPOSURE_LIMIT, done.stdout
    documented = re.search(
        r"exposure level[^\n]*?\*\*(\d+\.\d+) (\w+)\*\*", (ROOT / "docs" / "operations.md").read_text()
    )
    assert documented, "docs/operations.md does not state the exposure score"
    assert (float(documented[1]), documented[2]) == (score, match[2])


@pytest.mark.skipif(SYSTEMD_SYSUSERS is None, reason="systemd-sysusers is not installed")
def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    assert SYSTEMD_SYSUSERS is not None
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [SYSTEMD_SYSUSERS, f"--root={tmp_path}", str(UNIT_DIR / "candlecast.sysusers")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [entry] = [
        line for line in (tmp_path / "etc" / "passwd").read_text().splitlines() if line.startswith("candlecast:")
    ]
    assert entry.endswith(":/var/lib/candlecast:/usr/sbin/nologin")


def test_example_config_is_valid() -> None:
    settings = load_settings(UNIT_DIR / "candlecast.toml.example")
    assert settings.http.port == 9464
    assert settings.model.registry == Path("/var/lib/candlecast/registry")
