"""The post-model bench runs both codes on the same closes and checks their outputs equal before timing."""

from __future__ import annotations

import pytest

from candlecast.bench import post_model


@pytest.mark.parametrize("strategy", ["default", "memory"])
def test_post_model_bench_compares_old_and_new_on_identical_outputs(
    strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the last commit, a small close: every stage is timed for both codes and the outputs of
    each round were found identical (the bench stops otherwise)."""
    post_model.main(["--base", "HEAD", "--symbols", "60", "--rounds", "1", "--strategy", strategy])
    out = capsys.readouterr().out
    assert "identical outputs in every round" in out
    for stage in (*post_model.STAGES, "total"):
        assert f"  {stage} " in out
