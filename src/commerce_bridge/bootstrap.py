"""The composition root: builds every object of a process from :class:`~commerce_bridge.config.Settings`.

Nothing here runs at import time; entry points call :func:`bootstrap`. Tests call it with their own
settings (and, at the ports, their own fakes or extra workflows).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import structlog
from sqlalchemy import Engine as SqlEngine

from commerce_bridge.bootstrap_background import background_jobs
from commerce_bridge.bootstrap_products import (
    ProductSyncerFactory,
    product_actions,
    product_backfill_pages,
    product_syncer,
)
from commerce_bridge.config import Settings
from commerce_bridge.connectors.clarity.changes import event_from_notice
from commerce_bridge.connectors.clarity.products import ClarityProductGateway
from commerce_bridge.connectors.erp.gateway import HttpErpGateway
from commerce_bridge.connectors.notify.alert_sinks import EmailAlertSink, LogAlertSink, WebhookAlertSink
from commerce_bridge.connectors.notify.mailer import SmtpMailer
from commerce_bridge.connectors.outbound.webhook import OutboundWebhookSender
from commerce_bridge.connectors.stripe.gateway import build_stripe_client
from commerce_bridge.connectors.stripe.products import StripeProductGateway
from commerce_bridge.domain.signature import SignatureScheme
from commerce_bridge.engine.admin import EngineAdmin
from commerce_bridge.engine.breaker import (
    STATE_GAUGE_VALUE,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    alert_for_change,
)
from commerce_bridge.engine.limits import CallLimiter, process_limiter
from commerce_bridge.engine.retry import RetryPolicies
from commerce_bridge.engine.runtime import Engine, EngineConfig
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.logsetup import Redactor
from commerce_bridge.mapping.customer_sync import SyncPolicy
from commerce_bridge.mapping.dispute import DisputeAccounts
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Alerter, AlertSink, Severity
from commerce_bridge.services.backfill import PageSource
from commerce_bridge.services.clock import SystemClock
from commerce_bridge.services.customer_sync import CustomerSyncer
from commerce_bridge.services.drift import DriftFinder
from commerce_bridge.services.gaps import GapFinder, GapWatch
from commerce_bridge.services.ingest import GroupCommitter, IngestService
from commerce_bridge.services.polling import ChangePoller
from commerce_bridge.services.ports import RateLimiter
from commerce_bridge.services.schedule import LeaderSchedule
from commerce_bridge.services.stock_push import StockPush
from commerce_bridge.store import db as store_db
from commerce_bridge.store.coordination import SqlRateLimiter, SqlWorkerLeases
from commerce_bridge.store.cursors import SqlCursorStore
from commerce_bridge.store.identity import SqlIdentityMap, SqlWriteFingerprints
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.locks import SqlKeyLocks
from commerce_bridge.store.reconciliations import SqlReconciliations
from commerce_bridge.store.runs import SqlAuditLog, SqlDeadLetters, SqlRuns, SqlTimers
from commerce_bridge.store.wake import InboxListener, InboxNotifier, notify_once
from commerce_bridge.workflows.enabled import (
    code_workflows,
    disabled_by_settings,
    run_vars,
)
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.router import Router
from commerce_bridge.workflows.spec import Action, WorkflowSpec
from commerce_bridge.workflows.steps import FlowSettings, build_actions, step_catalogue
from commerce_bridge.workflows.steps.payouts import PayoutReconciler, accounts_from

Role = Literal["serve", "ingress", "worker", "cli"]


@dataclass
class Container:
    """Everything one process uses, wired together."""

    settings: Settings
    role: Role
    db: SqlEngine
    inbox: SqlInbox
    runs: SqlRuns
    dead_letters: SqlDeadLetters
    audit: SqlAuditLog
    leases: SqlWorkerLeases
    limiter: RateLimiter
    metrics: Metrics
    alerter: Alerter
    breakers: BreakerRegistry
    router: Router
    admin: EngineAdmin
    ingest: IngestService | None = None
    committer: GroupCommitter | None = None
    engine: Engine | None = None
    pollers: list[ChangePoller] = field(default_factory=list)
    locks: SqlKeyLocks | None = None
    shared_slots: SqlRateLimiter | None = None  # the database's call slots (its connection closes with us)
    notifier: InboxNotifier | None = None  # PostgreSQL: NOTIFY the dispatchers after commits (store.wake)
    listener: InboxListener | None = None  # PostgreSQL: this process's dispatcher woken by NOTIFY
    disabled_workflows: dict[str, list[str]] = field(default_factory=dict)
    reconciliations: SqlReconciliations | None = None  # payout reconciliations (issue 13)
    reconciler: PayoutReconciler | None = None  # with Stripe and the ERP configured: `reconcile` commands
    drift: DriftFinder | None = None  # with Stripe, Clarity and the ERP configured: `reconcile drift`
    drift_schedule: LeaderSchedule | None = None  # serve, worker: the scheduled check (CB_DRIFT_INTERVAL_S)
    gaps: GapFinder | None = None  # with Stripe or Clarity configured: `gaps`, and the scheduled check
    gap_watch: GapWatch | None = None  # serve, worker: what the scheduled gap check runs (metrics, alert)
    gap_schedule: LeaderSchedule | None = None  # serve, worker: the scheduled gap check (CB_GAP_INTERVAL_S)
    # with Stripe, Clarity and the ERP configured: `backfill customers` (a syncer per SyncPolicy)
    customer_syncer: Callable[[SyncPolicy], CustomerSyncer] | None = None
    # with Stripe, Clarity and the ERP configured: `backfill products` (a syncer per ProductSyncPolicy)
    product_syncer: ProductSyncerFactory | None = None
    product_pages: PageSource | None = None  # the same three systems: the product backfill's page readers
    cursors: SqlCursorStore | None = None  # durable cursors by name (backfill resume points, ...)
    gateways: Gateways | None = None  # the configured connectors (the order backfill reads through them)
    stock: StockPush | None = None  # Clarity + ERP + CB_CLARITY_INVENTORY_SECTION: `stock push`
    started_at: float = field(default_factory=time.time)
    _last_backlog: int = 0

    # ---- health ----------------------------------------------------------------------------------
    def check_database(self) -> tuple[bool, str]:
        try:
            with store_db.translate_db_errors(), self.db.connect() as conn:
                store_db.ping(conn)
        except Exception as exc:
            return False, f"database unreachable: {exc}"
        return True, "ok"

    def check_migrations(self) -> tuple[bool, str]:
        try:
            current, head = store_db.migration_status(self.db)
        except Exception as exc:
            return False, f"cannot read migration state: {exc}"
        if current != head:
            return False, f"database at revision {current or 'none'}, code expects {head}: run `commerce-bridge db upgrade`"
        return True, f"at head {head}"

    def check_worker(self) -> tuple[bool, str]:
        """A worker renewed its lease recently (in serve and worker: this process's own)."""
        try:
            rows = self.leases.list()
        except Exception as exc:
            return False, f"cannot read worker leases: {exc}"
        alive = [r for r in rows if r["status"] == "alive" and r["lease_remaining_s"] > 0]
        if self.engine is not None:
            mine = [r for r in alive if r["executor_id"] == self.engine.config.executor_id]
            return (True, "heartbeat fresh") if mine else (False, "this worker's heartbeat is stale")
        return (True, f"{len(alive)} live worker(s)") if alive else (False, "no worker has a fresh heartbeat")

    def check_dispatcher(self) -> tuple[bool, str]:
        """No delivery waits undispatched longer than ``dispatch_stuck_after_s`` (serve and worker)."""
        if self.engine is None:
            return True, "no dispatcher in this process"
        try:
            return self.engine.dispatcher_health(self.settings.dispatch_stuck_after_s)
        except Exception as exc:
            return False, f"cannot read the inbox: {type(exc).__name__}"

    def housekeeping(self) -> None:
        """Run about once a second: send held alert summaries, alert on a growing inbox backlog."""
        try:
            backlog = self.engine.backlog() if self.engine is not None else self.inbox.backlog()
        except Exception:
            backlog = None
        if backlog is not None:
            self.metrics.inbox_backlog.set(backlog)
            threshold = self.settings.backlog_alert_threshold
            if backlog >= threshold and backlog > self._last_backlog:
                self.alerter.alert(Alert(
                    "backlog.growing", f"Inbox backlog is {backlog} deliveries and growing (threshold {threshold})",
                    Severity.WARNING, {"backlog": backlog, "threshold": threshold}, key="backlog.growing",
                ))
            self._last_backlog = backlog
        self.alerter.tick()

    def wake_dispatchers(self, stored: int = 1) -> None:
        """Deliveries were stored outside ingress and the pollers (the gap check): wake this process's dispatcher
        and, on PostgreSQL, the other processes' (NOTIFY)."""
        if not stored:
            return
        if self.engine is not None:
            self.engine.wake_dispatcher()
        if self.notifier is not None:
            self.notifier.poke()
        elif self.db.dialect.name == "postgresql":
            notify_once(self.db)

    def start_background(self) -> None:
        """Launch the engine (serve, worker), the pollers and, on PostgreSQL, the inbox wake-ups."""
        if self.notifier is not None:
            self.notifier.start()
        if self.engine is not None:
            self.engine.launch()
        if self.listener is not None:
            self.listener.start()
        for poller in self.pollers:
            poller.start()
        if self.drift_schedule is not None:
            self.drift_schedule.start()
        if self.gap_schedule is not None:
            self.gap_schedule.start()

    def stop_background(self) -> None:
        if self.gap_schedule is not None:
            self.gap_schedule.stop()
        if self.drift_schedule is not None:
            self.drift_schedule.stop()
        for poller in self.pollers:
            poller.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.engine is not None:
            self.engine.shutdown()
        if self.notifier is not None:
            self.notifier.stop()

    def close(self) -> None:
        self.admin.close()
        self.inbox.close()
        if self.shared_slots is not None:
            self.shared_slots.close()
        self.db.dispose()




def default_worker_id(role: Role) -> str:
    return f"{socket.gethostname()}-{'serve' if role == 'serve' else 'worker'}"


def _alert_sinks(s: Settings) -> list[AlertSink]:
    sinks: list[AlertSink] = []
    for name in s.alert_sinks:
        if name == "log":
            sinks.append(LogAlertSink())
        elif name == "webhook" and s.alert_webhook_url:
            secret = s.alert_webhook_secret.get_secret_value() if s.alert_webhook_secret else None
            sinks.append(WebhookAlertSink(s.alert_webhook_url, secret=secret))
        elif name == "email":
            sinks.append(EmailAlertSink(
                s.smtp_host, s.smtp_port, s.alert_email_from, list(s.alert_email_to),
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            ))
    return sinks


@dataclass
class Gateways:
    # the product sync's subclasses: the base gateways plus product and price calls
    stripe: StripeProductGateway | None = None
    clarity: ClarityProductGateway | None = None
    erp: HttpErpGateway | None = None
    mailer: SmtpMailer | None = None


def _gateways(s: Settings, cursors: SqlCursorStore, call_limiter: CallLimiter, locks: SqlKeyLocks) -> Gateways:
    """The connectors that are configured (each needs its URL and credentials)."""
    g = Gateways(mailer=SmtpMailer(s.smtp_host, s.smtp_port, s.shop_email_from, username=s.smtp_username,
                                   password=s.smtp_password.get_secret_value() if s.smtp_password else None))
    if s.stripe_api_key:
        kwargs: dict[str, Any] = {"api_base": s.stripe_api_base}
        if s.stripe_api_version:
            kwargs["api_version"] = s.stripe_api_version
        # one limiter slot per Stripe request (a step may make several, e.g. find then create a customer)
        g.stripe = StripeProductGateway(build_stripe_client(s.stripe_api_key.get_secret_value(), **kwargs),
                                        before_request=call_limiter.hook("stripe"))
    if s.clarity_base_url:
        g.clarity = ClarityProductGateway(
            s.clarity_base_url, s.clarity_user or "", s.clarity_password.get_secret_value() if s.clarity_password
            else "", cursor_store=cursors, timezone=s.clarity_timezone, poll_overlap_s=s.clarity_poll_overlap_s,
            before_request=call_limiter.hook("clarity"))
    if s.erp_base_url:
        g.erp = HttpErpGateway(s.erp_base_url, s.erp_api_key or "",
                               s.erp_api_secret.get_secret_value() if s.erp_api_secret else "",
                               before_request=call_limiter.hook("erp"), locks=locks)
    return g


def customer_syncer(gateways: Gateways, identity: SqlIdentityMap, cursors: SqlCursorStore, locks: SqlKeyLocks,
                    alert: Callable[[Alert], Any] | None = None) -> Callable[[SyncPolicy], CustomerSyncer] | None:
    """The customer syncer's factory, when Stripe, Clarity and the ERP are all configured."""
    stripe, clarity, erp = gateways.stripe, gateways.clarity, gateways.erp
    if stripe is None or clarity is None or erp is None:
        return None

    def build(policy: SyncPolicy) -> CustomerSyncer:
        return CustomerSyncer(clarity=clarity, stripe=stripe, erp=erp, identity=identity, snapshots=cursors,
                              policy=policy, locks=locks, clarity_tz=clarity.zone, alert=alert)

    return build


def payout_accounts(s: Settings) -> dict[str, str]:
    """The payout journal's accounts (``CB_ERP_PAYOUT_ACCOUNTS`` over the other account settings and defaults)."""
    return accounts_from(s.erp_payout_accounts, clearing=s.erp_paid_to_account, disputes=s.erp_disputes_account,
                         dispute_fees=s.erp_dispute_fees_account)


def drift_finder(s: Settings, gateways: Gateways) -> DriftFinder | None:
    """The drift finder, when Stripe, Clarity and the ERP are all configured (statuses from the status map)."""
    if gateways.stripe is None or gateways.clarity is None or gateways.erp is None:
        return None
    names = s.statuses().workflow_vars()
    paid = [names.get(n) for n in ("paid_status", "partially_refunded_status", "refunded_status", "disputed_status",
                                   "chargeback_status")]
    return DriftFinder(gateways.stripe, gateways.clarity, gateways.erp,
                       paid_statuses=[p for p in [*paid, "Partial Payment Received"] if p],
                       refunded_return_statuses=[n for n in [names.get("return_refunded_status")] if n])


def _echo_check(fingerprints: SqlWriteFingerprints) -> Callable[[str, Any], bool]:
    """True for a polled Clarity change that is our own write coming back (its status is what we set)."""

    def is_echo(source: str, event: Any) -> bool:
        if source != "clarity" or not isinstance(event, dict):
            return False
        data = event.get("data") or {}
        status, order_id = data.get("StatusKey"), data.get("ID")
        if not status or order_id is None:
            return False
        return fingerprints.consume("clarity", "order", str(order_id), f"status={status}")

    return is_echo


def _outbound_post(s: Settings) -> Action | None:
    """The action behind ``outbound.webhook.post``, when CB_OUTBOUND_WEBHOOK_URL is set."""
    if not s.outbound_webhook_url:
        return None
    return OutboundWebhookSender(
        s.outbound_webhook_url,
        secret=s.outbound_webhook_secret.get_secret_value() if s.outbound_webhook_secret else None,
        client=httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0)),
    ).post


def bootstrap(
    settings: Settings,
    role: Role,
    *,
    extra_workflows: Iterable[WorkflowSpec] = (),
    extra_actions: Mapping[str, Action] | None = None,
    migrate: bool = False,
) -> Container:
    """Build the container for ``role``; ``serve`` and ``worker`` also get the engine (not launched)."""
    clock = SystemClock()
    db = store_db.make_engine(settings.database_url, pool_size=max(5, settings.worker_concurrency + 2))
    if migrate:
        store_db.upgrade(db)
    metrics = Metrics()
    inbox, runs, dlq, audit = SqlInbox(db), SqlRuns(db), SqlDeadLetters(db), SqlAuditLog(db)
    leases = SqlWorkerLeases(db)
    # call slots: in memory where this process alone calls out (SQLite), else batches of the database's shared slots
    shared_slots = SqlRateLimiter(db, leases)
    limiter = process_limiter(settings.rate_limit_scope, db.dialect.name, shared_slots)
    alerter = Alerter(_alert_sinks(settings), clock, window_s=settings.alert_window_s,
                      redact=Redactor(settings.log_pii_keys).redact)

    def on_breaker_change(name: str, old: BreakerState, new: BreakerState) -> None:
        metrics.breaker_state.labels(name).set(STATE_GAUGE_VALUE[new])
        alert = alert_for_change(name, old, new)
        if alert is not None:
            alerter.alert(alert)

    breakers = BreakerRegistry(
        BreakerConfig(failure_threshold=settings.breaker_failure_threshold,
                      reset_timeout_s=settings.breaker_reset_timeout_s),
        clock, on_breaker_change,
    )
    registry = WorkflowRegistry.load(user_dir=settings.workflows_dir, code=code_workflows(settings, extra_workflows))
    identity, fingerprints = SqlIdentityMap(db), SqlWriteFingerprints(db)
    reconciliations = SqlReconciliations(db)
    call_limiter = CallLimiter(limiter, settings.rate_limits, settings.rate_limit_margin, metrics)
    # find-then-create steps: one at a time per key, across the processes that share the store (in memory where
    # one process calls out, as for the call slots; advisory locks on PostgreSQL)
    one_process = settings.rate_limit_scope == "process" or (
        settings.rate_limit_scope == "auto" and db.dialect.name == "sqlite")
    locks = SqlKeyLocks(db, scope="process" if one_process else "shared")
    cursors = SqlCursorStore(db)
    gateways = _gateways(settings, cursors, call_limiter, locks)
    syncer = customer_syncer(gateways, identity, cursors, locks, alerter.alert)
    products = product_syncer(settings, gateways, identity, cursors, locks)
    actions: dict[str, Action] = {
        **build_actions(identity=identity, fingerprints=fingerprints, locks=locks, stripe_gateway=gateways.stripe,
                        clarity_gateway=gateways.clarity, erp_gateway=gateways.erp, mailer=gateways.mailer,
                        audit=audit, outbound_post=_outbound_post(settings), alert=alerter.alert,
                        flow=FlowSettings(erp_paid_to_account=settings.erp_paid_to_account,
                                          retry_url=settings.payment_retry_url,
                                          mail_from=settings.shop_email_from,
                                          dispute_accounts=DisputeAccounts(
                                              disputes=settings.erp_disputes_account,
                                              fees=settings.erp_dispute_fees_account,
                                              clearing=settings.erp_paid_to_account,
                                              chargebacks=settings.erp_chargebacks_account),
                                          payout_accounts=payout_accounts(settings),
                                          erp_item_group=settings.erp_item_group,
                                          erp_default_uom=settings.erp_default_uom,
                                          erp_uom_map=dict(settings.erp_uom_map),
                                          stock_warehouses=tuple(settings.stock_warehouses),
                                          inventory_section=settings.clarity_inventory_section,
                                          customer_source_of_truth=dict(settings.customer_source_of_truth),
                                          customer_sync=settings.customer_sync),
                        reconciliations=reconciliations, customer_syncer=syncer),
        **product_actions(settings, products),
        **(extra_actions or {}),
    }
    # what is really bound decides; the CLI predicts it with disabled_for_connectors (a test keeps them equal)
    disabled = {name: sorted(types) for name, types in registry.missing_actions(actions.keys()).items()}
    turned_off = disabled_by_settings(settings, registry)
    if disabled and role in ("serve", "worker"):
        structlog.get_logger("commerce_bridge.bootstrap").warning(
            "workflows.disabled", reason="no connector configured for these step types", workflows=disabled)
    # status names come from the status map (CB_STATUS_MAP), CB_WORKFLOW_VARS win; pinned into each run
    status_vars = settings.statuses().workflow_vars()
    workflow_vars = run_vars(settings, registry)
    ignored = registry.ignored_status_vars(status_vars, workflow_vars)
    if ignored and role in ("serve", "worker"):
        structlog.get_logger("commerce_bridge.bootstrap").warning(
            "workflows.status_vars_ignored", files=ignored,
            reason="status vars come from CB_STATUS_MAP (or CB_WORKFLOW_VARS), not from workflow files")
    unknown = sorted(set(settings.workflow_priorities) - {w.name for w in registry.all()})
    if unknown:
        raise ConfigurationError(
            f"CB_WORKFLOW_PRIORITIES names workflows that are not loaded: {', '.join(unknown)}",
            suggested_fix="use the names `commerce-bridge workflows list` shows (or remove them)")
    router = Router(registry, disabled=set(disabled) | turned_off,
                          echo=_echo_check(fingerprints), workflow_vars=workflow_vars,
                          priorities=settings.workflow_priorities)
    engine_url = settings.effective_engine_database_url()
    if engine_url.startswith("sqlite"):
        from pathlib import Path

        Path(engine_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    admin = EngineAdmin(engine_url, runs=runs, dead_letters=dlq, leases=leases, router=router, inbox=inbox)
    reconciler = (PayoutReconciler(gateways.stripe, gateways.erp, reconciliations, payout_accounts(settings))
                  if gateways.stripe is not None and gateways.erp is not None else None)
    c = Container(settings=settings, role=role, db=db, inbox=inbox, runs=runs, dead_letters=dlq, audit=audit,
                  leases=leases, limiter=limiter, metrics=metrics, alerter=alerter, breakers=breakers,
                  router=router, admin=admin, disabled_workflows=disabled, locks=locks, shared_slots=shared_slots,
                  reconciliations=reconciliations, reconciler=reconciler, drift=drift_finder(settings, gateways))
    c.cursors, c.customer_syncer, c.product_syncer = cursors, syncer, products
    c.gateways = gateways
    c.product_pages = product_backfill_pages(gateways)
    if settings.clarity_inventory_section and gateways.clarity is not None and gateways.erp is not None:
        c.stock = StockPush(gateways.erp, gateways.clarity, c.cursors, section_key=settings.clarity_inventory_section,
                            warehouses=settings.stock_warehouses)
    if gateways.stripe is not None or gateways.clarity is not None:
        # the types of the workflows enabled now (the router is the one the dispatcher routes with)
        c.gaps = GapFinder(inbox, stripe=gateways.stripe, clarity=gateways.clarity,
                           stripe_types=lambda: router.event_types("stripe"),
                           wants=lambda source, event_type: bool(router.route(source, event_type)),
                           on_fed=c.wake_dispatchers)

    if role in ("serve", "ingress"):
        schemes: dict[str, SignatureScheme] = {}
        for source, secrets, header in (
            ("stripe", settings.stripe_webhook_secrets, "stripe-signature"),
            ("clarity", settings.clarity_webhook_secrets, "x-bridge-signature"),
            ("erp", settings.erp_webhook_secrets, "x-bridge-signature"),
        ):
            if secrets:
                schemes[source] = SignatureScheme(
                    header=header, secrets=tuple(s.get_secret_value().encode() for s in secrets),
                    tolerance_s=settings.webhook_tolerance_s,
                )
        if not schemes:
            raise ConfigurationError(
                "Invalid configuration: no webhook source is configured",
                errors=["CB_STRIPE_WEBHOOK_SECRETS, CB_CLARITY_WEBHOOK_SECRETS or CB_ERP_WEBHOOK_SECRETS: "
                        "set at least one to receive webhooks"],
            )
        c.committer = GroupCommitter(inbox, max_batch=settings.group_commit_max_batch,
                                     max_wait_s=settings.group_commit_max_wait_ms / 1000.0,
                                     linger_s=settings.group_commit_linger_ms / 1000.0,
                                     commit_timeout_s=settings.ingest_store_timeout_s)
        c.committer.on_commit = lambda size, new: metrics.group_commit_size.observe(size)
        rekeyers = {}
        if gateways.clarity is not None:
            zone = gateways.clarity.zone
            rekeyers["clarity"] = lambda doc: event_from_notice(doc, zone)
        c.ingest = IngestService(schemes, c.committer, now=time.time, rekeyers=rekeyers,
                                 max_json_depth=settings.max_json_depth)

    if role in ("serve", "worker"):
        policies = RetryPolicies.from_config(
            {"max_attempts": settings.retry_max_attempts, "base_delay_s": settings.retry_base_delay_s,
             "max_delay_s": settings.retry_max_delay_s},
            settings.retry_policies,
        )
        c.engine = Engine(
            EngineConfig(
                system_database_url=engine_url,
                executor_id=settings.worker_id or default_worker_id(role),
                worker_concurrency=settings.worker_concurrency,
                rate_limits=dict(settings.rate_limits), rate_limit_margin=settings.rate_limit_margin,
                lease_s=settings.lease_s, heartbeat_interval_s=settings.heartbeat_interval_s,
                takeover_grace_s=settings.takeover_grace_s, dispatch_interval_s=settings.dispatch_interval_s,
                idle_polling_interval_s=settings.engine_idle_poll_s, long_wait_s=settings.long_wait_s,
                # connectors that take a limiter slot per HTTP request themselves
                self_limited=frozenset(name for name, gw in (("stripe", gateways.stripe), ("clarity", gateways.clarity),
                                                             ("erp", gateways.erp)) if gw is not None),
                unrecorded_steps=frozenset(t.type for t in step_catalogue().all() if not t.checkpointed),
                # woken on commit by ingress in this process (serve) or, on PostgreSQL, by NOTIFY (store.wake)
                woken_by_ingress=role == "serve" or db.dialect.name == "postgresql",
            ),
            router=router, actions=actions, inbox=inbox, runs=runs, dead_letters=dlq, leases=leases,
            limiter=limiter, breakers=breakers, retry_policies=policies, metrics=metrics, alert=alerter.alert,
            workflow_vars=workflow_vars, timers=SqlTimers(db),
        )
        background_jobs(c, settings, gateways, inbox, locks, db, alerter, metrics)
        if db.dialect.name == "postgresql":
            c.listener = InboxListener(settings.database_url, c.engine.wake_dispatcher)
        if c.committer is not None:
            engine = c.engine

            def after_commit(size: int, new: int) -> None:
                metrics.group_commit_size.observe(size)
                if new:
                    engine.wake_dispatcher()
                    if c.notifier is not None:
                        c.notifier.poke()

            c.committer.on_commit = after_commit
    if c.committer is not None and db.dialect.name == "postgresql":
        c.notifier = InboxNotifier(db)  # the other processes' dispatchers (workers beside this ingress)
        if c.engine is None:
            notifier = c.notifier

            def after_commit_notify(size: int, new: int) -> None:
                metrics.group_commit_size.observe(size)
                if new:
                    notifier.poke()

            c.committer.on_commit = after_commit_notify
    return c


def migration_status(c: Container) -> tuple[str | None, str]:
    """(current, head) migration revisions of the container's database."""
    return store_db.migration_status(c.db)
