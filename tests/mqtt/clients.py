"""Test-side MQTT: signals to offer the publisher, and a subscriber that records what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import numpy as np
from prometheus_client import CollectorRegistry

from daemon.candle import format_ts
from daemon.engine import ScoreRequest
from daemon.mqtt.metrics import MqttMetrics
from daemon.mqtt.publisher import MqttSignalPublisher
from daemon.ports import PublishBatch
from daemon.settings import MqttSettings
from daemon.signal import Signal, signal_id

DAY = 86_400_000
BASE = 1_704_153_600_000  # 2024-01-02T00:00:00Z


def mqtt_settings(port: int, **overrides: Any) -> MqttSettings:
    return MqttSettings(enabled=True, port=port, client_id=f"test-{uuid.uuid4().hex[:8]}", **overrides)


def publisher(settings: MqttSettings) -> tuple[MqttSignalPublisher, CollectorRegistry]:
    registry = CollectorRegistry()
    return MqttSignalPublisher(settings, MqttMetrics(registry)), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def make_signal(symbol: str, index: int) -> Signal:
    ts = BASE + index * DAY
    strategy = "threshold(test)"
    return Signal(
        signal_id=signal_id("0.0.1", strategy, symbol, "1d", ts),
        symbol=symbol,
        interval="1d",
        ts=format_ts(ts),
        action=("BUY", "SELL", "HOLD")[index % 3],
        confidence=0.61,
        probability=0.61,
        horizon=1,
        probabilities={"1": 0.61},
        quantiles={"1": [-0.01, 0.0, 0.01]},
        quantile_levels=[0.1, 0.5, 0.9],
        disagreement=0.01,
        model_version="0.0.1",
        model="test-ensemble",
        route="default",
        strategy=strategy,
        produced_at=format_ts(ts),
    )


def batch(signals: list[Signal]) -> PublishBatch:
    """A published batch as the pipeline hands it to hooks: each signal with the request it answered."""
    pairs = [
        (s, ScoreRequest((s.symbol, s.interval), 0, np.zeros((1, 5), np.float32), "candles", 2, 100 + i, 0, 0))
        for i, s in enumerate(signals)
    ]
    return PublishBatch(pairs, [], {})


class Subscriber:
    """Subscribes (QoS 1) and records every message, reconnecting while the broker is away.

    ``persistent``: MQTT 3.1.1 with clean_session False and a fixed client id, so the broker keeps the
    subscription and queues messages while this subscriber is disconnected.
    """

    def __init__(
        self,
        port: int,
        topic: str,
        *,
        persistent: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.topic = topic
        self.persistent = persistent
        self.tls_context = tls_context
        self.identifier = f"watcher-{uuid.uuid4().hex[:8]}"
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def client(self) -> aiomqtt.Client:
        if self.persistent:
            return aiomqtt.Client(
                "127.0.0.1", self.port, identifier=self.identifier, clean_session=False, tls_context=self.tls_context
            )
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls_context,
        )

    async def _run(self) -> None:
        while True:
            try:
                async with self.client() as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.2)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Subscriber]:
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self.subscribed.wait(), 10)
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> list[aiomqtt.Message]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} of {count} messages arrived")
            await asyncio.sleep(0.05)
        return self.messages
