"""A store holding what the admin views must not show in the clear: cards, e-mails, URL tokens.

Written through the real store classes (the rows the engine writes), on any database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from commerce_bridge.bootstrap import Container, bootstrap
from commerce_bridge.config import Settings
from commerce_bridge.domain.delivery import Delivery

CARD_SPACED = "4242 4242 4242 4242"  # Luhn-valid test cards
CARD_DIGITS = "4111111111111111"
ADDRESS = "jane.doe@example.com"
URL_TOKEN = "k9Qm2xVb7TzL4pRs"
URL = f"https://hooks.example.com/3ds/callback?order=77&token={URL_TOKEN}"

# every form in which the secrets above could leak into an answer
LEAKS = (CARD_SPACED, CARD_SPACED.replace(" ", ""), CARD_DIGITS, ADDRESS, "jane.doe", URL_TOKEN)


@dataclass(frozen=True)
class Seeded:
    event_id: str
    run_id: str
    dlq_id: int
    dead_worker: str


def seed_sensitive(c: Container, *, tag: str = "1") -> Seeded:
    """One delivery, its run, a dead-letter entry of that run and a dead worker, all full of PII."""
    event_id = f"evt_{tag}_for_{ADDRESS}"
    body = json.dumps({"id": event_id, "type": "charge.failed", "data": {"card": CARD_DIGITS, "email": ADDRESS}}).encode()
    c.inbox.record_batch([Delivery("stripe", event_id, "charge.failed", body, datetime.now(UTC))])
    [event] = [e for e in c.inbox.list(limit=500) if e["event_id"] == event_id]
    run_id = f"stripe:{event_id}:shop.pay"
    c.runs.create([{"run_id": run_id, "inbox_id": event["id"], "source": "stripe", "event_id": event_id,
                    "workflow": "shop.pay", "workflow_version": "1"}])
    dlq_id = c.dead_letters.add({
        "run_id": run_id, "step_id": "charge", "step_type": "stripe.payment_intent.create", "attempts": 3,
        "error_code": "upstream_rejected",
        "error_message": f"card {CARD_SPACED} declined for {ADDRESS}; 3-D Secure at {URL}",
        "upstream_request_id": "req_upstream_1",
        "suggested_fix": f"ask {ADDRESS} for another card",
        "step_input": {"card_number": CARD_DIGITS, "customer": {"email": ADDRESS, "phone": "+1 555 0100"},
                       "return_url": URL, "note": f"pays with {CARD_SPACED}"},
        "traceback": f'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: {CARD_DIGITS} {ADDRESS} {URL}',
        "engine_workflow_id": f"{run_id}#missing",
    })
    dead_worker = f"worker-{tag}-gone"
    c.leases.register(dead_worker, "host-a", 4242, lease_s=-60)  # its lease ran out a minute ago
    return Seeded(event_id=event_id, run_id=run_id, dlq_id=dlq_id, dead_worker=dead_worker)


def init_engine_database(settings: Settings) -> None:
    """Create the engine's tables as a worker's first start does (then stop it: nothing runs after)."""
    worker = bootstrap(settings, "worker", migrate=True)
    assert worker.engine is not None
    try:
        worker.engine.launch(dispatcher=False)
    finally:
        worker.engine.shutdown()
        worker.close()
