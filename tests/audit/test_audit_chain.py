"""The hash-chained audit log: every kind of tampering is found, at its position."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.errors import Unavailable
from vault.storage import migrate
from vault.storage.database import Store

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    migrate.upgrade(s)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def audit(store: Store) -> Iterator[AuditLog]:
    log = AuditLog(store, Clock())
    try:
        yield log
    finally:
        log.close()


def fill(audit: AuditLog, count: int = 6) -> None:
    for index in range(count):
        audit.record(
            "privacy-desk",
            "reveal",
            subject_id=f"s-{index}",
            field="phone",
            view="plaintext",
            purpose="dsar",
        )


def sql(store: Store, statement: str, **params: object) -> None:
    with store.write() as tx:
        tx.data.execute(text(statement), params)


def test_an_untouched_chain_verifies(audit: AuditLog) -> None:
    fill(audit)
    check = audit.verify()
    assert (check.ok, check.events_checked, check.first_bad_position) == (True, 6, -1)


def test_an_empty_log_verifies(audit: AuditLog) -> None:
    assert audit.verify().ok


def test_an_edited_event_is_found_at_its_position(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "UPDATE audit_events SET purpose = 'marketing' WHERE sequence = 4")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 4)
    assert "altered" in check.problem


def test_a_deleted_event_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "DELETE FROM audit_events WHERE sequence = 3")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 3)


def test_deleting_the_newest_events_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    sql(store, "DELETE FROM audit_events WHERE sequence >= 5")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 5)
    assert "removed" in check.problem


def test_reordered_events_are_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    # Swap the contents (and hashes) of events 2 and 3, keeping the sequence numbers.
    sql(store, "UPDATE audit_events SET sequence = 1002 WHERE sequence = 2")
    sql(store, "UPDATE audit_events SET sequence = 2 WHERE sequence = 3")
    sql(store, "UPDATE audit_events SET sequence = 3 WHERE sequence = 1002")
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 2)


def test_an_inserted_event_is_found(store: Store, audit: AuditLog) -> None:
    fill(audit)
    # Make room after event 2 and slip in a forged event that copies event 2's hash fields.
    for sequence in range(6, 2, -1):
        sql(
            store,
            "UPDATE audit_events SET sequence = :new WHERE sequence = :old",
            new=sequence + 1,
            old=sequence,
        )
    sql(
        store,
        "INSERT INTO audit_events (sequence, time, caller, action, subject_id, field, view,"
        " purpose, outcome, status_code, detail, prev_hash, hash)"
        " SELECT 3, time, 'admin', 'reveal', 's-9', 'phone', 'plaintext', 'dsar', outcome,"
        " status_code, detail, hash, hash FROM audit_events WHERE sequence = 2",
    )
    check = audit.verify()
    assert (check.ok, check.first_bad_position) == (False, 3)


def test_masked_reads_are_batched_and_chained(store: Store) -> None:
    audit = AuditLog(store, Clock(), flush_interval=60)
    try:
        for index in range(5):
            audit.record_later("registration", "get", subject_id=f"m-{index}", view="masked")
        with store.read() as tx:
            written = tx.data.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        assert written == 0  # nothing on the hot path yet
        audit.flush()
        events = audit.events()
        assert [e.subject_id for e in events] == [f"m-{i}" for i in range(5)]
        assert audit.verify().ok
    finally:
        audit.close()


def test_the_buffer_is_written_when_the_log_closes(store: Store) -> None:
    audit = AuditLog(store, Clock(), flush_interval=60)
    audit.record_later("registration", "get", subject_id="late", view="masked")
    audit.close()
    assert [e.subject_id for e in AuditLog(store, Clock()).events()] == ["late"]


def test_events_stream_out_as_json_lines(store: Store) -> None:
    sink = io.StringIO()
    audit = AuditLog(store, Clock(), sink=sink)
    audit.record(
        "checkout",
        "detokenize",
        subject_id="s-1",
        field="payment_token.stripe",
        view="plaintext",
        purpose="checkout",
    )
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert lines == [
        {
            "action": "detokenize",
            "caller": "checkout",
            "detail": "",
            "field": "payment_token.stripe",
            "outcome": "ok",
            "purpose": "checkout",
            "status_code": "OK",
            "subject_id": "s-1",
            "time": "2026-11-22T09:00:01+00:00",
            "view": "plaintext",
        }
    ]


def test_concurrent_appenders_never_fork_the_chain(database_url: str, store: Store) -> None:
    # Two "replicas": separate stores (connection pools) appending at once.
    other = Store(database_url)
    logs = [AuditLog(store, Clock()), AuditLog(other, Clock())]
    errors: list[BaseException] = []

    def append(log: AuditLog, name: str) -> None:
        try:
            for index in range(25):
                log.record(name, "reveal", subject_id=f"{name}-{index}")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=append, args=(log, f"replica{n}")) for n, log in enumerate(logs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert errors == []
    check = logs[0].verify()
    assert (check.ok, check.events_checked) == (True, 50)


def test_the_call_fails_when_the_audit_log_cannot_be_written(store: Store, audit: AuditLog) -> None:
    sql(store, "DROP TABLE audit_events")
    with pytest.raises(Unavailable):
        audit.record("privacy-desk", "reveal", subject_id="s-1")
