"""The payout reconciliations store on SQLite and PostgreSQL: one record per payout, replaced with its exceptions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from commerce_bridge.store.reconciliations import SqlReconciliations


def payout(pid: str, **over: Any) -> dict[str, Any]:
    return {"payout_id": pid, "status": "exceptions", "currency": "USD", "amount_minor": 96530, "arrival_date": 1765000000,
            "transactions": 3, "matched": 2, "exceptions": 1,
            "proof": {"sum_ok": True, "clearing_zero": True, "balanced": True, "closed": False},
            "journal": [{"account": "Bank", "amount_minor": 96530, "currency": "USD", "refs": ["po_1"]},
                        {"account": "Stripe Clearing", "amount_minor": -96530, "currency": "USD", "refs": ["po_1"]}],
            **over}


def exception(ref: str, kind: str = "charge_without_order") -> dict[str, Any]:
    return {"kind": kind, "ref": ref, "reason": f"{kind}: {ref}", "suggested_fix": "link it", "amount_minor": 1000,
            "currency": "USD", "expected_minor": None, "expected_currency": None, "payout_id": "ignored"}


def test_a_reconciliation_is_recorded_with_its_exceptions_and_read_back(engine: Engine) -> None:
    store = SqlReconciliations(engine)
    assert store.get("po_1") is None and store.done(["po_1"]) == set()
    store.save(payout("po_1"), [exception("txn_a")])
    got = store.get("po_1")
    assert got is not None
    assert got["proof"]["sum_ok"] is True and got["journal"][0]["refs"] == ["po_1"]
    assert [(e["payout_id"], e["kind"], e["ref"]) for e in got["exception_rows"]] == [
        ("po_1", "charge_without_order", "txn_a")]  # the payout's id, whatever the row said
    assert store.done(["po_1", "po_2"]) == {"po_1"}
    assert [p["payout_id"] for p in store.payouts()] == ["po_1"]
    assert [e["ref"] for e in store.exceptions(payout_id="po_1", kind="charge_without_order")] == ["txn_a"]
    assert store.exceptions(kind="amount_mismatch") == []


def test_a_second_reconciliation_replaces_the_first_and_keeps_the_posted_entry(engine: Engine) -> None:
    store = SqlReconciliations(engine)
    store.save(payout("po_1"), [exception("txn_a"), exception("txn_b", "amount_mismatch")])
    store.set_journal_entry("po_1", "ACC-JV-1")
    store.save(payout("po_1", status="closed", matched=3, exceptions=0), [])
    got = store.get("po_1")
    assert got is not None
    assert (got["status"], got["matched"], got["exception_rows"]) == ("closed", 3, [])
    assert got["journal_entry"] == "ACC-JV-1"  # named once the ERP accepted it; a re-run does not forget it
    store.set_journal_entry("po_1", "ACC-JV-1", status="failed")
    assert store.get("po_1")["status"] == "failed"  # type: ignore[index]
    store.save(payout("po_2"), [exception("txn_c")])
    assert [e["ref"] for e in store.exceptions()] == ["txn_c"]
