"""Periodic upkeep inside the server: key rotation, retention, then storage maintenance.

Why it lives in ``bootstrap`` and not in ``domain``: it owns a thread, an
interval and the process's logging, which is wiring; what it runs are the
domain's ``KeyAdmin.run_schedule`` (rotate the master key when due, rewrap,
retire), ``RetentionSweeper`` and the store's own ``checkpoint`` and
``vacuum_keys``. Each run takes the time once, from an injectable clock, so
``run_once(now)`` is how a test moves a month forward without sleeping.

What must hold:

- It never takes the server down: every step is guarded on its own, and a
  failure is logged by its type only (an exception message is not ours to
  vouch for, so it never reaches the log).
- It stops promptly on shutdown: the sweep checks the stop event between
  items, and the thread is a daemon, so a stuck database call cannot keep the
  process alive after the drain.
- Several replicas may each run it: shredding is idempotent per subject, and
  the sweeper counts work another replica finished first as done, not failed;
  only one replica rotates per period (``KeyAdmin`` re-checks "still due"
  under the key store's rotation lock), and any of them finishes a rewrap
  another left half done.
- The shred receipts' backup horizon is computed from the same schedule
  (``vault.bootstrap.app.rotation_schedule_for``): rotation is on only while
  this loop runs, and the loop's interval is the schedule's ``tick``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from vault.bootstrap.app import App
from vault.config import Settings
from vault.domain.key_admin import ScheduledRun
from vault.domain.retention import RetentionReport, RetentionRules, RetentionSweeper
from vault.domain.vault import utc_now
from vault.storage.database import Store

log = logging.getLogger("vault.maintenance")


def build_sweeper(
    app: App, rules: RetentionRules, *, clock: Callable[[], datetime] = utc_now
) -> RetentionSweeper:
    """The sweeper wired to the app's store, shredder, vault and audit log."""
    return RetentionSweeper(app.store, app.shredder, app.vault, rules, clock, app.audit)


class ScheduledRotation(Protocol):
    """What the loop needs of ``KeyAdmin``: one tick of the rotation schedule."""

    def run_schedule(self, now: datetime, *, cancelled: Callable[[], bool]) -> ScheduledRun: ...


def load_retention(settings: Settings) -> RetentionRules:
    """The rules, read once at start-up; ``ValueError`` names the bad key or setting."""
    if settings.retention_interval < 0:
        raise ValueError("retention interval (PII_VAULT_RETENTION_INTERVAL): must not be negative")
    if settings.rotation_days < 0:
        raise ValueError("rotation days (PII_VAULT_ROTATION_DAYS): must not be negative")
    return RetentionRules.load(settings.effective_retention_path)


def build_maintenance(
    app: App,
    rules: RetentionRules,
    interval: float,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Maintenance | None:
    """The maintenance loop the server runs (not started), or None when ``interval`` is 0.

    It rotates keys when the app's schedule is on (``rotation_schedule_for``,
    which is off whenever this loop is).
    """
    if interval == 0:
        return None
    schedule = app.key_admin.schedule
    return Maintenance(
        build_sweeper(app, rules, clock=clock),
        app.store,
        interval,
        rotation=app.key_admin if schedule.enabled else None,
        clock=clock,
        purge_idempotency=app.vault.purge_expired_idempotency,
    )


def start_maintenance(app: App, rules: RetentionRules, interval: float) -> Maintenance | None:
    """Start the maintenance thread, or nothing when ``interval`` is 0."""
    maintenance = build_maintenance(app, rules, interval)
    if maintenance is None:
        log.info("maintenance is off (retention interval 0); master key rotation is off")
        return None
    maintenance.start()
    log.info("maintenance every %gs; retention: %s", interval, rules.describe())
    log.info("key rotation: %s", app.key_admin.schedule.describe())
    return maintenance


class Maintenance(threading.Thread):
    """Every ``interval`` seconds: rotate keys when due, sweep, checkpoint SQLite, VACUUM.

    The first run starts right away, so a replica that restarts more often
    than ``interval`` still sweeps, and finishes a rewrap a killed one left.
    """

    def __init__(
        self,
        sweeper: RetentionSweeper,
        store: Store,
        interval: float,
        *,
        rotation: ScheduledRotation | None = None,
        clock: Callable[[], datetime] = utc_now,
        purge_idempotency: Callable[[], object] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the maintenance interval must be positive")
        super().__init__(name="vault-maintenance", daemon=True)
        self._sweeper = sweeper
        self._store = store
        self._interval = interval
        self._rotation = rotation
        self._clock = clock
        # Expired idempotency records answer nothing already; this reclaims their rows.
        self._purge_idempotency = purge_idempotency or (lambda: None)
        self._stop_event = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.run_once()
            self._stop_event.wait(self._interval)

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.warning("maintenance still busy after %.0fs; leaving it", timeout or 0)

    def run_once(self, now: datetime | None = None) -> RetentionReport | None:
        """One run at ``now`` (default: the clock): rotation, retention, storage upkeep."""
        now = now or self._clock()
        if self._rotation is not None:
            try:
                _log_rotation(self._rotation.run_schedule(now, cancelled=self._stop_event.is_set))
            except Exception as error:  # the next run continues where this one stopped
                log.error("maintenance: key rotation failed (%s)", type(error).__name__)
        report: RetentionReport | None = None
        try:
            if not self._sweeper.rules.empty:
                report = self._sweeper.run(cancelled=self._stop_event.is_set)
                _log_report(report)
        except Exception as error:  # never crash the server; the next run retries
            log.error("maintenance: retention sweep failed (%s)", type(error).__name__)
        for name, step in (
            ("idempotency purge", self._purge_idempotency),
            ("checkpoint", self._store.checkpoint),
            ("vacuum", self._store.vacuum_keys),
        ):
            if self._stop_event.is_set():
                break
            try:
                step()
            except Exception as error:
                log.error("maintenance: %s failed (%s)", name, type(error).__name__)
        self.runs += 1
        return report


def _log_rotation(run: ScheduledRun) -> None:
    if run.rotated is not None:
        log.info(
            "key rotation: master key %s version %d is current (scheduled)",
            run.rotated.kek_id,
            run.rotated.version,
        )
    if run.rewrapped or run.retired:
        log.info(
            "key rotation: %d keys rewrapped%s; retired versions: %s",
            run.rewrapped,
            " (stopped, continues next run)" if run.cancelled else "",
            ", ".join(str(info.version) for info in run.retired) or "none",
        )
    if run.still_used:
        log.warning(
            "key rotation: versions %s still wrap keys; the next run retires them",
            ", ".join(map(str, run.still_used)),
        )
    if run.overdue:
        log.critical(
            "key rotation is behind its schedule: a master key version outlived the "
            "backup horizon promised on shred receipts"
        )


def _log_report(report: RetentionReport) -> None:
    counts = (
        report.cards_deleted,
        report.subjects_shredded,
        report.held_skipped,
        report.already_done,
        report.errors,
    )
    level = logging.INFO if any(counts) else logging.DEBUG
    log.log(
        level,
        "retention: %d cards deleted, %d subjects shredded, %d held subjects skipped, "
        "%d already done, %d errors",
        *counts,
    )
