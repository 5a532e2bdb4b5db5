"""Crypto-shredding end to end: the deletion caller, the command line, legal holds.

Each test talks to the real server over mutual TLS with the certificate of the
caller it plays, or runs ``pii-vault`` as its own process, and runs once per
store (SQLite, PostgreSQL). Receipts are checked the way an auditor would: with
the public key ``init`` wrote and with ``pii-vault receipts verify``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient
from vault.domain.shredding import receipt_document, verify_receipt_document

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

EMAIL = "Shred.Me@Example.COM"
STRIPE_TOKEN = "pm_1Nshredmef3a9"


def rpc_error(call: Callable[..., object], request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


def phone_of(subject: str) -> str:
    """A mobile number (masked ``+372 **** **88``) held by ``subject`` alone: a search for it
    answers whether this subject still holds it."""
    return f"+372 5{int(uuid.uuid5(uuid.NAMESPACE_URL, subject)) % 10**5:05d}88"


def put_contact(server: VaultServer, subject: str) -> pb.FieldView:
    """Phone and e-mail by registration, a payment token by checkout; returns the token's view."""
    registration = server.client("registration")
    for field, value in (
        ("phone", pb.FieldValue(phone=pb.PhoneNumber(number=phone_of(subject)))),
        ("email", pb.FieldValue(email=EMAIL)),
    ):
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=10
        )
    token = pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=STRIPE_TOKEN))
    return (
        server.client("checkout")
        .vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field="payment_token.stripe", value=token),
            timeout=10,
        )
        .view
    )


def shred_request(subject: str, request_id: str) -> pb.ShredSubjectRequest:
    return pb.ShredSubjectRequest(
        subject_id=subject, reason="account closed", request_id=request_id
    )


def masked(client: VaultClient, subject: str, field: str) -> pb.GetFieldResponse:
    return client.vault.GetField(pb.GetFieldRequest(subject_id=subject, field=field), timeout=10)


def public_key(server: VaultServer) -> bytes:
    return (server.data_dir / "receipt-signing.pub").read_bytes()


def cli(
    server: VaultServer, run_vault: RunVault, caller: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``pii-vault COMMAND --data-dir DIR --as CALLER --target T ARGS``."""
    command, *rest = args
    common = ("--data-dir", str(server.data_dir), "--as", caller, "--target", server.target)
    return run_vault(command, *common, *rest)


# -- over gRPC ---------------------------------------------------------------------------
def test_the_deletion_caller_shreds_and_nothing_can_be_read_any_more(
    vault_server: VaultServer, subject_id: str
) -> None:
    token_view = put_contact(vault_server, subject_id)
    registration = vault_server.client("registration")
    checkout = vault_server.client("checkout")
    assert masked(registration, subject_id, "phone").view.masked == "+372 **** **88"
    phone = pb.FieldValue(phone=pb.PhoneNumber(number=phone_of(subject_id)))
    assert registration.vault.FindSubjects(pb.FindSubjectsRequest(value=phone), timeout=10).found

    deletion = vault_server.client("deletion")
    receipt = deletion.vault.ShredSubject(shred_request(subject_id, "grpc-1"), timeout=30).receipt

    assert receipt.subject_id == subject_id
    assert receipt.request_id == "grpc-1"
    assert receipt.fields_destroyed == 3
    assert len(receipt.key_ids) == 4  # the subject key and three data keys
    assert receipt.backup_horizon.ToDatetime() > receipt.shredded_at.ToDatetime()
    document = receipt_document(receipt.payload, receipt.signature)
    assert verify_receipt_document(document, public_key(vault_server))
    assert document["receipt"]["key_ids"] == list(receipt.key_ids)  # type: ignore[index]

    for field in ("phone", "email", "never-stored"):
        error = rpc_error(
            registration.vault.GetField, pb.GetFieldRequest(subject_id=subject_id, field=field)
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == "subject is shredded"
    error = rpc_error(registration.vault.ListFields, pb.ListFieldsRequest(subject_id=subject_id))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "subject is shredded",
    )
    batch = registration.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(items=[pb.GetFieldRequest(subject_id=subject_id, field="phone")]),
        timeout=10,
    )
    assert batch.results[0].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    error = rpc_error(
        checkout.vault.Detokenize, pb.DetokenizeRequest(token=token_view.token, purpose="checkout")
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert not registration.vault.FindSubjects(
        pb.FindSubjectsRequest(value=phone), timeout=10
    ).found
    error = rpc_error(
        registration.vault.PutField,
        pb.PutFieldRequest(subject_id=subject_id, field="phone", value=phone),
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION

    # The same request again: the same receipt, byte for byte.
    again = deletion.vault.ShredSubject(shred_request(subject_id, "grpc-1"), timeout=30).receipt
    assert (again.payload, again.signature) == (receipt.payload, receipt.signature)


def test_a_request_id_cannot_be_reused_for_another_subject(
    vault_server: VaultServer, new_subject_id: Callable[[], str]
) -> None:
    first, second = new_subject_id(), new_subject_id()
    put_contact(vault_server, first)
    put_contact(vault_server, second)
    deletion = vault_server.client("deletion")
    request_id = f"reuse-{uuid.uuid4()}"
    deletion.vault.ShredSubject(shred_request(first, request_id), timeout=30)
    error = rpc_error(deletion.vault.ShredSubject, shred_request(second, request_id))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    registration = vault_server.client("registration")
    assert masked(registration, second, "phone").view.masked == "+372 **** **88"


@pytest.mark.parametrize("caller", ["registration", "checkout", "privacy-desk", "admin"])
def test_only_the_deletion_caller_may_shred(
    vault_server: VaultServer, subject_id: str, caller: str
) -> None:
    put_contact(vault_server, subject_id)
    error = rpc_error(
        vault_server.client(caller).vault.ShredSubject,
        shred_request(subject_id, f"denied-{uuid.uuid4()}"),
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    registration = vault_server.client("registration")
    assert masked(registration, subject_id, "email").view.masked == "S***@example.com"


# -- the command line ------------------------------------------------------------------------
def test_cli_shred_writes_a_receipt_that_receipts_verify_accepts(
    vault_server: VaultServer, subject_id: str, run_vault: RunVault, tmp_path: Path
) -> None:
    put_contact(vault_server, subject_id)
    receipt_file = tmp_path / "receipt.json"
    request_id = f"cli-{uuid.uuid4()}"

    done = cli(
        vault_server,
        run_vault,
        "deletion",
        "shred",
        subject_id,
        "--reason",
        "account closed",
        "--request-id",
        request_id,
        "--receipt-out",
        str(receipt_file),
    )
    assert done.returncode == 0, done.stderr
    filed = json.loads(receipt_file.read_text())
    assert json.loads(done.stdout) == filed
    assert filed["receipt"]["subject_id"] == subject_id
    assert filed["receipt"]["request_id"] == request_id
    assert filed["receipt"]["fields_destroyed"] == 3

    checked = run_vault(
        "receipts", "verify", "--data-dir", str(vault_server.data_dir), str(receipt_file)
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"valid: subject {subject_id} shredded at ")
    assert "3 fields" in checked.stdout

    # An edited copy is refused (the domain tests edit every signed field in turn).
    edited = json.loads(receipt_file.read_text())
    edited["receipt"]["fields_destroyed"] = 2
    edited_file = tmp_path / "edited.json"
    edited_file.write_text(json.dumps(edited, indent=2, sort_keys=True))
    refused = run_vault(
        "receipts", "verify", "--data-dir", str(vault_server.data_dir), str(edited_file)
    )
    assert refused.returncode == 1, refused.stdout
    assert "INVALID" in refused.stderr

    # Running the same shred again writes the very same file.
    again_file = tmp_path / "again.json"
    again = cli(
        vault_server,
        run_vault,
        "deletion",
        "shred",
        subject_id,
        "--reason",
        "account closed",
        "--request-id",
        request_id,
        "--receipt-out",
        str(again_file),
    )
    assert again.returncode == 0, again.stderr
    assert again_file.read_bytes() == receipt_file.read_bytes()


def test_cli_hold_queues_the_shred_and_release_carries_it_out(
    vault_server: VaultServer, subject_id: str, run_vault: RunVault, tmp_path: Path
) -> None:
    put_contact(vault_server, subject_id)
    registration = vault_server.client("registration")
    receipt_file = tmp_path / "receipt.json"
    request_id = f"held-{uuid.uuid4()}"
    shred_args = (
        "shred",
        subject_id,
        "--reason",
        "account closed",
        "--request-id",
        request_id,
        "--receipt-out",
        str(receipt_file),
    )

    held = cli(
        vault_server, run_vault, "privacy-desk", "hold", subject_id, "--reason", "case LX-2291"
    )
    assert (held.returncode, held.stdout.strip()) == (0, "held"), held.stderr

    refused = cli(vault_server, run_vault, "deletion", *shred_args)
    assert refused.returncode == 1
    assert refused.stderr.startswith("FAILED_PRECONDITION:")
    assert "legal hold" in refused.stderr
    assert "queued" in refused.stderr
    assert not receipt_file.exists()
    deleted = cli(vault_server, run_vault, "deletion", "delete-field", subject_id, "email")
    assert deleted.returncode == 1
    assert deleted.stderr.startswith("FAILED_PRECONDITION:")
    assert "legal hold" in deleted.stderr
    # Nothing was destroyed while held.
    assert masked(registration, subject_id, "email").view.masked == "S***@example.com"

    released = cli(vault_server, run_vault, "privacy-desk", "hold", subject_id, "--release")
    assert (released.returncode, released.stdout.strip()) == (0, "released"), released.stderr

    # The queued shred ran on release, without anyone asking again ...
    error = rpc_error(
        registration.vault.GetField, pb.GetFieldRequest(subject_id=subject_id, field="email")
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "subject is shredded",
    )
    # ... and repeating the request fetches its receipt.
    done = cli(vault_server, run_vault, "deletion", *shred_args)
    assert done.returncode == 0, done.stderr
    filed = json.loads(receipt_file.read_text())
    assert filed["receipt"]["request_id"] == request_id
    assert filed["receipt"]["fields_destroyed"] == 3
    checked = run_vault(
        "receipts", "verify", "--data-dir", str(vault_server.data_dir), str(receipt_file)
    )
    assert checked.returncode == 0, checked.stderr


def test_a_hold_may_be_set_only_by_the_privacy_desk_and_operators(
    vault_server: VaultServer, subject_id: str
) -> None:
    put_contact(vault_server, subject_id)
    for caller in ("registration", "checkout", "deletion"):
        error = rpc_error(
            vault_server.client(caller).vault.SetLegalHold,
            pb.SetLegalHoldRequest(subject_id=subject_id, hold=True, reason="mine"),
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    # No hold was set: the deletion caller's shred goes through.
    receipt = (
        vault_server.client("deletion")
        .vault.ShredSubject(shred_request(subject_id, f"after-{uuid.uuid4()}"), timeout=30)
        .receipt
    )
    assert receipt.fields_destroyed == 3
