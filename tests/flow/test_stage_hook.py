"""The pipeline's stage hook: each forward pass and each publish, with its requests and its times."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from daemon.batching import BatchPolicy
from daemon.engine import ScoreRequest
from daemon.memory_transport import MemoryBroker
from daemon.pipeline import Stage
from daemon.ports import PublishBatch
from tests.flow.test_pipeline import feed_hours, pipeline_on
from tests.support.scorer import FakeScorer


async def test_every_published_request_is_stamped_by_its_forward_pass_and_its_publish() -> None:
    """Each published signal's request went through exactly one forward pass of at most ``max_batch`` and
    the publish that carried it, in that order; the publish stages carry the published batches' requests."""
    broker = MemoryBroker()
    feed_hours(broker, symbols=4, hours=12)
    pipeline, source, _ = pipeline_on(broker, FakeScorer(), BatchPolicy(max_batch=4))
    stages: list[tuple[Stage, list[ScoreRequest], float, float]] = []
    batches: list[PublishBatch] = []

    def on_stage(stage: Stage, requests: Sequence[ScoreRequest], began: float, ended: float) -> None:
        stages.append((stage, list(requests), began, ended))

    pipeline.add_stage_hook(on_stage)
    pipeline.add_published_hook(batches.append)
    await source.start()
    run = asyncio.create_task(pipeline.run())
    await broker.wait_committed(0, len(broker.logs[0]))
    pipeline.stop()
    await run

    published = [request for batch in batches for _, request in batch.signals]
    assert len(published) == 4 * (12 - 3)
    forwarded = [id(r) for stage, requests, _, _ in stages if stage == "forward" for r in requests]
    assert all(forwarded.count(id(r)) == 1 for r in published)
    assert all(len(requests) <= 4 for stage, requests, _, _ in stages if stage == "forward")
    publishes = [requests for stage, requests, _, _ in stages if stage == "publish"]
    assert [[id(r) for r in requests] for requests in publishes] == [
        [id(r) for _, r in batch.signals] for batch in batches
    ]
    forwarded_at = {
        id(r): index for index, (stage, requests, _, _) in enumerate(stages) if stage == "forward" for r in requests
    }
    for index, (stage, requests, began, ended) in enumerate(stages):
        assert began <= ended
        if stage == "publish":
            assert all(forwarded_at[id(r)] < index for r in requests)
