"""Consents per subject and purpose, and canary fields."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select

from vault.storage.models import CanaryRow, ConsentRow

_consents = cast(Table, ConsentRow.__table__)
_canaries = cast(Table, CanaryRow.__table__)


class ConsentRows:
    """The ``consents`` and ``canaries`` tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def consent_granted(self, subject_id: str, purpose: str) -> bool:
        granted = self._conn.execute(
            select(_consents.c.granted).where(
                _consents.c.subject_id == subject_id, _consents.c.purpose == purpose
            )
        ).scalar_one_or_none()
        return bool(granted)

    def set_consent(self, subject_id: str, purpose: str, granted: bool, now: datetime) -> None:
        self._conn.execute(
            delete(_consents).where(
                _consents.c.subject_id == subject_id, _consents.c.purpose == purpose
            )
        )
        self._conn.execute(
            insert(_consents).values(
                subject_id=subject_id, purpose=purpose, granted=granted, updated_at=now
            )
        )

    def delete_consents(self, subject_id: str) -> None:
        self._conn.execute(delete(_consents).where(_consents.c.subject_id == subject_id))

    def canaries(self) -> set[tuple[str, str]]:
        return {
            (row[0], row[1])
            for row in self._conn.execute(select(_canaries.c.subject_id, _canaries.c.field))
        }

    def plant_canary(self, subject_id: str, field: str, caller: str, now: datetime) -> None:
        self._conn.execute(
            delete(_canaries).where(
                _canaries.c.subject_id == subject_id, _canaries.c.field == field
            )
        )
        self._conn.execute(
            insert(_canaries).values(
                subject_id=subject_id, field=field, planted_by=caller, planted_at=now
            )
        )
