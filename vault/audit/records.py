"""The audit log's records: what one event says, and where it sits in the chain.

Plain values, shared by the audit chain (``vault.audit.chain``), the storage
that keeps them (``vault.storage.audit_events``) and the domain that reads
them; no layer's library leaks through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class AuditRecord:
    time: datetime
    caller: str
    action: str
    subject_id: str = ""
    field: str = ""
    view: str = ""
    purpose: str = ""
    outcome: str = "ok"
    status_code: str = "OK"
    detail: str = ""


@dataclass(frozen=True)
class ChainedEvent:
    sequence: int
    record: AuditRecord
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class AuditAnchor:
    """A chain position and its hash as recorded outside the database (a sink line,
    a receipt, an export): the chain must still hold exactly that event there."""

    sequence: int
    hash: bytes


@dataclass(frozen=True)
class AuditHead:
    """The stored chain head: the newest event's position and hash, and the scheme."""

    last_sequence: int
    last_hash: bytes
    scheme: str


class AuditAction(StrEnum):
    """What an audit event records was done; the values are stored and sent as they are."""

    PUT = "put"
    GET = "get"
    LIST = "list"
    DETOKENIZE = "detokenize"
    FIND = "find"
    DELETE = "delete"
    SHRED = "shred"
    EXPORT = "export"
    REVEAL = "reveal"
    HOLD = "hold"
    RELEASE = "release"
    CONSENT = "consent"
    CANARY = "canary"
    ROTATE = "rotate"
    REWRAP = "rewrap"
    RETIRE = "retire"
    KEY_STATUS = "key-status"
    AUDIT_LIST = "audit-list"
    AUDIT_VERIFY = "audit-verify"
    AUDIT_REKEY = "audit-rekey"
    AUTHENTICATE = "authenticate"
    """A call refused before its caller was known; the detail names the RPC."""
    DENIALS_SUPPRESSED = "denials-suppressed"
    """Denials past the caller's budget, counted instead of written one by one."""


class AuditOutcome(StrEnum):
    """How it ended; the values are stored and sent as they are."""

    OK = "ok"
    DENIED = "denied"
    REFUSED = "refused"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    ALARM = "alarm"
    CANARY = "canary"


Access = tuple[str, str, str, str, str, str, str, str, str]
"""One kind of access: caller, action, subject_id, field, view, purpose, outcome, status, detail."""


def access_record(access: Access, first: datetime, count: int) -> AuditRecord:
    """One record of ``count`` equal accesses (``count=N`` leads its detail when N > 1)."""
    caller, action, subject_id, field, view, purpose, outcome, status_code, detail = access
    if count > 1:
        detail = f"count={count}: {detail}" if detail else f"count={count}"
    return AuditRecord(
        first, caller, action, subject_id, field, view, purpose, outcome, status_code, detail
    )
