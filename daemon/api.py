"""The read-only query API under ``/api/v1`` (docs/api.md): routes and models, latest and top
signals, per-symbol statistics, scoring, and the live stream (``daemon.stream``).

FastAPI generates the OpenAPI document from these handlers and their pydantic models; the
handlers find the daemon's state (``ApiContext``) on ``app.state``, so the document can be
generated without a running daemon (``daemon.http.openapi_document``). Nothing here changes the
daemon's state: registry housekeeping is ``candlecast models prune``, in the CLI.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from candlecast.errors import ArtifactError
from daemon import window_scoring
from daemon.api_models import (
    BatchAnswer,
    BatchBody,
    DriftBody,
    ErrorBody,
    Figures,
    ModelDetails,
    ModelSummary,
    QualityBody,
    RankedSignalBody,
    RegistryVersion,
    RouteBody,
    RouteStats,
    ScoreAnswer,
    SignalBody,
    StoredSignalBody,
    SymbolStats,
    WindowBody,
)
from daemon.pipeline import slice_outputs
from daemon.ports import WindowOrigins
from daemon.route import Route
from daemon.settings import ApiSettings
from daemon.signal_store import SignalStore, TooManyClientsError
from daemon.stream import SignalStreamResponse, StreamWake
from models.artifact import Manifest

PREFIX = "/api/v1"
TOP_LIMIT = 1000
"""Most signals one top-signals answer holds."""


@dataclass(slots=True)
class ApiContext:
    """What the API reads: the routes, the committed signals, its settings and the daemon's clock."""

    routes: Sequence[Route]
    store: SignalStore
    settings: ApiSettings
    clock_ms: Callable[[], int]
    token: str | None = None
    scoring: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """One scoring request at a time: each is one forward pass queued between the daemon's batches."""


class ApiError(Exception):
    """A refused request: the status, the offending field (dotted, as in the request) and why."""

    def __init__(self, status: int, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.reason = reason


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=error.message, field=error.field, reason=error.reason)
    sent = dict(headers or {})
    if error.status == 401:
        sent["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body.model_dump(), status_code=error.status, headers=sent)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read as JSON."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    413: {"model": ErrorBody, "description": "The request body exceeds api.max_body_bytes."},
    422: {"model": ErrorBody, "description": "A field is invalid; `field` names it."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "`field` names the unknown."}}
STOPPING: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody, "description": "The daemon is stopping."}}


# --- dependencies --------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="Required when api.token_file is set.")


async def authorised(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    if ctx.token is None:
        return ctx
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), ctx.token.encode()):
        raise ApiError(401, "a valid bearer token is required", "header.authorization")
    return ctx


Context = Annotated[ApiContext, Depends(authorised)]


def _route_of(ctx: ApiContext, name: str, field_name: str) -> Route:
    for route in ctx.routes:
        if route.name == name:
            return route
    raise ApiError(404, f"no route {name!r}", field_name)


def _summary(route: Route) -> dict[str, Any]:
    manifest = route.model.current.manifest
    return {
        "route": route.name,
        "name": manifest.name,
        "version": manifest.version,
        "created_at": manifest.created_at,
        "interval": manifest.interval,
        "window": manifest.window,
        "horizons": manifest.horizons,
        "members": [m.name for m in manifest.members],
        "metrics": manifest.metrics,
        "reference": Figures(
            hit_rate=manifest.reference.hit_rate, brier=manifest.reference.brier, ece=manifest.reference.ece
        ),
    }


def _registry_versions(route: Route, manifest: Manifest) -> list[RegistryVersion]:
    if route.registry is None:
        return []
    from models.registry import Registry  # here: torch comes with it, and the stream server has no model

    registry = Registry(route.registry)
    current = registry.current_ref()
    versions = []
    for entry in registry.entries():
        if entry.name != manifest.name:
            continue
        try:
            created: str | None = entry.manifest().created_at
        except ArtifactError:  # an unreadable manifest copy is listed without a date
            created = None
        versions.append(RegistryVersion(ref=entry.ref, created_at=created, current=entry.ref == current))
    return versions


# --- handlers ------------------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, responses=ERRORS)
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}


@router.get("/routes", summary="Routes and the model each serves")
async def list_routes(ctx: Context) -> list[RouteBody]:
    bodies = []
    for route in ctx.routes:
        manifest = route.model.current.manifest
        strategy = route.new_core(route.model.current).builder.strategy_name
        bodies.append(
            RouteBody(
                name=route.name,
                symbols=route.symbols,
                interval=route.interval,
                model=manifest.name,
                model_version=manifest.version,
                strategy=strategy,
            )
        )
    return bodies


@router.get("/models", summary="Loaded models with their evaluation figures")
async def list_models(ctx: Context) -> list[ModelSummary]:
    return [ModelSummary.model_validate(_summary(route)) for route in ctx.routes]


@router.get("/models/{name}", summary="One loaded model: manifest, figures and registry versions", responses=NOT_FOUND)
async def model_details(
    ctx: Context, name: Annotated[str, Path(max_length=200, description="The model's name")]
) -> ModelDetails:
    for route in ctx.routes:
        manifest = route.model.current.manifest
        if manifest.name == name:
            return ModelDetails(
                **_summary(route),
                manifest=msgspec.to_builtins(manifest),
                registry_versions=_registry_versions(route, manifest),
            )
    raise ApiError(404, f"no loaded model named {name!r}", "path.name")


@router.get("/signals/latest", summary="The latest committed signal of each symbol")
async def latest_signals(
    ctx: Context,
    symbol: Annotated[str | None, Query(max_length=64, description="Only this symbol")] = None,
    interval: Annotated[str | None, Query(max_length=16, description="Only this interval")] = None,
) -> list[StoredSignalBody]:
    found = ctx.store.latest(symbol)
    return [StoredSignalBody.of(s) for s in found if interval is None or s.interval == interval]


@router.get("/signals/top", summary="The strongest current signals", responses=NOT_FOUND)
async def top_signals(
    *,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=TOP_LIMIT, description="Most signals returned")] = 10,
    action: Annotated[
        list[Literal["BUY", "SELL", "HOLD"]] | None, Query(description="Only these actions (repeatable)")
    ] = None,
    interval: Annotated[str | None, Query(max_length=16)] = None,
    route: Annotated[str | None, Query(max_length=200)] = None,
    min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    max_age_intervals: Annotated[
        float | None,
        Query(gt=0, le=1e6, description="Leave out signals whose candle closed more intervals ago (api default)"),
    ] = None,
) -> list[RankedSignalBody]:
    if route is not None:
        _route_of(ctx, route, "query.route")
    ranked = ctx.store.top(
        limit=limit,
        now_ms=ctx.clock_ms(),
        max_age_intervals=max_age_intervals or ctx.settings.stale_after_intervals,
        actions=action or (),
        interval=interval,
        route=route,
        min_confidence=min_confidence,
    )
    return [
        RankedSignalBody(
            route=r.stored.route,
            committed_at_ms=r.stored.committed_ms,
            signal=SignalBody.of(r.stored.signal),
            age_s=r.age_ms / 1000,
        )
        for r in ranked
    ]


@router.get(
    "/symbols/{symbol}/stats", summary="Per-symbol model, signal counts, live quality and drift", responses=NOT_FOUND
)
async def symbol_stats(
    ctx: Context, symbol: Annotated[str, Path(max_length=64, description="The symbol")]
) -> SymbolStats:
    counts = ctx.store.actions(symbol)
    stats = []
    for route in ctx.routes:
        key = (symbol, route.interval)
        quality = route.monitor.by_symbol.report(key) if route.monitor and route.monitor.by_symbol else []
        if route.interval not in counts and not quality:
            continue
        manifest = route.model.current.manifest
        drift = route.monitor.drift_report() if route.monitor else None
        route_quality = route.monitor.quality_reports() if route.monitor else {}
        stats.append(
            RouteStats(
                route=route.name,
                interval=route.interval,
                model=manifest.name,
                model_version=manifest.version,
                signals={a: counts.get(route.interval, {}).get(a, 0) for a in ("BUY", "SELL", "HOLD")},
                quality=[
                    QualityBody(horizon=q.horizon, resolved=q.resolved, hit_rate=q.hit_rate, brier=q.brier, ece=q.ece)
                    for q in quality
                ],
                route_quality=[
                    QualityBody(horizon=h, resolved=r.samples, hit_rate=r.hit_rate, brier=r.brier, ece=r.ece)
                    for h, r in route_quality.items()
                ],
                drift=None
                if drift is None
                else DriftBody(
                    samples=drift.samples,
                    feature_psi=drift.feature_psi,
                    feature_ks=drift.feature_ks,
                    prediction_psi=drift.prediction_psi,
                    prediction_ks=drift.prediction_ks,
                ),
            )
        )
    if not stats:
        raise ApiError(404, f"no signal or resolved prediction for {symbol!r} since the daemon started", "path.symbol")
    return SymbolStats(symbol=symbol, routes=stats)


async def _score(ctx: ApiContext, windows: Sequence[WindowBody], prefix: str) -> list[ScoreAnswer]:
    """Validate every window as the daemon would, then score them all in one forward pass."""
    prepared: list[tuple[Route, window_scoring.PreparedWindow]] = []
    for index, window in enumerate(windows):
        where = f"{prefix}{index}." if prefix else "body."
        route = next((r for r in ctx.routes if r.claims(window.symbol, window.interval)), None)
        if route is None:
            served = ", ".join(f"{r.symbols} {r.interval}" for r in ctx.routes)
            raise ApiError(
                422, f"no route serves {window.symbol} {window.interval} (served: {served})", f"{where}interval"
            )
        core = route.new_core(route.model.current)
        try:
            prepared.append((route, window_scoring.prepare(core, window.symbol, window.interval, window.candles)))
        except window_scoring.WindowRefusedError as refused:
            raise ApiError(422, refused.detail, f"{where}{refused.field}", refused.reason) from None
    if len({id(route.model) for route, _ in prepared}) > 1:
        raise ApiError(422, "one request scores windows of one route", f"{prefix or 'body.'}".rstrip("."))
    model = prepared[0][0].model
    requests = [r for _, p in prepared for r in p.requests]
    rows = np.stack([r.window for r in requests])
    # No key: each window from a zero state, the function of the window a carried state equals.
    origins = WindowOrigins(np.stack([r.slots for r in requests]))
    async with ctx.scoring:
        scorer, outputs = await model.score(rows, origins)
    answers = []
    start = 0
    for route, ready in prepared:
        stop = start + len(ready.requests)
        signal = window_scoring.answer(ready, slice_outputs(outputs, start, stop), scorer.version)
        start = stop
        answers.append(
            ScoreAnswer(
                route=route.name,
                model=scorer.manifest.name,
                model_version=scorer.version,
                published=signal is not None,
                signal=SignalBody.of(signal) if signal is not None else None,
            )
        )
    return answers


@router.post("/score", summary="What the daemon would publish for one window of candles", responses=STOPPING)
async def score_window(ctx: Context, body: WindowBody) -> ScoreAnswer:
    return (await _score(ctx, [body], ""))[0]


@router.post(
    "/score/batch",
    summary="What the daemon would publish for several windows, in one forward pass",
    responses=STOPPING,
)
async def score_batch(ctx: Context, body: BatchBody) -> BatchAnswer:
    if len(body.windows) > ctx.settings.max_score_windows:
        raise ApiError(
            422, f"{len(body.windows)} windows; at most {ctx.settings.max_score_windows} per request", "body.windows"
        )
    return BatchAnswer(answers=await _score(ctx, body.windows, "body.windows."))


@router.get(
    "/stream",
    summary="Live committed signals as Server-Sent Events",
    response_class=SignalStreamResponse,
    status_code=200,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`id:` signal id, `event: signal`, `data:` JSON."},
        # Refusals are JSON, not events: named explicitly, or they would take the stream's media type.
        **{
            status: {"content": {"application/json": {"schema": ERROR_SCHEMA}}, "description": answer["description"]}
            for status, answer in {
                **ERRORS,
                404: {"description": "This daemon serves no stream (api.stream_enabled = false)."},
                503: {"description": "Every stream slot is taken."},
            }.items()
        },
    },
)
async def stream(
    ctx: Context,
    symbol: Annotated[list[str] | None, Query(description="Only these symbols (repeatable)")] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=64, description="Resume after this signal id (sent by EventSource)")
    ] = None,
) -> SignalStreamResponse:
    if not ctx.settings.stream_enabled:
        raise ApiError(404, "this daemon serves no stream: `candlecast stream-server` does", None, "stream_disabled")
    wake = StreamWake()
    try:
        subscription, resumed = ctx.store.subscribe(frozenset(symbol) if symbol else None, last_event_id, wake)
    except TooManyClientsError as exc:
        raise ApiError(503, str(exc), None, "too_many_clients") from None
    return SignalStreamResponse(ctx.store, subscription, wake, resumed=resumed, keepalive_s=ctx.settings.keepalive_s)
