"""The HTTP application of a process: webhooks, health, metrics and the admin API, with its life cycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from commerce_bridge.bootstrap import Container
from commerce_bridge.entrypoints.http.admin import build_admin_api
from commerce_bridge.entrypoints.http.errors import error_body
from commerce_bridge.entrypoints.http.ingress import PREFIX, SourceAllowlist, WebhookIngress

log = structlog.get_logger("commerce_bridge.http")


def build_app(c: Container) -> Any:
    """The ASGI app: ``/webhooks/*`` goes to the lean ingress handler, the rest to Starlette."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "status": "alive"})

    async def readyz(request: Request) -> JSONResponse:
        named = [("database", c.check_database), ("migrations", c.check_migrations)]
        if c.role in ("serve", "worker"):
            named += [("worker", c.check_worker), ("dispatcher", c.check_dispatcher)]
        # At once, each bounded: a store that does not answer (locked, overloaded) is an answer too.
        results = await asyncio.gather(*(_bounded_check(fn) for _, fn in named))
        checks = {name: {"ok": ok, "detail": detail} for (name, _), (ok, detail) in zip(named, results, strict=True)}
        ready = all(v["ok"] for v in checks.values())
        return JSONResponse({"ok": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        await asyncio.to_thread(_refresh_gauges, c)
        return Response(c.metrics.render(), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(404, "not_found", f"No route {request.url.path}"), status_code=404)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", path=request.url.path, error=type(exc).__name__)
        return JSONResponse(error_body(500, "internal_error", "Internal error; see the server log"), status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if c.committer is not None:
            c.committer.start()
        await asyncio.to_thread(c.start_background)
        log.info("http.started", role=c.role)
        housekeeping = asyncio.get_running_loop().create_task(_housekeeping(c), name="housekeeping")
        try:
            yield
        finally:
            housekeeping.cancel()
            if c.committer is not None:
                await c.committer.stop()
            await asyncio.to_thread(c.stop_background)
            log.info("http.stopped", role=c.role)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
              Mount("/api/v1", app=build_admin_api(c))]
    starlette = Starlette(routes=routes, lifespan=lifespan,
                          exception_handlers={404: not_found, 500: server_error})
    # A trailing slash is a 404, not a redirect: Starlette builds that redirect from the Host header.
    starlette.router.redirect_slashes = False
    if c.ingest is None:
        return starlette
    s = c.settings
    ingress = WebhookIngress(
        c.ingest,
        SourceAllowlist({"clarity": s.clarity_allowed_cidrs, "erp": s.erp_allowed_cidrs}, s.trusted_proxies),
        c.metrics, s.max_body_bytes,
    )

    async def root(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await ingress(scope, receive, send)
        else:
            await starlette(scope, receive, send)

    return root


READY_CHECK_TIMEOUT_S = 3.0


async def _bounded_check(fn: Any) -> tuple[bool, str]:
    """Run a readiness check in a thread; one that takes longer than READY_CHECK_TIMEOUT_S fails."""
    try:
        result: tuple[bool, str] = await asyncio.wait_for(asyncio.to_thread(fn), READY_CHECK_TIMEOUT_S)
    except TimeoutError:
        return False, f"no answer within {READY_CHECK_TIMEOUT_S:g} s (is the database locked or overloaded?)"
    return result


async def _housekeeping(c: Container) -> None:
    while True:
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(c.housekeeping)
        except Exception as exc:  # keep going; the next round may succeed
            log.warning("housekeeping.failed", error=type(exc).__name__)


def _refresh_gauges(c: Container) -> None:
    try:
        c.metrics.inbox_backlog.set(c.inbox.backlog())
        c.metrics.dlq_size.set(c.dead_letters.count_open())
        for state, n in c.runs.counts_by_status().items():
            c.metrics.runs.labels(state).set(n)
    except Exception as exc:  # metrics must answer even when the database does not
        log.warning("metrics.refresh_failed", error=type(exc).__name__)
