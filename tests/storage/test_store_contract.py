"""The storage contract: the same assertions against SQLite and PostgreSQL.

Every test runs once per back end through the ``database_url`` fixture. The
split-store tests put the key tables in a database of their own, as
``--key-database-url`` does in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from vault.audit import chain as audit_chain
from vault.audit.records import AuditRecord
from vault.domain.records import (
    CarriedKeyMaterial,
    IdempotencyRecord,
    IndexKeyMaterial,
    StoredField,
    SubjectState,
)
from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage import migrate
from vault.storage.database import Store, WriteConflictError
from vault.storage.fields import FieldRows
from vault.storage.keys import KeyRows
from vault.storage.models import DATA_TABLES, KEY_TABLES
from vault.storage.subjects import SubjectRows

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
AUDIT_KEY = bytes(range(32))


class BodyFailedError(Exception):
    """Raised inside a transaction body to force a rollback."""


@pytest.fixture
def split_store(
    fresh_database_url: str, request: pytest.FixtureRequest, tmp_path: object
) -> Iterator[Store]:
    if fresh_database_url.startswith("sqlite"):
        key_url = f"sqlite:///{tmp_path}/keys.db"
    else:
        # A second, empty PostgreSQL database from tests/conftest.py.
        key_url = request.getfixturevalue("postgres_url")
    s = Store(fresh_database_url, key_url)
    migrate.upgrade(s)
    try:
        yield s
    finally:
        s.dispose()


# -- helpers ------------------------------------------------------------------------------
def subject_key(subject_id: str, key_id: str = "") -> SubjectKeyMaterial:
    key_id = key_id or f"sk-{subject_id}"
    return SubjectKeyMaterial(key_id, subject_id, WrappedKey("local-abc", 1, b"\x01wrapped-sk"))


def data_key(dek_id: str, subject_id: str = "s-1", field: str = "phone") -> DataKeyMaterial:
    return DataKeyMaterial(dek_id, subject_id, field, f"sk-{subject_id}", b"\x01wrapped-dek")


def stored_field(
    subject_id: str = "s-1",
    field: str = "phone",
    *,
    version: int = 1,
    dek_id: str = "dek-1",
    value_ct: bytes = b"\x01value",
    view_ct: bytes = b"\x01view",
    field_type: str = "phone",
    updated_at: datetime = NOW,
) -> StoredField:
    return StoredField(
        subject_id, field, field_type, version, dek_id, value_ct, view_ct, updated_at
    )


def count(conn: Connection, table: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def add_subject(store: Store, subject_id: str = "s-1") -> None:
    with store.write() as tx:
        tx.subjects.insert_subject(subject_id, NOW)
        tx.key_rows.insert_subject_key(subject_key(subject_id), NOW)


def add_field(store: Store, stored: StoredField, token: bytes) -> None:
    with store.write() as tx:
        tx.fields.insert_field(stored, token, NOW)


# -- migrations ---------------------------------------------------------------------------
def test_upgrade_creates_every_table(store: Store) -> None:
    with store.read() as tx:
        for table in (*KEY_TABLES, *DATA_TABLES):
            assert count(tx.data, table) == 0, table


def test_upgrade_is_idempotent(store: Store) -> None:
    add_subject(store)
    migrate.upgrade(store)
    migrate.upgrade(store)
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") == SubjectState.ACTIVE
        versions = tx.data.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert len(versions) == 1  # one head, applied once


# -- subjects -----------------------------------------------------------------------------
def test_subject_insert_and_state(store: Store) -> None:
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") is None
    with store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") == "active"
        assert tx.subjects.subject_state("s-2") is None


def test_touch_subject_updates_only_updated_at(store: Store) -> None:
    with store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
    with store.write() as tx:
        tx.subjects.touch_subject("s-1", LATER)
    with store.read() as tx:
        created, updated = tx.data.execute(
            text("SELECT created_at, updated_at FROM subjects WHERE subject_id = 's-1'")
        ).one()
    as_utc = [
        v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in (created, updated)
    ]
    assert [v.replace(tzinfo=v.tzinfo or UTC) for v in as_utc] == [NOW, LATER]


def test_duplicate_subject_is_a_write_conflict(store: Store) -> None:
    add_subject(store)
    with pytest.raises(WriteConflictError), store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)


# -- subject keys -------------------------------------------------------------------------
def test_subject_key_by_subject_and_by_id(store: Store) -> None:
    add_subject(store, "s-1")
    add_subject(store, "s-2")
    with store.read() as tx:
        assert tx.key_rows.subject_key_for("s-1") == subject_key("s-1")
        assert tx.key_rows.subject_key_by_id("sk-s-2") == subject_key("s-2")
        assert tx.key_rows.subject_key_for("s-3") is None
        assert tx.key_rows.subject_key_by_id("sk-s-3") is None


def test_one_subject_key_per_subject(store: Store) -> None:
    add_subject(store, "s-1")
    with pytest.raises(WriteConflictError), store.write() as tx:
        tx.key_rows.insert_subject_key(subject_key("s-1", key_id="another"), NOW)
    with store.read() as tx:
        assert tx.key_rows.subject_key_by_id("another") is None


# -- data keys ----------------------------------------------------------------------------
def test_data_key_insert_get_delete(store: Store) -> None:
    with store.write() as tx:
        tx.key_rows.insert_data_key(data_key("dek-1"), NOW)
        tx.key_rows.insert_data_key(data_key("dek-2", field="email"), NOW)
    with store.read() as tx:
        assert tx.key_rows.data_key("dek-1") == data_key("dek-1")
        assert tx.key_rows.data_key("dek-2") == data_key("dek-2", field="email")
    with store.write() as tx:
        tx.key_rows.delete_data_key("dek-1")
        tx.key_rows.delete_data_key("never-existed")
    with store.read() as tx:
        assert tx.key_rows.data_key("dek-1") is None
        assert tx.key_rows.data_key("dek-2") is not None
        assert count(tx.keys, "data_keys") == 1


# -- fields -------------------------------------------------------------------------------
def test_field_insert_get_and_list(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(field="phone", dek_id="dek-1"), b"t" * 32)
    add_field(store, stored_field(field="email", dek_id="dek-2", field_type="email"), b"u" * 32)
    with store.read() as tx:
        assert tx.fields.get_field("s-1", "phone") == stored_field(field="phone")
        assert tx.fields.get_field("s-1", "fax") is None
        assert tx.fields.get_field("s-2", "phone") is None
        listed = tx.fields.list_fields("s-1")
    assert [f.field for f in listed] == ["email", "phone"]
    assert listed[0].field_type == "email"
    assert listed[1].updated_at == NOW
    assert listed[1].updated_at.tzinfo is not None


def test_field_needs_its_subject(store: Store) -> None:
    # A foreign-key violation is a bug, not a race another writer won: never retried.
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        add_field(store, stored_field(subject_id="nobody"), b"t" * 32)
    with store.read() as tx:
        assert count(tx.data, "fields") == 0


def test_field_by_token(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(), b"t" * 32)
    with store.read() as tx:
        assert tx.fields.field_by_token(b"t" * 32) == stored_field()
        assert tx.fields.field_by_token(b"x" * 32) is None


def test_token_digest_is_unique(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(field="phone"), b"t" * 32)
    with pytest.raises(WriteConflictError):
        add_field(store, stored_field(field="email", dek_id="dek-2"), b"t" * 32)


def test_field_replace(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(), b"t" * 32)
    new = stored_field(version=2, dek_id="dek-2", value_ct=b"\x01v2", view_ct=b"\x01w2")
    new = StoredField(**{**new.__dict__, "updated_at": LATER})
    with store.write() as tx:
        tx.fields.replace_field(new, b"n" * 32)
    with store.read() as tx:
        assert tx.fields.get_field("s-1", "phone") == new
        assert tx.fields.field_by_token(b"t" * 32) is None  # the old token is dead
        assert tx.fields.field_by_token(b"n" * 32) == new
        assert count(tx.data, "fields") == 1


def test_field_delete_removes_the_index_row(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(field="phone"), b"t" * 32)
    add_field(store, stored_field(field="phone.work", dek_id="dek-2"), b"u" * 32)
    with store.write() as tx:
        tx.index.put_index("s-1", "phone", "phone", b"d" * 16)
        tx.index.put_index("s-1", "phone.work", "phone", b"e" * 16)
    with store.write() as tx:
        tx.fields.delete_field("s-1", "phone")
    with store.read() as tx:
        assert tx.fields.get_field("s-1", "phone") is None
        assert tx.fields.field_by_token(b"t" * 32) is None
        assert tx.index.find_subjects("phone", b"d" * 16) == []
        # The other field and its index row are untouched.
        assert tx.fields.get_field("s-1", "phone.work") is not None
        assert tx.index.find_subjects("phone", b"e" * 16) == ["s-1"]
        assert count(tx.data, "blind_index") == 1


def test_rows_of_a_shredded_subject_are_not_read_back(store: Store) -> None:
    add_subject(store, "s-1")
    add_subject(store, "s-2")
    add_field(store, stored_field("s-1"), b"t" * 32)
    add_field(store, stored_field("s-2", dek_id="dek-2"), b"u" * 32)
    with store.write() as tx:
        tx.data.execute(text("UPDATE subjects SET state = 'shredded' WHERE subject_id = 's-1'"))
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") == SubjectState.SHREDDED
        assert tx.fields.get_field("s-1", "phone") is None
        assert tx.fields.list_fields("s-1") == []
        assert tx.fields.field_by_token(b"t" * 32) is None
        # The ciphertext row itself may linger; it is just never handed out.
        assert count(tx.data, "fields") == 2
        assert tx.fields.get_field("s-2", "phone") == stored_field("s-2", dek_id="dek-2")


# -- blind index --------------------------------------------------------------------------
def test_find_subjects_distinct_and_ordered(store: Store) -> None:
    digest = b"d" * 16
    with store.write() as tx:
        for subject_id in ("s-3", "s-1", "s-2"):
            tx.subjects.insert_subject(subject_id, NOW)
        tx.index.put_index("s-3", "phone", "phone", digest)
        tx.index.put_index("s-1", "phone", "phone", digest)
        tx.index.put_index("s-1", "phone.work", "phone", digest)  # same subject twice
        tx.index.put_index("s-2", "phone", "phone", b"o" * 16)  # another value
        tx.index.put_index("s-2", "email", "email", digest)  # another type
    with store.read() as tx:
        assert tx.index.find_subjects("phone", digest) == ["s-1", "s-3"]
        assert tx.index.find_subjects("email", digest) == ["s-2"]
        assert tx.index.find_subjects("phone", b"z" * 16) == []


def test_put_index_replaces_and_none_removes(store: Store) -> None:
    with store.write() as tx:
        tx.index.put_index("s-1", "phone", "phone", b"a" * 16)
    with store.write() as tx:
        tx.index.put_index("s-1", "phone", "phone", b"b" * 16)
    with store.read() as tx:
        assert tx.index.find_subjects("phone", b"a" * 16) == []
        assert tx.index.find_subjects("phone", b"b" * 16) == ["s-1"]
    with store.write() as tx:
        tx.index.put_index("s-1", "phone", "phone", None)
    with store.read() as tx:
        assert count(tx.data, "blind_index") == 0


# -- idempotency --------------------------------------------------------------------------
def test_idempotency_record(store: Store) -> None:
    record = IdempotencyRecord("phone", "dek-1", b"m" * 32, 3, NOW + timedelta(hours=24))
    with store.write() as tx:
        tx.idempotency.remember_idempotency("registration", "s-1", "req-1", record, NOW)
    with store.read() as tx:
        assert tx.idempotency.idempotency_record("registration", "s-1", "req-1", NOW) == record
        assert tx.idempotency.idempotency_record("registration", "s-1", "req-2", NOW) is None
        # Scoped by subject and by the caller that made it.
        assert tx.idempotency.idempotency_record("registration", "s-2", "req-1", NOW) is None
        assert tx.idempotency.idempotency_record("checkout", "s-1", "req-1", NOW) is None
    with pytest.raises(WriteConflictError), store.write() as tx:
        tx.idempotency.remember_idempotency("registration", "s-1", "req-1", record, NOW)


def test_an_expired_idempotency_record_answers_nothing_and_is_purged(store: Store) -> None:
    expires = NOW + timedelta(hours=1)
    record = IdempotencyRecord("phone", "dek-1", b"m" * 32, 1, expires)
    with store.write() as tx:
        tx.idempotency.remember_idempotency("registration", "s-1", "req-1", record, NOW)
        later = replace(record, expires_at=NOW + timedelta(hours=4))
        tx.idempotency.remember_idempotency("registration", "s-1", "req-2", later, NOW)
    with store.read() as tx:
        assert tx.idempotency.idempotency_record("registration", "s-1", "req-1", expires) is None
    # An expired record not yet purged gives way to a new one under the same key.
    fresh = replace(record, dek_id="dek-2", expires_at=expires + timedelta(hours=24))
    with store.write() as tx:
        tx.idempotency.remember_idempotency("registration", "s-1", "req-1", fresh, expires)
    with store.read() as tx:
        assert tx.idempotency.idempotency_record("registration", "s-1", "req-1", expires) == fresh
    with store.write() as tx:
        assert tx.idempotency.purge_expired_idempotency(NOW + timedelta(hours=5)) == 1
    with store.read() as tx:
        assert count(tx.data, "idempotency_keys") == 1


def test_deleting_a_field_disarms_its_idempotency_records(store: Store) -> None:
    add_subject(store, "s-1")
    record = IdempotencyRecord("phone", "dek-1", b"m" * 32, 1, NOW + timedelta(hours=24))
    other = replace(record, field="email")
    with store.write() as tx:
        tx.fields.insert_field(stored_field(), b"t" * 32, NOW)
        tx.idempotency.remember_idempotency("registration", "s-1", "req-1", record, NOW)
        tx.idempotency.remember_idempotency("checkout", "s-1", "req-1", record, NOW)
        tx.idempotency.remember_idempotency("registration", "s-1", "req-2", other, NOW)
    with store.write() as tx:
        tx.fields.delete_field("s-1", "phone")
    with store.read() as tx:
        for caller in ("registration", "checkout"):
            found = tx.idempotency.idempotency_record(caller, "s-1", "req-1", NOW)
            assert found == replace(record, fingerprint=None)
        assert tx.idempotency.idempotency_record("registration", "s-1", "req-2", NOW) == other


# -- index keys ---------------------------------------------------------------------------
def test_index_keys(store: Store) -> None:
    phone = IndexKeyMaterial("phone", "ik-1", WrappedKey("local-abc", 1, b"\x01ik1"))
    email = IndexKeyMaterial("email", "ik-2", WrappedKey("local-abc", 2, b"\x01ik2"))
    with store.read() as tx:
        assert tx.index_keys.index_keys() == []
    with store.write() as tx:
        tx.index_keys.insert_index_key(phone, NOW)
        tx.index_keys.insert_index_key(email, NOW)
    with store.read() as tx:
        found = sorted(tx.index_keys.index_keys(), key=lambda m: m.field_type)
    assert found == [email, phone]
    with pytest.raises(WriteConflictError), store.write() as tx:
        tx.index_keys.insert_index_key(phone, NOW)


# -- audit --------------------------------------------------------------------------------
def test_audit_append_and_read_in_order(store: Store) -> None:
    events = [
        AuditRecord(NOW, "registration", "put", "s-1", "phone"),
        AuditRecord(
            NOW + timedelta(seconds=1),
            "registration",
            "get",
            "s-2",
            "phone",
            "plaintext",
            "",
            "denied",
            "PERMISSION_DENIED",
            "no grant",
        ),
        AuditRecord(LATER, "privacy-desk", "reveal", "s-1", "phone", "plaintext", "dsar"),
    ]
    for event in events:
        with store.write() as tx:
            audit_chain.append(tx.audit, AUDIT_KEY, event)
    with store.read() as tx:
        assert tx.audit.events() == events
        assert tx.audit.events("s-1") == [events[0], events[2]]
        assert tx.audit.events("nobody") == []
        assert all(e.time.tzinfo is not None for e in tx.audit.events())


# -- transactions -------------------------------------------------------------------------
def test_write_rolls_back_everything_when_the_body_raises(store: Store) -> None:
    with pytest.raises(BodyFailedError), store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
        tx.key_rows.insert_subject_key(subject_key("s-1"), NOW)
        tx.key_rows.insert_data_key(data_key("dek-1"), NOW)
        raise BodyFailedError
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") is None
        assert tx.key_rows.subject_key_for("s-1") is None
        assert tx.key_rows.data_key("dek-1") is None


def test_write_rolls_back_a_replace(store: Store) -> None:
    add_subject(store)
    add_field(store, stored_field(), b"t" * 32)
    with pytest.raises(BodyFailedError), store.write() as tx:
        tx.fields.replace_field(stored_field(version=2, dek_id="dek-2"), b"n" * 32)
        tx.index.put_index("s-1", "phone", "phone", b"d" * 16)
        raise BodyFailedError
    with store.read() as tx:
        assert tx.fields.get_field("s-1", "phone") == stored_field()
        assert count(tx.data, "blind_index") == 0


def test_after_commit_actions_run_on_success_only(store: Store) -> None:
    with store.write() as tx:
        tx.key_rows.insert_data_key(data_key("dek-old"), NOW)
        tx.key_rows.insert_data_key(data_key("dek-kept"), NOW)
    with pytest.raises(BodyFailedError), store.write() as tx:
        tx.delete_keys_after_commit(lambda conn: KeyRows(conn).delete_data_key("dek-old"))
        raise BodyFailedError
    with store.read() as tx:
        assert tx.key_rows.data_key("dek-old") is not None
    with store.write() as tx:
        tx.delete_keys_after_commit(lambda conn: KeyRows(conn).delete_data_key("dek-old"))
    with store.read() as tx:
        assert tx.key_rows.data_key("dek-old") is None
        assert tx.key_rows.data_key("dek-kept") is not None


def test_a_reader_does_not_see_uncommitted_rows(store: Store) -> None:
    with store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
        with store.data_engine.connect() as other:
            assert SubjectRows(other).subject_state("s-1") is None
    with store.read() as tx:
        assert tx.subjects.subject_state("s-1") == "active"


# -- split store --------------------------------------------------------------------------
def test_split_store_keeps_keys_and_data_apart(split_store: Store) -> None:
    assert split_store.split
    add_subject(split_store, "s-1")
    with split_store.write() as tx:
        tx.key_rows.insert_data_key(data_key("dek-1"), NOW)
        tx.fields.insert_field(stored_field(), b"t" * 32, NOW)
        tx.index.put_index("s-1", "phone", "phone", b"d" * 16)
        audit_chain.append(
            tx.audit, AUDIT_KEY, AuditRecord(NOW, "registration", "put", "s-1", "phone")
        )
        tx.idempotency.remember_idempotency(
            "registration",
            "s-1",
            "req-1",
            IdempotencyRecord("phone", "dek-1", b"m" * 32, 1, NOW + timedelta(hours=1)),
            NOW,
        )
        tx.index_keys.insert_index_key(
            IndexKeyMaterial("phone", "ik", WrappedKey("k", 1, b"w")), NOW
        )
        tx.carried_keys.insert_carried_key(
            CarriedKeyMaterial("audit-chain", "ck", WrappedKey("k", 1, b"w")), NOW
        )
    with split_store.data_engine.connect() as data, split_store.key_engine.connect() as keys:
        for table in KEY_TABLES:
            assert count(keys, table) >= 1, table
            assert count(data, table) == 0, table
        written = ("subjects", "fields", "blind_index", "idempotency_keys", "audit_events")
        for table in written:
            assert count(data, table) >= 1, table
        for table in DATA_TABLES:
            assert count(keys, table) == 0, table
    with split_store.read() as tx:
        assert tx.key_rows.subject_key_for("s-1") == subject_key("s-1")
        assert tx.fields.get_field("s-1", "phone") == stored_field()


def test_split_store_rolls_back_both_databases(split_store: Store) -> None:
    with pytest.raises(BodyFailedError), split_store.write() as tx:
        tx.subjects.insert_subject("s-1", NOW)
        tx.key_rows.insert_subject_key(subject_key("s-1"), NOW)
        raise BodyFailedError
    with split_store.read() as tx:
        assert tx.subjects.subject_state("s-1") is None
        assert tx.key_rows.subject_key_for("s-1") is None


def test_split_store_deletes_keys_after_the_data_commit(split_store: Store) -> None:
    add_subject(split_store, "s-1")
    with split_store.write() as tx:
        tx.key_rows.insert_data_key(data_key("dek-1"), NOW)
        tx.fields.insert_field(stored_field(dek_id="dek-1"), b"t" * 32, NOW)
    seen: list[tuple[int, bool]] = []

    def delete_old_key(conn: Connection) -> None:
        # Seen from an independent connection: the new data row is already committed.
        with split_store.data_engine.connect() as other:
            committed = FieldRows(other).get_field("s-1", "phone")
        seen.append((committed.version if committed else 0, conn.closed))
        KeyRows(conn).delete_data_key("dek-1")

    with split_store.write() as tx:
        tx.key_rows.insert_data_key(data_key("dek-2"), NOW)
        tx.fields.replace_field(stored_field(version=2, dek_id="dek-2"), b"n" * 32)
        tx.delete_keys_after_commit(delete_old_key)
        assert seen == []  # not yet: nothing has committed
    assert seen == [(2, False)]
    with split_store.read() as tx:
        assert tx.key_rows.data_key("dek-1") is None
        assert tx.key_rows.data_key("dek-2") is not None


def test_same_url_twice_is_not_split(database_url: str) -> None:
    s = Store(database_url, database_url)
    try:
        assert not s.split
        assert s.key_engine is s.data_engine
    finally:
        s.dispose()
