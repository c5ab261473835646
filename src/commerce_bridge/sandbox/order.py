"""``commerce-bridge sandbox order``: place one storefront order by hand and follow it through every peer.

Rules it keeps:

* it talks only HTTP to the sandbox peers, as a shopper's browser and an observer would: the order is a
  checkout at the Clarity simulator's storefront (``POST /_sandbox/checkout``), then it reads the order
  in Clarity's admin API, the PaymentIntent in the Stripe emulator and the documents in the ERPNext
  simulator. It never talks to the bridge: what changes in the peers is the bridge's work;
* where the peers are: each option's default is the peer the bridge is pointed at when its ``CB_*``
  setting is in the environment (after the ``export`` lines of ``dev`` or ``sandbox up``), else the
  sandbox's default port on this machine. A real shop has no ``/_sandbox/checkout``: the command
  cannot place orders there;
* exit 0 when the order ended paid (Clarity paid with nothing due, the PaymentIntent succeeded, the ERP
  sales order and payment entry exist) or on hold (a declined card); 1 when the checkout was refused
  or the order had not settled within ``--timeout`` (it says what is missing).
"""

from __future__ import annotations

import os
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated

import httpx
import typer

from commerce_bridge.sandbox.clarity_sim.checkout import THREE_DECIMAL, ZERO_DECIMAL
from commerce_bridge.sandbox.traffic import CLARITY_API, Placed, Scenario, Traffic, catalogue_skus, checkout

DEFAULT_CLARITY = "http://127.0.0.1:8090"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def clarity_storefront(admin_url: str | None) -> str:
    """The storefront's base URL: ``CB_CLARITY_BASE_URL`` without its admin API path, or the sandbox default."""
    url = admin_url or os.environ.get("CB_CLARITY_BASE_URL") or DEFAULT_CLARITY
    return url.rstrip("/").removesuffix(CLARITY_API)


def _traffic(clarity_url: str) -> Traffic:
    """A reader of every peer's view of an order, with the bridge's credentials for them (or the sandbox's)."""
    from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
    from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from commerce_bridge.sandbox.up import DEFAULT_PORTS, STRIPE_TEST_KEY

    erp_token = f"{_env('CB_ERP_API_KEY', DEFAULT_API_KEY)}:{_env('CB_ERP_API_SECRET', DEFAULT_API_SECRET)}"
    return Traffic(clarity_url=clarity_url, clarity_user=_env("CB_CLARITY_USER", DEFAULT_USER),
                   clarity_password=_env("CB_CLARITY_PASSWORD", DEFAULT_PASSWORD),
                   stripe_url=_env("CB_STRIPE_API_BASE", f"http://127.0.0.1:{DEFAULT_PORTS['stripe']}"),
                   stripe_key=_env("CB_STRIPE_API_KEY", STRIPE_TEST_KEY),
                   erp_url=_env("CB_ERP_BASE_URL", f"http://127.0.0.1:{DEFAULT_PORTS['erp']}"),
                   erp_token=erp_token, mail_url=None)


def amount_text(value: str, currency: str) -> str:
    """``value`` (as the simulator wrote it: ``42.0``, ``0``) with the currency's minor digits: ``42.00``."""
    try:
        exact = Decimal(value)
    except InvalidOperation:
        return value or "?"
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{exact.quantize(Decimal(1).scaleb(-digits))} {currency}"


def _seen(o: Placed) -> list[str]:
    """What each peer shows of the order, one line per peer (compared between polls to print changes)."""
    due = amount_text(o.balance_due, o.scenario.currency) if o.balance_due else "?"
    lines = [f"Clarity   order {o.key}: {o.clarity_status or '?'}, balance due {due}"]
    if o.intent_id:
        lines.append(f"Stripe    PaymentIntent {o.intent_id}: {o.intent_status}")
    if o.erp_order:
        lines.append(f"ERPNext   Sales Order {o.erp_order}")
    if o.erp_payment:
        lines.append(f"ERPNext   Payment Entry {o.erp_payment}")
    return lines


def _missing(o: Placed) -> str:
    wanted = [("the Clarity order paid", o.clarity_status == "Full Payment Received"),
              ("a PaymentIntent", bool(o.intent_id)), ("the ERP sales order", bool(o.erp_order)),
              ("the ERP payment entry", bool(o.erp_payment))]
    return ", ".join(what for what, ok in wanted if not ok) or "nothing"


def follow(traffic: Traffic, o: Placed, timeout: float) -> bool:
    """Print each peer's view of ``o`` as it changes until it is paid or on hold; False after ``timeout``."""
    started = time.monotonic()
    shown: set[str] = set()
    while True:
        traffic.refresh([o])
        for line in _seen(o):
            if line not in shown:
                shown.add(line)
                typer.echo(f"{time.monotonic() - started:6.1f} s  {line}")
        if o.done or o.clarity_status == "On Hold":
            return True
        if time.monotonic() - started > timeout:
            return False
        time.sleep(0.5)


def command(
    amount: Annotated[str, typer.Option(help="The line's unit price, as a decimal in the currency's units.")] = "25.00",
    currency: Annotated[str, typer.Option(help="ISO 4217 code (USD, EUR, JPY, KWD...).")] = "USD",
    sku: Annotated[str, typer.Option(help="The product (the sandbox ERP knows " + ", ".join(catalogue_skus())
                                          + "; another SKU makes a dead-letter entry).")] = "SKU-TEE",
    quantity: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    email: Annotated[str | None, typer.Option(help="The shopper's e-mail (default: a new shopper each time).")]
    = None,
    payment_method: Annotated[str, typer.Option(
        help="The card: pm_card_visa pays, pm_card_chargeDeclined is declined (the order goes on hold).")]
    = "pm_card_visa",
    clarity_url: Annotated[str | None, typer.Option(
        help="The Clarity simulator (default: CB_CLARITY_BASE_URL's server, else " + DEFAULT_CLARITY + ").")]
    = None,
    wait: Annotated[bool, typer.Option(help="Follow the order through Clarity, Stripe and the ERP until it "
                                            "is paid or on hold.")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to follow it.")] = 60.0,
) -> None:
    """Place one storefront order at the Clarity simulator, as a shopper would, and follow it through the peers."""
    try:
        Decimal(amount)
    except InvalidOperation:
        typer.echo(f"error: --amount {amount!r} is not a decimal number (e.g. 25.00)", err=True)
        raise typer.Exit(2) from None
    storefront = clarity_storefront(clarity_url)
    n = secrets.randbelow(9000) + 1000
    scenario = Scenario("by hand", currency.upper(), ((sku, quantity, amount),), payment_method=payment_method)
    try:
        with httpx.Client(base_url=storefront, timeout=30) as shop:
            placed = checkout(shop, n, scenario, email=email or f"shopper-{n}@example.com")
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the Clarity simulator at {storefront} ({type(exc).__name__})\n"
                   "  fix: start it (`commerce-bridge dev` or `commerce-bridge sandbox up`), or pass --clarity-url",
                   err=True)
        raise typer.Exit(1) from exc
    if placed.error:
        typer.echo(f"error: the storefront at {storefront} refused the order: {placed.error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"placed order {placed.key} (Clarity order id {placed.order_id}): {quantity} x {sku}, total "
               f"{amount_text(placed.total, scenario.currency)}, shopper {placed.email}")
    typer.echo("The bridge polls it from Clarity (salesorder.created); `commerce-bridge events list` shows it.")
    if not wait:
        return
    traffic = _traffic(storefront)
    try:
        settled = follow(traffic, placed, timeout)
    finally:
        traffic.close()
    if not settled:
        typer.echo(f"not settled after {timeout:.0f} s: still no {_missing(placed)}. Is the bridge running "
                   "(`commerce-bridge dev`) and pointed at this Clarity? `commerce-bridge events list` and "
                   "`commerce-bridge dlq list` say what it did.", err=True)
        raise typer.Exit(1)
    if placed.clarity_status == "On Hold":
        typer.echo(f"on hold: order {placed.key}'s payment was declined; the bridge put it on hold")
    else:
        typer.echo(f"paid: order {placed.key} is paid in Clarity and Stripe; ERP {placed.erp_order}, "
                   f"{placed.erp_payment}")
