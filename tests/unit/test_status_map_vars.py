"""The status map feeds the workflows' status vars; trigger filters see the same vars as the runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from commerce_bridge.config import load_settings
from commerce_bridge.errors import ConfigurationError, ValidationError
from commerce_bridge.mapping.status import DEFAULT_CONFIG, STATUS_VARS, StatusMap
from commerce_bridge.workflows.registry import BUILTIN_DIR, WorkflowRegistry
from commerce_bridge.workflows.router import Router

SEED_VARS = {"pending_status": "Pending", "hold_status": "On Hold", "cancel_status": "Void",
             "paid_status": "Full Payment Received", "void_status": "Void", "shipped_status": "Shipped",
             "partially_refunded_status": "Partially Refunded", "refunded_status": "Refunded",
             "return_refund_status": "Refund Approved", "return_refunded_status": "Completed", "return_refund_failed_status": "Refund Failed",
             "disputed_status": "Disputed", "chargeback_status": "Chargeback"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "mappings.md"


def renamed_map() -> StatusMap:
    return StatusMap.from_config({
        "stripe_events_to_clarity": {"payment_intent.succeeded": "Paid by Card",
                                     "payment_intent.payment_failed": "Payment Declined",
                                     "payment_intent.canceled": "Cancelled"},
        "clarity_to_stripe": {"payment_intent": {"Awaiting Payment": "requires_payment_method",
                                                 "Cancelled": "canceled", "Void": "canceled"}},
        "clarity_payment_actions": {"Dispatched": "capture"},
    })


def clarity_notice(status: str) -> dict[str, Any]:
    return {"id": "n1", "type": "salesorder.updated", "data": {"ID": 7, "CustomKey": "WEB-7", "StatusKey": status}}


def routed(registry: WorkflowRegistry, status: str, workflow_vars: dict[str, dict[str, Any]] | None = None
           ) -> set[str]:
    specs = Router(registry, workflow_vars=workflow_vars).route("clarity", "salesorder.updated",
                                                             clarity_notice(status), "n1")
    return {s.name for s in specs}


def test_default_map_gives_the_seed_status_names() -> None:
    assert StatusMap.default().workflow_vars() == SEED_VARS
    assert set(STATUS_VARS) == set(SEED_VARS)


def test_status_vars_follow_a_renamed_map() -> None:
    assert renamed_map().workflow_vars() == {
        "pending_status": "Awaiting Payment", "hold_status": "Payment Declined", "cancel_status": "Cancelled",
        "paid_status": "Paid by Card", "void_status": "Cancelled", "shipped_status": "Dispatched",
        "partially_refunded_status": "Partially Refunded", "refunded_status": "Refunded",
        "return_refund_status": "Refund Approved", "return_refunded_status": "Completed", "return_refund_failed_status": "Refund Failed",
        "disputed_status": "Disputed", "chargeback_status": "Chargeback"}


def test_object_status_map_is_used_when_the_event_map_has_no_entry() -> None:
    status_map = StatusMap.from_config({
        "stripe_events_to_clarity": {"charge.refunded": "Refunded"},
        "stripe_to_clarity": {"payment_intent": {"succeeded": "Processing", "canceled": "Void"},
                              "charge": {"failed": "Payment Problem"}},
    })
    names = status_map.workflow_vars()
    assert (names["paid_status"], names["hold_status"], names["cancel_status"]) == ("Processing", "Payment Problem",
                                                                                    "Void")


@pytest.mark.parametrize(("config", "var", "key"), [
    ({"clarity_payment_actions": {}}, "shipped_status", "clarity_payment_actions"),
    ({"clarity_to_stripe": {"payment_intent": {"Void": "canceled"}}}, "pending_status", "requires_payment_method"),
    ({"clarity_to_stripe": {"payment_intent": {"Pending": "requires_payment_method"}}}, "void_status", "canceled"),
    ({"stripe_events_to_clarity": {}, "stripe_to_clarity": {"payment_intent": {"canceled": "Void"}}},
     "hold_status", "payment_intent.payment_failed"),
    ({"stripe_events_to_clarity": {}, "stripe_to_clarity": {"charge": {"failed": "On Hold"}}},
     "cancel_status", "payment_intent.canceled"),
    ({"stripe_events_to_clarity": {"payment_intent.payment_failed": "On Hold"},
      "stripe_to_clarity": {"payment_intent": {"canceled": "Void"}}}, "paid_status", "payment_intent.succeeded"),
])
def test_a_missing_entry_names_the_var_and_the_key(config: dict[str, Any], var: str, key: str) -> None:
    with pytest.raises(ValidationError) as info:
        StatusMap.from_config(config).workflow_vars()
    assert var in info.value.message and key in info.value.message
    assert info.value.suggested_fix


def test_an_unknown_payment_action_is_refused() -> None:
    with pytest.raises(ValidationError, match="refund is not a payment action") as info:
        StatusMap.from_config({"clarity_payment_actions": {"Shipped": "refund"}})
    assert info.value.suggested_fix


def test_settings_hold_the_whole_map_and_parse_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().status_map == StatusMap.default().to_config()
    monkeypatch.setenv("CB_STATUS_MAP", '{"stripe_events_to_clarity": {"payment_intent.succeeded": "Processing"}}')
    s = load_settings()
    assert s.statuses().workflow_vars()["paid_status"] == "Processing"
    assert s.status_map["clarity_to_stripe"] == DEFAULT_CONFIG["clarity_to_stripe"]  # other sections: defaults


def test_the_status_map_can_come_from_the_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cb.toml").write_text('[status_map.clarity_payment_actions]\n"Ready for Pickup" = "capture"\n')
    monkeypatch.setenv("CB_CONFIG_FILE", str(tmp_path / "cb.toml"))
    assert load_settings().statuses().workflow_vars()["shipped_status"] == "Ready for Pickup"


@pytest.mark.parametrize(("value", "named"), [
    ('{"stripe_to_clarity": {"payment_intent": {"paid": "X"}}}', "paid is not a Stripe payment_intent status"),
    ('{"colours": {}}', "unknown status map section(s): colours"),
    ('{"clarity_payment_actions": {}}', "shipped_status"),
    ('{"clarity_to_stripe": {"payment_intent": {"Pending": "requires_payment_method"}}}', "void_status"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_status_map_stops_start_up_naming_the_setting_and_the_entry(
        monkeypatch: pytest.MonkeyPatch, value: str, named: str) -> None:
    monkeypatch.setenv("CB_STATUS_MAP", value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("CB_STATUS_MAP: ") and named in info.value.errors[0]


def test_builtin_files_declare_the_seed_values_the_map_replaces() -> None:
    """The files' own values are what tools without settings (dry-run) show: keep them the default map's."""
    registry = WorkflowRegistry.load()
    declared = {k: v for spec in registry.all() for k, v in spec.vars.items() if k in STATUS_VARS}
    assert declared == SEED_VARS


def test_runs_get_the_status_vars_they_declare_and_workflow_vars_win() -> None:
    registry = WorkflowRegistry.load()
    status_vars = renamed_map().workflow_vars()
    pinned = registry.run_vars(status_vars, {"clarity.order_to_cash": {"hold_status": "Manual Review",
                                                                       "reminder_after_s": 5},
                                             "my.flow": {"x": 1}})
    assert pinned["clarity.order_to_cash"] == {"pending_status": "Awaiting Payment", "hold_status": "Manual Review",
                                               "cancel_status": "Cancelled", "reminder_after_s": 5}
    assert pinned["stripe.payment_succeeded"] == {"paid_status": "Paid by Card"}
    assert pinned["clarity.order_voided"] == {"void_status": "Cancelled"}
    assert pinned["clarity.order_shipped"] == {"shipped_status": "Dispatched"}
    assert pinned["my.flow"] == {"x": 1}
    assert "core.audit" not in pinned  # declares no status var: nothing pinned


def test_trigger_filters_see_the_vars_the_run_gets() -> None:
    registry = WorkflowRegistry.load()
    pinned = registry.run_vars(renamed_map().workflow_vars())
    assert routed(registry, "Dispatched", pinned) == {"clarity.order_shipped"}
    assert routed(registry, "Awaiting Payment", pinned) == {"clarity.order_to_cash"}
    assert routed(registry, "Cancelled", pinned) == {"clarity.order_voided"}
    assert routed(registry, "Shipped", pinned) == set()  # the seed names no longer start anything
    assert routed(registry, "Pending", pinned) == set()
    # without the pinned vars the files' own values apply (the bug was: always these)
    assert routed(registry, "Shipped") == {"clarity.order_shipped"}
    assert routed(registry, "Pending") == {"clarity.order_to_cash"}


def test_a_workflow_vars_override_reaches_the_filter() -> None:
    registry = WorkflowRegistry.load()
    pinned = registry.run_vars(SEED_VARS, {"clarity.order_shipped": {"shipped_status": "Out for Delivery"}})
    assert routed(registry, "Out for Delivery", pinned) == {"clarity.order_shipped"}
    assert routed(registry, "Shipped", pinned) == set()


def test_a_user_file_that_sets_a_status_var_is_reported_as_ignored(tmp_path: Path) -> None:
    text = (BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
    edited = text.replace("version: 1", "version: 2").replace("paid_status: Full Payment Received",
                                                                "paid_status: Paid")
    (tmp_path / "paid.yaml").write_text(edited)
    registry = WorkflowRegistry.load(user_dir=tmp_path)
    pinned = registry.run_vars(SEED_VARS)
    assert registry.ignored_status_vars(SEED_VARS, pinned) == {str(tmp_path / "paid.yaml"): {"paid_status": "Paid"}}
    assert registry.ignored_status_vars(SEED_VARS, registry.run_vars(SEED_VARS, {
        "stripe.payment_succeeded": {"paid_status": "Paid"}})) == {}


def _table_after(text: str, marker: str) -> list[list[str]]:
    """The rows (header left out) of the first table after ``marker``, as in test_mapping_docs."""
    rows: list[list[str]] = []
    for line in text[text.index(marker):].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if not set("".join(cells)) <= {"-", " "}:
            rows.append(cells)
    return rows[1:]


def test_status_vars_and_payment_actions_are_documented() -> None:
    text = DOCS.read_text()
    documented = {r[0]: (r[1], r[2]) for r in _table_after(text, "<!-- status: workflow vars")}
    assert documented == {name: (where, SEED_VARS[name]) for name, where in STATUS_VARS.items()}
    actions = {r[0]: r[1] for r in _table_after(text, "<!-- status: clarity_payment_actions")}
    assert actions == dict(DEFAULT_CONFIG["clarity_payment_actions"])


def test_a_return_whose_refund_failed_leaves_the_refund_status_and_old_maps_get_the_default() -> None:
    with pytest.raises(ValidationError, match="refund and refund_failed must be different"):
        StatusMap.from_config({"clarity_return_statuses": {"refund": "Refund Approved",
                                                           "refund_failed": "Refund Approved"}})
    older = StatusMap.from_config({"clarity_return_statuses": {"refund": "Approved", "refunded": "Completed"}})
    assert older.workflow_vars()["return_refund_failed_status"] == "Refund Failed"
