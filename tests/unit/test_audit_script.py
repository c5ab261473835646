"""``make audit`` (scripts/audit.py) reads pip-audit's JSON report and never calls a skipped audit a pass."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"
    spec = importlib.util.spec_from_file_location("cb_audit_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def report(*deps: dict[str, Any]) -> str:  # pip-audit 2.10's --format json
    return json.dumps({"dependencies": list(deps), "fixes": []})


SKIPPED = {"name": "alembic", "skip_reason": "Dependency not found on PyPI and could not be audited: alembic (1.20.1)"}
EDITABLE = {"name": "commerce-bridge", "skip_reason": "distribution marked as editable"}
CLEAN = {"name": "httpx", "version": "0.28.1", "vulns": []}
VULNERABLE = {"name": "setuptools", "version": "65.5.0",
              "vulns": [{"id": "PYSEC-2022-43012", "fix_versions": ["65.5.1"], "aliases": ["CVE-2022-40897"]}]}


def test_a_mirror_that_skips_every_package_is_not_a_pass(audit: ModuleType) -> None:
    # what pip-audit itself reports as "No known vulnerabilities found", exit 0
    skipped = audit.read_report("pypi", report(SKIPPED, EDITABLE), "")
    unreachable = audit.read_report("osv", "", "Traceback...\nrequests.exceptions.ConnectionError: no route\n")
    status, lines = audit.verdict([skipped, unreachable])
    assert status == audit.NOT_AUDITED == 3
    assert "did NOT run" in lines[0] and "not found on PyPI" in lines[1] and "no route" in lines[2]


def test_known_vulnerabilities_fail_with_the_fixing_versions(audit: ModuleType) -> None:
    status, lines = audit.verdict([audit.read_report("pypi", report(CLEAN, VULNERABLE, SKIPPED, EDITABLE), "")])
    assert status == 1
    assert any("VULNERABLE setuptools 65.5.0: PYSEC-2022-43012 (fixed in 65.5.1)" in line for line in lines)
    assert any("not audited (1): alembic" in line for line in lines)  # the editable project is not counted


def test_a_clean_audit_passes_and_the_first_service_that_answers_counts(audit: ModuleType) -> None:
    down = audit.read_report("pypi", "", "ConnectionError")
    status, lines = audit.verdict([down, audit.read_report("osv", report(CLEAN, EDITABLE), "")])
    assert status == 0 and lines[0] == "make audit: 1 packages audited against osv" and "no known" in lines[-1]
