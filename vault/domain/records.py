"""What the domain reads from and writes to its repositories: plain, frozen records.

The storage layer maps its rows to these (``vault.storage.rows``) and never
hands a row, a connection or an ORM object upward.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from vault.keys.provider import WrappedKey


class SubjectState(StrEnum):
    """A subject's stored state; the values are what the ``subjects`` table holds."""

    ACTIVE = "active"
    SHREDDED = "shredded"


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


@dataclass(frozen=True)
class KekUse:
    """How many stored keys are wrapped under one master key version."""

    kek_id: str
    kek_version: int
    subject_keys: int
    index_keys: int
    carried_keys: int = 0

    @property
    def keys(self) -> int:
        return self.subject_keys + self.index_keys + self.carried_keys


@dataclass(frozen=True)
class CarriedKeyMaterial:
    """A key the vault carries across a key-provider migration, wrapped by the master key.

    The one there is: the audit chain's key (``name`` ``audit-chain``), which
    would otherwise change with the provider (``vault.domain.carried_keys``).
    """

    name: str
    key_id: str
    wrapped: WrappedKey
