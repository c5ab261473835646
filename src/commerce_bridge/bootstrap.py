"""The composition root: builds every object of a process from :class:`~commerce_bridge.config.Settings`.

Nothing here runs at import time; entry points call :func:`bootstrap`. Tests call it with their own
settings (and, at the ports, their own fakes or extra workflows).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine as SqlEngine

from commerce_bridge.config import Settings
from commerce_bridge.connectors.notify.alert_sinks import EmailAlertSink, LogAlertSink, WebhookAlertSink
from commerce_bridge.domain.signature import SignatureScheme
from commerce_bridge.engine.breaker import (
    STATE_GAUGE_VALUE,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    alert_for_change,
)
from commerce_bridge.engine.retry import RetryPolicies
from commerce_bridge.engine.runtime import Engine, EngineAdmin, EngineConfig
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.logsetup import Redactor
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alert, Alerter, AlertSink, Severity
from commerce_bridge.services.clock import SystemClock
from commerce_bridge.services.ingest import GroupCommitter, IngestService
from commerce_bridge.store import db as store_db
from commerce_bridge.store.coordination import SqlRateLimiter, SqlWorkerLeases
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.runs import SqlAuditLog, SqlDeadLetters, SqlRuns
from commerce_bridge.workflows.builtin import BUILTIN_WORKFLOWS, Router, forward_workflow
from commerce_bridge.workflows.spec import Action, StepContext, WorkflowSpec

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
    limiter: SqlRateLimiter
    metrics: Metrics
    alerter: Alerter
    breakers: BreakerRegistry
    router: Router
    admin: EngineAdmin
    ingest: IngestService | None = None
    committer: GroupCommitter | None = None
    engine: Engine | None = None
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

    def housekeeping(self) -> None:
        """Run about once a second: send held alert summaries, alert on a growing inbox backlog."""
        try:
            backlog = self.inbox.backlog()
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

    def close(self) -> None:
        self.admin.close()
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


def builtin_actions(audit: SqlAuditLog) -> dict[str, Action]:
    """The step types every installation has."""

    def record(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"new": audit.record(ctx.run_id, ctx.source, ctx.event_id, ctx.event_type)}

    return {"core.audit.record": record}


def _connector_actions(s: Settings) -> dict[str, Action]:
    """Step types backed by the configured connectors."""
    import httpx

    from commerce_bridge.connectors.outbound.webhook import OutboundWebhookSender

    actions: dict[str, Action] = {}
    if s.outbound_webhook_url:
        sender = OutboundWebhookSender(
            s.outbound_webhook_url,
            secret=s.outbound_webhook_secret.get_secret_value() if s.outbound_webhook_secret else None,
            client=httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0)),
        )
        actions["outbound.webhook.post"] = sender.post
    return actions


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
    limiter = SqlRateLimiter(db, leases)
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
    workflows = [*BUILTIN_WORKFLOWS, *extra_workflows]
    if settings.outbound_webhook_url:
        workflows.append(forward_workflow(settings.outbound_event_types))
    router = Router(workflows)
    engine_url = settings.effective_engine_database_url()
    if engine_url.startswith("sqlite"):
        from pathlib import Path

        Path(engine_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    admin = EngineAdmin(engine_url, runs=runs, dead_letters=dlq, leases=leases)
    c = Container(settings=settings, role=role, db=db, inbox=inbox, runs=runs, dead_letters=dlq, audit=audit,
                  leases=leases, limiter=limiter, metrics=metrics, alerter=alerter, breakers=breakers,
                  router=router, admin=admin)

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
                                     max_wait_s=settings.group_commit_max_wait_ms / 1000.0)
        c.committer.on_commit = lambda size, new: metrics.group_commit_size.observe(size)
        c.ingest = IngestService(schemes, c.committer, now=time.time)

    if role in ("serve", "worker"):
        policies = RetryPolicies.from_config(
            {"max_attempts": settings.retry_max_attempts, "base_delay_s": settings.retry_base_delay_s,
             "max_delay_s": settings.retry_max_delay_s},
            settings.retry_policies,
        )
        actions = {**builtin_actions(audit), **_connector_actions(settings), **(extra_actions or {})}
        c.engine = Engine(
            EngineConfig(
                system_database_url=engine_url,
                executor_id=settings.worker_id or default_worker_id(role),
                worker_concurrency=settings.worker_concurrency,
                rate_limits=dict(settings.rate_limits), rate_limit_margin=settings.rate_limit_margin,
                lease_s=settings.lease_s, heartbeat_interval_s=settings.heartbeat_interval_s,
                takeover_grace_s=settings.takeover_grace_s, dispatch_interval_s=settings.dispatch_interval_s,
            ),
            router=router, actions=actions, inbox=inbox, runs=runs, dead_letters=dlq, leases=leases,
            limiter=limiter, breakers=breakers, retry_policies=policies, metrics=metrics, alert=alerter.alert,
        )
        if c.committer is not None:
            engine = c.engine

            def after_commit(size: int, new: int) -> None:
                metrics.group_commit_size.observe(size)
                if new:
                    engine.wake_dispatcher()

            c.committer.on_commit = after_commit
    return c


def migration_status(c: Container) -> tuple[str | None, str]:
    """(current, head) migration revisions of the container's database."""
    return store_db.migration_status(c.db)


def connection_checks(s: Settings) -> list[tuple[str, bool, str]]:
    """Check each configured outside connection; each result says what is wrong in words."""
    import httpx

    results: list[tuple[str, bool, str]] = []
    engine_url = s.effective_engine_database_url()
    try:
        eng = store_db.make_engine(engine_url)
        with eng.connect() as conn:
            store_db.ping(conn)
        eng.dispose()
        results.append(("engine database", True, "reachable"))
    except Exception as exc:
        results.append(("engine database", False, f"cannot connect to CB_ENGINE_DATABASE_URL: {exc}"))
    sources = [n for n, v in (("stripe", s.stripe_webhook_secrets), ("clarity", s.clarity_webhook_secrets),
                              ("erp", s.erp_webhook_secrets)) if v]
    results.append(("webhook sources", bool(sources),
                    ", ".join(sources) if sources else "no webhook secret set: ingress would refuse to start"))
    results.append(("admin API", bool(s.admin_tokens),
                    f"{len(s.admin_tokens)} token(s)" if s.admin_tokens else "CB_ADMIN_TOKENS empty: /api/v1 is closed"))

    def probe(name: str, setting: str, fn: Any) -> None:
        try:
            ok, detail = fn()
        except httpx.HTTPError as exc:
            ok, detail = False, f"cannot reach {setting}: {type(exc).__name__}: {exc}"
        results.append((name, ok, detail))

    with httpx.Client(timeout=5.0) as http:
        if s.stripe_api_key:
            key = s.stripe_api_key.get_secret_value()
            base = (s.stripe_api_base or "https://api.stripe.com").rstrip("/")

            def stripe_probe() -> tuple[bool, str]:
                r = http.get(f"{base}/v1/balance", headers={"Authorization": f"Bearer {key}"})
                if r.status_code == 200:
                    return True, f"{base}: API key accepted"
                if r.status_code in (401, 403):
                    return False, f"{base} rejected CB_STRIPE_API_KEY (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("stripe", "CB_STRIPE_API_BASE", stripe_probe)
        if s.clarity_base_url:
            base = s.clarity_base_url.rstrip("/")

            def clarity_probe() -> tuple[bool, str]:
                pw = s.clarity_password.get_secret_value() if s.clarity_password else ""
                r = http.post(f"{base}/auth/identity", json={"UserName": s.clarity_user or "", "Password": pw})
                if r.status_code == 200:
                    return True, f"{base}: logged in as {s.clarity_user}"
                if r.status_code in (401, 403):
                    return False, f"{base} refused CB_CLARITY_USER / CB_CLARITY_PASSWORD (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("clarity", "CB_CLARITY_BASE_URL", clarity_probe)
        if s.erp_base_url:
            base = s.erp_base_url.rstrip("/")

            def erp_probe() -> tuple[bool, str]:
                secret = s.erp_api_secret.get_secret_value() if s.erp_api_secret else ""
                r = http.get(f"{base}/api/resource/Customer", params={"limit_page_length": 1},
                             headers={"Authorization": f"token {s.erp_api_key}:{secret}"})
                if r.status_code == 200:
                    return True, f"{base}: API key accepted"
                if r.status_code in (401, 403):
                    return False, f"{base} refused CB_ERP_API_KEY / CB_ERP_API_SECRET (HTTP {r.status_code})"
                return False, f"{base} answered HTTP {r.status_code}"

            probe("erp", "CB_ERP_BASE_URL", erp_probe)
    return results
