"""What the sync steps share (``customer.sync``, ``product.sync``): their action and their output.

Rules kept here:

* The action checks its parameters before any read: ``system`` is one of the three systems and ``id`` is not
  empty (else ``ValidationError``); it runs the syncer with ``quick`` and the step's idempotency key as the
  ``write_key`` (``services.sync_core``).
* The output names, per system, what happened and the record's id there, and the conflicts' field names only
  (never a value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.ports import Action, StepContext
from commerce_bridge.services.sync_core import Syncer, SyncOutcome


def summary(outcome: SyncOutcome, *, merges: bool = False) -> dict[str, Any]:
    """The step's output: per system what happened and its id, the conflicts' field names (no value).

    Parameters
    ----------
    outcome:
        The syncer's outcome.
    merges:
        Whether the kind has merged and duplicate records (the customers): the output then also carries
        ``merged_into`` and ``duplicate_of``.
    """
    out: dict[str, Any] = {"entity_id": outcome.entity_id, "result": outcome.result, "in_step": outcome.in_step}
    if merges:
        out.update(merged_into=outcome.merged_into, duplicate_of=outcome.duplicate_of)
    out["systems"] = {s: {"action": c.action, "id": c.external_id, "fields": list(c.fields)}
                      for s, c in outcome.changes.items()}
    out["conflicts"] = sorted({c.field for c in outcome.conflicts})
    return out


def sync_action(syncer: Syncer, *, systems: Sequence[str], noun: str, merges: bool = False) -> Action:
    """The action of a sync step: check ``system`` and ``id``, sync with ``quick``, return :func:`summary`.

    Parameters
    ----------
    syncer:
        The kind's syncer (``CustomerSyncer``, ``ProductSyncer``).
    systems:
        The systems a change may come from.
    noun:
        The record's name in the errors' fixes (``customer``, ``product``).
    merges:
        Passed to :func:`summary`.

    Raises
    ------
    ValidationError
        (from the action) An unknown ``system`` or an empty ``id``.
    """

    def sync(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        system, record_id = str(params.get("system") or ""), str(params.get("id") or "").strip()
        if system not in systems:
            raise ValidationError(f"system {system!r} is not one of {', '.join(systems)}",
                                  suggested_fix="pass clarity, stripe or erp")
        if not record_id:
            raise ValidationError("id is empty", suggested_fix=f"pass the {noun}'s id in that system")
        return summary(syncer.sync_from(system, record_id, quick=True, write_key=ctx.idempotency_key),
                       merges=merges)

    return sync
