"""Domain <-> Stripe payloads: Customer and PaymentIntent create params, PaymentIntent/Charge -> PaymentSummary.

The params are plain JSON-able dicts for the official SDK (``client.v1.payment_intents.create(params=...)``);
nothing here imports the SDK. Amounts go through ``mapping.money`` (Stripe's units, minimum and
maximum), metadata through ``mapping.metadata`` (Stripe's limits), addresses through
``mapping.address`` (validated), emails and phones through ``mapping.customer``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import CaptureMode, Customer, Order, PaymentSummary
from commerce_bridge.errors import BridgeError, MappingError, ValidationError
from commerce_bridge.mapping.address import normalize_address, to_stripe_address
from commerce_bridge.mapping.customer import normalize_email, normalize_phone
from commerce_bridge.mapping.metadata import customer_metadata, order_metadata
from commerce_bridge.mapping.money import check_charge_amount, from_stripe_amount, to_stripe_amount

IDEMPOTENCY_KEY_MAX = 255  # Stripe's limit on an Idempotency-Key


def stripe_idempotency_key(key: str) -> str:
    """``key`` as Stripe accepts it: unchanged up to 255 characters, else its start and its SHA-256.

    Deterministic (every retry and replay sends the same), and a key that fits is never changed, so
    applying it twice gives the same key.
    """
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:IDEMPOTENCY_KEY_MAX - len(digest) - 1]}#{digest}"


def customer_params(customer: Customer, *, validate_address: bool = True) -> dict[str, Any]:
    """``POST /v1/customers`` params: email (normalised), name, phone (E.164 if valid), address, metadata.

    Raises
    ------
    ValidationError
        Invalid email, or (with ``validate_address``) an invalid billing address.
    """
    params: dict[str, Any] = {"email": normalize_email(customer.email)}
    if customer.name.strip():
        params["name"] = customer.name.strip()
    region = customer.billing_address.country if customer.billing_address else None
    phone, _warning = normalize_phone(customer.phone, region)
    if phone:
        params["phone"] = phone
    if customer.billing_address is not None:
        params["address"] = to_stripe_address(customer.billing_address, validate=validate_address)
    metadata = customer_metadata(customer.external_ids)
    if metadata:
        params["metadata"] = metadata
    return params


def shipping_params(order: Order, *, validate_address: bool = True) -> dict[str, Any] | None:
    """Stripe's ``shipping`` hash (name, phone, address) for the order's shipping address, or None."""
    address = order.shipping_address
    if address is None:
        return None
    shipping: dict[str, Any] = {
        "name": (address.name or order.customer.name or order.customer.email).strip(),
        "address": to_stripe_address(address, validate=validate_address),
    }
    phone, _warning = normalize_phone(order.customer.phone, address.country)
    if phone:
        shipping["phone"] = phone
    return shipping


def payment_intent_params(
    order: Order,
    *,
    customer_id: str = "",
    capture: CaptureMode = CaptureMode.AUTOMATIC,
    confirm: bool = True,
    payment_method: str | None = None,
    amount: Money | None = None,
    payment_method_types: Sequence[str] = ("card",),
    receipt_email: bool = True,
    metadata_extra: Mapping[str, object] | None = None,
    truncate_metadata: Iterable[str] = (),
    description: str | None = None,
    validate_address: bool = True,
) -> dict[str, Any]:
    """``POST /v1/payment_intents`` params for ``order``.

    Parameters
    ----------
    amount:
        What to charge; defaults to ``order.total``. Checked with ``check_charge_amount`` (Stripe's
        units, minimum, and the card maximum when ``payment_method_types`` includes ``card``).
    payment_method:
        Defaults to the order's ``payment_method_ref``; required when ``confirm`` is true.
    capture:
        ``automatic`` or ``manual`` (authorise now, capture on shipment).

    Raises
    ------
    MappingError
        Unrepresentable amount, below the minimum, over the maximum, no payment method to confirm
        with, or metadata over Stripe's limits.
    ValidationError
        Invalid receipt email or shipping address.
    """
    charge = amount if amount is not None else order.total
    if charge.currency != order.currency:
        raise MappingError(f"cannot charge {charge.currency} for a {order.currency} order",
                           suggested_fix="charge the order in its own currency")
    card = "card" in payment_method_types
    stripe_amount = check_charge_amount(charge, card=card)
    method = payment_method if payment_method is not None else order.payment_method_ref
    if confirm and not method:
        raise MappingError(f"order {order.key or order.external_id} has no Stripe payment method to confirm with",
                           suggested_fix="the storefront must record the PaymentMethod id "
                                         "(SerializableAttributes.StripePaymentMethodID) or confirm=false")
    params: dict[str, Any] = {
        "amount": stripe_amount,
        "currency": charge.currency.lower(),
        "confirm": confirm,
        "capture_method": "manual" if capture == CaptureMode.MANUAL else "automatic",
        "payment_method_types": list(payment_method_types),
        "metadata": order_metadata(order, metadata_extra, truncate=truncate_metadata),
        "description": description if description is not None else f"Clarity order {order.key or order.external_id}",
    }
    if method:
        params["payment_method"] = method
    if customer_id:
        params["customer"] = customer_id
    if receipt_email:
        params["receipt_email"] = normalize_email(order.customer.email, field="customer email")
    shipping = shipping_params(order, validate_address=validate_address)
    if shipping is not None:
        params["shipping"] = shipping
    return params


def capture_params(amount: Money | None = None) -> dict[str, Any]:
    """``POST /v1/payment_intents/{id}/capture`` params: all (empty) or ``amount_to_capture`` (partial)."""
    if amount is None:
        return {}
    value, _ = to_stripe_amount(amount, card=True)
    if value <= 0:
        raise MappingError("the amount to capture must be positive",
                           suggested_fix="capture a positive amount or cancel the PaymentIntent")
    return {"amount_to_capture": value}


def check_order_for_payment(order: Order, *, card: bool = True, validate_address: bool = True) -> None:
    """Every problem that would stop ``order`` from being charged, reported together.

    Raises
    ------
    ValidationError
        ``errors`` lists each problem (totals, amount, email, addresses); ``suggested_fix`` joins the
        fixes. A single problem keeps its own message and fix.
    """
    problems: list[BridgeError] = []
    if order.computed_total() != order.total:
        problems.append(MappingError("order totals do not add up",
                                     suggested_fix="correct the order totals in Clarity"))
    checks: list[Any] = [lambda: check_charge_amount(order.total, card=card),
                         lambda: normalize_email(order.customer.email, field="customer email")]
    if validate_address:
        for address in (order.customer.billing_address, order.shipping_address):
            if address is not None:
                checks.append(lambda address=address: normalize_address(address))
    for check in checks:
        try:
            check()
        except BridgeError as exc:
            problems.append(exc)
    if not problems:
        return
    if len(problems) == 1 and isinstance(problems[0], ValidationError):
        raise problems[0]
    errors = [f"{problem.message}" for problem in problems]
    fixes = "; ".join(problem.suggested_fix for problem in problems if problem.suggested_fix)
    raise ValidationError(f"order {order.key or order.external_id} cannot be charged: {len(problems)} problem(s)",
                          errors=errors, suggested_fix=fixes)


# -- Stripe objects -> domain --------------------------------------------------------------------

def _ident(value: object) -> str:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _money(obj: Mapping[str, Any], field: str, currency: str) -> Money:
    value = obj.get(field)
    return from_stripe_amount(value if value is not None else 0, currency)


def _metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    raw = obj.get("metadata")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _risk(charge: Mapping[str, Any] | None) -> str:
    outcome = (charge or {}).get("outcome")
    return str(outcome.get("risk_level") or "") if isinstance(outcome, Mapping) else ""


def payment_summary_from_stripe(obj: Mapping[str, Any], charge: Mapping[str, Any] | None = None) -> PaymentSummary:
    """A PaymentIntent (``object: payment_intent``) or a Charge (``object: charge``) as a PaymentSummary.

    ``obj`` is plain JSON: an event's ``data.object``, or an SDK object's ``to_dict()``. For a PaymentIntent the charge is ``charge`` if given, else an expanded ``latest_charge``.

    Raises
    ------
    MappingError
        Neither a PaymentIntent nor a Charge, no currency, or amounts that break the currency's rule.
    """
    kind = obj.get("object")
    currency = obj.get("currency")
    if kind not in ("payment_intent", "charge") or not isinstance(currency, str):
        raise MappingError(f"expected a Stripe PaymentIntent or Charge, got object {kind!r}",
                           suggested_fix="pass the data.object of a payment_intent.* or charge.* event")
    if kind == "charge":
        amount = _money(obj, "amount", currency)
        captured = bool(obj.get("captured"))
        received = (_money(obj, "amount_captured", currency) if obj.get("amount_captured") is not None
                    else (amount if captured else Money.zero(amount.currency)))
        return PaymentSummary(
            intent_id=_ident(obj.get("payment_intent")), charge_id=_ident(obj), status=str(obj.get("status") or ""),
            amount=amount, amount_received=received, captured=captured, risk_level=_risk(obj),
            last_error_code=str(obj.get("failure_code") or ""), customer_id=_ident(obj.get("customer")),
            payment_method_id=_ident(obj.get("payment_method")), metadata=_metadata(obj))
    latest = obj.get("latest_charge")
    if charge is None and isinstance(latest, Mapping):
        charge = latest
    error = obj.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    status = str(obj.get("status") or "")
    return PaymentSummary(
        intent_id=_ident(obj), charge_id=_ident(charge) or _ident(latest), status=status,
        amount=_money(obj, "amount", currency), amount_received=_money(obj, "amount_received", currency),
        captured=bool(charge.get("captured")) if charge else status == "succeeded",
        risk_level=_risk(charge), last_error_code=str(error.get("code") or (charge or {}).get("failure_code") or ""),
        decline_code=str(error.get("decline_code") or ""), customer_id=_ident(obj.get("customer")),
        payment_method_id=_ident(obj.get("payment_method")), metadata=_metadata(obj))
