"""A systemd unit's resource limits for a bench's child process where systemd is not PID 1: cgroup v1
groups standing in for ``CPUQuota=``, ``CPUWeight=`` and ``MemoryMax=``, joined by a shell that then
becomes the limited command.

Each group is made under the v1 hierarchy (``/sys/fs/cgroup/cpu``, and this process's own
``memory`` group, which a container may place below the root), written once, and removed when the
bench is done with it. Where the hierarchies are not writable, ``cgroups_writable`` says so before
anything is made.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
"""The least ``cpu.shares`` the kernel accepts: CPU time only where nothing weightier wants it."""


@dataclass(frozen=True)
class Limits:
    applied: list[str]
    """Each limit as the unit states it, with what stands in for it here."""
    prefix: list[str]
    """What the command line starts with to run under them."""


def cgroups_writable(controllers: Iterable[str] = ("cpu", "memory"), root: Path = CGROUP_V1) -> bool:
    """Whether this process may make groups under each of ``controllers``' v1 hierarchies."""
    return all(os.access(root / c, os.W_OK) for c in controllers)


def unwritable(controllers: Iterable[str] = ("cpu", "memory"), root: Path = CGROUP_V1) -> str:
    """Why the limits cannot stand in here: the hierarchies this process may not write, as a sentence."""
    missing = [str(root / c) for c in controllers if not os.access(root / c, os.W_OK)]
    return (
        f"cgroup v1 hierarchies not writable here ({', '.join(missing)}): the unit's CPUQuota=, CPUWeight= and "
        "MemoryMax= cannot be stood in for (run as root in a host or container with cgroup v1 mounted read-write)"
    )


def memory_root(root: Path = CGROUP_V1) -> Path:
    """This process's own memory cgroup (a container may place it below the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return root / "memory" / path.lstrip("/")
    return root / "memory"


def cpu_quota_us(percent: int) -> int:
    """``cpu.cfs_quota_us`` for ``CPUQuota=percent%`` over ``CPU_PERIOD_US``."""
    return CPU_PERIOD_US * percent // 100


def nice_weight(niceness: int) -> float:
    """The scheduler's weight of a task at ``niceness`` (1024 at 0, each step about 1.25 times less)."""
    return 1024 / 1.25**niceness


@contextlib.contextmanager
def cgroup(path: Path, settings: Mapping[str, str]) -> Iterator[Path]:
    """The group at ``path``, made if missing, with ``settings`` (file name to value) written in order;
    removed on exit (left in place if a process still holds it)."""
    path.mkdir(exist_ok=True)
    try:
        for name, value in settings.items():
            (path / name).write_text(f"{value}\n")
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()


def cpu_settings(quota_percent: int, shares: int) -> dict[str, str]:
    """A ``cpu`` group's files for a quota of ``quota_percent`` of one CPU and ``shares``."""
    return {
        "cpu.cfs_period_us": str(CPU_PERIOD_US),
        "cpu.cfs_quota_us": str(cpu_quota_us(quota_percent)),
        "cpu.shares": str(max(MIN_CPU_SHARES, shares)),
    }


def joining(groups: Sequence[Path], then: Sequence[str] = ()) -> list[str]:
    """A command prefix: a shell that moves itself into each of ``groups``, runs the shell steps ``then``,
    and becomes the command that follows (same process, so its children start inside the groups)."""
    steps = [f"echo $$ > {shlex.quote(str(group / 'cgroup.procs'))}" for group in groups]
    return ["sh", "-c", " && ".join([*steps, *then, 'exec "$@"']), "sh"]
