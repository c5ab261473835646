"""``commerce-bridge doctor`` against real HTTP peers: its lines quote the URL settings, credentials masked."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli import app
from commerce_bridge.sandbox.runner import PeerServer


async def refuse(request: Request) -> JSONResponse:
    return JSONResponse({"error": "who are you"}, status_code=401)


def test_doctor_lines_name_each_peer_without_its_credentials(tmp_path: Path) -> None:
    routes = [Route("/{path:path}", refuse, methods=["GET", "POST"])]
    with PeerServer(Starlette(routes=routes)) as peer:
        host = peer.url.removeprefix("http://")
        env = {
            "CB_DATABASE_URL": f"sqlite:///{tmp_path / 'b.sqlite'}",
            "CB_STRIPE_API_KEY": "sk_test_doctor",
            "CB_STRIPE_API_BASE": f"http://stripe-user:stripe-pw-S1@{host}/stripe-base?token=stripe-tok-S2",
            "CB_CLARITY_BASE_URL": f"http://{host}/DesktopModules/API-Admin?access_token=clarity-tok-S3",
            "CB_CLARITY_USER": "api", "CB_CLARITY_PASSWORD": "clarity-pw-S4",
            "CB_ERP_BASE_URL": f"http://erp-token-S5@{host}/erp-root",
            "CB_ERP_API_KEY": "k", "CB_ERP_API_SECRET": "erp-secret-S6",
            "COLUMNS": "400",  # one line per check, nothing wrapped
        }
        result = CliRunner().invoke(app, ["doctor"], env=env)
    out = result.output
    assert result.exit_code == 1, out  # every peer refuses the credentials
    assert [s for s in ("-S1", "-S2", "-S3", "-S4", "-S5", "-S6") if s in out] == [], out
    assert f"http://stripe-user:********@{host}/stripe-base?token=******** rejected CB_STRIPE_API_KEY" in out
    assert f"http://{host}/DesktopModules/API-Admin?access_token=******** refused CB_CLARITY_USER" in out
    assert f"http://********@{host}/erp-root refused CB_ERP_API_KEY" in out
