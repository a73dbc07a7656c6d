"""The publish-cost bench: both sinks publish the same batch in each delivery mode, and the table reads it."""

from __future__ import annotations

import pytest

from candlecast.bench.publish_cost import DELIVERIES, PATHS, measure, table
from candlecast.localkafka import LocalKafka

pytestmark = pytest.mark.kafka


async def test_a_tiny_run_measures_both_paths_in_both_delivery_modes(kafka: LocalKafka) -> None:
    """Forty signals, two rounds: a positive cost for each path and delivery mode, and a ratio line for each mode."""
    costs = await measure(kafka.bootstrap_servers, signals=40, partitions=3, rounds=2)
    assert [(c.delivery, c.path) for c in costs] == [(d, p) for d in DELIVERIES for p in PATHS]
    assert all(c.wall_us > 0 and c.loop_cpu_us >= 0 for c in costs)
    rendered = table(costs)
    assert rendered.count("batched / per record") == len(DELIVERIES)
