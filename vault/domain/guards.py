"""Checks every read makes beyond the policy: consent, and canary fields.

Consent: a purpose that the policy marks ``requires_consent`` is refused for
a subject until the subject has consented to it; withdrawing consent takes
effect on the next call (the consent row is read every time such a purpose
is used, never cached).

Canaries: an operator plants decoy fields that no legitimate caller ever
reads. Any read of one is refused, written as a high-severity audit event,
logged at CRITICAL and counted: an early warning of someone walking the
data. Each process keeps the (small) set of canaries in memory and
refreshes it every few seconds, so the hot read path pays a set lookup.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditOutcome
from vault.domain.authorization import require
from vault.domain.model import Limits, check_field_name, check_purpose, check_subject_id
from vault.domain.ports import Store
from vault.domain.rate_limit import RateLimiter
from vault.errors import InvalidArgument, PermissionDenied, Reason
from vault.policy import Action, Policy
from vault.policy.limits import Budget

log = logging.getLogger("vault.alarm")


class AccessGuards:
    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy],
        audit: AuditLog,
        clock: Callable[[], datetime],
        *,
        limits: Limits | None = None,
        refresh_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._limiter = limiter
        self._store = store
        self._policy = policy
        self._audit = audit
        self._clock = clock
        self._limits = limits or Limits()
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._canaries: frozenset[tuple[str, str]] = frozenset()
        self._canaries_read_at = float("-inf")
        self._lock = threading.Lock()
        self.canary_hits = 0

    # -- consent ---------------------------------------------------------------------
    def check_consent(self, caller: str, action: str, subject_id: str, purpose: str) -> None:
        if not purpose or not self._policy().requires_consent(purpose):
            return
        with self._store.read() as tx:
            granted = tx.consent.consent_granted(subject_id, purpose)
        if not granted:
            # "Has X consented to P?" is a read: it spends the denial budget.
            if self._limiter is not None:
                self._limiter.take(caller, Budget.DENIAL)
            self._audit.record(
                caller,
                action,
                subject_id=subject_id,
                purpose=purpose,
                outcome=AuditOutcome.DENIED,
                status_code="PERMISSION_DENIED",
                detail="no consent",
            )
            raise PermissionDenied(
                f"the subject has not consented to purpose {purpose!r}",
                reason=Reason.CONSENT_REQUIRED,
            )

    def set_consent(self, caller: str, subject_id: str, purpose: str, granted: bool) -> bool:
        check_subject_id(subject_id, self._limits)
        if not purpose:
            raise InvalidArgument("purpose", "is required")
        check_purpose(purpose, self._limits)
        require(
            self._policy(),
            self._audit,
            caller,
            Action.CONSENT,
            subject_id=subject_id,
            purpose=purpose,
            limiter=self._limiter,
        )
        with self._store.write() as tx:
            tx.consent.set_consent(subject_id, purpose, granted, self._clock())
        self._audit.record(
            caller,
            AuditAction.CONSENT,
            subject_id=subject_id,
            purpose=purpose,
            detail="granted" if granted else "withdrawn",
        )
        return granted

    # -- canaries ----------------------------------------------------------------------
    def _current_canaries(self) -> frozenset[tuple[str, str]]:
        now = self._monotonic()
        if now - self._canaries_read_at >= self._refresh_seconds:
            with self._lock:
                if now - self._canaries_read_at >= self._refresh_seconds:
                    with self._store.read() as tx:
                        self._canaries = frozenset(tx.consent.canaries())
                    self._canaries_read_at = now
        return self._canaries

    def is_canary(self, subject_id: str, field: str) -> bool:
        return (subject_id, field) in self._current_canaries()

    def check_canary(self, caller: str, action: str, subject_id: str, field: str) -> None:
        """Refuse and sound the alarm when ``(subject_id, field)`` is a canary."""
        if (subject_id, field) not in self._current_canaries():
            return
        with self._lock:
            self.canary_hits += 1
        log.critical(
            "CANARY READ: caller %s tried %s on canary field %s of subject %s",
            caller,
            action,
            field,
            subject_id,
        )
        self._audit.record(
            caller,
            action,
            subject_id=subject_id,
            field=field,
            outcome=AuditOutcome.CANARY,
            status_code="PERMISSION_DENIED",
            detail="severity=high: read of a canary field",
        )
        raise PermissionDenied("access refused")

    def plant_canary(self, caller: str, subject_id: str, field: str) -> None:
        """Mark an existing field as a canary (the decoy value is stored with PutField)."""
        check_subject_id(subject_id, self._limits)
        check_field_name(field, self._limits)
        require(
            self._policy(),
            self._audit,
            caller,
            Action.ADMIN,
            subject_id=subject_id,
            field=field,
            limiter=self._limiter,
        )
        with self._store.write() as tx:
            tx.consent.plant_canary(subject_id, field, caller, self._clock())
        self._canaries_read_at = float("-inf")
        self._audit.record(
            caller, AuditAction.CANARY, subject_id=subject_id, field=field, detail="planted"
        )
