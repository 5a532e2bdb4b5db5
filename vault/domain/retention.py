"""Retention: data that is destroyed on its own when its time comes.

The rules live in ``retention.toml`` (``RetentionRules``, declared in
``vault.domain.retention_rules``); ``RetentionSweeper`` applies them. Two
kinds of rule exist:

- ``[card] after_expiry_days = N``: a card field is deleted -- its row and its
  data key, as DeleteField does -- once N whole days have passed since its
  last valid day (the end of its expiry month). Other field types can get the
  same rule once their rows carry an expiry (``_EXPIRING``); today only cards do.
- ``[subject] untouched_days = N``: a subject with no write for N days is
  shredded exactly as ShredSubject shreds it (keys destroyed, tombstone, signed
  receipt), with caller ``retention``.

What must hold:

- Nothing of a subject under a legal hold is destroyed. The subject is skipped,
  counted and audited as refused (FAILED_PRECONDITION naming the hold) on every
  sweep until the hold is released; the next sweep after the release takes it.
- The decision is taken again inside the destroying transaction, under the
  subject's row lock: a card replaced by a valid one, or a subject written
  since the sweep listed it, is kept. A sweep never destroys a fresh write.
- A sweep is idempotent and any number of replicas may sweep at once: work
  that another replica finished first is counted as ``already_done``, not as
  an error.
- No file means no rules: retention destroys nothing unless told to.
- Reports and log lines carry counts and error type names, never a value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Protocol, TypeVar

from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditOutcome
from vault.domain.ports import RetentionQueryRepository, Store, WriteConflictError
from vault.domain.retention_rules import ExpiryRule as ExpiryRule  # re-exported, as before
from vault.domain.retention_rules import RetentionError as RetentionError
from vault.domain.retention_rules import RetentionRules as RetentionRules
from vault.domain.shredding import MAX_REQUEST_ID, Shredder, SubjectHeldError
from vault.errors import FailedPrecondition, NotFound, Unavailable
from vault.fields.base import FieldType

log = logging.getLogger("vault.retention")

RETENTION_CALLER: Final = "retention"
DEFAULT_BATCH: Final = 200

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]


class _ExpiredFinder(Protocol):
    def __call__(
        self, queries: RetentionQueryRepository, /, before: date, limit: int, *, offset: int = 0
    ) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class _ExpiryQueries:
    find: _ExpiredFinder
    count: Callable[[RetentionQueryRepository, date], int]


# Field types whose rows carry ``expires_on`` (their last valid day), and how
# to find and count the expired ones. A type gets an ``after_expiry_days`` rule
# by storing an expiry and being listed here and in ``EXPIRING_TYPES``, which
# the rules file is checked against (a test holds them equal).
def _expired_cards(
    queries: RetentionQueryRepository, /, before: date, limit: int, *, offset: int = 0
) -> list[tuple[str, str]]:
    return queries.expired_card_subjects(before, limit, offset=offset)


def _count_expired_cards(queries: RetentionQueryRepository, before: date) -> int:
    return queries.count_expired_cards(before)


_EXPIRING: Final[Mapping[FieldType, _ExpiryQueries]] = {
    FieldType.CARD: _ExpiryQueries(_expired_cards, _count_expired_cards),
}


# -- the sweep ----------------------------------------------------------------------------------
class ExpiredFieldDeleter(Protocol):
    """What the sweeper needs of ``Vault``: DeleteField's path, without a caller's policy."""

    def delete_field_for_retention(
        self, subject_id: str, field: str, *, expired_before: date, reason: str
    ) -> bool: ...


@dataclass
class RetentionReport:
    """What one sweep did (or, with ``dry_run``, would do)."""

    cards_deleted: int = 0
    subjects_shredded: int = 0
    held_skipped: int = 0  # subjects under a legal hold that had something due
    already_done: int = 0  # gone, replaced or written since listed; another replica won
    errors: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            rows = [
                ("cards to delete", self.cards_deleted),
                ("subjects to shred", self.subjects_shredded),
                ("held (would be skipped)", self.held_skipped),
                ("errors", self.errors),
            ]
            title = "retention dry run (nothing was changed):"
        else:
            rows = [
                ("cards deleted", self.cards_deleted),
                ("subjects shredded", self.subjects_shredded),
                ("held (skipped)", self.held_skipped),
                ("already done", self.already_done),
                ("errors", self.errors),
            ]
            title = "retention run finished:"
        width = max(len(name) for name, _ in rows)
        return "\n".join([title, *(f"  {name:<{width}}  {count}" for name, count in rows)])


def retention_request_id(subject_id: str, day: date) -> str:
    """``retention-<subject>-<date>``; a digest of the subject when that is too long."""
    request_id = f"retention-{subject_id}-{day.isoformat()}"
    if len(request_id) <= MAX_REQUEST_ID:
        return request_id
    digest = hashlib.sha256(subject_id.encode()).hexdigest()[:32]
    return f"retention-sha256:{digest}-{day.isoformat()}"


_Item = TypeVar("_Item")


@dataclass
class _Sweep:
    """The state of one ``run``: what it did so far and how to report it."""

    report: RetentionReport
    progress: Progress | None
    cancelled: Callable[[], bool]
    total: int
    done: int = 0
    held: set[str] = dataclasses.field(default_factory=set)

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run

    def step(self) -> None:
        self.done += 1
        self.total = max(self.total, self.done)  # rows may appear while the sweep runs
        if self.progress is not None:
            self.progress(self.done, self.total)


class RetentionSweeper:
    """Apply ``RetentionRules`` once per ``run``: expired fields first, then idle subjects.

    Listing happens in pages of ``batch`` rows; destroying happens one item per
    transaction, so a sweep never holds a lock for long and a failure costs one
    item, not the sweep. ``Unavailable`` (the database is down) ends the sweep:
    the next one starts over.
    """

    def __init__(
        self,
        store: Store,
        shredder: Shredder,
        deleter: ExpiredFieldDeleter,
        rules: RetentionRules,
        clock: Clock,
        audit: AuditLog,
        *,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._store = store
        self._shredder = shredder
        self._deleter = deleter
        self.rules = rules
        self._clock = clock
        self._audit = audit
        self._batch = batch

    def run(
        self,
        progress: Progress | None = None,
        *,
        dry_run: bool = False,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> RetentionReport:
        """Sweep once. ``progress(done, total)`` counts the items due; ``cancelled`` stops early.

        ``dry_run`` counts what would be destroyed and writes nothing, not even
        audit events.
        """
        now = self._clock()
        today = now.date()
        sweep = _Sweep(RetentionReport(dry_run=dry_run), progress, cancelled, self._count_due(now))
        if progress is not None:
            progress(0, sweep.total)
        for rule in self.rules.expiry:
            self._sweep_expired(rule, today, sweep)
        if self.rules.untouched_days is not None:
            days = self.rules.untouched_days
            since = now - timedelta(days=days)

            def idle(queries: RetentionQueryRepository, limit: int, offset: int) -> list[str]:
                return queries.idle_subjects(since, limit, offset=offset)

            def shred(subject_id: str) -> bool:
                return self._shred_idle(subject_id, since, days, today, sweep)

            self._walk(idle, shred, sweep)
        return sweep.report

    def _sweep_expired(self, rule: ExpiryRule, today: date, sweep: _Sweep) -> None:
        before = today - timedelta(days=rule.after_expiry_days)
        reason = f"retention: {rule.field_type} expired over {rule.after_expiry_days} days ago"
        find = _EXPIRING[rule.field_type].find

        def expired(
            queries: RetentionQueryRepository, limit: int, offset: int
        ) -> list[tuple[str, str]]:
            return find(queries, before, limit, offset=offset)

        def expire(item: tuple[str, str]) -> bool:
            return self._expire_field(item[0], item[1], before, reason, sweep)

        self._walk(expired, expire, sweep)

    # -- paging -----------------------------------------------------------------------------------
    def _walk(
        self,
        find: Callable[[RetentionQueryRepository, int, int], list[_Item]],
        handle: Callable[[_Item], bool],
        sweep: _Sweep,
    ) -> None:
        """Hand every item ``find(queries, limit, offset)`` lists to ``handle``, each once.

        Destroyed items drop out of the listing; held, failed and dry-run items
        stay (``handle`` returns True for those), so the next page starts after
        as many rows as were kept. The ``seen`` set ends the walk even if other
        writers shift rows underneath: whatever is missed, the next sweep takes.
        """
        kept = 0
        seen: set[_Item] = set()
        while not sweep.cancelled():
            with self._store.read() as tx:
                page = find(tx.retention, self._batch, kept)
            fresh = [item for item in page if item not in seen]
            if not fresh:
                return
            for item in fresh:
                if sweep.cancelled():
                    return
                seen.add(item)
                if handle(item):
                    kept += 1
                sweep.step()

    def _count_due(self, now: datetime) -> int:
        today = now.date()
        with self._store.read() as tx:
            total = sum(
                _EXPIRING[rule.field_type].count(
                    tx.retention, today - timedelta(days=rule.after_expiry_days)
                )
                for rule in self.rules.expiry
            )
            if self.rules.untouched_days is not None:
                since = now - timedelta(days=self.rules.untouched_days)
                total += tx.retention.count_idle_subjects(since)
        return total

    # -- one item ---------------------------------------------------------------------------------
    def _expire_field(
        self, subject_id: str, field: str, before: date, reason: str, sweep: _Sweep
    ) -> bool:
        """Delete one expired field; True when it stays listed (held, failed, dry run)."""
        report = sweep.report
        if self._is_held(subject_id):
            self._refuse(subject_id, field, AuditAction.DELETE, sweep)
            return True
        if sweep.dry_run:
            report.cards_deleted += 1
            return True
        try:
            deleted = self._deleter.delete_field_for_retention(
                subject_id, field, expired_before=before, reason=reason
            )
        except Unavailable:
            raise
        except FailedPrecondition:
            # A hold set a moment ago, or the subject shredded by someone else.
            if self._is_held(subject_id):
                self._refuse(subject_id, field, AuditAction.DELETE, sweep)
                return True
            report.already_done += 1
            return False
        except (NotFound, WriteConflictError):
            report.already_done += 1
            return False
        except Exception as error:
            self._failed(AuditAction.DELETE, error, report)
            return True
        if deleted:
            report.cards_deleted += 1
        else:  # replaced by a card still valid since it was listed
            report.already_done += 1
        return False

    def _shred_idle(
        self, subject_id: str, untouched_since: datetime, days: int, today: date, sweep: _Sweep
    ) -> bool:
        """Shred one idle subject; True when it stays listed (held, failed, dry run)."""
        report = sweep.report
        if self._is_held(subject_id):
            self._refuse(subject_id, "", AuditAction.SHRED, sweep)
            return True
        if sweep.dry_run:
            report.subjects_shredded += 1
            return True
        request_id = retention_request_id(subject_id, today)
        try:
            receipt = self._shredder.shred(
                RETENTION_CALLER,
                subject_id,
                f"retention: untouched {days} days",
                request_id,
                untouched_since=untouched_since,
            )
        except Unavailable:
            raise
        except SubjectHeldError:
            self._refuse(subject_id, "", AuditAction.SHRED, sweep)
            return True
        except (FailedPrecondition, NotFound, WriteConflictError):
            # Written since it was listed, or shredded by another replica just now.
            report.already_done += 1
            return False
        except Exception as error:
            self._failed(AuditAction.SHRED, error, report)
            return True
        if receipt.request_id == request_id:
            report.subjects_shredded += 1
        else:  # shredded a moment ago through ShredSubject: its receipt came back
            report.already_done += 1
        return False

    def _is_held(self, subject_id: str) -> bool:
        try:
            self._shredder.check_not_held(subject_id)
        except SubjectHeldError:
            return True
        return False

    def _refuse(self, subject_id: str, field: str, action: str, sweep: _Sweep) -> None:
        """Count a held subject once per sweep, and audit each refused item."""
        if subject_id not in sweep.held:
            sweep.held.add(subject_id)
            sweep.report.held_skipped += 1
        if sweep.dry_run:
            return
        with self._store.read() as tx:
            subject = tx.subjects.subject_record(subject_id)
        hold_reason = subject.hold_reason if subject is not None else ""
        self._audit.record(
            RETENTION_CALLER,
            action,
            subject_id=subject_id,
            field=field,
            outcome=AuditOutcome.REFUSED,
            status_code="FAILED_PRECONDITION",
            detail=f"legal hold: {hold_reason}" if hold_reason else "legal hold",
        )

    @staticmethod
    def _failed(action: str, error: Exception, report: RetentionReport) -> None:
        report.errors += 1
        # The type only: an exception's message is not ours to vouch for.
        log.warning(
            "retention: %s failed (%s); the next sweep retries", action, type(error).__name__
        )
