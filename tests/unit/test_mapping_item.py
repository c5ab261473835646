"""Clarity product -> domain Product -> ERPNext Item (the Item the order flow creates for a SKU ERPNext lacks)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.domain.money import Money
from commerce_bridge.domain.product import Product
from commerce_bridge.errors import MappingError
from commerce_bridge.mapping.item import (
    DEFAULT_ITEM_GROUP,
    DEFAULT_STOCK_UOM,
    ITEM_NAME_MAX,
    erp_item,
    product_from_clarity,
)
from commerce_bridge.mapping.money import money_from_decimal

CLARITY_PRODUCT: dict[str, Any] = {
    "ID": 7, "CustomKey": "SKU-LAMP", "Name": "Desk Lamp", "Description": "<p>A lamp for the desk.</p>",
    "ShortDescription": "A lamp", "UnitOfMeasure": "Box", "Active": True, "PriceBase": "24.5000",
    "TypeKey": "GENERAL", "StatusKey": "NORMAL",
}


def test_a_clarity_product_becomes_an_erpnext_item_with_its_fields() -> None:
    product = product_from_clarity(CLARITY_PRODUCT, currency="usd")
    assert product == Product(sku="SKU-LAMP", name="Desk Lamp", description="<p>A lamp for the desk.</p>",
                              unit_of_measure="Box", active=True, stock_tracked=True, price=Money(2450, "USD"))
    assert erp_item(product) == {
        "item_code": "SKU-LAMP", "item_name": "Desk Lamp", "description": "<p>A lamp for the desk.</p>",
        "item_group": "All Item Groups", "stock_uom": "Box", "is_stock_item": 1, "disabled": 0,
        "standard_rate": "24.50"}


def test_a_bare_product_takes_erpnexts_defaults_and_is_disabled_when_active_is_omitted() -> None:
    # CEF omits false and empty values: no Active is an inactive product, no UnitOfMeasure the default UOM
    product = product_from_clarity({"ID": 8, "CustomKey": " SKU-BARE "}, currency="EUR")
    assert product == Product(sku="SKU-BARE", name="SKU-BARE", active=False)
    assert erp_item(product) == {
        "item_code": "SKU-BARE", "item_name": "SKU-BARE", "description": "SKU-BARE",
        "item_group": DEFAULT_ITEM_GROUP, "stock_uom": DEFAULT_STOCK_UOM, "is_stock_item": 1, "disabled": 1}


def test_settings_choose_the_group_the_default_uom_and_rename_units() -> None:
    product = product_from_clarity({**CLARITY_PRODUCT, "UnitOfMeasure": "EA", "IsUnlimitedStock": True,
                                    "Description": ""}, currency="USD")
    doc = erp_item(product, item_group="Products", default_uom="Unit", uom_map={"EA": "Nos"})
    assert (doc["item_group"], doc["stock_uom"], doc["is_stock_item"], doc["description"]) == (
        "Products", "Nos", 0, "A lamp")
    assert erp_item(Product("SKU-X", "X"), default_uom="Unit")["stock_uom"] == "Unit"


@pytest.mark.parametrize("price", ["12.345", "-1.00", "abc", "", None, True])
def test_a_price_the_currency_cannot_hold_exactly_is_left_out_never_rounded(price: object) -> None:
    product = product_from_clarity({**CLARITY_PRODUCT, "PriceBase": price}, currency="USD")
    assert product.price is None and "standard_rate" not in erp_item(product)


def test_prices_are_read_in_the_orders_currency() -> None:
    assert product_from_clarity({**CLARITY_PRODUCT, "PriceBase": "1500"}, currency="JPY").price == Money(1500, "JPY")
    assert erp_item(product_from_clarity({**CLARITY_PRODUCT, "PriceBase": "4.25"}, currency="KWD"))[
        "standard_rate"] == "4.250"
    assert product_from_clarity({**CLARITY_PRODUCT, "PriceBase": "12.50"}, currency="JPY").price is None


@pytest.mark.parametrize("product", [{"ID": 9}, {"ID": 9, "CustomKey": "  "}, {"CustomKey": 42}])
def test_a_product_without_a_sku_cannot_be_an_item(product: dict[str, Any]) -> None:
    with pytest.raises(MappingError, match="no CustomKey"):
        product_from_clarity(product, currency="USD")


@pytest.mark.parametrize("currency", ["US", "XXX", "ZZZ"])
def test_an_unknown_currency_is_an_error_not_a_missing_price(currency: str) -> None:
    with pytest.raises(MappingError):
        product_from_clarity(CLARITY_PRODUCT, currency=currency)


def test_a_long_name_is_cut_for_item_name_and_kept_whole_as_description() -> None:
    name = "Lamp " * 60
    doc = erp_item(product_from_clarity({"CustomKey": "SKU-LONG", "Name": name, "Active": True}, currency="USD"))
    assert doc["item_name"] == name.strip()[:ITEM_NAME_MAX] and doc["description"] == name.strip()


CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "GBP", "CLP", "BHD"])
TEXT = st.text(st.characters(codec="utf-8"), max_size=200)


@given(sku=st.text(min_size=1, max_size=128).filter(lambda s: s.strip() != ""), name=TEXT, active=st.booleans(),
       unlimited=st.booleans(), minor=st.integers(0, 10**12), currency=CURRENCIES)
def test_any_product_maps_to_an_item_keyed_by_its_sku_with_its_price_exact(
        sku: str, name: str, active: bool, unlimited: bool, minor: int, currency: str) -> None:
    price_text = f"{Decimal(minor).scaleb(-minor_digits(currency)):f}"
    product = product_from_clarity({"CustomKey": sku, "Name": name, "Active": active, "IsUnlimitedStock": unlimited,
                                    "PriceBase": price_text}, currency=currency)
    doc = erp_item(product)
    assert doc["item_code"] == sku.strip()
    assert doc["item_name"] == (name.strip() or sku.strip())[:ITEM_NAME_MAX] and doc["item_name"]
    assert doc["description"] and (doc["disabled"], doc["is_stock_item"]) == (int(not active), int(not unlimited))
    assert money_from_decimal(doc["standard_rate"], currency) == Money(minor, currency)  # round trip, no rounding


@given(digits=st.integers(1, 6), minor=st.integers(1, 10**9), currency=CURRENCIES)
def test_a_price_finer_than_the_minor_unit_never_becomes_a_rounded_rate(digits: int, minor: int,
                                                                         currency: str) -> None:
    finer = Decimal(minor * 10 + 1).scaleb(-(minor_digits(currency) + digits))  # a last digit past the minor unit
    product = product_from_clarity({"CustomKey": "SKU-F", "PriceBase": f"{finer:f}"}, currency=currency)
    assert product.price is None and "standard_rate" not in erp_item(product)
