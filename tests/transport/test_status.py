"""Vault errors to gRPC statuses: one code per class, the details clients act on (no I/O).

A client retries on UNAVAILABLE and waits on RetryInfo, fixes the fields a
BadRequest names, and pages someone on DATA_LOSS; a wrong code makes it do the
wrong one. A status is logged and sent over the wire, so it must never carry
a value: only field names, limits and fixed words.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import NoReturn

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from vault import errors
from vault.errors import FieldViolation
from vault.policy.limits import Budget
from vault.transport.status import (
    ERROR_DOMAIN,
    abort,
    abort_internal,
    code_of,
    status_proto,
)

SECRET = "+372 5123 4567"  # a value that must never appear in what a status carries

CODES: list[tuple[errors.VaultError, grpc.StatusCode]] = [
    (
        errors.InvalidArgument("value.phone", "is not a phone number"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (errors.NotFound("field 'phone' not found"), grpc.StatusCode.NOT_FOUND),
    (errors.Unauthenticated("no client certificate"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("view plaintext not granted"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.FailedPrecondition("subject is on hold"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AlreadyExists("idempotency key reused"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unavailable("database unavailable"), grpc.StatusCode.UNAVAILABLE),
    (errors.DataLoss("ciphertext failed authentication"), grpc.StatusCode.DATA_LOSS),
    (errors.ResourceExhausted("too many searches"), grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def unpack(status: status_pb2.Status) -> dict[str, object]:
    """Each detail by its type name: BadRequest, RetryInfo, ErrorInfo."""
    found: dict[str, object] = {}
    for detail in status.details:
        for message_type in (
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.ErrorInfo,
        ):
            if detail.Is(message_type.DESCRIPTOR):
                message = message_type()
                detail.Unpack(message)
                assert message_type.__name__ not in found, "a detail type appears twice"
                found[message_type.__name__] = message
    assert len(found) == len(status.details), "a detail of an unexpected type"
    return found


@pytest.mark.parametrize(("error", "code"), CODES, ids=lambda v: type(v).__name__)
def test_each_error_class_has_its_own_code(error: errors.VaultError, code: grpc.StatusCode) -> None:
    assert code_of(error) is code
    status = status_proto(error)
    assert status.code == code.value[0]
    assert status.message == error.message


def test_every_error_class_is_mapped_and_no_two_share_a_code() -> None:
    classes = set(errors.VaultError.__subclasses__())
    assert {type(error) for error, _ in CODES} == classes
    assert len({code for _, code in CODES}) == len(CODES)


def test_a_subclass_takes_its_parents_code() -> None:
    class HeldSubject(errors.FailedPrecondition):
        pass

    assert code_of(HeldSubject("subject is on hold")) is grpc.StatusCode.FAILED_PRECONDITION


def test_an_unmapped_vault_error_is_internal() -> None:
    assert code_of(errors.VaultError("something")) is grpc.StatusCode.INTERNAL


def test_an_invalid_argument_names_every_bad_field_in_a_bad_request() -> None:
    error = errors.InvalidArgument.many(
        [
            FieldViolation("items[0].value.phone", "is not a phone number"),
            FieldViolation("items[3].field", "is required"),
        ]
    )
    details = unpack(status_proto(error))
    assert set(details) == {"BadRequest", "ErrorInfo"}
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("items[0].value.phone", "is not a phone number"),
        ("items[3].field", "is required"),
    ]


def test_a_prefixed_invalid_argument_keeps_its_paths_under_the_prefix() -> None:
    error = errors.InvalidArgument("value.card.pan", "fails the Luhn check").prefixed("items[2].")
    bad_request = unpack(status_proto(error))["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == ["items[2].value.card.pan"]


def test_an_oversized_field_is_a_bad_request_on_that_field_with_no_retry() -> None:
    error = errors.ResourceExhausted("value is larger than 4096 bytes", field="value")
    details = unpack(status_proto(error))
    assert set(details) == {"BadRequest", "ErrorInfo"}
    assert reason_of(status_proto(error)) == "LIMIT_EXCEEDED"
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    [violation] = bad_request.field_violations
    assert (violation.field, violation.description) == ("value", error.message)


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        (2.5, timedelta(seconds=2, milliseconds=500)),
        (0.0001, timedelta(milliseconds=1)),  # never "retry now"
        (1.0001, timedelta(seconds=1, milliseconds=1)),  # rounded up, never early
        (0.0, timedelta(milliseconds=1)),
    ],
)
def test_a_rate_limit_says_how_long_to_wait_rounded_up_to_the_millisecond(
    retry_after: float, delay: timedelta
) -> None:
    error = errors.ResourceExhausted(
        "search budget spent", retry_after=retry_after, reason=errors.Reason.SEARCH_RATE_LIMITED
    )
    details = unpack(status_proto(error))
    assert set(details) == {"RetryInfo", "ErrorInfo"}
    retry = details["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToTimedelta() == delay
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("SEARCH_RATE_LIMITED", ERROR_DOMAIN)


def test_a_limit_where_waiting_does_not_help_names_the_reason_without_a_delay() -> None:
    error = errors.ResourceExhausted("enumeration alarm", reason=errors.Reason.ENUMERATION_ALARM)
    assert set(unpack(status_proto(error))) == {"ErrorInfo"}


DEFAULT_REASONS = {
    errors.InvalidArgument: "INVALID_ARGUMENT",
    errors.NotFound: "NOT_FOUND",
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.PermissionDenied: "POLICY_DENIED",
    errors.FailedPrecondition: "FAILED_PRECONDITION",
    errors.AlreadyExists: "IDEMPOTENCY_MISMATCH",
    errors.Unavailable: "UNAVAILABLE",
    errors.DataLoss: "TAMPERED",
    errors.ResourceExhausted: "LIMIT_EXCEEDED",
}


def reason_of(status: status_pb2.Status) -> str:
    info = unpack(status)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.domain == ERROR_DOMAIN
    return info.reason


@pytest.mark.parametrize(
    "error",
    [error for error, _ in CODES if not isinstance(error, errors.InvalidArgument)],
    ids=lambda error: type(error).__name__,
)
def test_other_errors_carry_only_their_default_reason(error: errors.VaultError) -> None:
    assert set(unpack(status_proto(error))) == {"ErrorInfo"}
    assert reason_of(status_proto(error)) == DEFAULT_REASONS[type(error)]


def test_a_raise_site_names_a_more_specific_reason() -> None:
    error = errors.FailedPrecondition("subject is shredded", reason=errors.Reason.SUBJECT_SHREDDED)
    assert reason_of(status_proto(error)) == "SUBJECT_SHREDDED"


def test_an_unmapped_vault_error_says_internal() -> None:
    assert reason_of(status_proto(errors.VaultError("something"))) == "INTERNAL"


def test_every_reason_is_upper_snake_case_and_its_own_name() -> None:
    for reason in errors.Reason:
        assert reason.value == reason.name
        assert reason.value.replace("_", "").isalpha() and reason.value.isupper()


def test_every_rate_limit_budget_has_its_reason() -> None:
    for budget in Budget:
        assert errors.Reason(f"{budget.name}_RATE_LIMITED")


def test_data_loss_alarms_the_operator_with_the_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="vault.transport"):
        status_proto(errors.DataLoss("wrapped key of subject s-1 failed authentication"))
    assert caplog.messages == [
        "data integrity failure: wrapped key of subject s-1 failed authentication"
    ]


def test_other_errors_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="vault.transport"):
        for error, code in CODES:
            if code is not grpc.StatusCode.DATA_LOSS:
                status_proto(error)
    assert caplog.records == []


# -- aborting a call ------------------------------------------------------------------------
class AbortedError(Exception):
    """What a real ServicerContext raises from ``abort_with_status``."""


class RecordingContext:
    """The one ServicerContext method ``abort`` uses, recording the status it got."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.status = status
        raise AbortedError


def aborted_with(call: object) -> status_pb2.Status:
    context = RecordingContext()
    with pytest.raises(AbortedError):
        call(context)  # type: ignore[operator]
    assert context.status is not None
    [(key, value)] = context.status.trailing_metadata
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(value)
    assert context.status.code.value[0] == status.code
    assert context.status.details == status.message
    return status


def test_abort_sends_the_status_and_its_details_in_the_trailers() -> None:
    error = errors.ResourceExhausted(
        "search budget spent", retry_after=1.0, reason=errors.Reason.SEARCH_RATE_LIMITED
    )
    status = aborted_with(lambda context: abort(context, error))
    assert status == status_proto(error)


def test_an_internal_error_says_internal_error_and_logs_only_the_exception_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = ValueError(f"could not parse {SECRET}")
    with caplog.at_level(logging.DEBUG, logger="vault.transport"):
        status = aborted_with(lambda context: abort_internal(context, exc, "GetField"))
    assert (status.code, status.message) == (code_pb2.INTERNAL, "internal error")
    assert set(unpack(status)) == {"ErrorInfo"}
    assert reason_of(status) == "INTERNAL"
    assert caplog.messages == ["internal error in GetField: ValueError"]
    assert SECRET not in caplog.text


def test_no_status_carries_a_value_only_field_names_and_limits() -> None:
    """Errors built the way the domain builds them: the value never enters a message."""
    built = [
        errors.InvalidArgument("value.phone", "is not a phone number"),
        errors.ResourceExhausted("value is larger than 4096 bytes", field="value"),
        errors.NotFound("field 'phone' not found"),
    ]
    for error in built:
        wire = status_proto(error).SerializeToString()
        assert SECRET.encode() not in wire
        assert b"5123" not in wire


def test_the_details_are_packed_as_any() -> None:
    status = status_proto(errors.InvalidArgument("value", "is required"))
    assert all(isinstance(detail, any_pb2.Any) for detail in status.details)
    assert status.details[0].type_url.endswith("google.rpc.BadRequest")
