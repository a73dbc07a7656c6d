"""Checkpoints and rebuild planning: where a newly assigned partition is read from, from its commit alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.checkpoint import Checkpoint, PartitionStart, plan_start, rebuild_offset_from

offsets = st.integers(min_value=0, max_value=10**12)
foreign_metadata = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=40),
    st.just('{"v":2,"rebuild_from":3}'),
    st.just('{"v":1,"rebuild_from":-1}'),
    st.just('{"v":1}'),
)


def test_a_partition_the_group_never_committed_follows_the_reset_policy() -> None:
    """No committed offset (Kafka's -1): no plan, the consumer's auto_offset_reset decides."""
    assert plan_start(-1, "", 0) is None
    assert plan_start(-1, Checkpoint(5, 2).metadata(), 0) is None


def test_windows_to_rebuild_are_replayed_from_the_rebuild_offset_up_to_the_commit() -> None:
    """A commit at 100 whose windows reach back to 40: read from 40, records 40..99 only rebuild windows."""
    assert plan_start(100, Checkpoint(100, 40).metadata(), 0) == PartitionStart(40, 100, truncated=False)


def test_retention_moves_the_replay_to_the_log_start_and_says_so() -> None:
    """Records before the log start are gone: the replay starts there, and the plan says it is incomplete."""
    assert plan_start(100, Checkpoint(100, 40).metadata(), 70) == PartitionStart(70, 100, truncated=True)


@given(committed=offsets, metadata=foreign_metadata, log_start=offsets)
def test_metadata_from_anyone_else_resumes_at_the_commit_without_replay(
    committed: int, metadata: str | None, log_start: int
) -> None:
    """Metadata this daemon did not write (another tool's, an old version's, garbage) never moves the start."""
    if rebuild_offset_from(metadata) is not None:
        return
    assert plan_start(committed, metadata, log_start) == PartitionStart(committed, None, truncated=False)


@given(committed=offsets, rebuild_from=offsets, log_start=offsets)
def test_the_plan_reads_every_surviving_record_a_window_needs_and_nothing_before(
    committed: int, rebuild_from: int, log_start: int
) -> None:
    """From a checkpoint the daemon wrote: the first offset is the oldest record still inside a window that
    retention kept, replay stops exactly at the commit, and only a deleted start is reported truncated."""
    plan = plan_start(committed, Checkpoint(committed, rebuild_from).metadata(), log_start)
    assert plan is not None
    if rebuild_from >= committed:
        assert plan == PartitionStart(committed, None, truncated=False)
        return
    assert plan.seek == max(rebuild_from, log_start)
    assert plan.truncated == (rebuild_from < log_start)
    assert plan.replay_until == (committed if plan.seek < committed else None)


@given(offset=offsets, rebuild_from=offsets)
def test_checkpoint_metadata_round_trips(offset: int, rebuild_from: int) -> None:
    """The rebuild offset written into the commit metadata is the one read back."""
    assert rebuild_offset_from(Checkpoint(offset, rebuild_from).metadata()) == rebuild_from
