"""Retry decisions for workflow steps: per-step-type policies, capped exponential backoff, full jitter.

The error tree (``commerce_bridge.errors``) decides *whether* a failed step may run again; the
policy decides *how often* and *how long to wait*:

* ``TransientError``: retried with a delay drawn uniformly from
  ``[0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1))]`` ("full jitter") until
  ``max_attempts`` attempts have been made; then the step gives up (dead-letter queue).
* A server hint wins over the guess: ``RateLimited.retry_after`` (or ``details["retry_after"]``,
  which ``CircuitOpen`` carries) makes the delay ``max(retry_after, jittered backoff)``; a hint
  longer than ``max_retry_after_s`` gives up at once. ``details["should_retry"]`` (``True`` or
  ``False``, set by a connector from ``Stripe-Should-Retry``) overrides the class.
* ``PermanentError``, ``SignatureInvalid`` and every other ``BridgeError``: no retry.
* Anything that is not a ``BridgeError`` is a bug: no retry, and the decision says ``bug=True``.

Randomness is injected (``random.Random``), so decisions are reproducible in tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from commerce_bridge.errors import BridgeError, ConfigurationError, RateLimited

__all__ = [
    "RetryDecision",
    "RetryPolicies",
    "RetryPolicy",
    "backoff_ceiling",
    "decide",
    "retry_hint",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one kind of step is retried.

    Parameters
    ----------
    max_attempts:
        Total attempts including the first one (1 means "never retry").
    base_delay_s:
        Backoff ceiling of the first retry; it doubles with each further attempt.
    max_delay_s:
        Cap on the backoff ceiling.
    max_retry_after_s:
        The longest server-requested wait (``Retry-After``) the step accepts; a longer one gives up.
    """

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 600.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError(f"retry max_attempts must be an integer, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ConfigurationError(f"retry max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"retry {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"retry {name} must be a finite number >= 0, got {value!r}")

    def merged(self, overrides: Mapping[str, Any]) -> RetryPolicy:
        """This policy with some fields replaced from a plain dict (unknown keys are an error)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown retry policy field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
            )
        return replace(self, **dict(overrides))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt."""

    retry: bool
    delay_s: float
    reason: str
    bug: bool = False


class RetryPolicies:
    """Retry policies by step type: a default plus overrides by exact type or dotted prefix.

    A key matches a step type when it is equal to it (``stripe.refund.create``) or is a prefix of
    it at a dot boundary (``stripe.`` or ``stripe`` both match ``stripe.refund.create``, but
    ``stri`` does not). The longest matching key wins; an exact match always beats a prefix.
    """

    def __init__(
        self, default: RetryPolicy | None = None, overrides: Mapping[str, RetryPolicy] | None = None
    ):
        self.default = default or RetryPolicy()
        self._overrides: dict[str, RetryPolicy] = dict(overrides or {})
        # Longest keys first so that the first match is the most specific one.
        self._ordered = sorted(self._overrides.items(), key=lambda kv: len(kv[0].rstrip(".")), reverse=True)

    @classmethod
    def from_config(
        cls,
        default: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> RetryPolicies:
        """Build the table from plain dicts (as parsed from settings / ``CB_RETRY_POLICIES``).

        Parameters
        ----------
        default:
            Fields of the default policy, e.g. ``{"max_attempts": 5, "base_delay_s": 1.0}``.
        overrides:
            Step-type key to partial policy; missing fields come from the default, e.g.
            ``{"stripe.": {"max_attempts": 8}, "stripe.refund.create": {"max_attempts": 3}}``.

        Raises
        ------
        ConfigurationError
            On unknown fields, wrong types or out-of-range values.
        """
        base = RetryPolicy().merged(default or {})
        table: dict[str, RetryPolicy] = {}
        for key, partial in (overrides or {}).items():
            if not isinstance(key, str) or not key.strip("."):
                raise ConfigurationError(f"retry policy key must be a step type or prefix, got {key!r}")
            if not isinstance(partial, Mapping):
                raise ConfigurationError(f"retry policy for {key!r} must be an object, got {partial!r}")
            try:
                table[key] = base.merged(partial)
            except (TypeError, ConfigurationError) as exc:
                raise ConfigurationError(f"retry policy for {key!r}: {exc}") from exc
        return cls(base, table)

    def for_step(self, step_type: str) -> RetryPolicy:
        """The policy that applies to ``step_type``."""
        exact = self._overrides.get(step_type)
        if exact is not None:
            return exact
        for key, policy in self._ordered:
            prefix = key if key.endswith(".") else key + "."
            if step_type.startswith(prefix):
                return policy
        return self.default

    def as_dict(self) -> dict[str, Any]:
        """The table as plain data (for the admin API and docs)."""

        def plain(p: RetryPolicy) -> dict[str, Any]:
            return {f.name: getattr(p, f.name) for f in fields(p)}

        return {
            "default": plain(self.default),
            "overrides": {k: plain(v) for k, v in self._overrides.items()},
        }


def backoff_ceiling(policy: RetryPolicy, attempt: int) -> float:
    """Upper bound of the jittered delay after failed attempt number ``attempt`` (1-based)."""
    exponent = min(attempt - 1, 1024)  # 2.0 ** 1024 overflows; the cap applies long before
    try:
        raw = policy.base_delay_s * 2.0**exponent
    except OverflowError:
        raw = math.inf
    return min(policy.max_delay_s, raw)


def retry_hint(error: BaseException) -> float | None:
    """The server-requested minimum wait carried by ``error``, if any (seconds)."""
    hint: object = None
    if isinstance(error, RateLimited):
        hint = error.retry_after
    if hint is None and isinstance(error, BridgeError):
        hint = error.details.get("retry_after")
    if isinstance(hint, bool) or not isinstance(hint, int | float) or not math.isfinite(hint):
        return None
    return max(0.0, float(hint))


def decide(policy: RetryPolicy, attempt: int, error: BaseException, rng: random.Random) -> RetryDecision:
    """Decide whether a step that just failed attempt number ``attempt`` runs again, and when.

    Parameters
    ----------
    policy:
        The policy of the step type (``RetryPolicies.for_step``).
    attempt:
        Which attempt just failed, counting from 1.
    error:
        What it raised.
    rng:
        The source of jitter.

    Returns
    -------
    RetryDecision
        ``retry`` and ``delay_s`` (seconds to wait before the next attempt; 0 when not retrying),
        a short ``reason`` for logs and the DLQ, and ``bug`` for non-``BridgeError`` exceptions.

    Raises
    ------
    ValueError
        If ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not isinstance(error, Exception):
        # KeyboardInterrupt, SystemExit, asyncio.CancelledError: shutting down, not failing.
        return RetryDecision(False, 0.0, f"interrupted by {type(error).__name__}")
    if not isinstance(error, BridgeError):
        return RetryDecision(False, 0.0, f"bug: {type(error).__name__} is not a BridgeError", bug=True)

    override = error.details.get("should_retry")
    if override is False:
        return RetryDecision(False, 0.0, f"{error.code}: upstream said not to retry")
    retryable = error.transient or override is True
    if not retryable:
        return RetryDecision(False, 0.0, f"{error.code} is permanent")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, 0.0, f"{error.code}: gave up after {attempt} attempt(s)")

    delay = rng.uniform(0.0, backoff_ceiling(policy, attempt))
    hint = retry_hint(error)
    if hint is None:
        return RetryDecision(True, delay, f"{error.code}: retry {attempt + 1}/{policy.max_attempts}")
    if hint > policy.max_retry_after_s:
        return RetryDecision(
            False,
            0.0,
            f"{error.code}: retry_after {hint:g} s exceeds the maximum {policy.max_retry_after_s:g} s",
        )
    return RetryDecision(
        True,
        max(hint, delay),
        f"{error.code}: retry {attempt + 1}/{policy.max_attempts} after retry_after {hint:g} s",
    )
