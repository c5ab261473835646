"""Subscriptions and their invoices, driven by test clocks (renewal, failed payments, retries, past_due)."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from ..errors import StripeApiError, invalid_request, state_error
from ..forms import Params, as_bool, as_int, as_str, metadata_update
from ..ids import new_id
from ..state import Emulator
from ..store import Obj
from . import Route
from .invoices import ROUTES as INVOICE_ROUTES
from .invoices import attempt_payment, new_invoice

RETRY_DAYS = (3, 5, 7)  # after the 1st, 2nd, 3rd failure; the 4th failure cancels the subscription
LIVE = ("active", "trialing", "past_due", "incomplete")


def add_interval(ts: int, interval: str, count: int) -> int:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    if interval == "day":
        return ts + 86400 * count
    if interval == "week":
        return ts + 7 * 86400 * count
    months = count * (12 if interval == "year" else 1)
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    day = min(d.day, calendar.monthrange(y, m)[1])
    return int(d.replace(year=y, month=m, day=day).timestamp())


def customer_now(emu: Emulator, customer: Obj) -> int:
    clock = customer.get("test_clock")
    if clock:
        return int(emu.store.objects[clock]["frozen_time"])
    return emu.now()


# -- test clocks -------------------------------------------------------------------------------------
def create_clock(emu: Emulator, p: Params) -> Obj:
    frozen = as_int(p, "frozen_time", required=True)
    assert frozen is not None
    clock: Obj = {
        "id": new_id("clock"),
        "object": "test_helpers.test_clock",
        "created": emu.now(),
        "deletes_after": emu.now() + 30 * 86400,
        "frozen_time": frozen,
        "livemode": False,
        "name": as_str(p, "name"),
        "status": "ready",
        "status_details": {},
    }
    emu.add("test_helpers.test_clock", clock)
    emu.emit("test_helpers.test_clock.created", clock)
    return clock


def advance_clock(emu: Emulator, p: Params, cid: str) -> Obj:
    """Move a test clock forward and run everything due on its customers' subscriptions, in time order.

    Stripe answers ``status: advancing`` and finishes in the background; the emulator finishes before it
    answers, so the returned clock is already ``ready``.
    """
    clock = emu.get("test_helpers.test_clock", cid, "test_clock", "test clock")
    target = as_int(p, "frozen_time", required=True)
    assert target is not None
    if target <= clock["frozen_time"]:
        raise invalid_request(
            "The frozen_time must be after the current frozen_time of the test clock.", param="frozen_time"
        )
    emu.update(None, clock, {"status": "advancing"})
    emu.emit("test_helpers.test_clock.advancing", clock)
    subs = [
        emu.store.objects[s]
        for c in emu.store.index(f"customer:clock:{cid}").ids
        for s in emu.store.index(f"subscription:customer:{c}").ids
    ]
    while True:
        due = [(t, s) for s in subs if (t := _next_due(emu, s)) is not None and t <= target]
        if not due:
            break
        t, sub = min(due, key=lambda x: x[0])
        clock["frozen_time"] = t
        _run_due(emu, sub, t)
    emu.update(None, clock, {"frozen_time": target, "status": "ready"})
    emu.emit("test_helpers.test_clock.ready", clock)
    return clock


def delete_clock(emu: Emulator, p: Params, cid: str) -> Obj:
    emu.get("test_helpers.test_clock", cid, "test_clock", "test clock")
    emu.store.delete(cid)
    return {"id": cid, "object": "test_helpers.test_clock", "deleted": True}


# -- subscriptions -----------------------------------------------------------------------------------
def _plan(price: Obj) -> Obj:
    rec = price["recurring"] or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec.get("interval"),
        "interval_count": rec.get("interval_count"),
        "livemode": False,
        "metadata": price["metadata"],
        "meter": None,
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": rec.get("trial_period_days"),
        "usage_type": rec.get("usage_type", "licensed"),
    }


def _item(emu: Emulator, sub_id: str, raw: Any, now: int) -> Obj:
    if not isinstance(raw, dict) or not raw.get("price"):
        raise invalid_request("Each item needs a price.", param="items")
    price = emu.get("price", raw["price"], "items[0][price]")
    if not price["recurring"]:
        raise invalid_request(
            "The price specified is set to `type=one_time` but this field only accepts prices "
            "with `type=recurring`.",
            param="items[0][price]",
        )
    return {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": now,
        "current_period_end": now,
        "current_period_start": now,
        "discounts": [],
        "metadata": metadata_update({}, raw.get("metadata")),
        "plan": _plan(price),
        "price": price,
        "quantity": as_int(raw, "quantity", 1),
        "subscription": sub_id,
        "tax_rates": [],
    }


def _set_period(sub: Obj, start: int, end: int) -> None:
    for it in sub["items"]["data"]:
        it["current_period_start"] = start
        it["current_period_end"] = end
    sub["billing_cycle_anchor"] = sub["billing_cycle_anchor"] or start


def _period_end(sub: Obj) -> int:
    return int(sub["items"]["data"][0]["current_period_end"])


def _interval(sub: Obj) -> tuple[str, int]:
    rec = sub["items"]["data"][0]["price"]["recurring"]
    return rec["interval"], int(rec["interval_count"])


def create_subscription(emu: Emulator, p: Params) -> Obj:
    cus = emu.get("customer", as_str(p, "customer", required=True), "customer")
    items = p.get("items")
    if not isinstance(items, list) or not items:
        raise invalid_request("Missing required param: items.", param="items", code="parameter_missing")
    now = customer_now(emu, cus)
    sid = new_id("sub")
    its = [_item(emu, sid, raw, now) for raw in items]
    currency = its[0]["price"]["currency"]
    dpm = as_str(p, "default_payment_method")
    if dpm:
        emu.get("payment_method", dpm, "default_payment_method", "PaymentMethod")
    behavior = as_str(p, "payment_behavior", "allow_incomplete")
    trial_days = as_int(p, "trial_period_days")
    trial_end = as_int(p, "trial_end") if p.get("trial_end") not in (None, "", "now") else None
    if trial_days:
        trial_end = now + trial_days * 86400
    sub: Obj = {
        "id": sid,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": as_bool(p, "cancel_at_period_end"),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": as_str(p, "collection_method", "charge_automatically"),
        "created": now,
        "currency": currency,
        "customer": cus["id"],
        "customer_account": None,
        "days_until_due": as_int(p, "days_until_due"),
        "default_payment_method": dpm,
        "default_source": None,
        "default_tax_rates": [],
        "description": as_str(p, "description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "items": {
            "object": "list",
            "data": its,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sid}",
        },
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": metadata_update({}, p.get("metadata")),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": cus.get("test_clock"),
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": now if trial_end else None,
    }
    interval, count = _interval(sub)
    _set_period(sub, now, trial_end or add_interval(now, interval, count))
    emu.add("subscription", sub, (f"subscription:customer:{cus['id']}",), {"attempts": 0})
    emu.emit("customer.subscription.created", sub)
    inv = new_invoice(emu, sub, cus, "subscription_create", now, zero=bool(trial_end))
    sub["latest_invoice"] = inv["id"]
    if trial_end:
        emu.update("customer.subscription.updated", sub, {"status": "trialing"})
        return sub
    if behavior == "default_incomplete":
        return sub
    paid = attempt_payment(emu, inv, sub, cus, now)
    if paid:
        emu.update("customer.subscription.updated", sub, {"status": "active"})
    elif behavior == "error_if_incomplete":
        err = emu.store.intern(inv["id"]).get("last_error") or {}
        raise StripeApiError(
            402,
            "card_error",
            err.get("message", "Your card was declined."),
            code=err.get("code", "card_declined"),
            decline_code=err.get("decline_code"),
        )
    return sub


def _next_due(emu: Emulator, sub: Obj) -> int | None:
    if sub["status"] not in LIVE:
        return None
    internal = emu.store.intern(sub["id"])
    times = [_period_end(sub)] if sub["status"] != "incomplete" else []
    if internal.get("next_retry"):
        times.append(internal["next_retry"])
    warn = _trial_warning_at(emu, sub)
    if warn is not None:
        times.append(warn)
    return min(times) if times else None


def _trial_warning_at(emu: Emulator, sub: Obj) -> int | None:
    """When ``customer.subscription.trial_will_end`` is due (3 days before the trial ends), if still pending."""
    if sub["status"] != "trialing" or not sub["trial_end"] or emu.store.intern(sub["id"]).get("trial_warned"):
        return None
    return max(int(sub["trial_end"]) - 3 * 86400, int(sub["created"]))


def _run_due(emu: Emulator, sub: Obj, t: int) -> None:
    internal = emu.store.intern(sub["id"])
    cus = emu.store.objects[sub["customer"]]
    warn = _trial_warning_at(emu, sub)
    if warn is not None and warn <= t:
        internal["trial_warned"] = True
        emu.store.touch(sub["id"])
        emu.emit("customer.subscription.trial_will_end", sub)
        return
    if internal.get("next_retry") and internal["next_retry"] <= t:
        inv = emu.store.objects[internal["retry_invoice"]]
        internal["next_retry"] = None
        emu.store.touch(sub["id"])
        if attempt_payment(emu, inv, sub, cus, t):
            emu.update("customer.subscription.updated", sub, {"status": "active"})
        else:
            _after_failure(emu, sub, inv, t)
        return
    end = _period_end(sub)
    if sub["cancel_at_period_end"]:
        cancel(emu, sub, t, "cancellation_requested")
        return
    interval, count = _interval(sub)
    prev_items = [dict(it) for it in sub["items"]["data"]]
    _set_period(sub, end, add_interval(end, interval, count))
    prev: dict[str, Any] = {"items": {"data": prev_items}}
    if sub["status"] == "trialing":
        prev["status"] = "trialing"
        sub["status"] = "active"
    emu.emit("customer.subscription.updated", sub, prev)
    inv = new_invoice(emu, sub, cus, "subscription_cycle", t)
    sub["latest_invoice"] = inv["id"]
    if not attempt_payment(emu, inv, sub, cus, t):
        _after_failure(emu, sub, inv, t)


def _after_failure(emu: Emulator, sub: Obj, inv: Obj, t: int) -> None:
    n = inv["attempt_count"]
    internal = emu.store.intern(sub["id"])
    if n > len(RETRY_DAYS):
        emu.update("invoice.updated", inv, {"next_payment_attempt": None})
        cancel(emu, sub, t, "payment_failed")
        return
    nxt = t + RETRY_DAYS[n - 1] * 86400
    internal["next_retry"] = nxt
    internal["retry_invoice"] = inv["id"]
    emu.store.touch(sub["id"])
    emu.update("invoice.updated", inv, {"next_payment_attempt": nxt})
    if sub["status"] != "past_due" and sub["status"] != "incomplete":
        emu.update("customer.subscription.updated", sub, {"status": "past_due"})


def cancel(emu: Emulator, sub: Obj, t: int, reason: str) -> Obj:
    emu.changed(
        sub,
        {
            "status": "canceled",
            "canceled_at": t,
            "ended_at": t,
            "cancellation_details": {"comment": None, "feedback": None, "reason": reason},
        },
    )
    emu.store.touch(sub["id"])
    emu.store.intern(sub["id"])["next_retry"] = None
    emu.emit("customer.subscription.deleted", sub, created=t)
    return sub


def update_subscription(emu: Emulator, p: Params, sid: str) -> Obj:
    sub = emu.get("subscription", sid)
    if sub["status"] == "canceled":
        raise state_error(
            "A canceled subscription can only update its cancellation_details and metadata.",
            code="resource_missing",
        )
    up: dict[str, Any] = {}
    if "cancel_at_period_end" in p:
        flag = as_bool(p, "cancel_at_period_end")
        up["cancel_at_period_end"] = flag
        up["cancel_at"] = _period_end(sub) if flag else None
    if "metadata" in p:
        up["metadata"] = metadata_update(sub["metadata"], p["metadata"])
    if "default_payment_method" in p:
        dpm = as_str(p, "default_payment_method")
        if dpm:
            emu.get("payment_method", dpm, "default_payment_method", "PaymentMethod")
        up["default_payment_method"] = dpm
    if isinstance(p.get("items"), list):
        data = [dict(it) for it in sub["items"]["data"]]
        for raw in p["items"]:
            if not isinstance(raw, dict):
                continue
            target = next((it for it in data if it["id"] == raw.get("id")), None)
            if target is None:
                data.append(_item(emu, sid, raw, customer_now(emu, emu.store.objects[sub["customer"]])))
                continue
            if raw.get("price"):
                price = emu.get("price", raw["price"], "items[0][price]")
                target["price"], target["plan"] = price, _plan(price)
            if "quantity" in raw:
                target["quantity"] = as_int(raw, "quantity", 1)
        up["items"] = {**sub["items"], "data": data}
    emu.update("customer.subscription.updated", sub, up)
    return sub


def delete_subscription(emu: Emulator, p: Params, sid: str) -> Obj:
    sub = emu.get("subscription", sid)
    if sub["status"] == "canceled":
        raise state_error(f"No such subscription: '{sid}' is already canceled.", code="resource_missing")
    cus = emu.store.objects.get(sub["customer"])
    return cancel(emu, sub, customer_now(emu, cus) if cus else emu.now(), "cancellation_requested")


def list_subscriptions(emu: Emulator, p: Params) -> Obj:
    cus = as_str(p, "customer")
    status = as_str(p, "status")
    pred = None
    if status and status != "all":
        pred = lambda s: s["status"] == status  # noqa: E731
    elif not status:
        pred = lambda s: s["status"] != "canceled"  # noqa: E731
    if cus:
        return emu.list_page(f"subscription:customer:{cus}", p, "/v1/subscriptions", pred)
    return emu.list_page("subscription", p, "/v1/subscriptions", pred)


ROUTES: list[Route] = [
    ("POST", "/v1/test_helpers/test_clocks", create_clock),
    (
        "GET",
        "/v1/test_helpers/test_clocks",
        lambda emu, p: emu.list_page("test_helpers.test_clock", p, "/v1/test_helpers/test_clocks"),
    ),
    (
        "GET",
        "/v1/test_helpers/test_clocks/{id}",
        lambda emu, p, i: emu.get("test_helpers.test_clock", i, label="test clock"),
    ),
    ("POST", "/v1/test_helpers/test_clocks/{id}/advance", advance_clock),
    ("DELETE", "/v1/test_helpers/test_clocks/{id}", delete_clock),
    ("POST", "/v1/subscriptions", create_subscription),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("GET", "/v1/subscriptions/{id}", lambda emu, p, i: emu.get("subscription", i)),
    ("POST", "/v1/subscriptions/{id}", update_subscription),
    ("DELETE", "/v1/subscriptions/{id}", delete_subscription),
    *INVOICE_ROUTES,
]
