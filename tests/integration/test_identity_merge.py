"""``SqlIdentityMap.merge`` on SQLite and PostgreSQL (issue 14, point 2): links and keys move to the survivor in one
transaction, the loser's ids in systems where both are linked are retired (and still resolve), the loser's
snapshot is dropped, nothing names the loser afterwards, a dry run writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from commerce_bridge.errors import ValidationError
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap
from commerce_bridge.store.tables import identity_keys, identity_links, identity_retired, poll_cursors


def names_of(engine: Engine, entity: str) -> list[str]:
    """Every row of the identity tables and the cursor store that names ``entity``."""
    with engine.connect() as conn:
        rows = [f"link:{r.system}:{r.external_id}" for r in conn.execute(
            select(identity_links).where(identity_links.c.entity_id == entity))]
        rows += [f"key:{r.dedupe_key}" for r in conn.execute(
            select(identity_keys).where(identity_keys.c.entity_id == entity))]
        rows += [f"retired:{r.system}:{r.external_id}" for r in conn.execute(
            select(identity_retired).where(identity_retired.c.entity_id == entity))]
        rows += [f"cursor:{r.name}" for r in conn.execute(
            select(poll_cursors).where(poll_cursors.c.name.contains(entity)))]
    return sorted(rows)


def two_customers(ids: SqlIdentityMap, cursors: SqlCursorStore) -> tuple[str, str]:
    """A (survivor) linked in Stripe and Clarity; B (loser) linked in Stripe, Clarity and ERPNext; both snapshots."""
    a = ids.entity_for_key("customer", "ada@example.com")
    b = ids.entity_for_key("customer", "ada.l@example.com")
    ids.link("customer", a, "stripe", "cus_A")
    ids.link("customer", a, "clarity_account", "1")
    ids.link("customer", b, "stripe", "cus_B")
    ids.link("customer", b, "clarity_account", "2")
    ids.link("customer", b, "erp", "CUST-B")
    cursors.set(f"customer_sync.{a}", '{"v": 1, "f": {}}')
    cursors.set(f"customer_sync.{b}", '{"v": 1, "f": {}}')
    return a, b


def test_merge_moves_links_and_keys_retires_duplicates_and_leaves_no_orphan(engine: Engine) -> None:
    ids, cursors = SqlIdentityMap(engine), SqlCursorStore(engine)
    a, b = two_customers(ids, cursors)
    merged = ids.merge("customer", b, a, drop_cursors=[f"customer_sync.{b}"])
    assert merged.moved == {"erp": "CUST-B"}
    assert merged.retired == {"clarity_account": "2", "stripe": "cus_B"}
    assert merged.kept == {"clarity_account": "1", "stripe": "cus_A"}
    assert (merged.keys, merged.dropped) == (1, (f"customer_sync.{b}",))
    assert names_of(engine, b) == []  # no link, key, retired row or snapshot names the loser
    assert ids.externals("customer", a) == {"stripe": "cus_A", "clarity_account": "1", "erp": "CUST-B"}
    assert ids.entity_for_key("customer", "ada.l@example.com") == a
    # an order or event naming the old ids still finds the customer; the sync sees they are retired
    assert ids.lookup("customer", "stripe", "cus_B") == a
    assert ids.lookup("customer", "clarity_account", "2") == a
    assert ids.retired("customer", "stripe", "cus_B") == a
    assert ids.retired("customer", "stripe", "cus_A") is None
    assert cursors.get(f"customer_sync.{a}") is not None  # the survivor's snapshot is kept


def test_a_dry_run_reports_the_same_and_writes_nothing(engine: Engine) -> None:
    ids, cursors = SqlIdentityMap(engine), SqlCursorStore(engine)
    a, b = two_customers(ids, cursors)
    before = (names_of(engine, a), names_of(engine, b))
    dry = ids.merge("customer", b, a, drop_cursors=[f"customer_sync.{b}"], dry_run=True)
    assert (dry.moved, dry.retired, dry.keys, dry.dry_run) == (
        {"erp": "CUST-B"}, {"clarity_account": "2", "stripe": "cus_B"}, 1, True)
    assert (names_of(engine, a), names_of(engine, b)) == before
    assert ids.retired("customer", "stripe", "cus_B") is None


def test_a_later_merge_re_points_the_ids_retired_into_the_loser(engine: Engine) -> None:
    ids, cursors = SqlIdentityMap(engine), SqlCursorStore(engine)
    a, b = two_customers(ids, cursors)
    c = ids.entity_for_key("customer", "third@example.com")
    ids.link("customer", c, "stripe", "cus_C")
    ids.merge("customer", b, a, drop_cursors=[f"customer_sync.{b}"])
    merged = ids.merge("customer", a, c, drop_cursors=[f"customer_sync.{a}"])
    assert merged.retired == {"stripe": "cus_A"} and merged.rehomed == 2  # cus_B and Clarity 2 follow
    assert merged.moved == {"clarity_account": "1", "erp": "CUST-B"}
    assert {ids.lookup("customer", "stripe", x) for x in ("cus_A", "cus_B", "cus_C")} == {c}
    assert names_of(engine, a) == [] and names_of(engine, b) == []


def test_an_unlinked_duplicate_is_retired_alone(engine: Engine) -> None:
    ids = SqlIdentityMap(engine)
    a = ids.entity_for_key("customer", "ada@example.com")
    ids.link("customer", a, "stripe", "cus_A")
    merged = ids.merge("customer", None, a, unlinked={"stripe": "cus_DUP"})
    assert (merged.retired, merged.moved, merged.keys) == ({"stripe": "cus_DUP"}, {}, 0)
    assert ids.lookup("customer", "stripe", "cus_DUP") == a
    with pytest.raises(ValidationError, match="linked or retired already"):
        ids.merge("customer", None, a, unlinked={"stripe": "cus_DUP"})
    with pytest.raises(ValidationError, match="linked or retired already"):
        ids.merge("customer", None, a, unlinked={"stripe": "cus_A"})


def test_merging_an_entity_into_itself_is_refused(engine: Engine) -> None:
    ids = SqlIdentityMap(engine)
    a = ids.entity_for_key("customer", "ada@example.com")
    with pytest.raises(ValidationError, match="into itself"):
        ids.merge("customer", a, a)


def test_the_already_linked_error_names_the_merge_command(engine: Engine) -> None:
    ids = SqlIdentityMap(engine)
    a = ids.entity_for_key("customer", "ada@example.com")
    ids.link("customer", a, "clarity_account", "7")
    with pytest.raises(ValidationError) as caught:
        ids.link("customer", a, "clarity_account", "9")
    assert caught.value.suggested_fix is not None
    assert "commerce-bridge customers merge --system clarity --from 9 --into 7" in caught.value.suggested_fix
