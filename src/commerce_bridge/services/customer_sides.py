"""The three systems' sides of the customer sync: read one customer, find one, create one, apply a patch.

Each side speaks to its system through its port (``services.gateways``) and to the sync in
``CustomerRecord``s and the patches of ``mapping.customer_sync``. Rules kept here:

* **Clarity**: a customer is an Account; its billing contact is the ``AccountContacts`` row with
  ``IsBilling``, its shipping contact the row with ``IsPrimary``. A contact that is both and whose address
  must now differ is split: a new contact takes the shipping address and the old row stays billing only.
  A created account has the CustomKey ``cb-<entity id>``, so a repeated create finds it instead.
* **Stripe**: found by its id, else by search on the ids it carries in metadata or on the e-mail (Stripe's
  search is about a minute behind: the identity map is what finds a customer just created).
* **ERPNext**: a Customer, its primary Contact (``customer_primary_contact``), its billing Address
  (``customer_primary_address``) and its shipping Address (linked, ``is_shipping_address``). A Contact's
  ``email_id`` / ``mobile_no`` are written as its primary ``email_ids`` / ``phone_nos`` row (other rows
  kept). A customer is created through ``ensure_customer`` (by e-mail, under the key lock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from commerce_bridge.errors import NotFound
from commerce_bridge.mapping.customer_record import (
    CLARITY,
    CLARITY_KEY,
    ERP,
    FIELDS,
    STRIPE,
    STRIPE_METADATA_IDS,
    CustomerRecord,
    from_clarity,
    from_erp,
    from_stripe,
)
from commerce_bridge.mapping.customer_sync import SyncPolicy, render
from commerce_bridge.mapping.metadata import CLARITY_ACCOUNT_SYSTEM
from commerce_bridge.services import sync_core
from commerce_bridge.services.gateways import ClarityGateway, ErpGateway, StripeGateway
from commerce_bridge.services.sync_core import or_none, search_quote

JsonDict = dict[str, Any]

OWN_ID = {CLARITY: CLARITY_ACCOUNT_SYSTEM, STRIPE: STRIPE, ERP: ERP}
"""System -> the ``ids`` key (and identity-map system) of its own customer id."""


Found = sync_core.Found[CustomerRecord]
"""One system's customer as read: its id, its record and the documents a patch is applied to."""


def _split_name(name: str) -> dict[str, str]:
    first, _, last = name.strip().partition(" ")
    return {"FirstName": first, "LastName": last}


_CLARITY_ADDRESS_FIELDS = frozenset({"Company", "Street1", "Street2", "Street3", "City", "RegionCode", "RegionKey",
                                     "RegionName", "PostalCode", "CountryCode", "CountryKey"})


def _active_row(account: Mapping[str, Any], flag: str) -> JsonDict | None:
    for row in account.get("AccountContacts") or []:
        if isinstance(row, dict) and row.get(flag) and row.get("Active", True) and not row.get("EndDate"):
            return row
    return None


class ClaritySide:
    system = CLARITY

    def __init__(self, gateway: ClarityGateway, policy: SyncPolicy, *, tz: tzinfo = UTC,
                 default_region: str | None = None) -> None:
        self._gw, self._policy, self._tz, self._region = gateway, policy, tz, default_region

    def read(self, external_id: str) -> Found | None:
        def load() -> Found:
            account = self._gw.get_account(int(external_id))
            record = from_clarity(account, tz=self._tz, tax_id_field=self._policy.clarity_tax_id_field,
                                  default_region=self._region)
            return Found(CLARITY, str(account["ID"]), record, {
                "account": account, "billing": _active_row(account, "IsBilling"),
                "shipping": _active_row(account, "IsPrimary")})
        return or_none(load)

    def find(self, known: CustomerRecord) -> str | None:
        found = self.candidates(known)
        return found[0] if found else None

    def candidates(self, known: CustomerRecord) -> list[str]:
        """The accounts that may be this customer, best first: its id, its CustomKey, else every account with a
        contact of its e-mail, oldest (lowest ID) first (more than one: duplicates)."""
        if known.ids.get(CLARITY_ACCOUNT_SYSTEM):
            return [known.ids[CLARITY_ACCOUNT_SYSTEM]]
        if known.ids.get(CLARITY_KEY):
            account = self._gw.find_account_by_key(known.ids[CLARITY_KEY])
            if account is not None:
                return [str(account["ID"])]
        if known.email:
            return [str(i) for i in sorted(set(self._gw.find_account_ids_by_email(known.email_display or known.email)))]
        return []

    def create(self, merged: CustomerRecord, *, key: str) -> str:
        existing = self._gw.find_account_by_key(key)
        if existing is not None:  # an earlier attempt created it
            return str(existing["ID"])
        body = render(merged, FIELDS, system=CLARITY, policy=self._policy)
        names = _split_name(merged.name)
        rows = [{"Slave": {**names, **body.get("billing_contact", {})}, "IsBilling": True, "IsPrimary": False}]
        if "shipping_contact" in body:
            rows.append({"Slave": {**names, **body["shipping_contact"]}, "IsBilling": False, "IsPrimary": True})
        account = {**body.get("account", {}), "CustomKey": key, "AccountContacts": rows}
        account.setdefault("Name", merged.name or merged.email_display or merged.email or key)
        return str(self._gw.create_account(account))

    def apply(self, found: Found, patch: Mapping[str, Any]) -> None:
        account_id = int(found.external_id)
        billing, shipping = found.docs.get("billing"), found.docs.get("shipping")
        names = _split_name(found.record.name)
        if patch.get("account"):
            self._gw.update_account(account_id, patch["account"])
        shared = billing is not None and shipping is not None and billing.get("ID") == shipping.get("ID")
        if billing is not None and shared and ("Address" in patch.get("billing_contact", {})
                                               or "shipping_contact" in patch):
            # one contact is both: the shipping address moves to a contact of its own
            slave = billing.get("Slave") or {}
            address = {**dict(slave.get("Address") or {}), **patch.get("shipping_contact", {}).get("Address", {})}
            address = {k: v for k, v in address.items() if k in _CLARITY_ADDRESS_FIELDS}
            self._gw.mark_account_contact(int(billing["ID"]), billing=True)
            self._gw.add_account_contact(account_id, {**names, "Address": address}, billing=False, shipping=True)
            patch = {k: v for k, v in patch.items() if k != "shipping_contact"}
            shipping = None
        if patch.get("billing_contact"):
            if billing is not None:
                self._gw.update_contact(billing.get("Slave") or {}, patch["billing_contact"])
            else:
                self._gw.add_account_contact(account_id, {**names, **patch["billing_contact"]}, billing=True,
                                             shipping=False)
        if patch.get("shipping_contact"):
            if shipping is not None:
                self._gw.update_contact(shipping.get("Slave") or {}, patch["shipping_contact"])
            else:
                self._gw.add_account_contact(account_id, {**names, **patch["shipping_contact"]}, billing=False,
                                             shipping=True)

    def pages(self, *, size: int, since: datetime | None) -> Callable[[int], tuple[list[str], int | None]]:
        """A reader of page ``n`` (1-based): the account ids on it and the total."""
        def page(n: int) -> tuple[list[str], int | None]:
            rows, total = self._gw.search_accounts(page=n, size=size, modified_since=since)
            return [str(r["ID"]) for r in rows], total
        return page


class StripeSide:
    system = STRIPE

    def __init__(self, gateway: StripeGateway, *, default_region: str | None = None) -> None:
        self._gw, self._region = gateway, default_region

    def read(self, external_id: str, *, updated_at: datetime | None = None) -> Found | None:
        """``updated_at``: when the values were current (None: the customer's ``created``, for a first sight)."""
        def load() -> Found:
            customer = self._gw.retrieve_customer(external_id)
            if customer.get("deleted"):
                raise NotFound(f"Stripe customer {external_id} is deleted")
            when = updated_at or datetime.fromtimestamp(int(customer.get("created") or 0), UTC)
            return Found(STRIPE, str(customer["id"]),
                         from_stripe(customer, updated_at=when, default_region=self._region), {"customer": customer})
        return or_none(load)

    def find(self, known: CustomerRecord) -> str | None:
        found = self.candidates(known)
        return found[0] if found else None

    def candidates(self, known: CustomerRecord) -> list[str]:
        """The customers that may be this one, best first: its id, else the search's hits on the ids it carries
        in metadata (when any match) or on its e-mail, oldest first (more than one: duplicates)."""
        if known.ids.get(STRIPE):
            return [known.ids[STRIPE]]
        clauses = [f"metadata[{search_quote(meta)}]:{search_quote(known.ids[key])}"
                   for meta, key in STRIPE_METADATA_IDS.items() if known.ids.get(key)]
        if known.email:
            clauses.append(f"email:{search_quote(known.email_display or known.email)}")
        if not clauses:
            return []
        found = [c for c in self._gw.search_customers(" OR ".join(clauses), limit=10) if not c.get("deleted")]
        by_id = [c for c in found if any((c.get("metadata") or {}).get(meta) == known.ids.get(key)
                                         for meta, key in STRIPE_METADATA_IDS.items() if known.ids.get(key))]
        ranked = sorted(by_id or found, key=lambda c: (int(c.get("created") or 0), str(c["id"])))
        return [str(c["id"]) for c in ranked]

    def create(self, merged: CustomerRecord, *, key: str) -> str:
        metadata = tuple(meta for meta, k in STRIPE_METADATA_IDS.items() if merged.ids.get(k))
        params = render(merged, FIELDS, system=STRIPE, metadata_keys=metadata)
        return str(self._gw.create_customer(params, idempotency_key=key)["id"])

    def apply(self, found: Found, patch: Mapping[str, Any], *, key: str) -> None:
        self._gw.update_customer(found.external_id, dict(patch), idempotency_key=key)

    def pages(self, *, size: int, since: datetime | None) -> Callable[[str | None], tuple[list[str], bool]]:
        """A reader of the page after customer ``cursor`` (newest first): ids and whether more follow."""
        created_gte = int(since.timestamp()) if since is not None else None

        def page(cursor: str | None) -> tuple[list[str], bool]:
            rows, more = self._gw.list_customers(page_size=size, starting_after=cursor, created_gte=created_gte)
            return [str(r["id"]) for r in rows], more
        return page


def _linked(name: str) -> list[list[Any]]:
    return [["Dynamic Link", "link_doctype", "=", "Customer"], ["Dynamic Link", "link_name", "=", name]]


def _primary_rows(rows: Sequence[Mapping[str, Any]], value: str, value_field: str, flag: str) -> list[JsonDict]:
    """``rows`` with the row holding ``value`` (added when missing) as the only one carrying ``flag``."""
    out, found = [], False
    for row in rows:
        same = not found and str(row.get(value_field) or "").casefold() == value.casefold()
        out.append({**row, flag: 1 if same else 0})
        found = found or same
    if not found:
        out.append({value_field: value, flag: 1})
    return out


class ErpSide:
    system = ERP

    def __init__(self, gateway: ErpGateway, *, tz: tzinfo = UTC, default_region: str | None = None) -> None:
        self._gw, self._tz, self._region = gateway, tz, default_region

    def _doc(self, doctype: str, name: object) -> JsonDict | None:
        if not name:
            return None
        try:
            return self._gw.get_doc(doctype, str(name))
        except NotFound:
            return None

    def read(self, external_id: str) -> Found | None:
        def load() -> Found:
            customer = self._gw.get_doc("Customer", external_id)
            contact = self._doc("Contact", customer.get("customer_primary_contact"))
            # every address of the customer in one listing (fields only: the links are not needed to read)
            addresses = self._gw.list_docs("Address", filters=[*_linked(external_id), ["disabled", "=", 0]],
                                           fields=("*",), limit=50, order_by="creation asc")
            primary = customer.get("customer_primary_address")
            billing = next((a for a in addresses if primary and a.get("name") == primary), None) or next(
                (a for a in addresses if a.get("is_primary_address")), None)
            shipping = next((a for a in addresses if a.get("is_shipping_address")), None)
            record = from_erp(customer, contact, billing, shipping, tz=self._tz, default_region=self._region)
            return Found(ERP, str(customer["name"]), record,
                         {"customer": customer, "contact": contact, "billing": billing, "shipping": shipping})
        return or_none(load)

    def find(self, known: CustomerRecord) -> str | None:
        found = self.candidates(known)
        return found[0] if found else None

    def candidates(self, known: CustomerRecord) -> list[str]:
        """The Customers that may be this one, best first: its name, else the Customers of its e-mail, else the
        Customers linked to a Contact of its e-mail, oldest first (more than one: duplicates)."""
        if known.ids.get(ERP):
            return [known.ids[ERP]]
        if not known.email:
            return []
        emails = [e for e in dict.fromkeys((known.email, known.email_display)) if e]
        rows = self._gw.list_docs("Customer", filters=[["email_id", "in", emails]], fields=("name",), limit=10,
                                  order_by="creation asc")
        if rows:
            return list(dict.fromkeys(str(r["name"]) for r in rows))
        contacts = self._gw.list_docs("Contact", filters=[["email_id", "=", known.email]],
                                      fields=("name",), limit=5, order_by="creation asc")
        names: list[str] = []
        for row in contacts:
            contact = self._gw.get_doc("Contact", row["name"])
            for link in contact.get("links") or []:
                if link.get("link_doctype") == "Customer" and link.get("link_name"):
                    names.append(str(link["link_name"]))
                    break
        return list(dict.fromkeys(names))

    def create(self, merged: CustomerRecord, *, key: str) -> str:
        doc: JsonDict = {"customer_name": merged.name or merged.email_display or merged.email,
                         "customer_type": "Individual"}
        for own, value in (("email_id", merged.email), ("mobile_no", merged.phone), ("tax_id", merged.tax_id)):
            if value:
                doc[own] = value
        customer = self._gw.ensure_customer(doc) if merged.email else self._gw.create_doc("Customer", doc)
        name = str(customer["name"])
        found = self.read(name)
        if found is not None:  # the addresses (and a contact when it made none), as a patch of an empty customer
            body = render(merged, ("billing_address", "shipping_address"), system=ERP)
            if found.docs.get("contact") is None and (merged.email or merged.phone):
                body["contact"] = render(merged, ("email", "phone"), system=ERP).get("contact", {})
            self.apply(found, body)
        return name

    def apply(self, found: Found, patch: Mapping[str, Any]) -> None:
        name = found.external_id
        docs = found.docs
        customer_fields: JsonDict = dict(patch.get("customer") or {})
        if patch.get("contact"):
            contact = docs.get("contact")
            wanted = patch["contact"]
            if contact is None:
                new: JsonDict = {"first_name": found.record.name or name, "is_primary_contact": 1,
                                 "links": [{"link_doctype": "Customer", "link_name": name}]}
                if wanted.get("email_id"):
                    new["email_ids"] = [{"email_id": wanted["email_id"], "is_primary": 1}]
                if wanted.get("mobile_no"):
                    new["phone_nos"] = [{"phone": wanted["mobile_no"], "is_primary_mobile_no": 1}]
                customer_fields["customer_primary_contact"] = self._gw.create_doc("Contact", new)["name"]
            else:
                rows: JsonDict = {}
                if wanted.get("email_id"):
                    rows["email_ids"] = _primary_rows(contact.get("email_ids") or [], wanted["email_id"],
                                                      "email_id", "is_primary")
                if wanted.get("mobile_no"):
                    rows["phone_nos"] = _primary_rows(contact.get("phone_nos") or [], wanted["mobile_no"],
                                                      "phone", "is_primary_mobile_no")
                self._gw.update_doc("Contact", str(contact["name"]), rows)
        billing, shipping = docs.get("billing"), docs.get("shipping")
        if patch.get("billing_address"):
            if billing is not None:
                self._gw.update_doc("Address", str(billing["name"]), patch["billing_address"])
            else:
                made = self._gw.create_doc("Address", {**patch["billing_address"], "address_title": name,
                                                       "is_primary_address": 1, "links": _links(name)})
                customer_fields["customer_primary_address"] = made["name"]
        if patch.get("shipping_address"):
            if shipping is not None and (billing is None or shipping["name"] != billing["name"]):
                self._gw.update_doc("Address", str(shipping["name"]), patch["shipping_address"])
            else:
                self._gw.create_doc("Address", {**patch["shipping_address"], "address_title": name,
                                                "is_shipping_address": 1, "links": _links(name)})
        if customer_fields:
            self._gw.update_doc("Customer", name, customer_fields)

    def pages(self, *, size: int, since: datetime | None) -> Callable[[int], list[str]]:
        """A reader of the page at offset ``start`` (oldest first): the Customer names on it."""
        filters = [["modified", ">=", since.astimezone(self._tz).strftime("%Y-%m-%d %H:%M:%S")]] if since else None

        def page(start: int) -> list[str]:
            rows = self._gw.list_docs("Customer", start=start, limit=size, filters=filters,
                                      order_by="creation asc, name asc")
            return [str(r["name"]) for r in rows]
        return page


def _links(name: str) -> list[JsonDict]:
    return [{"link_doctype": "Customer", "link_name": name}]
