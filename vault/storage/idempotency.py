"""Idempotency records: what one caller's keyed PutField wrote, until it expires."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from vault.domain.records import IdempotencyRecord
from vault.storage.models import IdempotencyRow
from vault.storage.rows import record_mapper

_idem = cast(Table, IdempotencyRow.__table__)
_idempotency_record = record_mapper(IdempotencyRecord)

# Built once, executed with parameters: building a statement costs more than running it.
_THIS_KEY = (
    _idem.c.subject_id == bindparam("b_subject_id"),
    _idem.c.caller == bindparam("b_caller"),
    _idem.c.idempotency_key == bindparam("b_key"),
)
_LIVE_RECORD = select(
    _idem.c.field, _idem.c.dek_id, _idem.c.fingerprint, _idem.c.version, _idem.c.expires_at
).where(*_THIS_KEY, _idem.c.expires_at > bindparam("b_now"))
_DELETE_EXPIRED_RECORD = delete(_idem).where(*_THIS_KEY, _idem.c.expires_at <= bindparam("b_now"))
_INSERT_RECORD = insert(_idem)
_DISARM = (
    update(_idem)
    .where(_idem.c.subject_id == bindparam("b_subject_id"), _idem.c.field == bindparam("b_field"))
    .values(fingerprint=None)
)


class IdempotencyRows:
    """The ``idempotency_keys`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def idempotency_record(
        self, caller: str, subject_id: str, key: str, now: datetime
    ) -> IdempotencyRecord | None:
        """``caller``'s unexpired record of ``key`` on ``subject_id``; another's is no match."""
        row = self._conn.execute(
            _LIVE_RECORD,
            {"b_subject_id": subject_id, "b_caller": caller, "b_key": key, "b_now": now},
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
            _DELETE_EXPIRED_RECORD,
            {"b_subject_id": subject_id, "b_caller": caller, "b_key": key, "b_now": now},
        )
        self._conn.execute(
            _INSERT_RECORD,
            {
                "subject_id": subject_id,
                "caller": caller,
                "idempotency_key": key,
                "field": record.field,
                "dek_id": record.dek_id,
                "fingerprint": record.fingerprint,
                "version": record.version,
                "created_at": now,
                "expires_at": record.expires_at,
            },
        )

    def disarm_idempotency(self, subject_id: str, field: str) -> None:
        """The field's value is being replaced or deleted: its records keep no fingerprint.

        Called in the transaction that destroys the value's data key, so no
        record can confirm a value that is gone, for any caller.
        """
        self._conn.execute(_DISARM, {"b_subject_id": subject_id, "b_field": field})

    def purge_expired_idempotency(self, now: datetime) -> int:
        """Delete every record expired at ``now``; returns how many went."""
        result = self._conn.execute(delete(_idem).where(_idem.c.expires_at <= now))
        return int(result.rowcount or 0)
