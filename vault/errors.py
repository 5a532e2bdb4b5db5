"""The one exception hierarchy of the vault.

Every error a caller can see is a ``VaultError``; the transport layer maps each
subclass to exactly one gRPC status code (``vault.transport.status``).
Messages and field violations name *fields*, never values: an error message
is logged and sent over the wire, so it must never carry personal data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: ``field`` is a path like ``value.card.pan``."""

    field: str
    description: str


class VaultError(Exception):
    """Base of every error the vault reports to a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(VaultError):
    """The request is malformed; ``violations`` names each bad field."""

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
    """The subject, field or token does not exist (or no longer exists)."""


class Unauthenticated(VaultError):
    """The caller presented no usable identity."""


class PermissionDenied(VaultError):
    """The caller's policy does not grant this action, view or purpose."""


class FailedPrecondition(VaultError):
    """The request is valid but the subject's state forbids it (hold, shredded)."""


class AlreadyExists(VaultError):
    """An idempotency key was reused with different content."""


class Unavailable(VaultError):
    """A dependency (database, key provider) is down; nothing was written."""


class DataLoss(VaultError):
    """A ciphertext or wrapped key failed authentication: tampering or corruption."""


class ResourceExhausted(VaultError):
    """A message, batch or value is over its limit, or the server is overloaded.

    ``field`` names the request field that is too large, when there is one;
    ``retry_after`` (seconds) is set when waiting helps (a rate limit), and
    the transport sends it as ``google.rpc.RetryInfo``; ``reason`` (an
    UPPER_SNAKE_CASE constant such as ``SEARCH_RATE_LIMITED``) says which
    limit, sent as ``google.rpc.ErrorInfo``.
    """

    def __init__(
        self,
        message: str,
        field: str = "",
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.field = field
        self.retry_after = retry_after
        self.reason = reason
