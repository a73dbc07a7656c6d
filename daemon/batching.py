"""When to run a forward pass: the micro-batch policy, as a pure function of the queue's state.

The default is *continuous batching*: whenever the inference worker is free it takes everything
waiting, up to ``max_batch``. At light load that is a batch of one, scored at once; under heavy
load requests pile up while a forward pass runs, so the next batch is large and throughput
approaches the model's ceiling. The batch size follows the load with no waiting.

A positive ``max_wait_s`` trades latency for larger batches (meant for a GPU, where a forward pass
of a few rows costs nearly as much as one of hundreds): a free worker waits until ``max_batch`` requests are
pending or the oldest has waited ``max_wait_s``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch: int = 512
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")

    def wait_before_flush(self, pending: int, oldest_enqueued: float, now: float) -> float | None:
        """Seconds a free worker should still wait before taking a batch; ``None`` when idle."""
        if pending == 0:
            return None
        if pending >= self.max_batch:
            return 0.0
        return max(0.0, oldest_enqueued + self.max_wait_s - now)

    def split(self, count: int) -> list[tuple[int, int]]:
        """``[start, stop)`` slices of at most ``max_batch`` rows covering ``count`` requests."""
        return [(start, min(start + self.max_batch, count)) for start in range(0, count, self.max_batch)]
