"""The OpenAPI document: generated from the code, committed as docs/openapi.json, and honoured by the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from daemon.http import openapi_document
from tests.api.support import app_for, candles, harness

DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    """docs/openapi.json equals the document generated from the handlers (`make docs` writes it)."""
    assert json.loads(DOCUMENT.read_text()) == openapi_document()


def test_every_verb_is_in_the_document() -> None:
    """Routes, models, one model, latest and top signals, symbol statistics, scoring, batch scoring and the stream."""
    paths = set(openapi_document()["paths"])
    assert {
        "/api/v1/routes",
        "/api/v1/models",
        "/api/v1/models/{name}",
        "/api/v1/signals/latest",
        "/api/v1/signals/top",
        "/api/v1/symbols/{symbol}/stats",
        "/api/v1/score",
        "/api/v1/score/batch",
        "/api/v1/stream",
    } <= paths


TOKEN = "schemathesis"
_served = harness(token=TOKEN)
_served.feed("AAA", candles(12))
_served.feed("BBB", candles(8, drift=-0.01))
# The stream never ends by itself (tests/api/test_stream.py covers it); a 503 is what /healthz and /readyz
# mean when no heartbeat runs, and no check passes, as here (tests/observability covers them).
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", app_for(_served))
    .exclude(path="/api/v1/stream")
    .exclude(path_regex="^/(healthz|readyz)$")
)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_server_error(case: schemathesis.Case[Any]) -> None:
    """Requests generated from the document get documented answers, never a server error.

    Two checks are left out: a schema-valid window is still refused when the daemon's validation refuses its
    candles (a 422 naming the candle), and an unknown query parameter is ignored, not refused."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
