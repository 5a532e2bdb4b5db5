"""Shared fixtures: a store per back end, databases per module, a steppable clock, markers.

Databases. Creating and migrating a PostgreSQL database costs about a second
(more under load), so each test module gets one migrated database per back end
(``module_database``) and every test that asks for ``database_url`` starts
by emptying all its tables, which leaves it exactly as fresh as a new one. A
test that changes the schema itself (drops a table, adds an index) is noticed
by the schema fingerprint taken after migrating, and the next test gets the
database rebuilt. Tests that need a database nobody migrated ask for
``fresh_database_url`` (one per test, per back end) or ``postgres_url``.

Markers select what they say: ``pytest_collection_modifyitems`` marks every
test that runs on PostgreSQL ``postgres`` and every test that starts the real
server ``e2e`` (``tests/test_markers.py`` checks it).

Key custodians. ``softhsm.py`` and ``openbao.py`` start a throwaway SoftHSM2
token directory and an OpenBao dev server once per pytest process, on first
use; ``pkcs11_uri`` and ``transit_uri`` give each test a master key of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clocks import SteppableClock
from hypothesis import HealthCheck, settings
from openbao import openbao, tcp_proxy, transit_key, transit_uri
from pg_databases import (
    drop_postgres_database,
    empty_all_tables,
    new_postgres_database,
    recreate_postgres_database,
    schema_fingerprint,
)
from session_items import COLLECTED_ITEMS
from softhsm import fresh_token, object_label, pkcs11_uri, softhsm

from vault.storage import migrate
from vault.storage.database import Store

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The key custodians, one per pytest process (see their modules): SoftHSM2 and OpenBao.
__all__ = ["fresh_token", "object_label", "openbao", "pkcs11_uri", "softhsm"]
__all__ += ["tcp_proxy", "transit_key", "transit_uri"]

BACKENDS = ("sqlite", "postgres")

#: Fixtures that start the real ``pii-vault`` process (``tests/vault_server.py``).
SERVER_FIXTURES = frozenset({"vault_server", "sqlite_server", "start_vault_server", "run_vault"})


def uses_postgres(item: pytest.Item) -> bool:
    """Whether ``item`` runs against PostgreSQL: a ``postgres`` param or ``postgres_url``."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    fixtures = getattr(item, "fixturenames", ())
    return "postgres" in params or "postgres_url" in fixtures


def starts_the_server(item: pytest.Item) -> bool:
    return bool(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by the marks set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[COLLECTED_ITEMS] = list(items)
    for item in items:
        if uses_postgres(item):
            item.add_marker(pytest.mark.postgres)
        if starts_the_server(item):
            item.add_marker(pytest.mark.e2e)


# -- databases ----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each back end in turn: the contract suites run once per store."""
    return str(request.param)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test alone."""
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def fresh_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A new database nobody has migrated, for this test alone, per back end."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def _migrate(url: str) -> str:
    """Migrate the database at ``url`` to head and return its schema fingerprint."""
    store = Store(url)
    try:
        migrate.upgrade(store)
    finally:
        store.dispose()
    return schema_fingerprint(url)


class ModuleDatabase:
    """One migrated database shared by the tests of a module, emptied before each."""

    def __init__(self, backend: str, directory: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.sqlite_path: Path | None = directory / "vault.db"
            self.url = f"sqlite:///{self.sqlite_path}"
        else:
            self.sqlite_path = None
            self.url = new_postgres_database()
        self.fingerprint = _migrate(self.url)

    def reset(self) -> None:
        """Empty every table; rebuild instead when the last test changed the schema."""
        try:
            intact = schema_fingerprint(self.url) == self.fingerprint
        except Exception:  # a file a test broke: rebuilt below
            intact = False
        if intact:
            empty_all_tables(self.url)
            return
        if self.sqlite_path is not None:
            for path in self.sqlite_path.parent.glob(self.sqlite_path.name + "*"):
                path.unlink()
        else:
            recreate_postgres_database(self.url)
        self.fingerprint = _migrate(self.url)

    def drop(self) -> None:
        if self.sqlite_path is None:
            drop_postgres_database(self.url)


@pytest.fixture(scope="module")
def module_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleDatabase]:
    """The module's migrated database on ``backend``, dropped after its last test."""
    database = ModuleDatabase(backend, tmp_path_factory.mktemp(f"db-{backend}"))
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def database_url(module_database: ModuleDatabase) -> str:
    """The module's migrated database with every row of the previous test gone."""
    module_database.reset()
    return module_database.url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store, once per back end."""
    s = Store(database_url)
    try:
        yield s
    finally:
        s.dispose()


# -- time -----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> SteppableClock:
    """Wall and monotonic time that move only when the test calls ``clock.advance``."""
    return SteppableClock()
