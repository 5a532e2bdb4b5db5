"""Group checkpoints: one WAL checkpoint serves every overwrite committed before it began.

An overwrite, a field delete and a shred each checkpoint SQLite's WAL right
after their commit (``PRAGMA wal_checkpoint(TRUNCATE)``), so that no page
image of a destroyed key or ciphertext stays in ``vault.db-wal``. A checkpoint
costs more than the write it follows (most of an overwrite's time), and under
concurrent writers one started *after* a commit leaves nothing of that commit
in the WAL, whoever asked for it. So ``GroupCheckpoint`` returns to a caller
once a checkpoint that began after its call has finished: the first caller
runs one, the ones arriving meanwhile wait for the next, which one of them
runs for all. The guarantee per call is unchanged (on return, a checkpoint
later than the caller's commit has completed); only the count goes down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from sqlalchemy import Engine


def checkpoint_sqlite(engines: Iterable[Engine]) -> None:
    """Move each SQLite engine's WAL into its database file and truncate it."""
    for engine in engines:
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


class GroupCheckpoint:
    """Run ``checkpoint`` for many callers at once; each returns after one begun after it."""

    def __init__(self, checkpoint: Callable[[], None]) -> None:
        self._checkpoint = checkpoint
        self._changed = threading.Condition()
        self._started = 0  # checkpoints begun, numbered from 1
        self._finished = 0  # the number of the last one that completed
        self._running = False
        self.runs = 0  # completed checkpoints (for tests and metrics)

    def __call__(self) -> None:
        with self._changed:
            needed = self._started + 1  # the first one to begin after this call
            while self._finished < needed:
                if not self._running:
                    self._running = True
                    self._started += 1
                    mine = self._started
                    break
                self._changed.wait()
            else:
                return  # another caller's checkpoint began after ours was asked for
        try:
            self._checkpoint()
        except BaseException:
            with self._changed:  # not done: a waiter runs its own
                self._running = False
                self._changed.notify_all()
            raise
        with self._changed:
            self._running = False
            self._finished = mine
            self.runs += 1
            self._changed.notify_all()
