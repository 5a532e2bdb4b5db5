"""ORM models. Rows never leave the storage layer: repositories convert them.

Two groups of tables: *key tables* (wrapped subject, data and index keys)
and *data tables* (ciphertexts, blind indexes, tombstones, audit). The key
tables can live in a database of their own (``--key-database-url``), so that
a deleted key row does not linger in the same pages, WAL and backups as the
ciphertext it opens. Both groups are created by the same migrations.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SUBJECT_ID_MAX = 128
FIELD_NAME_MAX = 128
ID_LEN = 32


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# -- key tables ---------------------------------------------------------------
class SubjectKeyRow(Base):
    __tablename__ = "subject_keys"

    key_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), unique=True)
    kek_id: Mapped[str] = mapped_column(String(64))
    kek_version: Mapped[int] = mapped_column(Integer, index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DataKeyRow(Base):
    __tablename__ = "data_keys"

    dek_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), index=True)
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX))
    subject_key_id: Mapped[str] = mapped_column(String(ID_LEN))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IndexKeyRow(Base):
    """One blind-index key per field type, wrapped by the master key."""

    __tablename__ = "index_keys"

    field_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(ID_LEN))
    kek_id: Mapped[str] = mapped_column(String(64))
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CarriedKeyRow(Base):
    """A key carried across a key-provider migration (the audit chain's), wrapped by the
    master key; one row per name (schema 0007, ``vault.domain.carried_keys``)."""

    __tablename__ = "carried_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(ID_LEN))
    kek_id: Mapped[str] = mapped_column(String(64))
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- data tables --------------------------------------------------------------
class SubjectRow(Base):
    """A subject's state; a shredded subject stays as a tombstone."""

    __tablename__ = "subjects"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    hold_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    shredded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class FieldRow(Base):
    __tablename__ = "fields"

    subject_id: Mapped[str] = mapped_column(
        String(SUBJECT_ID_MAX), ForeignKey("subjects.subject_id"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX), primary_key=True)
    field_type: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    dek_id: Mapped[str] = mapped_column(String(ID_LEN))
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
    view_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Last day a card is valid, so retention can find expired cards without
    # decrypting anything; NULL for every other type.
    expires_on: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)


class BlindIndexRow(Base):
    __tablename__ = "blind_index"
    __table_args__ = (Index("ix_blind_index_digest", "field_type", "digest"),)

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX), primary_key=True)
    field_type: Mapped[str] = mapped_column(String(32))
    digest: Mapped[bytes] = mapped_column(LargeBinary(16))


class IdempotencyRow(Base):
    """One caller's PutField remembered by its idempotency key, until ``expires_at``.

    Scoped to the caller that wrote it: another caller's key never matches.
    ``fingerprint`` is keyed under the data key of the value it wrote (version
    ``version``, key ``dek_id``), so it cannot be checked once that key is
    destroyed; it is set to NULL when the field is replaced or deleted, and the
    row then only says that the key was used, so a late retry is refused
    instead of writing the old value again.
    """

    __tablename__ = "idempotency_keys"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX))
    dek_id: Mapped[str] = mapped_column(String(ID_LEN))
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ShredReceiptRow(Base):
    """A signed shred receipt, kept so that repeating a request_id returns it."""

    __tablename__ = "shred_receipts"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signing_key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingShredRow(Base):
    """A shred refused under a legal hold, carried out when the hold is released."""

    __tablename__ = "pending_shreds"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(200))
    caller: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsentRow(Base):
    """Whether a subject consents to a purpose the policy marks ``requires_consent``."""

    __tablename__ = "consents"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CanaryRow(Base):
    """A planted decoy field: any read of it is refused and raises an alarm."""

    __tablename__ = "canaries"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), primary_key=True)
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX), primary_key=True)
    planted_by: Mapped[str] = mapped_column(String(64))
    planted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEventRow(Base):
    """An audit event: who did what to which field, never a value."""

    __tablename__ = "audit_events"

    # Assigned from the chain head, not by the database: gaps must be visible.
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    caller: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID_MAX), index=True)
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX))
    view: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHeadRow(Base):
    """The one row naming the newest event: appends lock it, so the chain never forks
    across replicas, and a deleted tail is detected against it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_sequence: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # "hmac-sha256" (keyed under the key provider's audit key) or "sha256" (a chain
    # from before schema 0006, until the server re-chains it). Not trusted on its
    # own: whether an unkeyed chain may be adopted is the key provider's to say.
    scheme: Mapped[str] = mapped_column(String(16), server_default="sha256")


KEY_TABLES = ("subject_keys", "data_keys", "index_keys", "carried_keys")
DATA_TABLES = (
    "subjects",
    "fields",
    "blind_index",
    "idempotency_keys",
    "shred_receipts",
    "pending_shreds",
    "consents",
    "canaries",
    "audit_events",
    "audit_head",
)
