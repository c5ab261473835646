"""``CustomerMerge``: two records of one system made one customer (issue 14, point 2, ``customers merge``).

The merchant merged two records in one system (CEF has no merge API: users and orders were moved to the
surviving account and the other deactivated; Stripe has no merge API at all), or wants the bridge to treat two
duplicates as one customer. ``merge(system, from_id, into_id)``:

* **resolves** both ids through the identity map (kind ``customer``; ``clarity`` is the ``clarity_account``
  system): ``into_id`` must be known (else ``NotFound``: run ``backfill customers`` first); ``from_id`` may be
  unknown when it is a record of that system the sync never linked (a duplicate it refused): it is then retired
  alone. Both naming one entity already: nothing to do (``MergeReport.nothing_to_do``).
* **moves**, in one database transaction (``IdentityMap.merge``), every link and de-duplication key of the losing
  entity to the surviving one; where both are linked in one system the survivor keeps its link and the loser's id
  is **retired** (recorded in ``identity_retired``; ``lookup`` of it then finds the survivor, and the sync writes
  nothing for it); the loser's customer-sync snapshot (``customer_sync.<entity>``) is dropped, the survivor's
  kept. Nothing names the loser afterwards. Both customers' sync locks are held meanwhile.
* **by hand**: for each retired record, what the bridge cannot do: a Stripe customer's payment methods and active
  subscriptions (counts and ids, never card data) to move or cancel, then the customer to delete; a Clarity
  account's contacts and users to move to the surviving account, then the account to deactivate; an ERPNext
  Customer to rename into the survivor with "Merge with existing". They are returned, logged (ids only) and sent
  as one alert ``customer.merged``.
* a retired Stripe customer gets ``metadata[cb_merged_into]`` = the surviving Stripe customer (``mark_stripe``),
  so that people in the Stripe dashboard see it.
* ``dry_run``: the same report; nothing is written anywhere (the transaction is rolled back, no metadata, no
  alert).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from commerce_bridge.errors import BridgeError, NotFound, ValidationError
from commerce_bridge.mapping.customer_record import CLARITY, ERP, STRIPE, SYSTEMS
from commerce_bridge.services.alerts import Alert, Severity
from commerce_bridge.services.customer_sides import OWN_ID
from commerce_bridge.services.customer_sync import KIND, CustomerSyncer
from commerce_bridge.services.gateways import ClarityGateway, CursorStore, ErpGateway, StripeGateway
from commerce_bridge.services.ports import IdentityMap, KeyLocks, MergedIdentity

log = structlog.get_logger("commerce_bridge.customer_merge")

CLI_SYSTEM = {own: system for system, own in OWN_ID.items()}
"""Identity-map system -> the ``--system`` name (``clarity_account`` -> ``clarity``)."""


@runtime_checkable
class StripeCustomerAssets(Protocol):
    """What a Stripe gateway may offer to list a customer's payment methods and subscriptions (ids only)."""

    def customer_payment_method_ids(self, customer_id: str) -> list[str]: ...

    def customer_subscription_ids(self, customer_id: str) -> list[str]:
        """The customer's subscriptions that are not canceled."""
        ...


@dataclass(frozen=True, slots=True)
class ByHand:
    """One thing the bridge cannot do for a retired record: ``todo`` for people, ``facts`` (ids and counts)."""

    system: str
    external_id: str
    todo: str
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What ``merge`` did (or, in a dry run, would do)."""

    system: str
    from_id: str
    into_id: str
    survivor: str
    loser: str | None = None
    moved: Mapping[str, str] = field(default_factory=dict)
    retired: Mapping[str, str] = field(default_factory=dict)
    kept: Mapping[str, str] = field(default_factory=dict)
    keys: int = 0
    rehomed: int = 0
    snapshot_dropped: bool = False
    by_hand: tuple[ByHand, ...] = ()
    dry_run: bool = False
    nothing_to_do: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (ids and counts only)."""
        out = asdict(self)
        out["by_hand"] = [asdict(b) for b in self.by_hand]
        return out


class CustomerMerge:
    """Merges two customers of the identity map (see the module docstring).

    Parameters
    ----------
    identity, snapshots:
        The identity map and the cursor store holding the sync snapshots.
    clarity, stripe, erp:
        The ports, to read what must be done by hand (and to mark a retired Stripe customer).
    locks:
        The key locks the sync holds (``customer.sync``); None: no serialisation.
    alert:
        Where the ``customer.merged`` alert goes (None: logged only).
    mark_stripe:
        Write ``metadata[cb_merged_into]`` on a retired Stripe customer.
    """

    def __init__(self, *, identity: IdentityMap, snapshots: CursorStore, clarity: ClarityGateway,
                 stripe: StripeGateway, erp: ErpGateway, locks: KeyLocks | None = None,
                 alert: Callable[[Alert], Any] | None = None, mark_stripe: bool = True) -> None:
        self._identity, self._snapshots, self._locks, self._alert = identity, snapshots, locks, alert
        self._clarity, self._stripe, self._erp, self._mark = clarity, stripe, erp, mark_stripe

    @classmethod
    def from_syncer(cls, syncer: CustomerSyncer, *, alert: Callable[[Alert], Any] | None = None,
                    mark_stripe: bool = True) -> CustomerMerge:
        """The merge over the syncer's identity map, snapshots, locks and ports."""
        clarity, stripe, erp = syncer.gateways
        return cls(identity=syncer.identity, snapshots=syncer.snapshots, clarity=clarity, stripe=stripe, erp=erp,
                   locks=syncer.locks, alert=alert or syncer.alert, mark_stripe=mark_stripe)

    def merge(self, system: str, from_id: str, into_id: str, *, dry_run: bool = False) -> MergeReport:
        """Make ``from_id`` of ``system`` the same customer as ``into_id`` (the survivor).

        Parameters
        ----------
        system:
            ``clarity`` (Account IDs), ``stripe`` (``cus_…``) or ``erp`` (Customer names).
        from_id, into_id:
            The losing and the surviving record in that system.
        dry_run:
            Report only; nothing is written.

        Returns
        -------
        MergeReport
            What moved, what was retired, what the survivor kept and what must be done by hand.

        Raises
        ------
        ValidationError
            An unknown ``system``.
        NotFound
            ``into_id`` is unknown to the identity map, or ``from_id`` is unknown to it and to ``system``.
        TransientError, PermanentError
            From the store and the gateways.
        """
        if system not in SYSTEMS:
            raise ValidationError(f"unknown system {system!r}", suggested_fix=f"use one of {', '.join(SYSTEMS)}")
        from_id, into_id = from_id.strip(), into_id.strip()
        own = OWN_ID[system]
        survivor = self._identity.lookup(KIND, own, into_id)
        if survivor is None:
            raise NotFound(f"{system} customer {into_id} is unknown to the identity map",
                           suggested_fix=f"run `commerce-bridge backfill customers --from {system}` first (or let "
                                         "the customer sync see it), then merge",
                           details={"system": system, "id": into_id})
        loser = self._identity.lookup(KIND, own, from_id)
        if loser == survivor:
            return MergeReport(system, from_id, into_id, survivor, loser, dry_run=dry_run, nothing_to_do=True)
        unlinked: dict[str, str] = {}
        if loser is None:
            if not self._exists(system, from_id):
                raise NotFound(f"{system} customer {from_id} is unknown to the identity map and to {system}",
                               suggested_fix=f"check the id; run `commerce-bridge backfill customers --from "
                                             f"{system}` first, then merge",
                               details={"system": system, "id": from_id})
            unlinked[own] = from_id  # a duplicate the sync never linked: retired alone
        with self._held(survivor, loser):
            snapshot = [f"customer_sync.{loser}"] if loser else []
            merged = self._identity.merge(KIND, loser, survivor, unlinked=unlinked, drop_cursors=snapshot,
                                          dry_run=dry_run)
        by_hand = tuple(self._by_hand(merged, dry_run=dry_run))
        report = MergeReport(system, from_id, into_id, survivor, loser, dict(merged.moved), dict(merged.retired),
                             dict(merged.kept), merged.keys, merged.rehomed, bool(merged.dropped), by_hand, dry_run)
        if not dry_run:
            log.info("customer_merge.done", system=system, from_id=from_id, into_id=into_id, survivor=survivor,
                     loser=loser, moved=sorted(merged.moved), retired=merged.retired, keys=merged.keys)
            if by_hand and self._alert is not None:
                self._alert(Alert(
                    "customer.merged", f"{system} customer {from_id} merged into {into_id}: "
                                       f"{len(by_hand)} thing(s) to do by hand", Severity.WARNING,
                    {"system": system, "from": from_id, "into": into_id, "entity_id": survivor,
                     "retired": dict(merged.retired), "moved": dict(merged.moved),
                     "by_hand": [{"system": b.system, "id": b.external_id, "todo": b.todo, **b.facts}
                                 for b in by_hand]},
                    key=f"customer.merged:{system}:{from_id}"))
        return report

    # --- helpers ---------------------------------------------------------------------------------------

    @contextmanager
    def _held(self, *entities: str | None) -> Iterator[None]:
        with ExitStack() as stack:
            if self._locks is not None:
                for entity in sorted({e for e in entities if e}):  # one order everywhere: no deadlock
                    stack.enter_context(self._locks.hold("customer.sync", entity))
            yield

    def _exists(self, system: str, external_id: str) -> bool:
        try:
            if system == STRIPE:
                return not self._stripe.retrieve_customer(external_id).get("deleted")
            if system == CLARITY:
                self._clarity.get_account(int(external_id))
            else:
                self._erp.get_doc("Customer", external_id)
        except (NotFound, ValueError):
            return False
        return True

    def _by_hand(self, merged: MergedIdentity, *, dry_run: bool) -> Iterator[ByHand]:
        for own, ext in sorted(merged.retired.items()):
            system = CLI_SYSTEM.get(own, own)
            into = merged.kept.get(own, "")
            try:
                if system == STRIPE:
                    yield self._stripe_by_hand(ext, into, dry_run=dry_run)
                elif system == CLARITY:
                    yield self._clarity_by_hand(ext, into)
                elif system == ERP:
                    yield ByHand(ERP, ext, f"in ERPNext, rename Customer {ext} to {into} with \"Merge with "
                                           "existing\" checked (it moves its documents to the survivor)",
                                 {"into": into})
                else:
                    yield ByHand(system, ext, f"{system} {ext} was retired into {into}: check it there",
                                 {"into": into})
            except BridgeError as exc:  # the record may be gone already: say so, do not fail the merge
                yield ByHand(system, ext, f"could not read {system} {ext} ({exc.code}): check it by hand",
                             {"into": into, "error": exc.code})

    def _stripe_by_hand(self, customer_id: str, into: str, *, dry_run: bool) -> ByHand:
        customer = self._stripe.retrieve_customer(customer_id)
        if customer.get("deleted"):
            return ByHand(STRIPE, customer_id, "already deleted in Stripe: nothing to do", {"into": into})
        facts: dict[str, Any] = {"into": into}
        if isinstance(self._stripe, StripeCustomerAssets):
            pms = self._stripe.customer_payment_method_ids(customer_id)
            subs = self._stripe.customer_subscription_ids(customer_id)
            facts.update(payment_methods=len(pms), payment_method_ids=pms, subscriptions=len(subs),
                         subscription_ids=subs)
            todo = (f"in Stripe, move or cancel the {len(subs)} active subscription(s) and the {len(pms)} payment "
                    f"method(s) of {customer_id} (the customer must re-enter a card on {into}), then delete "
                    f"{customer_id}")
        else:
            todo = (f"in Stripe, check {customer_id} for payment methods and active subscriptions (move or cancel "
                    f"them: the customer re-enters a card on {into}), then delete {customer_id}")
        if self._mark and not dry_run and into and (customer.get("metadata") or {}).get("cb_merged_into") != into:
            self._stripe.update_customer(customer_id, {"metadata": {"cb_merged_into": into}},
                                         idempotency_key=f"customer-merge:stripe:{customer_id}:{into}")
            facts["marked"] = True
        return ByHand(STRIPE, customer_id, todo, facts)

    def _clarity_by_hand(self, account_id: str, into: str) -> ByHand:
        account = self._clarity.get_account(int(account_id))
        contacts = [int(row["Slave"]["ID"]) if isinstance(row.get("Slave"), dict) and row["Slave"].get("ID")
                    else int(row.get("SlaveID") or 0) for row in account.get("AccountContacts") or []
                    if isinstance(row, dict)]
        contacts = [c for c in contacts if c]
        return ByHand(CLARITY, account_id, f"in Clarity, move the {len(contacts)} contact(s) and the users of account "
                                           f"{account_id} to account {into}, then deactivate account {account_id}",
                      {"into": into, "contacts": len(contacts), "contact_ids": contacts,
                       "active": bool(account.get("Active", True))})


__all__ = ["ByHand", "CustomerMerge", "MergeReport", "StripeCustomerAssets"]
