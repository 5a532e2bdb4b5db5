"""Field rows: ciphertexts of a value and its view, and the statements that read them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from vault.domain.records import StoredField, SubjectState
from vault.errors import DataLoss
from vault.fields.base import FieldType
from vault.storage.idempotency import IdempotencyRows
from vault.storage.index import DELETE_INDEX
from vault.storage.models import FieldRow, SubjectRow
from vault.storage.rows import aware

_FIELD_TYPES = frozenset(t.value for t in FieldType)
_BINARY = (bytes, bytearray, memoryview)

_fields = cast(Table, FieldRow.__table__)
_subjects = cast(Table, SubjectRow.__table__)


_FIELD_COLUMNS = (
    _fields.c.subject_id,
    _fields.c.field,
    _fields.c.field_type,
    _fields.c.version,
    _fields.c.dek_id,
    _fields.c.value_ct,
    _fields.c.view_ct,
    _fields.c.updated_at,
)


def checked_field(row: Any, field: str | None) -> StoredField:
    """The row as the schema promises it, or ``DataLoss``: never a half-typed value upward.

    ``field`` is the field name that was asked for (None for a listing or a
    token lookup), for the message; the row's own contents never reach it. A
    corrupt row is corruption, not an outage: retrying reads the same bytes,
    so it is never ``Unavailable``.
    """
    subject_id, field_name, field_type, version, dek_id, value_ct, view_ct, updated_at = row
    if not (
        isinstance(subject_id, str)
        and isinstance(field_name, str)
        and field_type in _FIELD_TYPES
        and type(version) is int
        and isinstance(dek_id, str)
        and isinstance(value_ct, _BINARY)
        and isinstance(view_ct, _BINARY)
    ):
        raise _malformed(field)
    if isinstance(updated_at, str):  # SQLite keeps DateTime as ISO text
        try:
            updated_at = datetime.fromisoformat(updated_at)
        except ValueError:
            raise _malformed(field) from None
    elif not isinstance(updated_at, datetime):
        raise _malformed(field)
    return StoredField(
        subject_id,
        field_name,
        field_type,
        version,
        dek_id,
        bytes(value_ct),
        bytes(view_ct),
        aware(updated_at),
    )


@contextmanager
def _undecodable_is_data_loss(field: str | None) -> Iterator[None]:
    """A column the driver's result processing cannot read (SQLite's timestamps
    are text) raises ``ValueError`` or ``TypeError`` while the row is fetched:
    that is a corrupt row, so ``DataLoss``."""
    try:
        yield
    except (ValueError, TypeError):
        raise _malformed(field) from None


def _malformed(field: str | None) -> DataLoss:
    if field is None:
        return DataLoss("a stored field row is malformed")
    return DataLoss(f"the stored row of field {field!r} is malformed")


# Rows of a shredded subject are never read back, whatever lingers (a field
# row, a warm key cache): the callers then find the tombstone instead.
LIVE_FIELDS = (
    select(*_FIELD_COLUMNS)
    .select_from(_fields.join(_subjects, _subjects.c.subject_id == _fields.c.subject_id))
    .where(_subjects.c.state != SubjectState.SHREDDED)
)


def field_key(subject_id: Any, field: Any) -> tuple[Any, Any]:
    """The clauses that pick one field row, for bound parameters or values."""
    return _fields.c.subject_id == subject_id, _fields.c.field == field


# Built once: statement construction costs more than the SQLite query itself.
GET_FIELD = LIVE_FIELDS.where(*field_key(bindparam("subject_id"), bindparam("field")))

_LIST_FIELDS = LIVE_FIELDS.where(_fields.c.subject_id == bindparam("subject_id")).order_by(
    _fields.c.field
)

FIELD_BY_TOKEN = LIVE_FIELDS.where(_fields.c.token_digest == bindparam("digest"))

_INSERT_FIELD = insert(_fields)
_THIS_FIELD = (
    _fields.c.subject_id == bindparam("b_subject_id"),
    _fields.c.field == bindparam("b_field"),
)
_REPLACE_FIELD = (
    update(_fields)
    .where(*_THIS_FIELD)
    .values(
        {
            name: bindparam(f"b_{name}")
            for name in (
                "field_type",
                "version",
                "dek_id",
                "token_digest",
                "value_ct",
                "view_ct",
                "updated_at",
                "expires_on",
            )
        }
    )
)
_DELETE_FIELD = delete(_fields).where(*_THIS_FIELD)


class FieldRows:
    """The ``fields`` table; rows of a shredded subject are never read back."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_field(self, subject_id: str, field: str) -> StoredField | None:
        with _undecodable_is_data_loss(field):
            row = self._conn.execute(GET_FIELD, {"subject_id": subject_id, "field": field}).first()
        return None if row is None else checked_field(row, field)

    def list_fields(self, subject_id: str) -> list[StoredField]:
        with _undecodable_is_data_loss(None):
            rows = self._conn.execute(_LIST_FIELDS, {"subject_id": subject_id}).all()
        return [checked_field(row, None) for row in rows]

    def field_by_token(self, digest: bytes) -> StoredField | None:
        with _undecodable_is_data_loss(None):
            row = self._conn.execute(FIELD_BY_TOKEN, {"digest": digest}).first()
        return None if row is None else checked_field(row, None)

    def insert_field(
        self,
        stored: StoredField,
        token_digest: bytes,
        created_at: datetime,
        expires_on: date | None = None,
    ) -> None:
        self._conn.execute(
            _INSERT_FIELD,
            {
                "subject_id": stored.subject_id,
                "field": stored.field,
                "field_type": stored.field_type,
                "version": stored.version,
                "dek_id": stored.dek_id,
                "token_digest": token_digest,
                "value_ct": stored.value_ct,
                "view_ct": stored.view_ct,
                "created_at": created_at,
                "updated_at": stored.updated_at,
                "expires_on": expires_on,
            },
        )

    def replace_field(
        self, stored: StoredField, token_digest: bytes, expires_on: date | None = None
    ) -> None:
        self._conn.execute(
            _REPLACE_FIELD,
            {
                "b_subject_id": stored.subject_id,
                "b_field": stored.field,
                "b_field_type": stored.field_type,
                "b_version": stored.version,
                "b_dek_id": stored.dek_id,
                "b_token_digest": token_digest,
                "b_value_ct": stored.value_ct,
                "b_view_ct": stored.view_ct,
                "b_updated_at": stored.updated_at,
                "b_expires_on": expires_on,
            },
        )

    def delete_field(self, subject_id: str, field: str) -> None:
        """Delete a field's row and index row, and disarm its idempotency records."""
        params = {"b_subject_id": subject_id, "b_field": field}
        self._conn.execute(_DELETE_FIELD, params)
        self._conn.execute(DELETE_INDEX, params)
        IdempotencyRows(self._conn).disarm_idempotency(subject_id, field)

    def count_fields(self, subject_id: str) -> int:
        rows = self._conn.execute(select(_fields.c.field).where(_fields.c.subject_id == subject_id))
        return len(rows.all())

    def field_expires_on(self, subject_id: str, field: str) -> date | None:
        """The last valid day stored with a field (cards), or None."""
        value = self._conn.execute(
            select(_fields.c.expires_on).where(
                _fields.c.subject_id == subject_id, _fields.c.field == field
            )
        ).scalar_one_or_none()
        return cast(date | None, value)
