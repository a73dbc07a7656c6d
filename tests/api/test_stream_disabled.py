"""A daemon with ``api.stream_enabled = false`` leaves the stream to ``candlecast stream-server``."""

from __future__ import annotations

import httpx

from daemon.settings import ApiSettings
from tests.api.support import candles, harness
from tests.api.test_stream import serving


async def test_a_daemon_with_the_stream_disabled_answers_404_and_keeps_its_other_endpoints() -> None:
    """The stream is refused with 404 naming why; the latest signals still answer; enabled, the stream opens."""
    disabled, enabled = harness(api=ApiSettings(stream_enabled=False)), harness()
    fed = disabled.feed("AAA", candles(5))
    async with serving(disabled) as base, httpx.AsyncClient() as http:
        refused = await http.get(f"{base}/api/v1/stream")
        latest = await http.get(f"{base}/api/v1/signals/latest")
    async with (
        serving(enabled) as base,
        httpx.AsyncClient() as http,
        http.stream("GET", f"{base}/api/v1/stream") as opened,
    ):
        status = opened.status_code
    assert refused.status_code == 404 and refused.json()["reason"] == "stream_disabled"
    assert [body["signal"]["signal_id"] for body in latest.json()] == [fed[-1].signal_id]
    assert status == 200
