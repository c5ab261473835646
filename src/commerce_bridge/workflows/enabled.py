"""What a configuration runs: the workflows in code, the workflows it turns off, the step types it binds, and the
vars each workflow's runs are pinned with. Read from the settings only (no connection, no database), so the CLI
and ``serve``/``worker`` agree on it (a test keeps them equal).

Rules
-----
* A step type is bound when the connector of its system is configured (:data:`CONNECTORS`; ``core``,
  ``notify``, ``customer`` and ``product`` always are) and so are the systems it ``also_needs``; a workflow
  using a step type that is not bound is turned off, with the settings to set (``workflows list`` shows them).
* ``CB_WORKFLOWS_DISABLED`` turns workflows off by name (an unknown name stops start-up), and ``core.audit``
  is off unless ``CB_AUDIT_RUNS`` is on (a delivery's inbox row is its audit record).
* ``core.forward`` exists only when ``CB_OUTBOUND_WEBHOOK_URL`` is set.
* Runs are pinned with the status map's names, ``submit_evidence`` (``CB_DISPUTE_EVIDENCE_SUBMIT``),
  ``refund_unshipped`` (``CB_EARLY_FRAUD_REFUND``) and ``invoice_on`` (``CB_ERP_INVOICE_ON``) for the workflows
  that declare them; ``CB_WORKFLOW_VARS`` wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from commerce_bridge.config import Settings
from commerce_bridge.errors import ConfigurationError
from commerce_bridge.workflows.builtin import BUILTIN_WORKFLOWS, CORE_AUDIT, forward_workflow
from commerce_bridge.workflows.registry import WorkflowRegistry
from commerce_bridge.workflows.spec import WorkflowSpec
from commerce_bridge.workflows.steps import step_catalogue


@dataclass(frozen=True)
class Connector:
    """The connector behind the step types of one system (the first segment of a step type)."""

    system: str
    settings: tuple[str, ...]  # what configures it: the first setting turns it on, the others go with it
    configured: Callable[[Settings], bool]


CONNECTORS: dict[str, Connector] = {c.system: c for c in (
    Connector("stripe", ("CB_STRIPE_API_KEY",), lambda s: bool(s.stripe_api_key)),
    Connector("clarity", ("CB_CLARITY_BASE_URL", "CB_CLARITY_USER", "CB_CLARITY_PASSWORD"),
              lambda s: bool(s.clarity_base_url)),
    Connector("erp", ("CB_ERP_BASE_URL", "CB_ERP_API_KEY", "CB_ERP_API_SECRET"), lambda s: bool(s.erp_base_url)),
    Connector("outbound", ("CB_OUTBOUND_WEBHOOK_URL",), lambda s: bool(s.outbound_webhook_url)),
)}
# no connector, or the SMTP mailer (CB_SMTP_HOST has a default); `customer` and `product` (the customer and
# product syncers) use the connectors their step types `also_needs`
ALWAYS_BOUND = frozenset({"core", "notify", "customer", "product"})


def available_step_types(settings: Settings, extra: Iterable[str] = ()) -> set[str]:
    """The step types ``bootstrap`` binds an action to with these settings, and ``extra``.

    Reads the settings only: no connection is made and no database is opened, so the CLI can answer
    what ``serve`` and ``worker`` would run. The step types of a system come from the step catalogue;
    its connector is configured as :data:`CONNECTORS` says (``bootstrap`` builds the same ones).
    """
    def configured(system: str) -> bool:
        return system in ALWAYS_BOUND or (system in CONNECTORS and CONNECTORS[system].configured(settings))

    return {t.type for t in step_catalogue().all()
            if configured(t.destination) and all(configured(s) for s in t.also_needs)
            and (t.needs_setting is None or bool(getattr(settings, t.needs_setting)))} | set(extra)


def disabled_for_connectors(settings: Settings, registry: WorkflowRegistry,
                            extra: Iterable[str] = ()) -> dict[str, list[str]]:
    """The workflows ``serve`` and ``worker`` turn off because a step type they use has no configured connector.

    Parameters
    ----------
    settings
        The settings; only read (see :func:`available_step_types`).
    registry
        The loaded workflows; the active version of each is checked.
    extra
        Step types bound besides the connectors' (``bootstrap``'s ``extra_actions``).

    Returns
    -------
    dict
        Workflow name -> the sorted step types it uses that have no action.
    """
    return registry.missing_actions(available_step_types(settings, extra))


def code_workflows(settings: Settings, extra: Iterable[WorkflowSpec] = ()) -> list[WorkflowSpec]:
    """The workflows defined in code: the built-ins, ``extra``, and core.forward when CB_OUTBOUND_WEBHOOK_URL is set."""
    specs = [*BUILTIN_WORKFLOWS, *extra]
    if settings.outbound_webhook_url:
        specs.append(forward_workflow(settings.outbound_event_types))
    return specs


def disabled_by_settings(settings: Settings, registry: WorkflowRegistry) -> set[str]:
    """The workflows ``CB_WORKFLOWS_DISABLED`` turns off (they never start), and ``core.audit`` unless
    ``CB_AUDIT_RUNS`` is on (the inbox row of a delivery is its audit record).

    Raises
    ------
    ConfigurationError
        When it names a workflow ``registry`` does not hold; the message lists the installed ones.
    """
    known = {w.name for w in registry.all()}
    unknown = sorted(set(settings.workflows_disabled) - known)
    if unknown:
        raise ConfigurationError(
            "Invalid configuration: workflows_disabled names unknown workflows",
            errors=[f"CB_WORKFLOWS_DISABLED: no workflow named {', '.join(unknown)} "
                    f"(installed: {', '.join(sorted(known))})"],
        )
    return set(settings.workflows_disabled) | (set() if settings.audit_runs else {CORE_AUDIT.name})


def run_vars(settings: Settings, registry: WorkflowRegistry) -> dict[str, dict[str, Any]]:
    """The vars each workflow's runs are pinned with (name -> vars, over the file's own ``vars``).

    The status names come from the status map (``CB_STATUS_MAP``), ``submit_evidence`` from
    ``CB_DISPUTE_EVIDENCE_SUBMIT``, ``refund_unshipped`` from ``CB_EARLY_FRAUD_REFUND``, ``invoice_on`` from
    ``CB_ERP_INVOICE_ON``; ``CB_WORKFLOW_VARS`` wins over them.
    """
    pinned = {**settings.statuses().workflow_vars(), "submit_evidence": settings.dispute_evidence_submit,
              "refund_unshipped": settings.early_fraud_refund, "invoice_on": settings.erp_invoice_on}
    return registry.run_vars(pinned, settings.workflow_vars)
