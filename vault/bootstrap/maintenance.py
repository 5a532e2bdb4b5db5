"""Periodic upkeep inside the server: retention, then storage maintenance.

Why it lives in ``bootstrap`` and not in ``domain``: it owns a thread, an
interval and the process's logging, which is wiring; what it runs are the
domain's ``RetentionSweeper`` and the store's own ``checkpoint`` and
``vacuum_keys``.

What must hold:

- It never takes the server down: every step is guarded on its own, and a
  failure is logged by its type only (an exception message is not ours to
  vouch for, so it never reaches the log).
- It stops promptly on shutdown: the sweep checks the stop event between
  items, and the thread is a daemon, so a stuck database call cannot keep the
  process alive after the drain.
- Several replicas may each run it: shredding is idempotent per subject, and
  the sweeper counts work another replica finished first as done, not failed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from vault.bootstrap.app import App
from vault.config import Settings
from vault.domain.retention import RetentionReport, RetentionRules, RetentionSweeper
from vault.domain.vault import utc_now
from vault.storage.database import Store

log = logging.getLogger("vault.maintenance")


def build_sweeper(
    app: App, rules: RetentionRules, *, clock: Callable[[], datetime] = utc_now
) -> RetentionSweeper:
    """The sweeper wired to the app's store, shredder, vault and audit log."""
    return RetentionSweeper(app.store, app.shredder, app.vault, rules, clock, app.audit)


def load_retention(settings: Settings) -> RetentionRules:
    """The rules, read once at start-up; ``ValueError`` names the bad key or setting."""
    if settings.retention_interval < 0:
        raise ValueError("retention interval (VAULT_RETENTION_INTERVAL): must not be negative")
    return RetentionRules.load(settings.effective_retention_path)


def start_maintenance(app: App, rules: RetentionRules, interval: float) -> Maintenance | None:
    """Start the maintenance thread, or nothing when ``interval`` is 0."""
    if interval == 0:
        log.info("maintenance is off (retention interval 0)")
        return None
    maintenance = Maintenance(build_sweeper(app, rules), app.store, interval)
    maintenance.start()
    log.info("maintenance every %gs; retention: %s", interval, rules.describe())
    return maintenance


class Maintenance(threading.Thread):
    """Every ``interval`` seconds: sweep, then checkpoint SQLite and VACUUM key tables.

    The first run starts right away, so a replica that restarts more often
    than ``interval`` still sweeps.
    """

    def __init__(self, sweeper: RetentionSweeper, store: Store, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the maintenance interval must be positive")
        super().__init__(name="vault-maintenance", daemon=True)
        self._sweeper = sweeper
        self._store = store
        self._interval = interval
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

    def run_once(self) -> RetentionReport | None:
        report: RetentionReport | None = None
        try:
            if not self._sweeper.rules.empty:
                report = self._sweeper.run(cancelled=self._stop_event.is_set)
                _log_report(report)
        except Exception as error:  # never crash the server; the next run retries
            log.error("maintenance: retention sweep failed (%s)", type(error).__name__)
        for name, step in (
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
