"""``erp.stock.totals`` and ``clarity.inventory.set``: one item's ERPNext stock written to the Clarity inventory
section the bridge owns (the ``erp.stock_changed`` workflow; rules in ``services.stock_push``).

Neither is checkpointed (``replay_safe``): the read has no side effect, and the write sets absolute quantities,
so a replay reads ERPNext again and writes what is true then. ``clarity.inventory.set`` is bound only when
``CB_CLARITY_INVENTORY_SECTION`` is set: without it the workflow is off (``workflows list`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.services.stock_push import (
    InventorySection,
    ProductIds,
    item_totals,
    quantity_text,
    stock_row,
)
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, RATE, UNAVAILABLE, ex

ITEM_CODE = Param("item_code", "string", "The ERPNext item code (= the Clarity product's CustomKey).", required=True)


def _code(params: Mapping[str, Any]) -> str:
    code = str(params.get("item_code") or "").strip()
    if not code:
        raise ValidationError("item_code is empty", suggested_fix="pass the Bin's item_code (event.data.item_code)")
    return code


def _quantity(params: Mapping[str, Any], name: str) -> Decimal:
    try:
        return Decimal(str(params[name]))
    except (KeyError, InvalidOperation) as exc:
        raise ValidationError(f"{name} {params.get(name)!r} is not a decimal quantity",
                              suggested_fix=f"pass steps.<totals step>.{name}") from exc


def erp_actions(erp: ErpGateway, warehouses: Sequence[str]) -> dict[str, Action]:
    def totals(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        code = _code(params)
        found, _ = item_totals(erp, [code], warehouses=warehouses)
        actual, reserved = found[code]
        return {"item_code": code, "quantity": quantity_text(actual), "allocated": quantity_text(reserved)}

    return {"erp.stock.totals": totals}


def clarity_actions(clarity: ClarityGateway, section_key: str) -> dict[str, Action]:
    section = InventorySection(clarity, section_key)
    products = ProductIds(clarity)

    def set_stock(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        code = _code(params)
        quantity, allocated = _quantity(params, "quantity"), _quantity(params, "allocated")
        section_id = section.id()
        product_id = products.of([code]).get(code)
        if product_id is None:  # an ERP-only item: nothing to write (normal, not an error)
            return {"product_id": None, "section_id": section_id, "written": False}
        clarity.push_inventory([stock_row(product_id, section_id, quantity, allocated)])
        return {"product_id": product_id, "section_id": section_id, "written": True}

    return {"clarity.inventory.set": set_stock}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="erp.stock.totals", summary="Read an item's stock in ERPNext, summed over its Bins.",
        description="The sums of `actual_qty` and `reserved_qty` over the item's Bins in `CB_STOCK_WAREHOUSES` "
                    "(every warehouse when empty), as decimal text (never below 0). An item with no Bin is 0.",
        params=(ITEM_CODE,),
        output="`{\"item_code\": str, \"quantity\": str, \"allocated\": str}`",
        example_output={"item_code": "SKU-1", "quantity": "15", "allocated": "2"},
        idempotency="A read.", errors=(UNAVAILABLE, RATE, AUTH), writes=False, replay_safe=True,
        examples=(ex("stock", "erp.stock.totals", item_code="${ event.data.item_code }"),),
    ),
    StepType(
        type="clarity.inventory.set", summary="Write an item's stock into the Clarity section the bridge owns.",
        description="`BulkUpdateInventoryForProducts` for the product whose CustomKey is `item_code`, in the "
                    "section `CB_CLARITY_INVENTORY_SECTION`: `Quantity` = `quantity`, `QuantityAllocated` = "
                    "`allocated`, `QuantityPreSold` = 0. An item with no Clarity product writes nothing "
                    "(`written: false`). Bound only when `CB_CLARITY_INVENTORY_SECTION` is set.",
        params=(ITEM_CODE, Param("quantity", "string", "On hand (decimal text).", required=True),
                Param("allocated", "string", "Held by open orders (decimal text).", required=True)),
        output="`{\"product_id\": int | null, \"section_id\": int, \"written\": bool}`",
        example_output={"product_id": 17, "section_id": 2, "written": True},
        idempotency="Absolute quantities: writing them again changes nothing (Clarity keeps the row as it is).",
        errors=(("ConfigurationError", "Clarity has no active section with the CustomKey "
                                       "CB_CLARITY_INVENTORY_SECTION names."),
                ("ValidationError", "a quantity that is not decimal text."), UNAVAILABLE, RATE, AUTH),
        replay_safe=True, needs_setting="clarity_inventory_section",
        examples=(ex("push", "clarity.inventory.set", item_code="${ event.data.item_code }",
                     quantity="${ steps.stock.quantity }", allocated="${ steps.stock.allocated }"),),
    ),
)
