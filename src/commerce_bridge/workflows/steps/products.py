"""``product.sync``: one product and its prices synced across Clarity, Stripe and ERPNext (issue 14, point 4; the
workflows ``stripe.product_changed``, ``clarity.product_changed`` and ``erp.item_changed``; rules in
``services.product_sync``; the action's checks and output: ``workflows.steps.sync_action``).

The step is not checkpointed (``replay_safe``): the syncer converges, so a second execution finds the product in
step and writes nothing (creates are found again by the SKU, Stripe writes carry an idempotency key of the patch).
It runs the syncer with ``quick``: a change that is the bridge's own write coming back (the record holds the
snapshot's values) costs one read and writes nothing. Bound only when Stripe, Clarity and the ERP are all
configured and ``CB_PRODUCT_SYNC`` is on.
"""

from __future__ import annotations

from commerce_bridge.mapping.product_record import SYSTEMS
from commerce_bridge.services.ports import Action
from commerce_bridge.services.product_sync import ProductSyncer
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.sync_action import sync_action


def actions(syncer: ProductSyncer) -> dict[str, Action]:
    return {"product.sync": sync_action(syncer, systems=SYSTEMS, noun="product")}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="product.sync", summary="Sync one product and its prices across Clarity, Stripe and ERPNext.",
        description="Reads the product `id` of `system` (`clarity`: a product ID, `stripe`: `prod_…` or a "
                    "`price_…` of it, `erp`: an item code), finds its counterparts by SKU (Clarity CustomKey = "
                    "ERPNext item_code = Stripe metadata item_code; identity map first), merges name, description, "
                    "active, UOM and the price per currency (`CB_PRODUCT_SOURCE_OF_TRUTH`, else the latest change "
                    "by each source's clock; an empty value never wins), creates it where it is missing and writes "
                    "only what differs. Stripe Prices are immutable: a new amount is a new Price with the same "
                    "`lookup_key` (`cb:<sku>:<currency>`), the old one is deactivated; nothing is deleted. A record "
                    "that holds exactly the values of the last sync (the bridge's own write coming back) is not "
                    "synced again: one read, no write (`in_step: true`). Bound only when Stripe, Clarity and the "
                    "ERP are configured. See docs/reference/product-sync.md.",
        params=(Param("system", "string", "The system the change came from: `clarity`, `stripe` or `erp`.",
                      required=True, choices=SYSTEMS),
                Param("id", "string", "The product's id in that system.", required=True)),
        output="`{\"entity_id\": str, \"result\": \"created\" | \"updated\" | \"unchanged\", \"in_step\": bool, "
               "\"systems\": {system: {\"action\", \"id\", \"fields\"}}, \"conflicts\": [field]}`",
        example_output={"entity_id": "0b0e…", "result": "updated", "in_step": False,
                        "systems": {"clarity": {"action": "updated", "id": "17", "fields": ["prices.USD"]},
                                    "stripe": {"action": "updated", "id": "prod_Example", "fields": ["prices.USD"]},
                                    "erp": {"action": "unchanged", "id": "SKU-1", "fields": []}},
                        "conflicts": []},
        idempotency="Converges: a second execution finds the product in step and writes nothing; creates are "
                    "found again by the SKU (Clarity CustomKey, ERPNext item_code under a key lock, Stripe by an "
                    "idempotency key), Stripe writes carry `product-sync:stripe:<id>:<patch fingerprint>:<run_id>:"
                    "<step_id>` plus a suffix per call. One sync per product at a time (key lock `product.sync`).",
        errors=(("NotFound", "the system has no such product (deleted since the event)."),
                ("ValidationError", "an unknown `system`, an empty `id`, or a product without SKU (no Clarity "
                                    "CustomKey, no Stripe metadata item_code nor `cb:` lookup_key)."),
                ("MappingError", "a price finer than its currency's minor unit, or one Stripe cannot represent."),
                ("Conflict", "another sync held this product's lock for 30 s; retried with backoff."),
                ("UpstreamRejected", "a system refused a write (400/422)."), UNAVAILABLE, RATE, AUTH),
        replay_safe=True, also_needs=("stripe", "clarity", "erp"), needs_setting="product_sync",
        examples=(ex("sync", "product.sync", system="stripe", id="${ event.data.object.id }"),),
    ),
)
