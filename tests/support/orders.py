"""An order as the workflow steps see it (``steps.order``): one USD line, a US address, ready to pay."""

from __future__ import annotations

from typing import Any

ADDRESS = {"line1": "1 Main St", "line2": "", "city": "Austin", "region": "TX", "postal_code": "78701",
           "country": "US", "name": "Ann Lee"}


def order_shape(key: str, pm: str = "pm_card_visa", total_minor: int = 3000) -> dict[str, Any]:
    """The order ``key`` for ``total_minor`` US cents, paid with the payment method ``pm``."""
    usd = {"minor": total_minor, "currency": "USD"}
    return {"external_id": "42", "key": key, "status": "Pending", "currency": "USD", "total": usd,
            "tax": {"minor": 0, "currency": "USD"}, "shipping": {"minor": 0, "currency": "USD"},
            "discount": {"minor": 0, "currency": "USD"},
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": usd, "description": "Widget"}],
            "customer": {"email": "ann@example.com", "name": "Ann Lee", "phone": "", "billing_address": ADDRESS,
                         "external_ids": {}},
            "shipping_address": ADDRESS, "payment_method_ref": pm, "needs_payment": True}
