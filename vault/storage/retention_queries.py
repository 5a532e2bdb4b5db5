"""What the retention sweep finds: expired cards and idle subjects, paged."""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import Connection, Table, func, select

from vault.domain.records import SubjectState
from vault.storage.models import FieldRow, SubjectRow

_fields = cast(Table, FieldRow.__table__)
_subjects = cast(Table, SubjectRow.__table__)


class RetentionQueries:
    """Totally ordered pages, so that ``offset`` pages past rows a caller left in place."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def expired_card_subjects(
        self, before: date, limit: int, *, offset: int = 0
    ) -> list[tuple[str, str]]:
        """(subject, field) of cards whose last valid day is before ``before``.

        Ordered totally (expiry, subject, field), so that ``offset`` pages past
        rows a caller left in place (a retention sweep skipping held subjects).
        """
        rows = self._conn.execute(
            select(_fields.c.subject_id, _fields.c.field)
            .where(_fields.c.expires_on.is_not(None), _fields.c.expires_on < before)
            .order_by(_fields.c.expires_on, _fields.c.subject_id, _fields.c.field)
            .limit(limit)
            .offset(offset)
        )
        return [(row[0], row[1]) for row in rows]

    def count_expired_cards(self, before: date) -> int:
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(_fields)
                .where(_fields.c.expires_on.is_not(None), _fields.c.expires_on < before)
            ).scalar_one()
        )

    def idle_subjects(self, untouched_since: datetime, limit: int, *, offset: int = 0) -> list[str]:
        """Active subjects not written since ``untouched_since``, oldest first.

        Ordered totally (last write, subject), so that ``offset`` pages past rows a
        caller left in place.
        """
        rows = self._conn.execute(
            select(_subjects.c.subject_id)
            .where(
                _subjects.c.state == SubjectState.ACTIVE, _subjects.c.updated_at < untouched_since
            )
            .order_by(_subjects.c.updated_at, _subjects.c.subject_id)
            .limit(limit)
            .offset(offset)
        )
        return [row[0] for row in rows]

    def count_idle_subjects(self, untouched_since: datetime) -> int:
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(_subjects)
                .where(
                    _subjects.c.state == SubjectState.ACTIVE,
                    _subjects.c.updated_at < untouched_since,
                )
            ).scalar_one()
        )
