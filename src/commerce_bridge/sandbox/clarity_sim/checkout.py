"""The sandbox storefront checkout (``POST /_sandbox/checkout``): orders placed the way a shopper's are."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.catalog import USER
from commerce_bridge.sandbox.clarity_sim.core import CefError, Record, Sim, json_response, money, to_decimal
from commerce_bridge.sandbox.clarity_sim.crud import create_record, render
from commerce_bridge.sandbox.clarity_sim.jsonutil import loads
from commerce_bridge.sandbox.clarity_sim.orders import SALES_ORDER

ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
                "XOF", "XPF"}
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}
MODES = ("integration", "stripe")


class CheckoutError(Exception):
    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the currency's minor units; sub-minor precision is an error, never rounded."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise CheckoutError(400, f"{amount} {currency} is finer than one minor unit")
    return int(scaled)


def _user_for(sim: Sim, body: dict[str, Any], email: str) -> Record:
    for user in sim.store.all("User"):
        if str(user.get("Email", "")).lower() == email.lower():
            return user
    return create_record(sim, USER, {
        "UserName": email, "Email": email, "StatusKey": "Registered", "TypeKey": "Customer",
        "Contact": {"FirstName": body.get("FirstName"), "LastName": body.get("LastName"), "Email1": email,
                    "Phone1": body.get("Phone")},
    })


def _contact(body: dict[str, Any], email: str, address: Any) -> dict[str, Any]:
    contact: dict[str, Any] = {"FirstName": body.get("FirstName"), "LastName": body.get("LastName"),
                               "Email1": email, "Phone1": body.get("Phone")}
    if isinstance(address, dict):
        contact["Address"] = address
    return contact


def _lines(sim: Sim, body: dict[str, Any]) -> list[dict[str, Any]]:
    lines = body.get("Lines")
    if not isinstance(lines, list) or not lines:
        raise CheckoutError(400, "Lines must be a non-empty list")
    items = []
    for line in lines:
        if not isinstance(line, dict) or not line.get("Sku"):
            raise CheckoutError(400, "every line needs a Sku")
        sku = str(line["Sku"])
        product = next((p for p in sim.store.all("Product") if p.get("CustomKey") == sku), None)
        if line.get("UnitPrice") is not None:
            price = money(line["UnitPrice"], "UnitPrice")
        elif product is not None and product.get("PriceBase") is not None:
            price = money(product["PriceBase"], "PriceBase")
        else:
            raise CheckoutError(400, f"no price for {sku}: create the product with PriceBase or send UnitPrice")
        quantity = to_decimal(line.get("Quantity", 1), "Quantity")
        if quantity <= 0:
            raise CheckoutError(400, "Quantity must be positive")
        items.append({"Sku": sku, "ProductKey": sku, "Quantity": quantity, "UnitCorePrice": price,
                      "UnitSoldPrice": price, "Name": line.get("Name") or (product or {}).get("Name") or sku})
    return items


async def _create_payment_intent(sim: Sim, amount: int, currency: str, payment_method: str, order_key: str,
                                 email: str) -> dict[str, Any]:
    cfg = sim.config
    if not cfg.stripe_url or not cfg.stripe_api_key:
        raise CheckoutError(400, "PaymentMode 'stripe' needs the simulator started with stripe_url and stripe_api_key")
    form = {
        "amount": str(amount), "currency": currency.lower(), "payment_method": payment_method, "confirm": "true",
        "payment_method_types[0]": "card", "receipt_email": email,
        "metadata[clarity_order_key]": order_key, "description": f"Clarity order {order_key}",
    }
    headers = {"Authorization": f"Bearer {cfg.stripe_api_key}", "Idempotency-Key": f"clarity-checkout-{order_key}"}
    try:
        async with httpx.AsyncClient(timeout=15.0) as client:
            response = await client.post(f"{cfg.stripe_url.rstrip('/')}/v1/payment_intents", data=form,
                                         headers=headers)
    except httpx.HTTPError as exc:
        raise CheckoutError(502, f"could not reach Stripe: {type(exc).__name__}") from exc
    payload: dict[str, Any] = response.json() if response.content else {}
    if response.status_code == 402:
        error = payload.get("error") or {}
        raise CheckoutError(402, f"payment declined: {error.get('message') or error.get('code')}",
                            {"StripeError": error})
    if response.status_code >= 400:
        raise CheckoutError(502, f"Stripe answered {response.status_code}", {"StripeError": payload.get("error")})
    return payload


async def checkout(sim: Sim, body: dict[str, Any]) -> dict[str, Any]:
    """Place an order; in mode ``stripe`` also create and confirm its PaymentIntent first."""
    mode = str(body.get("PaymentMode") or "integration")
    if mode not in MODES:
        raise CheckoutError(400, f"PaymentMode must be one of {', '.join(MODES)}")
    email = str(body.get("Email") or "").strip()
    if "@" not in email:
        raise CheckoutError(400, "Email is required")
    currency = str(body.get("Currency") or "USD").upper()
    payment_method = str(body.get("PaymentMethod") or "pm_card_visa")
    items = _lines(sim, body)
    shipping = money(body.get("Shipping", 0), "Shipping")
    tax = money(body.get("Tax", 0), "Tax")
    discount = money(body.get("Discount", 0), "Discount")
    subtotal = sum((i["UnitSoldPrice"] * i["Quantity"] for i in items), Decimal(0))
    total = money(subtotal + shipping + tax - abs(discount), "Total")
    order_key = str(body.get("CustomKey") or f"WEB-{sim.store.next_value('CheckoutNumber', 100001):06d}")
    intent: dict[str, Any] | None = None
    if mode == "stripe":
        intent = await _create_payment_intent(sim, minor_units(total, currency), currency, payment_method,
                                              order_key, email)
        if intent.get("status") not in ("succeeded", "requires_capture", "processing", "requires_action"):
            raise CheckoutError(402, f"payment not completed: {intent.get('status')}", {"PaymentIntent": intent})
    user = _user_for(sim, body, email)
    billing = body.get("BillingAddress")
    shipping_address = body.get("ShippingAddress") or billing
    paid = intent is not None and intent.get("status") in ("succeeded", "requires_capture", "processing")
    payment: dict[str, Any] = {
        "Amount": total, "PaymentMethodKey": "Credit Card", "Token": payment_method,
        "StatusKey": "Payment Received" if paid else "No Payment Received",
    }
    order: dict[str, Any] = {
        "CustomKey": order_key, "UserID": user["ID"], "CurrencyKey": currency, "TypeKey": "Web",
        "StatusKey": "Full Payment Received" if paid else "Pending", "StateKey": "WORK",
        "BillingContact": _contact(body, email, billing), "ShippingContact": _contact(body, email, shipping_address),
        "SalesItems": items, "Totals": {"Shipping": shipping, "Tax": tax, "Discounts": -abs(discount)},
        "BalanceDue": money(0, "BalanceDue") if paid else total,
        "PurchaseOrderNumber": body.get("PurchaseOrderNumber"),
        "SerializableAttributes": {
            "StripePaymentMethodID": {"Key": "StripePaymentMethodID", "Value": payment_method},
            **{str(k): {"Key": str(k), "Value": str(v)} for k, v in (body.get("Attributes") or {}).items()},
        },
    }
    if body.get("AccountKey"):
        order["AccountKey"] = body["AccountKey"]
    if intent is not None:
        payment["TransactionNumber"] = intent.get("id")
        payment["ExternalPaymentID"] = intent.get("latest_charge")
        order["PaymentTransactionID"] = intent.get("id")
    order["SalesOrderPayments"] = [{"Slave": payment}]
    record = create_record(sim, SALES_ORDER, order)
    rendered = render(sim, SALES_ORDER, record)
    result = {"Succeeded": True, "OrderID": record["ID"], "OrderKey": order_key,
              "StatusKey": rendered.get("StatusKey"), "Total": total, "CurrencyKey": currency,
              "PaymentMode": mode, "Order": rendered}
    if intent is not None:
        result["PaymentIntentID"] = intent.get("id")
        result["PaymentIntentStatus"] = intent.get("status")
    return result


async def checkout_endpoint(request: Request) -> Response:
    sim: Sim = request.app.state.sim
    try:
        body = loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise CheckoutError(400, "the body must be a JSON object")
        return json_response(await checkout(sim, body))
    except ValueError as exc:
        return json_response({"Succeeded": False, "ErrorMessages": [f"invalid JSON: {exc}"]}, status=400)
    except CefError as exc:
        return json_response({"Succeeded": False, "ErrorMessages": [exc.message]}, status=400)
    except CheckoutError as exc:
        return json_response({"Succeeded": False, "ErrorMessages": [exc.message], **exc.extra}, status=exc.status)
