"""What one bench run measures and with which daemon settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from candlecast.errors import ConfigError
from daemon.settings import BatchingSettings, Settings, describe_validation_error

Delivery = Literal["exactly_once", "at_least_once"]
Device = Literal["auto", "cpu", "cuda"]
Scoring = Literal["window", "stream"]
"""How a daemon run scores: whole windows through the bench's model, or one step per candle through a
streaming artifact (``model.scoring``)."""
DELIVERY_CHOICES: dict[str, tuple[Delivery, ...]] = {
    "both": ("exactly_once", "at_least_once"),
    "exactly_once": ("exactly_once",),
    "at_least_once": ("at_least_once",),
}
DEVICE_CHOICES: dict[str, Device] = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}
SCORING_CHOICES: dict[str, Scoring] = {"window": "window", "stream": "stream"}


@dataclass(frozen=True)
class BenchOptions:
    symbols: int = 10_000
    scored_per_symbol: int = 3
    """Candles per symbol in the throughput backlog after each window is full."""
    batch: int = field(default_factory=lambda: BatchingSettings().max_batch)
    """The daemon's ``batching.max_batch`` (default the daemon's), and the batch of the model ceiling."""
    max_wait_ms: float = 0.0
    threads: int = 0
    """torch intra-op threads (``model.threads``; 0: one less than the CPU count)."""
    device: Device = "auto"
    deliveries: tuple[Delivery, ...] = ("exactly_once", "at_least_once")
    partitions: int = 6
    steady_s: float = 10.0
    steady_rate: float | None = None
    """Candles per second of the steady phase; by default half the first sustained throughput."""
    burst_s: float = 0.1
    """Length of the 10x burst."""
    close_bursts: tuple[int, ...] = (1_000, 10_000)
    close_repeats: int = 5
    """Closes per size, each every symbol's next candle: the report gives the median and the worst last signal."""
    naive_signals: int = 1_000
    io_messages: int = 100_000
    ceiling_s: float = 3.0
    producer: dict[str, Any] = field(default_factory=dict)
    """Producer settings of the daemon to override (``linger_ms``, ``compression``,
    ``producer_batch_bytes``, ``retry_backoff_ms``); the I/O ceiling uses them too."""
    memory_symbols: int = 100_000
    stream_clients: int = 100
    """Stream clients of the steady phase run again with them connected (0: no such phase)."""
    stream_rounds: int = 3
    """Pairs of steady phases without and with stream clients, alternated (the first without is the steady phase)."""
    stream_clients_nice: int = 0
    """Added to the stream clients' process's nice value: 19 stands for clients on another machine."""
    stream_client_buffer: int | None = None
    """Signals queued for one stream client (``api.client_buffer``); ``None``: the daemon's default."""
    fencing_transactions: int = 200
    """Transactions of each commit kind in the fencing-cost phase."""
    two_routes: bool = False
    """Also run the backlog through a daemon serving the two bundled models as two routes."""
    scorings: tuple[Scoring, ...] = ("window",)
    """The end-to-end runs, each delivery mode per scoring, side by side; each scoring has its own backlog."""
    fixed_rates: tuple[float, ...] = ()
    """Candles per second of further steady phases in every end-to-end run, beside the one at half the
    sustained throughput (issue 14 names 800/s)."""
    io_floor: bool = True
    """With ``fixed_rates``: after each end-to-end run, the latency floor of its Kafka I/O at each fixed rate
    in its delivery mode (``candlecast.bench.io_floor``)."""
    max_waits_ms: tuple[float, ...] = ()
    """``batching.max_wait_ms`` values of the batch-policy phase (empty: no such phase)."""
    lone_candles: int = 50
    """Candles of the batch-policy phase sent one at a time, each once the last one's signal is published."""
    policy_symbols: int = 2_000
    """Symbols of the batch-policy phase."""
    seed: int = 1

    def check(self) -> None:
        """Refuse, before anything starts, settings the daemon would refuse (``ConfigError`` naming the field)."""
        try:
            for wait in (self.max_wait_ms, *self.max_waits_ms):
                Settings(
                    kafka=self.producer,
                    batching={"max_batch": self.batch, "max_wait_ms": wait},
                    model={"threads": self.threads, "device": self.device},
                )
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from exc
        if self.close_repeats < 1:
            raise ConfigError("close repeats: at least one close per size")
        if any(rate <= 0 for rate in self.fixed_rates):
            raise ConfigError("fixed rates: candles per second must be positive")

    @classmethod
    def quick(cls) -> BenchOptions:
        """Seconds instead of minutes: for the test suite's gross-regression check."""
        return cls(
            symbols=300,
            scored_per_symbol=4,
            deliveries=("exactly_once",),
            partitions=3,
            steady_s=2.0,
            close_bursts=(300,),
            close_repeats=1,
            naive_signals=150,
            io_messages=5_000,
            ceiling_s=1.0,
            memory_symbols=10_000,
            stream_clients=10,
            stream_rounds=1,
            # More than a quick steady phase publishes: a client process the loaded machine starves
            # for a moment must not be cut off, so the suite checks the fan-out, not the scheduler.
            stream_client_buffer=100_000,
            fencing_transactions=20,
            io_floor=False,
        )
