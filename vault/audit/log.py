"""The audit trail: who did what to which field, for which purpose; never a value.

Reveals, detokenizations, exports, shreds, holds and denials are written
*before* the answer leaves: if the write fails, the call fails (fail closed).
Masked reads go through ``record_later``: they are buffered and appended in
one transaction a moment later, so the hot read path does not pay a database
write per read; equal accesses buffered together are one record with their
count (an aggregated access record). Within ``request()`` every ``record`` of one request (the
denials and reveals of a ``BatchGetFields``) is collected and appended in one
transaction when the request's work is done, still before its answer leaves,
so a request costs one durable write however many events it makes. Events
too numerous to write one by one (denials over a caller's budget, refused
searches) are counted with ``count_later`` and land as one buffered event per
caller and kind. Every event is appended to a chain keyed under the key
provider's audit key (``vault.crypto.hash_chain``) that ``verify`` recomputes,
and, when a sink is configured, also written as one JSON line for a SIEM.

Anchors: the chain's key is outside the database, so whoever holds only the
database cannot recompute the chain after deleting or editing an event; what
they can still do is cut events off the end and rewind the head. Against that,
positions and hashes are recorded outside the database as the chain grows:
every sink line carries its event's ``sequence`` and ``hash``, and every shred
receipt and DSAR export signs the head at its signing time as
``audit_anchor``. ``verify`` checks the chain against any anchors it is given.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TextIO

from vault.audit import chain
from vault.audit.chain_key import ChainKeySource
from vault.audit.group_commit import GroupCommit
from vault.audit.records import (
    Access,
    AuditAction,
    AuditAnchor,
    AuditOutcome,
    AuditRecord,
    ChainedEvent,
    access_record,
)
from vault.audit.sink import write_lines
from vault.crypto.hash_chain import check_chain_key
from vault.domain.ports import Store, retry_on_write_conflict
from vault.errors import DataLoss, Unavailable

log = logging.getLogger("vault.audit")


REKEY_ACTION = AuditAction.AUDIT_REKEY
"""The event recorded when an unkeyed chain (schema 0003-0005) is re-chained under the key."""


class AuditLog:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        chain_key: ChainKeySource,
        sink: TextIO | None = None,
        flush_interval: float = 0.5,
        max_buffer: int = 500,
    ) -> None:
        self._store = store
        self._clock = clock
        self._chain_key_source = chain_key
        self._chain_key: bytes | None = None  # set by open_chain, once per process
        self._open_lock = threading.Lock()
        self._sink = sink
        self._sink_lock = threading.Lock()
        # Told of every event once it is chained (metrics count them); never raises on.
        self.observers: list[Callable[[list[AuditRecord]], None]] = []
        self.flush_observers: list[Callable[[int, float], None]] = []
        # Routine events waiting for the flusher, one entry per kind of access:
        # (caller, action, subject, field, view, purpose, outcome, status, detail)
        # -> [time of the first, how many]. A flush that failed keeps its records.
        self._buffer: dict[Access, list[Any]] = {}
        self._unwritten: list[AuditRecord] = []
        self._buffer_lock = threading.Lock()
        # Held from taking a batch until it is committed, so that a flush() that
        # finds the buffer empty returns only after any batch in flight has landed.
        self._flush_lock = threading.Lock()
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Readers over the push-back limit wait on this for the flusher to make room.
        self._room = threading.Condition(self._buffer_lock)
        self._flush_failed = False
        self._group = GroupCommit(self._append_now)
        # Counted events waiting for the next flush: (caller, action, outcome, status, detail).
        self._counts: dict[tuple[str, str, str, str, str], int] = {}
        # The events of the request being served on this thread (or task), if it is scoped.
        self._request_events: ContextVar[list[AuditRecord] | None] = ContextVar(
            f"audit_request_events_{id(self)}", default=None
        )

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
    ) -> AuditRecord:
        return AuditRecord(
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
        outcome: str = AuditOutcome.OK,
        status_code: str = "OK",
        detail: str = "",
    ) -> None:
        """Append one event now; raises ``Unavailable`` if it cannot be written.

        Inside ``request()`` the event is held and appended with the request's
        other events when the request ends (before its answer leaves).
        """
        event = self._event(
            caller, action, subject_id, field, view, purpose, outcome, status_code, detail
        )
        pending = self._request_events.get()
        if pending is not None:
            pending.append(event)
            return
        self._append([event])

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Collect this request's ``record`` events and append them in one transaction at exit.

        The write happens when the block ends, whether it ends normally or by
        an error, and before the caller can answer: if it fails, ``Unavailable``
        is raised from the ``with`` statement, so no answer leaves unaudited.
        A nested ``request()`` joins the outer one.
        """
        if self._request_events.get() is not None:
            yield
            return
        events: list[AuditRecord] = []
        scope = self._request_events.set(events)
        try:
            yield
        finally:
            self._request_events.reset(scope)
            if events:
                self._append(events)

    def count_later(
        self,
        caller: str,
        action: str,
        *,
        outcome: str = AuditOutcome.SUPPRESSED,
        status_code: str = "RESOURCE_EXHAUSTED",
        detail: str,
    ) -> None:
        """Count an event instead of writing it; the next flush appends one event per kind.

        For what a caller can make the vault do faster than it should write
        (denials over budget, refused searches): the count, not each occurrence,
        is what the audit log needs, and it costs no write per occurrence.
        """
        key = (caller, action, outcome, status_code, detail)
        with self._buffer_lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="audit-flush", daemon=True
                )
                self._flusher.start()

    def buffered(self) -> int:  # masked-read records waiting for the flusher
        return len(self._buffer) + len(self._unwritten)

    def record_later(
        self,
        caller: str,
        action: str,
        *,
        subject_id: str = "",
        field: str = "",
        view: str = "",
        purpose: str = "",
        outcome: str = AuditOutcome.OK,
        status_code: str = "OK",
        detail: str = "",
    ) -> None:
        """Buffer a routine event (a masked read); it is appended within ``flush_interval``.

        The same access repeated before the flush (caller, action, subject,
        field, view, purpose and outcome all equal) is one record with its count
        (``count=N`` in its detail, the time of the first): an aggregated access
        record, so a hot field read ten thousand times a second costs one
        chained event per flush, not ten thousand, and every access is counted.
        """
        key = (caller, action, subject_id, field, view, purpose, outcome, status_code, detail)
        with self._buffer_lock:
            seen = self._buffer.get(key)
            if seen is None:
                self._buffer[key] = [self._clock(), 1]
            else:
                seen[1] += 1
            pending = len(self._buffer)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="audit-flush", daemon=True
                )
                self._flusher.start()
        if pending >= self._max_buffer:
            self._wake.set()  # the flusher writes it off the request thread
        if pending >= 10 * self._max_buffer:
            self._wait_for_room()  # the flusher cannot keep up: push back on readers

    def _wait_for_room(self, patience: float = 5.0) -> None:
        """Hold a reader until the flusher has brought the buffer under the limit.

        Readers wait for the flusher rather than each writing the backlog (a
        convoy of multi-second stalls). If the flusher fails or takes longer
        than ``patience`` seconds, the reader writes the buffer itself, which
        raises ``Unavailable`` when the audit log cannot be written.
        """
        limit = 10 * self._max_buffer
        deadline = time.monotonic() + patience
        with self._room:
            while len(self._buffer) + len(self._unwritten) >= limit and not self._flush_failed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.set()
                self._room.wait(left)
            else:
                if not self._flush_failed:
                    return
        self.flush()

    def flush(self) -> None:
        """Write what is buffered; on return, every event buffered before the call is stored."""
        with self._flush_lock:
            with self._buffer_lock:
                batch, self._unwritten = self._unwritten, []
                buffered, self._buffer = self._buffer, {}
                counts, self._counts = self._counts, {}
            batch += [access_record(key, time, n) for key, (time, n) in buffered.items()]
            batch += [
                self._event(caller, action, "", "", "", "", outcome, status, f"count={n}: {what}")
                for (caller, action, outcome, status, what), n in counts.items()
            ]
            if not batch:
                return
            started = time.perf_counter()
            try:
                self._append(batch)
                for observe_flush in self.flush_observers:  # metrics: size and time
                    observe_flush(len(batch), time.perf_counter() - started)
            except Unavailable:
                # Keep the events for the next attempt rather than lose them.
                with self._room:
                    self._unwritten[:0] = batch
                    self._flush_failed = True
                    self._room.notify_all()
                raise
            with self._room:
                self._flush_failed = False
                self._room.notify_all()

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

    # -- the keyed chain ---------------------------------------------------------------
    def open_chain(self) -> bytes:
        """The chain key, once the chain in the database is keyed under it.

        Runs once per process, before the first append or verify (the server
        also calls it at start-up). When the key provider says an unkeyed
        chain may still be adopted (an installation upgraded from schema
        0005), the unkeyed chain is checked, re-chained under the key and an
        ``audit-rekey`` event recorded, in one transaction; then the provider
        is told that adoption is over. Otherwise an unkeyed head is left as
        it is, to be refused by every append and reported by ``verify``: it
        can only be the work of someone who rewrote the database.

        Raises ``Unavailable`` while the key provider cannot be reached (a
        vault that started sealed): nothing is appended without the key.
        """
        key = self._chain_key
        if key is not None:
            return key
        with self._open_lock:
            if self._chain_key is not None:
                return self._chain_key
            source = self._chain_key_source
            key = check_chain_key(source.audit_key())
            if source.adopts_unkeyed_audit_chain():
                self._adopt_unkeyed_chain(key)
                source.close_unkeyed_audit_chain()
            self._chain_key = key
            return key

    def _adopt_unkeyed_chain(self, key: bytes) -> None:
        try:
            with self._store.write() as tx:
                rechained = chain.rechain_unkeyed(tx.audit, key)
                if rechained is None:
                    return
                found = rechained.unkeyed_check
                event = self._event(
                    "vault", REKEY_ACTION, "", "", "", "", AuditOutcome.OK, "OK", rechained.detail
                )
                chained = chain.append(tx.audit, key, event)
        except Exception:
            raise Unavailable("the audit log cannot be re-chained under its key") from None
        if not found.ok:
            log.critical(
                "the unkeyed audit chain was broken at position %d (%s) before it was keyed; "
                "the audit-rekey event records it",
                found.first_bad_position,
                found.problem,
            )
        log.warning(
            "audit chain re-keyed: %d events now chained under the audit key", rechained.events
        )
        self._write_sink(chained)

    def _append(self, events: list[AuditRecord]) -> None:
        """Write ``events`` durably, in one transaction with those of concurrent callers."""
        self._group.append(events)

    def _append_now(self, events: list[AuditRecord]) -> list[ChainedEvent]:
        key = self.open_chain()

        def append() -> list[ChainedEvent]:
            with self._store.write() as tx:
                return chain.append(tx.audit, key, *events)

        try:
            # Two first appends may both create the chain head; the loser retries.
            chained = retry_on_write_conflict(append, attempts=2, what="an audit append")
        except chain.UnkeyedChainError:
            log.critical(
                "the audit chain head in the database is unkeyed although this vault's "
                "chain is keyed: the database was rewritten; nothing more is appended"
            )
            raise Unavailable("the audit log cannot be written") from None
        except DataLoss:
            # A corrupt page is corruption, not an outage: clients must not retry it.
            raise
        except Exception:
            # Fail closed: whatever keeps the event out (a second conflict too), the
            # answer does not leave.
            raise Unavailable("the audit log cannot be written") from None
        self._write_sink(chained)
        return chained

    def _write_sink(self, chained: list[ChainedEvent]) -> None:
        """Tell the observers, and write the sink's lines (anchors: ``vault.audit.sink``)."""
        for observe in self.observers:
            try:
                observe([c.record for c in chained])
            except Exception:  # an observer never costs an audit write
                log.exception("audit observer failed")
        if self._sink is not None:
            write_lines(self._sink, self._sink_lock, chained)

    # -- reading -----------------------------------------------------------------
    def events(self, subject_id: str | None = None) -> list[AuditRecord]:
        self.flush()
        with self._store.read() as tx:
            return tx.audit.events(subject_id)

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
    ) -> list[ChainedEvent]:
        with self._store.read() as tx:
            return tx.audit.page(
                after_sequence=after_sequence,
                limit=limit,
                subject_id=subject_id,
                caller=caller,
                action=action,
                start=start,
                end=end,
            )

    def anchor(self) -> AuditAnchor:
        """The chain head now, for a signed document to carry as its ``audit_anchor``."""
        with self._store.read() as tx:
            return chain.anchor(tx.audit)

    def verify(self, anchors: Mapping[int, bytes] | None = None) -> chain.ChainCheck:
        """Recompute the chain under the key, and check it against ``anchors``
        (sequence -> hash, recorded outside the database)."""
        key = self.open_chain()
        with self._store.read() as tx:
            return chain.verify(tx.audit, key, anchors)
