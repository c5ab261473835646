"""The admin API under ``/api/v1``: events, runs, the dead-letter queue and workers (bearer tokens)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from commerce_bridge.bootstrap import Container
from commerce_bridge.entrypoints.http.errors import error_body, from_exception, new_request_id
from commerce_bridge.errors import BridgeError, NotFound, Unauthorized


class ReplayRequest(BaseModel):
    reason: str = Field(default="replayed through the admin API", max_length=1000)
    from_start: bool = Field(default=False, description="Run every step again, not only the failed one and later ones.")


class DiscardRequest(BaseModel):
    reason: str = Field(..., min_length=1, max_length=1000)


class RecoverRequest(BaseModel):
    force: bool = False


def build_admin_api(c: Container) -> FastAPI:
    tokens = [t.get_secret_value().encode() for t in c.settings.admin_tokens]

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("A bearer token is required (Authorization: Bearer <token>)")
        ok = False
        for t in tokens:  # constant time against every configured token
            ok |= hmac.compare_digest(t, token.encode())
        if not ok:
            raise Unauthorized("The bearer token is not valid")

    api = FastAPI(title="commerce-bridge admin API", version="1", dependencies=[Depends(require_token)],
                  docs_url="/docs", openapi_url="/openapi.json")

    @api.exception_handler(BridgeError)
    async def _bridge_error(request: Request, exc: BridgeError) -> JSONResponse:
        status, body, headers = from_exception(exc, new_request_id())
        if status == 401:
            headers["www-authenticate"] = "Bearer"
        return JSONResponse(body, status_code=status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(error_body(422, "validation_error", "Invalid request", errs), status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(exc.status_code, code, str(exc.detail)), status_code=exc.status_code)

    @api.get("/events")
    def list_events(
        source: str | None = None, status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50, before_id: int | None = None,
    ) -> dict[str, Any]:
        """Deliveries newest first, with their state and the runs they started."""
        rows = c.inbox.list(source=source, status=status, limit=limit, before_id=before_id)
        return {"ok": True, "events": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    @api.get("/runs/{run_id:path}")
    def get_run(run_id: str) -> dict[str, Any]:
        run = c.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return {"ok": True, "run": run}

    @api.get("/dlq")
    def list_dlq(status: str | None = "open", limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return {"ok": True, "entries": c.dead_letters.list(status=status or None, limit=limit)}

    @api.get("/dlq/{entry_id}")
    def show_dlq(entry_id: int) -> dict[str, Any]:
        return {"ok": True, "entry": c.dead_letters.get(entry_id)}

    @api.post("/dlq/{entry_id}/replay")
    def replay_dlq(entry_id: int, body: ReplayRequest | None = None) -> dict[str, Any]:
        req = body or ReplayRequest()
        entry = c.admin.replay(entry_id, req.reason, from_start=req.from_start)
        return {"ok": True, "entry": entry}

    @api.post("/dlq/{entry_id}/discard")
    def discard_dlq(entry_id: int, body: DiscardRequest) -> dict[str, Any]:
        return {"ok": True, "entry": c.admin.discard(entry_id, body.reason)}

    @api.get("/workers")
    def list_workers() -> dict[str, Any]:
        return {"ok": True, "workers": c.leases.list()}

    @api.post("/workers/{executor_id}/recover")
    def recover_worker(executor_id: str, body: RecoverRequest | None = None) -> dict[str, Any]:
        n = c.admin.recover(executor_id, by="admin-api", force=(body or RecoverRequest()).force)
        return {"ok": True, "executor_id": executor_id, "resumed_runs": n}

    return api
