"""The one statement on the masked-read hot path, on a DBAPI connection of its own pool.

Through SQLAlchemy a single-row select costs about 180 us of Python around a
7 us SQLite query (connection checkout, events, result processing). The hot
read is always the same statement, so it is compiled once per dialect and run
on a raw DBAPI connection in autocommit: one statement, one consistent
snapshot. Everything else goes through ``Store``.

What must hold: no thread ever waits for a connection. Each call leases an
idle connection from a free list for its one statement and gives it back (a
list pop and append, 0.2 us against 13 us for a pool checkout), and opens a
new one only when none is idle. So the connections number at most the reads
that ever ran at once: in the server the RPC threads, whose count the
composition root passes in to size the pool, plus the maintenance thread.
The pool behind the list has no upper bound for that reason: a bounded one
would make a reader wait out the pool timeout while an idle connection sat in
the list. A connection pinned to each thread instead starved every thread
past the pool's size (15 on SQLite, against 16 RPC threads) for the life of
the process.

Errors keep their class: a dropped connection is retried once and then
``Unavailable``; a row the driver cannot decode, or one that does not have the
shape the schema promises, is ``DataLoss`` (retrying reads the same bytes);
anything else is a bug and answers INTERNAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, bindparam, or_
from sqlalchemy.exc import DBAPIError

from vault.domain.records import StoredField
from vault.errors import Unavailable
from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.storage.database import database_failure, make_engine
from vault.storage.fields import (
    FIELD_BY_TOKEN,
    GET_FIELD,
    LIVE_FIELDS,
    checked_field,
    field_key,
)
from vault.storage.index import FIND_SUBJECTS
from vault.storage.keys import DATA_KEY_WITH_SUBJECT_KEY, data_keys_in, key_pair


class HotReads:
    """Single-row field reads on leased DBAPI connections from a pool of their own."""

    def __init__(self, url: str, *, threads: int = 32, holds_keys: bool = False) -> None:
        """``threads``: how many RPC threads may read at once (the server's thread pool).

        ``holds_keys``: the key tables are in this database too (no separate
        key store), so the cold path can read a data key and its subject key here.
        """
        self.holds_keys = holds_keys
        # max_overflow=-1: never wait on the pool (see the module docstring).
        self._engine: Engine = make_engine(url, pool_size=threads, max_overflow=-1)
        self._dialect = self._engine.dialect
        self._sqlite = self._dialect.name == "sqlite"
        self._driver_error: type[Exception] = self._dialect.loaded_dbapi.Error
        self._get_field = self._compile(GET_FIELD)
        self._key_pair = self._compile(DATA_KEY_WITH_SUBJECT_KEY)
        self._by_token = self._compile(FIELD_BY_TOKEN)
        self._find = self._compile(FIND_SUBJECTS)
        # BatchGetFields: one statement per batch size, compiled on first use.
        self._get_fields: dict[int, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._many_keys: dict[int, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        # list.pop() and list.append() are atomic: the free list needs no lock.
        self._idle: list[Any] = []

    def _lease(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._open()

    def _open(self) -> Any:
        try:
            connection = self._engine.raw_connection()  # the driver's own errors, unwrapped
        except (self._driver_error, DBAPIError) as exc:
            driver_error = exc.orig or exc if isinstance(exc, DBAPIError) else exc
            failure = database_failure(driver_error, disconnect=False)
            # A database that cannot be connected to is unavailable, whatever the driver says.
            raise failure or Unavailable("the database is not reachable") from None
        if not self._sqlite:
            driver: Any = connection.driver_connection
            driver.autocommit = True
        return connection

    def _drop_idle(self) -> None:
        """After a disconnect the idle connections are likely dead too (a database restart)."""
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.invalidate()

    def _compile(self, statement: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        compiled = statement.compile(dialect=self._dialect)
        # SQLite compiles to "?" placeholders, psycopg to named ones.
        positional = tuple(compiled.positiontup or ()) if compiled.positional else None
        constants = {k: v for k, v in compiled.params.items() if v is not None}
        return str(compiled), positional, constants

    def get_field(self, subject_id: str, field: str) -> StoredField | None:
        rows = self._run(self._get_field, {"subject_id": subject_id, "field": field})
        return checked_field(rows[0], field) if rows else None

    def field_by_token(self, digest: bytes) -> StoredField | None:
        """The live row whose token has this digest (Detokenize), in one statement."""
        rows = self._run(self._by_token, {"digest": digest})
        return checked_field(rows[0], None) if rows else None

    def find_subjects(self, field_type: str, digest: bytes) -> list[str]:
        """The subjects whose ``field_type`` value has this blind-index digest (FindSubjects)."""
        return [
            row[0] for row in self._run(self._find, {"field_type": field_type, "digest": digest})
        ]

    def data_key(self, dek_id: str) -> tuple[DataKeyMaterial, SubjectKeyMaterial | None] | None:
        """A data key and its subject key in one statement (only when ``holds_keys``)."""
        if not self.holds_keys:
            raise RuntimeError("the key tables are in another database")
        rows = self._run(self._key_pair, {"dek_id": dek_id})
        return key_pair(rows[0]) if rows else None

    def data_keys(
        self, dek_ids: Sequence[str]
    ) -> dict[str, tuple[DataKeyMaterial, SubjectKeyMaterial | None]]:
        """Many data keys with their subject keys in one statement (a batch's cold keys)."""
        if not self.holds_keys:
            raise RuntimeError("the key tables are in another database")
        wanted = list(dict.fromkeys(dek_ids))
        if not wanted:
            return {}
        statement = self._many_keys.get(len(wanted))
        if statement is None:
            statement = self._compile(data_keys_in(len(wanted)))
            self._many_keys[len(wanted)] = statement
        rows = self._run(statement, {f"d{i}": dek_id for i, dek_id in enumerate(wanted)})
        return {pair[0].dek_id: pair for pair in map(key_pair, rows)}

    def get_fields(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredField]:
        """The live rows of ``keys`` (subject id, field) in one statement; missing ones absent."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        statement = self._get_fields.get(len(wanted))
        if statement is None:
            statement = self._compile(
                LIVE_FIELDS.where(
                    or_(
                        *(
                            and_(*field_key(bindparam(f"s{i}"), bindparam(f"f{i}")))
                            for i in range(len(wanted))
                        )
                    )
                )
            )
            self._get_fields[len(wanted)] = statement
        named: dict[str, Any] = {}
        for i, (subject_id, field) in enumerate(wanted):
            named[f"s{i}"] = subject_id
            named[f"f{i}"] = field
        found: dict[tuple[str, str], StoredField] = {}
        for row in self._run(statement, named):
            stored = checked_field(row, None)
            found[(stored.subject_id, stored.field)] = stored
        return found

    def _run(
        self,
        statement: tuple[str, tuple[str, ...] | None, dict[str, Any]],
        values: dict[str, Any],
    ) -> list[Any]:
        sql, positional, constants = statement
        named = {**constants, **values}
        params: Any = named if positional is None else tuple(named[n] for n in positional)
        for attempt in (1, 2):
            connection = self._lease()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(sql, params)
                    rows: list[Any] = cursor.fetchall()
                finally:
                    cursor.close()
            except self._driver_error as exc:
                disconnect = self._dialect.is_disconnect(
                    exc,  # type: ignore[arg-type]  # the driver's Error, as loaded_dbapi.Error
                    connection.driver_connection,
                    None,
                )
                connection.invalidate()
                failure = database_failure(exc, disconnect=disconnect)
                if disconnect and attempt == 1:
                    self._drop_idle()
                    continue  # reconnect once
                if failure is None:
                    raise
                raise failure from None
            except BaseException:
                connection.invalidate()
                raise
            self._idle.append(connection)
            return rows
        raise AssertionError("unreachable: the second attempt returns or raises")

    def dispose(self) -> None:
        while True:
            try:
                connection = self._idle.pop()  # a reader may take the last one first
            except IndexError:
                break
            connection.close()  # back to the pool, which closes it next
        self._engine.dispose()
