"""The Alembic migrations build exactly the models' schema, on every back end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from vault.storage import migrate
from vault.storage.database import Store, make_engine
from vault.storage.models import DATA_TABLES, KEY_TABLES, Base


@pytest.fixture
def store(fresh_database_url: str) -> Iterator[Store]:
    """A store on a database nobody has migrated yet."""
    s = Store(fresh_database_url)
    try:
        yield s
    finally:
        s.dispose()


def test_migrated_schema_matches_the_models(store: Store) -> None:
    migrate.upgrade(store)
    with store.data_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_an_empty_database_differs_from_the_models(store: Store) -> None:
    """The comparison above can fail: without migrations every table is missing."""
    with store.data_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    added = {change[1].name for change in diff if change[0] == "add_table"}
    assert added == {*KEY_TABLES, *DATA_TABLES}


def test_migrations_create_the_named_constraints(store: Store) -> None:
    migrate.upgrade(store)
    inspector = inspect(store.data_engine)
    assert set(inspector.get_table_names()) == {*KEY_TABLES, *DATA_TABLES, "alembic_version"}
    assert inspector.get_pk_constraint("fields")["constrained_columns"] == ["subject_id", "field"]
    [fk] = inspector.get_foreign_keys("fields")
    assert (fk["referred_table"], fk["referred_columns"]) == ("subjects", ["subject_id"])
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("fields")}
    assert ("token_digest",) in uniques
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("blind_index")}
    assert indexes["ix_blind_index_digest"] == ["field_type", "digest"]


def newest_revision() -> str:
    """The head of the migration scripts shipped in the package."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_upgrade_twice_is_a_no_op(store: Store) -> None:
    migrate.upgrade(store)
    migrate.upgrade(store)
    with store.data_engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (newest_revision(),)
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_sqlite_connections_are_durable_and_shred_deleted_pages(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/vault.db")
    try:
        with engine.connect() as conn:

            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("secure_delete") == 1
            assert pragma("synchronous") == 2  # FULL
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30000
    finally:
        engine.dispose()


def test_sqlite_pragmas_hold_on_every_pooled_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/vault.db")
    try:
        first = engine.connect()
        second = engine.connect()  # a second, concurrently open connection
        try:
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        finally:
            first.close()
            second.close()
    finally:
        engine.dispose()


UPGRADERS = 4
_UPGRADE = """
import sys
from vault.storage import migrate
from vault.storage.database import Store
store = Store(sys.argv[1])
try:
    migrate.upgrade(store)
finally:
    store.dispose()
print("upgraded")
"""


def test_replicas_upgrading_one_fresh_database_at_once_all_succeed(
    fresh_database_url: str,
) -> None:
    """Without a shared lock, replicas starting together raced on the same DDL and two of
    three died with UniqueViolation; each upgrade now waits for the one before it."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE, fresh_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(UPGRADERS)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    failures = [
        err for process, (_, err) in zip(processes, results, strict=True) if process.returncode
    ]
    assert failures == []
    assert all(out.strip() == "upgraded" for out, _ in results)
    engine = make_engine(fresh_database_url)
    try:
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()
