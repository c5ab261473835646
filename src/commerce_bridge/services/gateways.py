"""Ports to the three vendor systems of order to cash: Stripe, Clarity and the ERP (plus the poll cursor).

The workflows' step actions call these Protocols; ``connectors/stripe``, ``connectors/clarity`` and
``connectors/erp`` implement them. Values at this boundary are plain JSON-able dicts (the vendor's own
object) because the domain types for them do not exist yet; amounts arrive already converted by
``mapping/`` into the vendor's unit (Stripe: integer units as Stripe counts them; Clarity and ERPNext:
decimal strings in major units). Vendor JSON numbers with a fraction are returned as **strings** (never
floats) so that no amount is ever rounded on the way in.

Every method raises only ``commerce_bridge.errors.BridgeError`` subclasses: ``TransientError`` (the engine
retries the step with the same idempotency key) or ``PermanentError`` (the run goes to the DLQ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "ClarityGateway",
    "CursorStore",
    "ErpGateway",
    "PollResult",
    "StripeGateway",
]

JsonDict = dict[str, Any]


@runtime_checkable
class StripeGateway(Protocol):
    """Stripe's API as order to cash needs it.

    Every POST carries the caller's idempotency key (``"{run_id}:{step_id}"``), so retrying a step
    replays Stripe's first answer instead of charging twice.
    """

    def find_customer_by_email(self, email: str) -> JsonDict | None:
        """The newest customer with exactly this email.

        Parameters
        ----------
        email:
            The e-mail address as stored on the customer (Stripe compares it case-sensitively).

        Returns
        -------
        dict or None
            The customer object, or None when there is none.

        Raises
        ------
        TransientError, PermanentError
            As the error table in ``connectors/stripe/errors.py`` says.
        """
        ...

    def create_customer(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        """Create a customer.

        Parameters
        ----------
        params:
            Stripe's customer parameters (``email``, ``name``, ``phone``, ``address``, ``metadata``, ...).
        idempotency_key:
            ``"{run_id}:{step_id}"``.

        Returns
        -------
        dict
            The customer object.
        """
        ...

    def update_customer(self, customer_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        """Update customer ``customer_id`` with ``params``; returns the customer object."""
        ...

    def create_payment_intent(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        """Create (and, with ``confirm=True``, confirm) a PaymentIntent.

        Parameters
        ----------
        params:
            Stripe's parameters, already converted: ``amount`` (Stripe units), ``currency``,
            ``customer``, ``payment_method``, ``confirm``, ``capture_method``, ``metadata``,
            ``receipt_email``, ...
        idempotency_key:
            ``"{run_id}:{step_id}"``; the same key with the same params returns the same PaymentIntent.

        Returns
        -------
        dict
            The PaymentIntent object.

        Raises
        ------
        UpstreamRejected
            A decline (``details["decline_code"]``), bad parameters, or a reused key with other params.
        RateLimited, Conflict, UpstreamUnavailable
            Transient; the engine retries with the same key.
        """
        ...

    def retrieve_payment_intent(self, payment_intent_id: str) -> JsonDict:
        """The PaymentIntent with ``latest_charge`` expanded; NotFound if it does not exist."""
        ...

    def find_payment_intents_by_metadata(self, metadata: Mapping[str, str], *, limit: int = 100) -> list[JsonDict]:
        """The PaymentIntents whose metadata has every ``key: value`` of ``metadata`` exactly, newest first.

        One request to Stripe's search (``GET /v1/payment_intents/search``), which has its own limit of
        20 reads/s and is **eventually consistent**: a PaymentIntent is normally searchable within a
        minute of its creation, later during an outage. Never use it to read back a write just made;
        it finds objects whose creation the caller could not see (an answer lost to a timeout).

        Parameters
        ----------
        metadata:
            At least one pair; values are quoted for the search language (``'`` and ``\\`` escaped).
        limit:
            At most this many matches (1 to 100), as Stripe returns them.

        Returns
        -------
        list of dict
            The PaymentIntent objects (``latest_charge`` not expanded), newest ``created`` first.

        Raises
        ------
        TransientError, PermanentError
            As the error table in ``connectors/stripe/errors.py`` says.
        """
        ...

    def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int | None, idempotency_key: str
    ) -> JsonDict:
        """Capture an authorised PaymentIntent, fully (``None``) or partly (Stripe units)."""
        ...

    def cancel_payment_intent(
        self, payment_intent_id: str, *, cancellation_reason: str | None, idempotency_key: str
    ) -> JsonDict:
        """Cancel a PaymentIntent that is not captured yet; ``cancellation_reason`` as Stripe names it."""
        ...

    def create_refund(self, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        """Refund a charge or PaymentIntent (``charge``/``payment_intent``, optional ``amount``, ``reason``)."""
        ...

    def retrieve_charge(self, charge_id: str) -> JsonDict:
        """The charge object; NotFound if it does not exist."""
        ...

    def retrieve_refund(self, refund_id: str) -> JsonDict:
        """The Refund object, fresh; NotFound if it does not exist."""
        ...

    def list_refunds(self, charge_id: str) -> list[JsonDict]:
        """Every Refund of the charge (all pages), newest first."""
        ...

    def retrieve_dispute(self, dispute_id: str) -> JsonDict:
        """The Dispute object, fresh; NotFound if it does not exist."""
        ...

    def update_dispute(self, dispute_id: str, params: Mapping[str, Any], *, idempotency_key: str) -> JsonDict:
        """Update a dispute (``evidence``, ``submit``, ``metadata``); UpstreamRejected once it is closed or under
        review."""
        ...

    def retrieve_early_fraud_warning(self, warning_id: str) -> JsonDict:
        """The Radar early fraud warning (``issfr_...``), fresh; NotFound if it does not exist."""
        ...

    def retrieve_payout(self, payout_id: str) -> JsonDict:
        """The Payout object, fresh; NotFound if it does not exist."""
        ...

    def payout_transactions(self, payout_id: str, *, page_size: int = 100) -> Iterator[list[JsonDict]]:
        """The payout's balance transactions (``GET /v1/balance_transactions?payout=``), page by page, every
        page, each with its ``source`` expanded; ``exchange_rate`` as decimal text (never a float)."""
        ...

    def list_payouts(self, *, created_gte: int, status: str | None = "paid",
                     page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Payouts created at or after ``created_gte`` (epoch seconds), page by page, newest first."""
        ...

    def list_charges(self, *, created_gte: int, created_lte: int | None = None,
                     page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Charges created in ``[created_gte, created_lte]`` (epoch seconds), every status, page by page (every
        page), newest first (``GET /v1/charges?created[gte]=``)."""
        ...

    def list_all_refunds(self, *, created_gte: int, created_lte: int | None = None,
                         page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Refunds created in ``[created_gte, created_lte]``, every status, page by page, newest first, each with
        its ``charge`` expanded (``GET /v1/refunds?created[gte]=&expand[]=data.charge``)."""
        ...

    def list_disputes(self, *, created_gte: int, created_lte: int | None = None,
                      page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Disputes created in ``[created_gte, created_lte]``, page by page, newest first, with their balance
        transactions embedded (``GET /v1/disputes?created[gte]=``)."""
        ...

    def retrieve_customer(self, customer_id: str) -> JsonDict:
        """The customer (``{"id", "deleted": true}`` for a deleted one); NotFound when unknown."""
        ...

    def search_customers(self, query: str, *, limit: int = 10) -> list[JsonDict]:
        """Customers matching a Stripe search query (eventually consistent, about a minute behind)."""
        ...

    def list_customers(self, *, page_size: int = 100, starting_after: str | None = None,
                       created_gte: int | None = None) -> tuple[list[JsonDict], bool]:
        """One page of customers, newest first, after the customer ``starting_after``; and whether more follow."""
        ...


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of Clarity's changed orders found."""

    events: list[JsonDict]
    """Inbox-shaped events ``{"id", "type", "data"}``, each change once, oldest first."""
    pages: int
    """Search requests made."""
    rows: int
    """Rows read, duplicates from the overlap window included."""


class CursorStore(Protocol):
    """Durable storage of poll cursors (one opaque string per name)."""

    def get(self, name: str) -> str | None:
        """The value stored under ``name``, or None before the first ``set``."""
        ...

    def set(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` durably (replacing the old value)."""
        ...


ClarityAction = Literal[
    "Confirm", "Pending", "Hold", "Backorder", "CreatePickTicket", "DropShip", "Ship",
    "ReadyForPickup", "Complete", "Void", "CapturePayment",
]


@runtime_checkable
class ClarityGateway(Protocol):
    """Clarity eCommerce (CEF) as order to cash needs it."""

    def load_lookups(self) -> None:
        """Load the sales-order status, state and type tables (call once at start-up).

        Raises
        ------
        UpstreamAuthFailed, UpstreamUnavailable
            Clarity refused the login or is down.
        """
        ...

    def status_id(self, key: str) -> int:
        """The ID of the sales-order status with this key (``"On Hold"``); NotFound when unknown."""
        ...

    def poll_changed_orders(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Orders created or changed since the stored cursor, each change once.

        Parameters
        ----------
        deliver:
            Called once with the new inbox-shaped events (oldest first), e.g. to record them in the inbox.
            The cursor is saved only after it returns, so a crash or an exception re-delivers the same
            changes with the same event ids (at least once; the inbox de-duplicates).
        limit:
            Stop after this many new events (the next poll resumes there).

        Returns
        -------
        PollResult
            The events delivered and how many requests and rows the poll took.
        """
        ...

    def get_order(self, order_id: int) -> JsonDict:
        """The full order (items, payments, contacts); NotFound when Clarity answers 204."""
        ...

    def get_order_by_key(self, key: str) -> JsonDict:
        """The full order by its CustomKey (``WEB-100001``); NotFound when there is none."""
        ...

    def find_product_by_key(self, key: str) -> JsonDict | None:
        """The catalogue's product whose CustomKey (the SKU, the ERP's item code) is ``key``, full model, or None.

        An active product is preferred to an inactive one with the same key.
        """
        ...

    def product_ids_by_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """Product IDs by CustomKey; keys with no product are left out."""
        ...

    def inventory_section_id(self, key: str) -> int | None:
        """The ID of the active inventory location section with this CustomKey, or None."""
        ...

    def push_inventory(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write each row ``{ProductID, SectionID, Quantity, QuantityAllocated, QuantityPreSold}`` as stock."""
        ...

    def apply_action(self, order_id: int, action: ClarityAction) -> JsonDict:
        """Run a status action route (``PATCH /Ordering/SalesOrder/{action}/{ID}``).

        Returns
        -------
        dict
            ``{"order_id", "action", "changed", "messages"}``; ``changed`` is False when the order was
            already in that status (Clarity's ``INFO!`` answer).

        Raises
        ------
        UpstreamRejected
            ``ActionSucceeded: false`` (for example an unknown order).
        """
        ...

    def set_status(self, order_id: int, status_key: str) -> JsonDict:
        """Put the order in the status with this key (an action route when one exists, else Update)."""
        ...

    def add_payment(
        self, order_id: int, *, amount: str, transaction_number: str,
        payment: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Record a payment on the order (``PATCH /Ordering/SalesOrder/AddPayment``).

        Parameters
        ----------
        order_id:
            The order's ID.
        amount:
            Decimal string in major units (``"29.09"``), at most the balance due.
        transaction_number:
            The Stripe charge id; a second call with the same id is a no-op.
        payment:
            Extra PaymentModel fields (``PaymentMethodKey``, ``Last4CardDigits``, ...).

        Returns
        -------
        dict
            ``{"order_id", "transaction_number", "added"}``; ``added`` is False for a repeat.
        """
        ...

    def poll_changed_returns(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Sales returns created or changed since their own cursor, each change once (as ``poll_changed_orders``)."""
        ...

    def poll_changed_accounts(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Accounts changed since their own cursor, and the accounts of the contacts changed since theirs, as
        ``account.created`` / ``account.updated`` events (ids and dates only), each change once."""
        ...

    def poll_changed_products(self, deliver: Callable[[list[JsonDict]], Any], *, limit: int = 500) -> PollResult:
        """Products changed since their own cursor (``clarity.products``; the first poll starts from now), as
        ``product.created`` / ``product.updated`` events (ids and dates only), each change once."""
        ...

    def get_return(self, return_id: int) -> JsonDict:
        """The full sales return (items, payments, ``SalesOrderIDs``); NotFound when Clarity answers 204."""
        ...

    def set_return_status(self, return_id: int, status_key: str) -> JsonDict:
        """Put the return in the status with this key (its action route when one exists, else Update)."""
        ...

    def find_note_by_key(self, key: str) -> JsonDict | None:
        """The note with this CustomKey, or None."""
        ...

    def add_order_note(self, order_id: int, *, key: str, text: str) -> JsonDict:
        """Attach a note (CustomKey ``key``) to a sales order; returns ``{"note_id", "key"}``."""
        ...

    def find_return_by_key(self, key: str) -> JsonDict | None:
        """The sales return with this CustomKey (full model), or None."""
        ...

    def create_return(self, model: Mapping[str, Any]) -> JsonDict:
        """``POST /Providers/Returning/Actions/CreateSalesReturn``; returns the created return (full model)."""
        ...

    def return_action(self, return_id: int, action: str) -> JsonDict:
        """``PATCH /Providers/Returning/Actions/{action}/{ID}`` (Confirm, Void, Cancel, ...); ``{"changed"}``."""
        ...

    def manually_refund(self, return_id: int, *, amount: str, transaction_number: str) -> JsonDict:
        """``POST /Providers/Returning/Actions/ManuallyRefund``: record the refund's payment; the return is Completed."""
        ...

    def orders_changed(self, since: datetime, *, until: datetime | None = None,
                       page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Sales orders created or changed at or after ``since`` (``ModifiedSince``) and, with ``until``, last
        changed at or before it, by ID, page by page (every page), in the search's Lite projection (header
        fields: ``CustomKey``, ``StatusKey``, ``Totals``, ``PaymentTransactionID``, ``CurrencyKey``...; no items
        or payments)."""
        ...

    def returns_changed(self, since: datetime, *, until: datetime | None = None,
                        page_size: int = 100) -> Iterator[list[JsonDict]]:
        """Sales returns created or changed at or after ``since``, by ID, page by page (Lite projection:
        ``StatusKey``, ``RefundAmount``, ``RefundTransactionID``, ``SalesOrderIDs``...)."""
        ...

    def find_orders(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[JsonDict]:
        """The sales orders with these CustomKeys (``CustomKeys``) or IDs (``IDs``), Lite projection; missing
        ones are simply absent."""
        ...

    def find_returns(self, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> list[JsonDict]:
        """The sales returns with these CustomKeys or IDs, Lite projection; missing ones are simply absent."""
        ...

    def get_account(self, account_id: int) -> JsonDict:
        """The Account's full model (``AccountContacts`` rows with their ``Slave`` contact and ``Address``)."""
        ...

    def search_accounts(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]:
        """One page (1-based) of accounts in ID order, and the total CEF reports."""
        ...

    def search_products(self, *, page: int, size: int = 100,
                        modified_since: datetime | None = None) -> tuple[list[JsonDict], int | None]:
        """One page (1-based) of products in ID order, and the total CEF reports."""
        ...

    def find_account_by_key(self, key: str) -> JsonDict | None:
        """The account with this CustomKey (full model), or None."""
        ...

    def find_account_ids_by_email(self, email: str) -> list[int]:
        """The accounts with a contact whose ``Email1`` is ``email`` (case-insensitive)."""
        ...

    def create_account(self, model: Mapping[str, Any]) -> int:
        """Create an account (with nested ``AccountContacts``); its ID."""
        ...

    def update_account(self, account_id: int, fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (``Name``, the tax id field) on the account."""
        ...

    def update_contact(self, contact: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (``Email1``, ``Phone1``, ``Address``) on ``contact`` (its model as read)."""
        ...

    def add_account_contact(self, account_id: int, contact: Mapping[str, Any], *, billing: bool,
                            shipping: bool) -> int:
        """Add a contact to the account as its billing and/or primary shipping contact; the row's ID."""
        ...

    def mark_account_contact(self, row_id: int, *, billing: bool) -> None:
        """Make an AccountContact row the billing contact only (``billing``), or neither."""
        ...


@runtime_checkable
class ErpGateway(Protocol):
    """ERPNext's REST resource API, idempotent by our external keys."""

    def get_doc(self, doctype: str, name: str) -> JsonDict:
        """One document with its child tables; NotFound when it does not exist."""
        ...

    def list_docs(
        self, doctype: str, *, filters: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
        fields: Sequence[str] = ("name",), limit: int = 20, order_by: str | None = None, start: int = 0,
    ) -> list[JsonDict]:
        """Documents matching frappe ``filters`` (``[[field, op, value], ...]``), from the ``start``-th."""
        ...

    def find_by(self, doctype: str, field: str, value: Any) -> JsonDict | None:
        """The full document whose ``field`` equals ``value`` (the oldest if several), or None."""
        ...

    def ensure_customer(self, doc: Mapping[str, Any]) -> JsonDict:
        """The customer with this ``email_id`` (or ``customer_name`` without one), created if missing."""
        ...

    def ensure_item(self, doc: Mapping[str, Any]) -> JsonDict:
        """The item with this ``item_code``, created if missing."""
        ...

    def ensure_sales_order(self, doc: Mapping[str, Any], *, submit: bool = True) -> JsonDict:
        """The Sales Order whose ``po_no`` (the Clarity order key) matches, created (and submitted) if missing.

        Parameters
        ----------
        doc:
            The Sales Order as ERPNext takes it (``customer``, ``po_no``, ``items``, ``taxes``, ...), amounts as
            decimal strings; ``po_no`` is required (it is the idempotency key).
        submit:
            Submit it (``docstatus`` 1); a draft found from an earlier, interrupted attempt is submitted too.

        Returns
        -------
        dict
            The document with its child tables, whether it was found or created.

        Raises
        ------
        UpstreamRejected
            ERPNext's validation failed (the ``_server_messages`` text), or ``po_no`` is missing.
        UpstreamUnavailable, RateLimited, Conflict
            Transient; retrying finds the document if the first attempt created it.
        """
        ...

    def ensure_payment_entry(self, doc: Mapping[str, Any], *, submit: bool = True) -> JsonDict:
        """The Payment Entry whose ``reference_no`` (the Stripe charge id) matches, created if missing."""
        ...

    def submit(self, doctype: str, name: str) -> JsonDict:
        """Submit a draft (``docstatus`` 0 -> 1); a submitted document is returned as it is."""
        ...

    def ensure_doc(self, doctype: str, doc: Mapping[str, Any], key_field: str, *, submit: bool = True) -> JsonDict:
        """The document of ``doctype`` whose ``key_field`` equals ``doc[key_field]`` (not cancelled), else created
        (and submitted), under the key lock of that key; as ``ensure_sales_order`` for any DocType and key."""
        ...

    def cancel(self, doctype: str, name: str) -> JsonDict:
        """Cancel a submitted document (``docstatus`` 1 -> 2); a cancelled one is returned as it is."""
        ...

    def create_doc(self, doctype: str, doc: Mapping[str, Any]) -> JsonDict:
        """Insert a document (no existence check)."""
        ...

    def update_doc(self, doctype: str, name: str, fields: Mapping[str, Any]) -> JsonDict:
        """Write ``fields`` on the document (child tables are replaced whole)."""
        ...

    def pages(self, doctype: str, *, filters: Sequence[Sequence[Any]] | None = None,
              fields: Sequence[str] = ("name",), order_by: str = "creation asc",
              page_size: int = 200) -> Iterator[list[JsonDict]]:
        """The whole listing, page by page, in ``order_by`` order."""
        ...
