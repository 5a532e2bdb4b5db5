"""Per-caller budgets: how many answers of a kind a caller may have per second.

An answer that differs between a right and a wrong guess (a search hit, an
idempotent replay, a denial that reveals nothing but still costs an audit
write) is a read, so it is budgeted like one. Each (caller, budget) pair is a
token bucket: ``burst`` answers at once, refilled at ``per_second``. An empty
bucket answers ``ResourceExhausted`` with the time until the next token, which
the transport sends as ``google.rpc.RetryInfo``.

What must hold:

- Budgets are per process. Several replicas each keep their own buckets, so a
  fleet of N replicas allows N times the configured rate; ``SECURITY.md``
  states the budgets with that factor.
- The clock is injected (``monotonic``), so tests step time instead of sleeping.
- A budget with no rate configured is unlimited; the limits come from the
  policy and follow it when it is reloaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vault.errors import Reason, ResourceExhausted
from vault.policy.limits import Budget, Rate, RateLimits

__all__ = ["Budget", "Rate", "RateLimiter", "RateLimits"]


class _Bucket:
    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.updated = now


class RateLimiter:
    """Token buckets per (caller, budget); ``take`` spends one or refuses."""

    def __init__(
        self,
        limits: Callable[[], RateLimits],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._monotonic = monotonic
        self._buckets: dict[tuple[str, Budget], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str, budget: Budget, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens of ``caller``'s ``budget``, or raise ``ResourceExhausted``."""
        rate = self._limits().rate(caller, budget)
        if rate is None:
            return
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get((caller, budget))
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[(caller, budget)] = _Bucket(rate, now)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(rate.burst, bucket.tokens + elapsed * rate.per_second)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return
            wait = (cost - bucket.tokens) / rate.per_second
        raise ResourceExhausted(
            f"caller {caller!r} is over its {budget} rate limit; retry later",
            retry_after=wait,
            reason=Reason(f"{budget.name}_RATE_LIMITED"),
        )
