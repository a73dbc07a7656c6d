"""The cgroup v1 stand-ins for a systemd unit's limits (``candlecast.bench.unit_limits``), as the retraining
and stream-cost benches run their children under them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from candlecast.bench.stream_cost import GROUP, deployed_limits
from candlecast.bench.unit_limits import (
    CGROUP_V1,
    CPU_PERIOD_US,
    cgroup,
    cgroups_writable,
    cpu_settings,
    joining,
    unwritable,
)

REAL_CGROUPS = pytest.mark.skipif(not cgroups_writable(), reason="cgroup v1 cpu and memory not writable here")


def _own_groups(prefix: list[str]) -> dict[str, str]:
    """The groups a command run after ``prefix`` finds itself in, per v1 controller."""
    lines = subprocess.run([*prefix, "cat", "/proc/self/cgroup"], capture_output=True, text=True, check=True).stdout
    return {controllers: path for _, controllers, path in (line.split(":", 2) for line in lines.splitlines())}


def test_the_joining_shell_enrols_itself_then_becomes_the_command(tmp_path: Path) -> None:
    """The prefix writes its own pid into each group's ``cgroup.procs`` (quoting odd paths), runs the extra
    steps, then execs the command in the same process, so the command's pid is the one enrolled."""
    groups = [tmp_path / "cpu group", tmp_path / "memory"]
    for group in groups:
        group.mkdir()
    step = f"echo done > {tmp_path / 'step'}"
    out = subprocess.run([*joining(groups, [step]), "sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    pid = out.stdout.strip()
    assert pid.isdigit()
    assert [(group / "cgroup.procs").read_text().strip() for group in groups] == [pid, pid]
    assert (tmp_path / "step").read_text() == "done\n"


def test_a_group_is_written_in_order_and_removed_when_empty(tmp_path: Path) -> None:
    """``cgroup`` makes the directory, writes each setting, and removes the directory on exit when it can."""
    with cgroup(tmp_path / "g", cpu_settings(50, 1)) as group:
        assert (group / "cpu.cfs_quota_us").read_text() == f"{CPU_PERIOD_US // 2}\n"
        assert (group / "cpu.shares").read_text() == "2\n"
        written = sorted(p.name for p in group.iterdir())
    assert written == ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"]
    with cgroup(tmp_path / "empty", {}):
        assert (tmp_path / "empty").is_dir()
    assert not (tmp_path / "empty").exists()


def test_unwritable_hierarchies_are_named_and_the_limited_arm_refuses_to_run(tmp_path: Path) -> None:
    """Where a v1 hierarchy is missing the stand-ins are reported unavailable, naming it, and the stream-cost
    bench's ``limited`` arm raises that reason instead of running unlimited under its name."""
    (tmp_path / "cpu").mkdir()
    assert cgroups_writable(("cpu",), tmp_path)
    assert not cgroups_writable(root=tmp_path)
    assert str(tmp_path / "memory") in unwritable(root=tmp_path)
    assert str(tmp_path / "cpu") not in unwritable(root=tmp_path).split("(")[1]
    with (
        pytest.raises(RuntimeError, match="--limited: cgroup v1 hierarchies not writable"),
        deployed_limits(50, tmp_path),
    ):
        pytest.fail("the limits stood in without their cgroups")
    assert not any((tmp_path / "cpu").iterdir())


@REAL_CGROUPS
def test_the_stream_units_stand_ins_hold_the_server_and_the_clients() -> None:
    """Run under the limited arm's prefixes, a command finds itself in the server's cpu and memory groups
    (quota half a period, 1 GiB) or the clients' cpu group (the least shares, the given quota); the groups
    are gone afterwards."""
    with deployed_limits(30) as deployed:
        server_groups = _own_groups(deployed.server.prefix)
        clients_groups = _own_groups(deployed.clients.prefix)
        name = f"{GROUP}-{os.getpid()}"
        server_cpu = CGROUP_V1 / "cpu" / f"{name}-server"
        clients_cpu = CGROUP_V1 / "cpu" / f"{name}-clients"
        assert (server_cpu / "cpu.cfs_quota_us").read_text() == f"{CPU_PERIOD_US // 2}\n"
        assert (clients_cpu / "cpu.cfs_quota_us").read_text() == f"{CPU_PERIOD_US * 30 // 100}\n"
        assert (clients_cpu / "cpu.shares").read_text() == "2\n"
        server_shares = int((server_cpu / "cpu.shares").read_text())
    assert server_groups["cpu"] == f"/{name}-server"
    assert server_groups["memory"].endswith(f"/{name}-server")
    assert clients_groups["cpu"] == f"/{name}-clients"
    assert clients_groups["memory"] == _own_groups([])["memory"]
    assert server_shares == round(1024 / 1.25 ** os.nice(0) * 20 / 100)
    assert not server_cpu.exists() and not clients_cpu.exists()
