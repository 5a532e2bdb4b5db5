"""Domain tests run against SQLite and PostgreSQL on one migrated database per module.

Creating and migrating a PostgreSQL database per test costs about a second;
instead each module gets one database per back end, and every test starts by
emptying all its tables, which leaves it exactly as fresh as a new one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_databases import drop_postgres_database, new_postgres_database

from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.models import Base


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def migrated_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('domain')}/vault.db"
    else:
        url = new_postgres_database()
    store = Store(url)
    try:
        migrate.upgrade(store)
        yield url
    finally:
        store.dispose()
        if request.param == "postgres":
            drop_postgres_database(url)


@pytest.fixture
def database_url(migrated_database_url: str) -> str:
    """The module's database with every row of the previous test gone."""
    store = Store(migrated_database_url)
    try:
        with store.write() as tx:
            for table in reversed(Base.metadata.sorted_tables):  # children first
                tx.data.execute(table.delete())
    finally:
        store.dispose()
    return migrated_database_url
