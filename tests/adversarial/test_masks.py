"""Masks that showed nearly everything, and text that could rewrite them, over the real server.

``registration`` may see only masks, so a mask is all it should learn of a
value; each test stores a value whose old mask gave it away (a one-character
e-mail local part, a Chinese name whose initial is the surname, a national
number of four digits of which the mask showed two) and reads the masked view
back as that caller. The last tests send bidirectional and invisible format
characters, which used to be stored and echoed into masks, and expect
``INVALID_ARGUMENT`` with a ``google.rpc.BadRequest`` naming the field and
not the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import phonenumbers
import pytest
from google.rpc import error_details_pb2
from google.type import postal_address_pb2
from grpc_status import rpc_status
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

TIMEOUT = 10
NIUE_NUMBER = "+683 7012"
"""Niue's national numbers have four digits: the old mask ``+683 **12`` left 100 candidates."""


def put(client: VaultClient, subject: str, field: str, value: pb.FieldValue) -> pb.FieldView:
    request = pb.PutFieldRequest(subject_id=subject, field=field, value=value)
    return client.vault.PutField(request, timeout=TIMEOUT).view


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def masked(client: VaultClient, subject: str, field: str) -> str:
    request = pb.GetFieldRequest(subject_id=subject, field=field, view=pb.VIEW_MASKED)
    return client.vault.GetField(request, timeout=TIMEOUT).view.masked


def listed(client: VaultClient, subject: str) -> dict[str, str]:
    request = pb.ListFieldsRequest(subject_id=subject)
    return {view.field: view.masked for view in client.vault.ListFields(request).fields}


def test_a_one_character_email_local_part_is_not_shown(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")

    stored = put(registration, subject_id, "email", pb.FieldValue(email="q@Quillby.example"))

    for mask in (stored.masked, masked(registration, subject_id, "email")):
        assert mask == "***@quillby.example"
        assert "q@" not in mask


def test_a_chinese_name_does_not_show_its_surname(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")

    stored = put(registration, subject_id, "name", pb.FieldValue(name="王小明"))
    put(registration, subject_id, "name.romanised", pb.FieldValue(name="Wang Li"))

    assert stored.masked == masked(registration, subject_id, "name") == "***"
    masks = listed(registration, subject_id)
    assert masks["name"] == "***"
    assert masks["name.romanised"] == "W."  # "Li" is two letters: no initial
    assert not any("王" in mask or "L" in mask for mask in masks.values())


def test_a_short_national_number_shows_none_of_its_digits(
    vault_server: VaultServer, subject_id: str
) -> None:
    parsed = phonenumbers.parse(NIUE_NUMBER)
    assert phonenumbers.is_valid_number(parsed)
    national = phonenumbers.national_significant_number(parsed)
    assert len(national) == 4
    registration = vault_server.client("registration")

    stored = put(registration, subject_id, "phone", phone(NIUE_NUMBER))

    for mask in (stored.masked, masked(registration, subject_id, "phone")):
        assert mask == "+683 ****"
        assert not any(digit in mask.removeprefix("+683") for digit in national)


def test_a_long_enough_value_still_shows_what_the_design_promises(
    vault_server: VaultServer, subject_id: str
) -> None:
    registration = vault_server.client("registration")
    put(registration, subject_id, "email", pb.FieldValue(email="Jane.Doe@Example.COM"))
    put(registration, subject_id, "name", pb.FieldValue(name="Jane van Doe"))
    put(registration, subject_id, "phone", phone("+372 5123 4567"))

    assert listed(registration, subject_id) == {
        "email": "J***@example.com",
        "name": "J. V. D.",
        "phone": "+372 **** **67",
    }


# --- bidirectional and invisible characters are refused ----------------------

RLO = "\u202e"  # right-to-left override: "Quill\u202eyb" shows as "Quillby"
RLI = "\u2067"  # right-to-left isolate
LRM = "\u200e"  # left-to-right mark
ZWSP = "\u200b"  # zero-width space


def address(lines: list[str], locality: str = "Quillby") -> pb.FieldValue:
    return pb.FieldValue(
        address=postal_address_pb2.PostalAddress(
            region_code="EE", address_lines=lines, locality=locality
        )
    )


def card(holder: str) -> pb.FieldValue:
    return pb.FieldValue(
        card=pb.PaymentCard(pan="4242424242424242", exp_month=12, exp_year=2030, holder_name=holder)
    )


CASES = [
    ("name-rlo", "registration", pb.FieldValue(name=f"Zephyrine {RLO}reppiwS"),
     "value.name", "reppiwS"),
    ("name-isolate", "registration", pb.FieldValue(name=f"Zephyrine{RLI} Quillfeather"),
     "value.name", "Quillfeather"),
    ("name-zero-width", "registration", pb.FieldValue(name=f"Zephy{ZWSP}rine Quillfeather"),
     "value.name", "Quillfeather"),
    ("email-mark", "registration", pb.FieldValue(email=f"zephyrine{LRM}@quill.example"),
     "value.email", "zephyrine"),
    ("address-line", "registration", address(["Pumpkinseed 1", f"Lane {RLO}71 tiuS"]),
     "value.address.address_lines[1]", "tiuS"),
    ("address-locality", "registration", address(["Pumpkinseed 1"], f"{RLO}ybllliuQ"),
     "value.address.locality", "ybllliuQ"),
    ("card-holder", "checkout", card(f"ZEPHYRINE {RLO}REHTAEFLLIUQ"),
     "value.card.holder_name", "REHTAEFLLIUQ"),
]  # fmt: skip


def field_violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status (grpc-status-details-bin) on the error"
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.extend(bad_request.field_violations)
    return found


@pytest.mark.parametrize(
    ("caller", "value", "path", "secret"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bidi_and_invisible_characters_are_refused_naming_the_field(
    vault_server: VaultServer,
    subject_id: str,
    caller: str,
    value: pb.FieldValue,
    path: str,
    secret: str,
) -> None:
    client = vault_server.client(caller)

    with pytest.raises(grpc.RpcError) as caught:
        put(client, subject_id, "profile.value", value)

    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    violations = field_violations(error)
    assert [v.field for v in violations] == [path]
    for text in (error.details() or "", *(v.description for v in violations)):
        assert secret not in text
        assert not any(char in text for char in (RLO, RLI, LRM, ZWSP))
    assert secret not in vault_server.output


def test_a_search_with_a_bidi_control_is_refused_too(vault_server: VaultServer) -> None:
    registration = vault_server.client("registration")
    request = pb.FindSubjectsRequest(value=pb.FieldValue(name=f"Zephyrine {RLO}reppiwS"))

    with pytest.raises(grpc.RpcError) as caught:
        registration.vault.FindSubjects(request, timeout=TIMEOUT)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == ["value.name"]
