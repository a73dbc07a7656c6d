"""The steady-ingest bench runs both codes on the same polls and checks what they made is equal before timing."""

from __future__ import annotations

import pytest

from candlecast.bench import steady_ingest


def test_steady_ingest_bench_compares_old_and_new_on_identical_requests(capsys: pytest.CaptureFixture[str]) -> None:
    """Against the last commit, small polls of a few symbols: both codes are timed per poll and made the same
    requests and checkpoints in every round (the bench stops otherwise)."""
    steady_ingest.main(["--base", "HEAD", "--symbols", "60", "--rounds", "2", "--polls", "50"])
    out = capsys.readouterr().out
    assert "same requests and checkpoints every round" in out
    assert "CPU per poll: old" in out
