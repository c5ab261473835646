"""The emulator's ASGI app: routing, auth, rate limits, fault injection, idempotency, errors, lifespan."""

from __future__ import annotations

import gc
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from . import control, fx
from .errors import StripeApiError, invalid_request
from .forms import parse_form
from .ids import request_id
from .resources import (
    Handler,
    Route,
    balance,
    billing,
    charges,
    core,
    disputes,
    payment_intents,
    payment_methods,
    radar,
    refunds,
)
from .resources.core import expand_list
from .state import API_VERSION, Config, Emulator
from .store import Store
from .webhooks import ROUTES as WEBHOOK_ROUTES
from .webhooks import Dispatcher

REQUEST_LOG_SIZE = 10_000
"""API requests kept for ``GET /_sandbox/requests`` (the oldest are dropped)."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

IDEMPOTENCY_TTL_S = 24 * 3600
IDEMPOTENCY_MAX_KEYS = 200_000
GC_FREEZE_EVERY = 2000


class Router:
    """Matches ``METHOD /v1/a/{id}/b`` templates by segment count, exact segments first."""

    def __init__(self, routes: list[Route]) -> None:
        self.exact: dict[tuple[str, str], Handler] = {}
        self.templated: dict[tuple[str, int], list[tuple[list[str], Handler]]] = {}
        for method, path, handler in routes:
            if "{" not in path:
                self.exact[(method, path)] = handler
            else:
                segs = path.strip("/").split("/")
                self.templated.setdefault((method, len(segs)), []).append((segs, handler))

    def match(self, method: str, path: str) -> tuple[Handler, list[str]] | None:
        h = self.exact.get((method, path))
        if h is not None:
            return h, []
        segs = path.strip("/").split("/")
        for tmpl, handler in self.templated.get((method, len(segs)), ()):
            args = []
            for t, s in zip(tmpl, segs, strict=True):
                if t[0] == "{":
                    args.append(s)
                elif t != s:
                    break
            else:
                return handler, args
        return None

    def path_exists(self, path: str) -> bool:
        return any(self.match(m, path) for m in ("GET", "POST", "DELETE"))


FAULT_KINDS = ("rate_limit", "lock_timeout", "server_error", "drop_response")


class Fault:
    """An injected failure of the next ``count`` matching ``/v1`` requests.

    ``rate_limit``, ``lock_timeout`` and ``server_error`` answer an error before the request runs (as
    Stripe's rate limiter does, ahead of idempotency). ``drop_response`` lets the request run (and its
    answer be saved for an idempotent replay), then closes the connection before the answer's body is
    sent: the client sees a connection error although Stripe did the work (an answer lost to a timeout
    or a reset).
    """

    def __init__(
        self, kind: str, count: int, should_retry: bool | None, path: str | None, method: str | None
    ) -> None:
        if kind not in FAULT_KINDS:
            raise invalid_request(f"Unknown fault kind: {kind}")
        self.kind = kind
        self.remaining = count
        self.should_retry = should_retry
        self.path = path
        self.method = method

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "should_retry": self.should_retry,
            "path": self.path,
            "method": self.method,
        }

    def error(self) -> StripeApiError:
        headers = {}
        if self.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        if self.kind == "server_error":
            return StripeApiError(
                500,
                "api_error",
                "An unknown error occurred (injected by the sandbox).",
                headers=headers,
                store_idempotent=False,
            )
        if self.kind == "lock_timeout":
            return StripeApiError(
                429,
                "invalid_request_error",
                "This object cannot be accessed right now because another API request or Stripe process is "
                "currently accessing it. If you see this error intermittently, retry the request.",
                code="lock_timeout",
                headers=headers,
                store_idempotent=False,
            )
        headers["Stripe-Rate-Limited-Reason"] = "global-rate"
        return StripeApiError(
            429,
            "invalid_request_error",
            "Request rate limit exceeded. (injected by the sandbox)",
            code="rate_limit",
            headers=headers,
            store_idempotent=False,
        )


class StripeEmulatorApp:
    """ASGI callable; see :func:`build_app`."""

    def __init__(
        self, emu: Emulator, dispatcher: Dispatcher, startup_endpoint: dict[str, Any] | None
    ) -> None:
        self.emu = emu
        self.dispatcher = dispatcher
        self.router = Router(
            [
                *core.ROUTES,
                *payment_methods.ROUTES,
                *payment_intents.ROUTES,
                *charges.ROUTES,
                *balance.ROUTES,
                *refunds.ROUTES,
                *disputes.ROUTES,
                *radar.ROUTES,
                *billing.ROUTES,
                *WEBHOOK_ROUTES,
            ]
        )
        self.faults: list[Fault] = []
        self.idempotency: OrderedDict[str, tuple[float, str, Any, int, bytes]] = OrderedDict()
        self.startup_endpoint = startup_endpoint
        self._window = 0
        self._window_count = 0
        self.gc_tuning = False
        self._requests = 0
        # the Dashboard's request logs: the API requests answered, newest last (``GET /_sandbox/requests``)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        if startup_endpoint:
            self.register_startup_endpoint()

    def register_startup_endpoint(self) -> None:
        assert self.startup_endpoint is not None
        from .webhooks import create_endpoint

        ep = self.startup_endpoint
        for wid in self.emu.store.index("webhook_endpoint").ids:
            if self.emu.store.objects[wid]["url"] == ep["url"]:
                return
        create_endpoint(
            self.emu,
            {
                "url": ep["url"],
                "enabled_events": ["*"],
                "secret": ep.get("secret"),
                "description": "registered at start-up",
            },
        )

    def reset(self) -> None:
        self.emu.reset()
        self.idempotency.clear()
        self.request_log.clear()
        self.faults.clear()
        self.dispatcher.attempts.clear()
        self.dispatcher.endpoints_changed()
        if self.startup_endpoint:
            self.register_startup_endpoint()

    # -- ASGI ---------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        status, headers, payload, drop = await self.handle(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if drop:
            # a `drop_response` fault: the work is done, the answer never arrives (the server closes
            # the connection with the body unsent, so the client sees a broken connection)
            return
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await self.dispatcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.dispatcher.stop()
                self.emu.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """The answer to one request, and whether a ``drop_response`` fault withholds it."""
        dropped: list[bool] = []
        status, headers, payload = await self._answer(scope, body, dropped)
        if not str(scope["path"]).startswith("/_sandbox/"):
            named = dict(headers)
            self.request_log.append({
                "method": scope["method"], "path": scope["path"], "status": status, "created": self.emu.now(),
                "request_id": named[b"request-id"].decode(),
                "idempotency_key": named.get(b"idempotency-key", b"").decode() or None,
                "replayed": named.get(b"idempotent-replayed") == b"true"})
        return status, headers, payload, bool(dropped)

    async def _answer(
        self, scope: Scope, body: bytes, dropped: list[bool]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self._requests += 1
        if self.gc_tuning and self._requests % GC_FREEZE_EVERY == 0:
            gc.freeze()  # stored objects never form cycles: stop the cyclic GC from rescanning them
        rid = request_id()
        method: str = scope["method"]
        path: str = scope["path"]
        extra_headers: dict[str, str] = {}
        try:
            if path.startswith("/_sandbox/"):
                status, result = await control.dispatch(self, method, path, scope, body)
                if status == 302:
                    extra_headers["Location"] = result["redirect"]
                return self._respond(status, orjson.dumps(result), rid, extra_headers)
            hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self._authenticate(hdrs.get("authorization"))
            self._rate_limit()
            if self._inject_fault(method, path):
                dropped.append(True)
            qs = scope.get("query_string", b"")
            params = parse_form(qs) if qs else {}
            if body:
                params.update(parse_form(body))
            matched = self.router.match(method, path)
            if matched is None:
                if self.router.path_exists(path):
                    raise invalid_request(f"Unrecognized request URL ({method}: {path}).", status=405)
                raise invalid_request(
                    f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help "
                    "at https://support.stripe.com/.",
                    status=404,
                )
            handler, args = matched
            ikey = hdrs.get("idempotency-key") if method == "POST" else None
            if ikey:
                extra_headers["Idempotency-Key"] = ikey
                saved = self._idempotent_lookup(ikey, method, path, params)
                if saved is not None:
                    extra_headers["Idempotent-Replayed"] = "true"
                    return self._respond(saved[0], saved[1], rid, extra_headers)
            self.emu.ctx.request_id = rid
            self.emu.ctx.idempotency_key = ikey
            self.emu.ctx.base_url = "http://" + hdrs.get("host", "127.0.0.1")
            try:
                result = handler(self.emu, params, *args)
                payload = orjson.dumps(self.emu.render(result, expand_list(params)))
                status = 200
            except StripeApiError as exc:
                if not exc.store_idempotent or not ikey:
                    raise
                status = exc.status
                payload = orjson.dumps(exc.body(rid))
                extra_headers.update(exc.headers)
            finally:
                self.emu.ctx.request_id = None
                self.emu.ctx.idempotency_key = None
            if ikey:
                self._idempotent_save(ikey, method, path, params, status, payload)
            return self._respond(status, payload, rid, extra_headers)
        except StripeApiError as exc:
            extra_headers.update(exc.headers)
            return self._respond(exc.status, orjson.dumps(exc.body(rid)), rid, extra_headers)
        except Exception as exc:  # a bug in the emulator: answer like Stripe's api_error
            traceback.print_exc()
            err = StripeApiError(500, "api_error", f"Sandbox internal error: {type(exc).__name__}: {exc}")
            return self._respond(500, orjson.dumps(err.body(rid)), rid, extra_headers)

    @staticmethod
    def _respond(
        status: int, payload: bytes, rid: str, extra: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", rid.encode()),
            (b"stripe-version", API_VERSION.encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        for k, v in extra.items():
            headers.append((k.lower().encode(), v.encode()))
        return status, headers, payload

    # -- request gates ------------------------------------------------------------------------------
    @staticmethod
    def _authenticate(auth: str | None) -> None:
        if not auth:
            raise StripeApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                store_idempotent=False,
            )
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        if auth.lower().startswith("basic "):
            import base64

            key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        if not key.startswith(("sk_test_", "rk_test_")):
            raise StripeApiError(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {key[:8]}****",
                code="api_key_invalid",
                store_idempotent=False,
            )

    def _rate_limit(self) -> None:
        limit = self.emu.config.rate_limit_per_s
        if not limit:
            return
        sec = int(time.monotonic())
        if sec != self._window:
            self._window = sec
            self._window_count = 0
        self._window_count += 1
        if self._window_count > limit:
            raise StripeApiError(
                429,
                "invalid_request_error",
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                headers={"Stripe-Rate-Limited-Reason": "global-rate"},
                store_idempotent=False,
            )

    def _inject_fault(self, method: str, path: str) -> bool:
        """Raise the first matching error fault; True when it is a ``drop_response`` (run, then drop)."""
        for f in self.faults:
            if f.remaining <= 0:
                continue
            if f.method and f.method != method:
                continue
            if f.path and not path.startswith(f.path):
                continue
            f.remaining -= 1
            self.faults = [x for x in self.faults if x.remaining > 0]
            if f.kind == "drop_response":
                return True
            raise f.error()
        return False

    def _idempotent_lookup(
        self, key: str, method: str, path: str, params: dict[str, Any]
    ) -> tuple[int, bytes] | None:
        if len(key) > 255:
            raise invalid_request("Idempotency-Key must be at most 255 characters long.")
        saved = self.idempotency.get(key)
        if saved is None:
            return None
        at, sig, sparams, status, payload = saved
        # Stripe prunes keys at least 24 h old; on the account clock, so /_sandbox/clock/advance expires them
        if self.emu.now() - at > IDEMPOTENCY_TTL_S:
            del self.idempotency[key]
            return None
        if sig != f"{method} {path}" or sparams != params:
            raise StripeApiError(
                400,
                "idempotency_error",
                f"Keys for idempotent requests can only be used with the same parameters they were first used with. "
                f"Try using a key other than '{key}' if you meant to execute a different request.",
                store_idempotent=False,
            )
        return status, payload

    def _idempotent_save(
        self, key: str, method: str, path: str, params: dict[str, Any], status: int, payload: bytes
    ) -> None:
        self.idempotency[key] = (self.emu.now(), f"{method} {path}", params, status, payload)
        while len(self.idempotency) > IDEMPOTENCY_MAX_KEYS:
            self.idempotency.popitem(last=False)


def build_app(
    *,
    state_file: str | None = None,
    fee_percent_bp: int = 290,
    fee_fixed_minor: int = 30,
    rate_limit_per_s: int | None = None,
    **opts: Any,
) -> StripeEmulatorApp:
    """The Stripe emulator as an ASGI app.

    Parameters
    ----------
    state_file:
        SQLite file to persist objects to (write-behind, every 0.2 s); ``None`` keeps state in memory only.
    fee_percent_bp, fee_fixed_minor:
        Processing fee per charge: ``round_half_up(amount * bp / 10000) + fixed`` (default 2.9 % + 30).
    rate_limit_per_s:
        Global requests per second before answering 429 ``rate_limit`` (Stripe: 100 live, 25 test); off if ``None``.
    opts:
        ``webhook_url`` / ``webhook_secret`` (register an endpoint for all events), ``dispute_fee_minor``,
        ``payout_delay_days``, ``auto_payouts``, ``settlement_currency`` (``None``: no conversion) and
        ``fx_rates`` (``{"eur": "1.084350"}``: presentment currency -> rate into it; see ``fx.py``),
        ``webhook_retry_schedule_s``, ``gc_tuning`` (process-wide GC
        settings for a dedicated server process; the CLI turns it on), ``search_lag_s`` (PaymentIntent search
        sees objects only that many seconds after they were made, like Stripe's eventually consistent
        search; default 0).
    """
    config = Config(
        fee_percent_bp=fee_percent_bp, fee_fixed_minor=fee_fixed_minor, rate_limit_per_s=rate_limit_per_s
    )
    for k in ("dispute_fee_minor", "payout_delay_days", "auto_payouts"):
        if k in opts:
            setattr(config, k, opts.pop(k))
    if "settlement_currency" in opts:
        config.settlement_currency = fx.parse_settlement(opts.pop("settlement_currency"))
    if "fx_rates" in opts:
        config.fx_rates = fx.parse_rates(opts.pop("fx_rates"))
    store = Store(state_file)
    emu = Emulator(store, config)
    dispatcher = Dispatcher(emu)
    if "webhook_retry_schedule_s" in opts:
        dispatcher.options.retry_schedule_s = list(opts.pop("webhook_retry_schedule_s"))
    startup = None
    webhook_url, webhook_secret = opts.pop("webhook_url", None), opts.pop("webhook_secret", None)
    if webhook_url:
        startup = {"url": webhook_url, "secret": webhook_secret}
    gc_tuning = bool(opts.pop("gc_tuning", False))
    config.opts = opts
    app = StripeEmulatorApp(emu, dispatcher, startup)
    if gc_tuning:
        # a dedicated server process: fewer young-generation collections, and objects that survive are
        # frozen every GC_FREEZE_EVERY requests, so that a big store does not slow the cyclic GC down
        gc.set_threshold(50_000, 20, 100)
        gc.freeze()
        app.gc_tuning = True
    return app
