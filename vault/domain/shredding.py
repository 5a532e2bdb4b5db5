"""Crypto-shredding: erase a subject by destroying its keys, and prove it.

ShredSubject deletes the subject key, every data key, the ciphertexts, the
blind-index rows and the tokens in one transaction, leaves a tombstone so a
lagging service cannot recreate the person, purges this process's key caches
and returns an Ed25519-signed receipt. Other replicas never serve the subject
again because every read starts from its (now deleted) field row; a cached
data key without its row opens nothing.

Legal holds: while a hold is set, ShredSubject, DeleteField and retention are
refused with FAILED_PRECONDITION. A refused ShredSubject is *queued*: it is
carried out when the hold is released, and repeating the same request_id
afterwards returns its receipt.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from vault.audit import chain as audit_chain
from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditAnchor, AuditOutcome
from vault.crypto.documents import (
    ANY_TYPE,
    DSAR_EXPORT,
    FILE_LABELS,
    SHRED_RECEIPT,
    DocumentError,
    SignedDocument,
    anchor_position,
    document_file,
    strict_loads,
    verify_object,
)
from vault.crypto.signing import ReceiptSigner
from vault.domain.authorization import require
from vault.domain.model import Limits, check_subject_id
from vault.domain.ports import Store, UnitOfWork, retry_on_write_conflict
from vault.domain.rate_limit import RateLimiter
from vault.domain.records import PendingShred, StoredReceipt, SubjectState
from vault.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LegalHold,
    NotFound,
    Reason,
    SubjectShredded,
)
from vault.keys.hierarchy import KeyHierarchy
from vault.policy import Action, Policy

MAX_REASON = 200
MAX_REQUEST_ID = 128


class SubjectHeldError(LegalHold):
    """The subject is under a legal hold: nothing of it may be destroyed."""


@dataclass(frozen=True)
class ShredReceipt:
    subject_id: str
    request_id: str
    reason: str
    shredded_at: datetime
    fields_destroyed: int
    key_ids: tuple[str, ...]
    # When no backup from before the shred opens any more; None when no
    # rotation schedule runs to make that true (the receipt promises no date).
    backup_horizon: datetime | None
    payload: bytes
    signature: bytes
    signing_key_id: str
    # The audit chain's head when the receipt was signed (None on a receipt from
    # before receipts carried one).
    audit_anchor: AuditAnchor | None = None

    @classmethod
    def from_signed(cls, payload: bytes, signature: bytes) -> ShredReceipt:
        """The receipt the vault signed (read from its own store: not verified here)."""
        body = strict_loads(payload)
        return cls(
            subject_id=body["subject_id"],
            request_id=body["request_id"],
            reason=body["reason"],
            shredded_at=datetime.fromisoformat(body["shredded_at"]),
            fields_destroyed=int(body["fields_destroyed"]),
            key_ids=tuple(body["key_ids"]),
            backup_horizon=_optional_time(body.get("backup_horizon")),
            payload=payload,
            signature=signature,
            signing_key_id=body["signing_key_id"],
            audit_anchor=anchor_from_fields(body.get("audit_anchor")),
        )


def anchor_fields(anchor: AuditAnchor) -> dict[str, object]:
    """How a signed document carries the chain head: ``{"sequence": n, "hash": "<hex>"}``."""
    return {"sequence": anchor.sequence, "hash": anchor.hash.hex()}


def anchor_from_fields(fields: object) -> AuditAnchor | None:
    """The anchor a signed document carries; None when it carries none (or a malformed one)."""
    position = anchor_position(fields)
    return None if position is None else AuditAnchor(*position)


_RECEIPT_FACTS = (
    "subject_id",
    "request_id",
    "reason",
    "shredded_at",
    "fields_destroyed",
    "key_ids",
    "backup_horizon",
)


def _is_typed(stored: StoredReceipt) -> bool:
    body = strict_loads(stored.payload)
    return isinstance(body, dict) and body.get("type") == SHRED_RECEIPT


def _optional_time(text: object) -> datetime | None:
    """A receipt's horizon: a time, or null when it promises none."""
    return None if text is None else datetime.fromisoformat(str(text))


def _optional_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _check_text(value: str, name: str, limit: int) -> None:
    if not value:
        raise InvalidArgument(name, "is required")
    if len(value) > limit:
        raise InvalidArgument(name, f"is longer than {limit} characters")
    if not value.isprintable():
        raise InvalidArgument(name, "must be printable text")


class Shredder:
    def __init__(
        self,
        store: Store,
        keys: KeyHierarchy,
        signer: ReceiptSigner,
        policy: Callable[[], Policy],
        audit: AuditLog,
        *,
        backup_horizon: Callable[[datetime], datetime | None],
        clock: Callable[[], datetime],
        limits: Limits | None = None,
        after_shred: Callable[[], None] = lambda: None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._keys = keys
        self._signer = signer
        self._policy = policy
        self._audit = audit
        self._horizon = backup_horizon
        self._clock = clock
        self._limits = limits or Limits()
        self._after_shred = after_shred

    @property
    def signer(self) -> ReceiptSigner:
        """The vault's Ed25519 key: it signs shred receipts and DSAR exports."""
        return self._signer

    def _require(self, caller: str, action: Action, subject_id: str) -> None:
        require(
            self._policy(),
            self._audit,
            caller,
            action,
            subject_id=subject_id,
            limiter=self._limiter,
        )

    # -- ShredSubject ------------------------------------------------------------
    def shred_subject(
        self, caller: str, subject_id: str, reason: str, request_id: str
    ) -> ShredReceipt:
        check_subject_id(subject_id, self._limits)
        _check_text(reason, "reason", MAX_REASON)
        _check_text(request_id, "request_id", MAX_REQUEST_ID)
        self._require(caller, Action.SHRED, subject_id)
        # Another call may insert the same tombstone or request_id first (a client
        # retrying while its first call runs, or another replica): the second pass
        # finds that call's receipt, or ALREADY_EXISTS.
        return retry_on_write_conflict(
            lambda: self._shred_subject(caller, subject_id, reason, request_id),
            attempts=2,
            what="a shred",
        )

    def _shred_subject(
        self, caller: str, subject_id: str, reason: str, request_id: str
    ) -> ShredReceipt:
        with self._store.read() as tx:
            earlier = tx.receipts.receipt_by_request(request_id)
            subject = tx.subjects.subject_record(subject_id)
        if earlier is not None:
            if earlier.subject_id != subject_id:
                raise AlreadyExists("request_id was already used for another subject")
            if _is_typed(earlier):
                return ShredReceipt.from_signed(earlier.payload, earlier.signature)
            with self._store.write() as tx:
                return self._as_issued(tx, earlier)
        if subject is not None and subject.legal_hold:
            self._queue_under_hold(caller, subject_id, reason, request_id)
        try:
            return self.shred(caller, subject_id, reason, request_id)
        except SubjectHeldError:  # the hold was set a moment ago
            self._queue_under_hold(caller, subject_id, reason, request_id)

    def _queue_under_hold(
        self, caller: str, subject_id: str, reason: str, request_id: str
    ) -> NoReturn:
        now = self._clock()
        with self._store.write() as tx:
            tx.receipts.queue_shred(PendingShred(subject_id, request_id, reason, caller, now))
        self._audit.record(
            caller,
            AuditAction.SHRED,
            subject_id=subject_id,
            outcome=AuditOutcome.REFUSED,
            status_code="FAILED_PRECONDITION",
            detail="legal hold; queued until release",
        )
        raise LegalHold(
            "subject is under a legal hold; the shred is queued and runs when the hold is released"
        )

    def shred(
        self,
        caller: str,
        subject_id: str,
        reason: str,
        request_id: str,
        *,
        untouched_since: datetime | None = None,
    ) -> ShredReceipt:
        """Destroy every key of the subject in one transaction; no policy check here.

        Used by ShredSubject (after its checks), by hold release and by retention.
        Retention passes ``untouched_since``: a subject written since then (or
        never written) is kept, decided under the subject's row lock, so a sweep
        never destroys a write that landed after it listed the subject.
        """
        now = self._clock()
        with self._store.write() as tx:
            subject = tx.subjects.subject_record(subject_id, lock=True)
            if subject is not None and subject.legal_hold:
                raise SubjectHeldError("subject is under a legal hold")
            if subject is not None and subject.state == SubjectState.SHREDDED:
                first = tx.receipts.receipt_for_subject(subject_id)
                if first is not None:
                    return self._as_issued(tx, first)
            if untouched_since is not None and (
                subject is None or subject.updated_at >= untouched_since
            ):
                raise FailedPrecondition(
                    "subject was written since it was found idle; kept",
                    reason=Reason.CONCURRENT_CHANGE,
                )
            subject_key = tx.key_rows.subject_key_for(subject_id)
            dek_ids = tx.key_rows.data_key_ids_of(subject_id)
            fields = tx.fields.count_fields(subject_id)
            # Keys first: with a separate key store they are committed first, and
            # a failure after that leaves ciphertexts that nothing can open.
            tx.key_rows.delete_subject_keys(subject_id)
            tx.subjects.delete_subject_data(subject_id)
            if subject is None:
                tx.subjects.insert_tombstone(subject_id, now)
            else:
                tx.subjects.mark_shredded(subject_id, now)
            key_ids = ([subject_key.key_id] if subject_key else []) + dek_ids
            signed = self._signer.sign_document(
                SHRED_RECEIPT,
                {
                    "subject_id": subject_id,
                    "request_id": request_id,
                    "reason": reason,
                    "shredded_at": now.isoformat(),
                    "fields_destroyed": fields,
                    "key_ids": key_ids,
                    "backup_horizon": _optional_iso(self._horizon(now)),
                    # The chain head as this transaction sees it: signed, so kept
                    # outside the database's control with the receipt.
                    "audit_anchor": anchor_fields(audit_chain.anchor(tx.audit)),
                },
            )
            stored = StoredReceipt(
                request_id, subject_id, signed.payload, signed.signature, self._signer.key_id
            )
            tx.receipts.insert_receipt(stored, now)
        if subject_key is not None:
            self._keys.forget_subject(subject_key.key_id, dek_ids)
        self._audit.record(
            caller, AuditAction.SHRED, subject_id=subject_id, detail=f"request {request_id}"
        )
        self._after_shred()
        return ShredReceipt.from_signed(stored.payload, stored.signature)

    def _as_issued(self, tx: UnitOfWork, stored: StoredReceipt) -> ShredReceipt:
        """A stored receipt as it is handed out again.

        One signed before receipts were typed documents (no ``type``) would be
        refused by every verifier now, so it is re-signed once in the typed
        form (the same facts, ``reissued_at``, and the chain head now as its
        anchor) and stored in place: later replays return it byte for byte.
        """
        if _is_typed(stored):
            return ShredReceipt.from_signed(stored.payload, stored.signature)
        body = strict_loads(stored.payload)
        fields: dict[str, object] = {name: body[name] for name in _RECEIPT_FACTS if name in body}
        fields["reissued_at"] = self._clock().isoformat()
        fields["audit_anchor"] = anchor_fields(audit_chain.anchor(tx.audit))
        signed = self._signer.sign_document(SHRED_RECEIPT, fields)
        reissued = StoredReceipt(
            stored.request_id,
            stored.subject_id,
            signed.payload,
            signed.signature,
            self._signer.key_id,
        )
        tx.receipts.reissue_receipt(reissued)
        return ShredReceipt.from_signed(reissued.payload, reissued.signature)

    # -- DSAR exports -----------------------------------------------------------------
    def sign_export(
        self,
        subject_id: str,
        purpose: str,
        fields: list[dict[str, Any]],
        access_history: list[dict[str, Any]],
    ) -> SignedDocument:
        """Sign a subject's export (its fields and access history, as JSON) as a DSAR export.

        Called after ``Vault.export_subject`` has authorised and audited the
        export; the document carries the chain head at signing time.
        """
        return self._signer.sign_document(
            DSAR_EXPORT,
            {
                "subject_id": subject_id,
                "purpose": purpose,
                "exported_at": self._clock().isoformat(),
                "fields": fields,
                "access_history": access_history,
                "audit_anchor": anchor_fields(self._audit.anchor()),
            },
        )

    # -- legal holds -----------------------------------------------------------------
    def set_legal_hold(self, caller: str, subject_id: str, hold: bool, reason: str) -> bool:
        check_subject_id(subject_id, self._limits)
        if hold:
            _check_text(reason, "reason", MAX_REASON)
        elif len(reason) > MAX_REASON:
            raise InvalidArgument("reason", f"is longer than {MAX_REASON} characters")
        self._require(caller, Action.HOLD, subject_id)
        now = self._clock()
        with self._store.write() as tx:
            subject = tx.subjects.subject_record(subject_id, lock=True)
            if subject is None:
                raise NotFound("subject not found")
            if subject.state == SubjectState.SHREDDED:
                raise SubjectShredded("subject is shredded")
            tx.subjects.set_legal_hold(subject_id, hold, reason, now)
            pending = None if hold else tx.receipts.pending_shred(subject_id)
        self._audit.record(
            caller,
            AuditAction.HOLD if hold else AuditAction.RELEASE,
            subject_id=subject_id,
            detail=reason,
        )
        if pending is not None:
            self.shred(pending.caller, subject_id, pending.reason, pending.request_id)
        return hold

    def check_not_held(self, subject_id: str) -> None:
        """For DeleteField and retention: refuse while a hold is set."""
        with self._store.read() as tx:
            subject = tx.subjects.subject_record(subject_id)
        if subject is not None and subject.legal_hold:
            raise SubjectHeldError("subject is under a legal hold")


def signed_document(kind: str, payload: bytes, signature: bytes) -> dict[str, object]:
    """A signed JSON file: the signed object, readable, under ``kind``, and the signature."""
    return document_file(kind, payload, signature)


def receipt_document(payload: bytes, signature: bytes) -> dict[str, object]:
    """The file a deletion workflow keeps: the signed fields, readable, and the signature."""
    return signed_document(FILE_LABELS[SHRED_RECEIPT], payload, signature)


def verify_receipt_document(
    document: object, public_pem: bytes, expected: str | Collection[str] = ANY_TYPE
) -> bool:
    """True only for an unedited document of an ``expected`` type signed by ``public_pem``.

    For a file, verify its text with ``vault.crypto.documents.verify_file``
    instead: a parsed object has already lost any duplicate key.
    """
    try:
        verify_object(document, public_pem, expected)
    except DocumentError:
        return False
    return True
