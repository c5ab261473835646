"""The drift check's memory of differences already alerted (``store.drift``), on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from commerce_bridge.store.drift import SqlReportedDrift

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_difference_is_new_once_and_forgotten_when_gone_for_a_window(engine: Engine) -> None:
    seen = SqlReportedDrift(engine)
    first = {"charge_without_order:ch_1": "charge_without_order", "amount_mismatch:ch_2:erp.payment_entry":
             "amount_mismatch"}
    assert seen.first_seen(first, now=NOW) == set(first)
    assert seen.first_seen({**first, "refund_without_return:re_1": "refund_without_return"},
                           now=NOW + timedelta(hours=1)) == {"refund_without_return:re_1"}
    assert seen.first_seen({}, now=NOW) == set()
    # ch_1 and re_1 fixed: not seen again; ch_2 still there an hour later
    seen.first_seen({k: v for k, v in first.items() if "ch_2" in k}, now=NOW + timedelta(hours=2))
    assert seen.forget_before(NOW + timedelta(minutes=90)) == 2
    assert seen.first_seen(first, now=NOW + timedelta(hours=3)) == {"charge_without_order:ch_1"}


def test_many_differences_at_once_are_each_new_exactly_once_across_threads(engine: Engine) -> None:
    seen = SqlReportedDrift(engine)
    kinds = {f"charge_without_order:ch_{n}": "charge_without_order" for n in range(1200)}  # three chunks
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: seen.first_seen(kinds, now=NOW), range(2)))
    assert results[0] | results[1] == set(kinds) and not results[0] & results[1]
