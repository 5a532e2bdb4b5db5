"""Databases for tests: fresh PostgreSQL databases, and emptying any test database.

A plain module (not a conftest) so that any test can import it by name.
Database names are random, so tests in several processes (``pytest -n``)
never meet in one database.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

POSTGRES_ADMIN_URL = os.environ.get(
    "VAULT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as error:  # any failure means: not reachable here
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(error).__name__})"


_POSTGRES_PROBLEM = _postgres_reachable()


def new_postgres_database() -> str:
    """Create an empty database for one test and return its URL."""
    if _POSTGRES_PROBLEM:
        if os.environ.get("VAULT_REQUIRE_POSTGRES") == "1":
            pytest.fail(_POSTGRES_PROBLEM)
        pytest.skip(_POSTGRES_PROBLEM)
    name = f"vault_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def recreate_postgres_database(url: str) -> None:
    """Drop the database at ``url`` and create an empty one of the same name."""
    drop_postgres_database(url)
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"'))
    engine.dispose()


# What makes up a schema, per dialect: tables, columns, types, nullability,
# defaults, constraints and indexes -- anything a test could change with DDL.
_SCHEMA_QUERIES = {
    "sqlite": ("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",),
    "postgresql": (
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        " ORDER BY table_name, column_name",
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' ORDER BY 1, 2",
    ),
}
_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'"
    " AND name NOT LIKE 'sqlite_%' AND name <> 'alembic_version'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    " AND tablename <> 'alembic_version'",
}


def schema_fingerprint(url: str) -> str:
    """The schema of the database at ``url`` as text: equal text, equal schema."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            queries = _SCHEMA_QUERIES[engine.dialect.name]
            return repr([conn.execute(text(query)).all() for query in queries])
    finally:
        engine.dispose()


def empty_all_tables(url: str) -> None:
    """Delete every row but Alembic's, so a migrated database is as good as a fresh one.

    PostgreSQL also restarts every sequence; SQLite forgets its AUTOINCREMENT
    counters. Foreign keys are not enforced on this connection (SQLite's
    default; ``TRUNCATE ... CASCADE`` on PostgreSQL), so the order does not matter.
    """
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            tables = [row[0] for row in conn.execute(text(_TABLES[engine.dialect.name]))]
            if engine.dialect.name == "postgresql":
                # A previous test's background thread (an audit flusher, a pool left
                # open) may still hold locks here: end those sessions first, or the
                # TRUNCATE can deadlock with them.
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                if tables:
                    quoted = ", ".join(f'"{table}"' for table in tables)
                    conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
                return
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))  # noqa: S608 -- names from the catalog
            if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            ).first():
                conn.execute(text("DELETE FROM sqlite_sequence"))
    finally:
        engine.dispose()
