"""Token buckets per (caller, budget), stepped with an injected monotonic clock."""

from __future__ import annotations

import pytest
from clocks import ManualTime

from vault.domain.rate_limit import Budget, Rate, RateLimiter, RateLimits
from vault.errors import ResourceExhausted

LIMITS = RateLimits(
    default={Budget.SEARCH: Rate(per_second=1.0, burst=3), Budget.DENIAL: Rate(2.0, 2)},
    per_caller={"bulk": {Budget.SEARCH: Rate(per_second=10.0, burst=5)}},
)


def limiter(clock: ManualTime[float], limits: RateLimits = LIMITS) -> RateLimiter:
    return RateLimiter(lambda: limits, monotonic=clock)


def spend_until_refused(limiter: RateLimiter, caller: str, budget: Budget) -> int:
    for spent in range(1000):
        try:
            limiter.take(caller, budget)
        except ResourceExhausted:
            return spent
    raise AssertionError("never refused")


def test_a_caller_gets_its_burst_then_is_refused_with_the_wait_for_the_next_token() -> None:
    clock = ManualTime(1000.0)
    buckets = limiter(clock)
    assert spend_until_refused(buckets, "registration", Budget.SEARCH) == 3
    with pytest.raises(ResourceExhausted) as caught:
        buckets.take("registration", Budget.SEARCH)
    assert caught.value.retry_after == pytest.approx(1.0)
    assert caught.value.reason == "SEARCH_RATE_LIMITED"
    assert "registration" in caught.value.message and "search" in caught.value.message


def test_the_bucket_refills_at_its_rate_and_never_beyond_its_burst() -> None:
    clock = ManualTime(1000.0)
    buckets = limiter(clock)
    spend_until_refused(buckets, "registration", Budget.SEARCH)
    clock.now += 0.5
    with pytest.raises(ResourceExhausted) as caught:
        buckets.take("registration", Budget.SEARCH)
    assert caught.value.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    buckets.take("registration", Budget.SEARCH)  # one token came back
    clock.now += 3600
    assert spend_until_refused(buckets, "registration", Budget.SEARCH) == 3


def test_callers_and_budgets_have_buckets_of_their_own() -> None:
    clock = ManualTime(1000.0)
    buckets = limiter(clock)
    spend_until_refused(buckets, "registration", Budget.SEARCH)
    assert spend_until_refused(buckets, "checkout", Budget.SEARCH) == 3
    assert spend_until_refused(buckets, "registration", Budget.DENIAL) == 2
    # A caller's own limits override the default.
    assert spend_until_refused(buckets, "bulk", Budget.SEARCH) == 5


def test_a_budget_without_a_rate_is_unlimited() -> None:
    buckets = limiter(ManualTime(1000.0))
    for _ in range(1000):
        buckets.take("registration", Budget.PUT)


def test_new_limits_take_effect_on_the_next_take() -> None:
    clock = ManualTime(1000.0)
    current = [LIMITS]
    buckets = RateLimiter(lambda: current[0], monotonic=clock)
    spend_until_refused(buckets, "registration", Budget.SEARCH)
    current[0] = RateLimits(default={Budget.SEARCH: Rate(per_second=1.0, burst=10)})
    assert spend_until_refused(buckets, "registration", Budget.SEARCH) == 10
