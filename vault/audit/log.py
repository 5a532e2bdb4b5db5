"""The audit trail: who did what to which field, for which purpose; never a value.

Reveals, detokenizations, exports, shreds, holds and denials are written
*before* the answer leaves: if the write fails, the call fails (fail closed).
Masked reads go through ``record_later``: they are buffered and appended in
one transaction a moment later, so the hot read path does not pay a database
write per read. Every event is appended to a hash chain
(``vault.crypto.hash_chain``) that ``verify`` recomputes, and, when a sink is
configured, also written as one JSON line for a SIEM.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from vault.errors import Unavailable
from vault.storage import repository as repo
from vault.storage.database import Store, WriteConflictError

log = logging.getLogger("vault.audit")


class AuditLog:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        sink: TextIO | None = None,
        flush_interval: float = 0.5,
        max_buffer: int = 500,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sink = sink
        self._sink_lock = threading.Lock()
        self._buffer: list[repo.AuditRecord] = []
        self._buffer_lock = threading.Lock()
        # Held from taking a batch until it is committed, so that a flush() that
        # finds the buffer empty returns only after any batch in flight has landed.
        self._flush_lock = threading.Lock()
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def _event(
        self,
        caller: str,
        action: str,
        subject_id: str,
        field: str,
        view: str,
        purpose: str,
        outcome: str,
        status_code: str,
        detail: str,
    ) -> repo.AuditRecord:
        return repo.AuditRecord(
            self._clock(),
            caller,
            action,
            subject_id,
            field,
            view,
            purpose,
            outcome,
            status_code,
            detail,
        )

    def record(
        self,
        caller: str,
        action: str,
        *,
        subject_id: str = "",
        field: str = "",
        view: str = "",
        purpose: str = "",
        outcome: str = "ok",
        status_code: str = "OK",
        detail: str = "",
    ) -> None:
        """Append one event now; raises ``Unavailable`` if it cannot be written."""
        event = self._event(
            caller, action, subject_id, field, view, purpose, outcome, status_code, detail
        )
        self._append([event])

    def record_later(
        self,
        caller: str,
        action: str,
        *,
        subject_id: str = "",
        field: str = "",
        view: str = "",
        purpose: str = "",
        outcome: str = "ok",
        status_code: str = "OK",
        detail: str = "",
    ) -> None:
        """Buffer a routine event (a masked read); it is appended within ``flush_interval``."""
        event = self._event(
            caller, action, subject_id, field, view, purpose, outcome, status_code, detail
        )
        with self._buffer_lock:
            self._buffer.append(event)
            pending = len(self._buffer)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="audit-flush", daemon=True
                )
                self._flusher.start()
        if pending >= self._max_buffer:
            self._wake.set()  # the flusher writes it off the request thread
        if pending >= 10 * self._max_buffer:
            self.flush()  # the flusher cannot keep up: push back on readers

    def flush(self) -> None:
        """Write what is buffered; on return, every event buffered before the call is stored."""
        with self._flush_lock:
            with self._buffer_lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                self._append(batch)
            except Unavailable:
                # Keep the events for the next attempt rather than lose them.
                with self._buffer_lock:
                    self._buffer[:0] = batch
                raise

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as error:  # retried on the next tick
                log.error("buffered audit events not written yet: %s", type(error).__name__)

    def close(self) -> None:
        """Stop the flusher and write what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()

    def _append(self, events: list[repo.AuditRecord]) -> None:
        for attempt in (1, 2):
            try:
                with self._store.write() as tx:
                    repo.append_audit(tx.data, *events)
                break
            except WriteConflictError:
                # Two first appends both created the chain head; the loser retries.
                if attempt == 2:
                    raise Unavailable("the audit log cannot be written") from None
            except Exception:
                raise Unavailable("the audit log cannot be written") from None
        if self._sink is not None:
            lines = "".join(
                json.dumps(
                    {
                        "time": e.time.isoformat(),
                        "caller": e.caller,
                        "action": e.action,
                        "subject_id": e.subject_id,
                        "field": e.field,
                        "view": e.view,
                        "purpose": e.purpose,
                        "outcome": e.outcome,
                        "status_code": e.status_code,
                        "detail": e.detail,
                    },
                    sort_keys=True,
                )
                + "\n"
                for e in events
            )
            with self._sink_lock:
                self._sink.write(lines)
                self._sink.flush()

    # -- reading -----------------------------------------------------------------
    def events(self, subject_id: str | None = None) -> list[repo.AuditRecord]:
        self.flush()
        with self._store.read() as tx:
            return repo.audit_events(tx.data, subject_id)

    def page(
        self,
        *,
        after_sequence: int = 0,
        limit: int = 100,
        subject_id: str = "",
        caller: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[repo.ChainedEvent]:
        with self._store.read() as tx:
            return repo.list_audit_events(
                tx.data,
                after_sequence=after_sequence,
                limit=limit,
                subject_id=subject_id,
                caller=caller,
                action=action,
                start=start,
                end=end,
            )

    def verify(self) -> repo.ChainCheck:
        with self._store.read() as tx:
            return repo.verify_audit_chain(tx.data)
