"""The ``[limits]`` section of ``policy.toml``, declared: budgets and the enumeration alarm.

``[limits.default]`` sets every caller's rates; ``[limits.callers.NAME]``
overrides single keys of it for one caller of ``[callers]`` (the document
checks the name, so a misspelt one cannot leave the real caller on the
default limits unnoticed). A rate needs both its ``*_per_second`` and its
``*_burst``, and the alarm needs a window and at least one threshold: each
is checked on the merged table of each caller, and the error names the table
where the missing key belongs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from vault.policy.limits import Budget, EnumerationAlarm, Rate, RateLimits
from vault.toml_schema import TomlTable, expecting, refuse

__all__ = ["LimitTable", "LimitsTable"]


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise refuse("must be a positive, finite number")
    return value


_Number = Annotated[float, expecting("expected a number"), AfterValidator(_positive)]
_Count = Annotated[int, expecting("expected an integer"), AfterValidator(_positive)]

# Per budget: the key prefix in the file ("denials_per_second" counts denials).
_BUDGET_PREFIX: Final = {Budget.SEARCH: "search", Budget.PUT: "put", Budget.DENIAL: "denials"}
_ALARM_WINDOW: Final = "search_alarm_window_seconds"
_ALARM_MISSES: Final = "search_alarm_misses"
_ALARM_SAME_MASK: Final = "search_alarm_same_mask"


class LimitTable(TomlTable):
    """``[limits.default]`` or ``[limits.callers.NAME]``: every key optional, each checked."""

    search_per_second: _Number | None = None
    search_burst: _Count | None = None
    put_per_second: _Number | None = None
    put_burst: _Count | None = None
    denials_per_second: _Number | None = None
    denials_burst: _Count | None = None
    search_alarm_window_seconds: _Number | None = None
    search_alarm_misses: _Count | None = None
    search_alarm_same_mask: _Count | None = None

    def settings(self) -> dict[str, float]:
        """The keys the table sets (TOML has no null, so unset is ``None``)."""
        return {name: float(value) for name, value in self if value is not None}


def _rates(settings: Mapping[str, float], at: tuple[str, ...]) -> dict[Budget, Rate]:
    rates: dict[Budget, Rate] = {}
    for budget, prefix in _BUDGET_PREFIX.items():
        per_second = settings.get(f"{prefix}_per_second")
        burst = settings.get(f"{prefix}_burst")
        if per_second is None and burst is None:
            continue
        if per_second is None or burst is None:
            given, missing = (
                (f"{prefix}_burst", f"{prefix}_per_second")
                if per_second is None
                else (f"{prefix}_per_second", f"{prefix}_burst")
            )
            raise refuse(f"missing; {given} needs it", *at, missing)
        rates[budget] = Rate(per_second=per_second, burst=burst)
    return rates


def _alarm(
    settings: Mapping[str, float], at: tuple[str, ...], window_at: tuple[str, ...]
) -> EnumerationAlarm | None:
    window = settings.get(_ALARM_WINDOW)
    misses = settings.get(_ALARM_MISSES)
    same_mask = settings.get(_ALARM_SAME_MASK)
    if window is None:
        if misses is not None or same_mask is not None:
            raise refuse("missing; the alarm thresholds need a window", *at, _ALARM_WINDOW)
        return None
    if misses is None and same_mask is None:
        raise refuse(
            f"a window alone sounds no alarm; set {_ALARM_MISSES} or {_ALARM_SAME_MASK}",
            *window_at,
            _ALARM_WINDOW,
        )
    return EnumerationAlarm(
        window_seconds=window,
        misses=None if misses is None else int(misses),
        same_mask=None if same_mask is None else int(same_mask),
    )


class LimitsTable(TomlTable):
    """``[limits]``: the default table and the per-caller overrides."""

    default: LimitTable = LimitTable()
    callers: dict[str, LimitTable] = Field(default_factory=dict)

    _rate_limits: RateLimits = PrivateAttr(default_factory=RateLimits)

    @model_validator(mode="after")
    def _complete(self) -> LimitsTable:
        default = self.default.settings()
        per_caller: dict[str, Mapping[Budget, Rate]] = {}
        alarm_per_caller: dict[str, EnumerationAlarm] = {}
        for caller, table in self.callers.items():
            own = table.settings()
            at = ("callers", caller)
            merged = {**default, **own}
            per_caller[caller] = _rates(merged, at)
            alarm = _alarm(merged, at, at if _ALARM_WINDOW in own else ("default",))
            if alarm is not None:
                alarm_per_caller[caller] = alarm
        self._rate_limits = RateLimits(
            default=_rates(default, ("default",)),
            per_caller=per_caller,
            alarm=_alarm(default, ("default",), ("default",)),
            alarm_per_caller=alarm_per_caller,
        )
        return self

    def rate_limits(self) -> RateLimits:
        return self._rate_limits
