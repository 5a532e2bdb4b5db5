"""The ports the domain depends on: its unit of work and one repository per aggregate.

``vault.storage`` implements them (``Store``, ``Tx`` and the ``*Rows`` classes);
the composition root (``vault.bootstrap.app``) builds the implementations and
hands them in. The domain sees records (``vault.domain.records``), never a
row, a connection or the library behind them, so what must hold here is the
contract: a unit of work from ``write()`` commits all of it or nothing, and
keys it deletes after commit go only once the data rows naming them are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Protocol, TypeVar

from vault.audit.chain import AuditChainRows
from vault.audit.records import AuditRecord, ChainedEvent
from vault.domain.records import (
    CarriedKeyMaterial,
    IdempotencyRecord,
    IndexKeyMaterial,
    KekUse,
    PendingShred,
    StoredField,
    StoredReceipt,
    SubjectRecord,
)
from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.keys.provider import WrappedKey

T = TypeVar("T")


class WriteConflictError(Exception):
    """A concurrent writer inserted the same unique row first; retry the write.

    Only a unique or primary-key violation is a conflict. Any other integrity
    error (NOT NULL, foreign key, CHECK) is a bug or a corrupt row: retrying
    cannot help, so it is raised as it is and answers INTERNAL.
    """


def retry_on_write_conflict(
    work: Callable[[], T],
    *,
    attempts: int,
    what: str,
) -> T:
    """Run ``work`` (one whole transaction) until it commits without a unique-key race.

    Each conflict means another writer committed the same row first, so the
    next attempt reads that row instead. After ``attempts`` conflicts the race
    is not a race any more: raise rather than go on as if the write had happened
    (its rows were rolled back).
    """
    for _attempt in range(attempts - 1):
        try:
            return work()
        except WriteConflictError:
            continue
    try:
        return work()
    except WriteConflictError:
        raise WriteConflictError(f"{what} still conflicted after {attempts} attempts") from None


class SubjectRepository(Protocol):
    """The ``subjects`` table (and, to shred, every data row of a subject)."""

    def subject_state(self, subject_id: str) -> str | None: ...

    def insert_subject(self, subject_id: str, now: datetime) -> None: ...

    def touch_subject(self, subject_id: str, now: datetime) -> None: ...

    def subject_record(self, subject_id: str, *, lock: bool = False) -> SubjectRecord | None: ...

    def insert_tombstone(self, subject_id: str, now: datetime) -> None: ...

    def mark_shredded(self, subject_id: str, now: datetime) -> None: ...

    def set_legal_hold(self, subject_id: str, hold: bool, reason: str, now: datetime) -> None: ...

    def delete_subject_data(self, subject_id: str) -> None:
        """Delete ciphertexts, blind-index rows (with them the tokens) and idempotency records."""
        ...


class KeyRepository(Protocol):
    """The ``subject_keys`` and ``data_keys`` tables on the key store connection."""

    def subject_key_for(self, subject_id: str) -> SubjectKeyMaterial | None: ...

    def subject_key_by_id(self, key_id: str) -> SubjectKeyMaterial | None: ...

    def insert_subject_key(self, material: SubjectKeyMaterial, now: datetime) -> None: ...

    def data_key(self, dek_id: str) -> DataKeyMaterial | None: ...

    def insert_data_key(self, material: DataKeyMaterial, now: datetime) -> None: ...

    def delete_data_key(self, dek_id: str) -> None: ...

    def data_key_ids_of(self, subject_id: str) -> list[str]: ...

    def delete_subject_keys(self, subject_id: str) -> None:
        """Destroy every key of a subject: its data keys and its subject key."""
        ...


class FieldRepository(Protocol):
    """The ``fields`` table; rows of a shredded subject are never read back."""

    def get_field(self, subject_id: str, field: str) -> StoredField | None: ...

    def list_fields(self, subject_id: str) -> list[StoredField]: ...

    def field_by_token(self, digest: bytes) -> StoredField | None: ...

    def insert_field(
        self,
        stored: StoredField,
        token_digest: bytes,
        created_at: datetime,
        expires_on: date | None = None,
    ) -> None: ...

    def replace_field(
        self, stored: StoredField, token_digest: bytes, expires_on: date | None = None
    ) -> None: ...

    def delete_field(self, subject_id: str, field: str) -> None:
        """Delete a field's row and index row, and disarm its idempotency records."""
        ...

    def count_fields(self, subject_id: str) -> int: ...

    def field_expires_on(self, subject_id: str, field: str) -> date | None:
        """The last valid day stored with a field (cards), or None."""
        ...


class BlindIndexRepository(Protocol):
    """The ``blind_index`` table."""

    def put_index(
        self, subject_id: str, field: str, field_type: str, digest: bytes | None
    ) -> None: ...

    def find_subjects(self, field_type: str, digest: bytes) -> list[str]: ...


class IndexKeyRepository(Protocol):
    """The ``index_keys`` table on the key store connection."""

    def index_keys(self) -> list[IndexKeyMaterial]: ...

    def insert_index_key(self, material: IndexKeyMaterial, now: datetime) -> None: ...


class IdempotencyRepository(Protocol):
    """The ``idempotency_keys`` table."""

    def idempotency_record(
        self, caller: str, subject_id: str, key: str, now: datetime
    ) -> IdempotencyRecord | None:
        """``caller``'s unexpired record of ``key`` on ``subject_id``; another's is no match."""
        ...

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
        ...

    def disarm_idempotency(self, subject_id: str, field: str) -> None:
        """The field's value is being replaced or deleted: its records keep no fingerprint.

        Called in the transaction that destroys the value's data key, so no
        record can confirm a value that is gone, for any caller.
        """
        ...

    def purge_expired_idempotency(self, now: datetime) -> int:
        """Delete every record expired at ``now``; returns how many went."""
        ...


class ReceiptRepository(Protocol):
    """The ``shred_receipts`` and ``pending_shreds`` tables."""

    def receipt_by_request(self, request_id: str) -> StoredReceipt | None: ...

    def receipt_for_subject(self, subject_id: str) -> StoredReceipt | None: ...

    def insert_receipt(self, receipt: StoredReceipt, now: datetime) -> None: ...

    def reissue_receipt(self, receipt: StoredReceipt) -> None:
        """Replace a stored receipt's signed form (one signed before documents were typed)."""
        ...

    def pending_shred(self, subject_id: str) -> PendingShred | None: ...

    def queue_shred(self, pending: PendingShred) -> None: ...


class RetentionQueryRepository(Protocol):
    """Totally ordered pages, so that ``offset`` pages past rows a caller left in place."""

    def expired_card_subjects(
        self, before: date, limit: int, *, offset: int = 0
    ) -> list[tuple[str, str]]:
        """(subject, field) of cards whose last valid day is before ``before``.

        Ordered totally (expiry, subject, field), so that ``offset`` pages past
        rows a caller left in place (a retention sweep skipping held subjects).
        """
        ...

    def count_expired_cards(self, before: date) -> int: ...

    def idle_subjects(self, untouched_since: datetime, limit: int, *, offset: int = 0) -> list[str]:
        """Active subjects not written since ``untouched_since``, oldest first.

        Ordered totally (last write, subject), so that ``offset`` pages past rows a
        caller left in place.
        """
        ...

    def count_idle_subjects(self, untouched_since: datetime) -> int: ...


class RotationRepository(Protocol):
    """Subject and index keys by master key version, on the key store connection."""

    def count_keys_to_rewrap(self, kek_id: str, kek_version: int) -> int:
        """Subject and index keys wrapped under anything but ``kek_id`` v``kek_version``."""
        ...

    def subject_keys_to_rewrap(
        self, kek_id: str, kek_version: int, after_key_id: str, limit: int
    ) -> list[SubjectKeyMaterial]:
        """The next ``limit`` subject keys not under ``kek_id`` v``kek_version``, by key_id.

        Keyset pagination: pass the last key_id of the previous batch as
        ``after_key_id`` ("" for the first), so each key is visited once per pass
        even while the pass moves rows to another version.
        """
        ...

    def index_keys_to_rewrap(
        self, kek_id: str, kek_version: int, after_key_id: str, limit: int
    ) -> list[IndexKeyMaterial]:
        """As ``subject_keys_to_rewrap``, for blind-index keys."""
        ...

    def rewrap_subject_key(self, key_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Replace a subject key's wrapping, only if it is still ``old``; False if not.

        A key shredded (deleted) or rewrapped by someone else since it was read
        is left alone: an update never brings a deleted key back.
        """
        ...

    def rewrap_index_key(
        self, field_type: str, key_id: str, old: WrappedKey, new: WrappedKey
    ) -> bool:
        """As ``rewrap_subject_key``, for a blind-index key."""
        ...

    def carried_keys_to_rewrap(self, kek_id: str, kek_version: int) -> list[CarriedKeyMaterial]:
        """Carried keys (a handful at most) not under ``kek_id`` v``kek_version``."""
        ...

    def rewrap_carried_key(self, name: str, old: WrappedKey, new: WrappedKey) -> bool:
        """As ``rewrap_subject_key``, for a carried key."""
        ...

    def count_keys_by_kek_version(self) -> list[KekUse]:
        """Stored subject, index and carried keys per (master key, version), in version order."""
        ...

    def hold_key_writes(self) -> None:
        """Until this transaction ends, no other may add or rewrap a key (PostgreSQL).

        ``SHARE`` mode waits for transactions that already wrote key rows and
        blocks new writers, so a count taken after it is exact until commit. On
        SQLite the write transaction (``BEGIN IMMEDIATE``) already excludes every
        other writer.
        """
        ...

    def lock_key_rotation(self) -> None:
        """Until this transaction ends, no other replica may rotate or retire a master key.

        Every replica and worker shares the key store, so this is where they
        agree on who rotates. PostgreSQL: a transaction-scoped advisory lock (key
        writers do not take it, so they are not held up). SQLite: the write
        transaction (``BEGIN IMMEDIATE``) already excludes every other writer.
        """
        ...


class ConsentRepository(Protocol):
    """The ``consents`` and ``canaries`` tables."""

    def consent_granted(self, subject_id: str, purpose: str) -> bool: ...

    def set_consent(self, subject_id: str, purpose: str, granted: bool, now: datetime) -> None: ...

    def delete_consents(self, subject_id: str) -> None: ...

    def canaries(self) -> set[tuple[str, str]]: ...

    def plant_canary(self, subject_id: str, field: str, caller: str, now: datetime) -> None: ...


class AuditEventRepository(AuditChainRows, Protocol):
    """The stored audit chain (``vault.audit.chain`` computes it) and its readers."""

    def events(self, subject_id: str | None = None) -> list[AuditRecord]: ...

    def page(
        self,
        *,
        after_sequence: int = 0,
        limit: int = 100,
        subject_id: str = "",
        caller: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[ChainedEvent]: ...


class CarriedKeyRepository(Protocol):
    """The ``carried_keys`` table on the key store connection (``vault.domain.carried_keys``)."""

    def carried_key(self, name: str) -> CarriedKeyMaterial | None: ...

    def insert_carried_key(self, material: CarriedKeyMaterial, now: datetime) -> bool:
        """Insert unless a key of that name exists; returns whether it inserted."""
        ...


class UnitOfWork(Protocol):
    """One transaction across the data store and the key store."""

    @property
    def subjects(self) -> SubjectRepository: ...
    @property
    def key_rows(self) -> KeyRepository: ...
    @property
    def fields(self) -> FieldRepository: ...
    @property
    def index(self) -> BlindIndexRepository: ...
    @property
    def index_keys(self) -> IndexKeyRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def receipts(self) -> ReceiptRepository: ...
    @property
    def retention(self) -> RetentionQueryRepository: ...
    @property
    def rotation(self) -> RotationRepository: ...
    @property
    def carried_keys(self) -> CarriedKeyRepository: ...
    @property
    def consent(self) -> ConsentRepository: ...
    @property
    def audit(self) -> AuditEventRepository: ...

    def delete_data_key_after_commit(self, dek_id: str) -> None:
        """Destroy a data key once the data rows of this unit of work are committed."""
        ...


class Store(Protocol):
    """Units of work on the vault's stores."""

    def read(self) -> AbstractContextManager[UnitOfWork]:
        """Each statement sees what is committed; callers re-read when rows move."""
        ...

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A write: nothing of it is visible unless all of it commits.

        A unique-key race raises ``WriteConflictError``.
        """
        ...

    def checkpoint(self) -> None:
        """Leave no image of destroyed rows in a write-ahead log."""
        ...


class FieldReader(Protocol):
    """The masked-read hot path: one field row, read outside any unit of work."""

    holds_keys: bool
    """Whether ``data_key`` works: the key tables are in the same database."""

    def data_key(self, dek_id: str) -> tuple[DataKeyMaterial, SubjectKeyMaterial | None] | None:
        """The cold path: a data key and its subject key (None if gone) in one read."""

    def data_keys(
        self, dek_ids: Sequence[str]
    ) -> dict[str, tuple[DataKeyMaterial, SubjectKeyMaterial | None]]:
        """Many data keys with their subject keys in one read (a batch's cold keys)."""

    def get_field(self, subject_id: str, field: str) -> StoredField | None: ...

    def get_fields(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredField]:
        """Many live rows in one statement (a batch); the missing ones are absent."""

    def field_by_token(self, digest: bytes) -> StoredField | None: ...

    def find_subjects(self, field_type: str, digest: bytes) -> list[str]: ...

    def dispose(self) -> None: ...
