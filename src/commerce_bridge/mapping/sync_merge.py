"""What the customer and product merges share (``mapping.customer_sync``, ``mapping.product_sync``): the check of a
sync policy and the shape of a merge's result.

Rules kept here:

* A policy's ``source_of_truth`` names only fields of its kind, each decided by a system that can hold it (a kind
  that says which system carries which field gives ``carried``; else any of its systems); ``system_order`` (the
  tie-break) lists each system once. Anything else is a ``ConfigurationError`` at startup, naming the field.
* A patch's fingerprint is ``<version>:`` and the SHA-256 of its system and values (key order does not matter).
* A ``MergeResult`` holds the merged record, who won each field, the set values that lost (``Conflict``), and per
  system its patch (``{}``: nothing to write) and the fields that patch changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from commerce_bridge.errors import ConfigurationError

R = TypeVar("R")
V = TypeVar("V")


def check_policy(kind: str, source_of_truth: Mapping[str, str], system_order: Sequence[str], *,
                 fields: Sequence[str], systems: Sequence[str],
                 carried: Mapping[str, Collection[str]] | None = None) -> None:
    """Check a sync policy (see the module docstring).

    Parameters
    ----------
    kind:
        ``customer`` or ``product``, in the messages.
    source_of_truth, system_order:
        The policy's.
    fields:
        The fields a source of truth may be given for.
    systems:
        The kind's systems.
    carried:
        System -> the fields it holds, when a system holds only some (the customers); None: any system may decide
        any field.

    Raises
    ------
    ConfigurationError
        An unknown field, a system that cannot decide the field, or a ``system_order`` that does not list each
        system once.
    """
    for name, system in source_of_truth.items():
        if name not in fields:
            raise ConfigurationError(f"{kind} sync policy: unknown field {name!r}",
                                     suggested_fix=f"use one of {', '.join(fields)}")
        if carried is not None:
            if system not in carried or name not in carried[system]:
                raise ConfigurationError(f"{kind} sync policy: {system!r} cannot be the source of {name}",
                                         suggested_fix="choose a system that holds the field")
        elif system not in systems:
            raise ConfigurationError(f"{kind} sync policy: unknown system {system!r} for {name}",
                                     suggested_fix=f"use one of {', '.join(systems)}")
    if sorted(system_order) != sorted(systems):
        raise ConfigurationError(f"{kind} sync policy: system_order must list clarity, erp and stripe once",
                                 suggested_fix=f"e.g. {list(systems)}")


def patch_fingerprint(version: str, system: str, patch: Mapping[str, Any]) -> str:
    """A stable hash of the values a patch writes to ``system`` (key order does not matter), after ``version:``."""
    text = json.dumps({"system": system, "patch": patch}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{version}:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)  # no slots: Python 3.11 cannot build a slotted generic through its alias
class Conflict(Generic[V]):
    """A set value that lost: ``system`` held ``value`` of ``field`` (changed at ``updated_at``); ``winner``
    decided."""

    field: str
    system: str
    value: V
    updated_at: datetime
    winner: str


@dataclass(frozen=True)  # no slots: Python 3.11 cannot build a slotted generic through its alias
class MergeResult(Generic[R, V]):
    """The merged record, who won each field, the losing values, the patch and changed fields per system."""

    record: R
    winners: Mapping[str, str]
    conflicts: tuple[Conflict[V], ...]
    patches: Mapping[str, dict[str, Any]]
    changed: Mapping[str, tuple[str, ...]]

    @property
    def converged(self) -> bool:
        """Nothing to write anywhere."""
        return not any(self.patches.values())
