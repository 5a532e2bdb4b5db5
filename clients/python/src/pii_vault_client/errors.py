"""Typed exceptions, from the status code and the ``google.rpc.ErrorInfo`` reason.

Every error the vault sends carries an ``ErrorInfo`` (domain ``pii-vault``) whose
``reason`` is stable (docs/errors.md lists them). ``from_rpc_error`` picks the class
named for the reason (``LEGAL_HOLD`` -> ``LegalHold``), provided the status code is
the one that class belongs to; an unknown reason, or none (statuses gRPC makes
itself: a failed connection, an expired deadline), falls back to the class of the
status code, so ``except FailedPrecondition`` still catches a reason added later.

The client raises these instead of ``grpc.RpcError``, which stays reachable as
``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "pii-vault"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field (from ``google.rpc.BadRequest``): a path such as ``value.card.pan``."""

    field: str
    description: str


class VaultError(Exception):
    """A call that the vault (or gRPC) answered with an error status.

    ``code`` the ``grpc.StatusCode``; ``reason`` the ErrorInfo reason (``""`` when
    there is none); ``message`` the status message, for people; ``retry_after`` the
    ``RetryInfo`` delay in seconds, when waiting helps; ``field_violations`` the
    ``BadRequest`` entries; ``metadata`` the ErrorInfo metadata; ``method`` the RPC.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    #: The reasons this class stands for (looked up by ``from_rpc_error``).
    reasons: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        retry_after: float | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
        method: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.retry_after = retry_after
        self.field_violations = field_violations
        self.metadata = dict(metadata or {})
        self.method = method

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        return f"{where}{self.reason or self.code.name}: {self.message}"


# -- by status code ----------------------------------------------------------------------------
class InvalidArgument(VaultError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reasons = ("INVALID_ARGUMENT",)


class NotFound(VaultError):
    code = grpc.StatusCode.NOT_FOUND
    reasons = ("NOT_FOUND",)


class Unauthenticated(VaultError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reasons = ("UNAUTHENTICATED",)


class PermissionDenied(VaultError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(VaultError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reasons = ("FAILED_PRECONDITION",)


class AlreadyExists(VaultError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(VaultError):
    """Over a limit; ``retry_after`` is set when waiting helps. Also gRPC's own overload."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(VaultError):
    """Nothing was written; retrying (with backoff) may succeed."""

    code = grpc.StatusCode.UNAVAILABLE
    reasons = ("UNAVAILABLE",)


class DataLoss(VaultError):
    code = grpc.StatusCode.DATA_LOSS


class DeadlineExceeded(VaultError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(VaultError):
    code = grpc.StatusCode.CANCELLED


class Internal(VaultError):
    code = grpc.StatusCode.INTERNAL
    reasons = ("INTERNAL",)


# -- by reason ---------------------------------------------------------------------------------
class PolicyDenied(PermissionDenied):
    reasons = ("POLICY_DENIED",)


class PurposeRequired(PermissionDenied):
    reasons = ("PURPOSE_REQUIRED",)


class ConsentRequired(PermissionDenied):
    reasons = ("CONSENT_REQUIRED",)


class SubjectShredded(FailedPrecondition):
    reasons = ("SUBJECT_SHREDDED",)


class LegalHold(FailedPrecondition):
    """A hold blocks the change; a ``ShredSubject`` is queued and runs on release."""

    reasons = ("LEGAL_HOLD",)


class IdempotencyStale(FailedPrecondition):
    reasons = ("IDEMPOTENCY_STALE",)


class ConcurrentChange(FailedPrecondition):
    reasons = ("CONCURRENT_CHANGE",)


class IdempotencyMismatch(AlreadyExists):
    reasons = ("IDEMPOTENCY_MISMATCH",)


class FieldExists(AlreadyExists):
    reasons = ("FIELD_EXISTS",)


class RateLimited(ResourceExhausted):
    """A budget is spent; wait ``retry_after`` seconds."""

    reasons = (
        "SEARCH_RATE_LIMITED",
        "PUT_RATE_LIMITED",
        "DENIAL_RATE_LIMITED",
        "ENUMERATION_ALARM",
    )


class LimitExceeded(ResourceExhausted):
    reasons = ("LIMIT_EXCEEDED",)


class Sealed(Unavailable):
    reasons = ("SEALED",)


class Draining(Unavailable):
    reasons = ("DRAINING",)


class Tampered(DataLoss):
    reasons = ("TAMPERED",)


def _classes(base: type[VaultError]) -> list[type[VaultError]]:
    found = [base]
    for sub in base.__subclasses__():
        found += _classes(sub)
    return found


_BY_CODE: dict[grpc.StatusCode, type[VaultError]] = {
    cls.code: cls for cls in VaultError.__subclasses__()
}
_BY_REASON: dict[str, type[VaultError]] = {
    reason: cls for cls in _classes(VaultError) for reason in cls.reasons
}


def error_class(code: grpc.StatusCode, reason: str) -> type[VaultError]:
    """The class for ``reason`` if it belongs to ``code``, else the class for ``code``."""
    by_reason = _BY_REASON.get(reason)
    if by_reason is not None and by_reason.code == code:
        return by_reason
    return _BY_CODE.get(code, VaultError)


def status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` in the call's trailers (sync or asyncio), if any."""
    try:
        return rpc_status.from_call(error)
    except (ValueError, AttributeError):
        return None


def _details(status: status_pb2.Status | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for detail in status.details if status is not None else ():
        for message in (
            error_details_pb2.ErrorInfo(),
            error_details_pb2.RetryInfo(),
            error_details_pb2.BadRequest(),
        ):
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
                found[message.DESCRIPTOR.name] = message
    return found


def from_rpc_error(error: grpc.RpcError, method: str = "") -> VaultError:
    """The typed exception for a failed call (``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    details = _details(status_of(error))
    info = details.get("ErrorInfo")
    reason = info.reason if info is not None and info.domain == ERROR_DOMAIN else ""
    retry = details.get("RetryInfo")
    bad = details.get("BadRequest")
    return error_class(code, reason)(
        message,
        code=code,
        reason=reason,
        retry_after=retry.retry_delay.ToTimedelta().total_seconds() if retry is not None else None,
        field_violations=tuple(
            FieldViolation(v.field, v.description) for v in (bad.field_violations if bad else ())
        ),
        metadata=dict(info.metadata) if info is not None else None,
        method=method,
    )


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The call's ``google.rpc.ErrorInfo`` detail, whatever its domain; ``None`` without one."""
    info = _details(status_of(error)).get("ErrorInfo")
    return info if isinstance(info, error_details_pb2.ErrorInfo) else None


def error_reason(error: grpc.RpcError | VaultError) -> str:
    """The ErrorInfo reason of a failed call; ``""`` for statuses gRPC made itself."""
    if isinstance(error, VaultError):
        return error.reason
    return from_rpc_error(error).reason


def retry_delay(error: grpc.RpcError | VaultError) -> float | None:
    """The ``RetryInfo`` delay in seconds, when the vault says waiting helps."""
    if isinstance(error, VaultError):
        return error.retry_after
    return from_rpc_error(error).retry_after
