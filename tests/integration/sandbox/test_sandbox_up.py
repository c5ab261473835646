"""``sandbox up`` and the per-peer CLI commands, started for real (in-process and as subprocesses)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.core import ADMIN_BASE
from commerce_bridge.sandbox.erp_sim.app import DEFAULT_API_KEY, DEFAULT_API_SECRET
from commerce_bridge.sandbox.runner import free_port
from commerce_bridge.sandbox.up import RunningPeers, start_peers


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[RunningPeers]:
    running = start_peers(state_dir=str(tmp_path / "state"), port=0)
    try:
        yield running
    finally:
        running.stop()


def test_up_starts_every_peer_with_state_files(peers: RunningPeers, tmp_path: Path) -> None:
    with httpx.Client(base_url=peers.urls["clarity"] + ADMIN_BASE) as clarity:
        assert clarity.post(
            "/auth/identity", json={"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}
        ).is_success
        assert clarity.get("/Ordering/SalesOrders").json()["TotalCount"] == 0
    erp = httpx.get(
        peers.urls["erp"] + "/api/resource/Customer",
        headers={"Authorization": f"token {DEFAULT_API_KEY}:{DEFAULT_API_SECRET}"},
    )
    assert erp.json() == {"data": []}
    host, port = peers.urls["smtp"].removeprefix("smtp://").split(":")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hello"
    message.set_content("hi")
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.send_message(message)
    assert httpx.get(peers.urls["mail"] + "/messages").json()["count"] == 1
    files = {p.name for p in (tmp_path / "state").iterdir()}
    assert {"clarity.sqlite", "erp.sqlite", "mail.sqlite"} <= files
    assert any(line.startswith("Clarity (CEF)") for line in peers.lines)
    assert any(line.startswith("Stripe emulator") for line in peers.lines)


def test_up_wires_the_storefront_to_the_stripe_emulator(peers: RunningPeers) -> None:
    if "stripe" not in peers.urls:
        pytest.fail(
            "the Stripe emulator did not start: " + next(line for line in peers.lines if "Stripe" in line)
        )
    cart = {
        "Email": "ann@example.com",
        "FirstName": "Ann",
        "LastName": "Lee",
        "PaymentMode": "stripe",
        "PaymentMethod": "pm_card_visa",
        "Lines": [{"Sku": "SKU-1", "Quantity": 2, "UnitPrice": "12.50"}],
    }
    result = httpx.post(peers.urls["clarity"] + "/_sandbox/checkout", json=cart, timeout=20)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["PaymentIntentStatus"] == "succeeded" and body["StatusKey"] == "Full Payment Received"
    assert body["PaymentIntentID"].startswith("pi_")


def _wait_for_line(process: subprocess.Popen[str], pattern: str, timeout: float = 20.0) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    process.kill()
    raise AssertionError(f"no line matching {pattern!r}; got {lines}")


def _run(module: str, *args: str) -> subprocess.Popen[str]:
    code = f"import typer; from {module} import command; typer.run(command)"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _interrupt(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    return out


def test_up_command_prints_urls_and_credentials_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = _run("commerce_bridge.sandbox.up", "--port", "0", "--state-dir", str(tmp_path))
    lines = _wait_for_line(process, "Press Ctrl-C")
    text = "\n".join(lines)
    assert DEFAULT_PASSWORD in text and f"token {DEFAULT_API_KEY}:{DEFAULT_API_SECRET}" in text
    clarity_url = re.search(r"Clarity \(CEF\)\s+(http://\S+?)/DesktopModules", text)
    assert clarity_url is not None
    assert httpx.get(clarity_url.group(1) + "/_sandbox/health").json()["persistent"] is True
    assert "Sandbox stopped." in _interrupt(process)


@pytest.mark.parametrize(
    ("module", "args", "banner", "probe"),
    [
        (
            "commerce_bridge.sandbox.clarity_sim.cli",
            ["--user", "u1", "--password", "p1"],
            "Clarity simulator",
            "/_sandbox/health",
        ),
        (
            "commerce_bridge.sandbox.erp_sim.cli",
            ["--api-key", "k1", "--api-secret", "s1"],
            "ERPNext simulator",
            "/api/method/ping",
        ),
        ("commerce_bridge.sandbox.mailbox.cli", ["--smtp-port", "0"], "Mail catcher", "/messages"),
    ],
)
def test_each_peer_command_serves_on_its_port_until_ctrl_c(
    module: str, args: list[str], banner: str, probe: str
) -> None:
    port = free_port()
    process = _run(module, "--port", str(port), *args)
    lines = _wait_for_line(process, banner)
    assert httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=10).status_code == 200, lines
    _interrupt(process)
