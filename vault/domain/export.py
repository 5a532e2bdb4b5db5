"""A subject's export for a data subject access request (DSAR)."""

from __future__ import annotations

from vault.audit.records import AuditAction, AuditRecord
from vault.domain.field_access import (
    SUBJECT_HAS_NO_FIELDS,
    DataKeyGoneError,
    FieldAccess,
)
from vault.domain.model import (
    FieldRead,
    check_purpose,
    check_subject_id,
)
from vault.errors import (
    NotFound,
    Unavailable,
)
from vault.policy import Action


class SubjectExport(FieldAccess):
    """ExportSubject: every field in plaintext, and the access history."""

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
                    missing=lambda: NotFound(SUBJECT_HAS_NO_FIELDS),
                    sent_field=None,
                    purpose=purpose,
                )
                self.guards.check_canary(caller, AuditAction.EXPORT, subject_id, stored.field)
            self.guards.check_consent(caller, AuditAction.EXPORT, subject_id, purpose)
            try:
                ciphers = [self._cipher(tx, s) for s in stored_fields]
            except DataKeyGoneError:
                raise Unavailable("the subject changed while it was read; retry") from None
        reads = [
            FieldRead(self._view(s, c, with_token=True), self._value(s, c))
            for s, c in zip(stored_fields, ciphers, strict=True)
        ]
        history = self._audit.events(subject_id)
        self._audit.record(
            caller,
            AuditAction.EXPORT,
            subject_id=subject_id,
            view="plaintext",
            purpose=purpose,
            detail=f"{len(reads)} fields",
        )
        return reads, history
