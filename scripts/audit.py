"""``make audit``: pip-audit on ``.venv``, and a plain answer when the advisory database is out of reach.

pip-audit asks PyPI's JSON API (then, here, OSV) for the advisories of each installed version. Where
that API is not reachable, or a mirror stands in for PyPI without per-version pages, pip-audit
skips every package ("could not be audited") and still prints "No known vulnerabilities found"
with exit status 0. This script reads its JSON report instead and tells the three cases apart.

Exit status
-----------
0  every package that could be looked up has no known vulnerability (skipped ones are listed)
1  known vulnerabilities (listed with the versions that fix them)
3  the audit did not run: no service answered for any package (the reason of each is printed)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("pypi", "osv")
NOT_AUDITED = 3


@dataclass
class Outcome:
    service: str
    audited: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def vulnerable(self) -> list[dict[str, Any]]:
        return [d for d in self.audited if d.get("vulns")]


def read_report(service: str, stdout: str, stderr: str) -> Outcome:
    """What one pip-audit run (``--format json``) found, or why it found nothing."""
    try:
        report = json.loads(stdout)
    except ValueError:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return Outcome(service, error=lines[-1] if lines else "pip-audit printed no report")
    # our own project (installed editable) is not on PyPI: nothing to look up
    deps = [d for d in report.get("dependencies", []) if "editable" not in d.get("skip_reason", "")]
    out = Outcome(service, audited=[d for d in deps if "skip_reason" not in d],
                  skipped=[d for d in deps if "skip_reason" in d])
    if not out.audited:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in out.skipped}) or ["no package to audit"]
        out.error = f"no package could be audited ({'; '.join(reasons)})"
    return out


def audit(service: str) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--format", "json",
         "--progress-spinner", "off", "--timeout", "15", "--vulnerability-service", service],
        capture_output=True, text=True, check=False,
    )
    return read_report(service, proc.stdout, proc.stderr)


def verdict(outcomes: list[Outcome]) -> tuple[int, list[str]]:
    """Exit status and the lines to print, from the runs in order (the first that audited anything counts)."""
    done = next((o for o in outcomes if o.audited), None)
    if done is None:
        lines = ["make audit: the audit did NOT run: no vulnerability database answered for any package."]
        lines += [f"  {o.service}: {o.error}" for o in outcomes]
        lines.append("  (Run it where pypi.org's JSON API or api.osv.dev is reachable.)")
        return NOT_AUDITED, lines
    lines = [f"make audit: {len(done.audited)} packages audited against {done.service}"]
    if done.skipped:
        names = ", ".join(f"{d['name']} {d.get('version', '')}".strip() for d in done.skipped)
        lines.append(f"  not audited ({len(done.skipped)}): {names}")
    for dep in done.vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"  VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    if done.vulnerable:
        return 1, lines
    lines.append("  no known vulnerabilities")
    return 0, lines


def main() -> int:
    outcomes: list[Outcome] = []
    for service in SERVICES:
        outcomes.append(audit(service))
        if outcomes[-1].audited:
            break
    status, lines = verdict(outcomes)
    print("\n".join(lines), file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
