"""The admin API under ``/api/v1``: events, runs, the dead-letter queue, workers and reconciliation (bearer tokens).

Rules it keeps:

* every route, the OpenAPI schema and the docs pages included, needs a bearer token from
  ``CB_ADMIN_TOKENS``; ``CB_ADMIN_DOCS=false`` removes the schema and docs pages altogether;
* what it shows from the store (step inputs, error messages, tracebacks, run and event fields) goes
  through the same :class:`~commerce_bridge.logsetup.Redactor` as the logs (``CB_LOG_PII_KEYS``);
* every answer is declared in the schema (``admin_models.py``), and every error, an unexpected
  exception included, is the project's JSON error shape; ids out of a database's range and text the
  database cannot store are a 422;
* no redirects: a path with a trailing slash is a 404, never a redirect built from the ``Host`` header.
"""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import Body, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commerce_bridge.bootstrap import Container
from commerce_bridge.entrypoints.http.admin_models import (
    NO_NUL,
    DeadLetterAnswer,
    DeadLetterList,
    DiscardRequest,
    DriftAnswer,
    ErrorBody,
    EventsPage,
    ReconciledPayoutAnswer,
    ReconciledPayoutList,
    ReconciliationExceptionList,
    RecoverAnswer,
    RecoverRequest,
    ReplayRequest,
    RunAnswer,
    WorkerList,
)
from commerce_bridge.entrypoints.http.errors import error_body, from_exception, new_request_id
from commerce_bridge.entrypoints.views import MAX_ID, RedactedViews
from commerce_bridge.errors import BridgeError, NotFound, Unauthorized, ValidationError
from commerce_bridge.services.reconciliation_report import MEDIA_TYPES, build_report

log = structlog.get_logger("commerce_bridge.http.admin")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {401: "No or wrong bearer token", 404: "No such object", 422: "Invalid request",
                    500: "Internal error", 503: "The database is unavailable"}
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


COMMON_ERRORS = _errors(401, 422, 500, 503)
LOOKUP_ERRORS = _errors(401, 404, 422, 500, 503)

# module level: FastAPI reads the annotations of the handlers, which name it, from this module's globals
BEARER = HTTPBearer(auto_error=False, description="A token from CB_ADMIN_TOKENS.")
EntryId = Annotated[int, Path(ge=1, le=MAX_ID, description="A dead-letter entry's id.")]


class AdminGate:
    """The first thing every admin request meets: the bearer token, then a JSON 500 for any surprise.

    Without a valid token the answer is 401 whatever the path or body (nothing else is revealed, not
    even which paths exist). An exception no handler took becomes the JSON 500 shape, logged with its
    traceback (redacted by the log pipeline): Starlette's own last resort answers plain text.
    """

    def __init__(self, app: ASGIApp, tokens: list[bytes]) -> None:
        self.app = app
        self._tokens = tokens

    def _authorized(self, scope: Scope) -> tuple[bool, str]:
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not given:
            return False, "A bearer token is required (Authorization: Bearer <token>, a token from CB_ADMIN_TOKENS)"
        ok = False
        for t in self._tokens:  # constant time against every configured token
            ok |= hmac.compare_digest(t, given)
        return ok, "" if ok else "The bearer token is not valid: it is none of this bridge's CB_ADMIN_TOKENS"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ok, why = self._authorized(scope)
        if not ok:
            _, body, _ = from_exception(Unauthorized(why), new_request_id())
            await JSONResponse(body, status_code=401, headers={"www-authenticate": "Bearer"})(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request_id = new_request_id()
            log.error("admin.unhandled", path=scope.get("path"), error=type(exc).__name__, request_id=request_id,
                      exc_info=exc)
            if started:  # too late for an answer: let the server close the connection
                raise
            status, body, headers = from_exception(exc, request_id)
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


def build_admin_api(c: Container) -> FastAPI:
    """The admin API as an ASGI app, to be mounted at ``/api/v1``."""
    tokens = [t.get_secret_value().encode() for t in c.settings.admin_tokens]
    views = RedactedViews(c.settings.log_pii_keys)

    # The gate checks the token; the dependency declares the scheme in the OpenAPI schema.
    api = FastAPI(title="commerce-bridge admin API", version="1", dependencies=[Security(BEARER)],
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    api.add_middleware(AdminGate, tokens=tokens)

    @api.exception_handler(BridgeError)
    async def _bridge_error(request: Request, exc: BridgeError) -> JSONResponse:
        status, body, headers = from_exception(exc, new_request_id())
        # messages quote stored data (run ids carry event ids): redacted like the rows
        body.update(error=views.text(body["error"]), errors=[views.text(e) for e in body["errors"]])
        return JSONResponse(body, status_code=status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(error_body(422, "validation_error", "Invalid request", errs), status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8 JSON): invalid like any other
            body = error_body(422, "validation_error", "Invalid request", ["body: not a JSON document in UTF-8"])
            return JSONResponse(body, status_code=422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = error_body(exc.status_code, code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @api.get("/events", response_model=EventsPage, responses=COMMON_ERRORS)
    def list_events(
        source: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
        status: Annotated[str | None, Query(max_length=16, pattern=NO_NUL)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> dict[str, Any]:
        """Deliveries newest first, with their state and the runs they started."""
        rows = c.inbox.list(source=source, status=status, limit=limit, before_id=before_id)
        return {"ok": True, "events": views.rows(rows),
                "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    @api.get("/runs/{run_id:path}", response_model=RunAnswer, responses=LOOKUP_ERRORS)
    def get_run(run_id: Annotated[str, Path(max_length=600, pattern=NO_NUL)]) -> dict[str, Any]:
        """One workflow run."""
        run = c.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return {"ok": True, "run": views.row(run)}

    @api.get("/dlq", response_model=DeadLetterList, responses=COMMON_ERRORS)
    def list_dlq(
        status: Annotated[str | None, Query(max_length=16, pattern=NO_NUL)] = "open",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Dead-letter entries, newest first (``status`` empty: all)."""
        return {"ok": True, "entries": views.rows(c.dead_letters.list(status=status or None, limit=limit))}

    @api.get("/dlq/{entry_id}", response_model=DeadLetterAnswer, responses=LOOKUP_ERRORS)
    def show_dlq(entry_id: EntryId) -> dict[str, Any]:
        """One dead-letter entry: error, upstream request id, step input and the suggested fix."""
        return {"ok": True, "entry": views.row(c.dead_letters.get(entry_id))}

    @api.post("/dlq/{entry_id}/replay", response_model=DeadLetterAnswer, responses=LOOKUP_ERRORS)
    def replay_dlq(entry_id: EntryId, body: Annotated[ReplayRequest | None, Body()] = None) -> dict[str, Any]:
        """Resume the run from its failed step (or from its first), with the same idempotency keys."""
        req = body or ReplayRequest()
        entry = c.admin.replay(entry_id, req.reason, from_start=req.from_start)
        return {"ok": True, "entry": views.row(entry)}

    @api.post("/dlq/{entry_id}/discard", response_model=DeadLetterAnswer, responses=LOOKUP_ERRORS)
    def discard_dlq(entry_id: EntryId, body: DiscardRequest) -> dict[str, Any]:
        """Close an entry without replaying it."""
        return {"ok": True, "entry": views.row(c.admin.discard(entry_id, body.reason))}

    @api.get("/workers", response_model=WorkerList, responses=COMMON_ERRORS)
    def list_workers() -> dict[str, Any]:
        """Workers with their lease state."""
        return {"ok": True, "workers": views.rows(c.leases.list())}

    @api.post("/workers/{executor_id}/recover", response_model=RecoverAnswer, responses=LOOKUP_ERRORS)
    def recover_worker(
        executor_id: Annotated[str, Path(max_length=200, pattern=NO_NUL)],
        body: Annotated[RecoverRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        """Resume a dead worker's unfinished runs on the surviving workers."""
        n = c.admin.recover(executor_id, by="admin-api", force=(body or RecoverRequest()).force)
        return {"ok": True, "executor_id": views.text(executor_id), "resumed_runs": n}

    @api.get("/reconciliation/payouts", response_model=ReconciledPayoutList, responses=COMMON_ERRORS)
    def list_reconciled_payouts(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Reconciled payouts, newest first: status, counts, proof and journal."""
        return {"ok": True, "payouts": _reconciliations(c).payouts(limit=limit)}

    @api.get("/reconciliation/payouts/{payout_id}", response_model=ReconciledPayoutAnswer, responses=LOOKUP_ERRORS)
    def get_reconciled_payout(payout_id: Annotated[str, Path(max_length=100, pattern=NO_NUL)]) -> dict[str, Any]:
        """One reconciled payout with its exceptions."""
        found = _reconciliations(c).get(payout_id)
        if found is None:
            raise NotFound(f"payout {payout_id} has not been reconciled",
                           suggested_fix="POST /api/v1/reconciliation/payouts/{payout_id}/reconcile, or wait for "
                                         "its payout.paid event")
        return {"ok": True, "payout": found}

    @api.post("/reconciliation/payouts/{payout_id}/reconcile", response_model=ReconciledPayoutAnswer,
              responses=LOOKUP_ERRORS)
    def reconcile_payout(payout_id: Annotated[str, Path(max_length=100, pattern=NO_NUL)],
                         dry_run: bool = False) -> dict[str, Any]:
        """Reconcile the payout now (as the workflow does: record, post the journal); ``dry_run`` does neither."""
        if c.reconciler is None:
            raise NotFound("payout reconciliation is not configured",
                           suggested_fix="set CB_STRIPE_API_KEY and CB_ERP_BASE_URL")
        result = c.reconciler.reconcile(payout_id, record=not dry_run)
        if not dry_run and result["status"] != "not_reconcilable":
            posted = c.reconciler.post(payout_id)
            result["journal_entry"] = posted.get("journal_entry")
        return {"ok": True, "payout": result}

    @api.get("/reconciliation/exceptions", response_model=ReconciliationExceptionList, responses=COMMON_ERRORS)
    def list_reconciliation_exceptions(
        payout_id: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
        kind: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        """Exceptions of the recorded reconciliations (of one payout, of one kind), oldest first."""
        return {"ok": True, "exceptions": _reconciliations(c).exceptions(payout_id=payout_id, kind=kind, limit=limit)}

    @api.get("/reconciliation/report", responses={**COMMON_ERRORS, 200: {
        "description": "The report in the asked format",
        "content": {"text/csv": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}}}}})
    def reconciliation_report(
        format: Annotated[Literal["csv", "json", "html"], Query(description="csv, json or html.")] = "json",
        what: Annotated[Literal["exceptions", "payouts"], Query(description="For csv: which table.")] = "exceptions",
        payout_id: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
        kind: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
    ) -> Response:
        """The recorded payouts (one summary each) and open exceptions, as ``reconcile report`` prints them."""
        report = build_report(_reconciliations(c), payout_id=payout_id, kind=kind)
        return Response(report.render(format, what), media_type=MEDIA_TYPES[format])

    @api.get("/reconciliation/drift", response_model=DriftAnswer, responses=LOOKUP_ERRORS)
    def reconciliation_drift(
        since: Annotated[date, Query(description="Records created or changed on or after this day (UTC).")],
        limit: Annotated[int, Query(ge=0, le=10000, description="List at most this many (0: all).")] = 100,
    ) -> dict[str, Any]:
        """Compare Stripe, Clarity and ERPNext now, as ``reconcile drift`` does: every difference by kind.

        Reads the three systems (one listing each, every page): slow on a large window; records younger
        than CB_DRIFT_SETTLE_S are left out.
        """
        if c.drift is None:
            raise NotFound("the drift check is not configured",
                           suggested_fix="set CB_STRIPE_API_KEY, CB_CLARITY_BASE_URL and CB_ERP_BASE_URL")
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        until = datetime.now(UTC) - timedelta(seconds=c.settings.drift_settle_s)
        if start >= until:
            raise ValidationError(f"since {since.isoformat()} is not in the past (nothing older than "
                                  f"CB_DRIFT_SETTLE_S={c.settings.drift_settle_s:g} s to compare)",
                                  suggested_fix="pass an earlier day")
        return {"ok": True, **c.drift.find(start, until).to_dict(limit=limit or None)}

    if c.settings.admin_docs:
        _add_docs(api)
    return api


def _reconciliations(c: Container) -> Any:
    if c.reconciliations is None:  # pragma: no cover - bootstrap always builds it
        raise NotFound("payout reconciliation is not available in this process")
    return c.reconciliations


def _add_docs(api: FastAPI) -> None:
    """The OpenAPI schema, Swagger UI and ReDoc, as routes behind the token like every other."""

    def schema_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '').rstrip('/')}/openapi.json"

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        schema = dict(api.openapi())
        root = request.scope.get("root_path", "").rstrip("/")
        if root:
            schema["servers"] = [{"url": root}]
        return JSONResponse(schema)

    @api.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=schema_url(request), title=f"{api.title} - Swagger UI")

    @api.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=schema_url(request), title=f"{api.title} - ReDoc")
