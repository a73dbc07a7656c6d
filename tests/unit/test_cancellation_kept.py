"""A daemon's stop cancels its helper tasks (the broker probe, a revocation's drain wait) and waits for them.
On Python 3.11 ``asyncio.wait_for`` returns the awaited result instead of raising when the cancellation
lands in the loop turn that result arrives in (bpo-42130): a looping helper then never ends, and the stop
hangs. CI met it once (a chaos-test daemon still stopping after 120 s). The bounded waits the daemon's
edges use keep the cancellation."""

import asyncio
from typing import Any, cast

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from daemon.kafka_source import _within
from daemon.kafka_topics import topic_answer


class _AnsweringAdmin:
    """An admin client whose cluster answer the test hands over itself (the topic then exists)."""

    def __init__(self, cluster: asyncio.Future[dict[str, Any]]) -> None:
        self.cluster = cluster

    def describe_cluster(self) -> asyncio.Future[dict[str, Any]]:
        return self.cluster

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [{"topic": topic, "error_code": 0, "partitions": [{"partition": 0}]} for topic in topics]


async def _cancelled_as_answered(work: Any, answer: asyncio.Future[dict[str, Any]]) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.ensure_future(work)
    await asyncio.sleep(0)  # the task now waits for the answer
    answer.set_result({})
    task.cancel()
    return task


async def test_probe_cancelled_as_the_broker_answers_ends_cancelled() -> None:
    """The broker probe cancelled in the loop turn the cluster's answer arrives in raises CancelledError
    instead of returning that answer and going on."""
    answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    admin = cast(AIOKafkaAdminClient, _AnsweringAdmin(answer))
    probe = await _cancelled_as_answered(topic_answer(admin, "candles", 3.0), answer)
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_bounded_wait_cancelled_as_its_work_finishes_ends_cancelled() -> None:
    """A revocation's bounded drain wait cancelled in the loop turn its work finishes raises CancelledError
    instead of reporting the drain done."""
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    waiting = await _cancelled_as_answered(_within(cast(Any, done), 5.0), done)
    with pytest.raises(asyncio.CancelledError):
        await waiting
