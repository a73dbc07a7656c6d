"""One handler renders every line: candlecast's and the client libraries', counted and leveled as documented."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError, NotEnoughReplicasError
from prometheus_client import CollectorRegistry

from candlecast.client_logs import CLIENT_LIBRARIES, CLIENT_WARNINGS
from candlecast.logs import configure_logging
from daemon.metrics import DaemonMetrics


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the configured handler writes; the logging set-up is put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in ("candlecast", *CLIENT_LIBRARIES)}
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def produce_retry() -> None:
    logging.getLogger("aiokafka.producer.sender").warning(
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        TopicPartition("signals", 0),
        NotEnoughReplicasError,
    )


def test_a_library_warning_is_one_json_line(output: io.StringIO) -> None:
    """With the JSON format, an aiokafka warning logged through the standard library comes out as one JSON object."""
    configure_logging("INFO", "json", stream=output)
    logging.getLogger("aiokafka").warning("Unable to request metadata from node with id %s: %r", 1, OSError("down"))
    (line,) = lines(output)
    assert line["event"] == "Unable to request metadata from node with id 1: OSError('down')"
    assert line["level"] == "warning"
    assert line["logger"] == "aiokafka"
    assert isinstance(line["timestamp"], str)


def test_candlecast_lines_are_json_with_the_bound_context(output: io.StringIO) -> None:
    """candlecast's own lines share the handler and carry the context bound with structlog.contextvars."""
    configure_logging("INFO", "json", stream=output)
    structlog.contextvars.bind_contextvars(model_version="1.2.0")
    log = structlog.get_logger("candlecast.test")
    log.info("windows rebuilt", partition=3)
    log.debug("per-candle detail, below the level")
    (line,) = lines(output)
    assert line == {
        "event": "windows rebuilt",
        "partition": 3,
        "model_version": "1.2.0",
        "level": "info",
        "logger": "candlecast.test",
        "timestamp": line["timestamp"],
    }


def test_an_expected_library_warning_becomes_a_counted_debug_line(output: io.StringIO) -> None:
    """A produce retry is counted by library and kind and shown only at DEBUG, as a debug line naming its kind."""
    registry = CollectorRegistry()
    DaemonMetrics(registry)

    def exported() -> float:
        value = registry.get_sample_value(
            "candlecast_client_warnings_total", {"library": "aiokafka", "kind": "produce_retry"}
        )
        assert value is not None
        return value

    before = exported()
    configure_logging("INFO", "json", stream=output)
    produce_retry()
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Heartbeat failed: unexpected")
    # The unexpected warning shows the handler wrote what reached it; the retry is not among it.
    assert [line["event"] for line in lines(output)] == ["Heartbeat failed: unexpected"]
    assert exported() == before + 1

    shown = io.StringIO()
    configure_logging("DEBUG", "json", stream=shown)
    produce_retry()
    (line,) = lines(shown)
    assert line["level"] == "debug" and line["kind"] == "produce_retry"
    assert str(line["event"]).startswith("Got error produce response on topic-partition")
    assert exported() == before + 2


def test_only_retriable_coordinator_errors_are_expected(output: io.StringIO) -> None:
    """A failed coordinator request is expected while the error is retriable (not ready yet), not otherwise."""
    configure_logging("WARNING", "console", stream=output)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    ready_later = CLIENT_WARNINGS.count("aiokafka", "coordinator_not_ready")
    other = CLIENT_WARNINGS.count("aiokafka", "other")
    coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    assert output.getvalue() == ""
    coordinator.error("Group Coordinator Request failed: %s", KafkaError("fatal"))
    assert "Group Coordinator Request failed: KafkaError: fatal" in output.getvalue()
    assert CLIENT_WARNINGS.count("aiokafka", "coordinator_not_ready") == ready_later + 1
    assert CLIENT_WARNINGS.count("aiokafka", "other") == other + 1


def test_other_libraries_stay_at_warning(output: io.StringIO) -> None:
    """Libraries other than candlecast's pass at WARNING and above, whatever level candlecast logs at."""
    configure_logging("DEBUG", "json", stream=output)
    logging.getLogger("aiokafka.conn").debug("request bytes")
    logging.getLogger("some.library").info("chatter")
    logging.getLogger("some.library").warning("worth seeing")
    assert [line["event"] for line in lines(output)] == ["worth seeing"]
