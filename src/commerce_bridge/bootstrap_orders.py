"""The order backfill's part of the composition root (``commerce-bridge backfill orders``): the
:class:`~commerce_bridge.services.order_backfill.OrderFeed` over the container's gateways (each request takes its
rate-limit slot), inbox and router. Wiring only: the rules are in ``services.order_backfill``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from commerce_bridge.errors import ValidationError
from commerce_bridge.services.order_backfill import OrderFeed, Wants
from commerce_bridge.workflows.router import Router

if TYPE_CHECKING:
    from commerce_bridge.bootstrap import Container

JsonDict = dict[str, Any]


def workflow_wants(router: Router) -> Wants:
    """Whether an enabled workflow starts on an event: by trigger, then its filter with its vars. The router's
    echo check is not asked (it consumes the fingerprint of our own write, which the poll's delivery needs); a
    filter that fails counts as wanted (the dispatcher records the failure)."""

    def wants(source: str, event_type: str, event: JsonDict) -> bool:
        for spec in router.route(source, event_type):  # no event: by trigger only, no echo check
            if not spec.trigger.filter:
                return True
            try:
                if spec.accepts(source, event_type, event, str(event.get("id") or ""),
                                router.workflow_vars.get(spec.name)):
                    return True
            except ValidationError:  # the dispatcher evaluates it again and records why it fails
                return True
        return False

    return wants


def order_feed(c: Container) -> OrderFeed | None:
    """The order backfill's feed over the container's gateways, or None when it has none (a role without them)."""
    g = c.gateways
    if g is None:
        return None
    return OrderFeed(c.inbox, clarity=g.clarity, stripe=g.stripe, erp=g.erp, wants=workflow_wants(c.router),
                     on_fed=c.wake_dispatchers)
