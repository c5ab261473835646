"""The emulated account: store, clock, fees, events, expansion and Stripe list pagination."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .errors import invalid_request, not_found
from .forms import Params, as_int
from .ids import new_id
from .store import Obj, SortedIndex, Store

if TYPE_CHECKING:
    from .webhooks import Dispatcher

API_VERSION = "2026-10-28.endive"

# besides ``*.updated``, the event types that carry ``data.previous_attributes``
PREVIOUS_ATTRIBUTES_TYPES = {"charge.refunded", "charge.captured", "charge.dispute.closed"}

# field name -> store kind it may point at (for ``expand[]``)
EXPANDABLE = {
    "customer",
    "payment_method",
    "latest_charge",
    "balance_transaction",
    "source",
    "payment_intent",
    "charge",
    "invoice",
    "latest_invoice",
    "subscription",
    "default_payment_method",
    "default_price",
    "product",
    "failure_balance_transaction",
    "test_clock",
    "refund",
    "dispute",
    "destination",
}


@dataclass
class Config:
    """Tunable behaviour; the control API changes it at run time."""

    fee_percent_bp: int = 290
    fee_fixed_minor: int = 30
    dispute_fee_minor: int = 1500
    payout_delay_days: int = 2
    auto_payouts: bool = True
    settlement_currency: str | None = None
    fx_rates: dict[str, str] = field(default_factory=dict)
    rate_limit_per_s: int | None = None
    currency: str = "usd"
    opts: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestCtx:
    request_id: str | None = None
    idempotency_key: str | None = None
    base_url: str = ""


class Emulator:
    """One emulated Stripe account. All handlers run on the event loop thread, so no locking."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.ctx = RequestCtx()
        self.dispatcher: Dispatcher | None = None
        self._last_now = 0
        # derived caches, rebuilt lazily from the store (see resources/balance.py)
        self.pending_heap: list[tuple[int, str]] | None = None
        self.unpaid: dict[str, list[str]] | None = None
        if "clock_offset" not in store.meta:
            store.set_meta("clock_offset", 0)

    def reset(self) -> None:
        """Forget every object and derived cache (``DELETE /_sandbox/data``)."""
        self.store.clear()
        self.store.set_meta("clock_offset", 0)
        self._last_now = 0
        self.pending_heap = None
        self.unpaid = None

    # -- time & money ------------------------------------------------------------------------------
    @property
    def clock_offset(self) -> int:
        return int(self.store.meta.get("clock_offset", 0))

    def now(self) -> int:
        """Account time (real time plus the offset set through ``/_sandbox/clock``), never going back."""
        t = int(time.time()) + self.clock_offset
        if t < self._last_now:
            return self._last_now
        self._last_now = t
        return t

    def fee(self, amount: int) -> int:
        """Processing fee: ``round_half_up(amount * bp / 10000) + fixed`` in integer math."""
        if amount <= 0:
            return 0
        return (amount * self.config.fee_percent_bp + 5000) // 10000 + self.config.fee_fixed_minor

    # -- objects -----------------------------------------------------------------------------------
    def get(self, kind: str, obj_id: Any, param: str = "id", label: str | None = None) -> Obj:
        if not isinstance(obj_id, str):
            raise invalid_request(f"Invalid {param}", param=param)
        obj = self.store.get(obj_id, kind)
        if obj is None:
            raise not_found(label or kind.replace("_", " ").replace("test helpers.", ""), obj_id, param)
        return obj

    def add(
        self, kind: str, obj: Obj, indexes: tuple[str, ...] = (), internal: dict[str, Any] | None = None
    ) -> Obj:
        return self.store.add(kind, obj, indexes, internal)

    # -- events ------------------------------------------------------------------------------------
    def emit(
        self, type_: str, obj: Obj, previous: dict[str, Any] | None = None, created: int | None = None
    ) -> Obj:
        """Record one event with a snapshot of ``obj`` and queue it for webhook delivery."""
        data: dict[str, Any] = {"object": orjson.loads(orjson.dumps(obj))}
        if previous and (type_.endswith(".updated") or type_ in PREVIOUS_ATTRIBUTES_TYPES):
            data["previous_attributes"] = orjson.loads(orjson.dumps(previous))
        evt: Obj = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created if created is not None else self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": self.ctx.request_id, "idempotency_key": self.ctx.idempotency_key},
            "type": type_,
        }
        self.store.add("event", evt, (f"event:type:{type_}",), {"targets": {}})
        if self.dispatcher is not None:
            self.dispatcher.event_created(evt)
        return evt

    @staticmethod
    def changed(obj: Obj, updates: dict[str, Any]) -> dict[str, Any]:
        """Apply ``updates`` to ``obj``; return the previous values of the keys that changed."""
        prev: dict[str, Any] = {}
        for k, v in updates.items():
            old = obj.get(k)
            if old != v:
                prev[k] = old
                obj[k] = v
        return prev

    def update(self, type_: str | None, obj: Obj, updates: dict[str, Any]) -> dict[str, Any]:
        prev = self.changed(obj, updates)
        self.store.touch(obj["id"])
        if prev and type_:
            self.emit(type_, obj, prev)
        return prev

    # -- rendering ---------------------------------------------------------------------------------
    def render(self, obj: Obj, expand: list[str] | None) -> Obj:
        if not expand:
            return obj
        out = dict(obj)
        for path in expand:
            self._expand(out, path.split("."))
        return out

    def _expand(self, target: dict[str, Any], parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        if head == "data" and isinstance(target.get("data"), list) and target.get("object") == "list":
            target["data"] = [dict(x) if isinstance(x, dict) else x for x in target["data"]]
            for item in target["data"]:
                if isinstance(item, dict) and rest:
                    self._expand(item, rest)
            return
        value = target.get(head)
        if isinstance(value, str) and (
            head in EXPANDABLE or value[:3] in ("ch_", "pi_", "cus", "pm_", "txn")
        ):
            ref = self.store.objects.get(value)
            if ref is not None:
                value = dict(ref)
                target[head] = value
        elif isinstance(value, dict):
            value = dict(value)
            target[head] = value
        if rest and isinstance(value, dict):
            self._expand(value, rest)

    # -- lists -------------------------------------------------------------------------------------
    def list_page(
        self,
        index: SortedIndex | str,
        params: Params,
        url: str,
        pred: Callable[[Obj], bool] | None = None,
    ) -> Obj:
        """Stripe's list object over one index, honouring limit/starting_after/ending_before/created."""
        idx = self.store.index(index) if isinstance(index, str) else index
        limit = as_int(params, "limit", 10) or 10
        if not 1 <= limit <= 100:
            raise invalid_request("Limit must be between 1 and 100.", param="limit")
        sa = params.get("starting_after") or None
        eb = params.get("ending_before") or None
        sa_key = eb_key = None
        if sa:
            sa_key = self.store.keys.get(sa)
            if sa_key is None:
                raise not_found("object", sa, "starting_after")
        if eb:
            eb_key = self.store.keys.get(eb)
            if eb_key is None:
                raise not_found("object", eb, "ending_before")
        created = parse_range(params.get("created"), "created")
        objects = self.store.objects
        id_pred = None
        if pred is not None:
            p = pred

            def id_pred(i: str) -> bool:
                return p(objects[i])

        ids, more = idx.page(
            limit=limit, starting_after=sa_key, ending_before=eb_key, created=created, pred=id_pred
        )
        return {"object": "list", "data": [objects[i] for i in ids], "has_more": more, "url": url}


def parse_range(value: Any, param: str) -> dict[str, int] | None:
    """``created=123`` or ``created[gte]=…`` into ``{"gte": 123, ...}``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            v = int(value)
        except ValueError:
            raise invalid_request(f"Invalid {param}", param=param) from None
        return {"gte": v, "lte": v}
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid {param}", param=param)
    out: dict[str, int] = {}
    for k, v in value.items():
        if k not in ("gt", "gte", "lt", "lte"):
            raise invalid_request(f"Invalid {param}[{k}]", param=f"{param}[{k}]")
        try:
            out[k] = int(v)
        except (TypeError, ValueError):
            raise invalid_request(f"Invalid {param}[{k}]", param=f"{param}[{k}]") from None
    return out
