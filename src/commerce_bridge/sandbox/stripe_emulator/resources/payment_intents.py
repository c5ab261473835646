"""PaymentIntents: create/confirm (declines, Radar, 3-D Secure), capture (full/partial), cancel, list, search."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from .. import fx
from ..errors import StripeApiError, invalid_request, state_error
from ..forms import Params, as_bool, as_int, as_str, metadata_update
from ..ids import new_id, secret
from ..state import Emulator
from ..store import Obj
from . import Route, balance
from .charges import new_charge
from .payment_methods import card_of, create_from_data, resolve

CANCELABLE = {
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
}
CANCEL_REASONS = {"abandoned", "duplicate", "fraudulent", "requested_by_customer"}


def _pi_fields(emu: Emulator, p: Params, pi: Obj | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "amount" in p:
        amount = as_int(p, "amount")
        if amount is None or amount < 1 or amount > 99999999:
            raise invalid_request("Invalid positive integer", param="amount")
        out["amount"] = amount
    if "currency" in p:
        out["currency"] = (as_str(p, "currency") or "").lower()
    if "customer" in p:
        cus = as_str(p, "customer")
        if cus:
            emu.get("customer", cus, "customer")
        out["customer"] = cus
    for k in (
        "description",
        "receipt_email",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "transfer_group",
    ):
        if k in p:
            out[k] = as_str(p, k)
    if "setup_future_usage" in p:
        out["setup_future_usage"] = as_str(p, "setup_future_usage")
    if "metadata" in p:
        out["metadata"] = metadata_update(pi["metadata"] if pi else {}, p["metadata"])
    if "shipping" in p:
        out["shipping"] = p["shipping"] if isinstance(p["shipping"], dict) else None
    if "capture_method" in p:
        cm = as_str(p, "capture_method")
        if cm not in ("automatic", "automatic_async", "manual"):
            raise invalid_request("Invalid capture_method", param="capture_method")
        out["capture_method"] = cm
    return out


def create_payment_intent(emu: Emulator, p: Params) -> Obj:
    amount = as_int(p, "amount", required=True)
    currency = as_str(p, "currency", required=True)
    assert amount is not None and currency is not None
    pid = new_id("pi")
    apm = p.get("automatic_payment_methods")
    pi: Obj = {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True}
        if not isinstance(apm, dict) or as_bool(apm, "enabled", True)
        else None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pid}_secret_{secret(25)}",
        "confirmation_method": as_str(p, "confirmation_method", "automatic"),
        "created": emu.now(),
        "currency": currency.lower(),
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": p.get("payment_method_types") or ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    pi.update(_pi_fields(emu, p, None))
    if as_bool(p, "confirm"):
        fx.charge_settlement(emu, pi["currency"])  # no rate into the settlement currency: refused, nothing made
    pi.update(_payment_method_updates(emu, pi, p))
    idx = (f"payment_intent:customer:{pi['customer']}",) if pi["customer"] else ()
    emu.add("payment_intent", pi, idx)
    emu.emit("payment_intent.created", pi)
    if as_bool(p, "confirm"):
        _confirm(emu, pi, p)
    return pi


def _payment_method_updates(emu: Emulator, pi: Obj, p: Params) -> dict[str, Any]:
    """The fields to change when ``payment_method`` or ``payment_method_data`` is given (else ``{}``)."""
    if p.get("payment_method"):
        pm = resolve(emu, p["payment_method"])
    elif "payment_method_data" in p:
        pm = create_from_data(emu, p["payment_method_data"], "payment_method_data")
    else:
        return {}
    up: dict[str, Any] = {"payment_method": pm["id"]}
    if pi["status"] in ("requires_payment_method", "requires_action"):
        up["status"] = "requires_confirmation"
    return up


def _confirm(emu: Emulator, pi: Obj, p: Params) -> None:
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise state_error(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
        )
    if not pi["payment_method"]:
        raise state_error(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            param="payment_method",
        )
    pm = emu.get("payment_method", pi["payment_method"], "payment_method", "PaymentMethod")
    card = card_of(emu, pm)
    internal = emu.store.intern(pi["id"])
    if card.three_ds_required and not internal.get("3ds_passed"):
        if as_bool(p, "off_session"):
            _fail(
                emu,
                pi,
                pm,
                "authentication_required",
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
            )
        challenge = f"{emu.ctx.base_url}/_sandbox/payment_intents/{pi['id']}/3ds"
        return_url = as_str(p, "return_url")
        if return_url:
            internal["return_url"] = return_url
            next_action: dict[str, Any] = {
                "type": "redirect_to_url",
                "redirect_to_url": {"return_url": return_url, "url": challenge},
            }
        else:
            next_action = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {
                    "type": "three_d_secure_redirect",
                    "stripe_js": challenge,
                    "source": new_id("src"),
                },
            }
        prev = emu.changed(
            pi, {"status": "requires_action", "last_payment_error": None, "next_action": next_action}
        )
        emu.store.touch(pi["id"])
        emu.emit("payment_intent.requires_action", pi, prev)
        return
    charge_pi(emu, pi, pm, three_ds=bool(internal.get("3ds_passed")))


def charge_pi(emu: Emulator, pi: Obj, pm: Obj, *, three_ds: bool = False) -> Obj:
    """Attempt the charge of a confirmed PaymentIntent; raises the card error on a decline."""
    card = card_of(emu, pm)
    fx.charge_settlement(emu, pi["currency"])  # before the charge exists (a rate removed since confirming)
    charge = new_charge(emu, pi, pm, card, three_ds=three_ds)
    if card.decline is not None:
        pi["latest_charge"] = charge["id"]
        emu.emit("charge.failed", charge)
        d = card.decline
        _fail(emu, pi, pm, d.code, d.decline_code, d.message, charge=charge)
    manual = pi["capture_method"] == "manual"
    updates: dict[str, Any] = {"latest_charge": charge["id"], "last_payment_error": None, "next_action": None}
    if manual:
        updates.update(status="requires_capture", amount_capturable=pi["amount"])
    else:
        charge["captured"] = True
        charge["amount_captured"] = pi["amount"]
        balance.charge_txn(emu, charge, pi["amount"], immediate=card.bypass_pending)
        updates.update(status="succeeded", amount_received=pi["amount"])
    prev = emu.changed(pi, updates)
    emu.store.touch(pi["id"])
    emu.emit("charge.succeeded", charge)
    emu.emit("payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded", pi, prev)
    if card.dispute_reason and not manual:
        from .disputes import open_dispute

        open_dispute(emu, charge, card.dispute_reason, inquiry=card.dispute_inquiry)
    return charge


def _fail(
    emu: Emulator, pi: Obj, pm: Obj, code: str, decline_code: str, message: str, charge: Obj | None = None
) -> None:
    err: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
        "payment_method": pm,
    }
    if charge is not None:
        err["charge"] = charge["id"]
        if charge["outcome"]["advice_code"]:
            err["advice_code"] = charge["outcome"]["advice_code"]
    prev = emu.changed(
        pi,
        {
            "status": "requires_payment_method",
            "last_payment_error": err,
            "next_action": None,
            "payment_method": None,
        },
    )
    emu.store.touch(pi["id"])
    emu.emit("payment_intent.payment_failed", pi, prev)
    extra = {"payment_intent": pi, "payment_method": pm}
    if charge is not None:
        extra["charge"] = charge["id"]
        if charge["outcome"]["advice_code"]:
            extra["advice_code"] = charge["outcome"]["advice_code"]
    raise StripeApiError(402, "card_error", message, code=code, decline_code=decline_code, extra=extra)


def confirm_payment_intent(emu: Emulator, p: Params, pid: str) -> Obj:
    pi = emu.get("payment_intent", pid, label="payment_intent")
    fx.charge_settlement(emu, pi["currency"])
    up = _pi_fields(
        emu, {k: v for k, v in p.items() if k in ("receipt_email", "shipping", "setup_future_usage")}, pi
    )
    emu.changed(pi, up)
    pm_up = _payment_method_updates(emu, pi, p)
    if pm_up:
        emu.store.intern(pid).pop("3ds_passed", None)
        emu.store.touch(pid)
        emu.changed(pi, pm_up)
    _confirm(emu, pi, p)
    return pi


def update_payment_intent(emu: Emulator, p: Params, pid: str) -> Obj:
    pi = emu.get("payment_intent", pid, label="payment_intent")
    always = {"metadata", "description", "receipt_email", "expand", "shipping"}
    if pi["status"] in ("succeeded", "canceled", "processing") and set(p) - always:
        raise state_error(
            f"This PaymentIntent could not be updated because it has a status of {pi['status']}."
        )
    up = _pi_fields(emu, p, pi)
    if up.get("customer"):
        emu.store.add_to_index(pid, f"payment_intent:customer:{up['customer']}")
    up.update(_payment_method_updates(emu, pi, p))
    emu.update("payment_intent.updated" if up else None, pi, up)
    return pi


def capture_payment_intent(emu: Emulator, p: Params, pid: str) -> Obj:
    pi = emu.get("payment_intent", pid, label="payment_intent")
    if pi["status"] != "requires_capture":
        raise state_error(
            f"This PaymentIntent could not be captured because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be captured: requires_capture."
        )
    amount = as_int(p, "amount_to_capture", pi["amount_capturable"])
    assert amount is not None
    if amount < 1 or amount > pi["amount_capturable"]:
        raise invalid_request(
            "The amount to capture must be a positive integer not greater than the amount capturable "
            f"({pi['amount_capturable']}).",
            param="amount_to_capture",
        )
    fx.charge_settlement(emu, pi["currency"])
    if "metadata" in p:
        pi["metadata"] = metadata_update(pi["metadata"], p["metadata"])
    charge = emu.get("charge", pi["latest_charge"])
    cprev = emu.changed(charge, {"captured": True, "amount_captured": amount})
    balance.charge_txn(emu, charge, pi["amount"], captured=amount)
    emu.store.touch(charge["id"])
    prev = emu.changed(pi, {"status": "succeeded", "amount_received": amount, "amount_capturable": 0})
    emu.store.touch(pid)
    emu.emit("charge.captured", charge, cprev)
    emu.emit("payment_intent.succeeded", pi, prev)
    card = card_of(emu, emu.get("payment_method", charge["payment_method"]))
    if card.dispute_reason:
        from .disputes import open_dispute

        open_dispute(emu, charge, card.dispute_reason, inquiry=card.dispute_inquiry)
    return pi


def cancel_payment_intent(emu: Emulator, p: Params, pid: str) -> Obj:
    pi = emu.get("payment_intent", pid, label="payment_intent")
    if pi["status"] not in CANCELABLE:
        raise state_error(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a PaymentIntent "
            "with one of the following statuses may be canceled: requires_payment_method, requires_capture, "
            "requires_confirmation, requires_action, processing."
        )
    reason = as_str(p, "cancellation_reason")
    if reason is not None and reason not in CANCEL_REASONS:
        raise invalid_request(f"Invalid cancellation_reason: {reason}", param="cancellation_reason")
    if pi["status"] == "requires_capture" and pi["latest_charge"]:
        charge = emu.get("charge", pi["latest_charge"])
        cprev = emu.changed(charge, {"amount_refunded": charge["amount"], "refunded": True})
        emu.store.touch(charge["id"])
        emu.emit("charge.refunded", charge, cprev)
    prev = emu.changed(
        pi,
        {
            "status": "canceled",
            "cancellation_reason": reason,
            "canceled_at": emu.now(),
            "amount_capturable": 0,
            "next_action": None,
        },
    )
    emu.store.touch(pid)
    emu.emit("payment_intent.canceled", pi, prev)
    return pi


def authenticate(emu: Emulator, pid: str, success: bool) -> Obj:
    """Complete (``success``) or fail the 3-D Secure challenge of a PaymentIntent in ``requires_action``."""
    pi = emu.get("payment_intent", pid, label="payment_intent")
    if pi["status"] != "requires_action":
        raise state_error(f"PaymentIntent {pid} is not awaiting authentication (status {pi['status']}).")
    pm = emu.get("payment_method", pi["payment_method"], "payment_method", "PaymentMethod")
    if not success:
        err = {
            "type": "invalid_request_error",
            "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
            "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
            "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
            "payment_method": pm,
        }
        prev = emu.changed(
            pi,
            {
                "status": "requires_payment_method",
                "last_payment_error": err,
                "next_action": None,
                "payment_method": None,
            },
        )
        emu.store.touch(pid)
        emu.emit("payment_intent.payment_failed", pi, prev)
        return pi
    emu.store.intern(pid)["3ds_passed"] = True
    emu.store.touch(pid)
    with contextlib.suppress(
        StripeApiError
    ):  # a decline is recorded on the PaymentIntent (last_payment_error)
        charge_pi(emu, pi, pm, three_ds=True)
    return pi


def list_payment_intents(emu: Emulator, p: Params) -> Obj:
    cus = as_str(p, "customer")
    if cus:
        return emu.list_page(f"payment_intent:customer:{cus}", p, "/v1/payment_intents")
    return emu.list_page("payment_intent", p, "/v1/payment_intents")


# -- search ------------------------------------------------------------------------------------------
# Stripe's search query language (docs.stripe.com/search), as far as PaymentIntents use it: clauses
# `field:value` joined by `AND` or `OR` (case-insensitive, never both in one query) or by spaces (AND);
# `-` before a clause negates it; string values in '...' or "..." where a backslash escapes the next
# character (\' and \\); numbers bare or quoted; a bare `null` tests for an empty field. The fields and
# their types are Stripe's for PaymentIntents: token fields match exactly, case-insensitively, with `:`
# only; numeric fields also take `<`, `>`, `<=` and `>=`. A query this grammar cannot read, an unknown
# field or an operator the field's type lacks is a 400 `invalid_request_error`, never a match of all.
# Stripe's search is eventually consistent ("searchable in under 1 minute" normally); the emulator's is
# consistent at once unless built with `search_lag_s`, which hides PaymentIntents created in the last that
# many seconds of the account clock (later changes of status are not delayed).

PI_SEARCH_FIELDS = {
    "amount": "numeric",
    "created": "numeric",
    "currency": "token",
    "customer": "token",
    "metadata": "token",
    "status": "token",
}
_SEARCH_JOINER = re.compile(r"(and|or)\s+", re.IGNORECASE)
_SEARCH_FIELD = re.compile(r"[a-z_][a-z0-9_.]*")
_SEARCH_OPERATOR = re.compile(r">=|<=|:|~|>|<")
_SEARCH_BARE = re.compile(r"[^\s\[\]'\"]+")
_SEARCH_NUMBER = re.compile(r"-?\d+")
_PAGE_PREFIX = "page_pi_"


@dataclass(frozen=True, slots=True)
class SearchClause:
    """One clause of a search query: ``[-]field[key] op value`` (``value`` None for ``null``)."""

    field: str
    key: str | None
    op: str
    value: str | int | None
    negated: bool
    numeric: bool


def _bad_query(query: str, why: str) -> StripeApiError:
    return invalid_request(f"Invalid search query {query!r}: {why}.", param="query")


def parse_search_query(
    query: str, fields: dict[str, str], resource: str = "payment_intents"
) -> tuple[list[SearchClause], str]:
    """The clauses of ``query`` and how they combine (``"and"`` or ``"or"``); a 400 for anything else."""
    pos, n = 0, len(query)
    clauses: list[SearchClause] = []
    joiners: set[str] = set()

    def skip_spaces() -> None:
        nonlocal pos
        while pos < n and query[pos].isspace():
            pos += 1

    def quoted() -> str:
        nonlocal pos
        quote, pos, out = query[pos], pos + 1, []
        while pos < n and query[pos] != quote:
            if query[pos] == "\\":
                pos += 1
                if pos == n:
                    break
            out.append(query[pos])
            pos += 1
        if pos >= n:
            raise _bad_query(query, "a quoted value is not closed")
        pos += 1
        return "".join(out)

    def clause() -> SearchClause:
        nonlocal pos
        negated = query.startswith("-", pos)
        pos += negated
        m = _SEARCH_FIELD.match(query, pos)
        if not m:
            raise _bad_query(query, f"expected a field name at position {pos}")
        field, pos = m.group(), m.end()
        if field not in fields:
            raise _bad_query(query, f"{field!r} is not a search field of {resource} ({', '.join(sorted(fields))})")
        key = None
        if field == "metadata":
            if not query.startswith("[", pos) or pos + 1 >= n or query[pos + 1] not in "'\"":
                raise _bad_query(query, "metadata needs a quoted key: metadata['key']:'value'")
            pos += 1
            key = quoted()
            if not query.startswith("]", pos):
                raise _bad_query(query, "expected ']' after the metadata key")
            pos += 1
        m = _SEARCH_OPERATOR.match(query, pos)
        if not m:
            raise _bad_query(query, f"expected an operator (:, ~, <, >, <=, >=) after {field!r}")
        op, pos = m.group(), m.end()
        value: str | int | None
        if pos < n and query[pos] in "'\"":
            value = quoted()
        else:
            m = _SEARCH_BARE.match(query, pos)
            if not m:
                raise _bad_query(query, f"expected a value after {field}{op}")
            bare, pos = m.group(), m.end()
            if bare.lower() == "null":
                value = None
            elif _SEARCH_NUMBER.fullmatch(bare):
                value = int(bare)
            else:
                raise _bad_query(query, f"string values must be quoted ({bare!r})")
        kind = fields[field]
        if kind == "numeric":
            if isinstance(value, str):
                if not _SEARCH_NUMBER.fullmatch(value.strip()):
                    raise _bad_query(query, f"{field} is numeric, not {value!r}")
                value = int(value)
            if value is None and op != ":":
                raise _bad_query(query, f"null only goes with ':' ({field}{op}null)")
        elif op != ":":
            raise _bad_query(query, f"{field} is a token field: only exact matches with ':' (not {op!r})")
        return SearchClause(field, key, op, value, negated, kind == "numeric")

    skip_spaces()
    if pos >= n:
        raise _bad_query(query, "it is empty")
    while pos < n:
        if clauses:
            m = _SEARCH_JOINER.match(query, pos)
            if m:
                joiners.add(m.group(1).lower())
                pos = m.end()
            else:
                joiners.add("and")
        clauses.append(clause())
        if pos < n and not query[pos].isspace():
            raise _bad_query(query, f"unexpected {query[pos]!r} at position {pos}")
        skip_spaces()
    if len(joiners) > 1:
        raise _bad_query(query, "AND and OR cannot be combined in one query")
    return clauses, joiners.pop() if joiners else "and"


def _clause_matches(obj: Obj, c: SearchClause) -> bool:
    got = (obj.get("metadata") or {}).get(c.key) if c.key is not None else obj.get(c.field)
    if c.value is None:
        hit = got is None or got == ""
    elif got is None or got == "":
        hit = False
    elif c.numeric:
        number, want = int(got), int(c.value)
        hit = {":": number == want, ">": number > want, "<": number < want, ">=": number >= want,
               "<=": number <= want}[c.op]
    else:
        hit = str(got).casefold() == str(c.value).casefold()
    return hit != c.negated


def search_payment_intents(emu: Emulator, p: Params) -> Obj:
    """``GET /v1/payment_intents/search``: newest first, ``limit`` 1-100 (10), ``page`` from ``next_page``."""
    query = as_str(p, "query", required=True) or ""
    clauses, joiner = parse_search_query(query, PI_SEARCH_FIELDS)
    limit = as_int(p, "limit", 10)
    if limit is None or not 1 <= limit <= 100:
        raise invalid_request("Limit must be between 1 and 100.", param="limit")
    after = None
    page = as_str(p, "page")
    if page is not None:
        after = emu.store.keys.get(page[len(_PAGE_PREFIX):]) if page.startswith(_PAGE_PREFIX) else None
        if after is None:
            raise invalid_request(f"Invalid page: {page}", param="page")
    combine = all if joiner == "and" else any
    objects = emu.store.objects
    lag = int(emu.config.opts.get("search_lag_s") or 0)
    ids, more = emu.store.index("payment_intent").page(
        limit=limit,
        starting_after=after,
        created={"lte": emu.now() - lag} if lag > 0 else None,
        pred=lambda i: combine(_clause_matches(objects[i], c) for c in clauses),
    )
    return {
        "object": "search_result",
        "data": [objects[i] for i in ids],
        "has_more": more,
        "next_page": _PAGE_PREFIX + ids[-1] if more else None,
        "url": "/v1/payment_intents/search",
    }


ROUTES: list[Route] = [
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents", list_payment_intents),
    ("GET", "/v1/payment_intents/search", search_payment_intents),
    (
        "GET",
        "/v1/payment_intents/{id}",
        lambda emu, p, i: emu.get("payment_intent", i, label="payment_intent"),
    ),
    ("POST", "/v1/payment_intents/{id}", update_payment_intent),
    ("POST", "/v1/payment_intents/{id}/confirm", confirm_payment_intent),
    ("POST", "/v1/payment_intents/{id}/capture", capture_payment_intent),
    ("POST", "/v1/payment_intents/{id}/cancel", cancel_payment_intent),
]
