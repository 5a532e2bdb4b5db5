"""The callers' flows, end to end: registration, checkout, DSAR, deletion, and the plumbing.

Each test talks to the real server over mutual TLS with the client
certificate of the caller it plays, and runs once per store (SQLite, PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pii_vault_client.v1 import vault_pb2 as pb
from pii_vault_client.v1 import vault_pb2_grpc as pb_grpc

from vault.bootstrap.pki import TlsPaths, create_dev_pki
from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

PHONE = "+372 5123 4567"
PHONE_E164 = "+37251234567"
VISA_PAN = "4242424242424242"
STRIPE_TOKEN = "pm_1Nabcdefghf3a9"


def rpc_error(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """The error ``call(*args, **kwargs)`` fails with; the test fails if it succeeds."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def card(pan: str = VISA_PAN, month: int = 12, year: int = 2030) -> pb.FieldValue:
    return pb.FieldValue(card=pb.PaymentCard(pan=pan, exp_month=month, exp_year=year))


def stripe(token: str) -> pb.FieldValue:
    return pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=token))


def put(client: VaultClient, subject: str, field: str, value: pb.FieldValue) -> pb.FieldView:
    return client.vault.PutField(
        pb.PutFieldRequest(subject_id=subject, field=field, value=value)
    ).view


def get(
    client: VaultClient,
    subject: str,
    field: str,
    view: pb.View.ValueType = pb.VIEW_MASKED,
    purpose: str = "",
) -> pb.GetFieldResponse:
    return client.vault.GetField(
        pb.GetFieldRequest(subject_id=subject, field=field, view=view, purpose=purpose)
    )


# -- registration ---------------------------------------------------------------------------------
def test_registration_stores_finds_and_masks_a_phone(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")

    stored = put(registration, subject_id, "phone", phone(PHONE))
    assert stored.type == pb.FIELD_TYPE_PHONE
    assert stored.masked == "+372 **** **67"
    assert stored.version == 1
    assert stored.phone.country_code == 372

    found = registration.vault.FindSubjects(pb.FindSubjectsRequest(value=phone("0037251234567")))
    assert found.found
    assert not found.subject_ids  # registration's find answers "exists" only

    read = get(registration, subject_id, "phone")
    assert read.view.masked == "+372 **** **67"
    assert read.view.token == ""
    assert not read.HasField("value")


@pytest.mark.parametrize("purpose", ["", "dsar", "checkout", "registration"])
def test_registration_never_sees_plaintext(
    vault_server: VaultServer, subject_id: str, purpose: str
) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))

    error = rpc_error(lambda: get(registration, subject_id, "phone", pb.VIEW_PLAINTEXT, purpose))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "5123" not in (error.details() or "")


def test_registration_lists_email_name_and_phone_masked(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))
    email = put(registration, subject_id, "email", pb.FieldValue(email="Jane.Doe@Example.COM"))
    name = put(registration, subject_id, "name", pb.FieldValue(name="Jane  van Doe"))
    assert email.masked == "J***@example.com"
    assert name.masked == "J. V. D."

    listed = registration.vault.ListFields(pb.ListFieldsRequest(subject_id=subject_id)).fields

    by_field = {view.field: view for view in listed}
    assert set(by_field) == {"phone", "email", "name"}
    assert by_field["phone"].masked == "+372 **** **67"
    assert by_field["email"].masked == "J***@example.com"
    assert by_field["email"].type == pb.FIELD_TYPE_EMAIL
    assert by_field["name"].masked == "J. V. D."
    assert all(view.token == "" for view in listed)
    assert all(view.subject_id == subject_id for view in listed)


def test_find_subjects_does_not_return_other_numbers(
    vault_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    registration = vault_server.client("registration")
    first, second = new_subject_id(), new_subject_id()
    search = pb.FindSubjectsRequest(value=phone("0037251234569"))
    put(registration, first, "phone", phone("+372 5123 4568"))
    # A neighbouring number is not a match (registration learns only "held" or not) ...
    assert not registration.vault.FindSubjects(search).found
    put(registration, second, "phone", phone("+372 5123 4569"))
    # ... the number itself, written another way, is.
    assert registration.vault.FindSubjects(search).found


# -- checkout -------------------------------------------------------------------------------------
def test_checkout_payment_token_round_trip(vault_server: VaultServer, subject_id: str) -> None:
    checkout = vault_server.client("checkout")
    put(checkout, subject_id, "payment_token.stripe", stripe(STRIPE_TOKEN))

    read = get(checkout, subject_id, "payment_token.stripe", pb.VIEW_TOKEN)
    assert read.view.token.startswith("tok_")
    assert read.view.masked == "stripe ****f3a9"
    assert read.view.type == pb.FIELD_TYPE_PAYMENT_TOKEN
    assert not read.HasField("value")

    revealed = checkout.vault.Detokenize(
        pb.DetokenizeRequest(token=read.view.token, purpose="checkout")
    )
    assert revealed.value.payment_token.token == STRIPE_TOKEN
    assert revealed.value.payment_token.provider == "stripe"
    assert revealed.view.subject_id == subject_id
    assert revealed.view.field == "payment_token.stripe"

    for purpose in ("marketing", ""):
        error = rpc_error(
            checkout.vault.Detokenize, pb.DetokenizeRequest(token=read.view.token, purpose=purpose)
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, purpose


def test_checkout_card_is_masked_and_never_revealed(
    vault_server: VaultServer, subject_id: str
) -> None:
    checkout = vault_server.client("checkout")
    stored = put(checkout, subject_id, "card.primary", card())
    assert stored.masked == "VISA **** 4242 (12/30)"

    read = get(checkout, subject_id, "card.primary", pb.VIEW_TOKEN)
    assert read.view.masked == "VISA **** 4242 (12/30)"
    assert read.view.type == pb.FIELD_TYPE_CARD
    assert read.view.card.brand == "VISA"
    assert read.view.card.last4 == "4242"
    assert (read.view.card.exp_month, read.view.card.exp_year) == (12, 2030)
    assert read.view.token.startswith("tok_")

    denied = rpc_error(
        lambda: get(checkout, subject_id, "card.primary", pb.VIEW_PLAINTEXT, "checkout")
    )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED

    detokenized = rpc_error(
        lambda: checkout.vault.Detokenize(
            pb.DetokenizeRequest(token=read.view.token, purpose="checkout")
        )
    )
    # A token of a type checkout may not detokenize answers as an unknown token.
    assert (detokenized.code(), detokenized.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "no field holds this token",
    )
    for error in (denied, detokenized):
        assert VISA_PAN not in (error.details() or "")


# -- privacy desk and deletion --------------------------------------------------------------------
def test_privacy_desk_reads_plaintext_for_dsar_only(
    vault_server: VaultServer, subject_id: str
) -> None:
    put(vault_server.client("registration"), subject_id, "phone", phone(PHONE))
    desk = vault_server.client("privacy-desk")

    read = get(desk, subject_id, "phone", pb.VIEW_PLAINTEXT, "dsar")

    assert read.value.phone.number == PHONE_E164
    assert read.view.masked == "+372 **** **67"
    for purpose in ("", "checkout"):
        error = rpc_error(get, desk, subject_id, "phone", pb.VIEW_PLAINTEXT, purpose)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, purpose


def test_deleted_field_is_gone(vault_server: VaultServer, subject_id: str) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))
    put(registration, subject_id, "email", pb.FieldValue(email="keep@example.com"))

    deleted = vault_server.client("deletion").vault.DeleteField(
        pb.DeleteFieldRequest(subject_id=subject_id, field="phone")
    )
    assert (deleted.subject_id, deleted.field) == (subject_id, "phone")
    assert deleted.deleted_at.seconds > 0

    error = rpc_error(lambda: get(registration, subject_id, "phone"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    dsar = rpc_error(
        lambda: get(
            vault_server.client("privacy-desk"), subject_id, "phone", pb.VIEW_PLAINTEXT, "dsar"
        )
    )
    assert dsar.code() is grpc.StatusCode.NOT_FOUND
    found = registration.vault.FindSubjects(pb.FindSubjectsRequest(value=phone(PHONE)))
    assert subject_id not in found.subject_ids
    # The subject's other fields are untouched.
    assert get(registration, subject_id, "email").view.masked == "k***@example.com"


def test_registration_may_not_delete(vault_server: VaultServer, subject_id: str) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))

    error = rpc_error(
        lambda: registration.vault.DeleteField(
            pb.DeleteFieldRequest(subject_id=subject_id, field="phone")
        )
    )

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert get(registration, subject_id, "phone").view.masked == "+372 **** **67"


def test_replaced_value_gets_version_2_and_old_token_dies(
    vault_server: VaultServer, subject_id: str
) -> None:
    checkout = vault_server.client("checkout")
    first = put(checkout, subject_id, "payment_token.stripe", stripe("pm_1Noldoldoldold1"))
    second = put(checkout, subject_id, "payment_token.stripe", stripe(STRIPE_TOKEN))

    assert (first.version, second.version) == (1, 2)
    assert first.token.startswith("tok_")
    assert second.token.startswith("tok_")
    assert first.token != second.token
    assert get(checkout, subject_id, "payment_token.stripe").view.version == 2

    old = rpc_error(
        lambda: checkout.vault.Detokenize(
            pb.DetokenizeRequest(token=first.token, purpose="checkout")
        )
    )
    assert old.code() is grpc.StatusCode.NOT_FOUND
    new = checkout.vault.Detokenize(pb.DetokenizeRequest(token=second.token, purpose="checkout"))
    assert new.value.payment_token.token == STRIPE_TOKEN
    assert new.view.version == 2


# -- idempotency ----------------------------------------------------------------------------------
def test_idempotent_put_returns_the_same_view(vault_server: VaultServer, subject_id: str) -> None:
    registration = vault_server.client("registration")

    def put_once(number: str, key: str = "signup-7f3a") -> pb.FieldView:
        return registration.vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject_id, field="phone", value=phone(number), idempotency_key=key
            )
        ).view

    first = put_once(PHONE)
    again = put_once(PHONE)
    reformatted = put_once("0037251234567")  # the same number, written another way

    assert first.token.startswith("tok_")
    assert (again.token, again.version) == (first.token, 1)
    assert (reformatted.token, reformatted.version) == (first.token, 1)
    assert get(registration, subject_id, "phone").view.version == 1

    other = rpc_error(lambda: put_once("+372 5123 4560"))
    assert other.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "5123" not in (other.details() or "")
    # The refused write changed nothing.
    read = get(registration, subject_id, "phone", pb.VIEW_TOKEN)
    assert (read.view.token, read.view.version, read.view.masked) == (
        first.token,
        1,
        "+372 **** **67",
    )
    # A fresh key is a fresh write.
    assert put_once("+372 5123 4560", key="signup-7f3b").version == 2


def test_idempotent_replay_after_an_overwrite_does_not_claim_success(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    keyed = pb.PutFieldRequest(
        subject_id=subject_id, field="phone", value=phone(PHONE), idempotency_key="signup-1"
    )
    registration.vault.PutField(keyed)
    put(registration, subject_id, "phone", phone("+372 5839 2714"))  # another writer, no key

    error = rpc_error(registration.vault.PutField, keyed)

    # The retry must not answer "stored" with a view of the other writer's number.
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    read = get(registration, subject_id, "phone")
    assert (read.view.masked, read.view.version) == ("+372 **** **14", 2)


def test_idempotency_key_reused_for_another_field_is_refused(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    registration.vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject_id, field="phone", value=phone(PHONE), idempotency_key="k-1"
        )
    )

    error = rpc_error(
        lambda: registration.vault.PutField(
            pb.PutFieldRequest(
                subject_id=subject_id,
                field="phone.work",
                value=phone(PHONE),
                idempotency_key="k-1",
            )
        )
    )

    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    missing = rpc_error(lambda: get(registration, subject_id, "phone.work"))
    assert missing.code() is grpc.StatusCode.NOT_FOUND


# -- batch ----------------------------------------------------------------------------------------
def test_batch_get_answers_each_item_in_order(vault_server: VaultServer, subject_id: str) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "phone", phone(PHONE))
    put(registration, subject_id, "email", pb.FieldValue(email="jane@example.com"))

    response = registration.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(
            items=[
                pb.GetFieldRequest(subject_id=subject_id, field="phone"),
                pb.GetFieldRequest(subject_id=subject_id, field="missing"),
                pb.GetFieldRequest(subject_id="not a subject id", field="phone"),
                pb.GetFieldRequest(subject_id=subject_id, field="email", view=pb.VIEW_TOKEN),
            ]
        )
    )

    results = response.results
    assert [r.WhichOneof("result") for r in results] == ["field", "error", "error", "field"]
    assert results[0].field.view.masked == "+372 **** **67"
    assert results[0].field.view.token == ""
    assert results[1].error.code == code_pb2.NOT_FOUND
    assert results[2].error.code == code_pb2.INVALID_ARGUMENT
    bad_request, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    assert len(results[2].error.details) == 2  # which field, and the reason
    assert results[2].error.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["items[2].subject_id"]
    assert results[2].error.details[1].Unpack(info)
    assert (info.domain, info.reason) == ("pii-vault", "INVALID_ARGUMENT")
    assert results[1].error.details[0].Unpack(info)  # every per-item error carries its reason
    assert (info.domain, info.reason) == ("pii-vault", "NOT_FOUND")
    assert "not a subject id" not in results[2].error.message
    assert results[3].field.view.masked == "j***@example.com"
    assert results[3].field.view.token.startswith("tok_")


# -- plumbing -------------------------------------------------------------------------------------
def test_health_serving(vault_server: VaultServer) -> None:
    health = vault_server.client("admin").health
    for service in ("", "vault.v1.VaultService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_vault_service(vault_server: VaultServer) -> None:
    channel = vault_server.client("admin").channel
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    answers = list(stub.ServerReflectionInfo(iter([request]), timeout=5))

    names = {service.name for service in answers[0].list_services_response.service}
    assert {"vault.v1.VaultService", "grpc.health.v1.Health"} <= names


# -- mutual TLS -----------------------------------------------------------------------------------
def _assert_server_still_answers(vault_server: VaultServer) -> None:
    """The control: with a proper certificate the very same server answers."""
    health = vault_server.client("registration").health
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_client_without_certificate_cannot_connect(vault_server: VaultServer) -> None:
    ca_cert = (vault_server.data_dir / "tls" / "ca.crt").read_bytes()
    with grpc.secure_channel(vault_server.target, grpc.ssl_channel_credentials(ca_cert)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        error = rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5))
        vault = pb_grpc.VaultServiceStub(channel)
        denied = rpc_error(
            lambda: vault.ListFields(pb.ListFieldsRequest(subject_id="anyone"), timeout=5)
        )

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert denied.code() is grpc.StatusCode.UNAVAILABLE
    _assert_server_still_answers(vault_server)


def test_client_certificate_from_another_ca_is_refused(
    vault_server: VaultServer, tmp_path: Path
) -> None:
    # A CA of its own that issues a "registration" certificate: same name, wrong issuer.
    rogue = TlsPaths.under(tmp_path)
    create_dev_pki(rogue, ["registration"])
    client = VaultClient(
        vault_server.target,
        ca_cert=(vault_server.data_dir / "tls" / "ca.crt").read_bytes(),
        client_cert=rogue.client_cert("registration").read_bytes(),
        client_key=rogue.client_key("registration").read_bytes(),
    )
    with client:
        error = rpc_error(
            lambda: client.vault.ListFields(pb.ListFieldsRequest(subject_id="anyone"), timeout=5)
        )

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    _assert_server_still_answers(vault_server)
