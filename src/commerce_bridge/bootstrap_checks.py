"""``doctor``'s checks of the outside connections: the engine's database, the webhook secrets, the admin tokens,
and a login or one cheap read against each configured system (Stripe, Clarity, ERPNext). Each result says in
words what is wrong and which setting to look at; no secret is ever in it."""

from __future__ import annotations

from typing import Any

from commerce_bridge.config import Settings
from commerce_bridge.store import db as store_db


def connection_checks(s: Settings) -> list[tuple[str, bool, str]]:
    """Check each configured outside connection; each result says what is wrong in words."""
    import httpx

    results: list[tuple[str, bool, str]] = []
    engine_url = s.effective_engine_database_url()
    try:
        eng = store_db.make_engine(engine_url)
        with eng.connect() as conn:
            store_db.ping(conn)
        eng.dispose()
        results.append(("engine database", True, "reachable"))
    except Exception as exc:
        results.append(("engine database", False, f"cannot connect to CB_ENGINE_DATABASE_URL: {exc}"))
    sources = [n for n, v in (("stripe", s.stripe_webhook_secrets), ("clarity", s.clarity_webhook_secrets),
                              ("erp", s.erp_webhook_secrets)) if v]
    results.append(("webhook sources", bool(sources),
                    ", ".join(sources) if sources else "no webhook secret set: ingress would refuse to start"))
    results.append(("admin API", bool(s.admin_tokens),
                    f"{len(s.admin_tokens)} token(s)" if s.admin_tokens else "CB_ADMIN_TOKENS empty: /api/v1 is closed"))

    def probe(name: str, setting: str, fn: Any) -> None:
        try:
            ok, detail = fn()
        except httpx.HTTPError as exc:
            ok, detail = False, f"cannot reach {setting}: {type(exc).__name__}: {exc}"
        results.append((name, ok, detail))

    with httpx.Client(timeout=5.0) as http:
        if s.stripe_api_key:
            key = s.stripe_api_key.get_secret_value()
            base = (s.stripe_api_base or "https://api.stripe.com").rstrip("/")

            def stripe_probe() -> tuple[bool, str]:
                r = http.get(f"{base}/v1/balance", headers={"Authorization": f"Bearer {key}"})
                if r.status_code == 200:
                    return True, f"{base}: API key accepted"
                if r.status_code in (401, 403):
                    return False, f"{base} rejected CB_STRIPE_API_KEY (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("stripe", "CB_STRIPE_API_BASE", stripe_probe)
        if s.clarity_base_url:
            base = s.clarity_base_url.rstrip("/")

            def clarity_probe() -> tuple[bool, str]:
                pw = s.clarity_password.get_secret_value() if s.clarity_password else ""
                r = http.post(f"{base}/auth/identity", json={"UserName": s.clarity_user or "", "Password": pw})
                if r.status_code == 200:
                    return True, f"{base}: logged in as {s.clarity_user}"
                if r.status_code in (401, 403):
                    return False, f"{base} refused CB_CLARITY_USER / CB_CLARITY_PASSWORD (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("clarity", "CB_CLARITY_BASE_URL", clarity_probe)
        if s.erp_base_url:
            base = s.erp_base_url.rstrip("/")

            def erp_probe() -> tuple[bool, str]:
                secret = s.erp_api_secret.get_secret_value() if s.erp_api_secret else ""
                r = http.get(f"{base}/api/resource/Customer", params={"limit_page_length": 1},
                             headers={"Authorization": f"token {s.erp_api_key}:{secret}"})
                if r.status_code == 200:
                    return True, f"{base}: API key accepted"
                if r.status_code in (401, 403):
                    return False, f"{base} refused CB_ERP_API_KEY / CB_ERP_API_SECRET (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("erp", "CB_ERP_BASE_URL", erp_probe)
    return results
