"""Rate limits as the policy states them: per budget, a default and per-caller overrides.

The token buckets that spend them live in ``vault.domain.rate_limit``; this
module is only the configuration, so the policy file can carry it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field


class Budget(enum.StrEnum):
    """What a bucket counts."""

    SEARCH = "search"
    PUT = "put"
    DENIAL = "denial"


@dataclass(frozen=True)
class Rate:
    """``burst`` answers at once, refilled at ``per_second``."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError("per_second must be a positive number")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError("burst must be at least 1")


@dataclass(frozen=True)
class RateLimits:
    """The configured rates: a default per budget, overridden per caller."""

    default: Mapping[Budget, Rate] = field(default_factory=dict)
    per_caller: Mapping[str, Mapping[Budget, Rate]] = field(default_factory=dict)

    def rate(self, caller: str, budget: Budget) -> Rate | None:
        own = self.per_caller.get(caller)
        if own is not None and budget in own:
            return own[budget]
        return self.default.get(budget)
