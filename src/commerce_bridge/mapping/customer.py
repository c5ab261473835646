"""Customer identity: normalised email and phone, and the keys that de-duplicate customers across systems.

The email rule (docs/reference/mappings.md):

* the address is checked with email-validator, syntax only (``check_deliverability=False``: no DNS);
  surrounding whitespace is removed first; an invalid address is a ``ValidationError`` with a fix;
* the normalised address keeps the local part as given (Unicode NFC) and lower-cases the domain;
* the de-duplication key also lower-cases the local part; dots and ``+tags`` are kept, except for
  Gmail (``gmail.com``, ``googlemail.com``), whose local part loses its dots and its ``+tag`` and whose
  domain becomes ``gmail.com``, because Gmail delivers all those forms to one mailbox.

Phones are normalised to E.164 with phonenumbers, using the billing country as the default region;
a number that cannot be parsed or is not valid is left out and reported as a warning (never fatal).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from commerce_bridge.domain.orders import Customer
from commerce_bridge.errors import ValidationError

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True, slots=True)
class CustomerIdentity:
    """The normalised contact data of a customer and the keys to find its duplicates."""

    email: str
    email_key: str
    phone: str  # E.164, or "" when none or invalid
    dedupe_keys: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def normalize_email(email: object, *, field: str = "email") -> str:
    """The address with a lower-case domain (local part unchanged), or ValidationError.

    Raises
    ------
    ValidationError
        Not a syntactically valid address; ``suggested_fix`` says what to correct.
    """
    if not isinstance(email, str) or not email.strip():
        raise ValidationError(f"{field} is missing", errors=[f"{field}: required"],
                              suggested_fix=f"give the customer an email address ({field})")
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"{field} {email.strip()!r} is not a valid email address: {exc}",
                              errors=[f"{field}: {exc}"],
                              suggested_fix=f"correct the customer's email address in the source system ({exc})",
                              ) from exc
    return f"{result.local_part}@{result.domain.lower()}"


def email_dedupe_key(email: object) -> str:
    """The form two addresses share when they reach the same mailbox (see the module docstring)."""
    normalized = normalize_email(email)
    local, _, domain = normalized.rpartition("@")
    local = local.casefold()
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def normalize_phone(phone: object, region: str | None = None) -> tuple[str, str | None]:
    """``(E.164 number, None)``, or ``("", warning)`` when the number is unusable; ``("", None)`` when absent.

    ``region`` is the ISO 3166-1 alpha-2 country used for numbers written without ``+``.
    """
    if phone is None or (isinstance(phone, str) and not phone.strip()):
        return "", None
    if not isinstance(phone, str):
        return "", f"phone {phone!r} is not text; left out"
    try:
        parsed = phonenumbers.parse(phone, (region or "").upper() or None)
    except phonenumbers.NumberParseException as exc:
        return "", f"phone {phone!r} could not be read ({exc}); left out"
    if not phonenumbers.is_valid_number(parsed):
        return "", f"phone {phone!r} is not a valid number{' for ' + region.upper() if region else ''}; left out"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None


def dedupe_keys(email_key: str, external_ids: dict[str, str]) -> tuple[str, ...]:
    """``email:<key>`` first, then ``<system>:<id>`` per external id (sorted), empty ids skipped."""
    keys = [f"email:{email_key}"] if email_key else []
    keys += [f"{system}:{ident}" for system, ident in sorted(external_ids.items()) if str(ident).strip()]
    return tuple(keys)


def customer_identity(customer: Customer, *, default_region: str | None = None) -> CustomerIdentity:
    """Normalise ``customer``'s email and phone and derive its de-duplication keys.

    Raises
    ------
    ValidationError
        The email is missing or invalid (phones never raise).
    """
    email = normalize_email(customer.email)
    key = email_dedupe_key(email)
    region = default_region or (customer.billing_address.country if customer.billing_address else None)
    phone, warning = normalize_phone(customer.phone, region)
    return CustomerIdentity(email=email, email_key=key, phone=phone,
                            dedupe_keys=dedupe_keys(key, dict(customer.external_ids)),
                            warnings=(warning,) if warning else ())


def normalized_customer(customer: Customer, *, default_region: str | None = None) -> tuple[Customer, CustomerIdentity]:
    """``customer`` with its email and phone replaced by their normalised forms, and its identity."""
    identity = customer_identity(customer, default_region=default_region)
    return replace(customer, email=identity.email, phone=identity.phone), identity


def same_customer(a: CustomerIdentity, b: CustomerIdentity) -> bool:
    """Whether two identities share any de-duplication key (same mailbox or same external id)."""
    return bool(set(a.dedupe_keys) & set(b.dedupe_keys))
