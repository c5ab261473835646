"""The ``/_sandbox/...`` control API: reset, faults, rate limit, webhook options, deliveries and resends,
request logs, 3-D Secure, clocks, payouts (run, fail), Dashboard refunds and refund status moves, disputes
opened and closed by the bank, early fraud warnings, fees, settlement currency and FX rates, and a fast
pre-fill path for benchmarks. JSON in, JSON out."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from . import fx
from .errors import invalid_request, not_found
from .resources import balance, billing, disputes, payment_intents, radar, refunds
from .webhooks import create_endpoint, resend

if TYPE_CHECKING:
    from .app import StripeEmulatorApp

# path segments that are object ids (``/_sandbox/refunds/re_…/fail``)
ID_PREFIXES = ("pi_", "dp_", "clock_", "ch_", "re_", "evt_", "po_")


def _advance_account_clock(app: StripeEmulatorApp, body: dict[str, Any]) -> dict[str, Any]:
    emu = app.emu
    now = emu.now()
    if "to" in body:
        delta = int(body["to"]) - now
    else:
        delta = int(body.get("seconds", 0)) + 86400 * int(body.get("days", 0))
    if delta < 0:
        raise invalid_request("The clock only moves forward.")
    emu.store.set_meta("clock_offset", emu.clock_offset + delta)
    return run_account_jobs(app)


def run_account_jobs(app: StripeEmulatorApp, force_payout: bool = False) -> dict[str, Any]:
    emu = app.emu
    moved = balance.settle(emu)
    moved_refunds = refunds.run_auto(emu)
    payouts = []
    if emu.config.auto_payouts or force_payout:
        payouts = [p["id"] for p in balance.run_automatic_payouts(emu)]
    balance.advance_payouts(emu)
    return {
        "now": emu.now(),
        "clock_offset": emu.clock_offset,
        "settled": moved,
        "payouts_created": payouts,
        "refunds_moved": moved_refunds,
    }


def _faults_add(app: StripeEmulatorApp, body: dict[str, Any]) -> dict[str, Any]:
    from .app import Fault

    f = Fault(
        str(body.get("kind", "rate_limit")),
        int(body.get("count", 1)),
        body.get("should_retry"),
        body.get("path"),
        body.get("method"),
    )
    app.faults.append(f)
    return {"faults": [x.as_dict() for x in app.faults]}


def _deliveries(app: StripeEmulatorApp, q: dict[str, str]) -> dict[str, Any]:
    out = list(app.dispatcher.attempts)
    if q.get("event"):
        out = [a for a in out if a["event"] == q["event"]]
    if q.get("endpoint"):
        out = [a for a in out if a["endpoint"] == q["endpoint"]]
    if q.get("type"):
        out = [a for a in out if a["type"] == q["type"]]
    limit = int(q.get("limit", 1000))
    return {"object": "list", "data": out[-limit:], "count": len(out)}


def _prefill(app: StripeEmulatorApp, body: dict[str, Any]) -> dict[str, Any]:
    """Create ``payment_intents`` succeeded PaymentIntents (with charge, txn, events) without HTTP."""
    n = int(body.get("payment_intents", 0))
    emu = app.emu
    for i in range(n):
        payment_intents.create_payment_intent(
            emu,
            {
                "amount": str(1000 + i % 5000),
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "metadata": {"order_id": f"prefill-{i}"},
            },
        )
    if app.gc_tuning:
        gc.freeze()
    return {"objects": emu.store.count()}


async def dispatch(
    app: StripeEmulatorApp, method: str, path: str, scope: dict[str, Any], raw: bytes
) -> tuple[int, Any]:
    body: dict[str, Any] = {}
    if raw:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid_request("The control API takes a JSON body.") from None
    q = dict(parse_qsl(scope.get("query_string", b"").decode()))
    emu = app.emu
    segs = path.strip("/").split("/")[1:]
    key = (method, "/".join(s if not s.startswith(ID_PREFIXES) else "{id}" for s in segs))
    ids = [s for s in segs if s.startswith(ID_PREFIXES)]
    match key:
        case ("GET", "health"):
            return 200, {"ok": True, "objects": emu.store.count(), "now": emu.now()}
        case ("DELETE", "data"):
            app.reset()
            return 200, {"deleted": True}
        case ("GET", "faults"):
            return 200, {"faults": [x.as_dict() for x in app.faults]}
        case ("POST", "faults"):
            return 200, _faults_add(app, body)
        case ("DELETE", "faults"):
            app.faults.clear()
            return 200, {"faults": []}
        case ("POST", "rate_limit"):
            emu.config.rate_limit_per_s = body.get("per_s")
            return 200, {"per_s": emu.config.rate_limit_per_s}
        case ("GET", "webhooks/options"):
            return 200, app.dispatcher.options.as_dict()
        case ("POST", "webhooks/options"):
            app.dispatcher.set_options(body)
            return 200, app.dispatcher.options.as_dict()
        case ("POST", "webhooks/endpoints"):
            ep = create_endpoint(
                emu,
                {
                    "url": body.get("url"),
                    "enabled_events": body.get("enabled_events") or ["*"],
                    "secret": body.get("secret"),
                    "description": body.get("description"),
                },
            )
            return 200, ep
        case ("POST", "webhooks/drain"):
            return 200, {"drained": await app.dispatcher.drain(float(body.get("timeout", 10)))}
        case ("GET", "deliveries"):
            return 200, _deliveries(app, q)
        case ("GET", "requests"):  # the Dashboard's request logs: ?method=POST&path=/v1/disputes/dp_...
            wanted = {k: q[k] for k in ("method", "path") if k in q}
            return 200, {"data": [r for r in app.request_log if all(r[k] == v for k, v in wanted.items())]}
        case ("POST", "payment_intents/{id}/3ds"):
            outcome = body.get("outcome", "succeed" if body.get("success", True) else "fail")
            if outcome not in ("succeed", "fail"):
                raise invalid_request("outcome must be 'succeed' or 'fail'")
            return 200, payment_intents.authenticate(emu, ids[0], outcome == "succeed")
        case ("GET", "payment_intents/{id}/3ds"):
            # the challenge "page" a browser is sent to by next_action.redirect_to_url.url
            outcome = q.get("outcome", "succeed")
            pi = payment_intents.authenticate(emu, ids[0], outcome == "succeed")
            ret = emu.store.intern(pi["id"]).get("return_url")
            if ret:
                status = "succeeded" if pi["status"] in ("succeeded", "requires_capture") else "failed"
                sep = "&" if "?" in ret else "?"
                target = (
                    f"{ret}{sep}payment_intent={pi['id']}&payment_intent_client_secret={pi['client_secret']}"
                    f"&redirect_status={status}"
                )
                return 302, {"redirect": target}
            return 200, pi
        case ("GET", "clock"):
            return 200, {"now": emu.now(), "clock_offset": emu.clock_offset}
        case ("POST", "clock/advance"):
            return 200, _advance_account_clock(app, body)
        case ("POST", "payouts/run"):
            return 200, run_account_jobs(app, force_payout=True)
        case ("POST", "payouts/{id}/fail"):
            return 200, balance.fail_payout(emu, ids[0], str(body.get("failure_code") or "account_closed"))
        case ("POST", "disputes/{id}/resolve"):
            return 200, disputes.resolve(emu, ids[0], str(body.get("outcome", "won")))
        case ("POST", "charges/{id}/dispute"):
            return 200, disputes.open_from_control(emu, ids[0], body)
        case ("POST", "charges/{id}/early_fraud_warning"):
            return 200, radar.create_warning(emu, ids[0], body)
        case ("POST", "refunds"):
            return 200, refunds.dashboard_refund(emu, body)
        case ("POST", "refunds/{id}/succeed" | "refunds/{id}/fail" | "refunds/{id}/cancel"):
            target = {"succeed": "succeeded", "fail": "failed", "cancel": "canceled"}[segs[-1]]
            return 200, refunds.move(emu, ids[0], target, body.get("failure_reason"))
        case ("POST", "refunds/{id}/require_action" | "refunds/{id}/pending"):
            target = "requires_action" if segs[-1] == "require_action" else "pending"
            return 200, refunds.move(emu, ids[0], target)
        case ("POST", "events/{id}/resend"):
            return 200, {"queued": resend(app.dispatcher, ids[0], body.get("endpoint"))}
        case ("POST", "test_clocks/{id}/advance"):
            return 200, billing.advance_clock(emu, {"frozen_time": str(body.get("frozen_time"))}, ids[0])
        case ("GET", "config"):
            c = emu.config
            return 200, {
                "fee_percent_bp": c.fee_percent_bp,
                "fee_fixed_minor": c.fee_fixed_minor,
                "dispute_fee_minor": c.dispute_fee_minor,
                "payout_delay_days": c.payout_delay_days,
                "auto_payouts": c.auto_payouts,
                "settlement_currency": c.settlement_currency,
                "fx_rates": dict(c.fx_rates),
                "rate_limit_per_s": c.rate_limit_per_s,
            }
        case ("POST", "config"):
            for k in (
                "fee_percent_bp",
                "fee_fixed_minor",
                "dispute_fee_minor",
                "payout_delay_days",
                "auto_payouts",
                "rate_limit_per_s",
            ):
                if k in body:
                    setattr(emu.config, k, body[k])
            if "settlement_currency" in body:
                emu.config.settlement_currency = fx.parse_settlement(body["settlement_currency"])
            if "fx_rates" in body:  # replaces the whole mapping
                emu.config.fx_rates = fx.parse_rates(body["fx_rates"])
            return await dispatch(app, "GET", "/_sandbox/config", scope, b"")
        case ("POST", "prefill"):
            return 200, _prefill(app, body)
        case ("POST", "flush"):
            emu.store.flush()
            return 200, {"flushed": True}
    raise not_found("sandbox route", f"{method} {path}", "path")
