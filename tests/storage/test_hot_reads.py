"""The hot read path answers exactly what the repository answers, on both back ends."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from vault.domain.records import StoredField
from vault.errors import DataLoss, Unavailable
from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

NOW = datetime(2026, 11, 22, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def hot(store: Store) -> Iterator[HotReads]:
    reads = HotReads(store.data_url)
    try:
        yield reads
    finally:
        reads.dispose()


def write_field(store: Store, subject_id: str, field: str, version: int = 1) -> StoredField:
    stored = StoredField(
        subject_id,
        field,
        "phone",
        version,
        f"dek-{subject_id}-{version}",
        b"\x01value-ct\x00\xff",
        b"\x01view-ct\x00\xfe",
        NOW,
    )
    with store.write() as tx:
        if tx.subjects.subject_state(subject_id) is None:
            tx.subjects.insert_subject(subject_id, NOW)
        if version == 1:
            tx.fields.insert_field(stored, f"digest-{subject_id}-{field}".encode(), NOW)
        else:
            tx.fields.replace_field(stored, f"digest-{subject_id}-{field}-{version}".encode())
    return stored


def test_hot_read_equals_the_repository_read(store: Store, hot: HotReads) -> None:
    written = write_field(store, "s-1", "phone")
    with store.read() as tx:
        via_repository = tx.fields.get_field("s-1", "phone")
    assert hot.get_field("s-1", "phone") == via_repository == written
    assert hot.get_field("s-1", "email") is None
    assert hot.get_field("nobody", "phone") is None


def test_hot_read_sees_each_committed_write(store: Store, hot: HotReads) -> None:
    write_field(store, "s-2", "phone")
    assert hot.get_field("s-2", "phone").version == 1  # type: ignore[union-attr]
    write_field(store, "s-2", "phone", version=2)
    seen = hot.get_field("s-2", "phone")
    assert seen is not None
    assert (seen.version, seen.dek_id) == (2, "dek-s-2-2")


def test_hot_read_never_returns_a_shredded_subject(store: Store, hot: HotReads) -> None:
    write_field(store, "s-3", "phone")
    with store.write() as tx:
        tx.data.execute(text("UPDATE subjects SET state = 'shredded' WHERE subject_id = 's-3'"))
    assert hot.get_field("s-3", "phone") is None


def test_batch_read_answers_each_live_row_once_in_one_statement(
    store: Store, hot: HotReads
) -> None:
    written = {k: write_field(store, *k) for k in [("b-1", "phone"), ("b-2", "phone")]}
    write_field(store, "b-3", "phone")
    with store.write() as tx:
        tx.data.execute(text("UPDATE subjects SET state = 'shredded' WHERE subject_id = 'b-3'"))
    asked = [("b-1", "phone"), ("b-2", "phone"), ("b-1", "phone"), ("b-3", "phone")]
    asked += [("b-1", "email"), ("nobody", "phone")]
    statements: list[str] = []
    real_run = hot._run

    def counted(statement: Any, values: dict[str, Any]) -> list[Any]:
        statements.append(statement[0])
        return real_run(statement, values)

    hot._run = counted  # type: ignore[method-assign]
    found = hot.get_fields(asked)
    # The duplicate asked once; the shredded subject, the missing field and subject absent.
    assert found == written
    assert len(statements) == 1
    assert hot.get_fields([]) == {}
    assert len(statements) == 1


def test_batch_read_of_a_hundred_rows_matches_single_reads(store: Store, hot: HotReads) -> None:
    for n in range(100):
        write_field(store, f"h-{n}", "phone")
    keys = [(f"h-{n}", "phone") for n in range(99, -1, -1)]
    found = hot.get_fields(keys)
    assert len(found) == 100
    assert all(found[key] == hot.get_field(*key) for key in keys)


def test_token_and_search_reads_equal_the_repository_reads(store: Store, hot: HotReads) -> None:
    written = write_field(store, "t-1", "phone")
    write_field(store, "t-2", "phone")
    with store.write() as tx:
        tx.index.put_index("t-1", "phone", "phone", b"same-digest")
        tx.index.put_index("t-2", "phone", "phone", b"same-digest")
    digest = b"digest-t-1-phone"
    with store.read() as tx:
        assert tx.fields.field_by_token(digest) == written
        assert tx.index.find_subjects("phone", b"same-digest") == ["t-1", "t-2"]
    assert hot.field_by_token(digest) == written
    assert hot.field_by_token(b"no-such-digest") is None
    assert hot.find_subjects("phone", b"same-digest") == ["t-1", "t-2"]
    assert hot.find_subjects("email", b"same-digest") == []
    with store.write() as tx:  # a shredded subject's token answers nothing
        tx.data.execute(text("UPDATE subjects SET state = 'shredded' WHERE subject_id = 't-1'"))
    assert hot.field_by_token(digest) is None


def test_a_data_key_is_read_with_its_subject_key_in_one_statement(store: Store) -> None:
    hot = HotReads(store.data_url, holds_keys=True)
    try:
        subject_key = SubjectKeyMaterial("sk-1", "k-1", WrappedKey("kek-1", 3, b"\x01sealed\x00"))
        data_key = DataKeyMaterial("dek-1", "k-1", "phone", "sk-1", b"\x01wrapped\xff")
        with store.write() as tx:
            tx.key_rows.insert_subject_key(subject_key, NOW)
            tx.key_rows.insert_data_key(data_key, NOW)
            tx.key_rows.insert_data_key(
                DataKeyMaterial("dek-2", "k-1", "email", "sk-gone", b"\x02"), NOW
            )
        with store.read() as tx:
            assert tx.key_rows.data_key("dek-1") == data_key
            assert tx.key_rows.subject_key_by_id("sk-1") == subject_key
        assert hot.data_key("dek-1") == (data_key, subject_key)
        assert hot.data_key("dek-2") == (
            DataKeyMaterial("dek-2", "k-1", "email", "sk-gone", b"\x02"),
            None,
        )
        assert hot.data_key("no-such-dek") is None
        assert hot.data_keys(["dek-2", "no-such-dek", "dek-1", "dek-1"]) == {
            "dek-1": (data_key, subject_key),
            "dek-2": hot.data_key("dek-2"),
        }
        assert hot.data_keys([]) == {}
    finally:
        hot.dispose()
    separate = HotReads(store.data_url)  # the key tables live in another database
    try:
        with pytest.raises(RuntimeError):
            separate.data_key("dek-1")
    finally:
        separate.dispose()


def test_hot_read_reconnects_after_its_connection_dies(store: Store, hot: HotReads) -> None:
    write_field(store, "s-4", "phone")
    assert hot.get_field("s-4", "phone") is not None
    [connection] = hot._idle
    if store.data_engine.dialect.name == "postgresql":
        # What a database restart does to every open session.
        pid = connection.driver_connection.info.backend_pid
        with store.write() as tx:
            tx.data.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        connection.driver_connection.close()
    assert hot.get_field("s-4", "phone") is not None
    assert hot._idle and hot._idle[-1] is not connection


def test_threads_beyond_the_pool_size_never_wait_for_a_connection(store: Store) -> None:
    """Each of many live threads reads while all the others stay alive.

    A connection pinned per thread starved every thread past the pool's size
    (they waited out the pool timeout twice and failed); leased per read, the
    connections are only as many as the reads that ran at once.
    """
    write_field(store, "s-5", "phone")
    hot = HotReads(store.data_url, threads=2)
    readers = 3 * 16
    all_have_read = threading.Barrier(readers)
    errors: list[BaseException] = []

    def read_then_stay_alive() -> None:
        try:
            assert hot.get_field("s-5", "phone") is not None
        except BaseException as error:
            errors.append(error)
        all_have_read.wait()

    threads = [threading.Thread(target=read_then_stay_alive) for _ in range(readers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        hot.dispose()
    assert errors == []


# -- a corrupt row is DATA_LOSS, never "the database is not reachable" ------------------
# What a database holder can write into a field row, per back end: SQLite stores a
# value of any type in any column; PostgreSQL needs a constraint dropped first.
TAMPERS: dict[str, dict[str, list[str]]] = {
    "unknown field_type": {
        "sqlite": ["UPDATE fields SET field_type = 'garbage'"],
        "postgresql": ["UPDATE fields SET field_type = 'garbage'"],
    },
    "NULL version": {
        "sqlite": ["UPDATE fields SET version = 'one'"],
        "postgresql": [
            "ALTER TABLE fields ALTER COLUMN version DROP NOT NULL",
            "UPDATE fields SET version = NULL",
        ],
    },
    "NULL view_ct": {
        "sqlite": ["UPDATE fields SET view_ct = 42"],
        "postgresql": [
            "ALTER TABLE fields ALTER COLUMN view_ct DROP NOT NULL",
            "UPDATE fields SET view_ct = NULL",
        ],
    },
    "value_ct as text": {
        "sqlite": ["UPDATE fields SET value_ct = 'not a ciphertext'"],
        "postgresql": [
            "ALTER TABLE fields ALTER COLUMN value_ct DROP NOT NULL",
            "UPDATE fields SET value_ct = NULL",
        ],
    },
    "updated_at not a time": {
        "sqlite": ["UPDATE fields SET updated_at = 'not a time'"],
        "postgresql": [
            "ALTER TABLE fields ALTER COLUMN updated_at DROP NOT NULL",
            "UPDATE fields SET updated_at = NULL",
        ],
    },
    "field_type not UTF-8": {
        # The driver cannot decode the row at all (its error quotes the text).
        "sqlite": ["UPDATE fields SET field_type = CAST(X'FFFE41' AS TEXT)"],
        "postgresql": [],  # PostgreSQL refuses invalid UTF-8 on the way in
    },
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_corrupt_row_is_data_loss_and_leaves_intact_rows_readable(
    store: Store, hot: HotReads, tamper: str
) -> None:
    statements = TAMPERS[tamper][store.data_engine.dialect.name]
    if not statements:
        pytest.skip(f"{store.data_engine.dialect.name} cannot hold this corruption")
    write_field(store, "s-6", "phone")
    assert hot.get_field("s-6", "phone") is not None
    with store.write() as tx:
        for statement in statements:
            tx.data.execute(text(statement))
    with pytest.raises(DataLoss) as raised:
        hot.get_field("s-6", "phone")
    assert raised.value.message == "the stored row of field 'phone' is malformed" or (
        raised.value.message == "a stored row cannot be decoded"
    )
    write_field(store, "s-7", "email")
    assert hot.get_field("s-7", "email") is not None


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    hot = HotReads(f"sqlite:///{tmp_path}/no-such-directory/vault.db")
    try:
        with pytest.raises(Unavailable):
            hot.get_field("s-1", "phone")
    finally:
        hot.dispose()


def test_a_missing_table_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    hot = HotReads(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            hot.get_field("s-1", "phone")
    finally:
        hot.dispose()
