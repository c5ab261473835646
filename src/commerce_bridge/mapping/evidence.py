"""Dispute evidence: what the bridge and Clarity know of an order, as Stripe's ``evidence[...]`` fields.

Rules (issue 12, point 6; Stripe's ``DisputeUpdateParams.Evidence`` in stripe-python 16.1):

- **Text only.** ``receipt``, ``customer_communication``, ``shipping_documentation``,
  ``uncategorized_file`` and the other fields of :data:`FILE_FIELDS` take the id of a File upload
  (``POST /v1/files``, purpose ``dispute_evidence``), never text. The bridge uploads no files (the
  sandbox emulator has no ``/v1/files``), so the receipt, the order's time and the e-mails the bridge
  sent go, as plain text sections, into ``uncategorized_text``.
- **Stripe's limits.** ``product_description`` and ``uncategorized_text`` hold at most 20,000
  characters each (:data:`LONG_TEXT_LIMIT`); all fields together at most 150,000
  (:data:`COMBINED_TEXT_LIMIT`). Fields Stripe gives no limit for (names, addresses, carrier, tracking
  numbers, dates, IP) are cut at :data:`SHORT_TEXT_LIMIT`, the bridge's own bound. A cut list ends
  with how many entries were left out; a cut text ends with ``…``. The result never exceeds the limits.
- **Never card data.** Nothing is read from the order's payments (no card type, holder, last digits or
  expiry), and every field is scrubbed of card-number-like digits (:func:`scrub_card_numbers`: 13 to
  19 digits passing the Luhn check, spaces or dashes between them allowed, also inside a longer run of
  digits in free text): they become ``[card number removed]``; a tracking number that is one is left
  out. False positives (a product code that happens to pass the check) are the safe side.
- **Missing data is left out**, never invented: a field with nothing to say is absent. CEF has no
  carrier and no purchase-IP field (facts/clarity-cef-api.md): they are read from the order's
  ``SerializableAttributes`` under the names the workflow gives (defaults :data:`CARRIER_ATTRIBUTE`,
  :data:`IP_ATTRIBUTE`); an IP that is not an IP address is left out. The order's shipment is the
  order itself (CEF has no shipment entity): ``TrackingNumber`` and ``ActualShipDate``.
- **Fill blanks, never overwrite**: :func:`blank_fields_only` keeps only the fields the dispute has
  no value for yet, so what a person typed in the Dashboard (or an earlier run staged) stays.
- **The bridge's e-mails** are recorded per order key in the identity map (kind
  :data:`SENT_MAIL_KIND`, entity :func:`sent_mail_entity` of the order key, one link per message:
  :func:`sent_mail_link`, read back with :func:`sent_mails`); only their time and subject are kept,
  not the body.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any

from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.clarity import address_from_clarity, customer_from_clarity, order_from_clarity
from commerce_bridge.mapping.money import format_money

__all__ = [
    "CARRIER_ATTRIBUTE",
    "COMBINED_TEXT_LIMIT",
    "FILE_FIELDS",
    "IP_ATTRIBUTE",
    "LONG_TEXT_LIMIT",
    "SENT_MAIL_KIND",
    "SHORT_TEXT_LIMIT",
    "TEXT_FIELDS",
    "SentMail",
    "blank_fields_only",
    "evidence_chars",
    "evidence_digest",
    "evidence_from_order",
    "scrub_card_numbers",
    "sent_mail_entity",
    "sent_mail_link",
    "sent_mails",
]

COMBINED_TEXT_LIMIT = 150_000
"""Stripe: "The combined character count of all fields is limited to 150,000"."""
LONG_TEXT_LIMIT = 20_000
"""Stripe's maximum for ``product_description``, ``uncategorized_text`` and the other explanation fields."""
SHORT_TEXT_LIMIT = 5_000
"""The bridge's own bound for fields Stripe documents no maximum for."""
FILE_FIELDS = frozenset({
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
})
"""Evidence fields that take a File upload id (``file_...``), never text."""
TEXT_FIELDS = (
    "customer_name", "customer_email_address", "billing_address", "shipping_address", "shipping_carrier",
    "shipping_tracking_number", "shipping_date", "product_description", "customer_purchase_ip",
    "uncategorized_text",
)
"""The fields :func:`evidence_from_order` may fill, in this order."""
_LONG = frozenset({"product_description", "uncategorized_text"})
CARRIER_ATTRIBUTE = "ShippingCarrier"
"""Default ``SerializableAttributes`` key of the carrier (CEF has no carrier field on the order)."""
IP_ATTRIBUTE = "CustomerIPAddress"
"""Default ``SerializableAttributes`` key of the IP address the order was placed from."""
SENT_MAIL_KIND = "sent_mail"
"""Identity-map kind of the bridge's record of the e-mails it sent about an order (key: the order key)."""
CARD_NUMBER_REMOVED = "[card number removed]"
_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,}(?![\d])")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        n = int(char)
        if position % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _holds_card_number(digits: str, *, strict: bool) -> bool:
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return True
    return strict and any(_luhn(digits[i:i + n]) for n in range(13, 20) for i in range(len(digits) - n + 1))


def scrub_card_numbers(text: str, *, strict: bool = True) -> str:
    """``text`` with every card-number-like run of digits replaced by ``[card number removed]``.

    A run is 13 or more digits, single spaces or dashes between them allowed. It is replaced when it is
    13-19 digits passing the Luhn check or, with ``strict`` (free text), when any 13-19 digits of it do
    (a card number glued to other digits); without ``strict`` (identifiers such as tracking numbers,
    often 20-22 digits) only the first test applies.
    """
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return CARD_NUMBER_REMOVED if _holds_card_number(digits, strict=strict) else match.group()
    return _CANDIDATE.sub(replace, text)


@dataclass(frozen=True, slots=True)
class SentMail:
    """One e-mail the bridge sent about an order: when (ISO 8601 UTC) and its subject."""

    sent_at: str
    subject: str


def sent_mail_entity(order_key: str) -> str:
    """The identity-map entity id under which the e-mails about ``order_key`` are recorded (no key row needed)."""
    return "order:" + hashlib.sha256(order_key.encode()).hexdigest()[:40]


def sent_mail_link(message_id: str, subject: str, sent_at: datetime) -> tuple[str, str]:
    """The identity-map ``(system, external_id)`` recording one sent e-mail (both within the columns' sizes)."""
    system = "mail:" + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    stamp = sent_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return system, f"{stamp} {subject}"[:255]


def sent_mails(links: Mapping[str, str]) -> list[SentMail]:
    """The e-mails recorded by :func:`sent_mail_link` (``IdentityMap.externals``), oldest first."""
    out = []
    for system, value in links.items():
        if system.startswith("mail:"):
            stamp, _, subject = value.partition(" ")
            out.append(SentMail(sent_at=stamp, subject=subject))
    return sorted(out, key=lambda m: (m.sent_at, m.subject))


def _text(data: Mapping[str, Any] | None, name: str) -> str:
    value = (data or {}).get(name)
    if isinstance(value, str):
        return value.strip()
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and value else ""


def _attribute(order: Mapping[str, Any], name: str) -> str:
    attributes = order.get("SerializableAttributes")
    entry = attributes.get(name) if isinstance(attributes, Mapping) and name else None
    return _text(entry, "Value") if isinstance(entry, Mapping) else ""


def _address_text(contact: Any) -> str:
    address = address_from_clarity(contact if isinstance(contact, Mapping) else None)
    if address is None:
        return ""
    place = " ".join(p for p in (address.region, address.postal_code) if p)
    return ", ".join(p for p in (address.name, address.line1, address.line2, address.city, place,
                                 address.country) if p)


def _day(value: str) -> str:
    """The date part of a CEF timestamp (``2026-12-01T10:00:00`` -> ``2026-12-01``)."""
    return value.split("T", 1)[0].strip()


def _items(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = order.get("SalesItems")
    return [i for i in raw if isinstance(i, Mapping)] if isinstance(raw, list) else []


def _label(name: str, sku: str) -> str:
    """``Widget (SKU-1)``; just one of them when the other is empty or the same."""
    return f"{name} ({sku})" if name and sku and name != sku else name or sku


def _item_line(item: Mapping[str, Any]) -> str:
    name = _text(item, "Name") or _text(item, "ProductName") or _text(item, "Description")
    sku = _text(item, "Sku") or _text(item, "ProductKey")
    label = _label(name, sku)
    raw = item.get("TotalQuantity", item.get("Quantity"))
    try:
        quantity = Decimal(str(raw)) if raw is not None and not isinstance(raw, bool) else None
    except InvalidOperation:
        quantity = None
    if quantity is None or not label or not quantity.is_finite():
        return label
    return f"{quantity.normalize():f} x {label}"


def _fit(lines: Sequence[str], limit: int, what: str) -> str:
    """``lines`` joined by newlines, as many as fit in ``limit``, ending with how many were left out."""
    ends = list(accumulate(len(line) + 1 for line in lines))  # length of the first k lines, each with its newline
    for keep in range(len(lines), 0, -1):
        rest = len(lines) - keep
        note = f"({rest} more {what} not listed)" if rest else ""
        size = ends[keep - 1] - 1 + (len(note) + 1 if note else 0)
        if size <= limit:
            return "\n".join([*lines[:keep], *([note] if note else [])])
    return _cut(lines[0], limit) if lines else ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _receipt(order: Mapping[str, Any], charge_id: str) -> list[str]:
    try:
        parsed = order_from_clarity(order)
    except MappingError:
        return ["Receipt: not available (the order's currency, items or totals are not consistent in Clarity)."]
    cur = parsed.currency
    rows = [f"  {line.quantity} x {_label(line.description, line.sku)} at "
            f"{format_money(line.unit_price)} {cur}" for line in parsed.lines]
    for label, amount in (("Shipping", parsed.shipping), ("Tax", parsed.tax)):
        if amount.minor:
            rows.append(f"  {label}: {format_money(amount)} {cur}")
    if parsed.discount.minor:
        rows.append(f"  Discount: -{format_money(parsed.discount)} {cur}")
    paid = f"Total: {format_money(parsed.total)} {cur}" + (f", paid with Stripe charge {charge_id}" if charge_id else "")
    return ["Receipt:", *rows, f"  {paid}"]


def _statement(order: Mapping[str, Any], mails: Sequence[SentMail], ip: str, charge_id: str) -> str:
    key, created = _text(order, "CustomKey"), _text(order, "CreatedDate")
    head = f"Order {key}" if key else "Order"
    if _text(order, "ID"):
        head += f" (Clarity order {_text(order, 'ID')})"
    head += f", placed {created.replace('T', ' ')} (store time)." if created else "."
    parts = [head]
    if ip:
        parts.append(f"Placed from IP address {ip}.")
    parts.extend(_receipt(order, charge_id))
    text = "\n".join(parts)
    if mails:
        room = LONG_TEXT_LIMIT - len(text) - len("\nE-mails the shop sent to the customer:\n")
        if room > 40:
            listed = _fit([f"  {m.sent_at} {m.subject}" for m in mails], room, "e-mails")
            text += "\nE-mails the shop sent to the customer:\n" + listed
    return _cut(text, LONG_TEXT_LIMIT)


def evidence_from_order(order: Mapping[str, Any], *, mails: Sequence[SentMail] = (), charge_id: str = "",
                        carrier_attribute: str = CARRIER_ATTRIBUTE, ip_attribute: str = IP_ATTRIBUTE) -> dict[str, str]:
    """The evidence fields for a Clarity order (full projection), within Stripe's limits, free of card data.

    Parameters
    ----------
    order:
        ``GET /Ordering/SalesOrder/Key/{key}`` as Clarity answers it.
    mails:
        The e-mails the bridge sent about the order (:func:`sent_mails`).
    charge_id:
        The disputed charge, named in the receipt.
    carrier_attribute, ip_attribute:
        The ``SerializableAttributes`` keys of the carrier and of the purchase IP.

    Returns
    -------
    dict
        Field name -> text, only fields with something to say (see :data:`TEXT_FIELDS`).

    Raises
    ------
    MappingError
        ``order`` is not an object.
    """
    if not isinstance(order, Mapping):
        raise MappingError("the Clarity order is not an object",
                           suggested_fix="pass the order as GET /Ordering/SalesOrder/Key/{key} returns it")
    customer = customer_from_clarity(order)
    ip = _attribute(order, ip_attribute)
    try:
        ip = str(ipaddress.ip_address(ip)) if ip else ""
    except ValueError:
        ip = ""
    billing = _address_text(order.get("BillingContact"))
    shipping = _address_text(order.get("ShippingContact")) or (billing if order.get("ShippingSameAsBilling") else "")
    products = [line for line in (_item_line(i) for i in _items(order)) if line]
    fields = {
        "customer_name": customer.name,
        "customer_email_address": customer.email,
        "billing_address": billing,
        "shipping_address": shipping,
        "shipping_carrier": _attribute(order, carrier_attribute),
        "shipping_tracking_number": _text(order, "TrackingNumber"),
        "shipping_date": _day(_text(order, "ActualShipDate")),
        "product_description": _fit(products, LONG_TEXT_LIMIT, "items") if products else "",
        "customer_purchase_ip": ip,
        "uncategorized_text": _statement(order, mails, ip, charge_id),
    }
    out: dict[str, str] = {}
    for name in TEXT_FIELDS:
        raw = fields[name]
        if not raw:
            continue
        tracking = name == "shipping_tracking_number"
        clean = scrub_card_numbers(raw, strict=not tracking)
        if tracking and clean != raw:
            continue  # a "tracking number" that is a card number says nothing true
        out[name] = _cut(clean, LONG_TEXT_LIMIT if name in _LONG else SHORT_TEXT_LIMIT)
    if evidence_chars(out) > COMBINED_TEXT_LIMIT:  # pragma: no cover - the per-field bounds make it impossible
        raise MappingError("the evidence exceeds Stripe's 150,000 characters")
    return out


def evidence_chars(evidence: Mapping[str, Any]) -> int:
    """The combined character count Stripe limits (every text field of ``evidence``)."""
    return sum(len(v) for v in evidence.values() if isinstance(v, str))


def blank_fields_only(current: Mapping[str, Any] | None, proposed: Mapping[str, str]) -> dict[str, str]:
    """The fields of ``proposed`` the dispute's ``current`` evidence has no value for (never overwrite)."""
    current = current or {}
    return {k: v for k, v in proposed.items() if v and k not in FILE_FIELDS and not current.get(k)}


def evidence_digest(dispute_id: str, evidence: Mapping[str, str], submit: bool) -> str:
    """A short digest of one update's content: with the dispute id, the Stripe idempotency key."""
    canonical = json.dumps({"dispute": dispute_id, "evidence": dict(sorted(evidence.items())), "submit": submit},
                           sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
