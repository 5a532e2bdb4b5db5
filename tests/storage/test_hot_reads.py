"""The hot read path answers exactly what the repository answers, on both back ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from vault.storage import migrate
from vault.storage import repository as repo
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

NOW = datetime(2026, 11, 22, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    migrate.upgrade(s)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def hot(store: Store) -> Iterator[HotReads]:
    reads = HotReads(store.data_url)
    try:
        yield reads
    finally:
        reads.dispose()


def write_field(store: Store, subject_id: str, field: str, version: int = 1) -> repo.StoredField:
    stored = repo.StoredField(
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
        if repo.subject_state(tx.data, subject_id) is None:
            repo.insert_subject(tx.data, subject_id, NOW)
        if version == 1:
            repo.insert_field(tx.data, stored, f"digest-{subject_id}-{field}".encode(), NOW)
        else:
            repo.replace_field(tx.data, stored, f"digest-{subject_id}-{field}-{version}".encode())
    return stored


def test_hot_read_equals_the_repository_read(store: Store, hot: HotReads) -> None:
    written = write_field(store, "s-1", "phone")
    with store.read() as tx:
        via_repository = repo.get_field(tx.data, "s-1", "phone")
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


def test_hot_read_reconnects_after_its_connection_dies(store: Store, hot: HotReads) -> None:
    write_field(store, "s-4", "phone")
    assert hot.get_field("s-4", "phone") is not None
    connection = hot._local.connection
    if store.data_engine.dialect.name == "postgresql":
        # What a database restart does to every open session.
        pid = connection.driver_connection.info.backend_pid
        with store.write() as tx:
            tx.data.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        connection.driver_connection.close()
    assert hot.get_field("s-4", "phone") is not None
    assert hot._local.connection is not connection
