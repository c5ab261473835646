"""Customer identity: the email rule, phone normalisation and de-duplication keys."""

from __future__ import annotations

import pytest

from commerce_bridge.domain.orders import Address, Customer
from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.customer import (
    customer_identity,
    dedupe_keys,
    email_dedupe_key,
    normalize_email,
    normalize_phone,
    normalized_customer,
    same_customer,
)


@pytest.mark.parametrize(("given", "normalized", "key"), [
    ("Ann.Lee+shop@Example.COM", "Ann.Lee+shop@example.com", "ann.lee+shop@example.com"),
    ("  ann@example.com ", "ann@example.com", "ann@example.com"),
    ("A.N.N+promo@GMail.com", "A.N.N+promo@gmail.com", "ann@gmail.com"),
    ("ann@googlemail.com", "ann@googlemail.com", "ann@gmail.com"),
    ("ÄNN@Bücher.de", "ÄNN@bücher.de", "änn@bücher.de"),
])
def test_email_rule(given: str, normalized: str, key: str) -> None:
    assert normalize_email(given) == normalized
    assert email_dedupe_key(given) == key


@pytest.mark.parametrize("email", ["", "   ", None, "ann", "a@b", "bad@@example.com", "ann@localhost", 42])
def test_invalid_email_is_a_validation_error_with_a_fix(email: object) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_email(email, field="UserContactEmail")
    assert info.value.suggested_fix
    assert info.value.errors[0].startswith("UserContactEmail:")


@pytest.mark.parametrize(("phone", "region", "e164"), [
    ("+1 512 555 0100", None, "+15125550100"),
    ("(512) 555-0100", "us", "+15125550100"),
    ("0151 12345678", "DE", "+4915112345678"),
])
def test_phones_become_e164(phone: str, region: str | None, e164: str) -> None:
    assert normalize_phone(phone, region) == (e164, None)


@pytest.mark.parametrize(("phone", "region"), [("123", "US"), ("abc", None), ("555-0100", None), (5125550100, "US")])
def test_bad_phones_are_left_out_with_a_warning(phone: object, region: str | None) -> None:
    e164, warning = normalize_phone(phone, region)
    assert e164 == "" and warning and "left out" in warning


def test_missing_phone_is_neither_kept_nor_warned() -> None:
    assert normalize_phone(None) == ("", None) and normalize_phone("  ") == ("", None)


def test_identity_uses_the_billing_country_for_phones_and_collects_keys() -> None:
    customer = Customer("Ann@Example.com", "Ann Lee", "(512) 555-0100",
                        Address("1 Main St", "Austin", "US", "78701", region="TX"),
                        {"clarity": "7", "stripe": "cus_1", "erp": ""})
    identity = customer_identity(customer)
    assert identity.phone == "+15125550100" and not identity.warnings
    assert identity.dedupe_keys == ("email:ann@example.com", "clarity:7", "stripe:cus_1")
    fixed, _ = normalized_customer(customer)
    assert fixed.email == "Ann@example.com" and fixed.phone == "+15125550100"


def test_invalid_phone_is_a_warning_in_the_result_not_an_error() -> None:
    identity = customer_identity(Customer("ann@example.com", phone="12"), default_region="US")
    assert identity.phone == "" and len(identity.warnings) == 1


def test_duplicates_share_a_key() -> None:
    a = customer_identity(Customer("a.nn+x@gmail.com"))
    b = customer_identity(Customer("ANN@gmail.com"))
    c = customer_identity(Customer("other@example.com", external_ids={"clarity": "7"}))
    d = customer_identity(Customer("different@example.com", external_ids={"clarity": "7"}))
    assert same_customer(a, b) and same_customer(c, d) and not same_customer(a, c)
    assert dedupe_keys("", {"clarity": "1"}) == ("clarity:1",)


def test_non_gmail_dots_and_tags_are_kept() -> None:
    assert email_dedupe_key("a.nn+x@example.com") != email_dedupe_key("ann@example.com")
