"""What the step declarations share: example values in the step shapes, the errors most steps raise,
common parameters, and :func:`ex` (a workflow step, as the reference's examples show it).

Each module of ``workflows/steps`` declares its step types (``STEP_TYPES``) next to their actions;
these are only the values several of them use.
"""

from __future__ import annotations

from typing import Any

from commerce_bridge.workflows.catalogue import Param

MONEY = {"minor": 3570, "currency": "USD"}
ADDRESS = {"line1": "1 Main St", "line2": "", "city": "Austin", "region": "TX", "postal_code": "78701",
            "country": "US", "name": "Ann Lee"}
CUSTOMER = {"email": "ann@example.com", "name": "Ann Lee", "phone": "+15125550100",
             "billing_address": ADDRESS, "external_ids": {"clarity": "17"}}
ORDER: dict[str, Any] = {
    "external_id": "42", "key": "WEB-100001", "status": "Pending", "currency": "USD",
    "total": MONEY, "tax": {"minor": 120, "currency": "USD"}, "shipping": {"minor": 500, "currency": "USD"},
    "discount": {"minor": 200, "currency": "USD"},
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": {"minor": 1250, "currency": "USD"},
               "description": "Widget"}, {"sku": "SKU-2", "quantity": 1, "unit_price": {"minor": 650,
                                                                                       "currency": "USD"},
                                          "description": "Gadget"}],
    "customer": CUSTOMER, "shipping_address": ADDRESS, "payment_method_ref": "pm_card_visa",
    "needs_payment": True,
}
CLARITY_ORDER: dict[str, Any] = {
    "ID": 42, "CustomKey": "WEB-100001", "StatusKey": "Pending", "StateKey": "WORK", "TypeKey": "Web",
    "CurrencyKey": "USD", "BalanceDue": "35.7000",
    "Totals": {"SubTotal": "31.5000", "Shipping": "5.0000", "Tax": "1.2000", "Discounts": "-2.0000",
               "Total": "35.7000"},
    "UserContactEmail": "ann@example.com",
    "SalesItems": [{"Sku": "SKU-1", "Quantity": 2, "UnitCorePrice": "12.5000"}],
    "SerializableAttributes": {"StripePaymentMethodID": {"Value": "pm_card_visa"}},
}
PI: dict[str, Any] = {
    "id": "pi_3Example", "status": "succeeded", "amount": MONEY, "amount_received": MONEY,
    "amount_capturable": {"minor": 0, "currency": "USD"}, "capture_method": "automatic",
    "latest_charge": "ch_3Example", "customer": "cus_Example", "next_action_url": None,
    "metadata": {"clarity_order_id": "42", "clarity_order_key": "WEB-100001"},
}
UNAVAILABLE = ("UpstreamUnavailable", "timeout, connection error or 5xx; retried with backoff, then DLQ.")
RATE = ("RateLimited", "429; retried after max(Retry-After, backoff).")
AUTH = ("UpstreamAuthFailed", "401/403: credentials or permissions are wrong; DLQ and the connector pauses.")
LOCK_BUSY = ("Conflict", "another run held this key's lock for 30 s (it is creating the same record, or it "
                          "crashed and its 60 s lease has not run out); retried with backoff.")
ORDER_ID = Param("order_id", "string", "The Clarity sales order ID (a number or its string form).",
                  required=True)
PI_ID = Param("payment_intent_id", "string", "The PaymentIntent id (`pi_...`).", required=True)


def ex(step_id: str, uses: str, **with_: Any) -> dict[str, Any]:
    return {"id": step_id, "uses": uses, "with": with_} if with_ else {"id": step_id, "uses": uses}
