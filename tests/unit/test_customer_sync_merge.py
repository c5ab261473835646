"""Customer sync merge: source of truth, latest change wins, ties, conflicts, minimal patches, no write loop."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import ConfigurationError, MappingError
from commerce_bridge.mapping.customer_record import (
    CustomerRecord,
    from_clarity,
    from_erp,
    from_stripe,
    restamp,
)
from commerce_bridge.mapping.customer_sync import MergeResult, SyncPolicy, fingerprint, is_echo, merge

T0 = datetime(2026, 12, 1, tzinfo=UTC)
AUSTIN = Address(line1="1 Main St", city="Austin", country="US", postal_code="78701", region="TX")
BERLIN = Address(line1="Unter den Linden 1", city="Berlin", country="DE", postal_code="10117")
LONDON = Address(line1="10 Downing Street", line2="Flat 2", city="London", country="GB", postal_code="SW1A 2AA")


def rec(system: str, when: datetime = T0, **values: Any) -> CustomerRecord:
    fields = [f for f in ("name", "email", "phone", "billing_address", "shipping_address", "tax_id") if f in values]
    if "email" in values:
        values.setdefault("email_display", values["email"])
    return CustomerRecord(system=system, updated_at=dict.fromkeys(fields, when), **values)


# ---------------------------------------------------------------- the policy


def test_latest_change_wins_by_default() -> None:
    result = merge({"clarity": rec("clarity", T0, name="Ann Lee"),
                    "stripe": rec("stripe", T0 + timedelta(hours=1), name="Ann B. Lee")})
    assert result.record.name == "Ann B. Lee"
    assert result.winners["name"] == "stripe"
    assert result.patches["clarity"] == {"account": {"Name": "Ann B. Lee"}}
    assert result.patches["stripe"] == {}


def test_source_of_truth_wins_over_a_later_change() -> None:
    policy = SyncPolicy(source_of_truth={"email": "clarity", "tax_id": "erp"})
    result = merge({"clarity": rec("clarity", T0, email="ann@example.com", tax_id="C-1"),
                    "erp": rec("erp", T0 + timedelta(days=1), email="ann@new.example", tax_id="E-1")}, policy)
    assert (result.record.email, result.record.tax_id) == ("ann@example.com", "E-1")
    assert result.patches["erp"] == {"customer": {"email_id": "ann@example.com"},
                                     "contact": {"email_id": "ann@example.com"}}
    assert result.patches["clarity"] == {"account": {"EIN": "E-1"}}


def test_source_of_truth_without_a_value_falls_back_to_the_latest() -> None:
    policy = SyncPolicy(source_of_truth={"phone": "clarity"})
    result = merge({"clarity": rec("clarity", T0 + timedelta(days=2), phone=""),
                    "stripe": rec("stripe", T0, phone="+15125550100")}, policy)
    assert result.winners["phone"] == "stripe"
    assert result.patches["clarity"] == {"billing_contact": {"Phone1": "+15125550100"}}


def test_timestamp_tie_goes_to_the_earlier_system_in_the_order() -> None:
    records = {"stripe": rec("stripe", T0, name="S"), "erp": rec("erp", T0, name="E"),
               "clarity": rec("clarity", T0, name="C")}
    assert merge(records).winners["name"] == "clarity"
    assert merge(records, SyncPolicy(system_order=("stripe", "erp", "clarity"))).winners["name"] == "stripe"


def test_an_empty_value_never_wins() -> None:
    result = merge({"clarity": rec("clarity", T0, phone="+15125550100"),
                    "erp": rec("erp", T0 + timedelta(days=1), phone="")})
    assert result.record.phone == "+15125550100"
    assert result.patches["erp"] == {"customer": {"mobile_no": "+15125550100"},
                                     "contact": {"mobile_no": "+15125550100"}}
    assert result.conflicts == ()  # an empty value is missing, not a disagreement


def test_every_losing_value_is_recorded_as_a_conflict() -> None:
    result = merge({"clarity": rec("clarity", T0, name="C"),
                    "erp": rec("erp", T0 + timedelta(hours=1), name="E"),
                    "stripe": rec("stripe", T0 + timedelta(hours=2), name="S")})
    assert [(c.field, c.system, c.value, c.updated_at, c.winner) for c in result.conflicts] == [
        ("name", "clarity", "C", T0, "stripe"), ("name", "erp", "E", T0 + timedelta(hours=1), "stripe")]


def test_patches_hold_only_the_fields_that_differ() -> None:
    clarity = rec("clarity", T0, name="Ann Lee", email="ann@example.com", phone="+15125550100",
                  billing_address=AUSTIN, tax_id="T-1")
    stripe = rec("stripe", T0 + timedelta(hours=1), name="Ann Lee", email="ANN@Example.com",
                 phone="+15125550100", billing_address=AUSTIN, shipping_address=BERLIN)
    result = merge({"clarity": clarity, "stripe": stripe})
    assert result.patches["stripe"] == {}  # same email up to case, same everything else; no tax id at Stripe
    assert result.patches["clarity"] == {"shipping_contact": {"Address": {
        "Street1": "Unter den Linden 1", "Street2": "", "Street3": "", "City": "Berlin", "RegionCode": "",
        "PostalCode": "10117", "CountryCode": "DE"}}}
    assert result.changed["clarity"] == ("shipping_address",)


def test_stripe_patch_shapes_and_id_metadata() -> None:
    clarity = rec("clarity", T0 + timedelta(hours=1), name="Ann Lee", email="Ann@Example.com",
                  billing_address=AUSTIN, shipping_address=LONDON)
    clarity = replace(clarity, ids={"clarity": "42", "clarity_account": "7", "clarity_key": "K7"})
    stripe = replace(rec("stripe", T0), ids={"stripe": "cus_1", "clarity_account": "7"})
    erp = replace(rec("erp", T0), ids={"erp": "Ann Lee"})
    result = merge({"clarity": clarity, "stripe": stripe, "erp": erp})
    assert result.patches["stripe"] == {
        "name": "Ann Lee", "email": "Ann@Example.com",
        "address": {"line1": "1 Main St", "line2": "", "city": "Austin", "state": "TX", "postal_code": "78701",
                    "country": "US"},
        "shipping": {"name": "Ann Lee", "address": {"line1": "10 Downing Street", "line2": "Flat 2",
                                                    "city": "London", "state": "", "postal_code": "SW1A 2AA",
                                                    "country": "GB"}},
        "metadata": {"clarity_customer_id": "42", "erp_customer": "Ann Lee"},
    }
    assert result.patches["erp"]["billing_address"] == {
        "address_type": "Billing", "address_line1": "1 Main St", "address_line2": "", "city": "Austin",
        "state": "TX", "pincode": "78701", "country": "United States"}
    assert result.patches["erp"]["shipping_address"]["address_type"] == "Shipping"
    assert dict(result.record.ids) == {"clarity": "42", "clarity_account": "7", "clarity_key": "K7",
                                       "erp": "Ann Lee", "stripe": "cus_1"}


def test_an_id_held_elsewhere_that_disagrees_with_its_owner_is_a_conflict() -> None:
    clarity = replace(rec("clarity"), ids={"clarity_account": "7"})
    stripe = replace(rec("stripe"), ids={"stripe": "cus_1", "clarity_account": "8"})
    result = merge({"clarity": clarity, "stripe": stripe})
    assert result.record.ids["clarity_account"] == "7"
    assert [(c.field, c.system, c.value) for c in result.conflicts] == [("ids.clarity_account", "stripe", "8")]
    assert result.patches["stripe"] == {"metadata": {"clarity_account_id": "7"}}


def test_policy_rejects_unknown_fields_and_systems() -> None:
    with pytest.raises(ConfigurationError):
        SyncPolicy(source_of_truth={"birthday": "erp"})
    with pytest.raises(ConfigurationError):
        SyncPolicy(source_of_truth={"tax_id": "stripe"})  # Stripe holds no plain tax id
    with pytest.raises(ConfigurationError):
        SyncPolicy(system_order=("erp", "stripe"))


def test_a_record_under_another_system_key_is_refused() -> None:
    with pytest.raises(MappingError):
        merge({"erp": rec("stripe", name="X")})


def test_fingerprint_is_stable_and_ignores_key_order() -> None:
    a = fingerprint("stripe", {"name": "Ann", "metadata": {"a": "1", "b": "2"}})
    b = fingerprint("stripe", {"metadata": {"b": "2", "a": "1"}, "name": "Ann"})
    assert a == b and a.startswith("cs1:")
    assert a != fingerprint("erp", {"name": "Ann", "metadata": {"a": "1", "b": "2"}})
    assert a != fingerprint("stripe", {"name": "Anne", "metadata": {"a": "1", "b": "2"}})


def test_is_echo_recognises_the_bridge_write_and_not_a_later_human_change() -> None:
    written = {"name": "Ann Lee", "phone": "+15125550100"}
    ours = rec("stripe", name="Ann Lee", phone="+15125550100", email="x@example.com")
    assert is_echo(ours, written)
    assert not is_echo(replace(ours, name="Ann Lea"), written)
    assert not is_echo(ours, {})


# ---------------------------------------------------------------- raw shapes, writes and read-back

NAMES = st.sampled_from(["", "Ann Lee", "Ann B. Lee", "Bob Ray"])
EMAILS = st.sampled_from(["", "ann@example.com", "Ann@Example.com", "bob@example.org"])
PHONES = st.sampled_from(["", "+12015550123", "+441212345678", "+4930123456"])
ADDRESSES = st.sampled_from([None, AUSTIN, BERLIN, LONDON])
TAX_IDS = st.sampled_from(["", "T-1", "T-2"])
TIMES = st.sampled_from([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)])


def _t(when: datetime, erp: bool = False) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if erp else when.strftime("%Y-%m-%dT%H:%M:%S.%f")


@st.composite
def clarity_state(draw: st.DrawFn) -> dict[str, Any]:
    def contact(email: str, phone: str, address: Address | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"Email1": email, "Phone1": phone, "UpdatedDate": _t(draw(TIMES))}
        if address is not None:
            doc["Address"] = {"Street1": address.line1, "Street2": address.line2, "City": address.city,
                              "RegionCode": address.region, "PostalCode": address.postal_code,
                              "CountryCode": address.country, "UpdatedDate": _t(draw(TIMES))}
        return doc
    return {"account": {"ID": 7, "CustomKey": "K7", "Name": draw(NAMES), "EIN": draw(TAX_IDS),
                        "UpdatedDate": _t(draw(TIMES))},
            "billing": contact(draw(EMAILS), draw(PHONES), draw(ADDRESSES)),
            "shipping": contact("", "", draw(ADDRESSES))}


@st.composite
def stripe_state(draw: st.DrawFn) -> dict[str, Any]:
    def address(a: Address | None) -> dict[str, Any] | None:
        return None if a is None else {"line1": a.line1, "line2": a.line2 or None, "city": a.city,
                                       "state": a.region or None, "postal_code": a.postal_code, "country": a.country}
    shipping = draw(ADDRESSES)
    return {"customer": {"id": "cus_1", "object": "customer", "name": draw(NAMES) or None,
                         "email": draw(EMAILS) or None, "phone": draw(PHONES) or None,
                         "address": address(draw(ADDRESSES)),
                         "shipping": None if shipping is None else {"name": "x", "address": address(shipping)},
                         "metadata": draw(st.sampled_from([{}, {"clarity_account_id": "7"}]))},
            "at": draw(TIMES)}


@st.composite
def erp_state(draw: st.DrawFn) -> dict[str, Any]:
    def address(a: Address | None, kind: str) -> dict[str, Any] | None:
        return None if a is None else {"address_type": kind, "address_line1": a.line1, "address_line2": a.line2,
                                       "city": a.city, "state": a.region, "pincode": a.postal_code,
                                       "country": {"US": "United States", "DE": "Germany",
                                                   "GB": "United Kingdom"}[a.country],
                                       "modified": _t(draw(TIMES), erp=True)}
    with_contact = draw(st.booleans())
    email, phone = draw(EMAILS), draw(PHONES)
    return {"customer": {"name": "C1", "customer_name": draw(NAMES), "tax_id": draw(TAX_IDS),
                         "email_id": "" if with_contact else email, "mobile_no": "" if with_contact else phone,
                         "modified": _t(draw(TIMES), erp=True)},
            "contact": {"email_id": email, "mobile_no": phone, "modified": _t(draw(TIMES), erp=True)}
            if with_contact else None,
            "billing": address(draw(ADDRESSES), "Billing"), "shipping": address(draw(ADDRESSES), "Shipping")}


def read(states: dict[str, dict[str, Any]]) -> dict[str, CustomerRecord]:
    records = {}
    if "clarity" in states:
        s = states["clarity"]
        records["clarity"] = from_clarity(s["account"], billing=s["billing"], shipping=s["shipping"], user={"ID": 42})
    if "stripe" in states:
        records["stripe"] = from_stripe(states["stripe"]["customer"], updated_at=states["stripe"]["at"])
    if "erp" in states:
        s = states["erp"]
        records["erp"] = from_erp(s["customer"], s["contact"], s["billing"], s["shipping"])
    return records


def apply(states: dict[str, dict[str, Any]], result: MergeResult, when: datetime) -> None:
    """Write each patch the way its system stores it (a later write time), as the wiring would."""
    for system, patch in result.patches.items():
        if not patch:
            continue
        s = states[system]
        if system == "stripe":
            for key, value in patch.items():
                if key == "metadata":
                    s["customer"]["metadata"] = {**s["customer"]["metadata"], **value}
                else:
                    s["customer"][key] = value
            s["at"] = when
        elif system == "erp":
            stamp = _t(when, erp=True)
            s["customer"] = {**s["customer"], **patch.get("customer", {}), "modified": stamp}
            if "contact" in patch:  # ERPNext creates the primary contact from the Customer's email and mobile
                base = s["contact"] or {"email_id": s["customer"].get("email_id", ""),
                                        "mobile_no": s["customer"].get("mobile_no", "")}
                s["contact"] = {**base, **patch["contact"], "modified": stamp}
            for kind in ("billing", "shipping"):
                if f"{kind}_address" in patch:
                    s[kind] = {**(s[kind] or {}), **patch[f"{kind}_address"], "modified": stamp}
        else:
            stamp = _t(when)
            if "account" in patch:
                s["account"] = {**s["account"], **patch["account"], "UpdatedDate": stamp}
            for kind in ("billing", "shipping"):
                part = patch.get(f"{kind}_contact")
                if part:
                    contact = {**s[kind], **part, "UpdatedDate": stamp}
                    if "Address" in part:
                        contact["Address"] = {**part["Address"], "UpdatedDate": stamp}
                    s[kind] = contact


SYSTEM_SETS = st.sampled_from([("clarity", "erp", "stripe"), ("clarity", "stripe"), ("clarity", "erp"),
                               ("erp", "stripe")])
POLICIES = st.sampled_from([SyncPolicy(), SyncPolicy(source_of_truth={"email": "clarity", "tax_id": "erp"}),
                            SyncPolicy(source_of_truth={"name": "stripe"}, system_order=("stripe", "clarity", "erp"))])


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    makers = {"clarity": clarity_state, "stripe": stripe_state, "erp": erp_state}
    return {system: draw(makers[system]()) for system in draw(SYSTEM_SETS)}


@settings(max_examples=300, deadline=None)
@given(worlds(), POLICIES)
def test_applying_every_patch_converges_with_no_further_writes(states: dict[str, Any], policy: SyncPolicy) -> None:
    before = read(states)
    first = merge(before, policy)
    apply(states, first, T0 + timedelta(days=1))
    after = {system: restamp(record, before[system]) for system, record in read(states).items()}
    second = merge(after, policy)
    assert second.converged, second.patches
    for system, patch in first.patches.items():
        if patch:
            assert is_echo(after[system], patch, policy), (system, patch)  # the write is recognised coming back
    values = ("name", "email", "phone", "billing_address", "shipping_address", "tax_id")
    assert {n: second.record.value(n) for n in values if n != "email"} == {
        n: first.record.value(n) for n in values if n != "email"}


@settings(max_examples=200, deadline=None)
@given(worlds(), POLICIES)
def test_merge_is_deterministic_and_independent_of_dict_order(states: dict[str, Any], policy: SyncPolicy) -> None:
    records = read(states)
    forward = merge(records, policy)
    backward = merge(dict(reversed(list(records.items()))), policy)
    assert forward == backward
    assert forward == merge(records, policy)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_a_record_merged_with_itself_gives_no_patch(states: dict[str, Any]) -> None:
    for system, record in read(states).items():
        alone = merge({system: record})
        assert alone.converged, alone.patches
        assert alone.conflicts == ()


def test_is_echo_is_false_when_a_written_field_was_cleared_since() -> None:
    assert not is_echo(rec("erp", name="Ann Lee", phone=""), {"customer": {"mobile_no": "+15125550100"}})
    assert is_echo(rec("erp", name="Ann Lee", phone="+15125550100"),
                   {"customer": {"mobile_no": "+15125550100"}, "contact": {"mobile_no": "+15125550100"}})
