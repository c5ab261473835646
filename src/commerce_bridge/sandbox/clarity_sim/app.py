"""The Clarity eCommerce (CEF) simulator's ASGI app: ``build_app`` wires state, auth, routes and extras."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim import auth, lookups
from commerce_bridge.sandbox.clarity_sim.catalog import register_catalog, seed_identities
from commerce_bridge.sandbox.clarity_sim.clock import SimClock
from commerce_bridge.sandbox.clarity_sim.core import (
    ADMIN_BASE,
    CefError,
    HttpStatusError,
    NoContent,
    Req,
    Sim,
    SimConfig,
    cef_error_response,
    http_error_response,
    json_response,
)
from commerce_bridge.sandbox.clarity_sim.inventory import register_inventory, seed_inventory
from commerce_bridge.sandbox.clarity_sim.notes import register_notes
from commerce_bridge.sandbox.clarity_sim.orders import register_orders
from commerce_bridge.sandbox.clarity_sim.returns import register_returns
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.store import DocStore

DEFAULT_USER = "ClarityConnect"
DEFAULT_PASSWORD = "sandbox-clarity"
DEFAULT_READONLY_USER = "viewer"
DEFAULT_READONLY_PASSWORD = "sandbox-viewer"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
log = logging.getLogger(__name__)


def build_router() -> Router:
    router = Router()
    register_orders(router)
    register_returns(router)
    register_notes(router)
    register_catalog(router)
    register_inventory(router)
    return router


async def _dispatch_api(sim: Sim, router: Router, request: Request, path: str) -> Response:
    lowered = path.lower()
    if lowered in ("/auth/identity", "/auth/credentials") and request.method == "POST":
        return await auth.login(sim, request)
    if lowered == "/auth/logout" and request.method in ("POST", "GET"):
        return await auth.logout(sim, request)
    route, params, path_matched = router.match(request.method, path)
    if route is None:
        status = 405 if path_matched else 404
        message = f"Handler for Request not found (404):\n\n  Request.HttpMethod: {request.method}\n" \
                  f"  Request.PathInfo: {path}\n"
        return Response(message, status_code=status, media_type="text/plain")
    session = auth.authenticate(sim, request)
    try:
        auth.require(session, route.permission)
        req = Req(request.method, path, params, request.query_params, await request.body(), session)
        return await route.handler(sim, req)
    except HttpStatusError as exc:
        return http_error_response(exc)
    except NoContent:
        return Response(status_code=204)
    except CefError as exc:
        return cef_error_response(exc)
    except Exception as exc:
        log.exception("clarity simulator handler failed")
        return cef_error_response(CefError(f"{type(exc).__name__}: {exc}"))


def build_app(
    *,
    state_file: str | None = None,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    stripe_url: str | None = None,
    stripe_api_key: str | None = None,
    timezone: str = "UTC",
    readonly_user: str = DEFAULT_READONLY_USER,
    readonly_password: str = DEFAULT_READONLY_PASSWORD,
    basic_auth: bool = False,
    add_payment_records_payment: bool = False,
    webhook_backoff_s: float = 0.5,
) -> Starlette:
    """Build the simulator.

    Parameters
    ----------
    state_file:
        SQLite file for state that survives restarts; ``None`` keeps state in memory.
    user, password:
        The integration login (all permissions). ``readonly_user``/``readonly_password`` may only view.
    webhook_url, webhook_secret:
        Turn on the (non-stock) signed change-notice emitter.
    stripe_url, stripe_api_key:
        Where the storefront checkout creates PaymentIntents (checkout mode ``stripe``).
    timezone:
        The server zone in which dates are rendered (CEF's default is server-local time).
    """
    from commerce_bridge.sandbox.clarity_sim.control import register_sandbox_routes
    from commerce_bridge.sandbox.clarity_sim.faults import FaultInjector
    from commerce_bridge.sandbox.clarity_sim.webhooks import WebhookEmitter

    config = SimConfig(
        user=user, password=password, readonly_user=readonly_user, readonly_password=readonly_password,
        basic_auth=basic_auth, webhook_url=webhook_url, webhook_secret=webhook_secret, stripe_url=stripe_url,
        stripe_api_key=stripe_api_key, add_payment_records_payment=add_payment_records_payment,
    )
    sim = Sim(store=DocStore(state_file), clock=SimClock(timezone), config=config)
    with sim.store.batch():
        lookups.seed(sim)
        seed_identities(sim)
        seed_inventory(sim)
    if webhook_url:  # after seeding: seed rows are not changes anyone should hear about
        sim.emitter = WebhookEmitter(webhook_url, webhook_secret or "", base_backoff_s=webhook_backoff_s)
    router = build_router()
    faults = FaultInjector()
    sandbox_routes = register_sandbox_routes(sim, faults)

    async def api(request: Request) -> Response:
        path = "/" + request.path_params.get("path", "")
        return await _dispatch_api(sim, router, request, path)

    async def not_found(request: Request) -> Response:
        return json_response({"error": "not found", "hint": f"the API lives under {ADMIN_BASE}"}, status=404)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sim.emitter is not None:
            await sim.emitter.start()
        try:
            yield
        finally:
            if sim.emitter is not None:
                await sim.emitter.stop()

    routes: list[Any] = [
        *sandbox_routes,
        Route(ADMIN_BASE + "/{path:path}", api, methods=ALL_METHODS),
        Route("/{path:path}", not_found, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    app.state.faults = faults
    app.add_middleware(faults.middleware_class(), injector=faults)
    return app
