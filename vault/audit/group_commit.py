"""Group commit: concurrent audit appends share one write transaction.

A reveal, a detokenization or a denial is written *before* its answer leaves,
so each such call used to pay a whole write transaction of its own (begin,
lock the chain head, insert, move the head, commit), one after another on
SQLite's single writer. ``GroupCommit`` lets the calls that arrive while one
transaction is being written wait for the next, which one of them (the
leader) writes for all of them at once. What each caller gets is unchanged:
``append`` returns only once the transaction holding its events has
committed, and raises if that transaction failed (fail closed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vault.audit.records import AuditRecord, ChainedEvent
from vault.errors import Unavailable, VaultError


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: VaultError | None = None


class GroupCommit:
    """Run ``write`` for the events of every caller waiting, one transaction per group."""

    def __init__(self, write: Callable[[list[AuditRecord]], list[ChainedEvent]]) -> None:
        self._write = write
        self._changed = threading.Condition()
        self._queue: list[tuple[list[AuditRecord], _Waiter]] = []
        self._writing = False
        self.transactions = 0  # groups written (for tests and metrics)

    def append(self, events: list[AuditRecord]) -> None:
        """Return once ``events`` are committed; raise the ``VaultError`` their write raised."""
        waiter = _Waiter()
        with self._changed:
            self._queue.append((events, waiter))
            while not waiter.done:
                if not self._writing:
                    self._writing = True
                    group, self._queue = self._queue, []
                    break
                self._changed.wait()
            else:
                if waiter.error is not None:
                    raise waiter.error.with_traceback(None)
                return
        error: VaultError | None = None
        try:
            self._write([event for batch, _ in group for event in batch])
        except VaultError as failed:
            error = failed
        except BaseException:
            # Whatever stopped the write, no member of the group may answer as if written.
            error = Unavailable("the audit log cannot be written")
            raise
        finally:
            with self._changed:
                self._writing = False
                for _, member in group:
                    member.done = True
                    member.error = error
                self.transactions += 1
                self._changed.notify_all()
        if error is not None:
            raise error
