"""Repository functions: SQL in, plain records out.

Each function takes the connection of the store it touches (``tx.data`` or
``tx.keys``) so that the unit of work stays in the caller's hands. The hot
read path uses SQLAlchemy Core statements built once at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.models import (
    BlindIndexRow,
    CanaryRow,
    ConsentRow,
    DataKeyRow,
    FieldRow,
    IdempotencyRow,
    IndexKeyRow,
    PendingShredRow,
    ShredReceiptRow,
    SubjectKeyRow,
    SubjectRow,
)
from vault.storage.rows import aware

ACTIVE = "active"
SHREDDED = "shredded"

_fields = cast(Table, FieldRow.__table__)
_subjects = cast(Table, SubjectRow.__table__)
_subject_keys = cast(Table, SubjectKeyRow.__table__)
_data_keys = cast(Table, DataKeyRow.__table__)
_index = cast(Table, BlindIndexRow.__table__)
_idem = cast(Table, IdempotencyRow.__table__)
_index_keys = cast(Table, IndexKeyRow.__table__)


@dataclass(frozen=True)
class StoredField:
    subject_id: str
    field: str
    field_type: str
    version: int
    dek_id: str
    value_ct: bytes
    view_ct: bytes
    updated_at: datetime


@dataclass(frozen=True)
class IdempotencyRecord:
    """What one caller's keyed PutField wrote: the field, its data key and version.

    ``fingerprint`` is keyed under that data key (``FieldCipher.fingerprint``);
    None once the field was replaced or deleted, when only the fact that the
    key was used remains.
    """

    field: str
    dek_id: str
    fingerprint: bytes | None
    version: int
    expires_at: datetime


@dataclass(frozen=True)
class IndexKeyMaterial:
    field_type: str
    key_id: str
    wrapped: WrappedKey


# -- subjects -------------------------------------------------------------------


def subject_state(conn: Connection, subject_id: str) -> str | None:
    return conn.execute(
        select(_subjects.c.state).where(_subjects.c.subject_id == subject_id)
    ).scalar_one_or_none()


def insert_subject(conn: Connection, subject_id: str, now: datetime) -> None:
    conn.execute(
        insert(_subjects).values(
            subject_id=subject_id, state=ACTIVE, created_at=now, updated_at=now
        )
    )


def touch_subject(conn: Connection, subject_id: str, now: datetime) -> None:
    conn.execute(
        update(_subjects).where(_subjects.c.subject_id == subject_id).values(updated_at=now)
    )


# -- subject keys ----------------------------------------------------------------
def _subject_key(row: object) -> SubjectKeyMaterial:
    r = row._mapping  # type: ignore[attr-defined]
    return SubjectKeyMaterial(
        r["key_id"], r["subject_id"], WrappedKey(r["kek_id"], r["kek_version"], r["wrapped"])
    )


def subject_key_for(conn: Connection, subject_id: str) -> SubjectKeyMaterial | None:
    row = conn.execute(
        select(_subject_keys).where(_subject_keys.c.subject_id == subject_id)
    ).first()
    return None if row is None else _subject_key(row)


def subject_key_by_id(conn: Connection, key_id: str) -> SubjectKeyMaterial | None:
    row = conn.execute(_SUBJECT_KEY_BY_ID, {"key_id": key_id}).first()
    return None if row is None else _subject_key(row)


def insert_subject_key(conn: Connection, material: SubjectKeyMaterial, now: datetime) -> None:
    conn.execute(
        insert(_subject_keys).values(
            key_id=material.key_id,
            subject_id=material.subject_id,
            kek_id=material.wrapped.kek_id,
            kek_version=material.wrapped.kek_version,
            wrapped=material.wrapped.ciphertext,
            created_at=now,
        )
    )


# -- data keys ---------------------------------------------------------------------
_DATA_KEY = select(_data_keys).where(_data_keys.c.dek_id == bindparam("dek_id"))
_SUBJECT_KEY_BY_ID = select(_subject_keys).where(_subject_keys.c.key_id == bindparam("key_id"))


def data_key(conn: Connection, dek_id: str) -> DataKeyMaterial | None:
    row = conn.execute(_DATA_KEY, {"dek_id": dek_id}).first()
    if row is None:
        return None
    r = row._mapping
    return DataKeyMaterial(
        r["dek_id"], r["subject_id"], r["field"], r["subject_key_id"], r["wrapped"]
    )


def insert_data_key(conn: Connection, material: DataKeyMaterial, now: datetime) -> None:
    conn.execute(
        insert(_data_keys).values(
            dek_id=material.dek_id,
            subject_id=material.subject_id,
            field=material.field,
            subject_key_id=material.subject_key_id,
            wrapped=material.wrapped,
            created_at=now,
        )
    )


def delete_data_key(conn: Connection, dek_id: str) -> None:
    conn.execute(delete(_data_keys).where(_data_keys.c.dek_id == dek_id))


# -- fields ----------------------------------------------------------------------------
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
    .where(_subjects.c.state != SHREDDED)
)
# Built once: statement construction costs more than the SQLite query itself.
GET_FIELD = _LIVE_FIELDS.where(
    _fields.c.subject_id == bindparam("subject_id"), _fields.c.field == bindparam("field")
)
_LIST_FIELDS = _LIVE_FIELDS.where(_fields.c.subject_id == bindparam("subject_id")).order_by(
    _fields.c.field
)
_FIELD_BY_TOKEN = _LIVE_FIELDS.where(_fields.c.token_digest == bindparam("digest"))


def get_field(conn: Connection, subject_id: str, field: str) -> StoredField | None:
    row = conn.execute(GET_FIELD, {"subject_id": subject_id, "field": field}).first()
    return None if row is None else _stored(row)


def list_fields(conn: Connection, subject_id: str) -> list[StoredField]:
    rows = conn.execute(_LIST_FIELDS, {"subject_id": subject_id})
    return [_stored(row) for row in rows]


def field_by_token(conn: Connection, digest: bytes) -> StoredField | None:
    row = conn.execute(_FIELD_BY_TOKEN, {"digest": digest}).first()
    return None if row is None else _stored(row)


def insert_field(
    conn: Connection,
    stored: StoredField,
    token_digest: bytes,
    created_at: datetime,
    expires_on: date | None = None,
) -> None:
    conn.execute(
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
    conn: Connection, stored: StoredField, token_digest: bytes, expires_on: date | None = None
) -> None:
    conn.execute(
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


def delete_field(conn: Connection, subject_id: str, field: str) -> None:
    """Delete a field's row and index row, and disarm its idempotency records."""
    conn.execute(
        delete(_fields).where(_fields.c.subject_id == subject_id, _fields.c.field == field)
    )
    conn.execute(delete(_index).where(_index.c.subject_id == subject_id, _index.c.field == field))
    disarm_idempotency(conn, subject_id, field)


# -- blind index --------------------------------------------------------------------------
def put_index(
    conn: Connection, subject_id: str, field: str, field_type: str, digest: bytes | None
) -> None:
    conn.execute(delete(_index).where(_index.c.subject_id == subject_id, _index.c.field == field))
    if digest is not None:
        conn.execute(
            insert(_index).values(
                subject_id=subject_id, field=field, field_type=field_type, digest=digest
            )
        )


def find_subjects(conn: Connection, field_type: str, digest: bytes) -> list[str]:
    rows = conn.execute(
        select(_index.c.subject_id)
        .where(_index.c.field_type == field_type, _index.c.digest == digest)
        .distinct()
        .order_by(_index.c.subject_id)
    )
    return [row[0] for row in rows]


# -- idempotency -----------------------------------------------------------------------------
def idempotency_record(
    conn: Connection, caller: str, subject_id: str, key: str, now: datetime
) -> IdempotencyRecord | None:
    """``caller``'s unexpired record of ``key`` on ``subject_id``; another caller's is no match."""
    row = conn.execute(
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
    fingerprint = None if row[2] is None else bytes(row[2])
    return IdempotencyRecord(row[0], row[1], fingerprint, row[3], aware(row[4]))


def remember_idempotency(
    conn: Connection,
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
    conn.execute(
        delete(_idem).where(
            _idem.c.subject_id == subject_id,
            _idem.c.caller == caller,
            _idem.c.idempotency_key == key,
            _idem.c.expires_at <= now,
        )
    )
    conn.execute(
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


def disarm_idempotency(conn: Connection, subject_id: str, field: str) -> None:
    """The field's value is being replaced or deleted: its records keep no fingerprint.

    Called in the transaction that destroys the value's data key, so no
    record can confirm a value that is gone, for any caller.
    """
    conn.execute(
        update(_idem)
        .where(_idem.c.subject_id == subject_id, _idem.c.field == field)
        .values(fingerprint=None)
    )


def purge_expired_idempotency(conn: Connection, now: datetime) -> int:
    """Delete every record expired at ``now``; returns how many went."""
    result = conn.execute(delete(_idem).where(_idem.c.expires_at <= now))
    return int(result.rowcount or 0)


# -- index keys ---------------------------------------------------------------------------------
def index_keys(conn: Connection) -> list[IndexKeyMaterial]:
    rows = conn.execute(select(_index_keys))
    return [
        IndexKeyMaterial(r.field_type, r.key_id, WrappedKey(r.kek_id, r.kek_version, r.wrapped))
        for r in rows
    ]


def insert_index_key(conn: Connection, material: IndexKeyMaterial, now: datetime) -> None:
    conn.execute(
        insert(_index_keys).values(
            field_type=material.field_type,
            key_id=material.key_id,
            kek_id=material.wrapped.kek_id,
            kek_version=material.wrapped.kek_version,
            wrapped=material.wrapped.ciphertext,
            created_at=now,
        )
    )


# -- shredding and legal holds -----------------------------------------------------------------
_receipts = cast(Table, ShredReceiptRow.__table__)
_pending = cast(Table, PendingShredRow.__table__)


@dataclass(frozen=True)
class SubjectRecord:
    subject_id: str
    state: str
    created_at: datetime
    updated_at: datetime
    legal_hold: bool
    hold_reason: str
    shredded_at: datetime | None


@dataclass(frozen=True)
class StoredReceipt:
    request_id: str
    subject_id: str
    payload: bytes
    signature: bytes
    signing_key_id: str


@dataclass(frozen=True)
class PendingShred:
    subject_id: str
    request_id: str
    reason: str
    caller: str
    requested_at: datetime


def subject_record(
    conn: Connection, subject_id: str, *, lock: bool = False
) -> SubjectRecord | None:
    statement = select(_subjects).where(_subjects.c.subject_id == subject_id)
    if lock:
        statement = statement.with_for_update()
    row = conn.execute(statement).first()
    if row is None:
        return None
    r = row._mapping
    return SubjectRecord(
        r["subject_id"],
        r["state"],
        aware(r["created_at"]),
        aware(r["updated_at"]),
        bool(r["legal_hold"]),
        r["hold_reason"] or "",
        None if r["shredded_at"] is None else aware(r["shredded_at"]),
    )


def insert_tombstone(conn: Connection, subject_id: str, now: datetime) -> None:
    conn.execute(
        insert(_subjects).values(
            subject_id=subject_id,
            state=SHREDDED,
            created_at=now,
            updated_at=now,
            legal_hold=False,
            shredded_at=now,
        )
    )


def mark_shredded(conn: Connection, subject_id: str, now: datetime) -> None:
    conn.execute(
        update(_subjects)
        .where(_subjects.c.subject_id == subject_id)
        .values(state=SHREDDED, shredded_at=now, updated_at=now)
    )


def set_legal_hold(
    conn: Connection, subject_id: str, hold: bool, reason: str, now: datetime
) -> None:
    conn.execute(
        update(_subjects)
        .where(_subjects.c.subject_id == subject_id)
        .values(
            legal_hold=hold, hold_reason=reason if hold else None, hold_set_at=now if hold else None
        )
    )


def data_key_ids_of(conn: Connection, subject_id: str) -> list[str]:
    rows = conn.execute(
        select(_data_keys.c.dek_id)
        .where(_data_keys.c.subject_id == subject_id)
        .order_by(_data_keys.c.dek_id)
    )
    return [row[0] for row in rows]


def count_fields(conn: Connection, subject_id: str) -> int:
    rows = conn.execute(select(_fields.c.field).where(_fields.c.subject_id == subject_id))
    return len(rows.all())


def delete_subject_keys(conn: Connection, subject_id: str) -> None:
    """Destroy every key of a subject: its data keys and its subject key."""
    conn.execute(delete(_data_keys).where(_data_keys.c.subject_id == subject_id))
    conn.execute(delete(_subject_keys).where(_subject_keys.c.subject_id == subject_id))


def delete_subject_data(conn: Connection, subject_id: str) -> None:
    """Delete ciphertexts, blind-index rows (with them the tokens) and idempotency records."""
    conn.execute(delete(_index).where(_index.c.subject_id == subject_id))
    conn.execute(delete(_idem).where(_idem.c.subject_id == subject_id))
    conn.execute(delete(_fields).where(_fields.c.subject_id == subject_id))
    conn.execute(delete(_pending).where(_pending.c.subject_id == subject_id))
    conn.execute(delete(_consents).where(_consents.c.subject_id == subject_id))
    conn.execute(delete(_canaries).where(_canaries.c.subject_id == subject_id))


def receipt_by_request(conn: Connection, request_id: str) -> StoredReceipt | None:
    row = conn.execute(select(_receipts).where(_receipts.c.request_id == request_id)).first()
    return None if row is None else _receipt(row)


def receipt_for_subject(conn: Connection, subject_id: str) -> StoredReceipt | None:
    row = conn.execute(
        select(_receipts)
        .where(_receipts.c.subject_id == subject_id)
        .order_by(_receipts.c.created_at)
        .limit(1)
    ).first()
    return None if row is None else _receipt(row)


def _receipt(row: Row[*tuple[Any, ...]]) -> StoredReceipt:
    r = row._mapping
    return StoredReceipt(
        r["request_id"], r["subject_id"], r["payload"], r["signature"], r["signing_key_id"]
    )


def insert_receipt(conn: Connection, receipt: StoredReceipt, now: datetime) -> None:
    conn.execute(
        insert(_receipts).values(
            request_id=receipt.request_id,
            subject_id=receipt.subject_id,
            payload=receipt.payload,
            signature=receipt.signature,
            signing_key_id=receipt.signing_key_id,
            created_at=now,
        )
    )


def reissue_receipt(conn: Connection, receipt: StoredReceipt) -> None:
    """Replace a stored receipt's signed form (one signed before documents were typed)."""
    conn.execute(
        update(_receipts)
        .where(_receipts.c.request_id == receipt.request_id)
        .values(
            payload=receipt.payload,
            signature=receipt.signature,
            signing_key_id=receipt.signing_key_id,
        )
    )


def pending_shred(conn: Connection, subject_id: str) -> PendingShred | None:
    row = conn.execute(select(_pending).where(_pending.c.subject_id == subject_id)).first()
    if row is None:
        return None
    r = row._mapping
    return PendingShred(
        r["subject_id"], r["request_id"], r["reason"], r["caller"], aware(r["requested_at"])
    )


def queue_shred(conn: Connection, pending: PendingShred) -> None:
    conn.execute(delete(_pending).where(_pending.c.subject_id == pending.subject_id))
    conn.execute(
        insert(_pending).values(
            subject_id=pending.subject_id,
            request_id=pending.request_id,
            reason=pending.reason,
            caller=pending.caller,
            requested_at=pending.requested_at,
        )
    )


def expired_card_subjects(
    conn: Connection, before: date, limit: int, *, offset: int = 0
) -> list[tuple[str, str]]:
    """(subject, field) of cards whose last valid day is before ``before``.

    Ordered totally (expiry, subject, field), so that ``offset`` pages past
    rows a caller left in place (a retention sweep skipping held subjects).
    """
    rows = conn.execute(
        select(_fields.c.subject_id, _fields.c.field)
        .where(_fields.c.expires_on.is_not(None), _fields.c.expires_on < before)
        .order_by(_fields.c.expires_on, _fields.c.subject_id, _fields.c.field)
        .limit(limit)
        .offset(offset)
    )
    return [(row[0], row[1]) for row in rows]


def count_expired_cards(conn: Connection, before: date) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(_fields)
            .where(_fields.c.expires_on.is_not(None), _fields.c.expires_on < before)
        ).scalar_one()
    )


def field_expires_on(conn: Connection, subject_id: str, field: str) -> date | None:
    """The last valid day stored with a field (cards), or None."""
    value = conn.execute(
        select(_fields.c.expires_on).where(
            _fields.c.subject_id == subject_id, _fields.c.field == field
        )
    ).scalar_one_or_none()
    return cast(date | None, value)


def idle_subjects(
    conn: Connection, untouched_since: datetime, limit: int, *, offset: int = 0
) -> list[str]:
    """Active subjects not written since ``untouched_since``, oldest first.

    Ordered totally (last write, subject), so that ``offset`` pages past rows a
    caller left in place.
    """
    rows = conn.execute(
        select(_subjects.c.subject_id)
        .where(_subjects.c.state == ACTIVE, _subjects.c.updated_at < untouched_since)
        .order_by(_subjects.c.updated_at, _subjects.c.subject_id)
        .limit(limit)
        .offset(offset)
    )
    return [row[0] for row in rows]


def count_idle_subjects(conn: Connection, untouched_since: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(_subjects)
            .where(_subjects.c.state == ACTIVE, _subjects.c.updated_at < untouched_since)
        ).scalar_one()
    )


# -- master-key rotation: rewrapping and counting -------------------------------------------------
@dataclass(frozen=True)
class KekUse:
    """How many stored keys are wrapped under one master key version."""

    kek_id: str
    kek_version: int
    subject_keys: int
    index_keys: int

    @property
    def keys(self) -> int:
        return self.subject_keys + self.index_keys


def _not_under(table: Table, kek_id: str, kek_version: int) -> Any:
    return or_(table.c.kek_version != kek_version, table.c.kek_id != kek_id)


def count_keys_to_rewrap(conn: Connection, kek_id: str, kek_version: int) -> int:
    """Subject and index keys wrapped under anything but master key ``kek_id`` v``kek_version``."""
    total = 0
    for table in (_subject_keys, _index_keys):
        total += conn.execute(
            select(func.count()).select_from(table).where(_not_under(table, kek_id, kek_version))
        ).scalar_one()
    return total


def subject_keys_to_rewrap(
    conn: Connection, kek_id: str, kek_version: int, after_key_id: str, limit: int
) -> list[SubjectKeyMaterial]:
    """The next ``limit`` subject keys not under ``kek_id`` v``kek_version``, by key_id.

    Keyset pagination: pass the last key_id of the previous batch as
    ``after_key_id`` ("" for the first), so each key is visited once per pass
    even while the pass moves rows to another version.
    """
    rows = conn.execute(
        select(_subject_keys)
        .where(
            _not_under(_subject_keys, kek_id, kek_version), _subject_keys.c.key_id > after_key_id
        )
        .order_by(_subject_keys.c.key_id)
        .limit(limit)
    )
    return [_subject_key(row) for row in rows]


def index_keys_to_rewrap(
    conn: Connection, kek_id: str, kek_version: int, after_key_id: str, limit: int
) -> list[IndexKeyMaterial]:
    """As ``subject_keys_to_rewrap``, for blind-index keys."""
    rows = conn.execute(
        select(_index_keys)
        .where(_not_under(_index_keys, kek_id, kek_version), _index_keys.c.key_id > after_key_id)
        .order_by(_index_keys.c.key_id)
        .limit(limit)
    )
    return [
        IndexKeyMaterial(r.field_type, r.key_id, WrappedKey(r.kek_id, r.kek_version, r.wrapped))
        for r in rows
    ]


def rewrap_subject_key(conn: Connection, key_id: str, old: WrappedKey, new: WrappedKey) -> bool:
    """Replace a subject key's wrapping, only if it is still ``old``; False if not.

    A key shredded (deleted) or rewrapped by someone else since it was read
    is left alone: an update never brings a deleted key back.
    """
    result = conn.execute(
        update(_subject_keys)
        .where(
            _subject_keys.c.key_id == key_id,
            _subject_keys.c.kek_id == old.kek_id,
            _subject_keys.c.kek_version == old.kek_version,
            _subject_keys.c.wrapped == old.ciphertext,
        )
        .values(kek_id=new.kek_id, kek_version=new.kek_version, wrapped=new.ciphertext)
    )
    return result.rowcount == 1


def rewrap_index_key(
    conn: Connection, field_type: str, key_id: str, old: WrappedKey, new: WrappedKey
) -> bool:
    """As ``rewrap_subject_key``, for a blind-index key."""
    result = conn.execute(
        update(_index_keys)
        .where(
            _index_keys.c.field_type == field_type,
            _index_keys.c.key_id == key_id,
            _index_keys.c.kek_id == old.kek_id,
            _index_keys.c.kek_version == old.kek_version,
            _index_keys.c.wrapped == old.ciphertext,
        )
        .values(kek_id=new.kek_id, kek_version=new.kek_version, wrapped=new.ciphertext)
    )
    return result.rowcount == 1


def count_keys_by_kek_version(conn: Connection) -> list[KekUse]:
    """Stored subject and index keys per (master key, version), in version order."""
    counts: dict[tuple[str, int], list[int]] = {}
    for slot, table in enumerate((_subject_keys, _index_keys)):
        rows = conn.execute(
            select(table.c.kek_id, table.c.kek_version, func.count()).group_by(
                table.c.kek_id, table.c.kek_version
            )
        )
        for kek_id, kek_version, count in rows:
            counts.setdefault((kek_id, kek_version), [0, 0])[slot] = count
    return [
        KekUse(kek_id, version, subject, index)
        for (kek_id, version), (subject, index) in sorted(counts.items(), key=lambda i: i[0][::-1])
    ]


def hold_key_writes(conn: Connection) -> None:
    """Until this transaction ends, no other may add or rewrap a key (PostgreSQL).

    ``SHARE`` mode waits for transactions that already wrote key rows and
    blocks new writers, so a count taken after it is exact until commit. On
    SQLite the write transaction (``BEGIN IMMEDIATE``) already excludes every
    other writer.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE subject_keys, index_keys IN SHARE MODE")


# Any constant the vault alone uses as a PostgreSQL advisory lock key ("pii-vaul").
_KEY_ROTATION_LOCK = 0x7069692D7661756C


def lock_key_rotation(conn: Connection) -> None:
    """Until this transaction ends, no other replica may rotate or retire a master key.

    Every replica and worker shares the key store, so this is where they
    agree on who rotates. PostgreSQL: a transaction-scoped advisory lock (key
    writers do not take it, so they are not held up). SQLite: the write
    transaction (``BEGIN IMMEDIATE``) already excludes every other writer.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_KEY_ROTATION_LOCK})")


# -- consent and canaries ------------------------------------------------------------------------
_consents = cast(Table, ConsentRow.__table__)
_canaries = cast(Table, CanaryRow.__table__)


def consent_granted(conn: Connection, subject_id: str, purpose: str) -> bool:
    granted = conn.execute(
        select(_consents.c.granted).where(
            _consents.c.subject_id == subject_id, _consents.c.purpose == purpose
        )
    ).scalar_one_or_none()
    return bool(granted)


def set_consent(
    conn: Connection, subject_id: str, purpose: str, granted: bool, now: datetime
) -> None:
    conn.execute(
        delete(_consents).where(
            _consents.c.subject_id == subject_id, _consents.c.purpose == purpose
        )
    )
    conn.execute(
        insert(_consents).values(
            subject_id=subject_id, purpose=purpose, granted=granted, updated_at=now
        )
    )


def delete_consents(conn: Connection, subject_id: str) -> None:
    conn.execute(delete(_consents).where(_consents.c.subject_id == subject_id))


def canaries(conn: Connection) -> set[tuple[str, str]]:
    return {
        (row[0], row[1]) for row in conn.execute(select(_canaries.c.subject_id, _canaries.c.field))
    }


def plant_canary(conn: Connection, subject_id: str, field: str, caller: str, now: datetime) -> None:
    conn.execute(
        delete(_canaries).where(_canaries.c.subject_id == subject_id, _canaries.c.field == field)
    )
    conn.execute(
        insert(_canaries).values(
            subject_id=subject_id, field=field, planted_by=caller, planted_at=now
        )
    )
