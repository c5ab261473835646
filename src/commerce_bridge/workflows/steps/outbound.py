"""``outbound.*``: the signed POST of the triggering event to the configured outbound URL (``core.forward``)."""

from __future__ import annotations

from commerce_bridge.services.ports import Action
from commerce_bridge.workflows.catalogue import StepType
from commerce_bridge.workflows.steps.declare import RATE, UNAVAILABLE, ex


def actions(post: Action) -> dict[str, Action]:
    """``outbound.webhook.post``: ``post`` is the configured sender's (``connectors.outbound``)."""
    return {"outbound.webhook.post": post}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="outbound.webhook.post", summary="POST the triggering event, signed, to the configured outbound URL.",
        description="Sends the event body as received, with an `X-Bridge-Signature` HMAC header, to the "
                    "outbound webhook configured in settings. Used by the built-in `core.forward` workflow.",
        params=(), output="`{\"status\": int}`: the receiver's HTTP status.", example_output={"status": 200},
        idempotency="The delivery carries the idempotency key as `Idempotency-Key`; receivers de-duplicate by it.",
        errors=(UNAVAILABLE, RATE, ("UpstreamRejected", "the receiver answered 4xx.")),
        examples=(ex("post", "outbound.webhook.post"),),
    ),
)
