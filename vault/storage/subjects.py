"""Subjects: their state, legal hold and tombstone; deleting all a subject holds."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from vault.domain.records import SubjectRecord, SubjectState
from vault.storage.models import (
    BlindIndexRow,
    CanaryRow,
    ConsentRow,
    FieldRow,
    IdempotencyRow,
    PendingShredRow,
    SubjectRow,
)
from vault.storage.rows import record_mapper

_fields = cast(Table, FieldRow.__table__)
_subjects = cast(Table, SubjectRow.__table__)
_index = cast(Table, BlindIndexRow.__table__)
_idem = cast(Table, IdempotencyRow.__table__)
_pending = cast(Table, PendingShredRow.__table__)
_consents = cast(Table, ConsentRow.__table__)
_canaries = cast(Table, CanaryRow.__table__)

# hold_reason is nullable for rows written before holds carried a reason.
_subject_record = record_mapper(SubjectRecord, convert={"hold_reason": lambda v: v or ""})

# Built once, executed with parameters: building a statement costs more than running it.
_SUBJECT = select(_subjects).where(_subjects.c.subject_id == bindparam("b_subject_id"))
_SUBJECT_LOCKED = _SUBJECT.with_for_update()
_INSERT_SUBJECT = insert(_subjects)
_TOUCH_SUBJECT = (
    update(_subjects)
    .where(_subjects.c.subject_id == bindparam("b_subject_id"))
    .values(updated_at=bindparam("b_now"))
)


class SubjectRows:
    """The ``subjects`` table (and, to shred, every data row of a subject)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def subject_state(self, subject_id: str) -> str | None:
        return self._conn.execute(
            select(_subjects.c.state).where(_subjects.c.subject_id == subject_id)
        ).scalar_one_or_none()

    def insert_subject(self, subject_id: str, now: datetime) -> None:
        self._conn.execute(
            _INSERT_SUBJECT,
            {
                "subject_id": subject_id,
                "state": SubjectState.ACTIVE,
                "created_at": now,
                "updated_at": now,
            },
        )

    def touch_subject(self, subject_id: str, now: datetime) -> None:
        self._conn.execute(_TOUCH_SUBJECT, {"b_subject_id": subject_id, "b_now": now})

    def subject_record(self, subject_id: str, *, lock: bool = False) -> SubjectRecord | None:
        statement = _SUBJECT_LOCKED if lock else _SUBJECT
        row = self._conn.execute(statement, {"b_subject_id": subject_id}).first()
        if row is None:
            return None
        return _subject_record(row)

    def insert_tombstone(self, subject_id: str, now: datetime) -> None:
        self._conn.execute(
            insert(_subjects).values(
                subject_id=subject_id,
                state=SubjectState.SHREDDED,
                created_at=now,
                updated_at=now,
                legal_hold=False,
                shredded_at=now,
            )
        )

    def mark_shredded(self, subject_id: str, now: datetime) -> None:
        self._conn.execute(
            update(_subjects)
            .where(_subjects.c.subject_id == subject_id)
            .values(state=SubjectState.SHREDDED, shredded_at=now, updated_at=now)
        )

    def set_legal_hold(self, subject_id: str, hold: bool, reason: str, now: datetime) -> None:
        self._conn.execute(
            update(_subjects)
            .where(_subjects.c.subject_id == subject_id)
            .values(
                legal_hold=hold,
                hold_reason=reason if hold else None,
                hold_set_at=now if hold else None,
            )
        )

    def delete_subject_data(self, subject_id: str) -> None:
        """Delete ciphertexts, blind-index rows (with them the tokens) and idempotency records."""
        self._conn.execute(delete(_index).where(_index.c.subject_id == subject_id))
        self._conn.execute(delete(_idem).where(_idem.c.subject_id == subject_id))
        self._conn.execute(delete(_fields).where(_fields.c.subject_id == subject_id))
        self._conn.execute(delete(_pending).where(_pending.c.subject_id == subject_id))
        self._conn.execute(delete(_consents).where(_consents.c.subject_id == subject_id))
        self._conn.execute(delete(_canaries).where(_canaries.c.subject_id == subject_id))
