"""Account contacts of the Clarity simulator: the Account (master) to Contact (slave) link and its flags.

CEF models an account's addresses as ``AccountContact`` rows: ``MasterID`` is the account, ``Slave`` the
contact (with its ``Address``), ``IsBilling`` marks the default billing contact and ``IsPrimary`` the
primary shipping one. The ``MarkAs...`` actions set those flags on one row as CEF's
``AccountContactCRUDWorkflow`` does: on that row only, without clearing the other rows of the account.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    CefError,
    Record,
    Req,
    Sim,
    action_response,
    as_int,
)
from commerce_bridge.sandbox.clarity_sim.crud import (
    EntitySpec,
    create_record,
    find_by_key,
    register,
    render,
    rows_with_key,
    touch,
    update_record,
)
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.sales import CONTACT, save_contact
from commerce_bridge.sandbox.clarity_sim.search import Predicate, SearchModel

_ECHO = ("MasterKey", "MasterName", "Master", "SlaveKey", "SlaveEmail", "SlavePhone", "SlaveFax", "SlaveFirstName",
         "SlaveLastName")
INTERNAL_MASTER_OK = "_master_ok"


def _account_id(sim: Sim, body: dict[str, Any]) -> int | None:
    if body.get("MasterID"):
        return as_int(body["MasterID"], "MasterID")
    if body.get("MasterKey"):
        account = next(iter(rows_with_key(sim, "Account", body["MasterKey"])), None)
        if account is None:
            raise CefError(f"No Account with CustomKey {body['MasterKey']} exists", ARGUMENT)
        return int(account["ID"])
    return None


def _prepare(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    for name in _ECHO:
        record.pop(name, None)
    master_ok = bool(body.get(INTERNAL_MASTER_OK))
    master = _account_id(sim, body)
    if master is not None:
        if not master_ok and sim.store.get("Account", str(master)) is None:
            raise CefError(f"No Account with ID {master} exists", ARGUMENT)
        record["MasterID"] = master
    elif existing is None:
        raise CefError("MasterID (the account) is required", ARGUMENT)
    slave = record.pop("Slave", None)
    if isinstance(slave, dict):
        record["SlaveID"] = save_contact(sim, slave)["ID"]
    elif body.get("SlaveID"):
        slave_id = as_int(body["SlaveID"], "SlaveID")
        if sim.store.get("Contact", str(slave_id)) is None:
            raise CefError(f"No Contact with ID {slave_id} exists", ARGUMENT)
        record["SlaveID"] = slave_id
    elif existing is None:
        raise CefError("Slave (the contact) or SlaveID is required", ARGUMENT)


def _expand(sim: Sim, record: Record, projection: str) -> Record:
    out = dict(record)
    account = sim.store.get("Account", str(record.get("MasterID")))
    if account is not None:
        out["MasterKey"] = account.get("CustomKey")
        out["MasterName"] = account.get("Name")
    contact = sim.store.get("Contact", str(record.get("SlaveID")))
    if contact is not None:
        out["SlaveKey"] = contact.get("CustomKey")
        out["SlaveEmail"] = contact.get("Email1")
        out["SlavePhone"] = contact.get("Phone1")
        out["SlaveFax"] = contact.get("Fax1")
        out["SlaveFirstName"] = contact.get("FirstName")
        out["SlaveLastName"] = contact.get("LastName")
        out["Slave"] = render(sim, CONTACT, contact)
    return out


def _equals(field: str, value: Any) -> Predicate:
    def predicate(record: Record) -> bool:
        got = record.get(field)
        return bool(got) == value if isinstance(value, bool) else got == value
    return predicate


def _filters(sim: Sim, model: SearchModel) -> list[Predicate]:
    preds: list[Predicate] = []
    for field in ("MasterID", "SlaveID"):
        if (number := model.integer(field)) is not None:
            preds.append(_equals(field, number))
    if (key := model.text("MasterKey")) is not None:
        ids = {a["ID"] for a in sim.store.all("Account") if a.get("CustomKey") == key}
        preds.append(lambda r: r.get("MasterID") in ids)
    for flag in ("IsBilling", "IsPrimary", "TransmittedToERP"):
        if (value := model.flag(flag)) is not None:
            preds.append(_equals(flag, value))
    return preds


ACCOUNT_CONTACT = EntitySpec("Accounts", "AccountContact", "AccountContacts", prepare=_prepare, expand=_expand,
                             filters=_filters, event="accountcontact")


def save_account_contacts(sim: Sim, account_id: int, models: list[Any]) -> None:
    """Upsert the ``AccountContacts`` nested in an account model (matched by ``ID``, then ``CustomKey``)."""
    for model in models:
        if not isinstance(model, dict):
            raise CefError("AccountContacts must be a list of objects", ARGUMENT)
        body = {**model, "MasterID": account_id, INTERNAL_MASTER_OK: True}
        existing = None
        if model.get("ID"):
            existing = sim.store.get(ACCOUNT_CONTACT.kind, str(as_int(model["ID"], "ID")))
        elif model.get("CustomKey"):
            existing = find_by_key(sim, ACCOUNT_CONTACT, str(model["CustomKey"]))
        if existing is not None:
            update_record(sim, ACCOUNT_CONTACT, existing, body)
        else:
            create_record(sim, ACCOUNT_CONTACT, {k: v for k, v in body.items() if k != "ID"})


def _master_id(record: Record) -> tuple[Any]:
    return (record.get("MasterID"),)


def account_contacts(sim: Sim, account_id: int) -> list[Record]:
    """The account's contact links as its full model lists them (active and inactive, oldest first)."""
    rows = [r for r in sim.store.lookup(ACCOUNT_CONTACT.kind, "MasterID", _master_id, (account_id,))
            if r.get("MasterID") == account_id]
    return [render(sim, ACCOUNT_CONTACT, r) for r in sorted(rows, key=lambda r: int(r["ID"]))]


def _mark(is_billing: bool, is_primary: bool) -> Any:
    async def handler(sim: Sim, req: Req) -> Response:
        ident = as_int(req.params["ID"], "ID")
        if ident <= 0:
            raise CefError("ID must be a valid identifier", ARGUMENT)
        row = sim.store.get(ACCOUNT_CONTACT.kind, str(ident))
        if row is None or not row.get("Active", True):
            return action_response(False, [f"ERROR! Could not locate record with ID '{ident}'"])
        if bool(row.get("IsBilling")) != is_billing or bool(row.get("IsPrimary")) != is_primary:
            with sim.store.batch():
                touch(sim, ACCOUNT_CONTACT, row, {"IsBilling": is_billing, "IsPrimary": is_primary})
        return action_response(True)
    return handler


def register_parties(router: Router) -> None:
    base = "/Accounts/AccountContact"
    update = ACCOUNT_CONTACT.permission("Update")
    router.add("PATCH", f"{base}/MarkAsDefaultBilling/ID/{{ID}}", _mark(True, False), update)
    router.add("PATCH", f"{base}/MarkAsPrimaryShipping/ID/{{ID}}", _mark(False, True), update)
    router.add("PATCH", f"{base}/MarkAsNotBillingOrShipping/ID/{{ID}}", _mark(False, False), update)
    register(router, ACCOUNT_CONTACT)
