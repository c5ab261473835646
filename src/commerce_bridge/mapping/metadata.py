"""Stripe metadata: the Clarity references the bridge writes on Stripe objects, the limits, and the way back.

Keys written (docs/reference/mappings.md): ``clarity_order_id``, ``clarity_order_key``,
``clarity_customer_id``, ``clarity_account_id`` and ``bridge`` (``commerce-bridge``, marks objects
the bridge created). Stripe's limits (facts/stripe.md section 6): at most 50 keys, keys at most 40
characters without ``[`` or ``]``, values at most 500 characters. A value over the limit is a
``MappingError`` unless the caller names that key in ``truncate``; then the one documented rule
applies: keep the first 499 characters and append ``…`` (U+2026), so the value has exactly 500.
Empty values are left out, because an empty value *unsets* a key in Stripe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from commerce_bridge.domain.orders import Order
from commerce_bridge.errors import MappingError

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500
ELLIPSIS = "\u2026"

ORDER_ID = "clarity_order_id"
ORDER_KEY = "clarity_order_key"
CUSTOMER_ID = "clarity_customer_id"
ACCOUNT_ID = "clarity_account_id"
BRIDGE = "bridge"
BRIDGE_MARK = "commerce-bridge"

CLARITY_USER_SYSTEM = "clarity"
"""``Customer.external_ids`` key of the Clarity user id."""
CLARITY_ACCOUNT_SYSTEM = "clarity_account"
"""``Customer.external_ids`` key of the Clarity account id."""


@dataclass(frozen=True, slots=True)
class OrderRef:
    """Which Clarity order a Stripe object belongs to, as read back from its metadata."""

    order_id: str = ""
    order_key: str = ""
    customer_id: str = ""
    account_id: str = ""
    created_by_bridge: bool = False


def truncate_value(value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """The documented truncation: the first ``limit - 1`` characters plus ``…`` when over ``limit``."""
    return value if len(value) <= limit else value[: limit - 1] + ELLIPSIS


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise MappingError(f"metadata key must be a non-empty string, got {key!r}",
                           suggested_fix="use short snake_case keys such as clarity_order_id")
    if len(key) > MAX_KEY_LENGTH:
        raise MappingError(f"metadata key {key!r} is {len(key)} characters; Stripe allows {MAX_KEY_LENGTH}",
                           suggested_fix=f"shorten the key to at most {MAX_KEY_LENGTH} characters")
    if "[" in key or "]" in key:
        raise MappingError(f"metadata key {key!r} contains '[' or ']', which Stripe does not allow",
                           suggested_fix="remove square brackets from the key")
    return key


def _check_value(key: str, value: object, truncate: frozenset[str]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MappingError(f"metadata value of {key!r} must be text or an integer, got {type(value).__name__}",
                           suggested_fix="convert the value to a string before sending it to Stripe")
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        if key not in truncate:
            raise MappingError(
                f"metadata value of {key!r} is {len(text)} characters; Stripe allows {MAX_VALUE_LENGTH}",
                suggested_fix=f"shorten the value, or allow truncation of {key!r} (first 499 characters + '…')",
                details={"key": key, "length": len(text)})
        text = truncate_value(text)
    return text


def validate_metadata(metadata: Mapping[str, object], *, truncate: Iterable[str] = ()) -> dict[str, str]:
    """``metadata`` checked against Stripe's limits, values as strings, empty values dropped.

    Parameters
    ----------
    truncate:
        Keys whose over-long values may be truncated by the documented rule; any other over-long
        value is an error.

    Raises
    ------
    MappingError
        Too many keys, a bad key, or a value over 500 characters that may not be truncated.
    """
    allowed = frozenset(truncate)
    result: dict[str, str] = {}
    for key, value in metadata.items():
        checked = _check_key(key)
        if value is None or value == "":
            continue
        result[checked] = _check_value(checked, value, allowed)
    if len(result) > MAX_KEYS:
        raise MappingError(f"metadata has {len(result)} keys; Stripe allows {MAX_KEYS}",
                           suggested_fix=f"send at most {MAX_KEYS} keys; drop informational ones")
    return result


def merge_metadata(existing: Mapping[str, object], new: Mapping[str, object], *,
                   truncate: Iterable[str] = ()) -> dict[str, str]:
    """What an update posting ``new`` would leave on an object that has ``existing`` (Stripe merges keys).

    Raises MappingError if the merged result breaks a limit, so an update never fails at Stripe.
    """
    merged: dict[str, object] = {k: v for k, v in existing.items() if v not in (None, "")}
    for key, value in new.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return validate_metadata(merged, truncate=truncate)


def order_metadata(order: Order, extra: Mapping[str, object] | None = None, *,
                   truncate: Iterable[str] = ()) -> dict[str, str]:
    """The metadata the bridge puts on a PaymentIntent (and Charge/Refund) for ``order``.

    ``extra`` keys are added after the standard ones and may not replace them.
    """
    base: dict[str, object] = {
        ORDER_ID: order.external_id,
        ORDER_KEY: order.key,
        CUSTOMER_ID: order.customer.external_ids.get(CLARITY_USER_SYSTEM, ""),
        ACCOUNT_ID: order.customer.external_ids.get(CLARITY_ACCOUNT_SYSTEM, ""),
        BRIDGE: BRIDGE_MARK,
    }
    for key, value in (extra or {}).items():
        if key in base:
            raise MappingError(f"metadata key {key!r} is reserved for the bridge",
                               suggested_fix="choose another key for the extra metadata")
        base[key] = value
    return validate_metadata(base, truncate=truncate)


def customer_metadata(external_ids: Mapping[str, str]) -> dict[str, str]:
    """The metadata the bridge puts on a Stripe Customer: the Clarity user and account ids."""
    return validate_metadata({
        CUSTOMER_ID: external_ids.get(CLARITY_USER_SYSTEM, ""),
        ACCOUNT_ID: external_ids.get(CLARITY_ACCOUNT_SYSTEM, ""),
        BRIDGE: BRIDGE_MARK,
    })


def order_ref_from_metadata(metadata: Mapping[str, object] | None) -> OrderRef | None:
    """The Clarity order a Stripe object names in its metadata, or None when it names none.

    Objects created by the storefront itself carry only ``clarity_order_key``; that is enough.
    """
    if not metadata:
        return None

    def text(key: str) -> str:
        value = metadata.get(key)
        return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""

    ref = OrderRef(order_id=text(ORDER_ID), order_key=text(ORDER_KEY), customer_id=text(CUSTOMER_ID),
                   account_id=text(ACCOUNT_ID), created_by_bridge=text(BRIDGE) == BRIDGE_MARK)
    if not ref.order_id and not ref.order_key:
        return None
    return ref
