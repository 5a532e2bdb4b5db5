"""No plaintext leaves the vault by a side door: not in its output, not in its files.

One long run per store stores distinctive values of every type, reads them
back in every view, walks the error paths (invalid values close to the real
ones, denied reveals, idempotency conflicts), and then looks for the
plaintext where it must not be:

- in the SQLite files while the server runs (WAL mode: fresh writes sit in
  ``vault.db-wal``), byte for byte; on PostgreSQL, in every column of every row;
- in everything the server process wrote to stdout and stderr, after SIGTERM;
- in the raw bytes of every file of the data directory, after SIGTERM.

The values are made-up words and numbers that occur nowhere else, so a hit
is a leak, not a coincidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.type import date_pb2, postal_address_pb2
from pii_vault_client.v1 import vault_pb2 as pb
from sqlalchemy import create_engine, inspect, text

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

PHONE = "+372 5839 2714"
PHONE_E164 = "+37258392714"
PHONE_NATIONAL = "58392714"
PHONE_NEAR = "+372 5839 271"  # one digit short: invalid
PHONE_OTHER = "+372 5839 2715"  # valid, and not the stored one
EMAIL = "zephyrine.quillfeather@leakcheck.example"
EMAIL_NEAR = "zephyrine.quillfeather@@leakcheck.example"
NAME = "Zephyrine Quillfeather-Osei"
LINES = ["17 Pumpkinseed Lane", "Flat 9B Kestrelgate House"]
LOCALITY = "Quillbury"
POSTAL_CODE = "ZQ9 8XW"
PAN = "4539 1488 0343 6467"
PAN_NEAR = "4539 1488 0343 6468"  # fails Luhn
PAYMENT_TOKEN = "pm_1ZqXwVuTsRqP9k7m"
BIRTH = (1987, 6, 15)

SECRETS = (
    PHONE,
    PHONE_E164,
    PHONE_NATIONAL,
    "5839 2714",
    PHONE_NEAR,
    "3725839271",
    PHONE_OTHER,
    "58392715",
    EMAIL,
    "zephyrine.quillfeather",
    "leakcheck",
    NAME,
    "Zephyrine",
    "Quillfeather",
    *LINES,
    "Pumpkinseed",
    "Kestrelgate",
    LOCALITY,
    POSTAL_CODE,
    PAN,
    PAN.replace(" ", ""),
    PAN_NEAR,
    PAN_NEAR.replace(" ", ""),
    PAYMENT_TOKEN,
    "ZqXwVuTsRqP9k7m",
    '"year":1987',
)


def address(region: str = "EE") -> pb.FieldValue:
    return pb.FieldValue(
        address=postal_address_pb2.PostalAddress(
            region_code=region,
            address_lines=LINES,
            locality=LOCALITY,
            postal_code=POSTAL_CODE,
            recipients=[NAME],
        )
    )


def card(pan: str, year: int = 2031) -> pb.FieldValue:
    return pb.FieldValue(card=pb.PaymentCard(pan=pan, exp_month=7, exp_year=year, holder_name=NAME))


def phone(number: str) -> pb.FieldValue:
    return pb.FieldValue(phone=pb.PhoneNumber(number=number))


def refused(call: Callable[..., object], *args: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10)
    return caught.value.code()


def exercise(server: VaultServer, subject_id: str) -> None:
    """Every flow the vault offers, with the distinctive values, good and bad."""
    registration = server.client("registration")
    checkout = server.client("checkout")
    desk = server.client("privacy-desk")
    deletion = server.client("deletion")

    def put(client: VaultClient, field: str, value: pb.FieldValue, key: str = "") -> pb.FieldView:
        request = pb.PutFieldRequest(
            subject_id=subject_id, field=field, value=value, idempotency_key=key
        )
        return client.vault.PutField(request, timeout=10).view

    def get(field: str, view: pb.View.ValueType, purpose: str = "") -> pb.GetFieldRequest:
        return pb.GetFieldRequest(subject_id=subject_id, field=field, view=view, purpose=purpose)

    # Good writes, one of them idempotent and repeated.
    put(registration, "phone", phone(PHONE), key="leak-check-1")
    put(registration, "phone", phone(PHONE), key="leak-check-1")
    put(registration, "email", pb.FieldValue(email=EMAIL))
    put(registration, "name", pb.FieldValue(name=NAME))
    year, month, day = BIRTH
    birth = date_pb2.Date(year=year, month=month, day=day)
    put(registration, "date_of_birth", pb.FieldValue(date_of_birth=birth))
    put(checkout, "address.shipping", address())
    card_view = put(checkout, "card.primary", card(PAN))
    token_view = put(
        checkout,
        "payment_token.stripe",
        pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=PAYMENT_TOKEN)),
    )

    # Reads in every view, and the granted reveals.
    for field in ("phone", "email", "name", "date_of_birth", "address.shipping", "card.primary"):
        desk.vault.GetField(get(field, pb.VIEW_MASKED), timeout=10)
        desk.vault.GetField(get(field, pb.VIEW_TOKEN), timeout=10)
        revealed = desk.vault.GetField(get(field, pb.VIEW_PLAINTEXT, "dsar"), timeout=10)
        assert revealed.HasField("value")
    registration.vault.ListFields(pb.ListFieldsRequest(subject_id=subject_id), timeout=10)
    checkout.vault.BatchGetFields(
        pb.BatchGetFieldsRequest(
            items=[
                get("card.primary", pb.VIEW_TOKEN),
                get("payment_token.stripe", pb.VIEW_PLAINTEXT, "checkout"),
                get("card.primary", pb.VIEW_PLAINTEXT, "checkout"),
            ]
        ),
        timeout=10,
    )
    detokenized = checkout.vault.Detokenize(
        pb.DetokenizeRequest(token=token_view.token, purpose="checkout"), timeout=10
    )
    assert detokenized.value.payment_token.token == PAYMENT_TOKEN
    found = registration.vault.FindSubjects(
        pb.FindSubjectsRequest(value=phone("00" + PHONE_E164[1:])), timeout=10
    )
    assert found.found
    assert not found.subject_ids  # registration's grant answers "exists" only

    # Error paths: invalid values close to the real ones, denied reveals, conflicts.
    def put_request(field: str, value: pb.FieldValue, key: str = "") -> pb.PutFieldRequest:
        return pb.PutFieldRequest(
            subject_id=subject_id, field=field, value=value, idempotency_key=key
        )

    other_provider = pb.PaymentToken(provider="Stripe Inc", token=PAYMENT_TOKEN)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    denied = grpc.StatusCode.PERMISSION_DENIED
    failures: list[tuple[Callable[..., object], object, grpc.StatusCode]] = [
        (registration.vault.PutField, put_request("phone", phone(PHONE_NEAR)), invalid),
        (
            registration.vault.PutField,
            put_request("email", pb.FieldValue(email=EMAIL_NEAR)),
            invalid,
        ),
        (
            registration.vault.PutField,
            put_request("name", pb.FieldValue(name=NAME + "\x07")),
            invalid,
        ),
        (checkout.vault.PutField, put_request("card.spare", card(PAN_NEAR)), invalid),
        (checkout.vault.PutField, put_request("card.spare", card(PAN, year=2020)), invalid),
        (checkout.vault.PutField, put_request("address.billing", address("ZZ")), invalid),
        (
            checkout.vault.PutField,
            put_request("payment_token.x", pb.FieldValue(payment_token=other_provider)),
            invalid,
        ),
        (
            checkout.vault.Detokenize,
            pb.DetokenizeRequest(token=PAYMENT_TOKEN, purpose="checkout"),
            invalid,
        ),
        (registration.vault.FindSubjects, pb.FindSubjectsRequest(value=address()), invalid),
        (
            registration.vault.PutField,
            put_request("phone", phone(PHONE_OTHER), "leak-check-1"),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (registration.vault.PutField, put_request("card.primary", card(PAN)), denied),
        (registration.vault.GetField, get("phone", pb.VIEW_PLAINTEXT, "dsar"), denied),
        (checkout.vault.GetField, get("card.primary", pb.VIEW_PLAINTEXT, "checkout"), denied),
        (  # a token of a type it may not detokenize answers as an unknown token
            checkout.vault.Detokenize,
            pb.DetokenizeRequest(token=card_view.token, purpose="checkout"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            checkout.vault.Detokenize,
            pb.DetokenizeRequest(token=token_view.token, purpose="marketing"),
            denied,
        ),
        (desk.vault.GetField, get("email", pb.VIEW_PLAINTEXT, ""), denied),
    ]
    for call, request, code in failures:
        assert refused(call, request) is code, request

    # A replaced value and a deleted field: the old keys are gone, the rows rewritten.
    put(registration, "name", pb.FieldValue(name=NAME.upper()))
    deletion.vault.DeleteField(
        pb.DeleteFieldRequest(subject_id=subject_id, field="email"), timeout=10
    )


def hits(haystack: bytes, secrets: Iterable[str]) -> list[str]:
    return [secret for secret in secrets if secret.encode() in haystack]


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def database_rows_as_bytes(url: str) -> bytes:
    """Every value of every column of every table, as bytes, for a logical scan."""
    engine = create_engine(url)
    chunks: list[bytes] = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            chunks.append(bytes(value))
                        else:
                            chunks.append(str(value).encode())
    finally:
        engine.dispose()
    return b"\x00".join(chunks)


def test_no_plaintext_in_output_or_files(vault_server: VaultServer, subject_id: str) -> None:
    exercise(vault_server, subject_id)
    upper_name = NAME.upper()
    secrets = (*SECRETS, upper_name)

    # While the server runs: SQLite's main file and WAL, or PostgreSQL's rows.
    if vault_server.database_url is None:
        live = [p for p in files_under(vault_server.data_dir) if p.name.startswith("vault.db")]
        assert any(p.name == "vault.db-wal" and p.stat().st_size > 0 for p in live)
        contents = {path.name: path.read_bytes() for path in live}
        assert any(subject_id.encode() in data for data in contents.values())  # scan sees rows
        for name, data in contents.items():
            assert hits(data, secrets) == [], name
    else:
        rows = database_rows_as_bytes(vault_server.database_url)
        assert subject_id.encode() in rows  # the scan does see the stored rows
        assert hits(rows, secrets) == []

    assert vault_server.stop() == 0

    output = vault_server.output
    assert "listening on" in output  # the capture is the real one
    assert [s for s in secrets if s in output] == []
    assert "Traceback (most recent call last)" not in output
    scanned = files_under(vault_server.data_dir)
    assert vault_server.data_dir / "keyring.json" in scanned
    for path in scanned:
        assert hits(path.read_bytes(), secrets) == [], path.relative_to(vault_server.data_dir)
