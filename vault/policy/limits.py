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
class EnumerationAlarm:
    """When a caller's searches look like enumeration, and for how long it is then refused.

    Within any ``window_seconds``, more than ``misses`` searches that found
    nothing, or more than ``same_mask`` distinct missed values sharing one
    mask (candidates consistent with a mask the caller was shown: exactly how
    a value is recovered from its mask), sound the alarm; the caller's
    searches are then refused for ``window_seconds``. ``None`` turns a test off.
    """

    window_seconds: float
    misses: int | None = None
    same_mask: int | None = None

    def __post_init__(self) -> None:
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError("window_seconds must be a positive number")
        for threshold in (self.misses, self.same_mask):
            if threshold is not None and threshold < 1:
                raise ValueError("an alarm threshold must be at least 1")


@dataclass(frozen=True)
class RateLimits:
    """The configured rates: a default per budget, overridden per caller.

    The enumeration alarm is configured the same way: ``alarm`` is the
    default, ``alarm_per_caller`` overrides it.
    """

    default: Mapping[Budget, Rate] = field(default_factory=dict)
    per_caller: Mapping[str, Mapping[Budget, Rate]] = field(default_factory=dict)
    alarm: EnumerationAlarm | None = None
    alarm_per_caller: Mapping[str, EnumerationAlarm] = field(default_factory=dict)

    def rate(self, caller: str, budget: Budget) -> Rate | None:
        own = self.per_caller.get(caller)
        if own is not None and budget in own:
            return own[budget]
        return self.default.get(budget)

    def enumeration_alarm(self, caller: str) -> EnumerationAlarm | None:
        return self.alarm_per_caller.get(caller, self.alarm)
