"""The retraining bench's child process is stopped within a bound, even one that ignores SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import numpy as np

from candlecast.bench.report import Latency
from candlecast.bench.retraining import beside_retraining

GUARD_S = 30  # a hung stop fails the test instead of blocking the suite; nothing is asserted on time
STUBBORN = (
    "import os, pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
    "pathlib.Path(sys.argv[2]).mkdir()\n"
    "time.sleep(600)\n"
)
"""A retraining that trains (its run directory appears) and ignores the terminate it gets after the phase."""


async def one_signal_phase() -> tuple[Latency, float]:
    return Latency.of(np.array([1.0])), 0.0


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_a_retraining_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    """A child that ignores the terminate after the phase is killed after ``stop_s`` and reaped; the phase's
    figures still come back."""
    pid_file, training = tmp_path / "pid", tmp_path / "run"
    try:
        async with asyncio.timeout(GUARD_S):
            beside = await beside_retraining(
                one_signal_phase,
                command=[sys.executable, "-c", STUBBORN, str(pid_file), str(training)],
                training=training,
                limits=None,
                warmup_s=GUARD_S,
                stop_s=0.5,
            )
        assert beside.training
        assert beside.steady.count == 1
        assert not alive(int(pid_file.read_text()))
    finally:
        if pid_file.exists() and alive(pid := int(pid_file.read_text())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
