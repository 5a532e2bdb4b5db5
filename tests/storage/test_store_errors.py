"""Each database failure in its own class, on SQLite and PostgreSQL.

Only a failure of the database itself is ``Unavailable`` (the error clients
retry); a corrupt file or row is ``DataLoss``; only a unique-key race is a
``WriteConflictError``; every other integrity error is a bug, raised as it is
and never retried.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from vault.errors import DataLoss, Unavailable
from vault.storage.database import Store, WriteConflictError, retry_on_write_conflict

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def is_postgres(store: Store) -> bool:
    return store.data_engine.dialect.name == "postgresql"


# -- integrity errors -------------------------------------------------------------------
def test_a_not_null_violation_is_raised_as_it_is_not_as_a_write_conflict(store: Store) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)not null|null value") as raised:
        with store.write() as tx:
            tx.keys.execute(
                text(
                    "INSERT INTO index_keys"
                    " (field_type, key_id, kek_id, kek_version, wrapped, created_at)"
                    " VALUES ('phone', 'ik-1', 'kek', 1, NULL, :now)"
                ),
                {"now": NOW},
            )
    assert not isinstance(raised.value, WriteConflictError)


def test_an_unclassified_database_error_does_not_carry_the_statements_parameters(
    store: Store,
) -> None:
    secret = "subject-secret-4242"
    with pytest.raises(IntegrityError) as raised:
        with store.write() as tx:
            tx.keys.execute(
                text(
                    "INSERT INTO index_keys"
                    " (field_type, key_id, kek_id, kek_version, wrapped, created_at)"
                    " VALUES ('phone', :key_id, 'kek', 1, NULL, :now)"
                ),
                {"key_id": secret, "now": NOW},
            )
    assert secret not in str(raised.value)


def test_two_writers_racing_for_one_unique_row_make_a_write_conflict(store: Store) -> None:
    first_inserted = threading.Event()
    outcomes: dict[str, BaseException | None] = {}

    def first() -> None:
        try:
            with store.write() as tx:
                tx.subjects.insert_subject("s-race", NOW)
                first_inserted.set()  # commits on leaving, while the second one runs
            outcomes["first"] = None
        except BaseException as error:
            first_inserted.set()
            outcomes["first"] = error

    def second() -> None:
        first_inserted.wait()
        try:
            with store.write() as tx:
                tx.subjects.insert_subject("s-race", NOW)
            outcomes["second"] = None
        except BaseException as error:
            outcomes["second"] = error

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes["first"] is None
    assert isinstance(outcomes["second"], WriteConflictError)
    with store.read() as tx:
        count = tx.data.execute(text("SELECT count(*) FROM subjects")).scalar_one()
    assert count == 1


def test_a_retried_unit_of_work_raises_once_the_conflict_outlasts_its_bound(
    store: Store,
) -> None:
    with store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
    attempts: list[int] = []

    def insert_the_same_subject() -> None:
        attempts.append(1)
        with store.write() as tx:
            tx.subjects.insert_subject("s-1", NOW)

    with pytest.raises(WriteConflictError, match="inserting s-1 still conflicted after 3"):
        retry_on_write_conflict(insert_the_same_subject, attempts=3, what="inserting s-1")
    assert len(attempts) == 3


# -- outages ------------------------------------------------------------------------------
def test_a_dropped_connection_is_unavailable_and_the_next_read_reconnects(
    store: Store,
) -> None:
    if not is_postgres(store):
        pytest.skip("an SQLite file cannot drop a connection")
    with store.data_engine.connect() as victim, store.data_engine.connect() as killer:
        # What a database restart does to a pooled session.
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
        victim.commit()
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.commit()
    outcomes = []
    for _ in range(store.data_engine.pool.size() + 1):
        try:
            with store.read() as tx:
                outcomes.append(tx.data.execute(text("SELECT 1")).scalar_one())
        except Unavailable:
            outcomes.append("unavailable")
    assert "unavailable" in outcomes
    assert outcomes[-1] == 1


def test_a_database_that_refuses_connections_is_unavailable() -> None:
    store = Store("postgresql://vault@127.0.0.1:1/nothing-listens-here")
    try:
        with pytest.raises(Unavailable, match="not reachable"), store.read() as tx:
            tx.subjects.subject_state("s-1")
    finally:
        store.dispose()


def test_an_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/no-such-directory/vault.db")
    try:
        with pytest.raises(Unavailable, match="not reachable"), store.read() as tx:
            tx.subjects.subject_state("s-1")
    finally:
        store.dispose()


def test_a_pool_timeout_is_unavailable_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(f"sqlite:///{tmp_path}/vault.db", threads=1, pool_timeout=0.01)
    try:
        with store.read(), store.read():  # one pooled connection and its one overflow
            for _ in range(3):
                with pytest.raises(Unavailable, match="no database connection is free"):
                    with store.read():
                        pass
    finally:
        store.dispose()
    timeouts = [r for r in caplog.records if "connection pool timed out" in r.getMessage()]
    assert len(timeouts) == 1
    assert timeouts[0].levelno == logging.ERROR


# -- corruption and bugs --------------------------------------------------------------------
def test_a_row_sqlite_cannot_decode_is_data_loss_and_its_text_stays_out_of_the_error(
    store: Store,
) -> None:
    if is_postgres(store):
        pytest.skip("PostgreSQL refuses invalid UTF-8 on the way in")
    with store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
        tx.data.execute(text("UPDATE subjects SET state = CAST(X'FFFE' || 'marker-9d1' AS TEXT)"))
    with pytest.raises(DataLoss) as raised, store.read() as tx:
        tx.subjects.subject_state("s-1")
    assert "marker-9d1" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_file_that_is_not_a_database_is_data_loss(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    path.write_bytes(b"this is not an SQLite database, whatever its name says" * 100)
    store = Store(f"sqlite:///{path}")
    try:
        with pytest.raises(DataLoss, match="corrupt"), store.read() as tx:
            tx.subjects.subject_state("s-1")
    finally:
        store.dispose()


def test_a_missing_table_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/never-migrated.db")
    try:
        with pytest.raises(OperationalError, match="no such table"), store.read() as tx:
            tx.subjects.subject_state("s-1")
    finally:
        store.dispose()
