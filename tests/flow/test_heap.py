"""The daemon keeps its start-up heap out of the collector's full collections while it serves."""

from __future__ import annotations

import gc

from daemon.memory_transport import MemoryBroker
from tests.flow.harness import all_committed, candle_table, feed, flow_settings, running_daemon


def tracked(obj: object) -> bool:
    """Whether a full collection would walk ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


async def test_the_models_and_libraries_are_frozen_while_serving_and_collectable_after_the_stop() -> None:
    """While the daemon serves, what it loaded at start-up (its model among it) is frozen, so a full
    collection does not walk it; once it has stopped, nothing is left frozen."""
    gc.unfreeze()
    broker = MemoryBroker(partitions=2)
    feed(broker, candle_table(70))
    async with running_daemon(flow_settings(), broker) as running:
        await all_committed(broker)
        assert broker.signals
        model = running.daemon.model
        assert model is not None
        assert gc.get_freeze_count() > 0
        assert not tracked(model)
        await running.stopped()
    assert gc.get_freeze_count() == 0
    assert tracked(model)
