"""After a shred, the raw bytes of the SQLite files hold neither keys nor values.

The design promises: "After shredding and a checkpoint/VACUUM, a raw byte scan
of the database files finds neither the plaintext nor the wrapped data key."
The server checkpoints (``PRAGMA wal_checkpoint(TRUNCATE)``) after every shred
and runs SQLite with ``secure_delete``, so this is checked right after the
ShredSubject call returns, while the server still runs, and again after it
stopped:

- distinctive plaintexts of every field type are stored for a subject (one of
  them replaced, so an older data key and its ciphertexts were already
  destroyed: those must be gone as well);
- before the shred, the wrapped subject key, every wrapped data key and every
  ciphertext are read from the database with ``sqlite3`` (read-only), and a
  scan of every file of the data directory finds each of them: the scan would
  catch a regression;
- after the shred, the same scan over ``vault.db``, ``vault.db-wal``,
  ``vault.db-shm`` and every other file finds none of them, nor any plaintext,
  while another subject's wrapped key is still found.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from google.type import date_pb2, postal_address_pb2
from pii_vault_client.v1 import vault_pb2 as pb

if TYPE_CHECKING:
    from vault_server import VaultServer

pytestmark = pytest.mark.e2e

PHONE = "+372 5847 3926"
EMAIL = "oriel.vantablack@bytescan.example"
NAME = "Oriel Vantablack-Mbeki"
NEW_NAME = "Oriel Vantablack-Okonkwo"
LINES = ["42 Thistledown Crescent", "Unit 7Q Marrowgate Court"]
LOCALITY = "Fennimoor"
PAN = "4716 0839 2745 1180"
PAYMENT_TOKEN = "pm_1OrielVx9Kq3Zt"

PLAINTEXTS = (
    PHONE,
    "+37258473926",
    "58473926",
    EMAIL,
    "oriel.vantablack",
    "bytescan",
    NAME,
    NEW_NAME,
    "Vantablack",
    *LINES,
    "Thistledown",
    "Marrowgate",
    LOCALITY,
    PAN,
    PAN.replace(" ", ""),
    PAYMENT_TOKEN,
    "OrielVx9Kq3Zt",
)


@dataclass(frozen=True)
class Secret:
    """Bytes that must not survive a shred, and what they are."""

    what: str
    data: bytes


@pytest.fixture
def server(tmp_path: Path, start_vault_server: type[VaultServer]) -> Iterator[VaultServer]:
    started = start_vault_server(tmp_path / "vault", init=True)
    try:
        yield started
    finally:
        code = started.stop()
    assert code == 0, started.output


def store_subject(server: VaultServer, subject: str) -> None:
    registration = server.client("registration")
    checkout = server.client("checkout")

    def put(client: object, field: str, value: pb.FieldValue, key: str = "") -> None:
        client.vault.PutField(  # type: ignore[attr-defined]
            pb.PutFieldRequest(subject_id=subject, field=field, value=value, idempotency_key=key),
            timeout=10,
        )

    put(registration, "phone", pb.FieldValue(phone=pb.PhoneNumber(number=PHONE)), "scan-phone")
    put(registration, "email", pb.FieldValue(email=EMAIL), "scan-email")
    put(registration, "name", pb.FieldValue(name=NAME))
    put(
        registration,
        "date_of_birth",
        pb.FieldValue(date_of_birth=date_pb2.Date(year=1979, month=3, day=28)),
    )
    put(
        checkout,
        "address.shipping",
        pb.FieldValue(
            address=postal_address_pb2.PostalAddress(
                region_code="EE", address_lines=LINES, locality=LOCALITY, recipients=[NAME]
            )
        ),
    )
    put(
        checkout,
        "card.primary",
        pb.FieldValue(card=pb.PaymentCard(pan=PAN, exp_month=9, exp_year=2032, holder_name=NAME)),
    )
    put(
        checkout,
        "payment_token.stripe",
        pb.FieldValue(payment_token=pb.PaymentToken(provider="stripe", token=PAYMENT_TOKEN)),
    )


def read_everything(server: VaultServer, subject: str) -> None:
    """Masked and plaintext reads from many calls at once, so that several server threads
    open their own hot-read connections to the database before the shred."""
    desk = server.client("privacy-desk")
    registration = server.client("registration")
    fields = ("phone", "email", "name", "date_of_birth", "address.shipping", "card.primary")

    def read(field: str) -> None:
        registration.vault.GetField(pb.GetFieldRequest(subject_id=subject, field="phone"))
        desk.vault.GetField(pb.GetFieldRequest(subject_id=subject, field=field), timeout=10)
        revealed = desk.vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject, field=field, view=pb.VIEW_PLAINTEXT, purpose="dsar"
            ),
            timeout=10,
        )
        assert revealed.HasField("value")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(read, fields * 4))
    desk.vault.ListFields(pb.ListFieldsRequest(subject_id=subject), timeout=10)


def read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True)


def key_and_ciphertext_bytes(database: Path, subject: str) -> list[Secret]:
    """The subject's wrapped keys and ciphertexts, as the database holds them."""
    connection = read_only(database)
    try:
        secrets = [
            Secret(f"wrapped subject key {key_id}", bytes(wrapped))
            for key_id, wrapped in connection.execute(
                "SELECT key_id, wrapped FROM subject_keys WHERE subject_id = ?", (subject,)
            )
        ]
        secrets += [
            Secret(f"wrapped data key {dek_id} ({field})", bytes(wrapped))
            for dek_id, field, wrapped in connection.execute(
                "SELECT dek_id, field, wrapped FROM data_keys WHERE subject_id = ?", (subject,)
            )
        ]
        for field, value_ct, view_ct in connection.execute(
            "SELECT field, value_ct, view_ct FROM fields WHERE subject_id = ?", (subject,)
        ):
            secrets.append(Secret(f"value ciphertext of {field}", bytes(value_ct)))
            secrets.append(Secret(f"view ciphertext of {field}", bytes(view_ct)))
    finally:
        connection.close()  # no snapshot may stay open across the shred
    return secrets


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def found_in_files(directory: Path, secrets: Iterable[Secret]) -> dict[str, list[str]]:
    """For each secret, the files of ``directory`` whose raw bytes contain it."""
    contents = {
        path.relative_to(directory).as_posix(): path.read_bytes() for path in files_under(directory)
    }
    return {
        secret.what: [name for name, data in contents.items() if secret.data in data]
        for secret in secrets
    }


def plaintext_hits(directory: Path) -> list[tuple[str, str]]:
    hits = []
    for path in files_under(directory):
        data = path.read_bytes()
        hits += [(path.name, text) for text in PLAINTEXTS if text.encode() in data]
    return hits


def test_after_a_shred_no_key_ciphertext_or_value_is_left_in_the_sqlite_files(
    server: VaultServer,
) -> None:
    data_dir = server.data_dir
    database = data_dir / "vault.db"
    subject = f"scan-{uuid.uuid4()}"
    bystander = f"scan-{uuid.uuid4()}"
    store_subject(server, subject)
    # Replacing a value destroys its data key: the old key and ciphertexts must go too.
    replaced = [
        Secret(f"replaced {secret.what}", secret.data)
        for secret in key_and_ciphertext_bytes(database, subject)
        if secret.what.endswith("(name)") or secret.what.endswith("ciphertext of name")
    ]
    assert len(replaced) == 3
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(subject_id=subject, field="name", value=pb.FieldValue(name=NEW_NAME)),
        timeout=10,
    )
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=bystander,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number="+372 5000 1234")),
        ),
        timeout=10,
    )

    read_everything(server, subject)
    secrets = key_and_ciphertext_bytes(database, subject)
    whats = [s.what for s in secrets]
    assert sum(w.startswith("wrapped subject key") for w in whats) == 1
    assert sum(w.startswith("wrapped data key") for w in whats) == 7  # the old name's is gone
    assert sum(w.endswith("ciphertext of name") for w in whats) == 2
    bystander_key = key_and_ciphertext_bytes(database, bystander)[0]
    assert bystander_key.what.startswith("wrapped subject key")

    # Counter-check: before the shred, the scan does find every one of them.
    before = found_in_files(data_dir, secrets)
    assert {what: files for what, files in before.items() if not files} == {}
    assert all(any(f.startswith("vault.db") for f in files) for files in before.values())
    assert plaintext_hits(data_dir) == []  # values are only ever stored encrypted

    receipt = (
        server.client("deletion")
        .vault.ShredSubject(
            pb.ShredSubjectRequest(subject_id=subject, reason="account closed", request_id=subject),
            timeout=30,
        )
        .receipt
    )
    assert receipt.fields_destroyed == 7
    assert len(receipt.key_ids) == 8

    # Right after the call, with the server still running: nothing is left.
    names = {path.name for path in files_under(data_dir)}
    assert "vault.db" in names
    after = found_in_files(data_dir, [*secrets, *replaced])
    assert {what: files for what, files in after.items() if files} == {}
    assert plaintext_hits(data_dir) == []
    # The scan still sees live rows: another subject's wrapped key is found.
    assert found_in_files(data_dir, [bystander_key])[bystander_key.what] != []

    # And after the server stopped (its last checkpoint and close), still nothing.
    assert server.stop() == 0
    stopped = found_in_files(data_dir, [*secrets, *replaced])
    assert {what: files for what, files in stopped.items() if files} == {}
    assert plaintext_hits(data_dir) == []
    assert found_in_files(data_dir, [bystander_key])[bystander_key.what] != []
