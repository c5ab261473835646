"""Stripe metadata: the Clarity keys, Stripe's limits, explicit truncation, and reading the order back."""

from __future__ import annotations

import pytest

from commerce_bridge.domain.money import Money
from commerce_bridge.domain.orders import Customer, Order, OrderLine
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.metadata import (
    ELLIPSIS,
    OrderRef,
    customer_metadata,
    merge_metadata,
    order_metadata,
    order_ref_from_metadata,
    truncate_value,
    validate_metadata,
)


def _order(**customer_ids: str) -> Order:
    usd = Money(1000, "USD")
    return Order(external_id="42", key="WEB-100001", customer=Customer("ann@example.com", external_ids=customer_ids),
                 lines=(OrderLine("SKU-1", 1, usd),), total=usd, tax=Money.zero("USD"),
                 shipping=Money.zero("USD"), discount=Money.zero("USD"), status="Pending")


def test_order_metadata_carries_the_clarity_ids_and_reads_back() -> None:
    metadata = order_metadata(_order(clarity="7", clarity_account="3"), {"channel": "web"})
    assert metadata == {"clarity_order_id": "42", "clarity_order_key": "WEB-100001", "clarity_customer_id": "7",
                        "clarity_account_id": "3", "bridge": "commerce-bridge", "channel": "web"}
    assert order_ref_from_metadata(metadata) == OrderRef("42", "WEB-100001", "7", "3", created_by_bridge=True)


def test_empty_ids_are_left_out_because_empty_unsets_in_stripe() -> None:
    metadata = order_metadata(_order())
    assert "clarity_customer_id" not in metadata and "clarity_account_id" not in metadata
    assert customer_metadata({}) == {"bridge": "commerce-bridge"}
    assert customer_metadata({"clarity": "7"})["clarity_customer_id"] == "7"


def test_storefront_metadata_with_only_the_order_key_is_enough() -> None:
    assert order_ref_from_metadata({"clarity_order_key": " WEB-1 "}) == OrderRef(order_key="WEB-1")
    assert order_ref_from_metadata({"clarity_order_id": 42}) == OrderRef(order_id="42")


@pytest.mark.parametrize("metadata", [None, {}, {"other": "x"}, {"clarity_order_id": True}, {"clarity_order_key": ""}])
def test_metadata_without_an_order_reference_gives_none(metadata: dict[str, object] | None) -> None:
    assert order_ref_from_metadata(metadata) is None


def test_extra_keys_may_not_replace_the_bridge_keys() -> None:
    with pytest.raises(MappingError, match="reserved"):
        order_metadata(_order(), {"clarity_order_id": "1"})


@pytest.mark.parametrize(("key", "fragment"), [
    ("k" * 41, "40"), ("items[0]", "'\\['"), ("a]", "'\\['"), ("", "non-empty"), (7, "non-empty"),
])
def test_bad_keys_are_refused(key: object, fragment: str) -> None:
    with pytest.raises(MappingError, match=fragment) as info:
        validate_metadata({key: "v"})  # type: ignore[dict-item]
    assert info.value.suggested_fix


def test_forty_character_keys_and_fifty_keys_are_allowed_but_not_more() -> None:
    assert validate_metadata({"k" * 40: "v"}) == {"k" * 40: "v"}
    fifty = {f"key{i}": str(i) for i in range(50)}
    assert len(validate_metadata(fifty)) == 50
    with pytest.raises(MappingError, match="50"):
        validate_metadata({**fifty, "one_more": "x"})


def test_over_long_value_is_an_error_unless_truncation_is_allowed_for_that_key() -> None:
    long = "x" * 501
    assert validate_metadata({"note": "y" * 500}) == {"note": "y" * 500}
    with pytest.raises(MappingError) as info:
        validate_metadata({"note": long})
    assert "truncation" in (info.value.suggested_fix or "")
    truncated = validate_metadata({"note": long}, truncate=["note"])["note"]
    assert len(truncated) == 500 and truncated.endswith(ELLIPSIS) and truncated[:499] == "x" * 499
    assert truncate_value("short") == "short"


@pytest.mark.parametrize("value", [1.5, True, ["a"], {"a": 1}])
def test_values_must_be_text_or_integers(value: object) -> None:
    with pytest.raises(MappingError):
        validate_metadata({"k": value})


def test_integers_become_text_and_empty_values_are_dropped() -> None:
    assert validate_metadata({"n": 5, "empty": "", "none": None}) == {"n": "5"}


def test_merge_follows_stripe_update_semantics_and_limits() -> None:
    existing = {"clarity_order_key": "WEB-1", "old": "x", "blank": ""}
    assert merge_metadata(existing, {"old": "", "clarity_order_id": "42"}) == {
        "clarity_order_key": "WEB-1", "clarity_order_id": "42"}
    many = {f"k{i}": "v" for i in range(49)}
    with pytest.raises(MappingError):
        merge_metadata(many, {"a": "1", "b": "2"})
