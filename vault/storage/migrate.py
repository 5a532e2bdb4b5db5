"""Apply Alembic migrations to the data store and, when split, the key store.

Several replicas (or ``--workers`` processes) may start at once against one
database, and every start upgrades. Each upgrade therefore runs in one
transaction that first takes a lock every replica shares: on PostgreSQL a
transaction-scoped advisory lock, on SQLite the write lock (``BEGIN
IMMEDIATE``). The first replica migrates; the others wait, then find the
schema at head and do nothing. PostgreSQL's DDL is transactional, so a
replica that dies mid-upgrade leaves the schema as it was.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from vault.storage.database import Store, is_sqlite

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant the vault alone uses as a PostgreSQL advisory lock key ("pii-migr").
_MIGRATION_LOCK = 0x7069692D6D696772


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head() -> str:
    """The newest schema revision this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current(engine: Engine) -> str | None:
    """The schema revision ``engine``'s database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine) -> None:
    config = _config()
    if is_sqlite(engine):
        connection_cm = engine.connect().execution_options(sqlite_begin="IMMEDIATE")
    else:
        connection_cm = engine.connect()
    with connection_cm as connection, connection.begin():
        if not is_sqlite(engine):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade(store: Store) -> None:
    """Bring every database of the store to the newest schema (idempotent, replica-safe)."""
    upgrade_engine(store.data_engine)
    if store.split:
        upgrade_engine(store.key_engine)
