"""A corrupt row answers DATA_LOSS, not UNAVAILABLE: clients stop retrying and operators hear.

A database holder (or a failing disk) changes one field row in the server's
own ``vault.db`` while the server runs. A masked ``GetField`` of that field
must answer ``DATA_LOSS`` -- the status the transport logs as an integrity
alarm -- and neither ``UNAVAILABLE`` ("the database is not reachable", which
clients retry for ever) nor ``INTERNAL``; the other fields keep answering,
and the tampered bytes never reach the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import grpc
import pytest
from pii_vault_client.v1 import vault_pb2 as pb
from vault_server import VaultServer

MARKER = "tamper-marker-5c2e"
# Each tamper a database holder can write with the sqlite3 shell.
TAMPERS = {
    # The driver cannot decode the row; its error message quotes the text.
    "field_type not UTF-8": f"field_type = CAST(X'FFFE' || '{MARKER}' AS TEXT)",
    "unknown field_type": f"field_type = '{MARKER}'",
    "view_ct as text": f"view_ct = '{MARKER}'",
    "value_ct as a number": "value_ct = 4096",
    "version as text": f"version = '{MARKER}'",
    "updated_at not a time": f"updated_at = '{MARKER}'",
}


def put_phone(server: VaultServer, subject_id: str) -> None:
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject_id,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5123 4567")),
        ),
        timeout=30,
    )


def get_masked(server: VaultServer, subject_id: str) -> pb.GetFieldResponse:
    response: pb.GetFieldResponse = server.client("registration").vault.GetField(
        pb.GetFieldRequest(subject_id=subject_id, field="phone", view=pb.VIEW_MASKED),
        timeout=30,
    )
    return response


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_tampered_field_row_answers_data_loss_over_the_real_server(
    sqlite_server: VaultServer, new_subject_id: Callable[[], str], tamper: str
) -> None:
    tampered, intact = new_subject_id(), new_subject_id()
    put_phone(sqlite_server, tampered)
    put_phone(sqlite_server, intact)
    assert "*" in get_masked(sqlite_server, tampered).view.masked  # the read works before

    with sqlite3.connect(sqlite_server.data_dir / "vault.db", timeout=30) as db:
        changed = db.execute(
            f"UPDATE fields SET {TAMPERS[tamper]} WHERE subject_id = ?",  # noqa: S608 -- test constants
            (tampered,),
        ).rowcount
    assert changed == 1

    with pytest.raises(grpc.RpcError) as raised:
        get_masked(sqlite_server, tampered)
    assert raised.value.code() == grpc.StatusCode.DATA_LOSS, raised.value.details()
    assert MARKER not in (raised.value.details() or "")
    assert "*" in get_masked(sqlite_server, intact).view.masked
    assert "data integrity failure" in sqlite_server.output
    assert MARKER not in sqlite_server.output


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_tampered_row_answers_data_loss_when_listed_too(
    sqlite_server: VaultServer, new_subject_id: Callable[[], str], tamper: str
) -> None:
    # ListFields reads rows through the store, not the hot read: the same check holds.
    subject_id = new_subject_id()
    put_phone(sqlite_server, subject_id)
    registration = sqlite_server.client("registration")
    listing = pb.ListFieldsRequest(subject_id=subject_id)
    assert len(registration.vault.ListFields(listing, timeout=30).fields) == 1

    with sqlite3.connect(sqlite_server.data_dir / "vault.db", timeout=30) as db:
        db.execute(
            f"UPDATE fields SET {TAMPERS[tamper]} WHERE subject_id = ?",  # noqa: S608 -- test constants
            (subject_id,),
        )

    with pytest.raises(grpc.RpcError) as raised:
        registration.vault.ListFields(listing, timeout=30)
    assert raised.value.code() == grpc.StatusCode.DATA_LOSS, raised.value.details()
    assert MARKER not in (raised.value.details() or "")
    assert MARKER not in sqlite_server.output
