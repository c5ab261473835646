"""Prometheus metrics of one process, on a registry of its own (created in bootstrap, never at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric the bridge exports at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "cb_webhook_deliveries_total", "Webhook deliveries by source and outcome.",
            ["source", "outcome"], registry=r,
        )
        self.ingest_latency = Histogram(
            "cb_ingest_latency_seconds", "Time from request to durable acknowledgement.", ["source"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )
        self.group_commit_size = Histogram(
            "cb_group_commit_batch_size", "Deliveries stored per durable commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r,
        )
        self.engine_fenced = Counter(
            "cb_engine_fenced_total", "Times this process's engine stopped its runs because its lease may have run out.",
            registry=r,
        )
        self.engine_restarts = Counter(
            "cb_engine_restarts_total", "Times this process's engine started again in-process after being fenced.",
            registry=r,
        )
        self.deliveries_isolated = Counter(
            "cb_deliveries_isolated_total",
            "Deliveries set aside at dispatch (could not be routed, started or serialised), by stage.",
            ["source", "stage"], registry=r,
        )
        self.inbox_backlog = Gauge("cb_inbox_backlog", "Deliveries received but not dispatched.", registry=r)
        self.runs = Gauge("cb_runs", "Workflow runs by state.", ["state"], registry=r)
        self.runs_finished = Counter(
            "cb_runs_finished_total", "Runs that ended, by outcome.", ["workflow", "outcome"], registry=r
        )
        self.step_attempts = Counter(
            "cb_step_attempts_total", "Step attempts by step type and outcome.", ["step_type", "outcome"], registry=r
        )
        self.retries = Counter("cb_retries_total", "Step retries scheduled.", ["step_type", "code"], registry=r)
        self.dlq_size = Gauge("cb_dlq_open", "Open dead-letter entries.", registry=r)
        self.limiter_wait = Histogram(
            "cb_rate_limiter_wait_seconds", "Time calls waited for their rate-limit slot.", ["destination"],
            buckets=(0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=r,
        )
        self.breaker_state = Gauge(
            "cb_circuit_breaker_state", "Breaker state per destination: 0 closed, 1 half-open, 2 open.",
            ["destination"], registry=r,
        )
        self.worker_heartbeat_age = Gauge(
            "cb_worker_heartbeat_age_seconds", "Seconds since this worker last renewed its lease.", registry=r
        )
        self.drift_new = Counter(
            "cb_drift_differences_new_total",
            "Differences between Stripe, Clarity and ERPNext first found by the scheduled drift check, by kind.",
            ["kind"], registry=r,
        )
        self.drift_open = Gauge(
            "cb_drift_differences", "Differences the last scheduled drift check found, by kind.", ["kind"], registry=r
        )

        self.gaps_found = Counter(
            "cb_gaps_found_total", "Events that never reached the inbox, found by the gap check, by source and type.",
            ["source", "type"], registry=r,
        )
        self.gaps_filled = Counter(
            "cb_gaps_filled_total", "Missing events the gap check stored in the inbox, by source.", ["source"],
            registry=r,
        )
        self.gaps_last_run = Gauge(
            "cb_gaps_last_run_timestamp_seconds", "When the last gap check of this process ended (Unix time).",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
