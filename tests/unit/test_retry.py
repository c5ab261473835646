"""Retry decisions: the error tree decides, the policy bounds attempts and delays."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commerce_bridge import errors
from commerce_bridge.engine.retry import RetryPolicies, RetryPolicy, backoff_ceiling, decide

POLICY = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=30.0, max_retry_after_s=120.0)


def rng() -> random.Random:
    return random.Random(1234)


def test_transient_error_is_retried_with_delay_within_the_backoff_ceiling() -> None:
    d = decide(POLICY, 3, errors.UpstreamUnavailable("503"), rng())
    assert d.retry and not d.bug
    assert 0.0 <= d.delay_s <= 4.0
    assert "upstream_unavailable" in d.reason and "4/5" in d.reason


def test_backoff_ceiling_doubles_then_stops_at_the_cap() -> None:
    assert [backoff_ceiling(POLICY, a) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_ceiling(POLICY, 100_000) == 30.0


def test_jitter_is_full_jitter_over_the_whole_range() -> None:
    r = rng()
    delays = [decide(POLICY, 4, errors.Conflict(), r).delay_s for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5  # spread over [0, 8], not clustered near 8
    assert all(0.0 <= d <= 8.0 for d in delays)


def test_same_seed_gives_the_same_decisions() -> None:
    a = [decide(POLICY, n, errors.StoreUnavailable(), random.Random(7)).delay_s for n in range(1, 5)]
    b = [decide(POLICY, n, errors.StoreUnavailable(), random.Random(7)).delay_s for n in range(1, 5)]
    assert a == b


def test_transient_error_gives_up_when_max_attempts_is_reached() -> None:
    d = decide(POLICY, 5, errors.UpstreamUnavailable(), rng())
    assert not d.retry and d.delay_s == 0.0 and not d.bug
    assert "gave up after 5" in d.reason


@pytest.mark.parametrize(
    "error",
    [
        errors.ValidationError(),
        errors.MappingError(),
        errors.NotFound(),
        errors.UpstreamRejected(),
        errors.UpstreamAuthFailed(),
        errors.SignatureInvalid(),
        errors.ConfigurationError(),
        errors.BridgeError(),
        errors.PayloadTooLarge(),
    ],
)
def test_non_transient_bridge_errors_are_not_retried(error: errors.BridgeError) -> None:
    d = decide(POLICY, 1, error, rng())
    assert not d.retry and not d.bug
    assert error.code in d.reason


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("k"), RuntimeError(), ZeroDivisionError()])
def test_non_bridge_exception_is_a_bug_and_never_retried(error: Exception) -> None:
    d = decide(POLICY, 1, error, rng())
    assert d == d.__class__(False, 0.0, d.reason, bug=True)
    assert type(error).__name__ in d.reason


def test_cancellation_is_not_retried_and_not_a_bug() -> None:
    d = decide(POLICY, 1, asyncio.CancelledError(), rng())
    assert not d.retry and not d.bug


def test_rate_limited_waits_at_least_retry_after() -> None:
    d = decide(POLICY, 1, errors.RateLimited(retry_after=45.0), rng())
    assert d.retry and d.delay_s == 45.0  # backoff ceiling is 1 s here


def test_rate_limited_takes_the_backoff_when_it_is_longer_than_retry_after() -> None:
    r = random.Random(0)
    delays = [decide(POLICY, 4, errors.RateLimited(retry_after=0.5), r).delay_s for _ in range(200)]
    assert all(0.5 <= d <= 8.0 for d in delays) and max(delays) > 6


def test_long_retry_after_beyond_the_backoff_cap_still_retries_until_the_configured_max() -> None:
    d = decide(POLICY, 2, errors.RateLimited(retry_after=100.0), rng())
    assert d.retry and d.delay_s == 100.0


def test_retry_after_longer_than_the_configured_max_gives_up() -> None:
    d = decide(POLICY, 1, errors.RateLimited(retry_after=121.0), rng())
    assert not d.retry and "exceeds the maximum 120" in d.reason


def test_circuit_open_retry_after_in_details_is_honoured() -> None:
    d = decide(POLICY, 1, errors.CircuitOpen(details={"retry_after": 12.5}), rng())
    assert d.retry and d.delay_s == 12.5


def test_should_retry_false_overrides_a_transient_class() -> None:
    d = decide(POLICY, 1, errors.UpstreamUnavailable(details={"should_retry": False}), rng())
    assert not d.retry and "not to retry" in d.reason


def test_should_retry_true_overrides_a_permanent_class_but_keeps_the_attempt_limit() -> None:
    err = errors.UpstreamRejected(details={"should_retry": True})
    assert decide(POLICY, 1, err, rng()).retry
    assert not decide(POLICY, 5, err, rng()).retry


def test_should_retry_that_is_not_a_bool_is_ignored() -> None:
    assert decide(POLICY, 1, errors.Conflict(details={"should_retry": "false"}), rng()).retry
    assert not decide(POLICY, 1, errors.NotFound(details={"should_retry": 1}), rng()).retry


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError):
        decide(POLICY, 0, errors.Conflict(), rng())


def test_max_attempts_one_never_retries() -> None:
    assert not decide(RetryPolicy(max_attempts=1), 1, errors.Conflict(), rng()).retry


# --- policy table --------------------------------------------------------------------------------


def test_policies_pick_exact_then_longest_prefix_then_default() -> None:
    table = RetryPolicies.from_config(
        {"max_attempts": 4, "base_delay_s": 0.5},
        {
            "stripe.": {"max_attempts": 8},
            "stripe.refund": {"max_attempts": 6},
            "stripe.refund.create": {"max_attempts": 3, "max_delay_s": 10},
            "clarity": {"base_delay_s": 2},
        },
    )
    assert table.for_step("stripe.refund.create").max_attempts == 3
    assert table.for_step("stripe.refund.create").max_delay_s == 10
    assert table.for_step("stripe.refund.list").max_attempts == 6
    assert table.for_step("stripe.payment_intent.create").max_attempts == 8
    assert table.for_step("stripe.payment_intent.create").base_delay_s == 0.5  # from the default
    assert table.for_step("clarity.order.get").base_delay_s == 2
    assert table.for_step("clarityx.order.get") is table.default
    assert table.for_step("erp.invoice.upsert") == RetryPolicy(max_attempts=4, base_delay_s=0.5)


def test_policies_as_dict_round_trips_through_from_config() -> None:
    table = RetryPolicies.from_config({"max_attempts": 2}, {"erp.": {"max_delay_s": 5}})
    plain = table.as_dict()
    again = RetryPolicies.from_config(plain["default"], plain["overrides"])
    assert again.as_dict() == plain


@pytest.mark.parametrize(
    ("default", "overrides", "message"),
    [
        ({"max_attempt": 3}, None, "unknown retry policy field"),
        ({"max_attempts": 0}, None, "at least 1"),
        ({"max_attempts": 2.5}, None, "must be an integer"),
        ({"base_delay_s": -1}, None, ">= 0"),
        ({"max_delay_s": "10"}, None, "must be a number"),
        (None, {"stripe.": {"oops": 1}}, "stripe."),
        (None, {"stripe.": 5}, "must be an object"),
        (None, {"": {"max_attempts": 2}}, "step type or prefix"),
    ],
)
def test_bad_policy_config_is_a_configuration_error(
    default: dict[str, object] | None, overrides: dict[str, object] | None, message: str
) -> None:
    with pytest.raises(errors.ConfigurationError, match=message):
        RetryPolicies.from_config(default, overrides)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 12),
    base_delay_s=st.floats(0, 10, allow_nan=False),
    max_delay_s=st.floats(0, 300, allow_nan=False),
    max_retry_after_s=st.floats(0, 3600, allow_nan=False),
)
transient = st.sampled_from(
    [
        errors.UpstreamUnavailable,
        errors.Conflict,
        errors.StoreUnavailable,
        errors.CircuitOpen,
        errors.TransientError,
    ]
)


@given(policies, st.integers(1, 40), transient, st.integers(0, 2**32 - 1))
def test_delay_is_within_zero_and_the_cap_and_attempts_never_exceed_max(
    policy: RetryPolicy, attempt: int, cls: type[errors.TransientError], seed: int
) -> None:
    d = decide(policy, attempt, cls(), random.Random(seed))
    assert 0.0 <= d.delay_s <= policy.max_delay_s
    assert d.delay_s <= policy.base_delay_s * 2 ** (attempt - 1) + 1e-9
    assert d.retry == (attempt < policy.max_attempts)  # attempt + 1 <= max_attempts when retrying


@given(policies, st.integers(1, 40), st.floats(0, 4000, allow_nan=False), st.integers(0, 2**32 - 1))
def test_rate_limited_delay_is_at_least_retry_after_and_bounded(
    policy: RetryPolicy, attempt: int, retry_after: float, seed: int
) -> None:
    d = decide(policy, attempt, errors.RateLimited(retry_after=retry_after), random.Random(seed))
    if attempt >= policy.max_attempts or retry_after > policy.max_retry_after_s:
        assert not d.retry and d.delay_s == 0.0
    else:
        assert d.retry
        assert retry_after <= d.delay_s <= max(retry_after, policy.max_delay_s)


@given(
    st.lists(st.sampled_from([errors.UpstreamUnavailable(), errors.RateLimited(retry_after=1.0)]), min_size=1)
)
def test_a_retry_loop_never_makes_more_than_max_attempts(errs: list[errors.BridgeError]) -> None:
    policy = RetryPolicy(max_attempts=4)
    r = random.Random(0)
    attempts = 0
    for attempt, err in enumerate(errs * 10, start=1):
        attempts = attempt
        if not decide(policy, attempt, err, r).retry:
            break
    assert attempts <= policy.max_attempts
