"""The sandbox stack the money-back e2e modules share (one per database for a module), ``wait_for`` and ERP reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from commerce_bridge.entrypoints.demo_order_to_cash import Stack, sandbox_stack
from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database


@contextmanager
def stack_on(database: str, workdir: Path, **settings: Any) -> Iterator[Stack]:
    """A sandbox stack (peers + the bridge in this process) on a new SQLite file or a fresh PostgreSQL
    database (dropped afterwards; the test is skipped, with the reason, when no PostgreSQL is configured)."""
    if database == "postgres":
        if not pg_admin_url():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database() as url, sandbox_stack(database_url=url, workdir=workdir, **settings) as stack:
            yield stack
    else:
        with sandbox_stack(database_url=f"sqlite:///{workdir / 'bridge.sqlite'}", workdir=workdir,
                           **settings) as stack:
            yield stack


def wait_for(what: str, check: Callable[[], Any], st: Stack, timeout: float = 60.0) -> Any:
    """``check()``'s first truthy value; on timeout an AssertionError naming ``what`` and the open DLQ entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; DLQ: " + str(
        [(e["run_id"], e["error_code"], e["error_message"][:160]) for e in st.container.dead_letters.list()]))


def journals(st: Stack, cheque_no: str) -> list[dict[str, Any]]:
    """The submitted ERPNext Journal Entries with this ``cheque_no``, in full (with their account rows)."""
    r = st.traffic.erp.get("/api/resource/Journal Entry", params={
        "filters": f'[["cheque_no", "=", "{cheque_no}"], ["docstatus", "=", 1]]', "limit_page_length": 0})
    return [st.traffic.erp.get(f"/api/resource/Journal Entry/{row['name']}").json()["data"] for row in r.json()["data"]]


def account_rows(entry: dict[str, Any], *, in_account_currency: bool = False) -> dict[str, Decimal]:
    """A Journal Entry's rows summed per account: debit - credit (in the company's currency, or the account's)."""
    debit, credit = (("debit_in_account_currency", "credit_in_account_currency") if in_account_currency
                     else ("debit", "credit"))
    out: dict[str, Decimal] = {}
    for row in entry["accounts"]:
        out[row["account"]] = out.get(row["account"], Decimal(0)) + Decimal(str(row[debit])) - Decimal(str(row[credit]))
    return out


def cli_env(st: Stack, **extra: Any) -> dict[str, str]:
    """The stack's connections (database, Stripe, Clarity, ERPNext) as CB_* variables for a CLI subprocess."""
    from tests.support.processes import bridge_env

    s = st.container.settings
    secret = {k: getattr(s, k).get_secret_value() for k in ("stripe_api_key", "clarity_password", "erp_api_secret")}
    return bridge_env(**{"database_url": s.database_url, "stripe_api_base": s.stripe_api_base,
                         "clarity_base_url": s.clarity_base_url, "clarity_user": s.clarity_user,
                         "erp_base_url": s.erp_base_url, "erp_api_key": s.erp_api_key, **secret, **extra})
