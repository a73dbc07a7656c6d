"""Planning newly assigned partitions, retried with backoff, for every source.

Planning an assignment reads the group's committed offsets and the log's beginning offsets, and either
can fail for a while (a stable-offset fetch that gives up while a transaction holds the offset open,
``beginning_offsets`` timing out during a broker failover). The partitions stay paused meanwhile, so
nothing reaches the windows before the replay is planned. A plan that still fails after the last
retry leaves them paused and becomes a ``TransportError`` that the source raises at its next poll:
the daemon exits, for a restart or another member to take them, instead of staying paused for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence

import structlog

from candlecast.errors import TransportError

log = structlog.get_logger("candlecast.assignment")

PLAN_BACKOFF_S = (1.0, 2.0, 4.0)
"""Waits between attempts to plan an assignment."""


async def plan_with_retries(
    plan: Callable[[], Awaitable[None]],
    partitions: Sequence[int],
    retriable: tuple[type[Exception], ...],
    sleep: Callable[[float], Awaitable[None]],
) -> TransportError | None:
    """Run ``plan`` until it succeeds, waiting ``PLAN_BACKOFF_S`` between attempts; the failure to raise
    if it never does."""
    for attempt, backoff_s in enumerate((*PLAN_BACKOFF_S, None), start=1):
        try:
            await plan()
        except retriable as exc:
            error = exc
        else:
            return None
        if backoff_s is not None:
            log.warning("assignment failed; retrying", error=repr(error), attempt=attempt, retry_in_s=backoff_s)
            await sleep(backoff_s)
    message = (
        f"could not plan assigned partitions {list(partitions)} after {len(PLAN_BACKOFF_S) + 1} "
        f"attempts (committed and beginning offsets): {error!r}; they stay paused and the daemon "
        f"exits, for a restart or another member to take them"
    )
    log.error("assignment failed; exiting", error=message)
    return TransportError(message)


def paused_reason(paused: Collection[int], failure: Exception | None) -> str | None:
    """Why the source is not ready, for ``/readyz``, while some of its partitions are paused."""
    if failure is not None:
        return str(failure)
    if not paused:
        return None
    return f"partitions {sorted(paused)} paused (their assignment is being planned, or they are draining)"
