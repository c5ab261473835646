"""``customer.sync``: one customer synced across Clarity, Stripe and ERPNext (issue 14, point 1; the workflows
``stripe.customer_changed``, ``clarity.account_changed`` and ``erp.customer_changed``; rules in
``services.customer_sync``).

The step is not checkpointed (``replay_safe``): the syncer converges, so a second execution finds the customer
in step and writes nothing (creates are found again by their keys, Stripe writes carry an idempotency key of
the patch). It runs the syncer with ``quick``: a change that is the bridge's own write coming back (the record
holds the snapshot's values) costs one read and writes nothing. Bound only when Stripe, Clarity and the ERP are
all configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.customer_record import SYSTEMS
from commerce_bridge.services.customer_sync import CustomerSyncer, SyncOutcome
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, RATE, UNAVAILABLE, ex


def summary(outcome: SyncOutcome) -> dict[str, Any]:
    """The step's output: per system what happened and its customer id, the conflicts' field names (no value)."""
    return {"entity_id": outcome.entity_id, "result": outcome.result, "in_step": outcome.in_step,
            "systems": {s: {"action": c.action, "id": c.external_id, "fields": list(c.fields)}
                        for s, c in outcome.changes.items()},
            "conflicts": sorted({c.field for c in outcome.conflicts})}


def actions(syncer: CustomerSyncer) -> dict[str, Action]:
    def sync(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        system, record_id = str(params.get("system") or ""), str(params.get("id") or "").strip()
        if system not in SYSTEMS:
            raise ValidationError(f"system {system!r} is not one of {', '.join(SYSTEMS)}",
                                  suggested_fix="pass clarity, stripe or erp")
        if not record_id:
            raise ValidationError("id is empty", suggested_fix="pass the customer's id in that system")
        return summary(syncer.sync_from(system, record_id, quick=True, write_key=ctx.idempotency_key))

    return {"customer.sync": sync}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="customer.sync", summary="Sync one customer across Clarity, Stripe and ERPNext.",
        description="Reads the customer `id` of `system` (`clarity`: an Account ID, `stripe`: `cus_…`, `erp`: a "
                    "Customer name), finds its counterparts (identity map, then ids and e-mail), merges field by "
                    "field (`CB_CUSTOMER_SOURCE_OF_TRUTH`, else the latest change by each source's clock), creates "
                    "it where it is missing and writes only the fields that differ; the ids are linked. A record "
                    "that holds exactly the values of the last sync (the bridge's own write coming back) is not "
                    "synced again: one read, no write (`in_step: true`). Conflicts (values that lost) are logged "
                    "with field names only. Bound only when Stripe, Clarity and the ERP are configured. "
                    "See docs/reference/customer-sync.md.",
        params=(Param("system", "string", "The system the change came from: `clarity`, `stripe` or `erp`.",
                      required=True, choices=SYSTEMS),
                Param("id", "string", "The customer's id in that system.", required=True)),
        output="`{\"entity_id\": str, \"result\": \"created\" | \"updated\" | \"unchanged\", \"in_step\": bool, "
               "\"systems\": {system: {\"action\", \"id\", \"fields\"}}, \"conflicts\": [field]}`",
        example_output={"entity_id": "0b0e…", "result": "updated", "in_step": False,
                        "systems": {"clarity": {"action": "unchanged", "id": "17", "fields": []},
                                    "stripe": {"action": "updated", "id": "cus_Example", "fields": ["phone"]},
                                    "erp": {"action": "updated", "id": "CUST-0001", "fields": ["phone"]}},
                        "conflicts": []},
        idempotency="Converges: a second execution finds the customer in step and writes nothing; creates are "
                    "found again by their keys (Clarity CustomKey `cb-<entity>`, ERPNext by e-mail under a key "
                    "lock, Stripe by an idempotency key), Stripe updates carry `customer-sync:stripe:<id>:"
                    "<patch fingerprint>:<run_id>:<step_id>` (the same values written by a later run are a new "
                    "write). One sync per customer at a time (key lock `customer.sync`).",
        errors=(("NotFound", "the system has no such customer (deleted since the event)."),
                ("MappingError", "a value one system holds cannot be read (an invalid e-mail, phone or address), "
                                 "naming the field."),
                ("ValidationError", "an unknown `system`, an empty `id`, or an id already linked to another "
                                    "customer."),
                ("Conflict", "another sync held this customer's lock for 30 s; retried with backoff."),
                ("UpstreamRejected", "a system refused a write (400/422)."), UNAVAILABLE, RATE, AUTH),
        replay_safe=True, also_needs=("stripe", "clarity", "erp"), needs_setting="customer_sync",
        examples=(ex("sync", "customer.sync", system="stripe", id="${ event.data.object.id }"),),
    ),
)
