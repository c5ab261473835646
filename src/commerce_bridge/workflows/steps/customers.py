"""``customer.sync``: one customer synced across Clarity, Stripe and ERPNext (issue 14, point 1; the workflows
``stripe.customer_changed``, ``clarity.account_changed`` and ``erp.customer_changed``; rules in
``services.customer_sync``; the action's checks and output: ``workflows.steps.sync_action``).

The step is not checkpointed (``replay_safe``): the syncer converges, so a second execution finds the customer
in step and writes nothing (creates are found again by their keys, Stripe writes carry an idempotency key of
the patch). It runs the syncer with ``quick``: a change that is the bridge's own write coming back (the record
holds the snapshot's values) costs one read and writes nothing. Bound only when Stripe, Clarity and the ERP are
all configured.
"""

from __future__ import annotations

from commerce_bridge.mapping.customer_record import SYSTEMS
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.services.ports import Action
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import AUTH, RATE, UNAVAILABLE, ex
from commerce_bridge.workflows.steps.sync_action import sync_action


def actions(syncer: CustomerSyncer) -> dict[str, Action]:
    return {"customer.sync": sync_action(syncer, systems=SYSTEMS, noun="customer", merges=True)}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="customer.sync", summary="Sync one customer across Clarity, Stripe and ERPNext.",
        description="Reads the customer `id` of `system` (`clarity`: an Account ID, `stripe`: `cus_…`, `erp`: a "
                    "Customer name), finds its counterparts (identity map, then ids and e-mail), merges field by "
                    "field (`CB_CUSTOMER_SOURCE_OF_TRUTH`, else the latest change by each source's clock), creates "
                    "it where it is missing and writes only the fields that differ; the ids are linked. A record "
                    "that holds exactly the values of the last sync (the bridge's own write coming back) is not "
                    "synced again: one read, no write (`in_step: true`). Conflicts (values that lost) are logged "
                    "with field names only. An id retired by `customers merge` is neither read nor written "
                    "(`merged_into`: the surviving customer); a second record of a linked customer in the same "
                    "system (a duplicate) writes nothing (`duplicate_of`: the linked record) and raises the "
                    "`customer.duplicates` alert once. Bound only when Stripe, Clarity and the ERP are configured. "
                    "See docs/reference/customer-sync.md.",
        params=(Param("system", "string", "The system the change came from: `clarity`, `stripe` or `erp`.",
                      required=True, choices=SYSTEMS),
                Param("id", "string", "The customer's id in that system.", required=True)),
        output="`{\"entity_id\": str, \"result\": \"created\" | \"updated\" | \"unchanged\", \"in_step\": bool, "
               "\"merged_into\": str | null, \"duplicate_of\": str | null, "
               "\"systems\": {system: {\"action\", \"id\", \"fields\"}}, \"conflicts\": [field]}` "
               "(`merged_into` or `duplicate_of` set: `systems` is empty and nothing was written)",
        example_output={"entity_id": "0b0e…", "result": "updated", "in_step": False, "merged_into": None,
                        "duplicate_of": None,
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
