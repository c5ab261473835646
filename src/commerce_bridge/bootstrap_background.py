"""What ``serve`` and ``worker`` run in the background besides the engine: the pollers (Clarity's orders and
returns, ERPNext's Bins; with the customer sync Clarity's accounts and ERPNext's customers, with the product sync
Clarity's products and ERPNext's Items and Item Prices) and the scheduled checks (drift, gaps), each led by one
process at a time through its key lock. Wiring only: the rules are in ``services.polling``, ``services.schedule`` and the services they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine as Database

from commerce_bridge.config import Settings
from commerce_bridge.metrics import Metrics
from commerce_bridge.services.alerts import Alerter
from commerce_bridge.services.customer_poll import customer_poll
from commerce_bridge.services.drift import KINDS as DRIFT_KINDS
from commerce_bridge.services.drift import Difference, DriftReport
from commerce_bridge.services.drift_watch import DRIFT_LOCK, DriftWatch
from commerce_bridge.services.gaps import FIRST_CHECK_AFTER_S as GAP_FIRST_CHECK_AFTER_S
from commerce_bridge.services.gaps import GAP_LOCK, GapReport, GapWatch
from commerce_bridge.services.polling import ChangePoller, Every, Leadership, Poll, poll_lease_s
from commerce_bridge.services.product_poll import item_poll
from commerce_bridge.services.schedule import LeaderSchedule
from commerce_bridge.services.stock_push import bin_poll
from commerce_bridge.store.drift import SqlReportedDrift
from commerce_bridge.store.inbox import SqlInbox
from commerce_bridge.store.locks import SqlKeyLocks

if TYPE_CHECKING:
    from commerce_bridge.bootstrap import Container, Gateways

# poller -> the key lock whose holder polls it (the customer and product pollers have their own: their cycles are
# slower)
POLLER_LOCKS = {"clarity": "poller:clarity", "erp": "poller:erp", "clarity.accounts": "poller:clarity.accounts",
                "erp.customers": "poller:erp.customers", "clarity.products": "poller:clarity.products",
                "erp.items": "poller:erp.items"}


def background_jobs(c: Container, settings: Settings, gateways: Gateways, inbox: SqlInbox, locks: SqlKeyLocks,
                    db: Database, alerter: Alerter, metrics: Metrics) -> None:
    """Add the pollers and scheduled checks the settings turn on to ``c`` (``c.engine`` is built)."""
    assert c.engine is not None
    if gateways.clarity is not None and settings.clarity_poll_interval_s > 0:
        clarity = gateways.clarity
        # one process polls Clarity at a time (the lease holder); the others stand by. The holder is
        # the worker id, which survives a restart: a restarted leader polls again at once instead of
        # waiting for its own old lease to run out.
        leader = Leadership(locks, POLLER_LOCKS["clarity"], c.engine.config.executor_id[:100],
                            lease_s=poll_lease_s(settings.clarity_poll_interval_s))

        returns_due = Every(settings.clarity_returns_poll_interval_s)

        def poll_clarity(deliver: Callable[[list[dict[str, Any]]], Any]) -> None:
            # orders every cycle, sales returns (their own cursor) every CB_CLARITY_RETURNS_POLL_INTERVAL_S:
            # one lease, one cycle, each stored as it is read
            clarity.poll_changed_orders(deliver)
            if returns_due.due():
                clarity.poll_changed_returns(deliver)
                returns_due.done()

        c.pollers.append(ChangePoller(
            "clarity", poll_clarity, inbox,
            interval_s=settings.clarity_poll_interval_s, on_stored=lambda n: c.engine.wake_dispatcher()
            if c.engine else None, alert=alerter.alert, leader=leader,
        ))
    if c.drift is not None and settings.drift_interval_s > 0:
        # one process checks at a time (the lease holder, renewed every check), as the Clarity poller
        watch = DriftWatch(c.drift, SqlReportedDrift(db), window=timedelta(days=settings.drift_window_days),
                           settle=timedelta(seconds=settings.drift_settle_s), alert=alerter.alert,
                           on_report=_drift_metrics(metrics))
        c.drift_schedule = LeaderSchedule(
            "drift", watch.check_once, what="The drift check", interval_s=settings.drift_interval_s,
            alert=alerter.alert,
            leader=Leadership(locks, DRIFT_LOCK, c.engine.config.executor_id[:100],
                              lease_s=max(30.0, 3 * settings.drift_interval_s)))
    if c.stock is not None and c.cursors is not None and gateways.erp is not None and settings.stock_poll_interval_s > 0:
        # ERPNext's changed Bins become `bin.changed` events (erp.stock_changed writes Clarity's stock); one
        # process polls at a time, as Clarity's poller
        c.pollers.append(ChangePoller(
            "erp", bin_poll(gateways.erp, c.cursors, warehouses=settings.stock_warehouses), inbox,
            interval_s=settings.stock_poll_interval_s, on_stored=lambda n: c.engine.wake_dispatcher()
            if c.engine else None, alert=alerter.alert,
            leader=Leadership(locks, POLLER_LOCKS["erp"], c.engine.config.executor_id[:100],
                              lease_s=poll_lease_s(settings.stock_poll_interval_s))))
    if settings.customer_sync and c.customer_syncer is not None and c.cursors is not None:
        _customer_pollers(c, settings, gateways, inbox, locks, alerter)
    if settings.product_sync and c.product_syncer is not None and c.cursors is not None:
        _product_pollers(c, settings, gateways, inbox, locks, alerter)
    if c.gaps is not None and settings.gap_interval_s > 0:
        # one process checks at a time (the lease holder, renewed every check), as the drift check
        c.gap_watch = GapWatch(c.gaps, window=timedelta(days=settings.gap_window_days),
                               settle=timedelta(seconds=settings.gap_settle_s), alert=alerter.alert,
                               on_report=_gap_metrics(metrics))
        c.gap_schedule = LeaderSchedule(
            "gaps", c.gap_watch.check_once, what="The gap check", interval_s=settings.gap_interval_s,
            alert=alerter.alert, first_after_s=GAP_FIRST_CHECK_AFTER_S,
            leader=Leadership(locks, GAP_LOCK, c.engine.config.executor_id[:100],
                              lease_s=max(30.0, 3 * settings.gap_interval_s)))


def _led_poller(c: Container, source: str, poll: Poll, inbox: SqlInbox, locks: SqlKeyLocks, alerter: Alerter, *,
                lock: str, interval_s: float) -> ChangePoller:
    """A poller of ``source`` run by one process at a time (the holder of the key lock ``lock``, leased for
    ``poll_lease_s(interval_s)``) that wakes the dispatcher when it stores events."""
    assert c.engine is not None

    def wake(n: int) -> None:
        if c.engine is not None:
            c.engine.wake_dispatcher()

    return ChangePoller(source, poll, inbox, interval_s=interval_s, on_stored=wake, alert=alerter.alert,
                        leader=Leadership(locks, lock, c.engine.config.executor_id[:100],
                                          lease_s=poll_lease_s(interval_s)))


def _customer_pollers(c: Container, settings: Settings, gateways: Gateways, inbox: SqlInbox, locks: SqlKeyLocks,
                      alerter: Alerter) -> None:
    """Clarity's changed accounts (and contacts) and ERPNext's changed customers become events of the customer
    sync's workflows (``clarity.account_changed``, ``erp.customer_changed``); one process polls each at a time."""
    assert c.cursors is not None
    clarity, erp = gateways.clarity, gateways.erp
    if clarity is not None and settings.clarity_accounts_poll_interval_s > 0:
        c.pollers.append(_led_poller(
            c, "clarity", lambda deliver: clarity.poll_changed_accounts(deliver), inbox, locks, alerter,
            lock=POLLER_LOCKS["clarity.accounts"], interval_s=settings.clarity_accounts_poll_interval_s))
    if erp is not None and settings.erp_customers_poll_interval_s > 0:
        c.pollers.append(_led_poller(
            c, "erp", customer_poll(erp, c.cursors), inbox, locks, alerter,
            lock=POLLER_LOCKS["erp.customers"], interval_s=settings.erp_customers_poll_interval_s))


def _product_pollers(c: Container, settings: Settings, gateways: Gateways, inbox: SqlInbox, locks: SqlKeyLocks,
                     alerter: Alerter) -> None:
    """Clarity's changed products and ERPNext's changed Items and Item Prices become events of the product sync's
    workflows (``clarity.product_changed``, ``erp.item_changed``); one process polls each at a time."""
    assert c.cursors is not None
    clarity, erp = gateways.clarity, gateways.erp
    if clarity is not None and settings.clarity_products_poll_interval_s > 0:
        c.pollers.append(_led_poller(
            c, "clarity", lambda deliver: clarity.poll_changed_products(deliver), inbox, locks, alerter,
            lock=POLLER_LOCKS["clarity.products"], interval_s=settings.clarity_products_poll_interval_s))
    if erp is not None and settings.erp_items_poll_interval_s > 0:
        c.pollers.append(_led_poller(
            c, "erp", item_poll(erp, c.cursors, price_list=settings.erp_selling_price_list), inbox, locks, alerter,
            lock=POLLER_LOCKS["erp.items"], interval_s=settings.erp_items_poll_interval_s))


def _drift_metrics(metrics: Metrics) -> Callable[[DriftReport, list[Difference]], None]:
    def on_report(report: DriftReport, new: list[Difference]) -> None:
        for kind in DRIFT_KINDS:
            metrics.drift_open.labels(kind).set(sum(1 for d in report.differences if d.kind == kind))
        for d in new:
            metrics.drift_new.labels(d.kind).inc()

    return on_report


def _gap_metrics(metrics: Metrics) -> Callable[[GapReport], None]:
    def on_report(report: GapReport) -> None:
        for gap in report.gaps:
            metrics.gaps_found.labels(gap.source, gap.event_type).inc()
        for gap in report.fed:
            metrics.gaps_filled.labels(gap.source).inc()
        metrics.gaps_last_run.set(time.time())

    return on_report
