"""``notify.email.send``: templated e-mails to customers and operators."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from string import Formatter
from typing import TYPE_CHECKING, Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.mapping.customer import normalize_email
from commerce_bridge.mapping.evidence import SENT_MAIL_KIND, sent_mail_entity, sent_mail_link
from commerce_bridge.services.ports import Action, IdentityMap, Mailer, StepContext
from commerce_bridge.workflows.catalogue import Param, StepType
from commerce_bridge.workflows.steps.declare import UNAVAILABLE, ex

if TYPE_CHECKING:
    from commerce_bridge.workflows.steps import FlowSettings

TEMPLATES: dict[str, tuple[str, str]] = {
    "payment_declined": (
        "Your payment for order {order_key} was declined",
        "Hello,\n\nyour card was declined ({reason}) for order {order_key}. The order is on hold.\n"
        "Please pay with another card: {retry_url}\n",
    ),
    "authentication_required": (
        "Please confirm your payment for order {order_key}",
        "Hello,\n\nyour bank asks you to confirm the payment for order {order_key}:\n{authenticate_url}\n",
    ),
    "payment_reminder": (
        "Reminder: order {order_key} is waiting for payment",
        "Hello,\n\norder {order_key} is still waiting for payment: {retry_url}\n",
    ),
    "order_cancelled": (
        "Order {order_key} was cancelled",
        "Hello,\n\nwe cancelled order {order_key} because it was not paid.\n",
    ),
    "operator_alert": ("commerce-bridge: {title}", "{text}\n"),
}


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, data: Mapping[str, Any]) -> tuple[str, str]:
    if template not in TEMPLATES:
        raise ValidationError(f"unknown e-mail template {template!r}",
                              suggested_fix=f"use one of {', '.join(sorted(TEMPLATES))}")
    subject, body = TEMPLATES[template]
    values = _Defaults({k: "" if v is None else v for k, v in data.items()})
    fmt = Formatter()
    return fmt.vformat(subject, (), values), fmt.vformat(body, (), values)


def actions(mailer: Mailer, flow: FlowSettings, identity: IdentityMap | None = None) -> dict[str, Action]:
    """``notify.email.send``; with ``identity``, each e-mail about an order (``data.order_key``, not operator
    alerts) is recorded under that key (time and subject) for dispute evidence (``core.sent_mail.list``)."""

    def send(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        to = normalize_email(params["to"], field="to")
        data = dict(params.get("data") or {})
        if "order_key" in data and "retry_url" not in data:
            data["retry_url"] = flow.retry_url.format(order_key=data["order_key"])
        subject, body = render(str(params["template"]), data)
        message_id = f"<{ctx.idempotency_key.replace(':', '.')}@commerce-bridge>"
        mailer.send(to=to, subject=subject, body=body, message_id=message_id)
        order_key = str(data.get("order_key") or "")
        if identity is not None and order_key and params["template"] != "operator_alert":
            entity = sent_mail_entity(order_key)
            system, record = sent_mail_link(message_id, subject, datetime.now(UTC))
            if identity.external(SENT_MAIL_KIND, entity, system) is None:  # a retry keeps the first record
                identity.link(SENT_MAIL_KIND, entity, system, record)
        return {"message_id": message_id, "sent": True}

    return {"notify.email.send": send}


STEP_TYPES: tuple[StepType, ...] = (
    StepType(
        type="notify.email.send", summary="Send a templated email (to a customer or to operators).",
        description="Renders `template` with `data` and sends it through the configured SMTP server.",
        params=(Param("to", "string", "The recipient's address.", required=True),
                Param("template", "string", "The message template.", required=True,
                      choices=("payment_declined", "authentication_required", "payment_reminder",
                               "order_cancelled", "operator_alert")),
                Param("data", "object", "Template variables, e.g. `order_key`, `retry_url`.", default={})),
        output="`{\"message_id\": str, \"sent\": bool}`.",
        example_output={"message_id": "<run_id.step_id@commerce-bridge>", "sent": True},
        idempotency="The Message-ID is derived from the idempotency key and recorded before sending; SMTP has "
                    "no idempotency, so a crash between the server's acceptance and the checkpoint may send "
                    "the message twice (same Message-ID, which mail clients collapse).",
        errors=(("ValidationError", "an invalid recipient address or an unknown template."), UNAVAILABLE),
        examples=(ex("tell_declined", "notify.email.send", to="${ steps.order.customer.email }",
                      template="payment_declined", data={"order_key": "${ steps.order.key }"}),),
    ),
)
