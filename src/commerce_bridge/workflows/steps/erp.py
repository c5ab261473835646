"""``erp.*`` actions (ERPNext), idempotent by our keys (lookup before create)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from commerce_bridge.domain.orders import PaymentSummary
from commerce_bridge.mapping.customer import email_dedupe_key
from commerce_bridge.mapping.erp import erp_customer, erp_payment_entry, erp_sales_order
from commerce_bridge.services.gateways import ErpGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.steps.shapes import customer_from_shape, money_from_shape, order_from_shape

if TYPE_CHECKING:
    from commerce_bridge.workflows.steps import FlowSettings


def actions(gateway: ErpGateway, flow: FlowSettings, identity: IdentityMap, locks: KeyLocks) -> dict[str, Action]:
    def ensure_customer(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        customer = customer_from_shape(params["customer"])
        # the gateway finds a Customer by its exact `email_id` only: the identity map, keyed like
        # core.identity's customers, is what makes every spelling of one mailbox the same Customer. Held
        # under the mailbox's lock from the lookup to the link; the gateway takes its own lock of the exact
        # e-mail inside it (always in this order, so no deadlock)
        key = email_dedupe_key(customer.email)
        with locks.hold("erp.customer.dedupe", key):
            entity_id = identity.entity_for_key("customer", key)
            linked = identity.external("customer", entity_id, "erp")
            if linked is not None:
                return {"name": linked}
            name = str(gateway.ensure_customer(erp_customer(customer))["name"])
            identity.link("customer", entity_id, "erp", name)
        return {"name": name}

    def ensure_sales_order(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order = order_from_shape(params["order"])
        today = datetime.now(UTC).date()
        doc = gateway.ensure_sales_order(erp_sales_order(
            order, customer_name=str(params["customer"]), delivery_date=today + timedelta(days=flow.erp_delivery_days),
            transaction_date=today))
        return {"name": doc["name"], "grand_total": doc.get("grand_total")}

    def ensure_payment_entry(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        amount = money_from_shape(params["amount"])
        payment = PaymentSummary(intent_id="", charge_id=str(params["reference_no"]), status="succeeded",
                                 amount=amount, amount_received=amount, captured=True)
        doc = gateway.ensure_payment_entry(erp_payment_entry(
            payment, customer_name=str(params["customer"]), paid_to_account=flow.erp_paid_to_account,
            posting_date=datetime.now(UTC).date(), sales_order_name=str(params["sales_order"]), amount=amount))
        return {"name": doc["name"]}

    return {"erp.customer.ensure": ensure_customer, "erp.sales_order.ensure": ensure_sales_order,
            "erp.payment_entry.ensure": ensure_payment_entry}
