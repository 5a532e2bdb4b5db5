"""Reading fields: get (the hot path), batch, list, detokenize, find.

What must hold: plaintext is decrypted only for a granted ``plaintext`` view or a
detokenization, and every reveal and every denial is in the audit log before the
answer leaves; a masked or token read is audited in a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.constant_time import bytes_eq

from vault import fields
from vault.audit.records import AuditAction, AuditOutcome
from vault.crypto.envelope import FieldCipher
from vault.crypto.tokens import looks_like_token, token_digest
from vault.domain.field_access import (
    FIELD_NOT_FOUND,
    NO_FIELD_HOLDS_TOKEN,
    SUBJECT_HAS_NO_FIELDS,
    VIEWS,
    DataKeyGoneError,
    FieldAccess,
)
from vault.domain.model import (
    FieldRead,
    FieldView,
    GetRequest,
    SearchResult,
    check_field_name,
    check_purpose,
    check_subject_id,
)
from vault.domain.rate_limit import Budget
from vault.domain.records import StoredField
from vault.errors import (
    DataLoss,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    VaultError,
)
from vault.fields.base import FieldValue
from vault.policy import Action, FindAnswers, View


class FieldReads(FieldAccess):
    """GetField, BatchGetFields, ListFields, Detokenize and FindSubjects."""

    def get_field(
        self, caller: str, subject_id: str, field: str, view: str = "masked", purpose: str = ""
    ) -> FieldRead:
        wanted = self._check_get(caller, subject_id, field, view, purpose)
        stored = self._hot.get_field(subject_id, field)
        return self._get_read(caller, subject_id, field, wanted, purpose, stored)

    def _check_get(self, caller: str, subject_id: str, field: str, view: str, purpose: str) -> View:
        """What is decided before the lookup: the request's shape and the caller's grant."""
        check_subject_id(subject_id, self.limits)
        check_field_name(field, self.limits)
        check_purpose(purpose, self.limits)
        wanted = VIEWS.get(view)
        if wanted is None:
            raise InvalidArgument("view", "is not one of masked, token, plaintext")
        # A caller with no grant for this view and purpose at all is refused
        # before the lookup, so it cannot probe which fields exist.
        self._require(
            caller, Action.GET, subject_id=subject_id, field=field, view=wanted, purpose=purpose
        )
        return wanted

    def _get_read(
        self,
        caller: str,
        subject_id: str,
        field: str,
        wanted: View,
        purpose: str,
        row: StoredField | None,
    ) -> FieldRead:
        """The rest of a get, from the field's row as read (``None``: there is none)."""
        stored, cipher = self._locate(caller, subject_id, field, wanted, purpose, row)
        self.guards.check_canary(caller, AuditAction.GET, subject_id, field)
        self.guards.check_consent(caller, AuditAction.GET, subject_id, purpose)
        if wanted is View.PLAINTEXT:
            read = FieldRead(
                self._view(stored, cipher, with_token=True), self._value(stored, cipher)
            )
            # Audited once the value opened, and before it leaves.
            self._audit.record(
                caller,
                AuditAction.REVEAL,
                subject_id=subject_id,
                field=field,
                view="plaintext",
                purpose=purpose,
            )
            return read
        read = FieldRead(self._view(stored, cipher, with_token=wanted is View.TOKEN))
        # A masked or token read shows no value: its trace is appended in a batch.
        self._audit.record_later(
            caller, AuditAction.GET, subject_id=subject_id, field=field, view=wanted.value
        )
        return read

    def _locate(
        self,
        caller: str,
        subject_id: str,
        field: str,
        wanted: View,
        purpose: str,
        row: StoredField | None,
    ) -> tuple[StoredField, FieldCipher]:
        """The hot path: the row as read, the policy, and a cached data key if there is one."""
        stored = row
        for attempt in (1, 2):
            if attempt == 2:
                stored = self._hot.get_field(subject_id, field)
            if stored is None:
                with self._store.read() as tx:
                    self._raise_missing(tx, subject_id, FIELD_NOT_FOUND)
                raise AssertionError("unreachable")
            self._require_stored(
                caller,
                Action.GET,
                stored,
                missing=lambda: NotFound(FIELD_NOT_FOUND),
                sent_field=field,
                view=wanted,
                purpose=purpose,
            )
            try:
                return stored, self._row_cipher(stored)
            except DataKeyGoneError:
                # Replaced or deleted between the two reads: read the row again.
                continue
        raise DataLoss("the field's data key is missing")

    def batch_get(self, caller: str, items: Sequence[GetRequest]) -> list[FieldRead | VaultError]:
        """Each item answered as ``get_field`` would, with one row read for the whole batch."""
        if len(items) > self.limits.max_batch:
            raise ResourceExhausted(
                f"a batch holds at most {self.limits.max_batch} items", field="items"
            )
        results: list[FieldRead | VaultError] = []
        # Every denial and reveal of the batch is one audit write, made before it answers.
        with self._audit.request():
            checked: list[View | VaultError] = []
            for item in items:
                try:
                    checked.append(
                        self._check_get(
                            caller, item.subject_id, item.field, item.view, item.purpose
                        )
                    )
                except VaultError as error:
                    checked.append(error)
            rows = self._hot.get_fields(
                [
                    (item.subject_id, item.field)
                    for item, wanted in zip(items, checked, strict=True)
                    if isinstance(wanted, View)
                ]
            )
            self._open_cold_keys(caller, items, checked, rows)
            for item, wanted in zip(items, checked, strict=True):
                if not isinstance(wanted, View):
                    results.append(wanted)
                    continue
                try:
                    row = rows.get((item.subject_id, item.field))
                    results.append(
                        self._get_read(
                            caller, item.subject_id, item.field, wanted, item.purpose, row
                        )
                    )
                except VaultError as error:
                    results.append(error)
        return results

    def _open_cold_keys(
        self,
        caller: str,
        items: Sequence[GetRequest],
        checked: Sequence[View | VaultError],
        rows: dict[tuple[str, str], StoredField],
    ) -> None:
        """Open, from one statement, the data keys the cache lacks for the items granted.

        Only for rows the caller's policy lets it read in the view it asked
        for; a key that fails its checks is left closed, and its item answers
        why when it is read on its own.
        """
        if not self._hot.holds_keys:
            return
        policy = self._policy()
        cold: dict[str, StoredField] = {}  # first row naming each data key
        for item, wanted in zip(items, checked, strict=True):
            stored = rows.get((item.subject_id, item.field))
            if stored is None or not isinstance(wanted, View):
                continue
            cipher = self._keys.cached_cipher(stored.dek_id)
            if cipher is not None and cipher.owner == (stored.subject_id, stored.field):
                continue
            if policy.allows(
                caller,
                Action.GET,
                field_type=stored.field_type,
                field=stored.field,
                view=wanted,
                purpose=item.purpose,
            ):
                cold.setdefault(stored.dek_id, stored)
        if len(cold) < 2:
            return  # the item's own read costs the same
        for dek_id, (material, subject_key) in self._hot.data_keys(list(cold)).items():
            with contextlib.suppress(VaultError):
                self._open_data_key(cold[dek_id], material, subject_key)

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
            # Only fields the caller may see: a hidden canary must answer as hidden.
            for candidate in visible:
                self.guards.check_canary(caller, AuditAction.LIST, subject_id, candidate.field)
            try:
                ciphers = [self._cipher(tx, s) for s in visible]
            except DataKeyGoneError:
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
        # On the hot-read connections: no unit of work for one row and its key.
        stored = self._hot.field_by_token(token_digest(token))
        if stored is None:
            raise NotFound(NO_FIELD_HOLDS_TOKEN)
        self._require_stored(
            caller,
            Action.DETOKENIZE,
            stored,
            missing=lambda: NotFound(NO_FIELD_HOLDS_TOKEN),
            sent_field=None,
            purpose=purpose,
            always_hide=True,
        )
        try:
            cipher = self._row_cipher(stored)
        except DataKeyGoneError:
            raise NotFound(NO_FIELD_HOLDS_TOKEN) from None
        self.guards.check_canary(caller, AuditAction.DETOKENIZE, stored.subject_id, stored.field)
        self.guards.check_consent(caller, AuditAction.DETOKENIZE, stored.subject_id, purpose)
        view = self._view(stored, cipher, with_token=True)
        if not bytes_eq(view.token.encode(), token.encode()):
            raise DataLoss("the token does not match its field")
        value = self._value(stored, cipher)
        self._audit.record(
            caller,
            AuditAction.DETOKENIZE,
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
                caller,
                AuditAction.FIND,
                outcome=AuditOutcome.REFUSED,
                detail=f"{normal.type} search: {refused.reason}",
            )
            raise
        digest = self._indexer.digest(normal.type, normal.index_input)
        holders = self._hot.find_subjects(normal.type, digest)
        found = bool(holders)
        self._audit.record_later(
            caller,
            AuditAction.FIND,
            detail=f"field_type={normal.type} result={'hit' if found else 'miss'}",
        )
        if not found:
            self.enumeration.missed(caller, normal.type, normal.masked, digest)
        if policy.find_answers(caller, normal.type) is FindAnswers.SUBJECT_IDS:
            return SearchResult(found, tuple(holders))
        return SearchResult(found)
