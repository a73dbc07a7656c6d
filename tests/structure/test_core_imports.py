"""The sans-IO core imports neither asyncio, Kafka, MQTT, HTTP nor torch; the edges reach only what they need.

Each check imports modules in a fresh interpreter and reads ``sys.modules``, so it sees what an
import really loads, transitively (ruff's banned-import rule sees only each file's own imports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = ("asyncio", "aiokafka", "fastapi", "uvicorn", "aiomqtt", "torch")
HTTP = {"fastapi", "starlette", "uvicorn", "aiohttp"}
CORE = (
    "daemon.api_models",
    "daemon.batching",
    "daemon.candle",
    "daemon.checkpoint",
    "daemon.clock",
    "daemon.core",
    "daemon.dead_letters",
    "daemon.dispatch",
    "daemon.drift",
    "daemon.engine",
    "daemon.intervals",
    "daemon.metrics",
    "daemon.monitoring",
    "daemon.ports",
    "daemon.quality",
    "daemon.record_batches",
    "daemon.route",
    "daemon.schemas",
    "daemon.signal",
    "daemon.signal_store",
    "daemon.symbol_quality",
    "daemon.window",
    "daemon.window_scoring",
    "models.artifact",
    "models.dataset",
    "models.features",
    "strategies.registry",
)


def _loaded_after(*modules: str) -> set[str]:
    """Top-level and full names of every module loaded by importing ``modules`` in a fresh interpreter."""
    program = f"import importlib, json, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\n"
    program += "print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


def test_the_control_shows_an_edge_loading_io_libraries() -> None:
    """The check can fail: the daemon's service module loads every I/O library."""
    assert set(IO_LIBRARIES) <= _loaded_after("daemon.service")


def test_the_core_loads_no_io_library() -> None:
    """Candles, windows, the engine, batching, signals, checkpoints, ports and manifests import no I/O library."""
    assert (set(IO_LIBRARIES) | HTTP) & _loaded_after(*CORE) == set()


def test_the_pipeline_loads_neither_torch_nor_a_transport() -> None:
    """The asyncio pipeline scores through the ``Scorer`` port: no torch, Kafka, MQTT or HTTP behind it."""
    assert ({"torch", "aiokafka", "aiomqtt"} | HTTP) & _loaded_after("daemon.pipeline") == set()


@pytest.mark.parametrize("module", ["candlecast.backtest", "daemon.backtest", "daemon.memory_transport"])
def test_a_backtest_loads_no_transport_library(module: str) -> None:
    """A Kafka-free backtest runs the pipeline on in-memory transports: no Kafka, MQTT or HTTP client is loaded."""
    assert ({"aiokafka", "aiomqtt"} | HTTP) & _loaded_after(module) == set()


def test_training_data_depends_on_the_core_only() -> None:
    """``models.dataset`` (training) reaches only core modules of ``daemon``, never the service side."""
    daemon_modules = {m for m in _loaded_after("models.dataset") if m.startswith("daemon.")}
    assert daemon_modules
    assert daemon_modules <= set(CORE), sorted(daemon_modules - set(CORE))
