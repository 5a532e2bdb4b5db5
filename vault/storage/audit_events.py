"""Audit events and the chain head, stored and paged; never hashed here.

The chain's hashes are computed and verified in ``vault.audit.chain``; these
rows only keep what it computed. The head row serialises appenders across
replicas (``head(lock=True)`` is a PostgreSQL row lock; SQLite write
transactions are serial anyway), so the chain never forks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Row, Table, bindparam, insert, select, update

from vault.audit.records import AuditHead, AuditRecord, ChainedEvent
from vault.storage.models import AuditEventRow, AuditHeadRow
from vault.storage.rows import record_mapper

_audit = cast(Table, AuditEventRow.__table__)
_head = cast(Table, AuditHeadRow.__table__)
_REHASH = (
    update(_audit)
    .where(_audit.c.sequence == bindparam("at"))
    .values(prev_hash=bindparam("new_prev"), hash=bindparam("new_hash"))
)


_INSERT_EVENT = insert(_audit)
_HEAD = select(_head.c.last_sequence, _head.c.last_hash, _head.c.scheme).where(_head.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_SET_HEAD = (
    update(_head)
    .where(_head.c.id == 1)
    .values(last_sequence=bindparam("b_sequence"), last_hash=bindparam("b_hash"))
)
_SET_HEAD_AND_SCHEME = _SET_HEAD.values(scheme=bindparam("b_scheme"))

_record = record_mapper(AuditRecord)
# The table's columns in order: the position, the record's own fields, the hashes.
_EVENT_COLUMNS = tuple(column.name for column in _audit.columns)
if _EVENT_COLUMNS[0] != "sequence" or _EVENT_COLUMNS[-2:] != ("prev_hash", "hash"):
    raise AssertionError(f"audit_events columns are {_EVENT_COLUMNS}")
_record_values = attrgetter(*_EVENT_COLUMNS[1:-2])  # the record's fields, in column order
_Insert = tuple[str, tuple[str, ...] | None, list[tuple[int, Callable[[Any], Any]]]]
_COMPILED_INSERTS: dict[str, _Insert] = {}


def _compiled_insert(dialect: Dialect) -> _Insert:
    """The event insert in ``dialect``'s SQL, with its positional order and bind processors."""
    found: _Insert | None = _COMPILED_INSERTS.get(dialect.name)
    if found is None:
        compiled = _INSERT_EVENT.values({name: bindparam(name) for name in _EVENT_COLUMNS}).compile(
            dialect=dialect
        )
        order = tuple(compiled.positiontup or ())
        if compiled.positional and order != _EVENT_COLUMNS:
            raise AssertionError(f"the event insert binds {order}, not {_EVENT_COLUMNS}")
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for at, name in enumerate(_EVENT_COLUMNS):
            process = _audit.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((at, process))
        names = None if compiled.positional else _EVENT_COLUMNS
        found = _COMPILED_INSERTS[dialect.name] = (str(compiled), names, processors)
    return found


def _chained(row: Row[*tuple[Any, ...]]) -> ChainedEvent:
    return ChainedEvent(row.sequence, _record(row), bytes(row.prev_hash), bytes(row.hash))


class AuditEventRows:
    """The ``audit_events`` and ``audit_head`` tables on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def head(self, *, lock: bool = False) -> AuditHead | None:
        row = self._conn.execute(_HEAD_LOCKED if lock else _HEAD).first()
        return None if row is None else AuditHead(row[0], bytes(row[1]), row[2])

    def create_head(self, last_hash: bytes, scheme: str) -> None:
        """The head of an empty chain; a concurrent creator makes this a write conflict."""
        self._conn.execute(
            insert(_head).values(id=1, last_sequence=0, last_hash=last_hash, scheme=scheme)
        )

    def set_head(self, last_sequence: int, last_hash: bytes, scheme: str | None = None) -> None:
        params: dict[str, object] = {"b_sequence": last_sequence, "b_hash": last_hash}
        if scheme is None:
            self._conn.execute(_SET_HEAD, params)
            return
        params["b_scheme"] = scheme
        self._conn.execute(_SET_HEAD_AND_SCHEME, params)

    def insert(self, events: Sequence[ChainedEvent]) -> None:
        """One insert of all rows, whatever their number, as the driver's own executemany.

        Masked reads make an event each, so this runs thousands of times a
        second: the statement is compiled once per dialect and each row is a
        plain tuple, with only the column types' own bind processing (SQLite's
        text timestamps) applied, instead of SQLAlchemy's per-row parameter
        machinery (a third of the cost of an append).
        """
        if not events:
            return
        sql, names, processors = _compiled_insert(self._conn.dialect)
        rows: list[Any] = []
        for e in events:
            row: list[Any] = [e.sequence, *_record_values(e.record), e.prev_hash, e.hash]
            for at, process in processors:
                row[at] = process(row[at])
            rows.append(tuple(row) if names is None else dict(zip(names, row, strict=True)))
        self._conn.exec_driver_sql(sql, rows)

    def chain_from(self, first_sequence: int, limit: int) -> list[ChainedEvent]:
        """Up to ``limit`` events from ``first_sequence`` on, in sequence order, gaps kept."""
        rows = self._conn.execute(
            select(_audit)
            .where(_audit.c.sequence >= first_sequence)
            .order_by(_audit.c.sequence)
            .limit(limit)
        )
        return [_chained(row) for row in rows]

    def rehash(self, changes: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Set (sequence, prev_hash, hash) of stored events, in one statement."""
        if changes:
            self._conn.execute(
                _REHASH,
                [{"at": at, "new_prev": prev, "new_hash": digest} for at, prev, digest in changes],
            )

    def events(self, subject_id: str | None = None) -> list[AuditRecord]:
        statement = select(_audit).order_by(_audit.c.sequence)
        if subject_id is not None:
            statement = statement.where(_audit.c.subject_id == subject_id)
        return [_record(row) for row in self._conn.execute(statement)]

    def page(
        self,
        *,
        after_sequence: int = 0,
        limit: int = 100,
        subject_id: str = "",
        caller: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[ChainedEvent]:
        statement = select(_audit).where(_audit.c.sequence > after_sequence)
        if subject_id:
            statement = statement.where(_audit.c.subject_id == subject_id)
        if caller:
            statement = statement.where(_audit.c.caller == caller)
        if action:
            statement = statement.where(_audit.c.action == action)
        if start is not None:
            statement = statement.where(_audit.c.time >= start)
        if end is not None:
            statement = statement.where(_audit.c.time < end)
        rows = self._conn.execute(statement.order_by(_audit.c.sequence).limit(limit))
        return [_chained(row) for row in rows]
