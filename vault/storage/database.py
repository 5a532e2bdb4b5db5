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

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from vault.domain.ports import WriteConflictError as WriteConflictError
from vault.domain.ports import retry_on_write_conflict as retry_on_write_conflict
from vault.errors import DataLoss, Unavailable, VaultError
from vault.storage.audit_events import AuditEventRows
from vault.storage.carried_keys import CarriedKeyRows
from vault.storage.checkpoint import GroupCheckpoint, checkpoint_sqlite
from vault.storage.consent import ConsentRows
from vault.storage.fields import FieldRows
from vault.storage.idempotency import IdempotencyRows
from vault.storage.index import IndexRows
from vault.storage.index_keys import IndexKeyRows
from vault.storage.keys import KeyRows
from vault.storage.receipts import ReceiptRows
from vault.storage.retention_queries import RetentionQueries
from vault.storage.rotation import RotationRows
from vault.storage.sqlite_writer import one_writer
from vault.storage.subjects import SubjectRows

log = logging.getLogger("vault.storage")


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str,
    *,
    pool_size: int = 16,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
) -> Engine:
    """An engine whose pool holds ``pool_size`` connections, plus ``max_overflow`` at peaks.

    The size applies to SQLite files too: left to SQLAlchemy's default (5 + 10)
    a pool smaller than the RPC threads makes the last threads wait for a
    connection however idle the database is. The overflow defaults to the size
    (-1: no bound); a caller finding none free waits ``pool_timeout`` seconds.
    """
    url = normalise_url(url)
    overflow = pool_size if max_overflow is None else max_overflow
    sized: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": overflow,
        "pool_timeout": pool_timeout,
    }
    if url.startswith("sqlite"):
        if not _is_sqlite_file(url):  # in-memory databases keep one connection per thread
            sized = {}
        # hide_parameters: a statement's parameters are subject ids, digests,
        # ciphertexts and keys; an error that escapes unclassified (a bug,
        # answered INTERNAL) must not carry them into a traceback or a log.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
            **sized,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_recycle=1800, hide_parameters=True, **sized)


def _is_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    database = parsed.database or ""
    return database not in ("", ":memory:") and parsed.query.get("mode") != "memory"


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
    """One unit of work: ``data`` and ``keys`` are the same connection unless split.

    Each aggregate's rows are reached through it (``tx.fields``, ``tx.key_rows``...),
    bound to the store that holds them, so a caller never picks a connection.
    """

    data: Connection
    keys: Connection
    _after_commit_keys: list[Callable[[Connection], None]] = field(default_factory=list)

    @cached_property
    def audit(self) -> AuditEventRows:
        return AuditEventRows(self.data)

    @cached_property
    def subjects(self) -> SubjectRows:
        return SubjectRows(self.data)

    @cached_property
    def key_rows(self) -> KeyRows:
        return KeyRows(self.keys)

    @cached_property
    def fields(self) -> FieldRows:
        return FieldRows(self.data)

    @cached_property
    def index(self) -> IndexRows:
        return IndexRows(self.data)

    @cached_property
    def index_keys(self) -> IndexKeyRows:
        return IndexKeyRows(self.keys)

    @cached_property
    def idempotency(self) -> IdempotencyRows:
        return IdempotencyRows(self.data)

    @cached_property
    def receipts(self) -> ReceiptRows:
        return ReceiptRows(self.data)

    @cached_property
    def retention(self) -> RetentionQueries:
        return RetentionQueries(self.data)

    @cached_property
    def rotation(self) -> RotationRows:
        return RotationRows(self.keys)

    @cached_property
    def carried_keys(self) -> CarriedKeyRows:
        return CarriedKeyRows(self.keys)

    @cached_property
    def consent(self) -> ConsentRows:
        return ConsentRows(self.data)

    def delete_keys_after_commit(self, action: Callable[[Connection], None]) -> None:
        """Run ``action`` on the key store once the data rows are committed."""
        self._after_commit_keys.append(action)

    def delete_data_key_after_commit(self, dek_id: str) -> None:
        """Destroy data key ``dek_id`` once the data rows of this unit of work are committed."""
        self._after_commit_keys.append(lambda keys: KeyRows(keys).delete_data_key(dek_id))


# SQLite result codes (https://sqlite.org/rescode.html); the extended code's low byte
# is its primary code.
_SQLITE_UNIQUE = frozenset({1555, 2067})  # SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE
_SQLITE_UNAVAILABLE = {
    5: "the database is busy",  # SQLITE_BUSY: the busy timeout ran out
    6: "the database is busy",  # SQLITE_LOCKED
    7: "the database is out of memory",  # SQLITE_NOMEM
    8: "the database cannot be written",  # SQLITE_READONLY
    10: "the database cannot be read or written",  # SQLITE_IOERR
    13: "the database is full",  # SQLITE_FULL
    14: "the database is not reachable",  # SQLITE_CANTOPEN
    15: "the database is busy",  # SQLITE_PROTOCOL
}
_SQLITE_CORRUPT = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
# PostgreSQL SQLSTATEs.
_PG_UNIQUE = "23505"  # unique_violation (a primary key too)
_PG_CORRUPT = frozenset({"XX001", "XX002"})  # data_corrupted, index_corrupted
_PG_UNAVAILABLE = {  # by SQLSTATE class
    "08": "the database is not reachable",
    "40": "the database rolled the transaction back; retry",
    "53": "the database is out of resources",
    "57": "the database is shutting down or cancelled the statement",
}


def _is_a(error: BaseException, pep249_name: str) -> bool:
    # Every DB-API 2.0 driver names its exception classes as PEP 249 does.
    return any(cls.__name__ == pep249_name for cls in type(error).__mro__)


def is_unique_violation(error: BaseException) -> bool:
    """Whether ``error`` (a driver error, or SQLAlchemy's wrapper of one) is a unique-key race."""
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(driver_error, "sqlite_errorcode", None)
    if code is not None:
        return code in _SQLITE_UNIQUE
    return getattr(driver_error, "sqlstate", None) == _PG_UNIQUE


def database_failure(driver_error: BaseException, *, disconnect: bool) -> VaultError | None:
    """What a driver error means to a caller; ``None`` when it is a bug in the vault.

    Only a failure of the database itself (a dropped or refused connection, a
    busy, full or unreadable file) is ``Unavailable``, the error clients
    retry. A corrupt database page or a stored value the driver cannot decode
    is ``DataLoss``: retrying reads the same bytes again. Anything else (a
    missing table, a bad statement, an integrity error) is left to answer
    INTERNAL. ``disconnect`` is the dialect's verdict (SQLAlchemy's
    ``connection_invalidated``), which is the only way a closed SQLite
    connection or a broken psycopg one tells itself apart.

    Driver messages are never carried over: SQLite's decode error quotes the
    stored text.
    """
    if disconnect:
        return Unavailable("the database is not reachable")
    code = getattr(driver_error, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF
        if primary in _SQLITE_CORRUPT:
            return DataLoss("the database file is corrupt")
        reason = _SQLITE_UNAVAILABLE.get(primary)
        return None if reason is None else Unavailable(reason)
    if type(driver_error).__module__ == "sqlite3":
        if _is_a(driver_error, "OperationalError") and str(driver_error).startswith(
            "Could not decode to UTF-8"
        ):
            return DataLoss("a stored row cannot be decoded")
        return None
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate in _PG_CORRUPT:
        return DataLoss("the database reports corrupt data")
    if _is_a(driver_error, "OperationalError"):
        # psycopg: connection (08), rollback (40), resources (53), lock (55P03),
        # operator intervention (57), system (58); no SQLSTATE: the client lost the server.
        reason = _PG_UNAVAILABLE.get((sqlstate or "08")[:2], "the database is not available")
        return Unavailable(reason)
    return None


class PoolTimeoutAlarm:
    """Logs the first time a pool made a caller wait out its timeout, not every time.

    A pool timeout means more concurrent callers than connections: a sizing
    bug. It is worth one line an operator will see, not one per request.
    """

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._lock = threading.Lock()
        self._logged = False

    def unavailable(self, *engines: Engine) -> Unavailable:
        with self._lock:
            first, self._logged = not self._logged, True
        if first:
            log.error(
                "the %s connection pool timed out (%s): more callers than connections;"
                " further timeouts are not logged",
                self._pool_name,
                "; ".join(engine.pool.status() for engine in engines),
            )
        return Unavailable("no database connection is free")


class Store:
    """The data store and the key store, and transactions across them."""

    def __init__(
        self,
        data_url: str,
        key_url: str | None = None,
        *,
        threads: int = 16,
        pool_timeout: float = 30.0,
    ) -> None:
        """``threads``: the most callers at once (the RPC threads); each pool holds that many.

        A unit of work holds its connection only while it runs, so a caller
        that finds none free waits (``pool_timeout`` seconds at most) for one
        that is, rather than for ever.
        """
        self.data_url = data_url
        sized: dict[str, Any] = {"pool_size": threads, "pool_timeout": pool_timeout}
        self.data_engine = make_engine(data_url, **sized)
        self.split = bool(key_url) and normalise_url(key_url or "") != normalise_url(data_url)
        self.key_engine = (
            make_engine(key_url, **sized) if self.split and key_url else self.data_engine
        )
        self._pool_timeouts = PoolTimeoutAlarm("data/key store")
        self._checkpoints = GroupCheckpoint(lambda: checkpoint_sqlite(self.engines()))

    def dispose(self) -> None:
        self.data_engine.dispose()
        if self.split:
            self.key_engine.dispose()

    def engines(self) -> tuple[Engine, ...]:
        return (self.data_engine, self.key_engine) if self.split else (self.data_engine,)

    def ping(self) -> None:
        """One round trip to every database of the store; raises what the driver raises."""
        for engine in self.engines():
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

    def checkpoint(self) -> None:
        """Move SQLite's WAL into the database file and truncate it.

        With ``secure_delete`` the deleted rows are zeroed in the database
        pages; truncating the WAL removes the older page images it still holds.
        A busy reader only delays this to the next checkpoint. On return, a
        checkpoint begun after the call has completed.
        """
        self._checkpoints()  # one checkpoint for every caller waiting (GroupCheckpoint)

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
        except DBAPIError as exc:
            raise self._failure(exc) from None
        except PoolTimeoutError:
            raise self._pool_timeouts.unavailable(*self.engines()) from None

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
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise WriteConflictError from None
            raise _without_row_values(exc) from None
        except DBAPIError as exc:
            raise self._failure(exc) from None
        except PoolTimeoutError:
            raise self._pool_timeouts.unavailable(*self.engines()) from None

    @staticmethod
    def _failure(exc: DBAPIError) -> BaseException:
        driver_error = exc.orig if exc.orig is not None else exc
        failure = database_failure(driver_error, disconnect=exc.connection_invalidated)
        return failure or _without_row_values(exc)


def _without_row_values(exc: DBAPIError) -> DBAPIError:
    """The same error with the driver's primary message only.

    PostgreSQL's DETAIL quotes the row (``Failing row contains (...)``,
    ``Key (subject_id)=(...)``); parameters are already hidden by the engine.
    An unclassified error is a bug and answers INTERNAL, but its text may
    still reach a traceback, so it must carry no stored value.
    """
    diag = getattr(exc.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if not primary:
        return exc  # SQLite's messages name the constraint, never a value
    return type(exc)(exc.statement, None, _DriverMessageError(primary), hide_parameters=True)


class _DriverMessageError(Exception):
    """A driver error reduced to its primary message."""


@contextmanager
def _connect_for_read(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        if is_sqlite(engine):
            connection = connection.execution_options(sqlite_begin="NONE")
        yield connection


@contextmanager
def _begin(engine: Engine) -> Iterator[Connection]:
    sqlite = is_sqlite(engine)  # SQLite: one writer a time, queued here (``sqlite_writer``)
    with one_writer(engine) if sqlite else nullcontext(), engine.connect() as connection:
        if sqlite:
            connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection
