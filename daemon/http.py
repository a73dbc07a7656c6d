"""``/metrics``, ``/healthz`` and ``/readyz`` on one port (127.0.0.1 unless configured otherwise).

- ``/healthz``: the process is alive and its event loop responsive (the heartbeat task ran
  within ``stall_after_s``). Served by the event loop itself, so a blocked loop cannot answer.
- ``/readyz``: every readiness check passes (model loaded, partitions assigned, windows rebuilt,
  broker reachable, not draining); 503 with the failing checks otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest


class Health:
    """Liveness from a heartbeat task; readiness from named checks."""

    def __init__(self, registry: CollectorRegistry, *, tick_s: float = 0.25, stall_after_s: float = 2.0) -> None:
        self.checks: dict[str, Callable[[], bool]] = {}
        self.tick_s = tick_s
        self.stall_after_s = stall_after_s
        self.last_tick = time.monotonic()
        self.loop_lag = Gauge(
            "candlecast_event_loop_lag_seconds", "How late the heartbeat task woke up.", registry=registry
        )

    async def heartbeat(self) -> None:
        while True:
            expected = time.monotonic() + self.tick_s
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            self.loop_lag.set(max(0.0, now - expected))
            self.last_tick = now

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < self.stall_after_s

    def readiness(self) -> dict[str, bool]:
        return {name: bool(check()) for name, check in self.checks.items()}


class HttpServer:
    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive = self.health.alive()
        lag = time.monotonic() - self.health.last_tick
        return web.json_response(
            {"status": "ok" if alive else "stalled", "since_heartbeat_s": round(lag, 3)},
            status=200 if alive else 503,
        )

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = self.health.readiness()
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)
