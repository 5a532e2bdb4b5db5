"""Field rows: ciphertexts of a value and its view, and the statements that read them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, delete, insert, select, update

from vault.domain.records import StoredField, SubjectState
from vault.storage.idempotency import IdempotencyRows
from vault.storage.models import BlindIndexRow, FieldRow, SubjectRow
from vault.storage.rows import aware

_fields = cast(Table, FieldRow.__table__)
_subjects = cast(Table, SubjectRow.__table__)
_index = cast(Table, BlindIndexRow.__table__)


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


def _stored(row: Row[*tuple[Any, ...]]) -> StoredField:
    return StoredField(row[0], row[1], row[2], row[3], row[4], row[5], row[6], aware(row[7]))


# Rows of a shredded subject are never read back, whatever lingers (a field
# row, a warm key cache): the callers then find the tombstone instead.
_LIVE_FIELDS = (
    select(*_FIELD_COLUMNS)
    .select_from(_fields.join(_subjects, _subjects.c.subject_id == _fields.c.subject_id))
    .where(_subjects.c.state != SubjectState.SHREDDED)
)
# Built once: statement construction costs more than the SQLite query itself.
GET_FIELD = _LIVE_FIELDS.where(
    _fields.c.subject_id == bindparam("subject_id"), _fields.c.field == bindparam("field")
)

_LIST_FIELDS = _LIVE_FIELDS.where(_fields.c.subject_id == bindparam("subject_id")).order_by(
    _fields.c.field
)

_FIELD_BY_TOKEN = _LIVE_FIELDS.where(_fields.c.token_digest == bindparam("digest"))


class FieldRows:
    """The ``fields`` table; rows of a shredded subject are never read back."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_field(self, subject_id: str, field: str) -> StoredField | None:
        row = self._conn.execute(GET_FIELD, {"subject_id": subject_id, "field": field}).first()
        return None if row is None else _stored(row)

    def list_fields(self, subject_id: str) -> list[StoredField]:
        rows = self._conn.execute(_LIST_FIELDS, {"subject_id": subject_id})
        return [_stored(row) for row in rows]

    def field_by_token(self, digest: bytes) -> StoredField | None:
        row = self._conn.execute(_FIELD_BY_TOKEN, {"digest": digest}).first()
        return None if row is None else _stored(row)

    def insert_field(
        self,
        stored: StoredField,
        token_digest: bytes,
        created_at: datetime,
        expires_on: date | None = None,
    ) -> None:
        self._conn.execute(
            insert(_fields).values(
                subject_id=stored.subject_id,
                field=stored.field,
                field_type=stored.field_type,
                version=stored.version,
                dek_id=stored.dek_id,
                token_digest=token_digest,
                value_ct=stored.value_ct,
                view_ct=stored.view_ct,
                created_at=created_at,
                updated_at=stored.updated_at,
                expires_on=expires_on,
            )
        )

    def replace_field(
        self, stored: StoredField, token_digest: bytes, expires_on: date | None = None
    ) -> None:
        self._conn.execute(
            update(_fields)
            .where(_fields.c.subject_id == stored.subject_id, _fields.c.field == stored.field)
            .values(
                field_type=stored.field_type,
                version=stored.version,
                dek_id=stored.dek_id,
                token_digest=token_digest,
                value_ct=stored.value_ct,
                view_ct=stored.view_ct,
                updated_at=stored.updated_at,
                expires_on=expires_on,
            )
        )

    def delete_field(self, subject_id: str, field: str) -> None:
        """Delete a field's row and index row, and disarm its idempotency records."""
        self._conn.execute(
            delete(_fields).where(_fields.c.subject_id == subject_id, _fields.c.field == field)
        )
        self._conn.execute(
            delete(_index).where(_index.c.subject_id == subject_id, _index.c.field == field)
        )
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
