"""The one place where vault errors become gRPC statuses.

Each ``VaultError`` subclass maps to exactly one status code. Every error
carries a ``google.rpc.ErrorInfo`` with domain ``pii-vault`` and the error's
``vault.errors.Reason`` (``INTERNAL`` for the unexpected); invalid arguments
also carry a ``google.rpc.BadRequest`` naming every bad field, and a rate
limit (``ResourceExhausted`` with ``retry_after``) a ``google.rpc.RetryInfo``
saying how long to wait. ``docs/errors.md`` lists the reasons. Messages
come from the domain, which names fields and never values; anything
unexpected becomes ``INTERNAL`` with a fixed message, and only the exception
*type* is logged, since a library's message may quote its input.
"""

from __future__ import annotations

import logging
import math
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from vault import errors

log = logging.getLogger("vault.transport")

ERROR_DOMAIN = errors.ERROR_DOMAIN
"""``google.rpc.ErrorInfo.domain`` of every error the vault details."""

_CODES: dict[type[errors.VaultError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def code_of(error: errors.VaultError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def status_proto(error: errors.VaultError) -> status_pb2.Status:
    """``google.rpc.Status`` for ``error``, with its details."""
    code = code_of(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    violations: list[tuple[str, str]] = []
    if isinstance(error, errors.InvalidArgument):
        violations = [(v.field, v.description) for v in error.violations]
    elif isinstance(error, errors.ResourceExhausted) and error.field:
        violations = [(error.field, error.message)]
    if violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
        status.details.append(detail)
    if isinstance(error, errors.ResourceExhausted) and error.retry_after is not None:
        _add_retry_info(status, error.retry_after)
    _add_error_info(status, error.reason)
    if code is grpc.StatusCode.DATA_LOSS:
        # An alarm for operators: tampering or corruption, never a plaintext.
        log.error("data integrity failure: %s", error.message)
    return status


def _add_retry_info(status: status_pb2.Status, retry_after: float) -> None:
    """RetryInfo: how long waiting helps, rounded up to whole milliseconds."""
    millis = max(1, math.ceil(retry_after * 1000))
    delay = duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status.details.append(retry)


def _add_error_info(status: status_pb2.Status, reason: errors.Reason) -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason.value, domain=ERROR_DOMAIN))
    status.details.append(info)


def abort(context: grpc.ServicerContext, error: errors.VaultError) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status_proto(error)))
    raise AssertionError("abort_with_status returned")


def abort_internal(context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
    log.error("internal error in %s: %s", method, type(exc).__name__)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
    _add_error_info(status, errors.Reason.INTERNAL)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")
