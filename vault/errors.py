"""The one exception hierarchy of the vault.

Every error a caller can see is a ``VaultError``; the transport layer maps each
subclass to exactly one gRPC status code (``vault.transport.status``).
Messages and field violations name *fields*, never values: an error message
is logged and sent over the wire, so it must never carry personal data.

Every error also carries a ``Reason``: a stable UPPER_SNAKE_CASE constant sent
as ``google.rpc.ErrorInfo.reason`` (domain ``pii-vault``), so that callers
branch on reasons, never on message text. Each subclass has a default reason;
a raise site passes a more specific one (``reason=Reason.CONCURRENT_CHANGE``), or
raises a subclass that has it (``LegalHold``, ``SubjectShredded``).
``docs/errors.md`` lists every reason in one table (a test keeps the two in
step). Where the vault answers "does not exist" and "exists, but you may not
know" alike, the reason must be alike too: ``NotFound`` has one reason only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ERROR_DOMAIN = "pii-vault"
"""``google.rpc.ErrorInfo.domain`` of every error the vault sends."""


class Reason(enum.StrEnum):
    """``google.rpc.ErrorInfo.reason`` of every error the vault sends; names are stable."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    POLICY_DENIED = "POLICY_DENIED"
    PURPOSE_REQUIRED = "PURPOSE_REQUIRED"
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    NOT_FOUND = "NOT_FOUND"
    SUBJECT_SHREDDED = "SUBJECT_SHREDDED"
    LEGAL_HOLD = "LEGAL_HOLD"
    IDEMPOTENCY_STALE = "IDEMPOTENCY_STALE"
    CONCURRENT_CHANGE = "CONCURRENT_CHANGE"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_MISMATCH"
    FIELD_EXISTS = "FIELD_EXISTS"
    SEARCH_RATE_LIMITED = "SEARCH_RATE_LIMITED"
    PUT_RATE_LIMITED = "PUT_RATE_LIMITED"
    DENIAL_RATE_LIMITED = "DENIAL_RATE_LIMITED"
    ENUMERATION_ALARM = "ENUMERATION_ALARM"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    SEALED = "SEALED"
    DRAINING = "DRAINING"
    UNAVAILABLE = "UNAVAILABLE"
    TAMPERED = "TAMPERED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: ``field`` is a path like ``value.card.pan``."""

    field: str
    description: str


class VaultError(Exception):
    """Base of every error the vault reports to a caller; ``reason`` says which, for machines."""

    default_reason = Reason.INTERNAL

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = self.default_reason if reason is None else reason


class InvalidArgument(VaultError):
    """The request is malformed; ``violations`` names each bad field."""

    default_reason = Reason.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, description),)

    @classmethod
    def many(cls, violations: list[FieldViolation]) -> InvalidArgument:
        if not violations:
            raise ValueError("at least one violation is required")
        error = cls(violations[0].field, violations[0].description)
        error.violations = tuple(violations)
        error.message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        error.args = (error.message,)
        return error

    def prefixed(self, prefix: str) -> InvalidArgument:
        """The same violations with field paths under ``prefix`` (``items[3].``)."""
        return InvalidArgument.many(
            [FieldViolation(prefix + v.field, v.description) for v in self.violations]
        )


class NotFound(VaultError):
    """The subject, field or token does not exist (or no longer exists).

    Its reason is always ``NOT_FOUND``: a hidden denial is answered with a
    ``NotFound`` worded as the missing thing would be, and a more specific
    reason must not tell the two apart.
    """

    default_reason = Reason.NOT_FOUND

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Unauthenticated(VaultError):
    """The caller presented no usable identity."""

    default_reason = Reason.UNAUTHENTICATED


class PermissionDenied(VaultError):
    """The caller's policy does not grant this action, view or purpose."""

    default_reason = Reason.POLICY_DENIED


class FailedPrecondition(VaultError):
    """The request is valid but the subject's state forbids it (hold, shredded)."""

    default_reason = Reason.FAILED_PRECONDITION


class SubjectShredded(FailedPrecondition):
    """The subject was crypto-shredded: nothing of it is read, written or held again."""

    default_reason = Reason.SUBJECT_SHREDDED


class LegalHold(FailedPrecondition):
    """The subject is under a legal hold: nothing of it may be replaced or destroyed."""

    default_reason = Reason.LEGAL_HOLD


class AlreadyExists(VaultError):
    """An idempotency key was reused with different content."""

    default_reason = Reason.IDEMPOTENCY_MISMATCH


class Unavailable(VaultError):
    """A dependency (database, key provider) is down; nothing was written."""

    default_reason = Reason.UNAVAILABLE


class DataLoss(VaultError):
    """A ciphertext or wrapped key failed authentication: tampering or corruption."""

    default_reason = Reason.TAMPERED


class ResourceExhausted(VaultError):
    """A message, batch or value is over its limit, or the server is overloaded.

    ``field`` names the request field that is too large, when there is one;
    ``retry_after`` (seconds) is set when waiting helps (a rate limit), and
    the transport sends it as ``google.rpc.RetryInfo``; ``reason`` (such as
    ``SEARCH_RATE_LIMITED``; ``LIMIT_EXCEEDED`` by default) says which limit.
    """

    default_reason = Reason.LIMIT_EXCEEDED

    def __init__(
        self,
        message: str,
        field: str = "",
        retry_after: float | None = None,
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.field = field
        self.retry_after = retry_after
