"""POST /webhooks/{source} through the real ASGI app and a real database: every answer the issue lists."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import load_settings
from commerce_bridge.domain.signature import sign
from commerce_bridge.entrypoints.http.app import build_app

STRIPE_SECRET = "whsec_ingress_test"
CLARITY_SECRET = "clarity-secret"
ERROR_KEYS = {"ok", "error", "errors", "status", "code", "request_id"}


def event(event_id: str, **extra: Any) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded", **extra}).encode()


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, ts: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": sign(body, secret, int(time.time()) if ts is None else ts),
            "Content-Type": "application/json"}


def make_container(database_url: str, migrate: bool = True, **overrides: Any) -> Container:
    settings = load_settings(database_url=database_url, stripe_webhook_secrets=f"{STRIPE_SECRET},whsec_rotated",
                             clarity_webhook_secrets=CLARITY_SECRET, admin_tokens="admintok", **overrides)
    return bootstrap(settings, "ingress", migrate=migrate)


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    c = make_container(database_url, max_body_bytes=4096)
    transport = httpx.ASGITransport(app=build_app(c), client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        yield http, c
    if c.committer:
        await c.committer.stop()
    c.close()


async def test_valid_event_is_stored_before_the_200(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, c = client
    body = event("evt_ok_1")
    r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "duplicate": False, "event_id": "evt_ok_1"}
    stored = c.inbox.get("stripe", "evt_ok_1")
    assert stored is not None and stored.body == body and stored.status == "received"


async def test_same_event_again_is_a_duplicate_and_stored_once(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, c = client
    body = event("evt_dup")
    first = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    # Stripe re-signs each retry with a new timestamp; the event id is what de-duplicates.
    again = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body, ts=int(time.time()) - 5))
    assert first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert c.inbox.backlog() == 1


async def test_rotated_secret_is_accepted(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, _ = client
    body = event("evt_rot")
    r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body, secret="whsec_rotated"))
    assert r.status_code == 200


@pytest.mark.parametrize("case", ["missing", "malformed", "wrong", "stale"])
async def test_bad_signatures_get_400_with_the_reason_and_store_nothing(
    client: tuple[httpx.AsyncClient, Container], case: str
) -> None:
    http, c = client
    body = event(f"evt_bad_{case}")
    headers = {
        "missing": {},
        "malformed": {"Stripe-Signature": "this is not a signature"},
        "wrong": stripe_headers(body, secret="whsec_wrong"),
        "stale": stripe_headers(body, ts=int(time.time()) - 301),
    }[case]
    r = await http.post("/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400
    doc = r.json()
    assert set(doc) == ERROR_KEYS and doc["code"] == "signature_invalid" and doc["ok"] is False
    assert doc["error"]
    assert c.inbox.get("stripe", f"evt_bad_{case}") is None


async def test_body_over_the_limit_gets_413(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, c = client
    body = event("evt_big", padding="x" * 5000)
    r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert c.inbox.backlog() == 0


@pytest.mark.parametrize("body, reason", [
    (b"not json at all", "not valid JSON"), (b"[1,2]", "JSON object"), (b'{"type":"x"}', "no 'id'"),
    (b'{"id": 12}', "no 'id'"),
    # duplicate keys: other readers (and the signer's side) may take the first "id", we would take the last
    (b'{"id": "evt_a", "type": "x", "id": "evt_b"}', "the key 'id' twice"),
    (b'{"id": "evt_dk", "data": {"amount": 1, "amount": 1000}}', "the key 'amount' twice"),
    # deeper than CB_MAX_JSON_DEPTH (32 by default): valid JSON the engine could not serialise
    (b'{"id": "evt_deep", "type": "x", "d": ' + b"[" * 500 + b"]" * 500 + b"}", "nested deeper than 32"),
    (b'{"id": "evt_d33", "d": ' + b"[" * 32 + b"]" * 32 + b"}", "nested deeper than 32"),
    (b'{"id": "evt_nul\\u0000x", "type": "x"}', "unprintable"),
    (b'{"id": "evt_t", "type": "charge.\\u0007"}', "unprintable"),
    (b'{"id": "evt_nan", "amount": NaN}', "not valid JSON"),
    (b'{"id": "evt_s", "note": "\\ud800"}', "surrogate"),
    (b'{"id": "evt_\xff"}', "not UTF-8"),
])
async def test_signed_but_unusable_bodies_get_400(
    client: tuple[httpx.AsyncClient, Container], body: bytes, reason: str
) -> None:
    http, c = client
    r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    assert reason in r.json()["error"]
    assert c.inbox.backlog() == 0


async def test_the_deepest_accepted_body_is_stored(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, c = client
    body = b'{"id": "evt_d31", "d": ' + b"[" * 31 + b"]" * 31 + b"}"  # 32 levels with the top object
    r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200 and c.inbox.get("stripe", "evt_d31") is not None


async def test_unknown_source_gets_404(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, _ = client
    body = event("evt_x")
    r = await http.post("/webhooks/shopify", content=body, headers=stripe_headers(body))
    assert r.status_code == 404 and r.json()["code"] == "unknown_source"
    # erp has no secret configured in this test, so it is unknown too
    r = await http.post("/webhooks/erp", content=body, headers=stripe_headers(body))
    assert r.status_code == 404


async def test_get_is_not_allowed(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, _ = client
    r = await http.get("/webhooks/stripe")
    assert r.status_code == 405 and set(r.json()) == ERROR_KEYS


async def test_clarity_uses_x_bridge_signature(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, c = client
    body = event("cl_1")
    ok = await http.post("/webhooks/clarity", content=body,
                         headers={"X-Bridge-Signature": sign(body, CLARITY_SECRET, int(time.time()))})
    assert ok.status_code == 200
    bad = await http.post("/webhooks/clarity", content=event("cl_2"),
                          headers={"Stripe-Signature": sign(event("cl_2"), CLARITY_SECRET, int(time.time()))})
    assert bad.status_code == 400 and "x-bridge-signature" in bad.json()["error"]
    assert c.inbox.get("clarity", "cl_1") is not None


async def test_concurrent_deliveries_share_commits(client: tuple[httpx.AsyncClient, Container]) -> None:
    import asyncio

    http, c = client
    bodies = [event(f"evt_c{i}") for i in range(200)]
    results = await asyncio.gather(*(http.post("/webhooks/stripe", content=b, headers=stripe_headers(b))
                                     for b in bodies))
    assert all(r.status_code == 200 for r in results)
    assert c.inbox.backlog() == 200
    assert c.committer is not None and c.committer.batches < 200  # grouped


async def test_database_unavailable_gets_503(tmp_path: Any) -> None:
    c = make_container("postgresql+psycopg://nobody@127.0.0.1:1/none", migrate=False)
    transport = httpx.ASGITransport(app=build_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        body = event("evt_503")
        r = await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
    if c.committer:
        await c.committer.stop()


async def test_allowlist_uses_forwarded_for_only_from_trusted_proxies(database_url: str) -> None:
    c = make_container(database_url, clarity_allowed_cidrs="198.51.100.0/24", trusted_proxies="10.0.0.0/8")
    body = event("cl_allow")
    headers = {"X-Bridge-Signature": sign(body, CLARITY_SECRET, int(time.time()))}

    async def post(peer: str, xff: str | None) -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app(c), client=(peer, 1234))
        h = dict(headers, **({"X-Forwarded-For": xff} if xff else {}))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            return await http.post("/webhooks/clarity", content=body, headers=h)

    assert (await post("203.0.113.9", None)).status_code == 403
    # an untrusted peer cannot claim an allowed address
    assert (await post("203.0.113.9", "198.51.100.5")).status_code == 403
    # through a trusted proxy the forwarded client address counts
    denied = await post("10.1.2.3", "198.51.100.5, 203.0.113.50")
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert (await post("10.1.2.3", "203.0.113.50, 198.51.100.5")).status_code == 200
    assert (await post("198.51.100.77", None)).json()["duplicate"] is True
    if c.committer:
        await c.committer.stop()
    c.close()


async def test_admin_api_needs_a_token_and_lists_events(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, _ = client
    body = event("evt_admin")
    await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert (await http.get("/api/v1/events")).status_code == 401
    bad = await http.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and set(bad.json()) == ERROR_KEYS
    ok = await http.get("/api/v1/events", headers={"Authorization": "Bearer admintok"}, params={"source": "stripe"})
    assert ok.status_code == 200
    assert [e["event_id"] for e in ok.json()["events"]] == ["evt_admin"]
    assert ok.json()["events"][0]["status"] == "received"


async def test_health_metrics_and_error_shape(client: tuple[httpx.AsyncClient, Container]) -> None:
    http, _ = client
    assert (await http.get("/healthz")).json()["ok"] is True
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = event("evt_m")
    await http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    text = (await http.get("/metrics")).text
    assert 'cb_webhook_deliveries_total{outcome="accepted",source="stripe"} 1.0' in text
    assert "cb_ingest_latency_seconds_bucket" in text and "cb_inbox_backlog 1.0" in text
    missing = await http.get("/nowhere")
    assert missing.status_code == 404 and set(missing.json()) == ERROR_KEYS
