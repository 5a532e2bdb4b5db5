"""Shred receipts as signed, and shreds queued behind a legal hold."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from vault.domain.records import PendingShred, StoredReceipt
from vault.storage.models import PendingShredRow, ShredReceiptRow
from vault.storage.rows import record_mapper

_receipts = cast(Table, ShredReceiptRow.__table__)
_pending = cast(Table, PendingShredRow.__table__)


_receipt = record_mapper(StoredReceipt)
_pending_shred = record_mapper(PendingShred)


class ReceiptRows:
    """The ``shred_receipts`` and ``pending_shreds`` tables."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def receipt_by_request(self, request_id: str) -> StoredReceipt | None:
        row = self._conn.execute(
            select(_receipts).where(_receipts.c.request_id == request_id)
        ).first()
        return None if row is None else _receipt(row)

    def receipt_for_subject(self, subject_id: str) -> StoredReceipt | None:
        row = self._conn.execute(
            select(_receipts)
            .where(_receipts.c.subject_id == subject_id)
            .order_by(_receipts.c.created_at)
            .limit(1)
        ).first()
        return None if row is None else _receipt(row)

    def insert_receipt(self, receipt: StoredReceipt, now: datetime) -> None:
        self._conn.execute(
            insert(_receipts).values(
                request_id=receipt.request_id,
                subject_id=receipt.subject_id,
                payload=receipt.payload,
                signature=receipt.signature,
                signing_key_id=receipt.signing_key_id,
                created_at=now,
            )
        )

    def reissue_receipt(self, receipt: StoredReceipt) -> None:
        """Replace a stored receipt's signed form (one signed before documents were typed)."""
        self._conn.execute(
            update(_receipts)
            .where(_receipts.c.request_id == receipt.request_id)
            .values(
                payload=receipt.payload,
                signature=receipt.signature,
                signing_key_id=receipt.signing_key_id,
            )
        )

    def pending_shred(self, subject_id: str) -> PendingShred | None:
        row = self._conn.execute(
            select(_pending).where(_pending.c.subject_id == subject_id)
        ).first()
        if row is None:
            return None
        return _pending_shred(row)

    def queue_shred(self, pending: PendingShred) -> None:
        self._conn.execute(delete(_pending).where(_pending.c.subject_id == pending.subject_id))
        self._conn.execute(
            insert(_pending).values(
                subject_id=pending.subject_id,
                request_id=pending.request_id,
                reason=pending.reason,
                caller=pending.caller,
                requested_at=pending.requested_at,
            )
        )
