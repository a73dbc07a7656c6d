"""Logging, configured once: one handler on the standard library's root logger renders every line,
candlecast's (structlog) and the client libraries' (aiokafka, aiomqtt, aiohttp) alike, as JSON lines
in production or for a terminal.

Context bound with ``structlog.contextvars`` is merged into every line: the pipeline binds the
model version and the batch's next offsets (by ``topic/partition``) while its sink publishes, so a
failed publish's line names them; other lines carry what they concern (partitions, topic, versions)
as fields. One INFO line per meaningful event, none per candle (rejected candles are counted and
dead-lettered).

Client libraries log WARNING or ERROR for conditions they retry on their own: a group coordinator
not ready yet at start-up (or lost, then looked up again), a produce request refused and retried, a
heartbeat during a rebalance.
Those are expected, so they are counted (``candlecast_client_warnings_total{library,kind}``, by
``candlecast.client_logs``) and logged at DEBUG; every other WARNING or ERROR of a client library
keeps its level and is counted as kind ``other``.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Literal

import structlog

from candlecast.client_logs import CLIENT_LIBRARIES, CLIENT_WARNINGS, OTHER, ClientWarnings, client_log_kind


class HandlerFilter(logging.Filter):
    """The root handler's filter: counts each client-library WARNING or ERROR and turns an expected
    one into a DEBUG record (tagged with its kind); then lets through what the configured level allows."""

    def __init__(self, level: int, counts: ClientWarnings = CLIENT_WARNINGS) -> None:
        super().__init__()
        self.level = level
        self.counts = counts

    def filter(self, record: logging.LogRecord) -> bool:
        classified = client_log_kind(record)
        if classified is not None:
            library, kind = classified
            self.counts.add(library, kind)
            if kind != OTHER:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                record.client_log_kind = kind
        return record.levelno >= self.level


def _client_log_kind(_logger: object, _name: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    kind = getattr(event_dict.get("_record"), "client_log_kind", None)
    if kind is not None:
        event_dict["kind"] = kind
    return event_dict


class _CandlecastHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs; a later call replaces it."""


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto", stream: IO[str] | None = None
) -> None:
    """Route structlog through the standard library and render every record with one formatter.

    candlecast's own lines pass at ``level``; other libraries' at WARNING or above, as before (client
    libraries' warnings are counted whatever ``level`` is).
    """
    out = sys.stderr if stream is None else stream
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    threshold = logging.getLevelNamesMapping()[level]
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.typing.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if console:
        rendering.append(structlog.dev.ConsoleRenderer())
    else:
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = _CandlecastHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=rendering, foreign_pre_chain=[*shared, _client_log_kind], use_get_message=True
        )
    )
    handler.addFilter(HandlerFilter(threshold))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CandlecastHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger("candlecast").setLevel(threshold)
    for library in CLIENT_LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
