"""The simulator's ``/_sandbox/...`` routes: health, checkout, faults, the webhook delivery log, the
store operator's return actions (``returns.sandbox_routes``) and bulk seeding (``seed.sandbox_routes``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce_bridge.sandbox.clarity_sim.checkout import checkout_endpoint
from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE, Sim, json_response
from commerce_bridge.sandbox.clarity_sim.faults import FaultInjector, faults_endpoint, outage_endpoint
from commerce_bridge.sandbox.clarity_sim.returns import sandbox_routes as return_routes
from commerce_bridge.sandbox.clarity_sim.seed import sandbox_routes as seed_routes


def register_sandbox_routes(sim: Sim, faults: FaultInjector) -> list[Route]:
    async def health(request: Request) -> Response:
        return json_response({"ok": True, "api_base": ADMIN_BASE, "persistent": sim.store.persistent,
                              "timezone": str(sim.clock.zone), "webhooks": sim.emitter is not None})

    async def webhooks(request: Request) -> Response:
        if sim.emitter is None:
            return json_response({"enabled": False, "deliveries": []})
        return json_response({"enabled": True, "url": sim.emitter.url, "deliveries": sim.emitter.snapshot()})

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/checkout", checkout_endpoint, methods=["POST"]),
        Route("/_sandbox/faults", faults_endpoint, methods=["GET", "PUT", "POST", "DELETE"]),
        Route("/_sandbox/faults/outage", outage_endpoint, methods=["POST"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET"]),
        *return_routes(sim),
        *seed_routes(sim),
    ]
