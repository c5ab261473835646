"""The admin API's edges through the real ASGI app and a real store: redirects, docs, ids, errors.

One migrated store per database for the module (an engine database initialised by a worker's first
start beside it); each test talks to a fresh app over it through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import Settings, load_settings
from commerce_bridge.entrypoints.http.admin import build_admin_api
from commerce_bridge.entrypoints.http.app import build_app
from tests.support.admin_data import init_engine_database, seed_sensitive
from tests.support.databases import PG_SKIP_REASON, pg_admin_url, postgres_database

TOKEN = "admin-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ERROR_KEYS = {"ok", "error", "errors", "status", "code", "request_id"}


def settings(database_url: str, **overrides: Any) -> Settings:
    return load_settings(database_url=database_url, stripe_webhook_secrets="whsec_admin", admin_tokens=TOKEN,
                         worker_id="admin-api-test", **overrides)


def _store(database_url: str) -> Container:
    s = settings(database_url)
    init_engine_database(s)  # migrates ours too
    return bootstrap(s, "ingress")


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    c = _store(f"sqlite:///{tmp_path_factory.mktemp('admin-api') / 'bridge.sqlite'}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def pg_store() -> Iterator[Container]:
    if not pg_admin_url():
        pytest.skip(PG_SKIP_REASON)
    with postgres_database() as url:
        c = _store(url)
        yield c
        c.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Container:
    """The same test on SQLite and on PostgreSQL (for what the database itself decides)."""
    c: Container = request.getfixturevalue(f"{request.param}_store" if request.param == "sqlite" else "pg_store")
    return c


async def _client(c: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(c)), base_url="http://bridge") as http:
        yield http


@pytest.fixture
async def http(sqlite_store: Container) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(sqlite_store):
        yield client


@pytest.fixture
async def any_http(store: Container) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(store):
        yield client


def fresh_entry(c: Container) -> int:
    return seed_sensitive(c, tag=uuid.uuid4().hex[:8]).dlq_id


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_KEYS and body["ok"] is False and body["status"] == status and body["code"] == code
    return body


# ---- no redirects built from the Host header -------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/dlq/", "/api/v1/workers/", "/api/v1/dlq/1/",
                                  "/api/v1", "/api/v1/", "/healthz/", "/readyz/", "/metrics/"])
@pytest.mark.parametrize("token", [True, False])
async def test_a_trailing_slash_is_a_json_404_and_never_a_redirect_to_the_host_header(
    http: httpx.AsyncClient, path: str, token: bool,
) -> None:
    r = await http.get(path, headers={"Host": "evil.example", **(AUTH if token else {})})
    assert "location" not in r.headers
    if path.startswith("/api/v1/") and not token:
        assert_error(r, 401, "unauthorized")  # the admin API reveals nothing without a token
    else:
        assert_error(r, 404, "not_found")


# ---- the schema and docs pages ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs", "/api/v1/redoc"])
async def test_the_schema_and_docs_pages_need_the_token(http: httpx.AsyncClient, path: str) -> None:
    refused = await http.get(path)
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert_error(await http.get(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    shown = await http.get(path, headers=AUTH)
    assert shown.status_code == 200
    if path.endswith(".json"):
        schema = shown.json()
        assert schema["servers"] == [{"url": "/api/v1"}] and "/dlq/{entry_id}" in schema["paths"]
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    else:
        assert "/api/v1/openapi.json" in shown.text


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs", "/api/v1/redoc"])
async def test_the_schema_and_docs_pages_are_gone_when_admin_docs_is_off(sqlite_store: Container, path: str) -> None:
    c = bootstrap(settings(sqlite_store.settings.database_url, admin_docs=False), "ingress")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(c)), base_url="http://b") as http:
            assert_error(await http.get(path, headers=AUTH), 404, "not_found")
            assert (await http.get("/api/v1/dlq", headers=AUTH)).status_code == 200  # the API itself stays
    finally:
        c.close()


# ---- input the database cannot hold is a 422, not a 500 ---------------------------------------------
BIG = [2**63, 10**23, 0, -1]


@pytest.mark.parametrize("entry_id", BIG)
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/v1/dlq/{id}", None),
    ("POST", "/api/v1/dlq/{id}/replay", None),
    ("POST", "/api/v1/dlq/{id}/discard", {"reason": "no longer needed"}),
    ("GET", "/api/v1/events?before_id={id}", None),
])
async def test_an_id_out_of_a_database_rows_range_is_a_422(
    any_http: httpx.AsyncClient, entry_id: int, method: str, path: str, body: Any,
) -> None:
    r = await any_http.request(method, path.format(id=entry_id), json=body, headers=AUTH)
    errors = assert_error(r, 422, "validation_error")["errors"]
    assert any("entry_id" in e or "before_id" in e for e in errors), errors


async def test_the_largest_id_a_row_can_have_is_a_plain_404(any_http: httpx.AsyncClient) -> None:
    assert_error(await any_http.get(f"/api/v1/dlq/{2**63 - 1}", headers=AUTH), 404, "not_found")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/v1/runs/stripe:evt%00x:wf", None),
    ("GET", "/api/v1/events?source=str%00ipe", None),
    ("GET", "/api/v1/dlq?status=op%00en", None),
    ("POST", "/api/v1/workers/w%001/recover", None),
    ("POST", "/api/v1/dlq/{id}/discard", {"reason": "nul \x00 byte"}),
])
async def test_text_with_a_nul_byte_is_a_422_on_every_database(
    store: Container, any_http: httpx.AsyncClient, method: str, path: str, body: Any,
) -> None:
    entry_id = fresh_entry(store)
    r = await any_http.request(method, path.replace("{id}", str(entry_id)), json=body, headers=AUTH)
    assert_error(r, 422, "validation_error")
    assert store.dead_letters.get(entry_id)["status"] == "open"


@pytest.mark.parametrize("content", [b"\xc5\x0e\xac", b"{not json", b"[1, 2]"])
async def test_a_body_that_is_not_a_json_object_is_a_422(sqlite_store: Container, http: httpx.AsyncClient,
                                                         content: bytes) -> None:
    entry_id = fresh_entry(sqlite_store)
    r = await http.post(f"/api/v1/dlq/{entry_id}/discard", content=content,
                        headers={**AUTH, "content-type": "application/json"})
    assert_error(r, 422, "validation_error")
    assert sqlite_store.dead_letters.get(entry_id)["status"] == "open"


async def test_an_undeclared_method_is_a_json_405_with_allow(http: httpx.AsyncClient) -> None:
    r = await http.delete("/api/v1/dlq/1", headers=AUTH)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


# ---- unexpected exceptions --------------------------------------------------------------------------
async def test_an_unexpected_exception_is_the_json_500_shape_without_details(sqlite_store: Container) -> None:
    api = build_admin_api(sqlite_store)

    @api.get("/boom")
    def boom() -> None:
        raise RuntimeError("card 4111111111111111 of jane.doe@example.com")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://b") as http:
        r = await http.get("/boom", headers=AUTH)
        body = assert_error(r, 500, "internal_error")
        assert "4111" not in r.text and "jane" not in r.text and "RuntimeError" not in r.text
        assert body["error"] == "Internal error; see the server log"
        assert_error(await http.get("/boom"), 401, "unauthorized")  # the token is checked first


async def test_replay_of_a_run_the_engine_no_longer_holds_is_a_404_from_the_start_too(
    store: Container, any_http: httpx.AsyncClient,
) -> None:
    entry_id = fresh_entry(store)  # its engine workflow id names no run the engine holds
    for body in ({"from_start": True}, {"from_start": False}):  # from the start was a 500 (ValueError)
        r = await any_http.post(f"/api/v1/dlq/{entry_id}/replay", json=body, headers=AUTH)
        message = assert_error(r, 404, "not_found")["error"]
        assert "jane.doe" not in message and "[EMAIL]" in message  # it quotes the run id, redacted
    assert store.dead_letters.get(entry_id)["status"] == "open"  # nothing was resolved
