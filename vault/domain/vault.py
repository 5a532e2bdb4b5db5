"""The vault's use cases: put, read, list, detokenize, find and delete fields.

Each public method is one use case: it validates, asks the policy, runs one
transaction and answers with domain objects. Invariants kept here:

- plaintext is encrypted before it reaches storage and decrypted only for a
  granted ``plaintext`` view, a detokenization or an export;
- every reveal and every denial is in the audit log before the answer leaves;
- a ciphertext or data key that fails authentication, or belongs to another
  row, raises ``DataLoss``: never a wrong value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from cryptography.hazmat.primitives.constant_time import bytes_eq

from vault import fields
from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.crypto.blind_index import BlindIndexer
from vault.crypto.envelope import FieldCipher, InvalidCiphertextError, RandomSource
from vault.crypto.tokens import looks_like_token, new_token, token_digest
from vault.domain.authorization import require, require_stored
from vault.domain.enumeration import EnumerationWatch
from vault.domain.guards import AccessGuards
from vault.domain.model import (
    FieldRead,
    FieldView,
    GetRequest,
    Limits,
    SearchResult,
    check_field_name,
    check_idempotency_key,
    check_purpose,
    check_subject_id,
)
from vault.domain.ports import FieldReader, Store, UnitOfWork, WriteConflictError
from vault.domain.rate_limit import Budget, RateLimiter
from vault.domain.records import IdempotencyRecord, StoredField, SubjectRecord, SubjectState
from vault.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    VaultError,
)
from vault.fields.base import Facts, FieldType, FieldValue
from vault.keys.hierarchy import KeyHierarchy
from vault.policy import Action, FindAnswers, Policy, View

Clock = Callable[[], datetime]
DEFAULT_IDEMPOTENCY_TTL = timedelta(hours=24)
_VIEWS = {"masked": View.MASKED, "token": View.TOKEN, "plaintext": View.PLAINTEXT}
# What a missing thing answers; a denial that must not tell what exists answers the same.
FIELD_NOT_FOUND = "field not found"
SUBJECT_HAS_NO_FIELDS = "subject has no fields"
NO_FIELD_HOLDS_TOKEN = "no field holds this token"  # noqa: S105 -- a message, not a secret


def utc_now() -> datetime:
    return datetime.now(UTC)


class Vault:
    """The domain service behind every transport."""

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
        missing: VaultError,
        sent_field: str | None,
        view: View | None = None,
        purpose: str = "",
        always_hide: bool = False,
    ) -> None:
        """The check against a stored field's type, which the request did not state.

        A caller with no grant that could read the field (in any view, for any
        purpose) is answered ``missing`` -- exactly what it gets when there is
        no such field -- so a denial never tells it what exists.
        """
        policy = self._policy()
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
            hidden=missing if hidden else None,
            limiter=self.limiter,
        )

    # -- writes -------------------------------------------------------------------
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
        for attempt in (1, 2):
            try:
                view, outcome = self._put(caller, subject_id, field, normal, idempotency_key, now)
                break
            except WriteConflictError:
                # Two writers created the same subject, token or idempotency record
                # at once; the retry sees the winner's rows.
                if attempt == 2:
                    raise
            except _RefusedPutError as refused:
                self._audit_refused_put(caller, subject_id, field, refused)
                raise refused.error from None
        else:
            raise AssertionError("unreachable")
        self._audit.record_later(caller, "put", subject_id=subject_id, field=field, detail=outcome)
        return view if shows_token else replace(view, token="")

    def _audit_refused_put(
        self, caller: str, subject_id: str, field: str, refused: _RefusedPutError
    ) -> None:
        status = _STATUS_NAMES[type(refused.error)]
        outcome = "denied" if isinstance(refused.error, PermissionDenied) else "refused"
        if refused.replay:
            # A replay answered from its record: routine, like a masked read.
            self._audit.record_later(
                caller,
                "put",
                subject_id=subject_id,
                field=field,
                outcome=outcome,
                status_code=status,
                detail=refused.detail,
            )
            return
        self._audit.record(
            caller,
            "put",
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
                raise FailedPrecondition("subject is shredded; it cannot be written again")
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
                    raise AlreadyExists("the field exists; plant canaries on new fields only")
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
                    "the field written under this idempotency_key was replaced or deleted"
                ),
                "replay of a replaced or deleted write",
                replay=True,
            )
        try:
            cipher = self._cipher(tx, stored)
        except _DataKeyGoneError:
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
                    "subject is under a legal hold; none of its fields may be replaced"
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
            caller, Action.DELETE, found, missing=NotFound(FIELD_NOT_FOUND), sent_field=field
        )
        with self._store.read() as tx:
            subject = tx.subjects.subject_record(subject_id)
        if subject is not None and subject.legal_hold:
            self._audit.record(
                caller,
                "delete",
                subject_id=subject_id,
                field=field,
                outcome="refused",
                status_code="FAILED_PRECONDITION",
                detail="legal hold",
            )
            raise FailedPrecondition("subject is under a legal hold; nothing of it may be deleted")

        def same_type(_tx: UnitOfWork, stored: StoredField) -> bool:
            if stored.field_type != field_type:
                raise FailedPrecondition("the field changed type while it was deleted; retry")
            return True

        self._destroy_field(subject_id, field, same_type)
        self._audit.record(caller, "delete", subject_id=subject_id, field=field)
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
        self._audit.record("retention", "delete", subject_id=subject_id, field=field, detail=reason)
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
                raise FailedPrecondition("subject is under a legal hold")
            if not due(tx, stored):
                return False
            tx.fields.delete_field(subject_id, field)
            tx.delete_data_key_after_commit(stored.dek_id)
        self._keys.forget_data_key(stored.dek_id)
        # The destroyed key and ciphertext must not linger in SQLite's WAL either.
        self._store.checkpoint()
        return True

    # -- reads ----------------------------------------------------------------------
    def get_field(
        self, caller: str, subject_id: str, field: str, view: str = "masked", purpose: str = ""
    ) -> FieldRead:
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)
        check_purpose(purpose, self.limits)
        wanted = _VIEWS.get(view)
        if wanted is None:
            raise InvalidArgument("view", "is not one of masked, token, plaintext")
        # A caller with no grant for this view and purpose at all is refused
        # before the lookup, so it cannot probe which fields exist.
        self._require(
            caller, Action.GET, subject_id=subject_id, field=field, view=wanted, purpose=purpose
        )
        stored, cipher = self._locate(caller, subject_id, field, wanted, purpose)
        self.guards.check_canary(caller, "get", subject_id, field)
        self.guards.check_consent(caller, "get", subject_id, purpose)
        if wanted is View.PLAINTEXT:
            read = FieldRead(
                self._view(stored, cipher, with_token=True), self._value(stored, cipher)
            )
            # Audited once the value opened, and before it leaves.
            self._audit.record(
                caller,
                "reveal",
                subject_id=subject_id,
                field=field,
                view="plaintext",
                purpose=purpose,
            )
            return read
        read = FieldRead(self._view(stored, cipher, with_token=wanted is View.TOKEN))
        # A masked or token read shows no value: its trace is appended in a batch.
        self._audit.record_later(caller, "get", subject_id=subject_id, field=field, view=view)
        return read

    def _locate(
        self, caller: str, subject_id: str, field: str, wanted: View, purpose: str
    ) -> tuple[StoredField, FieldCipher]:
        """The hot path: one row read, the policy, and a cached data key if there is one."""
        for attempt in (1, 2):
            stored = self._hot.get_field(subject_id, field)
            if stored is None:
                with self._store.read() as tx:
                    self._raise_missing(tx, subject_id, FIELD_NOT_FOUND)
                raise AssertionError("unreachable")
            self._require_stored(
                caller,
                Action.GET,
                stored,
                missing=NotFound(FIELD_NOT_FOUND),
                sent_field=field,
                view=wanted,
                purpose=purpose,
            )
            cipher = self._keys.cached_cipher(stored.dek_id)
            if cipher is not None and cipher.owner == (subject_id, field):
                return stored, cipher
            try:
                with self._store.read() as tx:
                    return stored, self._cipher(tx, stored)
            except _DataKeyGoneError:
                # Replaced or deleted between the two reads: read the row again.
                if attempt == 2:
                    break
        raise DataLoss("the field's data key is missing")

    def batch_get(self, caller: str, items: Sequence[GetRequest]) -> list[FieldRead | VaultError]:
        if len(items) > self.limits.max_batch:
            raise ResourceExhausted(
                f"a batch holds at most {self.limits.max_batch} items", field="items"
            )
        results: list[FieldRead | VaultError] = []
        # Every denial and reveal of the batch is one audit write, made before it answers.
        with self._audit.request():
            for item in items:
                try:
                    results.append(
                        self.get_field(caller, item.subject_id, item.field, item.view, item.purpose)
                    )
                except VaultError as error:
                    results.append(error)
        return results

    def list_fields(self, caller: str, subject_id: str) -> list[FieldView]:
        check_subject_id(subject_id, self.limits)
        # Decided before the lookup, so a caller with no get grant learns nothing of the subject.
        self._require(caller, Action.GET, subject_id=subject_id)
        policy = self._policy()
        with self._store.read() as tx:
            stored_fields = tx.fields.list_fields(subject_id)
            if not stored_fields:
                self._raise_missing(tx, subject_id, SUBJECT_HAS_NO_FIELDS)
            visible = [
                s
                for s in stored_fields
                if policy.allows(caller, Action.GET, field_type=s.field_type, field=s.field)
            ]
            if not visible:
                # Fields it may not see are no answer: the same as a subject without fields.
                raise NotFound(SUBJECT_HAS_NO_FIELDS)
            for candidate in stored_fields:
                self.guards.check_canary(caller, "list", subject_id, candidate.field)
            try:
                ciphers = [self._cipher(tx, s) for s in visible]
            except _DataKeyGoneError:
                raise Unavailable("the subject changed while it was read; retry") from None
        return [self._view(s, c, with_token=False) for s, c in zip(visible, ciphers, strict=True)]

    def detokenize(self, caller: str, token: str, purpose: str) -> FieldRead:
        if not token:
            raise InvalidArgument("token", "is required")
        if not looks_like_token(token):
            raise InvalidArgument("token", "is not a vault token")
        check_purpose(purpose, self.limits)
        # Policy first: a caller that may detokenize nothing for this purpose learns
        # nothing of the token; one that may not detokenize its field's type is
        # answered exactly as for an unknown token.
        self._require(caller, Action.DETOKENIZE, purpose=purpose)
        with self._store.read() as tx:
            stored = tx.fields.field_by_token(token_digest(token))
            if stored is None:
                raise NotFound(NO_FIELD_HOLDS_TOKEN)
            self._require_stored(
                caller,
                Action.DETOKENIZE,
                stored,
                missing=NotFound(NO_FIELD_HOLDS_TOKEN),
                sent_field=None,
                purpose=purpose,
                always_hide=True,
            )
            try:
                cipher = self._cipher(tx, stored)
            except _DataKeyGoneError:
                raise NotFound(NO_FIELD_HOLDS_TOKEN) from None
        self.guards.check_canary(caller, "detokenize", stored.subject_id, stored.field)
        self.guards.check_consent(caller, "detokenize", stored.subject_id, purpose)
        view = self._view(stored, cipher, with_token=True)
        if not bytes_eq(view.token.encode(), token.encode()):
            raise DataLoss("the token does not match its field")
        value = self._value(stored, cipher)
        self._audit.record(
            caller,
            "detokenize",
            subject_id=stored.subject_id,
            field=stored.field,
            view="plaintext",
            purpose=purpose,
        )
        return FieldRead(view, value)

    def find_subjects(self, caller: str, value: FieldValue) -> SearchResult:
        """Whether a value is held (and by whom, if the caller's find grant says so).

        A search is a read: a hit or a miss tells the caller something about a
        value it may not see. So each one spends the caller's ``search`` budget,
        is audited (batched: caller, type, hit or miss, never the value), and a
        miss feeds the enumeration alarm, which refuses the caller's searches
        for a while once its misses look like guessing.
        """
        normal = fields.normalize(value, today=self._clock().date())
        if normal.index_input is None:
            raise InvalidArgument("value", f"{normal.type} values are not searchable")
        policy = self._policy()
        self._require(caller, Action.FIND, field_type=normal.type)
        try:
            self.enumeration.check(caller)
            self.limiter.take(caller, Budget.SEARCH)
        except ResourceExhausted as refused:
            # Counted, not written one by one: a refused search answers nothing.
            self._audit.count_later(
                caller, "find", outcome="refused", detail=f"{normal.type} search: {refused.reason}"
            )
            raise
        digest = self._indexer.digest(normal.type, normal.index_input)
        with self._store.read() as tx:
            holders = tx.index.find_subjects(normal.type, digest)
        found = bool(holders)
        self._audit.record_later(
            caller, "find", detail=f"field_type={normal.type} result={'hit' if found else 'miss'}"
        )
        if not found:
            self.enumeration.missed(caller, normal.type, normal.masked, digest)
        if policy.find_answers(caller, normal.type) is FindAnswers.SUBJECT_IDS:
            return SearchResult(found, tuple(holders))
        return SearchResult(found)

    def export_subject(
        self, caller: str, subject_id: str, purpose: str
    ) -> tuple[list[FieldRead], list[AuditRecord]]:
        """Every field in plaintext and the subject's access history, for a DSAR.

        Needs the ``export`` action for the purpose (``dsar`` by default) and
        is audited, like any reveal, before the answer leaves.
        """
        check_subject_id(subject_id, self.limits)
        check_purpose(purpose, self.limits)
        self._require(caller, Action.EXPORT, subject_id=subject_id, purpose=purpose)
        with self._store.read() as tx:
            stored_fields = tx.fields.list_fields(subject_id)
            if not stored_fields:
                self._raise_missing(tx, subject_id, SUBJECT_HAS_NO_FIELDS)
            for stored in stored_fields:
                self._require_stored(
                    caller,
                    Action.EXPORT,
                    stored,
                    missing=NotFound(SUBJECT_HAS_NO_FIELDS),
                    sent_field=None,
                    purpose=purpose,
                )
                self.guards.check_canary(caller, "export", subject_id, stored.field)
            self.guards.check_consent(caller, "export", subject_id, purpose)
            try:
                ciphers = [self._cipher(tx, s) for s in stored_fields]
            except _DataKeyGoneError:
                raise Unavailable("the subject changed while it was read; retry") from None
        reads = [
            FieldRead(self._view(s, c, with_token=True), self._value(s, c))
            for s, c in zip(stored_fields, ciphers, strict=True)
        ]
        history = self._audit.events(subject_id)
        self._audit.record(
            caller,
            "export",
            subject_id=subject_id,
            view="plaintext",
            purpose=purpose,
            detail=f"{len(reads)} fields",
        )
        return reads, history

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
            raise FailedPrecondition("subject is shredded")
        raise NotFound(message)

    def _cipher(self, tx: UnitOfWork, stored: StoredField) -> FieldCipher:
        cipher = self._keys.cached_cipher(stored.dek_id)
        if cipher is not None and cipher.owner == (stored.subject_id, stored.field):
            return cipher
        material = tx.key_rows.data_key(stored.dek_id)
        if material is None:
            raise _DataKeyGoneError
        if material.subject_id != stored.subject_id or material.field != stored.field:
            raise DataLoss("the field's data key belongs to another field")
        subject_key = tx.key_rows.subject_key_by_id(material.subject_key_id)
        if subject_key is None:
            raise DataLoss("the subject key is missing")
        return self._keys.open_data_key(material, subject_key)

    @staticmethod
    def _view(stored: StoredField, cipher: FieldCipher, *, with_token: bool) -> FieldView:
        try:
            document = json.loads(cipher.open_view(stored.view_ct))
        except InvalidCiphertextError:
            raise DataLoss("a stored view failed authentication") from None
        return FieldView(
            stored.subject_id,
            stored.field,
            FieldType(stored.field_type),
            document["m"],
            document["t"] if with_token else "",
            stored.version,
            stored.updated_at,
            Facts(**document["f"]),
        )

    @staticmethod
    def _value(stored: StoredField, cipher: FieldCipher) -> FieldValue:
        try:
            canonical = cipher.open_value(stored.value_ct)
        except InvalidCiphertextError:
            raise DataLoss("a stored value failed authentication") from None
        return fields.decode(FieldType(stored.field_type), canonical)


class _DataKeyGoneError(Exception):
    """A row's data key vanished under a concurrent replace or delete."""


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
