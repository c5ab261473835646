"""The demo's traffic: storefront checkouts of every kind, the shopper's and the warehouse's actions, money
going back once orders are paid (``money_back.py``), and a check of what each sandbox peer ended up with.

It only talks HTTP to the sandbox peers (never to the bridge), like the outside world would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from commerce_bridge.sandbox import money_back
from commerce_bridge.sandbox.money_back import LOST, REFUND, RETURN, WON, MoneyBack, StoreStatuses

CLARITY_API = "/DesktopModules/ClarityEcommerce/API-Admin"


@dataclass(frozen=True)
class Scenario:
    """One kind of order and the end state that proves it was handled."""

    name: str
    currency: str
    lines: tuple[tuple[str, int, str], ...]  # sku, quantity, unit price (decimal string)
    payment_method: str = "pm_card_visa"
    mode: str = "integration"  # or "stripe": the storefront charges the card itself
    capture: str = "automatic"
    expect_paid: bool = True
    expect_hold: bool = False
    expect_email: str = ""  # subject fragment of the e-mail the customer must get
    then: str = ""  # once paid: money goes back (money_back.RETURN, REFUND, WON or LOST)
    returned: tuple[tuple[str, int], ...] = ()  # RETURN: the lines returned (sku, quantity)
    refund_minor: int = 0  # REFUND: the Dashboard refund, in minor units
    dispute_reason: str = "fraudulent"  # WON, LOST: the bank's reason


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("paid (USD)", "USD", (("SKU-TEE", 2, "12.50"), ("SKU-MUG", 1, "8.00"))),
    Scenario("paid (JPY)", "JPY", (("SKU-TEE", 1, "1500"),)),
    Scenario("paid (KWD)", "KWD", (("SKU-MUG", 3, "4.250"),)),
    Scenario("paid (EUR)", "EUR", (("SKU-CAP", 2, "19.99"),)),
    Scenario("declined", "USD", (("SKU-TEE", 1, "30.00"),), payment_method="pm_card_chargeDeclined",
             expect_paid=False, expect_hold=True, expect_email="declined"),
    Scenario("3-D Secure", "EUR", (("SKU-CAP", 1, "45.00"),), payment_method="pm_card_threeDSecure2Required",
             expect_email="confirm your payment"),
    Scenario("manual capture", "USD", (("SKU-MUG", 4, "9.75"),), capture="manual"),
    Scenario("storefront-charged", "USD", (("SKU-TEE", 1, "22.00"),), mode="stripe"),
)
MONEY_BACK: tuple[Scenario, ...] = (
    Scenario("return (Clarity)", "USD", (("SKU-TEE", 2, "12.50"), ("SKU-MUG", 1, "8.00")), then=RETURN,
             returned=(("SKU-TEE", 1),)),
    Scenario("refund (Dashboard)", "KWD", (("SKU-MUG", 3, "4.250"),), then=REFUND, refund_minor=4250),
    Scenario("dispute won", "EUR", (("SKU-CAP", 2, "19.99"),), then=WON, dispute_reason="product_not_received"),
    Scenario("dispute lost", "USD", (("SKU-TEE", 1, "30.00"),), then=LOST),
)
"""Paid orders whose money then goes back: a partial return refunded in Clarity, a partial refund made in the
Stripe Dashboard, a dispute won and one lost."""


@dataclass
class Placed:
    """One order the traffic generator placed, and what it saw happen to it."""

    n: int
    scenario: Scenario
    email: str
    order_id: int | None = None
    key: str = ""
    total: str = ""
    error: str = ""
    intent_id: str = ""
    intent_status: str = ""
    clarity_status: str = ""
    balance_due: str = ""
    erp_order: str = ""
    erp_payment: str = ""
    emails: list[str] = field(default_factory=list)
    acted: bool = False  # 3-D Secure completed / order shipped
    back: MoneyBack | None = None  # a scenario whose money goes back once paid: what was done, what systems hold

    @property
    def done(self) -> bool:
        return not self.problems()

    def problems(self, money: money_back.Money = money_back.amount_text) -> list[str]:
        """What keeps the order from its expected end state, one line each (none: it is there).

        ``money`` writes the amounts: (minor units, currency) -> text.
        """
        return self.order_problems() or money_back.problems(self, money)

    def order_problems(self) -> list[str]:
        """What keeps the order itself (paid, on hold, e-mailed) from its expected end state; see :meth:`problems`."""
        s = self.scenario
        if self.error:
            return [self.error]
        out = []
        if s.expect_email and not any(s.expect_email in subject.lower() for subject in self.emails):
            out.append(f"no e-mail about {s.expect_email!r}")
        if s.expect_hold:
            if self.clarity_status != "On Hold":
                out.append(f"Clarity: order status {self.clarity_status or 'none'}, expected On Hold")
        elif s.expect_paid:
            wanted = [("the PaymentIntent succeeded", self.intent_status == "succeeded"),
                      ("the ERP sales order", bool(self.erp_order)), ("the ERP payment entry", bool(self.erp_payment))]
            if not self.given_back:  # once money went back, its own checks judge the Clarity order
                wanted[:0] = [("the Clarity order paid", self.clarity_status == "Full Payment Received"),
                              ("nothing due in Clarity", _zero(self.balance_due))]
            missing = [what for what, ok in wanted if not ok]
            if missing:
                out.append("not paid everywhere yet: no " + ", no ".join(missing))
        return out

    @property
    def given_back(self) -> bool:
        """Money of this order went back (a return, a refund or a dispute was made)."""
        return self.back is not None and self.back.stage != ""


def _zero(value: str) -> bool:
    try:
        return float(value or "1") == 0.0
    except ValueError:
        return False


def plan(n: int, *, money_back: bool = False) -> Iterator[tuple[int, Scenario]]:
    """``n`` orders cycling through every scenario; with ``money_back``, one more order of each of :data:`MONEY_BACK`."""
    yield from zip(range(n), itertools.cycle(SCENARIOS), strict=False)
    if money_back:
        yield from enumerate(MONEY_BACK, start=n)


def catalogue_skus() -> list[str]:
    """Every SKU the scenarios order: the merchant's catalogue, which the ERP must know."""
    return sorted({sku for s in (*SCENARIOS, *MONEY_BACK) for sku, _, _ in s.lines})


def seed_erp_items(erp: httpx.Client) -> None:
    """Create the catalogue's items in the ERP (``erp``: a client with the ERP's base URL and token).

    Idempotent: an item that exists already is refused by the ERP and left as it is.
    """
    for sku in catalogue_skus():
        erp.post("/api/resource/Item", json={"item_code": sku, "item_name": sku.title(),
                                             "item_group": "Products", "stock_uom": "Nos"})


STORE_STATUSES = ("Partially Refunded", "Refunded", "Disputed", "Chargeback")
"""Order statuses a store configures for refunds and disputes (CEF ships without them): the status map's defaults."""
STORE_RETURN_STATUSES = ("Refund Approved", "Refund Failed")
"""Sales-return statuses a store configures (``clarity_return_statuses.refund``: the bridge pays the return back)."""


def seed_store_statuses(clarity: httpx.Client, session: dict[str, str]) -> None:
    """Create the refund statuses (orders) and the return refund status in the Clarity simulator, as a store
    operator would (through the admin API).

    Idempotent: a status that exists already is left as it is. ``session``: the admin session's headers.
    """
    for name in STORE_STATUSES:
        found = clarity.get(f"{CLARITY_API}/Ordering/SalesOrderStatus/Key/{name}", headers=session)
        if found.status_code == 200 and found.json():
            continue
        clarity.post(f"{CLARITY_API}/Ordering/SalesOrderStatus/Create", headers=session,
                     json={"CustomKey": name, "Name": name}).raise_for_status()
    for name in STORE_RETURN_STATUSES:
        found = clarity.get(f"{CLARITY_API}/Returning/SalesReturnStatus/Key/{name}", headers=session)
        if found.status_code == 200 and found.json():
            continue
        clarity.post(f"{CLARITY_API}/Returning/SalesReturnStatus/Create", headers=session,
                     json={"CustomKey": name, "Name": name}).raise_for_status()


def checkout(clarity: httpx.Client, n: int, scenario: Scenario, *, email: str | None = None) -> Placed:
    """Check out shopper ``n`` at the storefront (``POST /_sandbox/checkout`` of the Clarity simulator).

    ``clarity``: a client with the simulator's base URL; ``email``: the shopper's address (default
    ``shopper<n>@example.com``). A refused checkout is returned with ``error`` set, never raised.
    """
    placed = Placed(n=n, scenario=scenario, email=email or f"shopper{n:04d}@example.com")
    body: dict[str, Any] = {
        "Email": placed.email, "FirstName": "Shopper", "LastName": f"No{n}",
        "BillingAddress": {"Street1": f"{n} Main St", "City": "Austin", "RegionCode": "TX",
                           "PostalCode": "78701", "CountryCode": "US"},
        "Lines": [{"Sku": sku, "Quantity": qty, "UnitPrice": price} for sku, qty, price in scenario.lines],
        "Currency": scenario.currency, "PaymentMode": scenario.mode, "PaymentMethod": scenario.payment_method,
    }
    if scenario.capture == "manual":
        body["Attributes"] = {"CaptureMethod": "manual"}
    r = clarity.post("/_sandbox/checkout", json=body)
    try:
        doc = r.json()
    except ValueError:  # not the simulator (a real shop, another program on the port)
        doc = {"ErrorMessages": [r.text[:200]]}
    if r.status_code != 200 or not isinstance(doc, dict) or not doc.get("Succeeded"):
        errors = doc.get("ErrorMessages") if isinstance(doc, dict) else None
        placed.error = f"checkout {r.status_code}: {errors or doc}"
        return placed
    placed.order_id, placed.key, placed.total = doc["OrderID"], doc["OrderKey"], str(doc.get("Total", ""))
    return placed


class Traffic:
    """Places orders at the Clarity storefront and acts as shopper and warehouse."""

    def __init__(self, *, clarity_url: str, clarity_user: str, clarity_password: str, stripe_url: str,
                 stripe_key: str, erp_url: str, erp_token: str, mail_url: str | None) -> None:
        self.clarity = httpx.Client(base_url=clarity_url, timeout=30)
        self.stripe = httpx.Client(base_url=stripe_url, timeout=30, headers={"Authorization": f"Bearer {stripe_key}"})
        self.erp = httpx.Client(base_url=erp_url, timeout=30, headers={"Authorization": f"token {erp_token}"})
        self.mail = httpx.Client(base_url=mail_url, timeout=30) if mail_url else None  # None: e-mails not read
        self.statuses = StoreStatuses()  # the store's status names (the demo sets the bridge's status map's)
        login = self.clarity.post(f"{CLARITY_API}/auth/identity",
                                  json={"UserName": clarity_user, "Password": clarity_password})
        login.raise_for_status()
        self.session = {"X-ss-pid": login.cookies.get("ss-pid") or login.json().get("SessionId", "")}

    def seed_erp_items(self) -> None:
        """The merchant's catalogue in the ERP (an unknown SKU is a DLQ case, not the demo's happy path)."""
        seed_erp_items(self.erp)

    def seed_store_statuses(self) -> None:
        """The store's refund statuses in Clarity (a refund from the Dashboard needs them)."""
        seed_store_statuses(self.clarity, self.session)

    def drain_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until the Stripe emulator has delivered every event it queued (False after ``timeout`` s)."""
        r = self.stripe.post("/_sandbox/webhooks/drain", json={"timeout": timeout}, timeout=timeout + 5)
        return r.status_code == 200 and bool(r.json().get("drained"))

    def close(self) -> None:
        for client in (self.clarity, self.stripe, self.erp, self.mail):
            if client is not None:
                client.close()

    def place(self, n: int, scenario: Scenario, *, email: str | None = None) -> Placed:
        """Check out shopper ``n`` (``email``: their address, default ``shopper<n>@example.com``)."""
        placed = checkout(self.clarity, n, scenario, email=email)
        if scenario.then:
            placed.back = MoneyBack(scenario.then, self.statuses)
        return placed

    def intents_by_order_key(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        starting_after = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            page = self.stripe.get("/v1/payment_intents", params=params).json()
            for pi in page.get("data", []):
                key = (pi.get("metadata") or {}).get("clarity_order_key")
                if key:
                    out[key] = pi
            if not page.get("has_more") or not page.get("data"):
                return out
            starting_after = page["data"][-1]["id"]

    def refresh(self, orders: list[Placed]) -> None:
        """Read every system's view of every order, and act as shopper and warehouse where due."""
        intents = self.intents_by_order_key()
        messages = self.mail.get("/messages").json() if self.mail is not None else []
        subjects: dict[str, list[str]] = {}
        for m in messages if isinstance(messages, list) else messages.get("messages", []):
            for to in m.get("rcpt_tos") or []:
                subjects.setdefault(str(to).lower(), []).append(str(m.get("subject", "")))
        for o in orders:
            if o.error or o.order_id is None:
                continue
            order = self.clarity.get(f"{CLARITY_API}/Ordering/SalesOrder/ID/{o.order_id}", headers=self.session)
            data: dict[str, Any] = {}
            if order.status_code == 200:
                data = order.json()
                o.clarity_status = str(data.get("StatusKey", ""))
                o.balance_due = str(data.get("BalanceDue", "0"))
            pi = intents.get(o.key)
            if pi:
                o.intent_id, o.intent_status = pi["id"], pi["status"]
            o.emails = subjects.get(o.email, [])
            if not o.erp_order:
                o.erp_order = self._erp_name("Sales Order", "po_no", o.key)
            if o.erp_order and not o.erp_payment and pi and pi.get("latest_charge"):
                o.erp_payment = self._erp_name("Payment Entry", "reference_no", str(pi["latest_charge"]))
            self._act(o)
            if o.back is not None and pi:
                money_back.read(self, o, data)
                if o.given_back or not o.order_problems():  # paid everywhere first
                    money_back.act(self, o, str(pi.get("latest_charge") or ""))

    def _act(self, o: Placed) -> None:
        if o.acted or not o.intent_id:
            return
        if o.scenario.expect_email == "confirm your payment" and o.intent_status == "requires_action" and o.emails:
            # the shopper follows the link in the e-mail and passes the bank's challenge
            self.stripe.post(f"/_sandbox/payment_intents/{o.intent_id}/3ds", json={"outcome": "succeed"})
            o.acted = True
        elif o.scenario.capture == "manual" and o.intent_status == "requires_capture":
            # the warehouse ships the order; capture happens on shipment
            self.clarity.patch(f"{CLARITY_API}/Ordering/SalesOrder/Ship/{o.order_id}", headers=self.session)
            o.acted = True

    def _erp_name(self, doctype: str, field_name: str, value: str) -> str:
        r = self.erp.get(f"/api/resource/{doctype}", params={"filters": f'[["{field_name}", "=", "{value}"]]'})
        if r.status_code != 200:
            return ""
        data = r.json().get("data") or []
        return str(data[0]["name"]) if data else ""
