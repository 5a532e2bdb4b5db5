"""The enumeration alarm: searches that look like a value being recovered by guessing.

A search answers "held" or "not held", so a caller shown a mask
(``+372 **** **43``) can try every value consistent with it until one is held:
about 10^5 candidates for a mobile number. The rate limit makes that slow; this
makes it loud and slower still. Per caller, within a sliding window:

- more than ``same_mask`` distinct missed values that share one mask (the
  candidates of one masked value -- legitimate look-ups spread over many
  masks), or
- more than ``misses`` misses of any kind

sound the alarm: a CRITICAL line on the ``vault.alarm`` logger (as a canary
read does), a high-severity audit event (outcome ``alarm``) written before
the answer leaves, and every search of that caller refused with
``RESOURCE_EXHAUSTED`` for one window.

What must hold:

- No value is kept: a miss is remembered by its blind-index digest (an HMAC
  under the vault's index key) and its mask, for one window, in memory.
- The state is per process, like the token buckets: N replicas let a caller
  try N times as much before each alarm (``SECURITY.md`` states the factor).
- The clock is injected (``monotonic``), so tests step time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditOutcome
from vault.errors import Reason, ResourceExhausted
from vault.policy.limits import EnumerationAlarm, RateLimits

log = logging.getLogger("vault.alarm")

ENUMERATION_ALARM = Reason.ENUMERATION_ALARM
"""``ResourceExhausted.reason`` of a search refused after the alarm."""


@dataclass(frozen=True, slots=True)
class _Miss:
    at: float
    field_type: str
    mask: str
    digest: bytes


class _CallerWatch:
    __slots__ = ("misses", "refused_until")

    def __init__(self) -> None:
        self.misses: deque[_Miss] = deque()
        self.refused_until = float("-inf")


class EnumerationWatch:
    """Counts each caller's missed searches; ``check`` refuses a caller after its alarm."""

    def __init__(
        self,
        limits: Callable[[], RateLimits],
        audit: AuditLog,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._audit = audit
        self._monotonic = monotonic
        self._callers: dict[str, _CallerWatch] = {}
        self._lock = threading.Lock()
        self.alarms = 0

    def check(self, caller: str) -> None:
        """Raise ``ResourceExhausted`` while ``caller`` is refused after an alarm."""
        now = self._monotonic()
        with self._lock:
            watch = self._callers.get(caller)
            wait = float("-inf") if watch is None else watch.refused_until - now
        if wait > 0:
            raise ResourceExhausted(
                f"caller {caller!r} may not search for a while: its searches looked like"
                " enumeration; retry later",
                retry_after=wait,
                reason=ENUMERATION_ALARM,
            )

    def missed(self, caller: str, field_type: str, mask: str, digest: bytes) -> None:
        """Remember a search that found nothing; sound the alarm if it is one too many."""
        alarm = self._limits().enumeration_alarm(caller)
        if alarm is None:
            return
        now = self._monotonic()
        with self._lock:
            watch = self._callers.setdefault(caller, _CallerWatch())
            misses = watch.misses
            while misses and misses[0].at <= now - alarm.window_seconds:
                misses.popleft()
            misses.append(_Miss(now, field_type, mask, digest))
            why = _why(alarm, misses, field_type, mask)
            if why is None:
                return
            watch.refused_until = now + alarm.window_seconds
            misses.clear()
            self.alarms += 1
        log.critical(
            "ENUMERATION ALARM: caller %s: %s within %g s; its searches are refused for %g s",
            caller,
            why,
            alarm.window_seconds,
            alarm.window_seconds,
        )
        self._audit.record(
            caller,
            AuditAction.FIND,
            outcome=AuditOutcome.ALARM,
            status_code="RESOURCE_EXHAUSTED",
            detail=(
                f"severity=high: enumeration suspected: {why} within"
                f" {alarm.window_seconds:g} s; searches refused for {alarm.window_seconds:g} s"
            ),
        )

    def forget(self) -> None:
        """Drop every caller's state (tests, or an operator clearing a false alarm)."""
        with self._lock:
            self._callers.clear()


def _why(alarm: EnumerationAlarm, misses: deque[_Miss], field_type: str, mask: str) -> str | None:
    """Which threshold the window's misses are over, in words without values; else ``None``."""
    if alarm.same_mask is not None:
        candidates = {m.digest for m in misses if m.field_type == field_type and m.mask == mask}
        if len(candidates) > alarm.same_mask:
            return f"{len(candidates)} missed {field_type} values sharing one mask"
    if alarm.misses is not None and len(misses) > alarm.misses:
        return f"{len(misses)} missed searches"
    return None
