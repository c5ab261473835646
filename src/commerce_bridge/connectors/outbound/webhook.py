"""Post an event, signed with ``X-Bridge-Signature``, to a configured URL (the ``outbound.webhook.post`` step)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from commerce_bridge.connectors.outbound.errors import error_for_response
from commerce_bridge.domain.signature import sign
from commerce_bridge.http_errors import transport_errors
from commerce_bridge.services.ports import StepContext

SIGNATURE_HEADER = "X-Bridge-Signature"


class OutboundWebhookSender:
    """Sends one JSON document per event; the receiver de-duplicates by ``Idempotency-Key``."""

    def __init__(self, url: str, *, secret: str | None, client: httpx.Client) -> None:
        self._url = url
        self._secret = secret
        self._client = client

    def post(self, ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        body = orjson.dumps({
            "id": f"{ctx.source}:{ctx.event_id}", "source": ctx.source, "type": ctx.event_type,
            "event": ctx.event,
        })
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret, int(time.time()))
        with transport_errors(""):
            response = self._client.post(str(params.get("url") or self._url), content=body, headers=headers)
        error = error_for_response(response)
        if error is not None:
            raise error
        return {"status": response.status_code}
