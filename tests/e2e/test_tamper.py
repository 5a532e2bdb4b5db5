"""Tampering with stored ciphertexts, under a running server: DATA_LOSS, never a wrong value.

The SQLite store runs in WAL mode, so these tests open ``vault.db`` with the
stdlib ``sqlite3`` module and rewrite rows while the server keeps serving.
Every test first shows the read working, then tampers and expects
``DATA_LOSS``; where it can, it puts the original bytes back and shows the
read working again, so the failure is the tamper's doing and nothing else.
The server caches unwrapped data keys; the tampering is on the ciphertexts
and row bindings, so a warm cache must not help a tampered row through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import VaultClient

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

PHONE_A = "+372 5839 2714"
PHONE_A_E164 = "+37258392714"
PHONE_B = "+372 5123 4569"
PHONE_B_E164 = "+37251234569"
INTEGRITY_ALARM = "data integrity failure"


@dataclass(frozen=True)
class Row:
    value_ct: bytes
    view_ct: bytes
    dek_id: str


class FieldsTable:
    """The ``fields`` table of a live SQLite store; every call opens a fresh connection."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30)

    def read(self, subject_id: str, field: str) -> Row:
        with closing(self._connect()) as conn:
            found = conn.execute(
                "SELECT value_ct, view_ct, dek_id FROM fields WHERE subject_id = ? AND field = ?",
                (subject_id, field),
            ).fetchone()
        assert found is not None, f"no stored row for {field}"
        return Row(bytes(found[0]), bytes(found[1]), found[2])

    def write(self, subject_id: str, field: str, **columns: bytes | str) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)  # names from this file only
        with closing(self._connect()) as conn, conn:
            changed = conn.execute(
                f"UPDATE fields SET {assignments} WHERE subject_id = ? AND field = ?",  # noqa: S608
                (*columns.values(), subject_id, field),
            ).rowcount
        assert changed == 1


def flip(blob: bytes, position: int) -> bytes:
    """``blob`` with every bit of one byte inverted."""
    index = position % len(blob)
    return blob[:index] + bytes((blob[index] ^ 0xFF,)) + blob[index + 1 :]


def expect_data_loss(call: Callable[[], object], *forbidden: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() is grpc.StatusCode.DATA_LOSS, error.details()
    for text in forbidden:
        assert text not in (error.details() or "")


@pytest.fixture
def table(sqlite_server: VaultServer) -> FieldsTable:
    return FieldsTable(sqlite_server.data_dir / "vault.db")


@pytest.fixture
def registration(sqlite_server: VaultServer) -> VaultClient:
    return sqlite_server.client("registration")


@pytest.fixture
def desk(sqlite_server: VaultServer) -> VaultClient:
    return sqlite_server.client("privacy-desk")


def put_phone(client: VaultClient, subject_id: str, field: str, number: str) -> None:
    client.vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject_id,
            field=field,
            value=pb.FieldValue(phone=pb.PhoneNumber(number=number)),
        )
    )


def plaintext(desk: VaultClient, subject_id: str, field: str) -> str:
    """The phone number the privacy desk reads for a DSAR."""
    return desk.vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject_id, field=field, view=pb.VIEW_PLAINTEXT, purpose="dsar"
        )
    ).value.phone.number


def masked(client: VaultClient, subject_id: str, field: str) -> str:
    return client.vault.GetField(pb.GetFieldRequest(subject_id=subject_id, field=field)).view.masked


# Version byte, nonce, ciphertext body, the last byte of the GCM tag.
POSITIONS = [
    pytest.param(0, id="version"),
    pytest.param(5, id="nonce"),
    pytest.param(14, id="body"),
    pytest.param(-1, id="tag"),
]


@pytest.mark.parametrize("position", POSITIONS)
def test_flipped_value_byte_is_data_loss(
    sqlite_server: VaultServer,
    table: FieldsTable,
    registration: VaultClient,
    desk: VaultClient,
    subject_id: str,
    position: int,
) -> None:
    put_phone(registration, subject_id, "phone", PHONE_A)
    assert plaintext(desk, subject_id, "phone") == PHONE_A_E164
    original = table.read(subject_id, "phone")

    table.write(subject_id, "phone", value_ct=flip(original.value_ct, position))

    expect_data_loss(lambda: plaintext(desk, subject_id, "phone"), PHONE_A_E164)
    assert INTEGRITY_ALARM in sqlite_server.output
    table.write(subject_id, "phone", value_ct=original.value_ct)
    assert plaintext(desk, subject_id, "phone") == PHONE_A_E164


@pytest.mark.parametrize("position", POSITIONS)
def test_flipped_view_byte_is_data_loss(
    table: FieldsTable,
    registration: VaultClient,
    desk: VaultClient,
    subject_id: str,
    position: int,
) -> None:
    put_phone(registration, subject_id, "phone", PHONE_A)
    assert masked(registration, subject_id, "phone") == "+372 **** **14"
    original = table.read(subject_id, "phone")

    table.write(subject_id, "phone", view_ct=flip(original.view_ct, position))

    expect_data_loss(lambda: masked(registration, subject_id, "phone"))
    expect_data_loss(
        lambda: registration.vault.ListFields(pb.ListFieldsRequest(subject_id=subject_id))
    )
    # A plaintext read opens the view too: it must not hand out the value regardless.
    expect_data_loss(lambda: plaintext(desk, subject_id, "phone"), PHONE_A_E164)
    table.write(subject_id, "phone", view_ct=original.view_ct)
    assert masked(registration, subject_id, "phone") == "+372 **** **14"


def test_ciphertexts_copied_to_another_subject_are_data_loss(
    table: FieldsTable,
    registration: VaultClient,
    desk: VaultClient,
    new_subject_id: Callable[[], str],
) -> None:
    subject_a, subject_b = new_subject_id(), new_subject_id()
    put_phone(registration, subject_a, "phone", PHONE_A)
    put_phone(registration, subject_b, "phone", PHONE_B)
    assert plaintext(desk, subject_b, "phone") == PHONE_B_E164  # B's key is now cached
    row_a = table.read(subject_a, "phone")

    table.write(subject_b, "phone", value_ct=row_a.value_ct, view_ct=row_a.view_ct)

    expect_data_loss(lambda: plaintext(desk, subject_b, "phone"), PHONE_A_E164)
    expect_data_loss(lambda: masked(registration, subject_b, "phone"))
    assert plaintext(desk, subject_a, "phone") == PHONE_A_E164


def test_ciphertexts_copied_to_another_field_are_data_loss(
    table: FieldsTable,
    registration: VaultClient,
    desk: VaultClient,
    subject_id: str,
) -> None:
    put_phone(registration, subject_id, "phone", PHONE_A)
    put_phone(registration, subject_id, "phone.work", PHONE_B)
    assert plaintext(desk, subject_id, "phone.work") == PHONE_B_E164
    home = table.read(subject_id, "phone")

    table.write(subject_id, "phone.work", value_ct=home.value_ct)
    expect_data_loss(lambda: plaintext(desk, subject_id, "phone.work"), PHONE_A_E164)

    table.write(subject_id, "phone.work", view_ct=home.view_ct)
    expect_data_loss(lambda: masked(registration, subject_id, "phone.work"))
    assert plaintext(desk, subject_id, "phone") == PHONE_A_E164


def test_view_ciphertext_in_the_value_slot_is_data_loss(
    table: FieldsTable, registration: VaultClient, desk: VaultClient, subject_id: str
) -> None:
    put_phone(registration, subject_id, "phone", PHONE_A)
    row = table.read(subject_id, "phone")

    # Same key, same row: only the value/view binding in the associated data differs.
    table.write(subject_id, "phone", value_ct=row.view_ct, view_ct=row.value_ct)

    expect_data_loss(lambda: plaintext(desk, subject_id, "phone"), PHONE_A_E164)
    expect_data_loss(lambda: masked(registration, subject_id, "phone"))


def test_whole_row_moved_to_another_subject_is_data_loss(
    table: FieldsTable,
    registration: VaultClient,
    desk: VaultClient,
    new_subject_id: Callable[[], str],
) -> None:
    subject_a, subject_b = new_subject_id(), new_subject_id()
    put_phone(registration, subject_a, "phone", PHONE_A)
    put_phone(registration, subject_b, "phone", PHONE_B)
    # Warm the cache with A's data key: the moved row names it.
    assert plaintext(desk, subject_a, "phone") == PHONE_A_E164
    row_a = table.read(subject_a, "phone")

    table.write(
        subject_b, "phone", value_ct=row_a.value_ct, view_ct=row_a.view_ct, dek_id=row_a.dek_id
    )

    expect_data_loss(lambda: plaintext(desk, subject_b, "phone"), PHONE_A_E164)
    expect_data_loss(lambda: masked(registration, subject_b, "phone"))
    assert plaintext(desk, subject_a, "phone") == PHONE_A_E164


def test_whole_row_moved_to_another_field_is_data_loss(
    table: FieldsTable, registration: VaultClient, desk: VaultClient, subject_id: str
) -> None:
    put_phone(registration, subject_id, "phone", PHONE_A)
    put_phone(registration, subject_id, "phone.work", PHONE_B)
    assert plaintext(desk, subject_id, "phone") == PHONE_A_E164
    home = table.read(subject_id, "phone")

    table.write(
        subject_id, "phone.work", value_ct=home.value_ct, view_ct=home.view_ct, dek_id=home.dek_id
    )

    expect_data_loss(lambda: plaintext(desk, subject_id, "phone.work"), PHONE_A_E164)
    expect_data_loss(lambda: masked(registration, subject_id, "phone.work"))
