"""Engines and transactions for the data store and the key store.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` so a
deleted key row is overwritten rather than left in a free page, and with
``synchronous=FULL`` so an acknowledged write survives a crash. PostgreSQL is
reached through psycopg 3.

The key store may be a separate database. A write then spans two
transactions: key rows are inserted and committed first, the data rows next,
and key rows made obsolete by the write are deleted only after the data
commit. A failure between the steps leaves at most an orphaned *new* key,
never a value whose key is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from vault.errors import Unavailable


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below control transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the lock up front so two writers never deadlock on upgrade.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != "NONE":
            connection.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@dataclass
class Tx:
    """One unit of work: ``data`` and ``keys`` are the same connection unless split."""

    data: Connection
    keys: Connection
    _after_commit_keys: list[Callable[[Connection], None]] = field(default_factory=list)

    def delete_keys_after_commit(self, action: Callable[[Connection], None]) -> None:
        """Run ``action`` on the key store once the data rows are committed."""
        self._after_commit_keys.append(action)


class WriteConflictError(Exception):
    """A concurrent writer inserted the same unique row first; retry the write."""


class Store:
    """The data store and the key store, and transactions across them."""

    def __init__(self, data_url: str, key_url: str | None = None) -> None:
        self.data_url = data_url
        self.data_engine = make_engine(data_url)
        self.split = bool(key_url) and normalise_url(key_url or "") != normalise_url(data_url)
        self.key_engine = make_engine(key_url) if self.split and key_url else self.data_engine

    def dispose(self) -> None:
        self.data_engine.dispose()
        if self.split:
            self.key_engine.dispose()

    def engines(self) -> tuple[Engine, ...]:
        return (self.data_engine, self.key_engine) if self.split else (self.data_engine,)

    def checkpoint(self) -> None:
        """Move SQLite's WAL into the database file and truncate it.

        With ``secure_delete`` the deleted rows are zeroed in the database
        pages; truncating the WAL removes the older page images it still holds.
        A busy reader only delays this to the next checkpoint.
        """
        for engine in self.engines():
            if is_sqlite(engine):
                with engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def vacuum_keys(self) -> None:
        """PostgreSQL: reclaim dead key rows now instead of waiting for autovacuum."""
        if is_sqlite(self.key_engine):
            return
        with self.key_engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("VACUUM subject_keys, data_keys")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """Reads see each statement's committed state (as PostgreSQL's READ COMMITTED).

        On SQLite no explicit transaction is opened, which keeps the hot read
        path at one statement; callers re-read when rows moved underneath them.
        """
        try:
            with _connect_for_read(self.data_engine) as data:
                if not self.split:
                    yield Tx(data, data)
                    data.rollback()
                    return
                with _connect_for_read(self.key_engine) as keys:
                    yield Tx(data, keys)
        except (OperationalError, DBAPIError) as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise Unavailable("the database is not reachable") from None
            raise

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction; nothing is visible unless all of it commits."""
        try:
            with _begin(self.data_engine) as data:
                if not self.split:
                    tx = Tx(data, data)
                    yield tx
                    for action in tx._after_commit_keys:
                        action(data)
                    return
                with _begin(self.key_engine) as keys:
                    tx = Tx(data, keys)
                    yield tx
                # key inserts are committed; the data commit follows on exit
            if tx._after_commit_keys:
                with _begin(self.key_engine) as keys:
                    for action in tx._after_commit_keys:
                        action(keys)
        except IntegrityError:
            raise WriteConflictError from None
        except OperationalError:
            raise Unavailable("the database is not reachable") from None


@contextmanager
def _connect_for_read(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        if is_sqlite(engine):
            connection = connection.execution_options(sqlite_begin="NONE")
        yield connection


@contextmanager
def _begin(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        if is_sqlite(engine):
            connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection
