"""Accounts, users, contacts, products, payments and the lookup tables of the Clarity simulator."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from commerce_bridge.sandbox.clarity_sim import lookups
from commerce_bridge.sandbox.clarity_sim.core import (
    ARGUMENT,
    CefError,
    NoContent,
    Record,
    Req,
    Sim,
    json_response,
    money,
)
from commerce_bridge.sandbox.clarity_sim.crud import EntitySpec, register, render
from commerce_bridge.sandbox.clarity_sim.parties import (
    account_contacts,
    register_parties,
    save_account_contacts,
)
from commerce_bridge.sandbox.clarity_sim.routing import Router
from commerce_bridge.sandbox.clarity_sim.sales import ADDRESS, CONTACT, PAYMENT, save_contact
from commerce_bridge.sandbox.clarity_sim.search import Predicate, SearchModel

PRICE_FIELDS = ("PriceBase", "PriceMsrp", "PriceReduction", "PriceSale")


def _lookup_fields(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record, *,
                   owner: str, status: str, type_: str, defaults: tuple[str, str]) -> None:
    for prefix, kind, default in (("Status", status, defaults[0]), ("Type", type_, defaults[1])):
        for suffix in ("Key", "Name", "DisplayName", "TranslationKey", "SortOrder"):
            record.pop(f"{prefix}{suffix}", None)
        record.pop(prefix, None)
        row = lookups.resolve(sim, kind, body, prefix, owner)
        if row is not None:
            record[f"{prefix}ID"] = row["ID"]
        elif existing is None:
            record[f"{prefix}ID"] = lookups.by_name_or_create(sim, kind, default)["ID"]


def _expand_lookups(sim: Sim, record: Record, status: str, type_: str) -> Record:
    out = dict(record)
    lookups.expand(sim, out, status, "Status")
    lookups.expand(sim, out, type_, "Type")
    return out


def _prepare_account(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    _lookup_fields(sim, existing, body, record, owner="Account", status="AccountStatus", type_="AccountType",
                   defaults=("NORMAL", "CUSTOMER"))
    if "Credit" in body and body["Credit"] is not None:
        record["Credit"] = money(body["Credit"], "Credit")
    nested = record.pop("AccountContacts", None)
    if nested is not None:
        if not isinstance(nested, list):
            raise CefError("AccountContacts must be a list", ARGUMENT)
        sim.extra.setdefault("pending_account_contacts", []).append(nested)


def _finalize_account(sim: Sim, record: Record) -> None:
    """Store the ``AccountContacts`` an account model carried, once the account has its ID."""
    pending = sim.extra.get("pending_account_contacts")
    if pending:
        save_account_contacts(sim, int(record["ID"]), pending.pop())


def _expand_account(sim: Sim, record: Record, projection: str) -> Record:
    out = _expand_lookups(sim, record, "AccountStatus", "AccountType")
    if projection == "full":
        out["AccountContacts"] = account_contacts(sim, int(record["ID"]))
    return out


ACCOUNT = EntitySpec(
    "Accounts", "Account", "Accounts", prepare=_prepare_account, expand=_expand_account,
    finalize=_finalize_account, event="account")


def _prepare_user(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    _lookup_fields(sim, existing, body, record, owner="User", status="UserStatus", type_="UserType",
                   defaults=("Registered", "Customer"))
    for name in ("AccountKey", "AccountName", "ContactKey", "ContactEmail", "ContactFirstName", "ContactLastName"):
        record.pop(name, None)
    if not body.get("AccountID") and body.get("AccountKey"):
        account = next((a for a in sim.store.all("Account") if a.get("CustomKey") == body["AccountKey"]), None)
        if account is not None:
            record["AccountID"] = account["ID"]
    contact = record.pop("Contact", None)
    if isinstance(contact, dict):
        record["ContactID"] = save_contact(sim, contact)["ID"]
    record.pop("Password", None)


def _expand_user(sim: Sim, record: Record, projection: str) -> Record:
    out = _expand_lookups(sim, record, "UserStatus", "UserType")
    account = sim.store.get("Account", str(out["AccountID"])) if out.get("AccountID") else None
    if account is not None:
        out["AccountKey"] = account.get("CustomKey")
        out["AccountName"] = account.get("Name")
    contact = sim.store.get("Contact", str(out["ContactID"])) if out.get("ContactID") else None
    if contact is not None:
        out["ContactKey"] = contact.get("CustomKey")
        out["ContactEmail"] = contact.get("Email1")
        out["ContactFirstName"] = contact.get("FirstName")
        out["ContactLastName"] = contact.get("LastName")
        if projection == "full":
            out["Contact"] = render(sim, CONTACT, contact)
    return out


def _user_filters(sim: Sim, model: SearchModel) -> list[Predicate]:
    preds: list[Predicate] = []
    if (email := model.text("Email")) is not None:
        preds.append(lambda r: str(r.get("Email", "")).lower() == email.lower())
    if (user_name := model.text("UserName")) is not None:
        preds.append(lambda r: str(r.get("UserName", "")).lower() == user_name.lower())
    if (account_id := model.integer("AccountID")) is not None:
        preds.append(lambda r: r.get("AccountID") == account_id)
    return preds


USER = EntitySpec("Contacts", "User", "Users", prepare=_prepare_user, expand=_expand_user, filters=_user_filters,
                  event="user", nameable=False)


def _prepare_product(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
    _lookup_fields(sim, existing, body, record, owner="Product", status="ProductStatus", type_="ProductType",
                   defaults=("Normal", "General"))
    for name in PRICE_FIELDS:
        if body.get(name) is not None:
            record[name] = money(body[name], name)


def _field_in(field: str, allowed: set[Any]) -> Predicate:
    def predicate(record: Record) -> bool:
        return record.get(field) in allowed
    return predicate


def _product_filters(sim: Sim, model: SearchModel) -> list[Predicate]:
    """ProductSearchModel: ``TypeKey``/``TypeName``, ``StatusKey``/``StatusName`` and ``ProductIDs``."""
    preds: list[Predicate] = []
    for prefix, kind in (("Type", "ProductType"), ("Status", "ProductStatus")):
        key, name = model.text(f"{prefix}Key"), model.text(f"{prefix}Name")
        if key is None and name is None:
            continue
        ids = {r["ID"] for r in sim.store.all(kind)
               if (key is not None and str(r.get("CustomKey", "")).lower() == key.lower())
               or (name is not None and str(r.get("Name", "")).lower() == name.lower())}
        preds.append(_field_in(f"{prefix}ID", ids))
    if (product_ids := model.integers("ProductIDs")) is not None:
        wanted_ids = set(product_ids)
        preds.append(lambda r: r.get("ID") in wanted_ids)
    return preds


PRODUCT = EntitySpec(
    "Products", "Product", "Products", prepare=_prepare_product, filters=_product_filters,
    expand=lambda sim, r, p: _expand_lookups(sim, r, "ProductStatus", "ProductType"), event="product")


def _prepare_lookup(kind: str) -> Any:
    def prepare(sim: Sim, existing: Record | None, body: dict[str, Any], record: Record) -> None:
        name = record.get("Name") or record.get("CustomKey")
        if not name:
            return
        record.setdefault("Name", name)
        record.setdefault("CustomKey", name)
        record.setdefault("DisplayName", name)
        record.setdefault("TranslationKey", lookups.translation_key(kind, str(name)))
    return prepare


def lookup_specs() -> list[EntitySpec]:
    specs = []
    for kind, (area, _rows) in lookups.SEEDS.items():
        plural = kind + ("es" if kind.endswith("s") else "s")
        specs.append(EntitySpec(area, kind, plural, prepare=_prepare_lookup(kind), counter=lookups.LOOKUP_COUNTER,
                                lookup=True))
    return specs


async def _user_by_email(sim: Sim, req: Req) -> Response:
    email = req.params["Email"].lower()
    found = next((u for u in sim.store.all("User") if str(u.get("Email", "")).lower() == email), None)
    if found is None:
        raise NoContent
    return json_response(render(sim, USER, found))


async def _user_by_custom_key(sim: Sim, req: Req) -> Response:
    found = next((u for u in sim.store.all("User") if u.get("CustomKey") == req.params["Key"]), None)
    if found is None:
        raise NoContent
    return json_response(render(sim, USER, found))


async def _current_user(sim: Sim, req: Req) -> Response:
    found = sim.store.get("User", str(req.session.user_id)) if req.session and req.session.user_id else None
    if found is None:
        raise NoContent
    return json_response(render(sim, USER, found))


async def _current_account(sim: Sim, req: Req) -> Response:
    user = sim.store.get("User", str(req.session.user_id)) if req.session and req.session.user_id else None
    account = sim.store.get("Account", str(user["AccountID"])) if user and user.get("AccountID") else None
    if account is None:
        raise NoContent
    return json_response(render(sim, ACCOUNT, account))


def register_catalog(router: Router) -> None:
    # Specific routes go first so that the generic `/Key/{Key*}` patterns cannot shadow them.
    router.add("GET", "/Contacts/User/Email/{Email*}", _user_by_email, USER.permission("View"))
    router.add("GET", "/Contacts/User/CustomKey/{Key*}", _user_by_custom_key, USER.permission("View"))
    router.add("GET", "/Contacts/CurrentUser", _current_user, None)
    router.add("GET", "/Accounts/CurrentAccount", _current_account, None)
    register_parties(router)
    for spec in (ACCOUNT, USER, CONTACT, ADDRESS, PRODUCT, PAYMENT, *lookup_specs()):
        register(router, spec)


def seed_identities(sim: Sim) -> None:
    """Create User rows for the configured logins so that sessions carry a real ``UserId``."""
    from commerce_bridge.sandbox.clarity_sim.crud import create_record

    for user_name, type_key in ((sim.config.user, "Administrator"), (sim.config.readonly_user, "Administrator")):
        if not user_name or any(str(u.get("UserName", "")).lower() == user_name.lower()
                                for u in sim.store.all("User")):
            continue
        create_record(sim, USER, {"UserName": user_name, "CustomKey": user_name, "TypeKey": type_key,
                                  "StatusKey": "Email Verified", "DisplayName": user_name})
