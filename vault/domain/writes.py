"""Writing fields: put (with idempotent retries), delete, retention's delete, canaries.

What must hold: plaintext is encrypted before it reaches storage; a replaced or
deleted value's data key is destroyed once the rows naming it are committed, and
no idempotency record can confirm a value that is gone; refusals are audited
before the answer leaves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.constant_time import bytes_eq

from vault import fields
from vault.audit.records import AuditAction, AuditOutcome
from vault.crypto.tokens import new_token, token_digest
from vault.domain.field_access import (
    FIELD_NOT_FOUND,
    DataKeyGoneError,
    FieldAccess,
)
from vault.domain.model import (
    FieldView,
    check_field_name,
    check_idempotency_key,
    check_subject_id,
)
from vault.domain.ports import UnitOfWork, retry_on_write_conflict
from vault.domain.rate_limit import Budget
from vault.domain.records import IdempotencyRecord, StoredField, SubjectRecord, SubjectState
from vault.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    LegalHold,
    NotFound,
    PermissionDenied,
    Reason,
    SubjectShredded,
    VaultError,
)
from vault.fields.base import Facts, FieldValue
from vault.policy import Action, View


class FieldWrites(FieldAccess):
    """PutField, DeleteField and what shares their write path."""

    def put_field(
        self,
        caller: str,
        subject_id: str,
        field: str,
        value: FieldValue,
        idempotency_key: str = "",
    ) -> FieldView:
        """Store a value under a new data key, or answer a retry of the caller's own write.

        What must hold:

        - Every put, replay or not, spends the caller's ``put`` budget and leaves
          an audit event (batched, never a value): ``created``, ``replaced`` or
          ``replay``.
        - An idempotency record answers only the caller that made it, until it
          expires, and only while the value it wrote stands. Its fingerprint is
          keyed under that value's data key: once the value is replaced, deleted
          or shredded, no answer depends on a guess of it (a retry then gets
          ``FAILED_PRECONDITION`` whatever it carries, and never writes the old
          value over a newer one or back after a delete).
        - Overwriting is refused under a legal hold, as deleting is; overwriting
          with a value of another type needs the delete grant on the field. Both
          are decided under the subject's row lock inside the write, so a hold
          set concurrently cannot slip in between; both refusals are audited
          before the answer leaves.
        """
        self.limiter.take(caller, Budget.PUT)
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)
        check_idempotency_key(idempotency_key, self.limits)
        now = self._clock()
        field_type = fields.type_of(value)
        # Authorise before validating, so a caller learns nothing about values
        # of a type it may not store.
        self._require(caller, Action.PUT, subject_id=subject_id, field=field, field_type=field_type)
        normal = fields.normalize(value, today=now.date())
        shows_token = self._policy().allows(
            caller, Action.GET, field_type=field_type, field=field, view=View.TOKEN
        )
        try:
            # Two writers may create the same subject, token or idempotency record
            # at once; the retry sees the winner's rows.
            view, outcome = retry_on_write_conflict(
                lambda: self._put(caller, subject_id, field, normal, idempotency_key, now),
                attempts=2,
                what="a put",
            )
        except _RefusedPutError as refused:
            self._audit_refused_put(caller, subject_id, field, refused)
            raise refused.error from None
        self._audit.record_later(
            caller, AuditAction.PUT, subject_id=subject_id, field=field, detail=outcome
        )
        return view if shows_token else replace(view, token="")

    def _audit_refused_put(
        self, caller: str, subject_id: str, field: str, refused: _RefusedPutError
    ) -> None:
        status = _STATUS_NAMES[type(refused.error)]
        outcome = (
            AuditOutcome.DENIED
            if isinstance(refused.error, PermissionDenied)
            else AuditOutcome.REFUSED
        )
        if refused.replay:
            # A replay answered from its record: routine, like a masked read.
            self._audit.record_later(
                caller,
                AuditAction.PUT,
                subject_id=subject_id,
                field=field,
                outcome=outcome,
                status_code=status,
                detail=refused.detail,
            )
            return
        self._audit.record(
            caller,
            AuditAction.PUT,
            subject_id=subject_id,
            field=field,
            outcome=outcome,
            status_code=status,
            detail=refused.detail,
        )

    def _put(
        self,
        caller: str,
        subject_id: str,
        field: str,
        normal: fields.Normalized,
        idempotency_key: str,
        now: datetime,
        *,
        create_only: bool = False,
    ) -> tuple[FieldView, str]:
        """One write transaction; returns the view and ``created``, ``replaced`` or ``replay``.

        Refusals are raised as ``_RefusedPutError`` so that their audit event is
        written after this transaction has rolled back (on SQLite a second
        writer inside it would wait for itself).
        """
        replaced_dek: str | None = None
        with self._store.write() as tx:
            # Locked first: a hold, a concurrent put or delete of this subject
            # commits before or after this whole write, never in the middle.
            subject = tx.subjects.subject_record(subject_id, lock=True)
            if subject is not None and subject.state == SubjectState.SHREDDED:
                raise SubjectShredded("subject is shredded; it cannot be written again")
            if idempotency_key:
                earlier = tx.idempotency.idempotency_record(
                    caller, subject_id, idempotency_key, now
                )
                if earlier is not None:
                    return self._replay(tx, caller, subject_id, field, normal, earlier), "replay"
            old = tx.fields.get_field(subject_id, field)
            if old is not None:
                if create_only:
                    # A canary is a decoy: never planted over a real value.
                    raise AlreadyExists(
                        "the field exists; plant canaries on new fields only",
                        reason=Reason.FIELD_EXISTS,
                    )
                self._check_overwrite(caller, subject, old, normal)
            if subject is None:
                tx.subjects.insert_subject(subject_id, now)
                subject_key = self._keys.new_subject_key(subject_id)
                tx.key_rows.insert_subject_key(subject_key, now)
            else:
                found = tx.key_rows.subject_key_for(subject_id)
                if found is None:
                    raise DataLoss("the subject key is missing")
                subject_key = found
                tx.subjects.touch_subject(subject_id, now)
            material, cipher = self._keys.new_data_key(subject_key, field)
            tx.key_rows.insert_data_key(material, now)
            token = new_token(self._rng)
            version = 1 if old is None else old.version + 1
            view = FieldView(
                subject_id, field, normal.type, normal.masked, token, version, now, normal.facts
            )
            stored = StoredField(
                subject_id,
                field,
                normal.type,
                view.version,
                material.dek_id,
                cipher.seal_value(normal.canonical),
                cipher.seal_view(_encode_view(normal.masked, token, normal.facts)),
                now,
            )
            expires_on = _expiry(normal.facts)
            if old is None:
                tx.fields.insert_field(stored, token_digest(token), now, expires_on)
            else:
                tx.fields.replace_field(stored, token_digest(token), expires_on)
                # No record may confirm the value that is being destroyed.
                tx.idempotency.disarm_idempotency(subject_id, field)
                replaced_dek = old.dek_id
                tx.delete_data_key_after_commit(old.dek_id)
            digest = (
                None
                if normal.index_input is None
                else self._indexer.digest(normal.type, normal.index_input)
            )
            tx.index.put_index(subject_id, field, normal.type, digest)
            if idempotency_key:
                tx.idempotency.remember_idempotency(
                    caller,
                    subject_id,
                    idempotency_key,
                    IdempotencyRecord(
                        field,
                        material.dek_id,
                        cipher.fingerprint(caller, normal.type, normal.canonical),
                        view.version,
                        now + self._idempotency_ttl,
                    ),
                    now,
                )
        if replaced_dek is None:
            return view, "created"
        self._keys.forget_data_key(replaced_dek)
        # The destroyed key and ciphertext must not linger in SQLite's WAL either.
        self._store.checkpoint()
        return view, "replaced"

    def _replay(
        self,
        tx: UnitOfWork,
        caller: str,
        subject_id: str,
        field: str,
        normal: fields.Normalized,
        earlier: IdempotencyRecord,
    ) -> FieldView:
        """Answer a retry from the caller's record, without writing anything.

        The answer depends on the guessed content only while the value the
        record wrote still stands, and then only for the caller who wrote it.
        """
        stored = tx.fields.get_field(subject_id, earlier.field)
        if (
            earlier.fingerprint is None
            or stored is None
            or stored.dek_id != earlier.dek_id
            or stored.version != earlier.version
        ):
            raise _RefusedPutError(
                FailedPrecondition(
                    "the field written under this idempotency_key was replaced or deleted",
                    reason=Reason.IDEMPOTENCY_STALE,
                ),
                "replay of a replaced or deleted write",
                replay=True,
            )
        try:
            cipher = self._cipher(tx, stored)
        except DataKeyGoneError:
            raise DataLoss("the field's data key is missing") from None
        fingerprint = cipher.fingerprint(caller, normal.type, normal.canonical)
        # Both checks are made whatever the first says: one compare of the MAC.
        same_field = earlier.field == field
        if not (bytes_eq(fingerprint, earlier.fingerprint) and same_field):
            raise _RefusedPutError(
                AlreadyExists("idempotency_key was already used with other content"),
                "replay with other content",
                replay=True,
            )
        return self._view(stored, cipher, with_token=True)

    def _check_overwrite(
        self,
        caller: str,
        subject: SubjectRecord | None,
        old: StoredField,
        normal: fields.Normalized,
    ) -> None:
        """A put over an existing value destroys it: refused when a delete would be."""
        if subject is not None and subject.legal_hold:
            raise _RefusedPutError(
                FailedPrecondition(
                    "subject is under a legal hold; none of its fields may be replaced",
                    reason=Reason.LEGAL_HOLD,
                ),
                "legal hold",
            )
        if old.field_type != normal.type and not self._policy().allows(
            caller, Action.DELETE, field_type=old.field_type, field=old.field
        ):
            # Names the request only: the stored type is not the caller's to learn.
            raise _RefusedPutError(
                PermissionDenied(
                    f"no grant allows caller {caller!r} to replace field {old.field!r} "
                    "with a value of another type"
                ),
                "type change without the delete grant",
            )

    def purge_expired_idempotency(self) -> int:
        """Delete the idempotency records past their lifetime; returns how many.

        Expired records already answer nothing (a lookup skips them); this only
        reclaims their rows. The maintenance loop calls it.
        """
        with self._store.write() as tx:
            return tx.idempotency.purge_expired_idempotency(self._clock())

    def delete_field(self, caller: str, subject_id: str, field: str) -> datetime:
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)
        now = self._clock()
        self._require(caller, Action.DELETE, subject_id=subject_id, field=field)
        with self._store.read() as tx:
            found = self._stored_field(tx, subject_id, field)
        field_type = found.field_type
        # Asked outside the write transaction: a denial is audited in a write of its own.
        self._require_stored(
            caller,
            Action.DELETE,
            found,
            missing=lambda: NotFound(FIELD_NOT_FOUND),
            sent_field=field,
        )
        with self._store.read() as tx:
            subject = tx.subjects.subject_record(subject_id)
        if subject is not None and subject.legal_hold:
            self._audit.record(
                caller,
                AuditAction.DELETE,
                subject_id=subject_id,
                field=field,
                outcome=AuditOutcome.REFUSED,
                status_code="FAILED_PRECONDITION",
                detail="legal hold",
            )
            raise LegalHold("subject is under a legal hold; nothing of it may be deleted")

        def same_type(_tx: UnitOfWork, stored: StoredField) -> bool:
            if stored.field_type != field_type:
                raise FailedPrecondition(
                    "the field changed type while it was deleted; retry",
                    reason=Reason.CONCURRENT_CHANGE,
                )
            return True

        self._destroy_field(subject_id, field, same_type)
        self._audit.record(caller, AuditAction.DELETE, subject_id=subject_id, field=field)
        return now

    def delete_field_for_retention(
        self, subject_id: str, field: str, *, expired_before: date, reason: str
    ) -> bool:
        """DeleteField for the retention sweep: no caller, so no policy check.

        The field goes only if its stored last valid day is still before
        ``expired_before``, read again under the subject's row lock: a card
        replaced by a valid one since the sweep listed it is kept (False).
        A legal hold raises ``FailedPrecondition``; a missing field ``NotFound``.
        """
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)

        def still_expired(tx: UnitOfWork, _stored: StoredField) -> bool:
            expires_on = tx.fields.field_expires_on(subject_id, field)
            return expires_on is not None and expires_on < expired_before

        if not self._destroy_field(subject_id, field, still_expired):
            return False
        self._audit.record(
            "retention", AuditAction.DELETE, subject_id=subject_id, field=field, detail=reason
        )
        return True

    def _destroy_field(
        self, subject_id: str, field: str, due: Callable[[UnitOfWork, StoredField], bool]
    ) -> bool:
        """Delete a field's row, index row and data key if ``due`` says so; one transaction.

        The subject row is locked first, so the hold, the field and ``due`` are
        read after any concurrent write to the subject has committed.
        """
        with self._store.write() as tx:
            subject = tx.subjects.subject_record(subject_id, lock=True)
            stored = self._stored_field(tx, subject_id, field)
            if subject is not None and subject.legal_hold:
                raise LegalHold("subject is under a legal hold")
            if not due(tx, stored):
                return False
            tx.fields.delete_field(subject_id, field)
            tx.delete_data_key_after_commit(stored.dek_id)
        self._keys.forget_data_key(stored.dek_id)
        # The destroyed key and ciphertext must not linger in SQLite's WAL either.
        self._store.checkpoint()
        return True

    def plant_canary(self, caller: str, subject_id: str, field: str, value: FieldValue) -> None:
        """Store a decoy value and mark it: any later read of it sounds the alarm."""
        self._require(caller, Action.ADMIN, subject_id=subject_id, field=field)
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)
        now = self._clock()
        normal = fields.normalize(value, today=now.date())
        # Decided inside the write: a canary is never planted over a real value.
        self._put(caller, subject_id, field, normal, "", now, create_only=True)
        self.guards.plant_canary(caller, subject_id, field)


class _RefusedPutError(Exception):
    """A put refused inside its write transaction, to be audited once that rolled back."""

    def __init__(self, error: VaultError, detail: str, *, replay: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.detail = detail
        self.replay = replay


_STATUS_NAMES: dict[type[VaultError], str] = {
    AlreadyExists: "ALREADY_EXISTS",
    FailedPrecondition: "FAILED_PRECONDITION",
    PermissionDenied: "PERMISSION_DENIED",
}


def _expiry(facts: Facts) -> date | None:
    """The last day a card is valid (the end of its expiry month)."""
    if not facts.card_exp_year:
        return None
    year, month = facts.card_exp_year, facts.card_exp_month
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def _encode_view(masked: str, token: str, facts: Facts) -> bytes:
    present = {k: v for k, v in facts.__dict__.items() if v}
    return json.dumps({"m": masked, "t": token, "f": present}, separators=(",", ":")).encode()
