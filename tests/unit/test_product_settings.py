"""The product sync's settings: off by default, a currency that is ISO 4217 (upper-cased), a source of truth checked
at start-up through ``ProductSyncPolicy``; each bad one named in the start-up error."""

from __future__ import annotations

import pytest

from commerce_bridge.config import load_settings
from commerce_bridge.errors import ConfigurationError


def test_the_product_sync_is_off_by_default_with_usd_and_the_standard_selling_list() -> None:
    s = load_settings()
    assert (s.product_sync, s.clarity_currency, s.erp_selling_price_list, s.product_source_of_truth) == (
        False, "USD", "Standard Selling", {})
    assert (s.clarity_products_poll_interval_s, s.erp_items_poll_interval_s) == (30.0, 60.0)


def test_the_product_settings_are_read_and_the_currency_upper_cased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_PRODUCT_SYNC", "true")
    monkeypatch.setenv("CB_CLARITY_CURRENCY", "eur")
    monkeypatch.setenv("CB_PRODUCT_SOURCE_OF_TRUTH", '{"prices": "erp", "name": "clarity"}')
    s = load_settings()
    assert (s.product_sync, s.clarity_currency, s.product_source_of_truth) == (
        True, "EUR", {"prices": "erp", "name": "clarity"})


def test_an_unknown_currency_and_a_bad_source_of_truth_are_each_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_CLARITY_CURRENCY", "XYZ")
    monkeypatch.setenv("CB_PRODUCT_SOURCE_OF_TRUTH", '{"colour": "erp", "prices": "sap"}')
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    text = " ".join(info.value.errors)
    assert "CB_CLARITY_CURRENCY" in text and "XYZ" in text
    assert "CB_PRODUCT_SOURCE_OF_TRUTH" in text and "colour" in text
    assert len(info.value.errors) == 2
