"""The CLI end-to-end modules' sandbox peers (Clarity and ERPNext simulators, Stripe emulator, in this process), the
bridge's environment for them (migrated), and ``commerce-bridge backfill`` run as a subprocess: to its JSON summary,
or killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commerce_bridge.sandbox.clarity_sim.app import DEFAULT_PASSWORD, DEFAULT_USER
from commerce_bridge.sandbox.clarity_sim.app import build_app as build_clarity
from commerce_bridge.sandbox.erp_sim.app import build_app as build_erp
from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import build_app as build_stripe
from commerce_bridge.store import db as store_db
from commerce_bridge.store.cursors import SqlCursorStore
from tests.support.processes import CLI, bridge_env, cli, migrate

CLARITY_BASE = "/DesktopModules/ClarityEcommerce/API-Admin"


@dataclass(frozen=True)
class Keys:
    """A module's credentials for the peers: the ERPNext API key and secret, the Stripe secret key."""

    erp_key: str
    erp_secret: str
    stripe_key: str

    @property
    def erp_auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.erp_key}:{self.erp_secret}"}

    @property
    def stripe_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stripe_key}"}


@contextmanager
def cli_peers(keys: Keys) -> Iterator[dict[str, str]]:
    """The three peers started: their URLs (Clarity's without its API base, ``CLARITY_BASE``)."""
    with (PeerServer(build_clarity()) as clarity, PeerServer(build_stripe()) as stripe,
          PeerServer(build_erp(api_key=keys.erp_key, api_secret=keys.erp_secret)) as erp):
        yield {"clarity": clarity.url, "stripe": stripe.url, "erp": erp.url}


def peers_env(peers: dict[str, Any], keys: Keys, database_url: str, tmp_path: Path,
              **extra: str) -> dict[str, str]:
    """The environment of a bridge CLI subprocess for ``peers`` and ``database_url`` (plus ``extra`` variables),
    its database migrated."""
    e = bridge_env(database_url=database_url, stripe_api_key=keys.stripe_key, stripe_api_base=peers["stripe"],
                   clarity_base_url=peers["clarity"] + CLARITY_BASE, clarity_user=DEFAULT_USER,
                   clarity_password=DEFAULT_PASSWORD, erp_base_url=peers["erp"], erp_api_key=keys.erp_key,
                   erp_api_secret=keys.erp_secret)
    e.update(extra)
    migrate(e, tmp_path)
    return e


def backfill_json(env: dict[str, str], kind: str, *args: str, source: str = "clarity", code: int = 0,
                  timeout: float = 300) -> dict[str, Any]:
    """``backfill <kind> --from <source> --json <args>``: its exit code must be ``code``; its summary."""
    out = cli(env, "backfill", kind, "--from", source, "--json", *args, timeout=timeout)
    assert out.returncode == code, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


def kill_mid_backfill(env: dict[str, str], database_url: str, kind: str, page_size: int, pages: int = 2) -> Any:
    """Start ``backfill <kind> --from clarity --json --page-size <page_size>``, SIGKILL it (no clean-up of any kind)
    once its cursor says ``pages`` pages are done (or after 120 s); the cursor's ``position`` then."""
    cursors = SqlCursorStore(store_db.make_engine(database_url))
    cursor = f"backfill.{kind}.clarity"
    proc = subprocess.Popen([*CLI, "backfill", kind, "--from", "clarity", "--json", "--page-size", str(page_size)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (json.loads(cursors.get(cursor) or "{}").get("position") or 0) >= pages:
                break
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return json.loads(cursors.get(cursor) or "{}")["position"]
