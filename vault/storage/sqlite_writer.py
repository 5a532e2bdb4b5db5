"""One writer at a time per SQLite file, queued in the process instead of in SQLite.

SQLite lets one transaction write at a time. Threads that meet a held write
lock in ``BEGIN IMMEDIATE`` are parked by SQLite's busy handler, which sleeps
and polls in growing steps of up to 100 ms: under a write load the tail of
every write falls into those steps (228 ms + k x 100 ms was measured). Here
the threads of one process wait on a ``threading.Lock`` per database file
first, which hands the file to the next writer the moment the last commits.
Other processes (``--workers``) still meet SQLite's own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from vault.errors import Unavailable

WAIT_SECONDS = 30.0  # as long as SQLite's busy timeout
_locks: dict[str, threading.Lock] = {}
_registry = threading.Lock()


def _lock_of(engine: Engine) -> threading.Lock:
    name = str(engine.url.database or "")
    with _registry:
        return _locks.setdefault(name, threading.Lock())


@contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """Hold the process's write turn on ``engine``'s SQLite file for the block."""
    lock = _lock_of(engine)
    if not lock.acquire(timeout=WAIT_SECONDS):
        raise Unavailable("the database is busy")
    try:
        yield
    finally:
        lock.release()
