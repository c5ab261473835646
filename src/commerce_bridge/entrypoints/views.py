"""What the admin API and the CLI show of the store: rows redacted exactly as the logs are.

Step inputs, error messages, tracebacks, suggested fixes, event and run fields all go through the
log pipeline's :class:`~commerce_bridge.logsetup.Redactor`, configured with ``CB_LOG_PII_KEYS``: a
card number, an e-mail address, a secret (``?token=…``, ``sk_live_…``, ``Bearer …``) or a PII field
that the log line hides is hidden here too. Our own counters (row ids, attempts, pids) and timestamps
are shown as they are: they are never personal data, and they must keep their types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from commerce_bridge.redaction import Redactor

MAX_ID = 2**63 - 1
"""The largest row id: SQLite's INTEGER and PostgreSQL's BIGINT are signed 64-bit."""

COUNTERS = frozenset({"id", "inbox_id", "attempts", "pid", "epoch", "recovered_runs", "lease_expires_at",
                      "lease_remaining_s", "resumed_runs"})


class RedactedViews:
    """Redacts rows of the store for display.

    Parameters
    ----------
    pii_keys:
        The settings' ``log_pii_keys``: field names whose values are personal data.
    """

    def __init__(self, pii_keys: Iterable[str]) -> None:
        self._redactor = Redactor(pii_keys)

    def row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``row`` with everything sensitive replaced; counters and timestamps as they are."""
        kept = {k: v for k, v in row.items() if k in COUNTERS or isinstance(v, date)}
        shown: dict[str, Any] = self._redactor.redact({k: v for k, v in row.items() if k not in kept})
        return {k: kept[k] if k in kept else shown[k] for k in row}

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.row(r) for r in rows]

    def text(self, text: str) -> str:
        return self._redactor.redact_text(text)

    def data(self, value: Any) -> Any:
        """A copy of any JSON-like value (a stored event, a dry run's parameters) redacted as a log field is."""
        return self._redactor.redact(value)
