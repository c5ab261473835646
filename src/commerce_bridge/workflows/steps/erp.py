"""``erp.*`` actions of the order flow (ERPNext), idempotent by our keys (lookup before create).

Revenue is booked from the Sales Order: ``erp.sales_invoice.ensure`` bills it (one Sales Invoice per order key,
``po_no``), and ``erp.payment_entry.ensure`` given that ``invoice`` allocates the payment to it, so the invoice is
Paid (outstanding 0) and the receivable settled; without ``invoice`` the payment is an advance on the Sales Order.
The invoice is made with ``allocate_advances_automatically``, so ERPNext allocates the advances already paid on
the order to it (``CB_ERP_INVOICE_ON=shipped``: the invoice is made at shipping, or by a refund before it); with
``find_invoice`` a payment arriving after the invoice is allocated to it, found by ``po_no`` under the invoice's
key lock (the same lock ``erp.sales_invoice.ensure`` holds while it creates the invoice, so one of the two sees
the other). The refund and return paths' credit notes return against the same invoice (found by ``po_no``).

A Sales Order refused because ERPNext lacks an Item one of its lines names is not parked at once: the Items
missing are looked up in Clarity's catalogue by CustomKey (the SKU), created from the products found
(``mapping/item.py``; ``ensure_item``: find then create under the Item's key lock, so orders arriving
together make one Item), and the Sales Order is tried once more. Only a SKU that neither system knows parks the
run. All of it happens only after a refusal: an order whose items exist costs no extra call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from commerce_bridge.domain.orders import Order, PaymentSummary
from commerce_bridge.errors import NotFound, UpstreamRejected, ValidationError
from commerce_bridge.mapping.customer import email_dedupe_key
from commerce_bridge.mapping.erp import erp_customer, erp_payment_entry, erp_sales_invoice, erp_sales_order
from commerce_bridge.mapping.item import erp_item, product_from_clarity
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway
from commerce_bridge.services.ports import Action, IdentityMap, KeyLocks, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, LOCK_BUSY, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.shapes import customer_from_shape, money_from_shape, order_from_shape

if TYPE_CHECKING:
    from commerce_bridge.workflows.steps import FlowSettings


def actions(gateway: ErpGateway, flow: FlowSettings, identity: IdentityMap, locks: KeyLocks,
            clarity: ClarityGateway | None = None) -> dict[str, Action]:
    """The ``erp.*`` actions; ``clarity``: the catalogue Items missing in ERPNext are created from (None: none
    is created, a Sales Order refused for a missing Item parks the run)."""

    def create_missing_items(order: Order) -> None:
        """After a refused Sales Order: create the order's Items ERPNext lacks from Clarity's products.

        NotFound, and nothing created, when a SKU is not in Clarity either. ERPNext may have every Item already:
        the refusal was about something else, or a run for the same new SKU made the Item meanwhile.
        """
        skus = list(dict.fromkeys(line.sku for line in order.lines if line.sku.strip()))
        if not skus:
            return  # a line without a SKU: ERPNext's refusal says so
        known = {str(row.get("item_code")) for row in gateway.list_docs(
            "Item", filters=[["item_code", "in", skus]], fields=["item_code"], limit=len(skus))}
        missing = [sku for sku in skus if sku not in known]
        products: list[Mapping[str, Any]] = []
        absent: list[str] = []
        for sku in missing:
            product = clarity.find_product_by_key(sku) if clarity is not None else None
            if product is None:
                absent.append(sku)
            else:
                products.append(product)
        if absent:
            raise missing_everywhere(order, absent, clarity is not None)
        for found in products:
            gateway.ensure_item(erp_item(product_from_clarity(found, currency=order.currency),
                                         item_group=flow.erp_item_group, default_uom=flow.erp_default_uom,
                                         uom_map=flow.erp_uom_map))

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
        sales_order = erp_sales_order(
            order, customer_name=str(params["customer"]), delivery_date=today + timedelta(days=flow.erp_delivery_days),
            transaction_date=today)
        try:
            doc = gateway.ensure_sales_order(sales_order)
        except UpstreamRejected:
            create_missing_items(order)
            # once more, always: the Items exist now, made here or by a run for the same new SKU that saw them
            # missing at the same moment; a refusal about something else comes back as ERPNext gives it
            doc = gateway.ensure_sales_order(sales_order)
        return {"name": doc["name"], "grand_total": doc.get("grand_total")}

    def ensure_payment_entry(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        amount = money_from_shape(params["amount"])
        payment = PaymentSummary(intent_id="", charge_id=str(params["reference_no"]), status="succeeded",
                                 amount=amount, amount_received=amount, captured=True)

        def ensure(invoice: str | None) -> dict[str, Any]:
            doc = gateway.ensure_payment_entry(erp_payment_entry(
                payment, customer_name=str(params["customer"]), paid_to_account=flow.erp_paid_to_account,
                posting_date=datetime.now(UTC).date(), sales_order_name=str(params["sales_order"]),
                sales_invoice_name=invoice, amount=amount))
            return {"name": doc["name"]}

        if params.get("invoice"):
            return ensure(str(params["invoice"]))
        if not params.get("find_invoice"):
            return ensure(None)
        po_no = gateway.get_doc("Sales Order", str(params["sales_order"])).get("po_no")
        if not po_no:
            return ensure(None)
        # the lock erp.sales_invoice.ensure's create holds (the gateway's, of Sales Invoice + po_no): either
        # the invoice is submitted before this looks, or this entry exists before the invoice allocates advances
        with locks.hold("erp.sales_invoice.po_no", str(po_no)):
            invoice = gateway.find_by("Sales Invoice", "po_no", po_no)
            if invoice is None or int(invoice.get("docstatus") or 0) != 1 or invoice.get("is_return"):
                return ensure(None)  # a draft left by a failed run takes this entry as an advance on submit
            return ensure(str(invoice["name"]))

    def ensure_sales_invoice(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        order = gateway.get_doc("Sales Order", str(params["sales_order"]))
        if not order.get("po_no"):
            raise ValidationError(f"Sales Order {order.get('name')} has no po_no (the order key) to bill it by")
        doc = gateway.ensure_doc("Sales Invoice", erp_sales_invoice(order, posting_date=datetime.now(UTC).date()),
                                 "po_no")
        return {"name": doc["name"], "grand_total": doc.get("grand_total")}

    return {"erp.customer.ensure": ensure_customer, "erp.sales_order.ensure": ensure_sales_order,
            "erp.payment_entry.ensure": ensure_payment_entry, "erp.sales_invoice.ensure": ensure_sales_invoice}


def missing_everywhere(order: Order, skus: list[str], looked_in_clarity: bool) -> NotFound:
    """The error that parks a run whose order names SKUs no system knows (which, and what to do)."""
    names = ", ".join(repr(sku) for sku in skus)
    plural = len(skus) > 1
    where = "neither an Item in ERPNext nor a product (CustomKey) in Clarity" if looked_in_clarity \
        else "not an Item in ERPNext (no Clarity connector to create it from)"
    return NotFound(
        f"order {order.key or order.external_id}: SKU{'s' if plural else ''} {names} {'are' if plural else 'is'} "
        f"{where}",
        suggested_fix=(f"create the product in Clarity with CustomKey {names} (the bridge then creates the ERPNext "
                       f"Item from it) or the Item {names} in ERPNext, then replay the run "
                       "(commerce-bridge dlq replay RUN_ID)"),
        details={"missing_skus": list(skus)})


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="erp.customer.ensure", summary="Find or create the ERPNext Customer for an order's customer.",
        description="Under a key lock of the customer's e-mail de-duplication key (any spelling of one "
                    "mailbox), shared by every worker process: the ERPNext Customer the identity map links to "
                    "that key (entity `customer`, system `erp`); else looks the customer up in ERPNext by the "
                    "exact `email_id` and creates it if absent (under a second key lock of that exact "
                    "`email_id`: ERPNext does not make it unique), and links its `name` in the identity map "
                    "before the lock is released. Payments of the same customer, at once or one after the "
                    "other, under any spellings, make one Customer.",
        params=(Param("customer", "object", "The order's customer (`order.customer`).", required=True),),
        output="`{\"name\": str}` (ERPNext's document name).",
        example_output={"name": "CUST-00042"},
        idempotency="ERPNext has no idempotency keys: identity map, then lookup by email, before create, "
                    "serialised per mailbox (key lock of the de-duplication key; the link is written under it).",
        errors=(("UpstreamRejected", "ERPNext refused the document (417/400, e.g. a missing mandatory field)."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        replay_safe=True,
        examples=(ex("erp_customer", "erp.customer.ensure", customer="${ steps.order.customer }"),),
    ),
    StepType(
        type="erp.sales_order.ensure", summary="Find or create the ERPNext Sales Order for an order.",
        description="One Sales Order per order key (`po_no` = the Clarity key); items by SKU (`item_code`). When "
                    "ERPNext refuses the Sales Order and an Item the order names does not exist, each missing "
                    "Item is created from the Clarity product whose CustomKey is that SKU (item name, description, "
                    "unit of measure, active flag and `PriceBase` as the standard rate: docs/reference/mappings.md), "
                    "under the Item's key lock, and the Sales Order is tried once more. A SKU that is in neither "
                    "system parks the run, and nothing is created. An order whose Items exist makes no extra call.",
        params=(Param("order", "object", "The **order**.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True)),
        output="`{\"name\": str, \"grand_total\": str}` (ERPNext answers decimals as strings).",
        example_output={"name": "SAL-ORD-2026-00042", "grand_total": "129.90"},
        idempotency="Lookup by the order key before create, then submit, serialised per order key (key lock): "
                    "a second run, even at the same moment, finds the first one's document. A missing Item is "
                    "looked up by `item_code` before it is created, serialised per `item_code` (key lock): orders "
                    "for the same new SKU at the same moment make one Item.",
        errors=(("NotFound", "a SKU of the order is neither an Item in ERPNext nor a product (CustomKey) in Clarity: "
                             "create either, then replay."),
                ("MappingError", "the Clarity product cannot be made an Item (no CustomKey)."),
                ("UpstreamRejected", "another ERPNext validation (or of the Item made from Clarity, e.g. a unit of "
                                     "measure ERPNext lacks): fix, then replay."),
                LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        replay_safe=True,
        examples=(ex("erp_order", "erp.sales_order.ensure", order="${ steps.order }",
                      customer="${ steps.erp_customer.name }"),),
    ),
    StepType(
        type="erp.sales_invoice.ensure", summary="Find or create the ERPNext Sales Invoice billing a Sales Order.",
        description="Bills the submitted Sales Order as it is (items with `sales_order`, tax and shipping rows, "
                    "discount), `po_no` = the order key, and submits it: revenue and the receivable are booked. "
                    "The order flow makes it when the order is paid (`CB_ERP_INVOICE_ON=paid`) and allocates the "
                    "payment to it (`erp.payment_entry.ensure` with `invoice`), or when it is shipped "
                    "(`CB_ERP_INVOICE_ON=shipped`); the refund and return paths find the same invoice, and their "
                    "credit notes return against it. Made with `allocate_advances_automatically`: the payments "
                    "already allocated to the Sales Order (advances) are allocated to the invoice when it is "
                    "submitted, so its outstanding is the grand total less them.",
        params=(Param("sales_order", "string", "The ERPNext Sales Order name.", required=True),),
        output="`{\"name\": str, \"grand_total\": str}`.",
        example_output={"name": "ACC-SINV-2026-00042", "grand_total": "35.70"},
        idempotency="Lookup by `po_no` (not cancelled) before create, then submit, serialised per `po_no` (key lock).",
        errors=(("ValidationError", "the Sales Order has no `po_no` (the order key) to bill it by."),
                ("UpstreamRejected", "ERPNext refused the document."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        replay_safe=True,
        examples=(ex("erp_invoice", "erp.sales_invoice.ensure", sales_order="${ steps.erp_order.name }"),),
    ),
    StepType(
        type="erp.payment_entry.ensure", summary="Find or create the ERPNext Payment Entry for a payment.",
        description="A received Payment Entry (`paid_to` = `CB_ERP_PAID_TO_ACCOUNT`), `reference_no` = the Stripe "
                    "charge id (the payout reconciliation finds it by that), allocated in full to the Sales "
                    "Invoice `invoice` when given (the invoice is then Paid, outstanding 0), else, with "
                    "`find_invoice`, to the Sales Order's submitted invoice if there is one (found by the order's "
                    "`po_no` under the invoice's key lock), else to the Sales Order (an advance, which the invoice "
                    "takes when it is made).",
        params=(Param("sales_order", "string", "The ERPNext Sales Order name.", required=True),
                Param("customer", "string", "The ERPNext Customer name.", required=True),
                Param("amount", "money", "The amount received.", required=True),
                Param("reference_no", "string", "The Stripe charge id.", required=True),
                Param("invoice", "string", "The ERPNext Sales Invoice to allocate the payment to "
                                           "(`steps.<erp.sales_invoice.ensure step>.name`); empty or absent: the "
                                           "Sales Order."),
                Param("find_invoice", "boolean", "Without `invoice`: allocate to the Sales Order's invoice if it is "
                                                 "billed already (`CB_ERP_INVOICE_ON=shipped`), else to the Sales "
                                                 "Order.", default=False)),
        output="`{\"name\": str}`.", example_output={"name": "ACC-PAY-2026-00042"},
        idempotency="Lookup by `reference_no` before create, then submit, serialised per `reference_no` "
                    "(key lock); with `find_invoice`, inside the invoice's key lock (`po_no`).",
        errors=(("UpstreamRejected", "ERPNext refused the document."), LOCK_BUSY, UNAVAILABLE, RATE, AUTH),
        replay_safe=True,
        examples=(ex("erp_payment", "erp.payment_entry.ensure", sales_order="${ steps.erp_order.name }",
                      customer="${ steps.erp_customer.name }", amount="${ steps.payment.amount_received }",
                      reference_no="${ steps.payment.latest_charge }", invoice="${ steps.erp_invoice.name }"),),
    ),
)
