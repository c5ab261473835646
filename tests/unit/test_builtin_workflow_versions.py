"""A built-in workflow file never changes under the same version: runs in flight are pinned to its text.

A run records the sha256 of the workflow text it started on; after an upgrade that changed a built-in
file without a new ``version``, runs in flight on the old text park ("changed since this run
started"). This table makes that change visible in review: it holds the digest of every file in
``commerce_bridge/workflows/builtin_files/`` by ``(name, version)``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from commerce_bridge.workflows.loader import load_file
from commerce_bridge.workflows.registry import BUILTIN_DIR

BUILTIN_DIGESTS: dict[tuple[str, str], str] = {
    ("clarity.account_changed", "1"): "dcaadcb8e3e83cfe51017984a46f81235eb3758d8e9f600cd32b61622cae1960",
    ("clarity.product_changed", "1"): "9d11c6b282bf5d7714edd8613adad5f88a7d1d883631273b22be596c67d07f8c",
    ("clarity.order_shipped", "2"): "e5cb9aa19bfc381f8fd4d6a22083cb48177a56e5a4c67a7c14656631093e68ee",
    ("clarity.order_to_cash", "3"): "60dd8fb5b3106920f20065b1d7a2154c2f48f176ab8caecb15d76ad7b357be17",
    ("clarity.return_refunded", "1"): "e02deaf6845621471547576babd49011d58ebdc286f2fe41cc64bef061daed61",
    ("clarity.order_voided", "1"): "eb5f5cd2d520c0610376554abc715b9e3389026195b26a02f3765d27125655f6",
    ("erp.customer_changed", "1"): "6b0ac0596864309e6e00781f1d973acd8f2d4ef6f018ba732cd8e4cf84d941d3",
    ("erp.item_changed", "1"): "170d5238174ce9700fabfafcf7b3d6532489558c32e804158fc3528119f24d4c",
    ("erp.stock_changed", "1"): "3fbb0fd15771c2b54e7eaf21cd026a0f171a55e2c3b17df756adb3cb5c51c5d8",
    ("stripe.customer_changed", "2"): "fce3030ed361f01890fec9e3b1937ff3c186966340000d8f2a438f15ad0c189d",
    ("stripe.dispute_evidence", "1"): "77e895f6d7070061c3323dd329eb137d0941466875e97c41bedd1254e7dec79a",
    ("stripe.dispute_recorded", "1"): "06350fc286202eea8ec5acea5e6f02267b15505ac3b1dbfcdcea88815c9cbf32",
    ("stripe.early_fraud_warning", "1"): "85284fbf433fceb6ada0038f4f24f2731b6409ee8678351bbdc41108eff2c5fb",
    ("stripe.payment_succeeded", "3"): "da9ec32d4ffbd998571dc0ec6c5a982249a9efd29b8d58a0887b1c1371da491b",
    ("stripe.payout_reconciled", "1"): "04b0320ae611cee990a6ec128a67f4bd133b07a9f93f037a2bc4adeb0a28cb90",
    ("stripe.product_changed", "1"): "fc884e977072ee44a292cdc6cd6be6b5f54893a81dce02b0dbe788ff65c2bfe6",
    ("stripe.refund_recorded", "2"): "493374200a2450b364c347292997240d03b1c78231598b84a9cc6da029fd5dd3",
}


def version_problems(folder: Path, table: dict[tuple[str, str], str]) -> list[str]:
    """Files whose text is not the one ``table`` records for their ``(name, version)``, and stale entries."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        loaded = load_file(path)
        key = (loaded.spec.name, loaded.spec.version)
        seen.add(key)
        recorded = table.get(key)
        if recorded == loaded.digest:
            continue
        what = "has no entry" if recorded is None else f"has sha256 {loaded.digest}, not {recorded}"
        problems.append(
            f"{path.name}: {key} {what}: bump `version` in {path.name} when you change its steps, then update "
            f"this table ({__name__}.BUILTIN_DIGESTS). Any change to the text, comments included, parks the "
            "runs in flight on the old text of that version."
        )
    problems += [f"{key}: no built-in file has this name and version any more; remove its entry"
                 for key in sorted(table.keys() - seen)]
    return problems


def test_every_builtin_file_has_the_digest_recorded_for_its_version() -> None:
    problems = version_problems(BUILTIN_DIR, BUILTIN_DIGESTS)
    assert not problems, "\n".join(problems)


def test_a_builtin_file_changed_under_the_same_version_or_added_without_an_entry_is_reported(
        tmp_path: Path) -> None:
    folder = tmp_path / "builtin"
    shutil.copytree(BUILTIN_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    edited = folder / "clarity.order_voided.yaml"
    edited.write_text(edited.read_text().replace("steps:\n", "steps:\n  # a changed step list\n", 1))
    (folder / "extra.yaml").write_text(
        (folder / "stripe.payment_succeeded.yaml").read_text().replace("name: stripe.payment_succeeded",
                                                                      "name: stripe.payment_extra"))
    problems = version_problems(folder, BUILTIN_DIGESTS)
    assert len(problems) == 2, problems
    assert problems[0].startswith("clarity.order_voided.yaml: ('clarity.order_voided', '1') has sha256 ")
    assert "bump `version` in clarity.order_voided.yaml when you change its steps, then update this table" \
        in problems[0]
    assert problems[1].startswith("extra.yaml: ('stripe.payment_extra', '3') has no entry: bump `version` in "
                                  "extra.yaml")
    # the version bumped and the table updated: clean again
    bumped = edited.read_text().replace("version: 1", "version: 2", 1)
    edited.write_text(bumped)
    (folder / "extra.yaml").unlink()
    table = {**BUILTIN_DIGESTS, ("clarity.order_voided", "2"): load_file(edited).digest}
    del table[("clarity.order_voided", "1")]
    assert version_problems(folder, table) == []
