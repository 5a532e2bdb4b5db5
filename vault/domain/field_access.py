"""What every field use case shares: its collaborators, the policy checks, opening a row.

Invariants kept here for all of them: a ciphertext or data key that fails
authentication, or belongs to another row, raises ``DataLoss`` (never a wrong
value); a check against a stored field's type answers a caller with no grant
that could read the field exactly as if the field did not exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

from vault import fields
from vault.audit.log import AuditLog
from vault.crypto.blind_index import BlindIndexer
from vault.crypto.envelope import FieldCipher, InvalidCiphertextError, RandomSource
from vault.domain.authorization import require, require_stored
from vault.domain.enumeration import EnumerationWatch
from vault.domain.guards import AccessGuards
from vault.domain.model import (
    FieldView,
    Limits,
)
from vault.domain.ports import FieldReader, Store, UnitOfWork
from vault.domain.rate_limit import RateLimiter
from vault.domain.records import StoredField, SubjectState
from vault.errors import (
    DataLoss,
    FailedPrecondition,
    NotFound,
    Reason,
    VaultError,
)
from vault.fields.base import Facts, FieldType, FieldValue
from vault.keys.hierarchy import DataKeyMaterial, KeyHierarchy, SubjectKeyMaterial
from vault.policy import Action, Policy, View

Clock = Callable[[], datetime]
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
VIEWS = {"masked": View.MASKED, "token": View.TOKEN, "plaintext": View.PLAINTEXT}
# What a missing thing answers; a denial that must not tell what exists answers the same.
FIELD_NOT_FOUND = "field not found"
SUBJECT_HAS_NO_FIELDS = "subject has no fields"
NO_FIELD_HOLDS_TOKEN = "no field holds this token"  # noqa: S105 -- a message, not a secret


def utc_now() -> datetime:
    return datetime.now(UTC)


class FieldAccess:
    """The state and helpers the use cases of ``Vault`` share (see ``vault.domain.vault``)."""

    def __init__(
        self,
        store: Store,
        keys: KeyHierarchy,
        indexer: BlindIndexer,
        policy: Callable[[], Policy],
        audit: AuditLog,
        *,
        limits: Limits | None = None,
        clock: Clock = utc_now,
        rng: RandomSource = os.urandom,
        hot_reads: FieldReader,
        guards: AccessGuards | None = None,
        rate_limiter: RateLimiter | None = None,
        enumeration: EnumerationWatch | None = None,
        idempotency_ttl: timedelta = DEFAULT_IDEMPOTENCY_TTL,
    ) -> None:
        if idempotency_ttl <= timedelta(0):
            raise ValueError("the idempotency lifetime must be positive")
        self._idempotency_ttl = idempotency_ttl
        self._store = store
        # Budgets come from the policy in force, so a reload changes them too.
        self.limiter = rate_limiter or RateLimiter(lambda: policy().limits)
        self.guards = guards or AccessGuards(store, policy, audit, clock, limiter=self.limiter)
        self.enumeration = enumeration or EnumerationWatch(lambda: policy().limits, audit)
        self._hot = hot_reads
        self._keys = keys
        self._indexer = indexer
        self._policy = policy
        self._audit = audit
        self.limits = limits or Limits()
        self._clock = clock
        self._rng = rng

    def close(self) -> None:
        self._hot.dispose()

    # -- policy and audit ------------------------------------------------------
    def _require(
        self,
        caller: str,
        action: Action,
        *,
        subject_id: str = "",
        field: str = "",
        field_type: str | None = None,
        view: View | None = None,
        purpose: str = "",
    ) -> None:
        require(
            self._policy(),
            self._audit,
            caller,
            action,
            subject_id=subject_id,
            field=field,
            field_type=field_type,
            view=view,
            purpose=purpose,
            limiter=self.limiter,
        )

    def _require_stored(
        self,
        caller: str,
        action: Action,
        stored: StoredField,
        *,
        missing: Callable[[], VaultError],
        sent_field: str | None,
        view: View | None = None,
        purpose: str = "",
        always_hide: bool = False,
    ) -> None:
        """The check against a stored field's type, which the request did not state.

        A caller with no grant that could read the field (in any view, for any
        purpose) is answered ``missing()`` -- exactly what it gets when there is
        no such field -- so a denial never tells it what exists.
        """
        policy = self._policy()
        if policy.allows(
            caller,
            action,
            field_type=stored.field_type,
            field=stored.field,
            view=view,
            purpose=purpose,
        ):
            return  # the hot path: whether to hide a denial is asked only of a denial
        hidden = always_hide or not policy.grants_any(
            caller, Action.GET, field_type=stored.field_type, field=stored.field
        )
        require_stored(
            policy,
            self._audit,
            caller,
            action,
            stored_type=stored.field_type,
            subject_id=stored.subject_id,
            field=stored.field,
            sent_field=sent_field,
            view=view,
            purpose=purpose,
            hidden=missing() if hidden else None,
            limiter=self.limiter,
        )

    # -- helpers ----------------------------------------------------------------------
    def _stored_field(self, tx: UnitOfWork, subject_id: str, field: str) -> StoredField:
        stored = tx.fields.get_field(subject_id, field)
        if stored is None:
            self._raise_missing(tx, subject_id, FIELD_NOT_FOUND)
            raise AssertionError("unreachable")
        return stored

    @staticmethod
    def _raise_missing(tx: UnitOfWork, subject_id: str, message: str) -> None:
        if tx.subjects.subject_state(subject_id) == SubjectState.SHREDDED:
            raise FailedPrecondition("subject is shredded", reason=Reason.SUBJECT_SHREDDED)
        raise NotFound(message)

    def _cipher(self, tx: UnitOfWork, stored: StoredField) -> FieldCipher:
        cipher = self._keys.cached_cipher(stored.dek_id)
        if cipher is not None and cipher.owner == (stored.subject_id, stored.field):
            return cipher
        material = tx.key_rows.data_key(stored.dek_id)
        if material is None:
            raise DataKeyGoneError
        return self._open_data_key(
            stored, material, tx.key_rows.subject_key_by_id(material.subject_key_id)
        )

    def _row_cipher(self, stored: StoredField) -> FieldCipher:
        """The data key of a row read on the hot path: cached, else opened cold."""
        cipher = self._keys.cached_cipher(stored.dek_id)
        if cipher is not None and cipher.owner == (stored.subject_id, stored.field):
            return cipher
        return self._cold_cipher(stored)

    def _cold_cipher(self, stored: StoredField) -> FieldCipher:
        """The data key of a row read on the hot path, which its key cache did not hold.

        Where the key tables are in the data's database, one statement reads
        the data key with its subject key; otherwise a unit of work on the key
        store reads them.
        """
        if not self._hot.holds_keys:
            with self._store.read() as tx:
                return self._cipher(tx, stored)
        found = self._hot.data_key(stored.dek_id)
        if found is None:
            raise DataKeyGoneError
        return self._open_data_key(stored, *found)

    def _open_data_key(
        self,
        stored: StoredField,
        material: DataKeyMaterial,
        subject_key: SubjectKeyMaterial | None,
    ) -> FieldCipher:
        if material.subject_id != stored.subject_id or material.field != stored.field:
            raise DataLoss("the field's data key belongs to another field")
        if subject_key is None:
            raise DataLoss("the subject key is missing")
        return self._keys.open_data_key(material, subject_key)

    @staticmethod
    def _view(stored: StoredField, cipher: FieldCipher, *, with_token: bool) -> FieldView:
        memo = cipher.view_memo
        if memo is not None and memo[0] == stored.view_ct:
            masked, token, facts = cast(tuple[str, str, Facts], memo[1])
        else:
            try:
                document = json.loads(cipher.open_view(stored.view_ct))
            except InvalidCiphertextError:
                raise DataLoss("a stored view failed authentication") from None
            masked, token, facts = document["m"], document["t"], Facts(**document["f"])
            # Reused while the row holds this very ciphertext (see FieldCipher.view_memo).
            cipher.view_memo = (stored.view_ct, (masked, token, facts))
        return FieldView(
            stored.subject_id,
            stored.field,
            FieldType(stored.field_type),
            masked,
            token if with_token else "",
            stored.version,
            stored.updated_at,
            facts,
        )

    @staticmethod
    def _value(stored: StoredField, cipher: FieldCipher) -> FieldValue:
        try:
            canonical = cipher.open_value(stored.value_ct)
        except InvalidCiphertextError:
            raise DataLoss("a stored value failed authentication") from None
        return fields.decode(FieldType(stored.field_type), canonical)


class DataKeyGoneError(Exception):
    """A row's data key vanished under a concurrent replace or delete."""
