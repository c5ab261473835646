"""Fixtures and helpers for the Stripe emulator tests: a live emulator, an SDK client, a webhook receiver
and the shape comparison against Stripe's example objects (shared/data/stripe/fixtures3.json)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from commerce_bridge.sandbox.runner import PeerServer
from commerce_bridge.sandbox.stripe_emulator.app import StripeEmulatorApp, build_app

FIXTURES_PATH = Path(os.environ.get("CB_SHARED_DIR") or Path(__file__).resolve().parents[3].parent / "shared") / "data" / "stripe" / "fixtures3.json"

# nested dicts whose keys are data, or whose sub-shape depends on a type discriminator
FREE_FORM = {
    "metadata",
    "fraud_details",
    "previous_attributes",
    "last_payment_error",
    "next_action",
    "payment_method_options",
    "amount_details",
    "data.object",
}


def load_fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES_PATH.read_text())["resources"]  # type: ignore[no-any-return]


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def shape_problems(ours: Any, theirs: Any, path: str = "", top: bool = True) -> list[str]:
    """Differences in keys and JSON value types between our object and Stripe's example.

    Top level: the key sets must be equal. Nested objects: every key of Stripe's example must exist in ours
    (except free-form objects such as ``metadata``). Values must have the same JSON type unless one of them
    is null (nullable fields). Arrays compare their first elements when both are non-empty.
    """
    problems: list[str] = []
    if ours is None or theirs is None:
        return problems
    to, tt = json_type(ours), json_type(theirs)
    if to != tt and not {to, tt} <= {"int", "number"}:
        return [f"{path or '<root>'}: type {to} != {tt}"]
    if to == "object":
        name = path.rsplit(".", 1)[-1]
        if path in FREE_FORM or name in FREE_FORM:
            return problems
        missing = set(theirs) - set(ours)
        if missing:
            problems.append(f"{path or '<root>'}: missing keys {sorted(missing)}")
        if top:
            extra = set(ours) - set(theirs)
            if extra:
                problems.append(f"{path or '<root>'}: extra keys {sorted(extra)}")
        for k in set(ours) & set(theirs):
            problems += shape_problems(ours[k], theirs[k], f"{path}.{k}" if path else k, top=False)
    elif to == "array" and ours and theirs:
        problems += shape_problems(ours[0], theirs[0], f"{path}[0]", top=False)
    return problems


def assert_shape(obj: Any, resource: str, fixtures: dict[str, Any]) -> None:
    """Compare the raw JSON the server sent for ``obj`` (the SDK turns decimals into Decimal)."""
    data = json.loads(obj.last_response.body) if getattr(obj, "last_response", None) is not None else obj
    problems = shape_problems(data, fixtures[resource])
    assert not problems, f"{resource}: {problems}"


class WebhookReceiver:
    """A real HTTP endpoint that records Stripe webhook deliveries; can answer failures on demand."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
            self.requests.append((headers, body))
        await send({"type": "http.response.start", "status": 500 if fail else 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]

    def wait_for(self, pred: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.02)
        raise AssertionError(f"webhook condition not met; got {[e['type'] for e in self.events()]}")


@pytest.fixture(scope="module")
def stripe_app() -> StripeEmulatorApp:
    return build_app(webhook_retry_schedule_s=[0.2, 0.4, 0.8])


@pytest.fixture(scope="module")
def stripe_server(stripe_app: StripeEmulatorApp) -> Iterator[PeerServer]:
    with PeerServer(stripe_app) as srv:
        yield srv


@pytest.fixture
def stripe_url(stripe_server: PeerServer) -> str:
    httpx.delete(f"{stripe_server.url}/_sandbox/data").raise_for_status()
    httpx.delete(f"{stripe_server.url}/_sandbox/faults").raise_for_status()
    httpx.post(
        f"{stripe_server.url}/_sandbox/webhooks/options",
        json={"shuffle": False, "shuffle_window_ms": 250, "duplicate_probability": 0.0, "delay_ms": 0},
    ).raise_for_status()
    return stripe_server.url


@pytest.fixture
def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": stripe_url})


@pytest.fixture(scope="module")
def stripe_fixtures() -> dict[str, Any]:
    return load_fixtures()


@pytest.fixture
def stripe_webhook(stripe_url: str) -> Iterator[tuple[WebhookReceiver, str]]:
    """A registered webhook endpoint for all events: (receiver, signing secret)."""
    receiver = WebhookReceiver()
    with PeerServer(receiver) as srv:
        c = stripe.StripeClient("sk_test_emulator", base_addresses={"api": stripe_url})
        ep = c.v1.webhook_endpoints.create(params={"url": srv.url + "/hook", "enabled_events": ["*"]})
        yield receiver, ep.secret  # type: ignore[misc]


def control(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.request(method, f"{url}/_sandbox/{path}", json=body, timeout=30)
    r.raise_for_status()
    return r.json()
