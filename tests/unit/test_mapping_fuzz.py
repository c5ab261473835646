"""Property tests: every mapper that reads outside data fails only with MappingError or ValidationError.

Payloads are shaped like the real ones (Clarity orders, Stripe PaymentIntents and Charges, ERPNext
documents, metadata, status maps): each field is mostly plausible, so the mapper gets deep, and
sometimes anything a JSON parser can hand over (None, bools, big ints, floats including NaN and
infinities, exact decimals, text, lists, objects); objects are sometimes not objects at all. Any
other exception (AttributeError, TypeError, ValueError, ...) is a bug: the run would go to the DLQ
as "a bug in commerce-bridge" instead of saying what is wrong with the data. The ``@example``s are
the payloads these tests found (they always run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commerce_bridge.domain.currency import SUPPORTED_CURRENCIES
from commerce_bridge.domain.money import Money
from commerce_bridge.errors import MappingError, ValidationError
from commerce_bridge.mapping import address, clarity, customer, erp, metadata, money, shipment, status, stripe

EXPECTED = (MappingError, ValidationError)

CURRENCIES = ["USD", "usd", "JPY", "KWD", "ISK", "UGX", "EUR", "XAU", "XXX", "", "US", "ÜSD", " usd "]

# what a JSON parser hands over (Clarity is parsed with exact decimals, Stripe and ERPNext without)
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.decimals(allow_nan=False, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from(["", " ", "19.99", "19.9900", "1e400", "-0", "pi_1", "pm_1", "NaN"])
)
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value (so the mapper gets deep), sometimes anything at all."""
    return st.one_of(valid, valid, valid, valid, JUNK)


def shape(required: dict[str, st.SearchStrategy[Any]] | None = None,
          **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object with the ``required`` keys, any subset of ``fields`` (each plausible or junk) and maybe
    a stray key; now and then not an object at all."""
    obj = st.fixed_dictionaries({k: field(v) for k, v in (required or {}).items()},
                                optional={k: field(v) for k, v in fields.items()})
    stray = st.dictionaries(st.text(max_size=4), JUNK, max_size=1)
    return st.one_of(st.builds(lambda o, x: {**x, **o}, obj, stray), obj, obj, obj, JUNK)


currency_st = st.sampled_from(CURRENCIES) | st.text(max_size=4)
valid_currency = st.sampled_from(SUPPORTED_CURRENCIES)
amount_st = (st.decimals(min_value=-(10**7), max_value=10**7, places=4) | st.integers(-(10**6), 10**8)
             | st.sampled_from(["19.99", "0", "-5", "1e3", "0.001", "12.3456"]))
qty_st = st.integers(-2, 20) | st.decimals(min_value=-2, max_value=20, places=1) | st.sampled_from(["3", "1.5"])
text_st = st.text(max_size=10) | st.sampled_from(["SKU-1", "pi_123", "pm_123", "jane@example.com", "US", "DE"])

clarity_address = shape(Street1=text_st, Street2=text_st, Street3=text_st, City=text_st, PostalCode=text_st,
                        RegionCode=text_st, RegionKey=text_st, RegionName=text_st, CountryCode=text_st,
                        CountryKey=text_st, Company=text_st)
clarity_contact = shape(Email1=text_st, FullName=text_st, FirstName=text_st, LastName=text_st, Phone1=text_st,
                        Phone2=text_st, Address=clarity_address)
clarity_item = shape(Sku=text_st, ProductKey=text_st, Name=text_st, Quantity=qty_st, TotalQuantity=qty_st,
                     UnitSoldPrice=amount_st, UnitCorePrice=amount_st, ExtendedPrice=amount_st,
                     QuantityBackOrdered=qty_st, QuantityPreSold=qty_st)
clarity_order = shape(
    {"ID": st.integers(1, 10**6) | text_st, "CurrencyKey": valid_currency},
    CustomKey=text_st,
    Currency=shape(CustomKey=valid_currency), StatusKey=text_st, StatusName=text_st, Status=shape(CustomKey=text_st),
    Totals=shape(SubTotal=amount_st, Total=amount_st, Tax=amount_st, Shipping=amount_st, Handling=amount_st,
                 Fees=amount_st, Discounts=amount_st),
    SalesItems=st.lists(clarity_item, max_size=4), BalanceDue=amount_st,
    BillingContact=clarity_contact, ShippingContact=clarity_contact, User=shape(Email=text_st),
    UserID=st.integers(1, 99) | text_st, AccountID=st.integers(1, 99) | text_st, UserContactEmail=text_st,
    UserContactFirstName=text_st, UserContactLastName=text_st, PaymentTransactionID=text_st,
    SerializableAttributes=shape(StripePaymentMethodID=shape(Value=text_st)),
    SalesOrderPayments=st.lists(shape(Slave=shape(Token=text_st, TransactionNumber=text_st,
                                                  ExternalPaymentID=text_st)), max_size=3),
)

stripe_amount = st.integers(-10, 10**9) | st.sampled_from([550, 5125, 100, 0])
stripe_charge = shape(id=text_st, object=st.just("charge"), currency=valid_currency | currency_st,
                      amount=stripe_amount, amount_captured=stripe_amount, captured=st.booleans(),
                      status=text_st, payment_intent=text_st | shape(id=text_st), customer=text_st,
                      failure_code=text_st, outcome=shape(risk_level=text_st), metadata=st.dictionaries(text_st, JUNK))
stripe_intent = shape({"object": st.sampled_from(["payment_intent", "charge", "refund"]),
                       "currency": valid_currency | currency_st},
                      id=text_st, amount=stripe_amount, amount_received=stripe_amount,
                      amount_captured=stripe_amount, captured=st.booleans(), status=text_st, customer=text_st,
                      payment_method=text_st | shape(id=text_st), latest_charge=text_st | stripe_charge,
                      last_payment_error=shape(code=text_st, decline_code=text_st), failure_code=text_st,
                      outcome=shape(risk_level=text_st), metadata=st.dictionaries(text_st, JUNK, max_size=3))
stripe_address = shape(line1=text_st, line2=text_st, city=text_st, state=text_st, postal_code=text_st,
                       country=text_st)

erp_doc = shape({"currency": valid_currency | currency_st},
                items=st.lists(shape(rate=amount_st, qty=qty_st, item_code=text_st), max_size=3),
                taxes=st.lists(shape(tax_amount=amount_st), max_size=2), discount_amount=amount_st,
                address_line1=text_st, address_line2=text_st, city=text_st, state=text_st, pincode=text_st,
                country=text_st | st.sampled_from(["United States", "Germany", "japan"]), address_title=text_st)

status_names = st.sampled_from(["succeeded", "canceled", "requires_payment_method", "failed", "Paid", "On Hold"])
status_map = shape(
    stripe_to_clarity=st.dictionaries(st.sampled_from(["payment_intent", "charge", "x"]),
                                      field(st.dictionaries(status_names, status_names, max_size=3)), max_size=2),
    stripe_events_to_clarity=st.dictionaries(st.sampled_from(["payment_intent.succeeded", "nodot"]), status_names),
    clarity_to_stripe=st.dictionaries(st.sampled_from(["payment_intent", "charge"]),
                                      field(st.dictionaries(status_names, status_names, max_size=3)), max_size=2),
    clarity_payment_actions=st.dictionaries(status_names, st.sampled_from(["capture", "cancel", "refund", "x"])),
)


def only_expected_errors(call: Callable[[], Any]) -> None:
    """Run ``call``; a MappingError or ValidationError is a fine answer, anything else fails the test."""
    with contextlib.suppress(*EXPECTED):
        call()


PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- Clarity -------------------------------------------------------------------------------------
@PROPERTIES
@given(payload=clarity_order, default=st.none() | currency_st)
@example(payload={"ID": 1, "CurrencyKey": "USD", "SalesOrderPayments": 5}, default=None)  # was a TypeError
@example(payload={"ID": 1, "CurrencyKey": "USD", "SalesOrderPayments": True}, default=None)
def test_a_random_clarity_order_maps_or_raises_a_mapping_error(payload: Any, default: str | None) -> None:
    only_expected_errors(lambda: clarity.order_from_clarity(payload, default_currency=default))


@PROPERTIES
@given(payload=clarity_order, contact=st.none() | clarity_contact)
def test_a_random_clarity_customer_and_contact_map_or_raise_a_mapping_error(payload: Any, contact: Any) -> None:
    if isinstance(payload, dict):
        only_expected_errors(lambda: clarity.customer_from_clarity(payload))
    if contact is None or isinstance(contact, dict):
        only_expected_errors(lambda: clarity.address_from_clarity(contact))
        only_expected_errors(lambda: clarity.contact_name(contact))


@PROPERTIES
@given(value=field(amount_st), currency=currency_st)
def test_a_random_amount_parses_or_raises_a_mapping_error(value: Any, currency: str) -> None:
    only_expected_errors(lambda: clarity.money_from_clarity(value, currency))
    only_expected_errors(lambda: clarity.decimal_from_clarity(value))
    only_expected_errors(lambda: erp.money_from_erp(value, currency))


@PROPERTIES
@given(payload=clarity_order, capturable=st.integers(min_value=-(10**6), max_value=10**12),
       currency=valid_currency)
@example(payload={"ID": 1, "CurrencyKey": "USD", "SalesItems": 3}, capturable=100, currency="USD")  # TypeError
def test_a_random_shipment_maps_or_raises_a_mapping_error(payload: Any, capturable: int, currency: str) -> None:
    if isinstance(payload, dict):
        only_expected_errors(lambda: shipment.line_shipments(payload, currency))
        only_expected_errors(lambda: shipment.capture_amount_for_shipment(payload, Money(capturable, currency)))


# ---- Stripe ----------------------------------------------------------------------------------------
@PROPERTIES
@given(obj=stripe_intent, charge=st.none() | stripe_charge)
def test_a_random_stripe_payment_maps_or_raises_a_mapping_error(obj: Any, charge: Any) -> None:
    if isinstance(obj, dict) and (charge is None or isinstance(charge, dict)):
        only_expected_errors(lambda: stripe.payment_summary_from_stripe(obj, charge))


@PROPERTIES
@given(amount=field(stripe_amount), currency=currency_st)
def test_a_random_stripe_amount_converts_or_raises_a_mapping_error(amount: Any, currency: str) -> None:
    only_expected_errors(lambda: money.from_stripe_amount(amount, currency))


@PROPERTIES
@given(data=st.none() | stripe_address, name=text_st)
def test_a_random_stripe_address_maps_or_raises_a_mapping_error(data: Any, name: str) -> None:
    if data is None or isinstance(data, dict):
        only_expected_errors(lambda: address.from_stripe_address(data, name=name))


meta_keys = st.sampled_from([metadata.ORDER_ID, metadata.ORDER_KEY, metadata.BRIDGE]) | st.text(max_size=45)
meta_values = SCALARS | st.text(min_size=495, max_size=505) | st.sampled_from([metadata.BRIDGE_MARK])


@PROPERTIES
@given(meta=st.none() | st.dictionaries(meta_keys | st.integers(), meta_values, max_size=52),
       new=st.dictionaries(meta_keys, meta_values, max_size=4))
def test_random_metadata_validates_or_raises_a_mapping_error(meta: dict[Any, Any] | None, new: dict[Any, Any]) -> None:
    only_expected_errors(lambda: metadata.order_ref_from_metadata(meta))
    only_expected_errors(lambda: metadata.validate_metadata(meta or {}))
    only_expected_errors(lambda: metadata.merge_metadata(meta or {}, new))


# ---- ERPNext ---------------------------------------------------------------------------------------
@PROPERTIES
@given(doc=erp_doc)
@example(doc={"currency": "USD", "items": [None]})  # these were AttributeErrors and TypeErrors
@example(doc={"currency": "USD", "items": [{"rate": "1", "qty": 1}], "taxes": "10"})
@example(doc={"currency": "USD", "items": 7})
def test_a_random_erp_document_maps_or_raises_a_mapping_error(doc: Any) -> None:
    if isinstance(doc, dict):
        only_expected_errors(lambda: erp.sales_order_total(doc))
        only_expected_errors(lambda: address.from_erp_address(doc))


@PROPERTIES
@given(name=text_st | st.sampled_from(["United States", "germany", " Japan "]))
def test_a_random_erp_country_name_maps_or_raises_a_mapping_error(name: str) -> None:
    only_expected_errors(lambda: address.country_code_from_erp(name))


# ---- customers -------------------------------------------------------------------------------------
@PROPERTIES
@given(email=field(text_st | st.sampled_from(["a@b.co", "Jane.Doe+x@Gmail.com", "@", "a@", "a@b"])),
       phone=field(st.text(alphabet="+0123456789 -()", max_size=18)),
       region=st.none() | st.text(max_size=3) | st.sampled_from(["US", "de", "GB", "ZZ"]))
def test_random_contact_data_normalises_or_raises_a_validation_error(email: Any, phone: Any,
                                                                     region: str | None) -> None:
    only_expected_errors(lambda: customer.normalize_email(email))
    only_expected_errors(lambda: customer.email_dedupe_key(email))
    number, warning = customer.normalize_phone(phone, region)  # a phone never raises: it is left out
    assert number == "" or warning is None


# ---- status map (settings JSON) --------------------------------------------------------------------
@PROPERTIES
@given(data=st.none() | status_map)
def test_a_random_status_map_loads_or_raises_a_validation_error(data: Any) -> None:
    only_expected_errors(lambda: status.StatusMap.from_config(data))


@PROPERTIES
@given(text=st.text(max_size=40) | st.sampled_from(["{", "[]", "null", '{"charge": 1}', "NaN", '"x"']))
def test_random_status_map_text_loads_or_raises_a_validation_error(text: str) -> None:
    only_expected_errors(lambda: status.StatusMap.from_json(text))


def test_the_strategies_reach_successful_mappings_too() -> None:
    """The properties above are not vacuous: valid inputs among them map."""
    assert clarity.order_from_clarity({"ID": 1, "CurrencyKey": "USD"}).total == Money(0, "USD")
    assert money.money_from_decimal(Decimal("19.9900"), "usd") == Money(1999, "USD")
    assert status.StatusMap.from_config(None) == status.StatusMap.default()
