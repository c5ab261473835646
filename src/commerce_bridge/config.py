"""Settings: environment variables ``CB_*``, an optional ``commerce-bridge.toml``, secrets from files.

Precedence, highest first: init arguments, environment variables, ``CB_<NAME>_FILE`` (the secret is
the file's content, stripped), the TOML file (``CB_CONFIG_FILE``, default ``./commerce-bridge.toml``,
keys are the setting names in lower case without the prefix), then the defaults below.

Invalid settings stop start-up with one :class:`~commerce_bridge.errors.ConfigurationError` that
names every bad setting. The HTTP URL settings (:data:`HTTP_URL_FIELDS`) must be ``http`` or ``https``
with a host. Whatever prints settings (``config show``, ``doctor``) shows URLs through :func:`mask_url`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from commerce_bridge.config_sources import (
    ENV_PREFIX,
    MASK,
    SecretFileSource,
    TomlSource,
    mask_url,
    read_secret_files,
)
from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.errors import ConfigurationError, MappingError, ValidationError
from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.mapping.product_sync import ProductSyncPolicy
from commerce_bridge.mapping.status import StatusMap

Csv = Annotated[list[str], NoDecode]
SecretCsv = Annotated[list[SecretStr], NoDecode]

SECRET_FIELDS = (
    "stripe_webhook_secrets",
    "clarity_webhook_secrets",
    "erp_webhook_secrets",
    "admin_tokens",
    "stripe_api_key",
    "clarity_password",
    "erp_api_secret",
    "alert_webhook_secret",
    "smtp_password",
    "outbound_webhook_secret",
)


HTTP_URL_FIELDS = (
    "alert_webhook_url",
    "outbound_webhook_url",
    "stripe_api_base",
    "clarity_base_url",
    "erp_base_url",
    "payment_retry_url",
)
"""Settings that are HTTP URLs: checked at start-up (scheme http or https, a host)."""

def _checked(check: Callable[[], object]) -> None:
    """Run ``check``; its ``BridgeError`` (a policy or currency refused) becomes the ``ValueError`` pydantic reports."""
    try:
        check()
    except (ConfigurationError, MappingError) as exc:
        raise ValueError(f"{exc} ({exc.suggested_fix})" if exc.suggested_fix else str(exc)) from exc


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


DEFAULT_WORKFLOW_PRIORITIES: dict[str, int] = {
    # later stages of an order, ahead of new orders' first runs (clarity.order_to_cash, priority 0)
    "stripe.payment_succeeded": 10, "clarity.order_shipped": 10, "clarity.order_voided": 10,
}


class Settings(BaseSettings):
    """Every setting of commerce-bridge. The env var is ``CB_`` + the field name in upper case."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, validate_default=True
    )

    # storage
    database_url: str = Field(
        "sqlite:///./data/bridge.sqlite",
        description="SQLAlchemy URL of the bridge's database (SQLite file or postgresql+psycopg://).",
    )
    engine_database_url: str | None = Field(
        None,
        description="Database of the durable engine's system tables; default: ./data/engine.sqlite beside a "
        "SQLite database, the same database (schema 'dbos') for PostgreSQL.",
    )

    # ingress
    stripe_webhook_secrets: SecretCsv = Field(
        default_factory=list, description="Stripe endpoint secrets (whsec_...), comma-separated, for rotation."
    )
    clarity_webhook_secrets: SecretCsv = Field(
        default_factory=list, description="Secrets for X-Bridge-Signature on /webhooks/clarity."
    )
    erp_webhook_secrets: SecretCsv = Field(
        default_factory=list, description="Secrets for X-Bridge-Signature on /webhooks/erp."
    )
    webhook_tolerance_s: int = Field(300, ge=1, le=3600, description="Maximum signature age in seconds.")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest accepted webhook body.")
    max_json_depth: int = Field(
        32, ge=4, le=1000,
        description="Deepest nesting of objects and arrays accepted in a webhook body (deeper: 400, nothing "
                    "stored). Stripe's events are under 12 levels.",
    )
    clarity_allowed_cidrs: Csv = Field(
        default_factory=list, description="Source addresses allowed on /webhooks/clarity (empty: any)."
    )
    erp_allowed_cidrs: Csv = Field(
        default_factory=list, description="Source addresses allowed on /webhooks/erp (empty: any)."
    )
    trusted_proxies: Csv = Field(
        default_factory=list,
        description="Proxies whose X-Forwarded-For is believed when applying the allowlists (CIDRs).",
    )
    group_commit_max_batch: int = Field(256, ge=1, le=10000, description="Most deliveries in one commit.")
    ingest_store_timeout_s: float = Field(
        5.0, gt=0, le=60,
        description="A webhook that cannot be stored within this time is answered 503 (the sender redelivers; a "
                    "late commit makes the redelivery a duplicate, never a loss).",
    )
    group_commit_max_wait_ms: float = Field(
        0.0, ge=0, le=100, description="Extra time to wait for more deliveries before a commit (0: none)."
    )
    group_commit_linger_ms: float = Field(
        5.0, ge=0, le=50,
        description="Longest a delivery waits for others to share its commit, and only while the recent arrival "
                    "rate says another one comes in time (a lone delivery is committed at once; 0: never wait). "
                    "Must stay below CB_INGEST_STORE_TIMEOUT_S.",
    )

    # http
    host: str = Field("127.0.0.1", description="Address `serve` and `ingress` listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `serve` and `ingress` listen on.")
    http_max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=1024 * 1024,
        description="Largest request line plus headers of one HTTP request; over it: 431 header_too_large and "
                    "the connection is closed (the rest is not read).",
    )
    http_header_timeout_s: float = Field(
        10.0, gt=0, le=300,
        description="A request's line and headers must arrive within this time of their first byte (a new "
                    "connection: of being accepted), else the connection is closed.",
    )
    http_body_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="A request body must arrive within this time of the end of its headers, else the "
                    "connection is closed.",
    )
    http_keepalive_timeout_s: float = Field(
        5.0, gt=0, le=300, description="An idle kept-alive connection is closed after this time between requests."
    )
    admin_tokens: SecretCsv = Field(
        default_factory=list, description="Bearer tokens for /api/v1 (comma-separated). None: API closed."
    )
    admin_docs: bool = Field(
        True, description="Serve the admin API's /api/v1/openapi.json, /docs and /redoc (a bearer token is "
                          "needed for them too); false: not at all (404)."
    )

    # engine
    worker_id: str | None = Field(
        None, description="Stable executor id of this worker (default: the host name, plus '-serve' for serve)."
    )
    worker_concurrency: int = Field(16, ge=1, le=256, description="Runs executed at once by one worker.")
    dispatch_interval_s: float = Field(0.2, gt=0, le=60, description="How often the dispatcher polls the inbox.")
    engine_idle_poll_s: float = Field(
        5.0, gt=0, le=60,
        description="After 10 s without work, how often the engine polls its queue (runs queued by another "
                    "process, such as a CLI replay, start within this) and a dispatcher that new deliveries wake "
                    "(serve; workers on PostgreSQL, through NOTIFY) its inbox.",
    )
    dispatch_stuck_after_s: float = Field(
        60.0, gt=0, le=86400,
        description="/readyz of serve and worker reports the dispatcher stuck (503) when a delivery has waited "
                    "undispatched longer than this and no dispatch pass has completed for as long.",
    )
    heartbeat_interval_s: float = Field(2.0, gt=0, le=60, description="Worker heartbeat period.")
    lease_s: float = Field(10.0, gt=0, le=600, description="A worker is presumed dead this long after its last heartbeat.")
    takeover_grace_s: float = Field(
        5.0, ge=0, le=600, description="Extra wait past an expired lease before a survivor recovers its runs."
    )
    retry_max_attempts: int = Field(5, ge=1, le=100, description="Default attempts per step.")
    retry_base_delay_s: float = Field(0.5, gt=0, description="First retry's backoff cap.")
    retry_max_delay_s: float = Field(60.0, gt=0, description="Largest backoff between attempts.")
    retry_policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per step type overrides (JSON), e.g. {\"stripe.\": {\"max_attempts\": 8}}."
    )
    breaker_failure_threshold: int = Field(5, ge=1, description="Consecutive transient failures that open a breaker.")
    breaker_reset_timeout_s: float = Field(30.0, gt=0, description="Time an open breaker waits before a probe.")
    rate_limits: dict[str, float] = Field(
        default_factory=lambda: {"stripe": 25.0, "clarity": 20.0, "erp": 20.0},
        description="API calls per second per destination, shared by all workers (JSON).",
    )
    rate_limit_margin: float = Field(
        0.10, ge=0, le=1, description="Safety margin on call spacing so that delays never bunch calls above the limit."
    )
    rate_limit_scope: Literal["auto", "process", "shared"] = Field(
        "auto", description="Where call slots and key locks are kept: process (in memory: one process calls out), "
                            "shared (the database, for several workers), auto (process on SQLite, shared on "
                            "PostgreSQL).",
    )
    long_wait_s: float = Field(
        30.0, gt=0, description="Durable waits longer than this end the run and a timer resumes it (frees workers)."
    )
    backlog_alert_threshold: int = Field(1000, ge=1, description="Inbox backlog that fires a backlog alert.")

    # alerts and logs
    alert_sinks: Csv = Field(default_factory=lambda: ["log"], description="log, webhook, email.")
    alert_webhook_url: str | None = Field(None, description="Where the webhook alert sink posts.")
    alert_webhook_secret: SecretStr | None = Field(None, description="Signs alert webhooks (X-Bridge-Signature).")
    alert_email_to: Csv = Field(default_factory=list, description="Recipients of alert e-mails.")
    alert_email_from: str = Field("commerce-bridge@localhost", description="Sender of alert e-mails.")
    alert_window_s: float = Field(60.0, gt=0, description="Alerts of one kind within this window become one summary.")
    smtp_host: str = Field("127.0.0.1", description="SMTP server for e-mails.")
    smtp_port: int = Field(8025, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_json: bool = Field(True, description="JSON log lines (false: console format).")
    log_pii_keys: Csv = Field(
        default_factory=lambda: ["name", "phone", "mobile_no", "address", "street", "line1", "line2", "postal_code",
                                 "pincode", "email"],
        description="Keys whose values are redacted from logs (also keys ending with one: Phone1, customer_phone).",
    )

    # outbound webhooks (the built-in core.forward workflow)
    outbound_webhook_url: str | None = Field(
        None, description="Forward every matching event, signed, to this URL (enables core.forward)."
    )
    outbound_webhook_secret: SecretStr | None = Field(None, description="Signs forwarded events (X-Bridge-Signature).")
    outbound_event_types: Csv = Field(
        default_factory=lambda: ["*"], description="Event types core.forward forwards ('*', exact, or prefix*)."
    )

    # workflows
    workflows_dir: str | None = Field(
        None, description="Folder of workflow YAML files that add to or override the built-in ones."
    )
    workflows_disabled: Csv = Field(
        default_factory=list,
        description="Workflows (built-in or from files) that never start, comma separated, e.g. "
        "`clarity.order_voided`.",
    )
    audit_runs: bool = Field(
        False,
        description="Run the built-in `core.audit` workflow: one engine run per event that records it in "
        "`audit_log`. Off by default: each delivery's inbox row is its audit record (`events list`, "
        "`/api/v1/events`), at no engine cost.",
    )
    workflow_priorities: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_WORKFLOW_PRIORITIES),
        description="Dispatch priority per workflow (JSON, higher first; others 0). When deliveries wait in "
        "the inbox (overload), those that start a higher-priority workflow are dispatched first, so orders "
        "already started (payment, shipment, void) finish before new ones begin. {}: first come, first served.",
    )
    workflow_vars: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-workflow `vars` overrides (JSON), e.g. {\"clarity.order_to_cash\": {\"capture_method\": "
        "\"manual\"}}. Pinned into each run when it starts.",
    )
    status_map: dict[str, Any] = Field(
        default_factory=dict,
        description="Clarity <-> Stripe status maps (JSON; each section given replaces its default, {}: the seed's "
        "map). The workflows' status vars (paid_status, hold_status...) come from it; see "
        "docs/reference/mappings.md.",
    )

    dispute_evidence_submit: bool = Field(
        False,
        description="Submit the evidence the `stripe.dispute_evidence` workflow gathers for a new dispute to the "
        "bank at once (true), instead of staging it on the dispute (false: `submit=false`, for a person to "
        "review and submit in the Stripe Dashboard). Stripe accepts one submission per dispute; the bridge "
        "never submits twice. Pinned into each run when it starts (as its `submit_evidence` var).",
    )

    early_fraud_refund: bool = Field(
        False,
        description="Refund a charge in full when Stripe Radar reports an early fraud warning on it and its Clarity "
        "order has not shipped (`stripe.early_fraud_warning`), to avoid the dispute; false: operations are "
        "alerted only. Pinned into each run when it starts (as its `refund_unshipped` var).",
    )

    # connectors (`doctor` checks the ones that are set; a workflow whose connector is missing is disabled)
    stripe_api_key: SecretStr | None = Field(None, description="Stripe secret key (sk_...).")
    stripe_api_base: str | None = Field(None, description="Stripe API base URL (the sandbox emulator, or unset).")
    stripe_api_version: str | None = Field(None, description="Pinned Stripe API version (default: the SDK's).")
    clarity_base_url: str | None = Field(None, description="Clarity API base URL (.../API-Admin).")
    clarity_user: str | None = Field(None, description="Clarity API user.")
    clarity_password: SecretStr | None = Field(None, description="Clarity API password.")
    clarity_timezone: str = Field("UTC", description="Time zone of Clarity's timestamps (IANA name).")
    clarity_poll_interval_s: float = Field(
        2.0, ge=0, description="Seconds between polls of Clarity for changed orders (0: no polling)."
    )
    clarity_returns_poll_interval_s: float = Field(
        10.0, ge=0, description="Seconds between polls of Clarity for changed sales returns (a return moved to the "
        "refund status waits at most about this long before the bridge refunds it; 0: returns are not polled, "
        "only change notices start `clarity.return_refunded`). Returns are polled in the orders' poll cycle, so "
        "never more often than CB_CLARITY_POLL_INTERVAL_S.",
    )
    clarity_poll_overlap_s: float = Field(5.0, ge=0, description="Re-read this many seconds before the cursor.")
    drift_interval_s: float = Field(
        3600.0, ge=0, description="Seconds between scheduled drift checks in `serve` and `worker` (one process at a "
        "time): Stripe, Clarity and ERPNext compared over the last CB_DRIFT_WINDOW_DAYS, one alert (`drift.found`) "
        "when new differences appear (0: no scheduled check; `reconcile drift` still works). Needs Stripe, Clarity "
        "and the ERP configured.",
    )
    drift_window_days: int = Field(
        7, ge=1, le=90, description="Days back the scheduled drift check looks (records created or changed since).",
    )
    drift_settle_s: float = Field(
        300.0, ge=0, description="Records younger than this are left out of drift checks (scheduled and "
        "`reconcile drift`): the bridge may still be booking them.",
    )
    gap_interval_s: float = Field(
        900.0, ge=0, description="Seconds between scheduled gap checks in `serve` and `worker` (one process at a "
        "time): the Stripe events of the last CB_GAP_WINDOW_DAYS of the types the enabled workflows start on, and "
        "the Clarity changes the poll cursors passed, compared with the inbox; each missing one is fed in as its "
        "webhook or poll would have been, counted, logged, and alerted (`gaps.found`) once per check (0: no "
        "scheduled check; `commerce-bridge gaps` still works). Needs Stripe or Clarity configured.",
    )
    gap_window_days: int = Field(
        30, ge=1, le=30, description="Days back the gap check looks (at most 30: Stripe keeps events 30 days).",
    )
    gap_settle_s: float = Field(
        120.0, ge=0, description="Events younger than this are left out of gap checks (scheduled and `gaps`): "
        "their webhook may still be on its way.",
    )
    clarity_inventory_section: str | None = Field(
        None, description="CustomKey of the Clarity inventory location section whose stock the bridge keeps equal "
        "to ERPNext's (issue 14): per item, Quantity = the Bins' actual_qty, QuantityAllocated = their reserved_qty, "
        "QuantityPreSold = 0, over CB_STOCK_WAREHOUSES. Unset: stock is not synced (`erp.stock_changed` is off). "
        "Needs Clarity and the ERP configured. A key Clarity does not have parks each run with a "
        "`configuration_error` naming this setting (and `stock push` exits 1 saying so).",
    )
    stock_poll_interval_s: float = Field(
        60.0, ge=0, description="Seconds between polls of ERPNext for changed Bins in `serve` and `worker` (one "
        "process at a time): each change starts `erp.stock_changed`, which writes the item's stock to Clarity "
        "(0: no polling; `commerce-bridge stock push` still works). Only with CB_CLARITY_INVENTORY_SECTION set.",
    )
    customer_sync: bool = Field(
        False, description="Keep customers the same in Clarity, Stripe and ERPNext as they change (issue 14): the "
        "workflows `stripe.customer_changed`, `clarity.account_changed` and `erp.customer_changed` and the Clarity "
        "accounts and ERPNext customers pollers. Off by default: it creates a customer missing in a system (a Stripe "
        "customer of a guest checkout gets a Clarity account). Needs Stripe, Clarity and the ERP configured; "
        "`backfill customers` works either way.",
    )
    clarity_accounts_poll_interval_s: float = Field(
        30.0, ge=0, description="Seconds between polls of Clarity for changed accounts and contacts in `serve` and "
        "`worker` (one process at a time): each change starts `clarity.account_changed`, which syncs the customer "
        "to Stripe and ERPNext (0: no polling; `backfill customers` still works). Needs Stripe, Clarity and the "
        "ERP configured.",
    )
    erp_customers_poll_interval_s: float = Field(
        60.0, ge=0, description="Seconds between polls of ERPNext for changed Customers, and Contacts and Addresses "
        "linked to a Customer, in `serve` and `worker` (one process at a time): each change starts "
        "`erp.customer_changed`, which syncs the customer to Clarity and Stripe (0: no polling). Needs Stripe, "
        "Clarity and the ERP configured.",
    )
    customer_source_of_truth: dict[str, str] = Field(
        default_factory=dict, description="The customer sync's source of truth per field (JSON, field -> system, "
        'e.g. `{"email": "clarity", "tax_id": "erp"}`); fields: name, email, phone, billing_address, '
        "shipping_address, tax_id; systems: clarity, erp, stripe (Stripe holds no tax_id). A field not listed "
        "takes the latest change (a tie: clarity, then erp, then stripe).",
    )
    product_sync: bool = Field(
        False, description="Keep products and their prices the same in Clarity, Stripe and ERPNext as they change "
        "(issue 14): the workflows `stripe.product_changed`, `clarity.product_changed` and `erp.item_changed` and the "
        "Clarity products and ERPNext items pollers. Off by default: it creates a product missing in a system (a "
        "Stripe product with `metadata.item_code` gets a Clarity product and an ERPNext Item). Needs Stripe, Clarity "
        "and the ERP configured; `backfill products` works either way.",
    )
    clarity_products_poll_interval_s: float = Field(
        30.0, ge=0, description="Seconds between polls of Clarity for changed products in `serve` and `worker` (one "
        "process at a time): each change starts `clarity.product_changed`, which syncs the product to Stripe and "
        "ERPNext (0: no polling; `backfill products` still works). Only with CB_PRODUCT_SYNC on.",
    )
    erp_items_poll_interval_s: float = Field(
        60.0, ge=0, description="Seconds between polls of ERPNext for changed Items and Item Prices (of "
        "CB_ERP_SELLING_PRICE_LIST) in `serve` and `worker` (one process at a time): each change starts "
        "`erp.item_changed`, which syncs the product to Clarity and Stripe (0: no polling). Only with "
        "CB_PRODUCT_SYNC on.",
    )
    product_source_of_truth: dict[str, str] = Field(
        default_factory=dict, description="The product sync's source of truth per field (JSON, field -> system, "
        'e.g. `{"prices": "erp", "name": "clarity"}`); fields: name, description, active, uom, prices; systems: '
        "clarity, erp, stripe. A field not listed takes the latest change (a tie: clarity, then erp, then stripe).",
    )
    clarity_currency: str = Field(
        "USD", description="ISO 4217 code of the currency of Clarity's product prices (`PriceBase`; CEF prices carry "
        "none): the product sync reads and writes Clarity's prices in it (ERPNext's Item Prices are in their price "
        "list's currency; Stripe holds a Price per currency).",
    )
    erp_selling_price_list: str = Field(
        "Standard Selling", min_length=1, description="The ERPNext selling Price List whose Item Prices the product "
        "sync reads and writes (and the ERPNext items poller watches).",
    )
    stock_warehouses: Csv = Field(
        default_factory=list, description="ERPNext warehouses whose stock is pushed to Clarity, comma separated "
        "(e.g. `Stores - SB,Finished Goods - SB`); empty: every warehouse.",
    )
    erp_base_url: str | None = Field(None, description="ERPNext base URL.")
    erp_api_key: str | None = Field(None, description="ERPNext API key.")
    erp_api_secret: SecretStr | None = Field(None, description="ERPNext API secret.")
    erp_paid_to_account: str = Field("Stripe Clearing - SB", description="ERPNext account Stripe payments go to.")
    erp_invoice_on: Literal["paid", "shipped"] = Field(
        "paid",
        description="When the order flow bills the ERPNext Sales Order: `paid` makes the Sales Invoice from it when "
        "the payment succeeds (`stripe.payment_succeeded`) and allocates the Payment Entry to the invoice, so "
        "revenue and the receivable are booked and the invoice is Paid; the credit notes of refunds and returns "
        "return against it. `shipped` makes the invoice when Clarity marks the order Shipped "
        "(`clarity.order_shipped`): until then the Payment Entry is an advance on the Sales Order, which the "
        "invoice takes (ERPNext's advances, `allocate_advances_automatically`); a payment made after it (a "
        "manual capture at shipping) is allocated to it. A refund or return before shipping makes the invoice "
        "earlier, with the advance. Pinned into each run when it starts (as its `invoice_on` var).",
    )
    erp_disputes_account: str = Field(
        "Disputed Funds - SB",
        description="ERPNext account that holds a chargeback's disputed amount from its withdrawal until the dispute "
        "closes (`stripe.dispute_recorded`; an asset, not a group).",
    )
    erp_dispute_fees_account: str = Field(
        "Stripe Fees - SB", description="ERPNext expense account of Stripe's dispute fees (`stripe.dispute_recorded`)."
    )
    erp_chargebacks_account: str = Field(
        "Chargebacks - SB",
        description="ERPNext expense account a lost dispute's amount moves to from the disputes account "
        "(`stripe.dispute_recorded`).",
    )
    erp_payout_accounts: dict[str, str] = Field(
        default_factory=dict,
        description="ERPNext accounts of the payout journal (`stripe.payout_reconciled`), role -> account (JSON), "
        "over the defaults: clearing = CB_ERP_PAID_TO_ACCOUNT, disputes = CB_ERP_DISPUTES_ACCOUNT, dispute_fees = "
        "CB_ERP_DISPUTE_FEES_ACCOUNT, bank `Stripe Payouts Bank - SB`, receivable `Debtors - SB`, fees "
        "`Stripe Fees - SB`, refunds `Sales Returns and Refunds - SB`, fx `Exchange Gain/Loss - SB`, adjustments "
        "`Stripe Adjustments - SB`, suspense `Stripe Reconciliation Suspense - SB`.",
    )
    erp_item_group: str = Field(
        "All Item Groups", min_length=1, description="Item Group of the ERPNext Items the order flow makes from "
        "Clarity products when a Sales Order names an item ERPNext lacks.",
    )
    erp_default_uom: str = Field(
        "Nos", min_length=1, description="Stock UOM of those Items when the Clarity product names no unit of measure.",
    )
    erp_uom_map: dict[str, str] = Field(
        default_factory=dict, description="Clarity unit of measure -> ERPNext UOM for those Items (JSON, e.g. "
        '`{"EA": "Nos", "BX": "Box"}`); a unit not listed is used as it is.',
    )
    shop_email_from: str = Field("shop@example.com", description="Sender of e-mails to customers.")
    payment_retry_url: str = Field(
        "http://localhost:8000/pay/{order_key}", description="Link in decline and reminder e-mails ({order_key})."
    )

    @field_validator(
        "stripe_webhook_secrets", "clarity_webhook_secrets", "erp_webhook_secrets", "admin_tokens",
        "clarity_allowed_cidrs", "erp_allowed_cidrs", "trusted_proxies", "alert_sinks",
        "alert_email_to", "log_pii_keys", "outbound_event_types", "workflows_disabled", "stock_warehouses",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("clarity_allowed_cidrs", "erp_allowed_cidrs", "trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP network ({exc})") from exc
        return value

    @field_validator("erp_payout_accounts")
    @classmethod
    def _payout_roles(cls, v: dict[str, str]) -> dict[str, str]:
        roles = ("clearing", "bank", "receivable", "fees", "dispute_fees", "refunds", "disputes", "fx", "adjustments",
                 "suspense")
        unknown = sorted(set(v) - set(roles))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; the roles are {', '.join(roles)}")
        empty = sorted(k for k, a in v.items() if not str(a).strip())
        if empty:
            raise ValueError(f"roles {empty} name no account")
        return v

    @field_validator("customer_source_of_truth")
    @classmethod
    def _customer_truth(cls, v: dict[str, str]) -> dict[str, str]:
        _checked(lambda: SyncPolicy(source_of_truth=v))
        return v

    @field_validator("product_source_of_truth")
    @classmethod
    def _product_truth(cls, v: dict[str, str]) -> dict[str, str]:
        _checked(lambda: ProductSyncPolicy(source_of_truth=v))
        return v

    @field_validator("clarity_currency")
    @classmethod
    def _clarity_currency(cls, v: str) -> str:
        _checked(lambda: minor_digits(v))
        return v.strip().upper()

    @field_validator("alert_sinks")
    @classmethod
    def _sinks(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in ("log", "webhook", "email")]
        if bad:
            raise ValueError(f"unknown sink(s) {bad}; choose from log, webhook, email")
        return value

    @field_validator("database_url", "engine_database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if value.startswith(("postgres://", "postgresql://")):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator(*HTTP_URL_FIELDS)
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from exc
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not host:
            raise ValueError("must name a host (http(s)://host/...)")
        return value

    @field_validator("stripe_webhook_secrets")
    @classmethod
    def _whsec(cls, value: list[SecretStr]) -> list[SecretStr]:
        for s in value:
            if not s.get_secret_value().startswith("whsec_"):
                raise ValueError("each Stripe webhook secret starts with 'whsec_'")
        return value

    @field_validator("status_map")
    @classmethod
    def _status_map(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            status_map = StatusMap.from_config(value)
            status_map.workflow_vars()
        except ValidationError as exc:
            raise ValueError(f"{exc.message}; {exc.suggested_fix}") from exc
        return status_map.to_config()  # every section, defaults included (what `config show` prints)

    def statuses(self) -> StatusMap:
        """The validated status map."""
        return StatusMap.from_config(self.status_map)

    @model_validator(mode="after")
    def _cross(self) -> Settings:
        if "webhook" in self.alert_sinks and not self.alert_webhook_url:
            raise ValueError("alert_sinks includes 'webhook' but CB_ALERT_WEBHOOK_URL is not set")
        if "email" in self.alert_sinks and not self.alert_email_to:
            raise ValueError("alert_sinks includes 'email' but CB_ALERT_EMAIL_TO is not set")
        if self.group_commit_linger_ms / 1000.0 >= self.ingest_store_timeout_s:
            raise ValueError("CB_GROUP_COMMIT_LINGER_MS must be below CB_INGEST_STORE_TIMEOUT_S "
                             "(a delivery would time out while it waits for company)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFileSource(settings_cls, SECRET_FIELDS), TomlSource(settings_cls))

    # ---- derived values -------------------------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def effective_engine_database_url(self) -> str:
        if self.engine_database_url:
            return self.engine_database_url
        if self.is_sqlite:
            path = Path(self.database_url.removeprefix("sqlite:///"))
            return f"sqlite:///{path.with_name('engine.sqlite')}"
        return self.database_url

    def masked(self) -> dict[str, Any]:
        """The effective settings, every secret masked and every URL through :func:`mask_url` (`config show`)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = MASK
            elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
                value = [MASK] * len(value)
            elif isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, list):
                value = [mask_url(v) if isinstance(v, str) else v for v in value]
            out[name] = value
        return out


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise one ConfigurationError naming every bad setting."""
    _, problems = read_secret_files(SECRET_FIELDS)
    try:
        settings = Settings(**overrides)
    except SettingsError as exc:
        field = str(exc).split('"')[1] if '"' in str(exc) else "configuration"
        problems.append(f"{ENV_PREFIX}{field.upper()}: not valid JSON ({exc.__cause__ or exc})")
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems), errors=problems) from exc
    except PydanticValidationError as exc:
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]) if loc else ""
            setting = f"{ENV_PREFIX}{name.upper()}" if name else "configuration"
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            problems.append(f"{setting}: {msg}")
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems), errors=problems) from exc
    if problems:
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems), errors=problems)
    return settings
