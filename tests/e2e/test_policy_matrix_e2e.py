"""A slice of the policy matrix over the real server: the default policy as callers meet it.

tests/policy/test_policy_matrix.py checks every cell against ``Policy``; this
checks a representative ~30 of them through the RPCs that enforce them, with
the callers' own client certificates (and one the policy does not name), on
each store. Every cell gets a subject of its own, so destructive cells
(DeleteField, ShredSubject) touch nothing another cell reads. Expectations
are written out per cell from the design's caller table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
from google.type import date_pb2, postal_address_pb2
from pii_vault_client.v1 import vault_pb2 as pb

from vault.bootstrap.pki import TlsPaths, issue_client_certificate
from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

TIMEOUT = 15
STRANGER = "stranger"  # a certificate from the vault's own CA, a name the policy does not know
PAN = "4000056655665556"
STRIPE_TOKEN = "pm_1Nmatrixcellzq9f3a"

# Each type's field, its value, and the caller that stores it (checkout owns payment data).
FIELDS: dict[str, tuple[str, pb.FieldValue, str]] = {
    "phone": (
        "phone",
        pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        "registration",
    ),
    "email": ("email", pb.FieldValue(email="matrix.cell@example.org"), "registration"),
    "name": ("name", pb.FieldValue(name="Mari Maasikas"), "registration"),
    "date_of_birth": (
        "date_of_birth",
        pb.FieldValue(date_of_birth=date_pb2.Date(year=1990, month=5, day=17)),
        "registration",
    ),
    "address": (
        "address.shipping",
        pb.FieldValue(
            address=postal_address_pb2.PostalAddress(
                region_code="EE", address_lines=["Narva mnt 5"], locality="Tallinn"
            )
        ),
        "checkout",
    ),
    "card": (
        "card.primary",
        pb.FieldValue(card=pb.PaymentCard(pan=PAN, exp_month=11, exp_year=2031)),
        "checkout",
    ),
    "payment_token": (
        "payment_token.stripe",
        pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=STRIPE_TOKEN)),
        "checkout",
    ),
}

VIEWS = {"masked": pb.VIEW_MASKED, "token": pb.VIEW_TOKEN, "plaintext": pb.VIEW_PLAINTEXT}


@dataclass(frozen=True)
class Cell:
    caller: str
    rpc: str  # get, detokenize, find, delete, shred, hold
    field_type: str | None
    allowed: bool
    view: str = "masked"
    purpose: str = ""
    # A denial of a caller with no grant that could read the stored field: answered
    # exactly as a missing field (or unknown token) is, so it does not tell what exists.
    hidden: bool = False

    def __str__(self) -> str:
        parts = [self.caller, self.rpc, self.field_type or "-"]
        if self.rpc == "get":
            parts.append(self.view)
        if self.purpose:
            parts.append(self.purpose)
        parts.append("ALLOW" if self.allowed else "HIDDEN" if self.hidden else "DENY")
        return "-".join(parts)


ALLOW, DENY = True, False
CELLS = [
    # GetField: views and purposes.
    Cell("registration", "get", "phone", ALLOW),
    Cell("registration", "get", "email", ALLOW, "token"),
    Cell("registration", "get", "phone", DENY, "plaintext", "dsar"),
    Cell("registration", "get", "card", DENY, hidden=True),
    Cell("checkout", "get", "card", ALLOW),
    Cell("checkout", "get", "card", ALLOW, "token"),
    Cell("checkout", "get", "card", DENY, "plaintext", "checkout"),  # never a card number
    Cell("checkout", "get", "payment_token", ALLOW, "plaintext", "checkout"),
    Cell("checkout", "get", "payment_token", DENY, "plaintext"),
    Cell("checkout", "get", "payment_token", DENY, "plaintext", "support"),
    Cell("checkout", "get", "address", ALLOW),
    Cell("checkout", "get", "phone", DENY, hidden=True),
    Cell("deletion", "get", "name", DENY),
    Cell("privacy-desk", "get", "card", ALLOW, "plaintext", "dsar"),
    Cell("privacy-desk", "get", "date_of_birth", ALLOW, "plaintext", "dsar"),
    Cell("privacy-desk", "get", "phone", DENY, "plaintext", "support"),
    Cell("privacy-desk", "get", "email", ALLOW, "token"),
    Cell("admin", "get", "email", DENY),
    Cell(STRANGER, "get", "phone", DENY),
    # Detokenize: the payment token, for checkout, only.
    Cell("checkout", "detokenize", "payment_token", ALLOW, purpose="checkout"),
    Cell("checkout", "detokenize", "payment_token", DENY, purpose="marketing_sms"),
    Cell("checkout", "detokenize", "card", DENY, purpose="checkout", hidden=True),
    Cell("privacy-desk", "detokenize", "phone", DENY, purpose="dsar"),
    # FindSubjects: registration's "is this already registered?".
    Cell("registration", "find", "phone", ALLOW),
    Cell("checkout", "find", "phone", DENY),
    Cell("privacy-desk", "find", "email", DENY),
    # DeleteField and ShredSubject: the deletion workflow's.
    Cell("deletion", "delete", "card", ALLOW),
    Cell("checkout", "delete", "card", DENY),
    Cell("registration", "delete", "phone", DENY),
    Cell("deletion", "shred", "phone", ALLOW),
    Cell("privacy-desk", "shred", "phone", DENY),
    Cell("admin", "shred", "phone", DENY),
    # SetLegalHold: operators and the privacy desk.
    Cell("admin", "hold", "phone", ALLOW),
    Cell("privacy-desk", "hold", "phone", ALLOW),
    Cell("checkout", "hold", "phone", DENY),
]


def client_for(server: VaultServer, caller: str) -> VaultClient:
    if caller == STRANGER:
        paths = TlsPaths.under(server.data_dir)
        if not paths.client_cert(STRANGER).exists():
            issue_client_certificate(paths, STRANGER)
    return server.client(caller)


def store(server: VaultServer, subject: str, field_type: str) -> tuple[str, str]:
    """Store the type's field for ``subject``; returns the field name and its token."""
    field, value, writer = FIELDS[field_type]
    view = (
        client_for(server, writer)
        .vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=TIMEOUT
        )
        .view
    )
    assert view.token.startswith("tok_"), "the writer is granted the token view of its own types"
    return field, view.token


def still_there(server: VaultServer, subject: str, field: str) -> bool:
    desk = client_for(server, "privacy-desk")
    try:
        desk.vault.GetField(pb.GetFieldRequest(subject_id=subject, field=field), timeout=TIMEOUT)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return False
        raise
    return True


def call_cell(server: VaultServer, cell: Cell, subject: str) -> Callable[[], None]:
    """The cell's RPC, ready to call; it asserts what an allowed call must answer."""
    assert cell.field_type is not None
    field, token = store(server, subject, cell.field_type)
    client = client_for(server, cell.caller)
    _, value, _ = FIELDS[cell.field_type]

    def get() -> None:
        answer = client.vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject, field=field, view=VIEWS[cell.view], purpose=cell.purpose
            ),
            timeout=TIMEOUT,
        )
        assert answer.view.field == field
        assert answer.HasField("value") == (cell.view == "plaintext")
        assert (answer.view.token == token) == (cell.view != "masked")
        if cell.view == "plaintext" and cell.field_type in ("card", "payment_token"):
            assert answer.value == value

    def detokenize() -> None:
        answer = client.vault.Detokenize(
            pb.DetokenizeRequest(token=token, purpose=cell.purpose), timeout=TIMEOUT
        )
        assert answer.view.subject_id == subject
        assert answer.value == value

    def find() -> None:
        answer = client.vault.FindSubjects(pb.FindSubjectsRequest(value=value), timeout=TIMEOUT)
        assert answer.found
        assert not answer.subject_ids  # the default grant answers "exists" only

    def delete() -> None:
        client.vault.DeleteField(
            pb.DeleteFieldRequest(subject_id=subject, field=field), timeout=TIMEOUT
        )
        assert not still_there(server, subject, field)

    def shred() -> None:
        answer = client.vault.ShredSubject(
            pb.ShredSubjectRequest(
                subject_id=subject, reason="policy matrix", request_id=f"matrix-{subject}"
            ),
            timeout=TIMEOUT,
        )
        assert answer.receipt.subject_id == subject
        assert not still_there(server, subject, field)

    def hold() -> None:
        answer = client.vault.SetLegalHold(
            pb.SetLegalHoldRequest(subject_id=subject, hold=True, reason="policy matrix"),
            timeout=TIMEOUT,
        )
        assert answer.hold

    calls = {
        "get": get,
        "detokenize": detokenize,
        "find": find,
        "delete": delete,
        "shred": shred,
        "hold": hold,
    }
    return calls[cell.rpc]


def test_the_slice_is_representative() -> None:
    assert len(CELLS) >= 30
    assert len({str(cell) for cell in CELLS}) == len(CELLS)
    assert {cell.rpc for cell in CELLS} == {"get", "detokenize", "find", "delete", "shred", "hold"}
    assert {cell.caller for cell in CELLS} == {
        "registration", "checkout", "deletion", "privacy-desk", "admin", STRANGER
    }  # fmt: skip
    assert {cell.field_type for cell in CELLS if cell.rpc == "get"} == set(FIELDS)
    assert {cell.allowed for cell in CELLS} == {True, False}


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_policy_cell_over_the_wire(
    vault_server: VaultServer, new_subject_id: Callable[[], str], cell: Cell
) -> None:
    subject = new_subject_id()
    call = call_cell(vault_server, cell, subject)
    if cell.allowed:
        call()
        return
    with pytest.raises(grpc.RpcError) as caught:
        call()
    if cell.hidden:
        missing = "no field holds this token" if cell.rpc == "detokenize" else "field not found"
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            missing,
        )
    else:
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    if cell.rpc in ("delete", "shred"):
        field, _, _ = FIELDS[cell.field_type or ""]
        assert still_there(vault_server, subject, field), "a denied destroy must destroy nothing"
