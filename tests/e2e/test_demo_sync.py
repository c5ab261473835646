"""`commerce-bridge demo-sync` (issue 14, point 8), run as a user runs it: a customer edited in Clarity shows changed
in Stripe and ERPNext, a price changed in ERPNext shows in Clarity and Stripe; exit 0 only if all three agree after
every change (the command checks each system through its own API)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_sync_ends_with_the_three_systems_in_agreement() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")} | {"COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-m", "commerce_bridge.entrypoints.cli", "demo-sync", "--timeout", "40"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("✓") == 4 and "✗" not in out, out
    assert "Ada King, +14155550199" in out  # the edit, as Stripe and ERPNext hold it (one row per system)
    assert out.count("Ada King, +14155550199") == 3, out
    assert out.count("$54.50") >= 3 and "1 archived" in out, out
    assert "all three systems agree after every change" in out
