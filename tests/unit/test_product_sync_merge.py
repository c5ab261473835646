"""The pure half of the product sync: the three readers (``mapping.product_record``) and the merge
(``mapping.product_sync``): per-field source of truth, latest change by each source's clock, prices per currency,
an empty value never winning, patches in each system's own names, and no loop (a second merge is empty)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.errors import ConfigurationError, MappingError
from commerce_bridge.mapping.product_record import (
    ProductRecord,
    from_clarity,
    from_erp,
    from_stripe,
    lookup_key,
    price_field,
    restamp,
    sku_of_lookup_key,
    stripe_sku,
)
from commerce_bridge.mapping.product_sync import ProductSyncPolicy, fingerprint, merge

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stamps(minutes: int, *prices: str) -> dict[str, datetime]:
    return {**{n: at(minutes) for n in ("name", "description", "active", "uom")},
            **{price_field(c): at(minutes) for c in prices}}


def clarity(minutes: int = 0, **kw: Any) -> ProductRecord:
    base: dict[str, Any] = {"sku": "SKU-1", "name": "Widget", "description": "A widget", "active": True,
                            "uom": "Nos", "prices": {"USD": 1250}, "currencies": frozenset({"USD"}),
                            "ids": {"clarity_product": "7"}, "updated_at": stamps(minutes, "USD")}
    return ProductRecord(system="clarity", **{**base, **kw})


def erp(minutes: int = 0, **kw: Any) -> ProductRecord:
    base: dict[str, Any] = {"sku": "SKU-1", "name": "Widget", "description": "A widget", "active": True,
                            "uom": "Nos", "prices": {"USD": 1250}, "currencies": frozenset({"USD"}),
                            "ids": {"erp": "SKU-1"}, "updated_at": stamps(minutes, "USD")}
    return ProductRecord(system="erp", **{**base, **kw})


def stripe(minutes: int = 0, **kw: Any) -> ProductRecord:
    base: dict[str, Any] = {"sku": "SKU-1", "name": "Widget", "description": "A widget", "active": True,
                            "uom": "Nos", "prices": {"USD": 1250}, "currencies": None,
                            "ids": {"stripe": "prod_1", "erp": "SKU-1", "clarity_product": "7"},
                            "updated_at": stamps(minutes, "USD")}
    return ProductRecord(system="stripe", **{**base, **kw})


def test_three_equal_records_converge_with_no_patch() -> None:
    result = merge({"clarity": clarity(), "erp": erp(), "stripe": stripe()})
    assert result.converged and not result.conflicts
    assert result.record.prices == {"USD": 1250}


def test_the_latest_price_wins_and_is_written_in_each_systems_own_shape_when_erpnext_changed_it() -> None:
    result = merge({"clarity": clarity(), "erp": erp(0, prices={"USD": 1399}, updated_at={
        **stamps(0), price_field("USD"): at(5)}), "stripe": stripe()})
    assert result.winners[price_field("USD")] == "erp"
    assert result.patches["clarity"] == {"PriceBase": "13.99"}
    assert result.patches["stripe"] == {"prices": {"USD": 1399}}
    assert result.patches["erp"] == {}
    assert {(c.field, c.system) for c in result.conflicts} == {("prices.USD", "clarity"), ("prices.USD", "stripe")}


def test_prices_merge_per_currency_and_a_system_gets_only_the_currency_it_holds() -> None:
    eur_stripe = stripe(0, prices={"USD": 1250, "EUR": 1100}, updated_at=stamps(0, "USD", "EUR"))
    result = merge({"clarity": clarity(0, prices={"USD": 1500}, updated_at=stamps(9, "USD")),
                    "erp": erp(), "stripe": eur_stripe})
    assert result.record.prices == {"EUR": 1100, "USD": 1500}
    assert result.patches["erp"] == {"prices": {"USD": "15.00"}}  # no EUR: the price list is in USD
    assert result.patches["stripe"] == {"prices": {"USD": 1500}}  # EUR untouched
    assert result.patches["clarity"] == {}


def test_a_currency_the_others_no_longer_have_is_left_alone_in_stripe() -> None:
    result = merge({"clarity": clarity(5, prices={}), "erp": erp(5, prices={}),
                    "stripe": stripe(0, prices={"USD": 1250}, updated_at=stamps(0, "USD"))})
    assert result.record.prices == {"USD": 1250}  # an empty value never wins: nothing is cleared
    assert result.patches["stripe"] == {}
    assert result.patches["clarity"] == {"PriceBase": "12.50"}


def test_the_source_of_truth_beats_a_later_change() -> None:
    policy = ProductSyncPolicy(source_of_truth={"prices": "erp", "name": "clarity"})
    result = merge({"clarity": clarity(0, name="Old", prices={"USD": 999}, updated_at=stamps(0, "USD")),
                    "erp": erp(0), "stripe": stripe(30, name="New", prices={"USD": 1}, updated_at=stamps(30, "USD"))},
                   policy)
    assert result.record.name == "Old" and result.record.prices == {"USD": 1250}
    assert result.patches["stripe"] == {"product": {"name": "Old"}, "prices": {"USD": 1250}}


def test_an_empty_value_never_wins_even_when_it_is_the_latest() -> None:
    result = merge({"clarity": clarity(60, description=""), "erp": erp(0), "stripe": stripe(0)})
    assert result.record.description == "A widget"
    assert result.patches["clarity"] == {"Description": "A widget"}


def test_inactive_propagates_both_ways_and_erpnext_gets_disabled() -> None:
    off = merge({"clarity": clarity(0), "erp": erp(0), "stripe": stripe(10, active=False)})
    assert off.patches["clarity"] == {"Active": False}
    assert off.patches["erp"] == {"item": {"disabled": 1}}
    on = merge({"clarity": clarity(20), "erp": erp(0, active=False), "stripe": stripe(10, active=False)})
    assert on.patches["erp"] == {"item": {"disabled": 0}} and on.patches["stripe"] == {"product": {"active": True}}


def test_the_stripe_patch_names_the_sku_and_the_clarity_product_in_metadata_when_missing() -> None:
    result = merge({"clarity": clarity(), "erp": erp(), "stripe": stripe(ids={"stripe": "prod_1", "erp": "SKU-1"})})
    assert result.patches["stripe"] == {"product": {"metadata": {"clarity_product_id": "7"}}}


def test_the_uom_is_renamed_back_for_clarity_through_the_inverse_of_the_uom_map() -> None:
    result = merge({"clarity": clarity(0, uom=""), "erp": erp(0, uom="Each")}, uom_map={"EA": "Each"})
    assert result.patches["clarity"] == {"UnitOfMeasure": "EA"}


def test_records_naming_different_skus_are_refused() -> None:
    with pytest.raises(MappingError, match="different SKUs"):
        merge({"clarity": clarity(), "erp": erp(sku="SKU-2")})


@pytest.mark.parametrize("truth", [{"price": "erp"}, {"prices": "sap"}])
def test_an_unknown_field_or_system_in_the_policy_is_a_configuration_error_naming_it(truth: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(truth.values())) if "sap" in truth.values() else "price"):
        ProductSyncPolicy(source_of_truth=truth)


def test_a_price_stripe_cannot_represent_is_a_mapping_error_not_a_rounding() -> None:
    with pytest.raises(MappingError):
        merge({"erp": erp(0, prices={"KWD": 5124}, currencies=frozenset({"KWD"})), "stripe": stripe(0, prices={})})


def test_the_readers_take_each_systems_own_json() -> None:
    product = {"ID": 7, "CustomKey": "SKU-1", "Name": " Widget ", "UnitOfMeasure": "EA", "PriceBase": 12.5,
               "UpdatedDate": "2026-12-01T12:00:00"}
    c = from_clarity(product, currency="usd", uom_map={"EA": "Each"})
    assert (c.sku, c.name, c.active, c.uom, dict(c.prices)) == ("SKU-1", "Widget", False, "Each", {"USD": 1250})
    assert c.stamp("prices.USD") == T0  # offset-less CEF dates in the store's zone (UTC here)
    e = from_erp({"name": "SKU-1", "item_code": "SKU-1", "item_name": "Widget", "disabled": 1, "stock_uom": "Nos",
                  "modified": "2026-12-01 12:00:00.000000"},
                 [{"currency": "USD", "price_list_rate": 13.99, "modified": "2026-12-01 12:05:00"}], currency="USD")
    assert (e.active, dict(e.prices), e.stamp("prices.USD"), e.stamp("name")) == (False, {"USD": 1399}, at(5), T0)
    prices = [{"id": "price_a", "product": "prod_1", "active": True, "type": "one_time", "currency": "usd",
               "unit_amount": 1250, "lookup_key": lookup_key("SKU-1", "USD"), "created": int(at(1).timestamp())},
              {"id": "price_b", "product": "prod_1", "active": True, "type": "one_time", "currency": "usd",
               "unit_amount": 999, "lookup_key": None, "created": int(at(2).timestamp())},
              {"id": "price_c", "product": "prod_1", "active": True, "type": "recurring", "currency": "eur",
               "recurring": {"interval": "month"}, "unit_amount": 500, "created": 1}]
    s = from_stripe({"id": "prod_1", "name": "Widget", "active": True, "metadata": {},
                     "updated": int(T0.timestamp())}, prices)
    assert (s.sku, dict(s.prices), s.stamp("prices.USD")) == ("SKU-1", {"USD": 1250}, at(1))  # ours, not newest
    assert stripe_sku({"metadata": {}}, []) == "" and sku_of_lookup_key("cb:A:B:usd") == "A:B"


def test_a_price_finer_than_the_currency_is_refused_naming_the_field() -> None:
    with pytest.raises(MappingError, match="PriceBase"):
        from_clarity({"ID": 1, "CustomKey": "X", "PriceBase": "1.005"}, currency="USD")


def test_restamp_keeps_the_old_time_of_an_unchanged_value() -> None:
    old = clarity(0)
    new = restamp(clarity(30, name="Renamed"), old)
    assert new.stamp("name") == at(30) and new.stamp("prices.USD") == at(0)


def test_the_fingerprint_ignores_key_order() -> None:
    assert fingerprint("stripe", {"a": 1, "b": {"c": 2, "d": 3}}) == fingerprint("stripe", {"b": {"d": 3, "c": 2},
                                                                                          "a": 1})


NAMES = st.sampled_from(["Widget", "Gadget", ""])
AMOUNTS = st.one_of(st.none(), st.integers(0, 10**6))


@st.composite
def records(draw: st.DrawFn) -> dict[str, ProductRecord]:
    out: dict[str, ProductRecord] = {}
    for system in ("clarity", "erp", "stripe"):
        if system != "clarity" and not draw(st.booleans()):
            continue
        currencies = None if system == "stripe" else frozenset({"USD"} if system == "clarity" else {"EUR"})
        prices = {c: a for c in ("USD", "EUR") if (a := draw(AMOUNTS)) is not None
                  and (currencies is None or c in currencies)}
        minutes = {n: draw(st.integers(0, 5)) for n in ("name", "description", "active", "uom", "USD", "EUR")}
        out[system] = ProductRecord(
            system=system, sku="SKU-1", name=draw(NAMES), description=draw(NAMES), active=draw(st.booleans()),
            uom=draw(st.sampled_from(["Nos", "Box", ""])), prices=prices, currencies=currencies,
            ids={"stripe": "prod_1"} if system == "stripe" else {},
            updated_at={**{n: at(minutes[n]) for n in ("name", "description", "active", "uom")},
                        **{price_field(c): at(minutes[c]) for c in prices}})
    return out


def applied(record: ProductRecord, merged: ProductRecord, names: tuple[str, ...]) -> ProductRecord:
    """``record`` after its patch was applied and read back: the winning values of ``names``."""
    values: dict[str, Any] = {n: merged.value(n) for n in names if not n.startswith("prices.")}
    prices = {**record.prices, **{n[7:]: merged.prices[n[7:]] for n in names if n.startswith("prices.")}}
    return ProductRecord(system=record.system, sku=record.sku, name=values.get("name", record.name),
                         description=values.get("description", record.description),
                         active=values.get("active", record.active), uom=values.get("uom", record.uom),
                         prices=prices, currencies=record.currencies, ids=record.ids,
                         updated_at={**record.updated_at, **{n: at(10) for n in names}})


@settings(max_examples=200, deadline=None)
@given(records())
def test_a_second_merge_after_applying_the_patches_writes_nothing(found: dict[str, ProductRecord]) -> None:
    first = merge(found)
    after = {s: applied(r, first.record, tuple(n for n in first.changed[s] if not n.startswith("metadata.")))
             for s, r in found.items()}
    second = merge(after)
    assert all(patch == {} or (set(patch) == {"product"} and set(patch["product"]) == {"metadata"})
               for patch in second.patches.values()), second.patches
    assert second.record.prices == first.record.prices
    held = {n for r in found.values() for n in r.field_names() if r.value(n) not in (None, "")}
    assert held == set(first.winners)  # a value some system holds is never dropped (an empty one never wins)
    for record in after.values():  # every system now holds the winner of each field it carries
        assert all(record.value(n) == first.record.value(n) for n in first.winners if record.holds(n))
