"""Bad input, end to end: the exact status code, a BadRequest naming the field, no echo.

Every kind of bad input is its own case. Each asserts what a calling
engineer relies on: the gRPC status code; a ``google.rpc.BadRequest`` in the
rich status whose violations name the offending request field by path; and
that neither the status message nor any violation description repeats the
bad value (an error is logged and sent over the wire; a value must not be).
The last tests check that the server shrugged all of it off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type import date_pb2, postal_address_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

Call = Callable[[VaultClient, str], object]
"""Makes one RPC as a client, for a fresh subject id."""


@dataclass(frozen=True)
class BadInput:
    call: Call
    field: str
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    secrets: tuple[str, ...] = ()
    """Strings of the bad input that must not come back in the error."""
    caller: str = "registration"


def put(value: pb.FieldValue | None, field: str = "profile.value", **request: str) -> Call:
    def call(client: VaultClient, subject_id: str) -> object:
        message = pb.PutFieldRequest(subject_id=subject_id, field=field, **request)
        if value is not None:
            message.value.CopyFrom(value)
        return client.vault.PutField(message, timeout=10)

    return call


def get(**request: object) -> Call:
    def call(client: VaultClient, subject_id: str) -> object:
        fields: dict[str, object] = {"subject_id": subject_id, "field": "phone", **request}
        return client.vault.GetField(pb.GetFieldRequest(**fields), timeout=10)

    return call


def phone(number: str, region: str = "") -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number, default_region=region))


def card(pan: str, month: int = 12, year: int = 2030, holder: str = "") -> pb.FieldValue:
    return pb.FieldValue(
        card=pb.PaymentCard(pan=pan, exp_month=month, exp_year=year, holder_name=holder)
    )


def token(provider: str, value: str) -> pb.FieldValue:
    return pb.FieldValue(payment_token=pb.PaymentToken(provider=provider, token=value))


def address(region: str, lines: list[str], locality: str = "Tallinn") -> pb.FieldValue:
    return pb.FieldValue(
        address=postal_address_pb2.PostalAddress(
            region_code=region, address_lines=lines, locality=locality, postal_code="ZQ9 8XW"
        )
    )


def born(year: int, month: int, day: int) -> pb.FieldValue:
    return pb.FieldValue(date_of_birth=date_pb2.Date(year=year, month=month, day=day))


GOOD_PHONE = phone("+372 5839 2714")
LONG_SUBJECT = "subject-" + "q" * 121
LONG_KEY = "idem-" + "k" * 124
LONG_FIELD = "field" + "x" * 124


def batch_of(count: int) -> Call:
    def call(client: VaultClient, subject_id: str) -> object:
        items = [pb.GetFieldRequest(subject_id=subject_id, field="phone")] * count
        return client.vault.BatchGetFields(pb.BatchGetFieldsRequest(items=items), timeout=10)

    return call


def detokenize(text: str) -> Call:
    def call(client: VaultClient, subject_id: str) -> object:
        request = pb.DetokenizeRequest(token=text, purpose="checkout")
        return client.vault.Detokenize(request, timeout=10)

    return call


def find(value: pb.FieldValue | None) -> Call:
    def call(client: VaultClient, subject_id: str) -> object:
        request = pb.FindSubjectsRequest()
        if value is not None:
            request.value.CopyFrom(value)
        return client.vault.FindSubjects(request, timeout=10)

    return call


def case(case_id: str, bad: BadInput) -> tuple[str, BadInput]:
    return case_id, bad


RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

CASES = [
    # -- phone
    case("phone-invalid", BadInput(put(phone("+372 5839 271")), "value.phone.number",
         secrets=("5839 271", "5839271"))),
    case("phone-bad-default-region", BadInput(put(phone("5839 2714", "QQ")),
         "value.phone.default_region", secrets=("5839 2714", "58392714"))),
    case("phone-too-long", BadInput(put(phone("+372 " + "58392714" * 9)), "value.phone.number",
         secrets=("58392714",))),
    # -- email
    case("email-bad-syntax", BadInput(put(pb.FieldValue(email="quill..feather@@leak.example")),
         "value.email", secrets=("quill", "leak.example"))),
    case("email-too-long", BadInput(put(pb.FieldValue(email="quill" * 50 + "@leak.example")),
         "value.email", secrets=("quillquill", "leak.example"))),
    # -- address
    case("address-unknown-country", BadInput(put(address("ZZ", ["17 Pumpkinseed Lane"])),
         "value.address.region_code", secrets=("Pumpkinseed", "ZQ9 8XW"))),
    case("address-without-lines", BadInput(put(address("EE", [], locality="Quillby")),
         "value.address.address_lines", secrets=("Quillby", "ZQ9 8XW"))),
    case("address-too-many-lines", BadInput(put(address("EE", ["Pumpkinseed Lane"] * 6)),
         "value.address.address_lines", secrets=("Pumpkinseed", "ZQ9 8XW"))),
    # -- card
    case("card-bad-luhn", BadInput(put(card("4539 1488 0343 6468")), "value.card.pan",
         secrets=("4539 1488 0343 6468", "4539148803436468", "6468"), caller="checkout")),
    case("card-unsupported-brand", BadInput(put(card("1234 5678 1234 5670")), "value.card.pan",
         secrets=("1234 5678 1234 5670", "1234567812345670"), caller="checkout")),
    case("card-wrong-length-for-brand", BadInput(put(card("34123456789012346")),
         "value.card.pan", secrets=("34123456789012346", "2346"), caller="checkout")),
    case("card-expired", BadInput(put(card("4539148803436467", month=1, year=2020)),
         "value.card.exp_year", secrets=("4539148803436467", "6467"), caller="checkout")),
    case("card-exp-month-13", BadInput(put(card("4539148803436467", month=13)),
         "value.card.exp_month", secrets=("4539148803436467", "13"), caller="checkout")),
    case("card-two-digit-year", BadInput(put(card("4539148803436467", year=30)),
         "value.card.exp_year", secrets=("4539148803436467",), caller="checkout")),
    case("card-holder-control-chars", BadInput(
         put(card("4539148803436467", holder="Zephyrine\x1bQuill")), "value.card.holder_name",
         secrets=("4539148803436467", "Zephyrine"), caller="checkout")),
    # -- payment token
    case("payment-token-too-short", BadInput(put(token("stripe", "pm_1Zq")),
         "value.payment_token.token", secrets=("pm_1Zq",), caller="checkout")),
    case("payment-token-with-spaces", BadInput(put(token("stripe", "pm_1Zq XwVu TsRq")),
         "value.payment_token.token", secrets=("pm_1Zq", "XwVu"), caller="checkout")),
    case("payment-token-bad-provider", BadInput(put(token("Stripe Payments!", "pm_1ZqXwVuTsRqP")),
         "value.payment_token.provider", secrets=("Stripe Payments", "pm_1ZqXwVuTsRqP"),
         caller="checkout")),
    # -- name and date of birth
    case("name-empty", BadInput(put(pb.FieldValue(name="")), "value.name")),
    case("name-control-chars", BadInput(put(pb.FieldValue(name="Zephyrine\x07Quillfeather")),
         "value.name", secrets=("Zephyrine", "Quillfeather"))),
    case("date-of-birth-in-future", BadInput(put(born(2099, 5, 17)), "value.date_of_birth",
         secrets=("2099",))),
    case("date-of-birth-feb-30", BadInput(put(born(2001, 2, 30)), "value.date_of_birth",
         secrets=("2001", "30"))),
    case("date-of-birth-before-1900", BadInput(put(born(1850, 3, 4)), "value.date_of_birth",
         secrets=("1850",))),
    # -- request envelope
    case("subject-id-empty", BadInput(lambda c, _: put(GOOD_PHONE)(c, ""), "subject_id")),
    case("subject-id-oversized", BadInput(lambda c, _: put(GOOD_PHONE)(c, LONG_SUBJECT),
         "subject_id", secrets=("qqqqqqqq",))),
    case("subject-id-with-spaces", BadInput(lambda c, _: put(GOOD_PHONE)(c, "jane doe 42"),
         "subject_id", secrets=("jane doe",))),
    case("field-empty", BadInput(put(GOOD_PHONE, field=""), "field")),
    case("field-bad-name", BadInput(put(GOOD_PHONE, field="Card Primary"), "field",
         secrets=("Card Primary",))),
    case("field-oversized", BadInput(put(GOOD_PHONE, field=LONG_FIELD), "field",
         secrets=("xxxxxxxx",))),
    case("value-missing", BadInput(put(None), "value")),
    case("view-unknown", BadInput(get(view=42), "view", secrets=("42",))),
    case("purpose-bad", BadInput(get(view=pb.VIEW_TOKEN, purpose="Marketing Team!"), "purpose",
         secrets=("Marketing Team",))),
    case("idempotency-key-oversized", BadInput(put(GOOD_PHONE, idempotency_key=LONG_KEY),
         "idempotency_key", secrets=("kkkkkkkk",))),
    case("value-oversized", BadInput(put(pb.FieldValue(name=("Quill " * 3334)[:20_000])), "value",
         code=RESOURCE_EXHAUSTED, secrets=("Quill",))),
    case("batch-too-large", BadInput(batch_of(101), "items", code=RESOURCE_EXHAUSTED)),
    case("detokenize-not-a-token", BadInput(detokenize("pm_1ZqXwVuTsRqP9k7m"), "token",
         secrets=("pm_1ZqXwVuTsRqP9k7m",), caller="checkout")),
    case("detokenize-empty", BadInput(detokenize(""), "token", caller="checkout")),
    case("find-address-not-searchable", BadInput(find(address("EE", ["17 Pumpkinseed Lane"])),
         "value", secrets=("Pumpkinseed", "ZQ9 8XW"))),
    case("find-value-missing", BadInput(find(None), "value")),
]  # fmt: skip

ALL_SECRETS = tuple(
    secret
    for _, bad in CASES
    for secret in bad.secrets
    if len(secret) >= 5  # short fragments like "13" appear in any log line
)


def violations_of(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status (grpc-status-details-bin) on the error"
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.extend(bad_request.field_violations)
    assert found, f"no BadRequest in the status details: {status}"
    return found


@pytest.mark.parametrize("bad", [pytest.param(bad, id=case_id) for case_id, bad in CASES])
def test_bad_input_is_refused_precisely(
    vault_server: VaultServer, subject_id: str, bad: BadInput
) -> None:
    client = vault_server.client(bad.caller)

    with pytest.raises(grpc.RpcError) as caught:
        bad.call(client, subject_id)
    error = caught.value

    assert error.code() is bad.code, error.details()
    violations = violations_of(error)
    assert [v.field for v in violations] == [bad.field]
    texts = [error.details() or "", *(v.description for v in violations)]
    for secret in bad.secrets:
        for text in texts:
            assert secret not in text, f"the error repeats the bad input: {text!r}"


def test_message_over_the_transport_limit_is_refused(
    vault_server: VaultServer, subject_id: str
) -> None:
    client = vault_server.client("registration")
    request = pb.PutFieldRequest(
        subject_id=subject_id, field="name", value=pb.FieldValue(name="Quill " * 50_000)
    )
    assert request.ByteSize() > 256 * 1024

    with pytest.raises(grpc.RpcError) as caught:
        client.vault.PutField(request, timeout=10)

    # gRPC itself refuses the message before any vault code runs, so there is
    # no vault status with a BadRequest to look at: only the code is ours to check.
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_server_is_unharmed_by_bad_input(vault_server: VaultServer, subject_id: str) -> None:
    """Runs after the cases above (same module, same server): the server still serves."""
    client = vault_server.client("registration")

    stored = client.vault.PutField(
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=GOOD_PHONE), timeout=10
    ).view
    read = client.vault.GetField(
        pb.GetFieldRequest(subject_id=subject_id, field="phone"), timeout=10
    )

    assert stored.masked == read.view.masked == "+372 **** **14"
    output = vault_server.output
    assert "Traceback (most recent call last)" not in output
    assert "internal error" not in output
    for secret in ALL_SECRETS:
        assert secret not in output
