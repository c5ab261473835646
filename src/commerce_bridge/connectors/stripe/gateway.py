"""``StripeSdkGateway``: the StripeGateway port on the official SDK's ``StripeClient`` (sync calls)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import stripe

from commerce_bridge.connectors.stripe.errors import translate_stripe_errors
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.mapping.stripe import stripe_idempotency_key

__all__ = ["DEFAULT_API_VERSION", "EVENT_TYPES_PER_LIST", "StripeSdkGateway", "build_stripe_client",
           "event_type_queries", "metadata_search_query", "quote_search_value"]

DEFAULT_API_VERSION: str = stripe.api_version
"""The API version the installed SDK was generated for (``2026-10-28.endive`` for stripe-python 16.1)."""

JsonDict = dict[str, Any]


def build_stripe_client(
    api_key: str, *, api_base: str | None = None, api_version: str = DEFAULT_API_VERSION,
    timeout_s: float = 30.0, http_client: stripe.HTTPClient | None = None,
) -> stripe.StripeClient:
    """The one ``StripeClient`` of the process (call it in bootstrap; never set ``stripe.api_key``).

    Parameters
    ----------
    api_key:
        ``CB_STRIPE_API_KEY`` (``sk_...`` or ``rk_...``).
    api_base:
        ``CB_STRIPE_API_BASE``; None for Stripe itself, e.g. ``http://127.0.0.1:12111`` for the emulator.
    api_version:
        ``CB_STRIPE_API_VERSION``, sent as ``Stripe-Version`` on every request.
    timeout_s:
        Per-request timeout of the default HTTP client.
    http_client:
        Another ``stripe.HTTPClient`` (tests); ``timeout_s`` is then that client's business.

    Returns
    -------
    stripe.StripeClient
        With the SDK's own retries off (``max_network_retries=0``): the engine retries whole steps.

    Raises
    ------
    ConfigurationError
        No API key.
    """
    if not api_key:
        raise ConfigurationError("CB_STRIPE_API_KEY is empty")
    client = http_client or stripe.RequestsClient(timeout=timeout_s)
    return stripe.StripeClient(
        api_key,
        stripe_version=api_version,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=0,
        http_client=client,
    )


def quote_search_value(value: str) -> str:
    """``value`` as a string literal of Stripe's search query language: in single quotes, with ``\\`` and
    ``'`` escaped by a backslash (docs.stripe.com/search, "Quotes"), so no value can end the literal early
    or add a clause of its own."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def metadata_search_query(metadata: Mapping[str, str]) -> str:
    """The search query matching every ``metadata[key]:value`` pair at once (``AND``).

    Raises
    ------
    ValueError
        No pairs: a query that would match everything is never what a caller means.
    """
    if not metadata:
        raise ValueError("a metadata search needs at least one key")
    return " AND ".join(f"metadata[{quote_search_value(k)}]:{quote_search_value(v)}" for k, v in metadata.items())


EVENT_TYPES_PER_LIST = 20
"""``GET /v1/events`` takes at most this many ``types[]`` values per request."""


def event_type_queries(types: Sequence[str]) -> list[dict[str, Any]]:
    """The ``GET /v1/events`` filters that together list ``types``: ``[{}]`` (every type) for none or ``*``,
    else ``types[]`` groups of at most :data:`EVENT_TYPES_PER_LIST` exact names (sorted, no repeats) and one
    ``type`` per wildcard name (Stripe's ``type`` takes ``*``; ``types[]`` takes exact names only)."""
    wanted = sorted(set(types))
    if not wanted or "*" in wanted:
        return [{}]
    exact = [t for t in wanted if "*" not in t]
    queries: list[dict[str, Any]] = [{"types": exact[i:i + EVENT_TYPES_PER_LIST]}
                                     for i in range(0, len(exact), EVENT_TYPES_PER_LIST)]
    return queries + [{"type": t} for t in wanted if "*" in t]


def _plain(obj: Any) -> JsonDict:
    """A vendor object as a plain JSON-able dict."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


def _decimal_rates(txn: Any) -> JsonDict:
    """A balance transaction as a plain dict with ``exchange_rate`` as decimal text.

    The SDK parses JSON numbers into floats; ``repr`` gives back the shortest text that reads as the same
    float, which is the text Stripe sent for any rate of up to 15 significant digits (Stripe's have 6)."""
    plain = _plain(txn)
    rate = plain.get("exchange_rate")
    if isinstance(rate, float):
        plain["exchange_rate"] = format(Decimal(repr(rate)), "f")  # 6.37e-05 -> 0.0000637
    return plain


class StripeSdkGateway:
    """Implements ``services.gateways.StripeGateway`` with an injected ``stripe.StripeClient``.

    Every POST sends our idempotency key (``options={"idempotency_key": ...}``), so a retried step
    replays Stripe's first answer; SDK errors leave this class only as ``BridgeError`` (``from`` them).
    """

    def __init__(self, client: stripe.StripeClient, *, before_request: Callable[[], None] | None = None) -> None:
        self._v1 = client.v1
        self._before_request = before_request  # e.g. the shared per-destination rate limit, per HTTP request

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        if self._before_request is not None:
            self._before_request()
        with translate_stripe_errors():
            yield

    @staticmethod
    def _options(idempotency_key: str) -> stripe.RequestOptions:
        if not idempotency_key:
            raise ValueError("an idempotency key is required on every Stripe POST")
        return {"idempotency_key": stripe_idempotency_key(idempotency_key)}  # at most 255 characters

    def _create(self, service: Any, params: Mapping[str, Any], idempotency_key: str) -> JsonDict:
        """``POST /v1/<resource>`` on the SDK ``service`` (``self._v1.customers``…) with our idempotency key."""
        with self._call():
            created = service.create(params=dict(params), options=self._options(idempotency_key))
        return _plain(created)

    def _update(self, service: Any, object_id: str, params: Mapping[str, Any], idempotency_key: str) -> JsonDict:
        """``POST /v1/<resource>/<id>`` on the SDK ``service`` with our idempotency key."""
        with self._call():
            updated = service.update(object_id, params=dict(params), options=self._options(idempotency_key))
        return _plain(updated)

    def _list_page(self, service: Any, page_size: int, starting_after: str | None,
                   created_gte: int | None) -> tuple[list[JsonDict], bool]:
        """One page of ``GET /v1/<resource>`` on the SDK ``service``, newest first, after ``starting_after`` (and
        created at or after ``created_gte``); and whether more follow."""
        params: dict[str, Any] = {"limit": page_size}
        if starting_after:
            params["starting_after"] = starting_after
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        with self._call():
            page = service.list(params=params)
        return [_plain(o) for o in page.data], bool(page.has_more)

    # customers

    def find_customer_by_email(self, email: str) -> JsonDict | None:
        with self._call():
            page = self._v1.customers.list(params={"email": email, "limit": 1})
        return _plain(page.data[0]) if page.data else None

    def create_customer(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._create(self._v1.customers, params, idempotency_key)

    def update_customer(self, customer_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._update(self._v1.customers, customer_id, params, idempotency_key)

    # payment intents

    def create_payment_intent(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._create(self._v1.payment_intents, params, idempotency_key)

    def retrieve_payment_intent(self, payment_intent_id: str) -> JsonDict:
        with self._call():
            intent = self._v1.payment_intents.retrieve(payment_intent_id, params={"expand": ["latest_charge"]})
        return _plain(intent)

    def find_payment_intents_by_metadata(self, metadata: Mapping[str, str], *, limit: int = 100) -> list[JsonDict]:
        # Stripe matches metadata case-insensitively (a "token" field): keep exact matches only
        query = metadata_search_query(metadata)
        with self._call():
            page = self._v1.payment_intents.search(params={"query": query, "limit": limit})
        found = [_plain(pi) for pi in page.data]
        exact = [pi for pi in found if all((pi.get("metadata") or {}).get(k) == v for k, v in metadata.items())]
        return sorted(exact, key=lambda pi: int(pi.get("created") or 0), reverse=True)

    def list_payment_intents(self, *, page_size: int = 100, starting_after: str | None = None,
                             created_gte: int | None = None) -> tuple[list[JsonDict], bool]:
        """One page of PaymentIntents, newest first, after ``starting_after``; and whether more follow
        (``backfill orders --from stripe``)."""
        return self._list_page(self._v1.payment_intents, page_size, starting_after, created_gte)

    def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int | None, idempotency_key: str
    ) -> JsonDict:
        params: dict[str, Any] = {"expand": ["latest_charge"]}
        if amount_to_capture is not None:
            params["amount_to_capture"] = amount_to_capture
        with self._call():
            intent = self._v1.payment_intents.capture(payment_intent_id, params=params,  # type: ignore[arg-type]
                                                      options=self._options(idempotency_key))
        return _plain(intent)

    def cancel_payment_intent(
        self, payment_intent_id: str, *, cancellation_reason: str | None, idempotency_key: str
    ) -> JsonDict:
        params: dict[str, Any] = {}
        if cancellation_reason is not None:
            params["cancellation_reason"] = cancellation_reason
        with self._call():
            intent = self._v1.payment_intents.cancel(payment_intent_id, params=params,  # type: ignore[arg-type]
                                                     options=self._options(idempotency_key))
        return _plain(intent)

    # refunds and charges

    def create_refund(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._create(self._v1.refunds, params, idempotency_key)

    def retrieve_charge(self, charge_id: str) -> JsonDict:
        with self._call():
            charge = self._v1.charges.retrieve(charge_id)
        return _plain(charge)

    def retrieve_refund(self, refund_id: str) -> JsonDict:
        with self._call():
            refund = self._v1.refunds.retrieve(refund_id)
        return _plain(refund)

    def list_refunds(self, charge_id: str) -> list[JsonDict]:
        found: list[JsonDict] = []
        params: dict[str, Any] = {"charge": charge_id, "limit": 100}
        while True:
            with self._call():
                page = self._v1.refunds.list(params=params)  # type: ignore[arg-type]
            found.extend(_plain(r) for r in page.data)
            if not page.has_more or not page.data:
                return found
            params["starting_after"] = page.data[-1].id

    # disputes

    def retrieve_dispute(self, dispute_id: str) -> JsonDict:
        with self._call():
            dispute = self._v1.disputes.retrieve(dispute_id)
        return _plain(dispute)

    def update_dispute(self, dispute_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        return self._update(self._v1.disputes, dispute_id, params, idempotency_key)

    # payouts

    def retrieve_payout(self, payout_id: str) -> JsonDict:
        with self._call():
            payout = self._v1.payouts.retrieve(payout_id)
        return _plain(payout)

    def payout_transactions(self, payout_id: str, *, page_size: int = 100) -> Iterator[list[JsonDict]]:
        params: dict[str, Any] = {"payout": payout_id, "limit": page_size, "expand": ["data.source"]}
        yield from self._pages(self._v1.balance_transactions.list, params, _decimal_rates)

    def list_payouts(self, *, created_gte: int, status: str | None = "paid",
                     page_size: int = 100) -> Iterator[list[JsonDict]]:
        params: dict[str, Any] = {"created": {"gte": created_gte}, "limit": page_size}
        if status:
            params["status"] = status
        yield from self._pages(self._v1.payouts.list, params, _plain)

    # listings (the drift check)

    @staticmethod
    def _created(created_gte: int, created_lte: int | None, page_size: int) -> dict[str, Any]:
        created = {"gte": created_gte} if created_lte is None else {"gte": created_gte, "lte": created_lte}
        return {"created": created, "limit": page_size}

    def list_charges(self, *, created_gte: int, created_lte: int | None = None,
                     page_size: int = 100) -> Iterator[list[JsonDict]]:
        yield from self._pages(self._v1.charges.list, self._created(created_gte, created_lte, page_size), _plain)

    def list_all_refunds(self, *, created_gte: int, created_lte: int | None = None,
                         page_size: int = 100) -> Iterator[list[JsonDict]]:
        params = {**self._created(created_gte, created_lte, page_size), "expand": ["data.charge"]}
        yield from self._pages(self._v1.refunds.list, params, _plain)

    def list_disputes(self, *, created_gte: int, created_lte: int | None = None,
                      page_size: int = 100) -> Iterator[list[JsonDict]]:
        yield from self._pages(self._v1.disputes.list, self._created(created_gte, created_lte, page_size), _plain)

    def list_events(self, *, created_gte: int, created_lte: int | None = None, types: Sequence[str] = (),
                    page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Events created in ``[created_gte, created_lte]`` (``GET /v1/events``, every page, newest first).

        ``types``: exact names go as ``types[]`` in groups of :data:`EVENT_TYPES_PER_LIST` (Stripe's limit); a
        name with ``*`` (``charge.dispute.*``) as ``type``, one listing each; ``*`` or none: every type. An event
        may come in more than one listing when a wildcard overlaps an exact name: callers key by ``id``. Stripe
        keeps events for 30 days."""
        base = self._created(created_gte, created_lte, page_size)
        for query in event_type_queries(types):
            yield from self._pages(self._v1.events.list, {**base, **query}, _plain)

    def _pages(self, list_page: Callable[..., Any], params: dict[str, Any],
               plain: Callable[[Any], JsonDict]) -> Iterator[list[JsonDict]]:
        while True:
            with self._call():
                page = list_page(params=params)
            if page.data:
                yield [plain(o) for o in page.data]
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}

    # radar

    def retrieve_early_fraud_warning(self, warning_id: str) -> JsonDict:
        with self._call():
            warning = self._v1.radar.early_fraud_warnings.retrieve(warning_id)
        return _plain(warning)

    # customers: reads and listings of the customer sync (services.customer_sync)

    def retrieve_customer(self, customer_id: str) -> JsonDict:
        """The customer (``{"id", "deleted": true}`` for a deleted one)."""
        with self._call():
            customer = self._v1.customers.retrieve(customer_id)
        return _plain(customer)

    def search_customers(self, query: str, *, limit: int = 10) -> list[JsonDict]:
        """``GET /v1/customers/search`` (Stripe's search is eventually consistent: about a minute behind)."""
        with self._call():
            page = self._v1.customers.search(params={"query": query, "limit": limit})
        return [_plain(c) for c in page.data]

    def list_customers(self, *, page_size: int = 100, starting_after: str | None = None,
                       created_gte: int | None = None) -> tuple[list[JsonDict], bool]:
        """One page of customers, newest first, after ``starting_after``; and whether more follow."""
        return self._list_page(self._v1.customers, page_size, starting_after, created_gte)

    def customer_payment_method_ids(self, customer_id: str) -> list[str]:
        """The ids of the customer's payment methods (never their card data), up to 100."""
        with self._call():
            page = self._v1.payment_methods.list(params={"customer": customer_id, "limit": 100})
        return [str(pm.id) for pm in page.data]

    def customer_subscription_ids(self, customer_id: str) -> list[str]:
        """The ids of the customer's subscriptions that are not canceled, up to 100."""
        with self._call():
            page = self._v1.subscriptions.list(params={"customer": customer_id, "status": "all", "limit": 100})
        return [str(s.id) for s in page.data if s.status not in ("canceled", "incomplete_expired")]
