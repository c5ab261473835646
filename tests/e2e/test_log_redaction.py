"""Nothing leaks through the logs (issue 9, point 7): a real ``commerce-bridge serve`` process is fed
card numbers, e-mails, phone numbers, street addresses and URL tokens, in events and in the errors they
cause, and its whole output (stdout and stderr) holds none of them and is JSON, line by line.

The errors: every event is forwarded (``core.forward``) to a receiver that refuses it with an answer
echoing the personal data, so a step fails with a message carrying it and the run parks; one event is
nested 600 levels deep, which the durable engine cannot serialise (DBOS logs the whole input when
that happens); a request uvicorn cannot parse; a webhook whose signature is wrong.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from commerce_bridge.domain.signature import sign
from tests.support.processes import BridgeProcess, bridge_env, free_port

pytestmark = pytest.mark.slow

STRIPE_SECRET = "whsec_e2e_logs"
CLARITY_SECRET = "clarity_e2e_logs_secret"
URL_TOKEN = "Zq9xT0kenVal"
RECEIVER_TOKEN = "Rcv7SecretTok"

CARDS = ["4242 4242 4242 4242", "5555-5555-5555-4444", "4000056655665556", "378282246310005"]
EMAILS = ["jane.roe@example.org", "billing+vip@shop.example", "ops.lead@bridge.example"]
PHONES = ["+1 415 555 0123", "+14155550188", "+44 20 7946 0958", "020 7946 0958", "(415) 555-0199", "0612345678"]
ADDRESSES = ["221B Baker Street", "1600 Amphitheatre Pkwy", "Keizersgracht 123", "NW1 6XE"]
TOKENS = [URL_TOKEN, RECEIVER_TOKEN, "jane.roe%40example.org"]
PLANTED = [*CARDS, *EMAILS, *PHONES, *ADDRESSES, *TOKENS]


def digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def stripe_event(event_id: str, *, deep: bool = False) -> bytes:
    customer = {
        "id": "cus_logs1", "object": "customer", "email": EMAILS[0], "name": "Jane Roe", "phone": PHONES[0],
        "address": {"line1": ADDRESSES[0], "city": "London", "postal_code": ADDRESSES[3], "country": "GB"},
        "shipping": {"phone": PHONES[3], "address": {"line1": ADDRESSES[2], "country": "NL"}},
        "metadata": {
            # free text: what a support agent types; only what has a recognisable shape can be found here
            "note": f"paid with {CARDS[0]}, backup {CARDS[1]}; write to {EMAILS[1]} or call {PHONES[2]}",
            "return_url": f"https://shop.example/return?email={TOKENS[2]}&token={URL_TOKEN}",
            "customer_phone": PHONES[5],
        },
        "invoice_settings": {"default_payment_method": {"card_number": CARDS[2]}},
    }
    doc: dict[str, Any] = {
        "id": event_id, "object": "event", "type": "customer.updated", "api_version": "2026-10-28",
        "created": int(time.time()), "livemode": False, "data": {"object": customer},
    }
    body = json.dumps(doc)
    if deep:  # valid JSON, but too deep for the engine's serialiser (pickle's recursion limit)
        body = body[:-1] + ', "nested": ' + "[" * 600 + json.dumps(PHONES[1]) + "]" * 600 + "}"
    return body.encode()


def clarity_event(event_id: str) -> bytes:
    return json.dumps({
        "id": event_id, "type": "order.updated", "OrderID": 4711, "CustomerKey": "CUST-9",
        "Email1": EMAILS[2], "Phone1": PHONES[4], "Street1": ADDRESSES[1], "PostalCode": "94043",
        "Notes": f"card on file {CARDS[3]}; callback {PHONES[1]}",
    }).encode()


class Receiver(BaseHTTPRequestHandler):
    """An outbound-webhook receiver that refuses everything, echoing personal data in its answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        answer = json.dumps({"error": f"refused {EMAILS[0]} {CARDS[1]} {PHONES[2]}",
                             "phone": PHONES[3], "line1": ADDRESSES[0]}).encode()
        assert len(answer) < 200  # the connector keeps 200 characters of the answer in its error
        self.send_response(422)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?token={RECEIVER_TOKEN}"
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, header: str, secret: str) -> httpx.Response:
    return httpx.post(url, content=body, timeout=10, headers={
        header: sign(body, secret, int(time.time())), "Content-Type": "application/json"})


def runs(db_url: str) -> dict[str, str]:
    eng = create_engine(db_url)
    try:
        with eng.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(text("SELECT run_id, status FROM runs"))}
    finally:
        eng.dispose()


def wait_until(what: str, ok: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_no_planted_personal_data_or_secret_appears_in_the_whole_output(tmp_path: Path, receiver: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'bridge.sqlite'}"
    port = free_port()
    env = bridge_env(
        database_url=db_url, stripe_webhook_secrets=STRIPE_SECRET, clarity_webhook_secrets=CLARITY_SECRET,
        admin_tokens="t", port=port, worker_id="e2e-logs", log_level="DEBUG", outbound_webhook_url=receiver,
        max_json_depth=1000,  # let the deep event in: its fate in the engine is what this test logs
    )
    for hint in ("CLAUDECODE", "CLAUDE_CODE_CHILD_SESSION"):  # stripe prints a plain hint at import then
        env.pop(hint, None)
    serve = BridgeProcess(["serve"], env, tmp_path, "serve", port=port)
    try:
        serve.start()
        base = serve.url
        r = post(f"{base}/webhooks/stripe", stripe_event("evt_logs_plain"), "Stripe-Signature", STRIPE_SECRET)
        assert r.status_code == 200, r.text
        r = post(f"{base}/webhooks/clarity", clarity_event("clr_logs_1"), "X-Bridge-Signature", CLARITY_SECRET)
        assert r.status_code == 200, r.text
        forwards = {"stripe:evt_logs_plain:core.forward", "clarity:clr_logs_1:core.forward"}
        wait_until("the forwarded events to fail and park",
                   lambda: all(runs(db_url).get(run) == "parked" for run in forwards))

        # Sent after the others: however the engine treats it, the others are done by now.
        deep = stripe_event("evt_logs_deep", deep=True)
        r = post(f"{base}/webhooks/stripe", deep, "Stripe-Signature", STRIPE_SECRET)
        assert r.status_code in (200, 400), r.text
        r = httpx.post(f"{base}/webhooks/stripe", content=stripe_event("evt_logs_badsig"), timeout=10,
                       headers={"Stripe-Signature": f"t={int(time.time())},v1=00", "Content-Type": "application/json"})
        assert r.status_code == 400
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # uvicorn cannot parse this
            sock.sendall(f"GET /healthz?token={URL_TOKEN}&to={EMAILS[0]} HTTP/1.1\r\nHost: x\r\n"
                         f"Card {CARDS[0]}\r\n\r\n".encode())
            sock.recv(4096)
        if r.status_code == 200:
            wait_until("the engine to take up the deep event",
                       lambda: "evt_logs_deep" in serve.log() or "evt_logs_deep" in str(runs(db_url)), timeout=15)
        time.sleep(1.0)  # a few more dispatcher rounds
    finally:
        serve.stop()

    output = serve.log()
    leaks = [s for s in PLANTED if s in output]
    leaks += [s for s in CARDS if digits(s) in output]
    assert not leaks, f"planted values found in the output: {leaks}\n{output[-4000:]}"
    lines = [line for line in output.splitlines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line[:300])
    assert not not_json, "lines that are not JSON:\n" + "\n".join(not_json[:20])
    # The values did reach the logs, masked: the failed steps' errors carry the receiver's answer.
    for mask in ("[EMAIL]", "[CARD]", "[PHONE]", "[REDACTED]"):
        assert mask in output, mask
    assert any(json.loads(line).get("logger", "").startswith("uvicorn") for line in lines)
