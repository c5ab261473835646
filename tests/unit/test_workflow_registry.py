"""The registry: built-ins plus user overrides, active versions for new runs, every version kept for pinned runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from commerce_bridge.errors import ConfigurationError
from commerce_bridge.workflows.builtin import CORE_AUDIT
from commerce_bridge.workflows.loader import WorkflowFileError
from commerce_bridge.workflows.registry import BUILTIN_DIR, WorkflowRegistry, version_key
from commerce_bridge.workflows.router import Router

PAID = (BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()
EVENT = {"id": "evt_1", "type": "payment_intent.succeeded",
         "data": {"object": {"id": "pi_1", "metadata": {"clarity_order_key": "WEB-1"}}}}


def user_file(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_builtins_load_and_the_router_starts_their_active_versions() -> None:
    reg = WorkflowRegistry.load(code=[CORE_AUDIT])
    names = {s.name for s in reg.all()}
    assert names >= {"core.audit", "clarity.order_to_cash", "stripe.payment_succeeded", "clarity.order_voided",
                     "clarity.order_shipped"}
    assert [s.name for s in Router(reg).route("stripe", "payment_intent.succeeded", EVENT)] == ["core.audit",
                                                                                          "stripe.payment_succeeded"]


def test_filter_is_applied_only_when_the_event_is_given() -> None:
    reg = WorkflowRegistry.load()
    not_ours = {"id": "evt_2", "data": {"object": {"id": "pi_2", "metadata": {}}}}
    assert Router(reg).route("stripe", "payment_intent.succeeded", not_ours) == []
    assert [s.name for s in Router(reg).route("stripe", "payment_intent.succeeded")] == ["stripe.payment_succeeded"]


def test_higher_user_version_overrides_and_the_old_one_stays_addressable(tmp_path: Path) -> None:
    reg = WorkflowRegistry.load(user_dir=user_file(tmp_path / "wf", "paid.yaml",
                                                   PAID.replace("version: 3", "version: 4")).parent)
    active = reg.active("stripe.payment_succeeded")
    assert active is not None and (active.spec.version, active.origin) == ("4", "user")
    assert reg.get("stripe.payment_succeeded", "3") is not None  # runs pinned to 3 finish on 3
    assert [s.version for s in Router(reg).route("stripe", "payment_intent.succeeded", EVENT)] == ["4"]
    rows = [r for r in reg.describe() if r["name"] == "stripe.payment_succeeded"]
    assert [(r["version"], r["origin"], r["active"]) for r in rows] == [("3", "builtin", False), ("4", "user", True)]


def test_equal_user_version_overrides_under_a_content_suffixed_version(tmp_path: Path) -> None:
    text = PAID.replace("paid_status: Full Payment Received", "paid_status: Confirmed")
    reg = WorkflowRegistry.load(user_dir=user_file(tmp_path / "wf", "paid.yaml", text).parent)
    active = reg.active("stripe.payment_succeeded")
    assert active is not None and active.origin == "user" and active.spec.version.startswith("3+")
    assert active.spec.vars["paid_status"] == "Confirmed"
    builtin = reg.get("stripe.payment_succeeded", "3")
    assert builtin is not None and builtin.vars["paid_status"] == "Full Payment Received"


def test_identical_user_copy_of_a_builtin_is_the_same_version(tmp_path: Path) -> None:
    reg = WorkflowRegistry.load(user_dir=user_file(tmp_path / "wf", "paid.yaml", PAID).parent)
    assert [r["version"] for r in reg.describe() if r["name"] == "stripe.payment_succeeded"] == ["3"]


def test_lower_user_version_is_listed_but_not_active(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    user_file(folder, "paid.yaml", PAID.replace("version: 3", "version: 4"))
    reg = WorkflowRegistry.load(user_dir=folder, builtin_dir=None)
    user_file(folder, "paid_old.yml", PAID.replace("version: 3", "version: '3.5'"))
    assert reg.reload() == []
    versions = [(r["version"], r["active"]) for r in reg.describe()]
    assert versions == [("3.5", False), ("4", True)]


def test_run_pinned_to_a_version_survives_a_reload_that_replaces_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    path = user_file(folder, "paid.yaml", PAID.replace("version: 3", "version: 4"))
    reg = WorkflowRegistry.load(user_dir=folder, builtin_dir=None)
    pinned = Router(reg).route("stripe", "payment_intent.succeeded", EVENT)[0]
    path.write_text(PAID.replace("version: 3", "version: 5"))
    assert reg.reload() == []
    assert reg.get(pinned.name, pinned.version) is pinned
    assert Router(reg).route("stripe", "payment_intent.succeeded", EVENT)[0].version == "5"
    path.write_text(PAID.replace("version: 3", "version: 5").replace("Full Payment Received", "Confirmed"))
    reg.reload()  # edited in place without a new version: both texts stay addressable
    assert [r["version"][:2] for r in reg.describe()] == ["4", "5", "5+"]


def test_invalid_user_file_stops_start_up_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    user_file(folder, "bad.yaml", PAID.replace("uses: erp.customer.ensure", "uses: erp.customer.ensur"))
    with pytest.raises(ConfigurationError) as info:
        WorkflowRegistry.load(user_dir=folder)
    assert any("bad.yaml:" in line and "erp.customer.ensure" in line for line in info.value.errors)


def test_missing_user_folder_is_a_problem(tmp_path: Path) -> None:
    reg = WorkflowRegistry(user_dir=tmp_path / "absent")
    assert [p.message for p in reg.reload()] == ["the workflow folder does not exist"]


def test_filter_that_fails_for_an_event_does_not_match_and_does_not_stop_others(tmp_path: Path) -> None:
    text = PAID.replace("filter: event.data.object.metadata.clarity_order_key",
                        "filter: length(event.data.object.metadata.clarity_order_key) > `3`")
    reg = WorkflowRegistry.load(user_dir=user_file(tmp_path / "wf", "paid.yaml", text).parent,
                                builtin_dir=None, code=[CORE_AUDIT])
    odd = {"data": {"object": {"metadata": {"clarity_order_key": 12}}}}
    assert [s.name for s in Router(reg).route("stripe", "payment_intent.succeeded", odd)] == ["core.audit"]
    assert [s.name for s in Router(reg).route("stripe", "payment_intent.succeeded", EVENT)] == ["core.audit",
                                                                                          "stripe.payment_succeeded"]


@pytest.mark.parametrize(("a", "b"), [("1", "2"), ("1.5", "2"), ("1.9", "1.10"), ("2", "2.0.1")])
def test_versions_compare_as_numbers(a: str, b: str) -> None:
    assert version_key(a) < version_key(b)


def test_missing_actions_names_workflows_whose_step_types_are_unbound() -> None:
    reg = WorkflowRegistry.load(code=[CORE_AUDIT])
    missing = reg.missing_actions(["core.audit.record", "clarity.order.get", "core.identity.lookup",
                                   "core.shipment.capture_amount", "stripe.payment_intent.retrieve",
                                   "stripe.payment_intent.capture", "core.validate.order", "erp.customer.ensure",
                                   "erp.sales_order.ensure", "erp.sales_invoice.ensure"])
    assert "core.audit" not in missing and "clarity.order_shipped" not in missing
    assert "stripe.refund.create" in missing["clarity.order_voided"]


def test_add_text_registers_a_workflow_and_rejects_an_invalid_one() -> None:
    reg = WorkflowRegistry(builtin_dir=None)
    entry = reg.add_text(PAID.replace("version: 3", "version: 7"), "api")
    assert reg.get("stripe.payment_succeeded", "7") is entry.spec and reg.is_active(entry)
    with pytest.raises(WorkflowFileError):
        reg.add_text("name: x\n", "api")


def test_the_router_leaves_out_disabled_workflows_and_only_audit_runs_for_an_echo() -> None:
    reg = WorkflowRegistry.load(code=[CORE_AUDIT])
    disabled = Router(reg, disabled={"stripe.payment_succeeded"})
    assert [s.name for s in disabled.route("stripe", "payment_intent.succeeded", EVENT)] == ["core.audit"]
    assert "stripe.payment_succeeded" not in {s.name for s in disabled.all()}
    assert disabled.get("stripe.payment_succeeded", "3") is not None  # a pinned run still finds its version
    seen: list[tuple[str, object]] = []

    def echo(source: str, event: object) -> bool:
        seen.append((source, event))
        return True

    assert [s.name for s in Router(reg, echo=echo).route("stripe", "payment_intent.succeeded", EVENT)] == [
        "core.audit"]
    assert seen == [("stripe", EVENT)]


def test_a_filter_that_cannot_be_evaluated_is_no_match_and_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "odd.yaml").write_text(
        "name: t.odd\nversion: 1\ntrigger:\n  sources: [stripe]\n  event_types: [e.x]\n"
        "  filter: \"abs(event.data.object.n) > `1`\"\n"
        "steps:\n  - id: a\n    uses: core.audit.record\n", encoding="utf-8")
    reg = WorkflowRegistry.load(user_dir=folder, builtin_dir=None)
    errors: list[tuple[object, str]] = []
    assert Router(reg).route("stripe", "e.x", {"data": {"object": {"n": "x"}}}, "evt_1", filter_errors=errors) == []
    assert [spec.name for spec, _ in errors] == ["t.odd"]  # type: ignore[attr-defined]
