"""Client libraries' WARNING and ERROR records, classified and counted.

aiokafka, aiomqtt and aiohttp log WARNING or ERROR for conditions they retry on their own: a group
coordinator not ready yet at start-up (or lost, then looked up again), a produce request refused and
retried, a heartbeat during a rebalance. Those are expected kinds; every other warning of a client
library is kind ``other``. ``CLIENT_WARNINGS`` counts them by ``(library, kind)`` for the whole process
(``candlecast_client_warnings_total``, registered by ``daemon.metrics``); ``candlecast.logs`` feeds it
from the logging handler and decides how each record is shown. Only the standard library's logging
and prometheus_client: the daemon's metrics import this without the logging set-up's structlog.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

CLIENT_LIBRARIES = ("aiokafka", "aiomqtt", "aiohttp")
OTHER = "other"


@dataclass(frozen=True, slots=True)
class ExpectedClientLog:
    """A client library's WARNING or ERROR that reports a condition it retries by itself."""

    kind: str
    logger: str
    message: str
    """The start of the record's unformatted message (its %-template)."""
    retriable_only: bool = False
    """Only when the record's exception argument says it is retriable (``KafkaError.retriable``)."""

    def matches(self, record: logging.LogRecord) -> bool:
        if record.name != self.logger or not str(record.msg).startswith(self.message):
            return False
        if not self.retriable_only:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return any(getattr(arg, "retriable", False) is True for arg in args)


EXPECTED_CLIENT_LOGS = (
    ExpectedClientLog(
        "coordinator_not_ready",
        "aiokafka.consumer.group_coordinator",
        "Group Coordinator Request failed",
        retriable_only=True,
    ),
    ExpectedClientLog("produce_retry", "aiokafka.producer.sender", "Got error produce response on topic-partition"),
    ExpectedClientLog("coordinator_lost", "aiokafka.consumer.group_coordinator", "Marking the coordinator dead"),
    ExpectedClientLog(
        "rebalance_in_progress", "aiokafka.consumer.group_coordinator", "Heartbeat failed for group %s because it is"
    ),
)


def client_log_kind(record: logging.LogRecord) -> tuple[str, str] | None:
    """``(library, kind)`` of a client library's WARNING or ERROR record; ``None`` for any other record."""
    library = record.name.partition(".")[0]
    if library not in CLIENT_LIBRARIES or record.levelno < logging.WARNING:
        return None
    kind = next((expected.kind for expected in EXPECTED_CLIENT_LOGS if expected.matches(record)), OTHER)
    return library, kind


class ClientWarnings(Collector):
    """Process-wide counts of client-library warnings and errors by ``(library, kind)``, and their
    Prometheus collector: logging is per process, so every registry that registers it sees the same counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {("aiokafka", e.kind): 0 for e in EXPECTED_CLIENT_LOGS}

    def add(self, library: str, kind: str) -> None:
        with self._lock:
            self._counts[(library, kind)] = self._counts.get((library, kind), 0) + 1

    def count(self, library: str, kind: str) -> int:
        with self._lock:
            return self._counts.get((library, kind), 0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "candlecast_client_warnings",
            "WARNING and ERROR records of client libraries, by library and kind; expected kinds are logged at DEBUG.",
            labels=["library", "kind"],
        )
        with self._lock:
            counts = sorted(self._counts.items())
        for (library, kind), value in counts:
            family.add_metric([library, kind], value)
        yield family


CLIENT_WARNINGS = ClientWarnings()
