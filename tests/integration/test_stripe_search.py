"""PaymentIntent search, stripe_emulator and connector together, through the official SDK over real HTTP:
``GET /v1/payment_intents/search`` answers Stripe's ``search_result`` shape, reads Stripe's query language
(metadata, status, numeric comparisons, AND/OR, negation, quoted values with backslash escapes) and
refuses any query it cannot read with a 400 instead of matching everything; ``StripeSdkGateway.
find_payment_intents_by_metadata`` quotes its values so that no value can change the query, keeps exact
matches only and returns the newest first. Also the stripe_emulator's ``drop_response`` fault (the request is
carried out but its answer never arrives) and its ``search_lag_s`` (search is eventually consistent).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from commerce_bridge import errors as E
from commerce_bridge.connectors.stripe.errors import translate_stripe_errors
from commerce_bridge.connectors.stripe.gateway import (
    StripeSdkGateway,
    build_stripe_client,
    metadata_search_query,
    quote_search_value,
)
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app

KEY = "sk_test_search"


@pytest.fixture
def client(stripe_base: str) -> stripe.StripeClient:
    return build_stripe_client(KEY, api_base=stripe_base, timeout_s=10)


@pytest.fixture
def gateway(client: stripe.StripeClient) -> StripeSdkGateway:
    return StripeSdkGateway(client)


def make_pi(client: stripe.StripeClient, stripe_base: str, metadata: dict[str, str], *, amount: int = 1000,
            pm: str | None = "pm_card_visa", later_s: int = 10) -> str:
    """A PaymentIntent with ``metadata``, made ``later_s`` seconds (account clock) after the previous one."""
    httpx.post(f"{stripe_base}/_sandbox/clock/advance", json={"seconds": later_s}).raise_for_status()
    params: dict[str, Any] = {"amount": amount, "currency": "usd", "metadata": metadata}
    if pm:
        params.update(payment_method=pm, confirm=True)
    return str(client.v1.payment_intents.create(params=params).id)  # type: ignore[arg-type]


def search(client: stripe.StripeClient, query: str, **params: Any) -> Any:
    return client.v1.payment_intents.search(params={"query": query, **params})  # type: ignore[typeddict-item]


def test_search_result_has_stripes_shape_and_finds_by_metadata_newest_first(
        client: stripe.StripeClient, stripe_base: str) -> None:
    older = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"})
    make_pi(client, stripe_base, {"clarity_order_key": "WEB-2"})
    newer = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"})
    raw = httpx.get(f"{stripe_base}/v1/payment_intents/search", params={"query": "metadata['clarity_order_key']:'WEB-1'"},
                    headers={"Authorization": f"Bearer {KEY}"})
    assert raw.status_code == 200
    body = raw.json()
    assert {k: body[k] for k in ("object", "has_more", "next_page", "url")} == {
        "object": "search_result", "has_more": False, "next_page": None, "url": "/v1/payment_intents/search"}
    assert [pi["id"] for pi in body["data"]] == [newer, older]
    assert [pi.id for pi in search(client, "metadata[\"clarity_order_key\"]:\"WEB-1\"").data] == [newer, older]
    assert search(client, "metadata['clarity_order_key']:'WEB-3'").data == []


def test_and_or_negation_status_and_amount_clauses(client: stripe.StripeClient, stripe_base: str) -> None:
    paid = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1", "bridge": "commerce-bridge"}, amount=3000)
    open_ = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"}, amount=1000, pm=None)
    other = make_pi(client, stripe_base, {"clarity_order_key": "WEB-2", "bridge": "commerce-bridge"}, amount=2000)

    def ids(query: str) -> list[str]:
        return [pi.id for pi in search(client, query).data]

    assert ids("metadata['clarity_order_key']:'WEB-1' AND metadata['bridge']:'commerce-bridge'") == [paid]
    assert ids("metadata['clarity_order_key']:'WEB-1' and status:'requires_payment_method'") == [open_]
    assert ids("metadata['clarity_order_key']:'WEB-1' status:'succeeded'") == [paid]  # a space means AND
    assert ids("status:'requires_payment_method' OR metadata['clarity_order_key']:'WEB-2'") == [other, open_]
    assert ids("-status:'succeeded'") == [open_]
    assert ids("amount>=2000") == [other, paid]
    assert ids("amount<\"2000\" AND currency:'USD'") == [open_]  # token fields ignore case
    assert ids("metadata['bridge']:null") == [open_]
    assert ids("-metadata['bridge']:null AND amount:2000") == [other]


def test_quoted_values_keep_quotes_backslashes_and_the_word_and(client: stripe.StripeClient, stripe_base: str) -> None:
    odd = "O'Brien \\ AND co"
    pi = make_pi(client, stripe_base, {"clarity_order_key": odd})
    make_pi(client, stripe_base, {"clarity_order_key": "O"})
    assert [p.id for p in search(client, metadata_search_query({"clarity_order_key": odd})).data] == [pi]
    assert quote_search_value(odd) == "'O\\'Brien \\\\ AND co'"


@pytest.mark.parametrize("query", [
    "bogus query",                                        # no operator
    "status:succeeded",                                   # an unquoted string value
    "metadata['clarity_order_key']:'WEB-1",               # the quote is not closed
    "metadata:'WEB-1'",                                   # metadata without a key
    "description:'x'",                                    # not a search field of PaymentIntents
    "status~'succ'",                                      # substring match on a token field
    "amount>'lots'",                                      # a numeric field with a word
    "status:'succeeded' AND amount>1 OR currency:'usd'",  # AND and OR together
    "status:'succeeded' AND",                             # a dangling AND
    "status:'succeeded'garbage",                          # text after a value
])
def test_a_query_the_emulator_cannot_read_is_a_400_never_a_match_of_everything(
        client: stripe.StripeClient, stripe_base: str, query: str) -> None:
    make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        search(client, query)
    err = info.value
    assert err.http_status == 400
    assert err.error is not None and (err.error.type, err.error.param) == ("invalid_request_error", "query")
    assert "Invalid search query" in str(err)
    with pytest.raises(E.UpstreamRejected) as ours, translate_stripe_errors():  # the connector's translation
        search(client, query)
    assert ours.value.details["http_status"] == 400


def test_limit_and_pages(client: stripe.StripeClient, stripe_base: str) -> None:
    made = [make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"}) for _ in range(12)]
    newest_first = made[::-1]
    default = search(client, "metadata['clarity_order_key']:'WEB-1'")
    assert [p.id for p in default.data] == newest_first[:10] and default.has_more is True
    first = search(client, "metadata['clarity_order_key']:'WEB-1'", limit=5)
    second = search(client, "metadata['clarity_order_key']:'WEB-1'", limit=5, page=first.next_page)
    third = search(client, "metadata['clarity_order_key']:'WEB-1'", limit=5, page=second.next_page)
    assert [p.id for p in [*first.data, *second.data, *third.data]] == newest_first
    assert (third.has_more, third.next_page) == (False, None)
    for bad in ({"limit": 0}, {"limit": 101}, {"page": "not-a-cursor"}):
        with pytest.raises(stripe.InvalidRequestError):
            search(client, "status:'succeeded'", **bad)


def test_gateway_finds_exact_matches_newest_first_and_quotes_what_it_is_given(
        gateway: StripeSdkGateway, client: stripe.StripeClient, stripe_base: str) -> None:
    older = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1", "bridge": "commerce-bridge"})
    make_pi(client, stripe_base, {"clarity_order_key": "WEB-1"})  # not the bridge's
    newer = make_pi(client, stripe_base, {"clarity_order_key": "WEB-1", "bridge": "commerce-bridge"})
    make_pi(client, stripe_base, {"clarity_order_key": "web-1", "bridge": "commerce-bridge"})  # Stripe ignores case
    mine = {"clarity_order_key": "WEB-1", "bridge": "commerce-bridge"}
    assert [pi["id"] for pi in gateway.find_payment_intents_by_metadata(mine)] == [newer, older]
    assert len(search(client, metadata_search_query(mine)).data) == 3  # what Stripe itself answers
    assert gateway.find_payment_intents_by_metadata({"clarity_order_key": "WEB-9"}) == []
    # a value that tries to widen the query is only a (strange) value
    sneaky = {"clarity_order_key": "x' OR metadata['bridge']:'commerce-bridge"}
    assert gateway.find_payment_intents_by_metadata(sneaky) == []
    with pytest.raises(ValueError):
        gateway.find_payment_intents_by_metadata({})


def test_gateway_search_errors_are_translated_like_every_other_call(gateway: StripeSdkGateway, stripe_base: str) -> None:
    httpx.post(f"{stripe_base}/_sandbox/faults", json={"kind": "rate_limit", "path": "/v1/payment_intents/search"})
    with pytest.raises(E.RateLimited):
        gateway.find_payment_intents_by_metadata({"clarity_order_key": "WEB-1"})
    httpx.post(f"{stripe_base}/_sandbox/faults", json={"kind": "server_error", "path": "/v1/payment_intents/search"})
    with pytest.raises(E.UpstreamUnavailable):
        gateway.find_payment_intents_by_metadata({"clarity_order_key": "WEB-1"})
    assert gateway.find_payment_intents_by_metadata({"clarity_order_key": "WEB-1"}) == []


def test_the_gateway_waits_for_the_shared_rate_limit_before_a_search(client: stripe.StripeClient) -> None:
    calls: list[str] = []
    gateway = StripeSdkGateway(client, before_request=lambda: calls.append("stripe"))
    gateway.find_payment_intents_by_metadata({"clarity_order_key": "WEB-1"})
    assert calls == ["stripe"]


def test_a_dropped_response_is_carried_out_and_replayed_to_the_same_key(
        gateway: StripeSdkGateway, client: stripe.StripeClient, stripe_base: str) -> None:
    httpx.post(f"{stripe_base}/_sandbox/faults", json={"kind": "drop_response", "count": 2, "method": "POST",
                                                "path": "/v1/payment_intents"}).raise_for_status()
    params = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
              "metadata": {"clarity_order_key": "WEB-1"}}
    for _ in range(2):  # the answer is lost, also when the same request is sent again
        with pytest.raises(E.UpstreamUnavailable):
            gateway.create_payment_intent(params, idempotency_key="lost:payment")
    [made] = client.v1.payment_intents.list().data  # carried out once
    assert made.status == "succeeded"
    assert gateway.create_payment_intent(params, idempotency_key="lost:payment")["id"] == made.id
    assert len(client.v1.payment_intents.list().data) == 1


def test_with_search_lag_a_payment_intent_is_found_only_that_long_after_it_was_made() -> None:
    with PeerServer(build_app(search_lag_s=60)) as server:  # Stripe: searchable "in under 1 minute"
        client = build_stripe_client(KEY, api_base=server.url, timeout_s=10)
        pi = make_pi(client, server.url, {"clarity_order_key": "WEB-1"}, later_s=0)
        query = "metadata['clarity_order_key']:'WEB-1'"
        assert search(client, query).data == []
        assert client.v1.payment_intents.retrieve(pi).id == pi  # reads are consistent at once
        # 58, not 59: the account clock counts whole seconds of real time too, and one may tick between
        # the create and this search (a flaky boundary on a loaded machine)
        httpx.post(f"{server.url}/_sandbox/clock/advance", json={"seconds": 58}).raise_for_status()
        assert search(client, query).data == []
        httpx.post(f"{server.url}/_sandbox/clock/advance", json={"seconds": 2}).raise_for_status()
        assert [p.id for p in search(client, query).data] == [pi]
