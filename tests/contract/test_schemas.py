"""The published JSON Schemas: the committed files are what the code generates, and real messages validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from candlecast.candlefile import bundled_path, read_candles
from daemon.backtest import backtest_signals, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import CANDLE_SCHEMA
from daemon.core import build_core
from daemon.schemas import published_schemas, render
from daemon.settings import ModelSettings, Settings, StrategySettings
from daemon.signal import SIGNAL_SCHEMA
from models.torchscript import load_artifact

SCHEMAS = Path(__file__).parents[2] / "docs" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", sorted(published_schemas()))
def test_committed_schema_is_what_the_code_generates(name: str) -> None:
    """docs/schemas cannot drift from the structs: regenerate with `candlecast schemas` (make schemas)."""
    assert (SCHEMAS / name).read_bytes() == render(published_schemas()[name])
    jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))


def test_schemas_are_versioned_by_id_title_and_file_name() -> None:
    documents = published_schemas()
    assert documents["signal.v1.json"]["$id"] == "urn:candlecast:signal:1"
    assert documents["signal.v1.json"]["title"] == SIGNAL_SCHEMA
    assert documents["candle.v1.json"]["title"] == CANDLE_SCHEMA
    assert documents["manifest.v1.json"]["$id"] == "urn:candlecast:artifact:1"


def test_real_candle_messages_validate_and_bad_ones_do_not() -> None:
    check = validator("candle.v1.json")
    for _, message in read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(50).messages("1h"):
        check.validate(json.loads(msgspec.json.encode(message)))
    bad: dict[str, Any] = {"symbol": "BTC/USD", "interval": "1h", "ts": 0, "open": 1, "high": 1, "low": 1}
    assert {error.validator for error in check.iter_errors(bad)} == {"pattern", "required"}


def test_real_signals_validate_and_other_versions_do_not(test_artifact: Path) -> None:
    """Signals of the real test model on real candles, as the daemon encodes them."""
    model = load_artifact(test_artifact)
    settings = Settings(model=ModelSettings(artifact=test_artifact), strategy=StrategySettings(name="gated", params={}))
    core = build_core(settings, model)
    candles = read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(70)
    signals = list(
        backtest_signals(candle_records(candles.messages("1d")), core.ingestor, core.builder, model, BatchPolicy(64))
    )
    assert signals
    check = validator("signal.v1.json")
    for signal in signals:
        check.validate(json.loads(msgspec.json.encode(signal)))
    newer = {**json.loads(msgspec.json.encode(signals[0])), "schema": "candlecast.signal/2"}
    assert [error.validator for error in check.iter_errors(newer)] == ["const"]
    extended = {**json.loads(msgspec.json.encode(signals[0])), "venue": "XNAS"}
    check.validate(extended)  # additive changes keep v1: unknown fields are allowed
