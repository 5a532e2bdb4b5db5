"""Idempotency records: what one caller's keyed PutField wrote, until it expires."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from vault.domain.records import IdempotencyRecord
from vault.storage.models import IdempotencyRow
from vault.storage.rows import record_mapper

_idem = cast(Table, IdempotencyRow.__table__)
_idempotency_record = record_mapper(IdempotencyRecord)


class IdempotencyRows:
    """The ``idempotency_keys`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def idempotency_record(
        self, caller: str, subject_id: str, key: str, now: datetime
    ) -> IdempotencyRecord | None:
        """``caller``'s unexpired record of ``key`` on ``subject_id``; another's is no match."""
        row = self._conn.execute(
            select(
                _idem.c.field,
                _idem.c.dek_id,
                _idem.c.fingerprint,
                _idem.c.version,
                _idem.c.expires_at,
            ).where(
                _idem.c.subject_id == subject_id,
                _idem.c.caller == caller,
                _idem.c.idempotency_key == key,
                _idem.c.expires_at > now,
            )
        ).first()
        if row is None:
            return None
        return _idempotency_record(row)

    def remember_idempotency(
        self,
        caller: str,
        subject_id: str,
        key: str,
        record: IdempotencyRecord,
        now: datetime,
    ) -> None:
        """Store ``record`` under (caller, subject, key), replacing an expired one not yet purged.

        Raises ``WriteConflictError`` (via the store) if an unexpired one exists:
        the caller looked it up in the same transaction and found none.
        """
        self._conn.execute(
            delete(_idem).where(
                _idem.c.subject_id == subject_id,
                _idem.c.caller == caller,
                _idem.c.idempotency_key == key,
                _idem.c.expires_at <= now,
            )
        )
        self._conn.execute(
            insert(_idem).values(
                subject_id=subject_id,
                caller=caller,
                idempotency_key=key,
                field=record.field,
                dek_id=record.dek_id,
                fingerprint=record.fingerprint,
                version=record.version,
                created_at=now,
                expires_at=record.expires_at,
            )
        )

    def disarm_idempotency(self, subject_id: str, field: str) -> None:
        """The field's value is being replaced or deleted: its records keep no fingerprint.

        Called in the transaction that destroys the value's data key, so no
        record can confirm a value that is gone, for any caller.
        """
        self._conn.execute(
            update(_idem)
            .where(_idem.c.subject_id == subject_id, _idem.c.field == field)
            .values(fingerprint=None)
        )

    def purge_expired_idempotency(self, now: datetime) -> int:
        """Delete every record expired at ``now``; returns how many went."""
        result = self._conn.execute(delete(_idem).where(_idem.c.expires_at <= now))
        return int(result.rowcount or 0)
