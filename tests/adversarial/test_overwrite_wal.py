"""An overwritten value must not stay decryptable in SQLite's files, WAL included.

Before, a put that replaced a value deleted the old data key row, but the page
images holding the old wrapped data key and ciphertexts stayed in
``vault.db-wal`` (and the not yet checkpointed ``vault.db``) until the hourly
checkpoint: whoever copied the data directory and the keyring in that window
could unwrap the old data key and read the old value. Now an overwrite
checkpoints (``PRAGMA wal_checkpoint(TRUNCATE)``) right after its commit, as
``DeleteField`` does, and SQLite's ``secure_delete`` zeroes the freed cells.

The attacker here holds the raw files of the data directory and the keyring.
It does not parse SQLite: it tries every window of the files that starts with
the format byte as the old wrapped data key, under the subject key it opens
with the keyring, and, once one opens, every window as the old value's
ciphertext. Before the overwrite the test proves that this attack and a plain
byte scan both find the old value's material; after it, neither may.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from vault.crypto.envelope import FORMAT_V1, InvalidCiphertextError
from vault.errors import DataLoss
from vault.keys.hierarchy import DataKeyMaterial, KeyHierarchy, SubjectKeyMaterial
from vault.keys.local import LocalKeyProvider
from vault.keys.provider import WrappedKey

if TYPE_CHECKING:
    from vault_server import VaultServer

TIMEOUT = 10
PHONE = "+372 5847 3926"
PHONE_E164 = b"+37258473926"
NEW_PHONE = "+372 5311 0864"
WRAPPED_DATA_KEY_BYTES = 1 + 12 + 32 + 16  # format, nonce, key, tag
# A value ciphertext is format + nonce + plaintext + tag; a phone's canonical form
# (a short JSON document) is well under 64 bytes.
VALUE_CIPHERTEXT_BYTES = range(1 + 12 + 16 + 1, 1 + 12 + 16 + 64)


@pytest.fixture
def server(tmp_path: Path, start_vault_server: type[VaultServer]) -> Iterator[VaultServer]:
    started = start_vault_server(tmp_path / "vault", init=True)
    try:
        yield started
    finally:
        code = started.stop()
    assert code == 0, started.output


def put_phone(server: VaultServer, subject: str, number: str) -> None:
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=number)),
        ),
        timeout=TIMEOUT,
    )


def read_from_many_threads(server: VaultServer, subject: str) -> None:
    """Reads on several server threads at once, so that each holds its own hot-read
    connection to the database when the overwrite checkpoints."""
    desk = server.client("privacy-desk")

    def read(_: int) -> None:
        desk.vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
            ),
            timeout=TIMEOUT,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(read, range(32)))


def read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True)


def subject_key(database: Path, subject: str) -> SubjectKeyMaterial:
    with closing(read_only(database)) as connection:
        key_id, kek_id, kek_version, wrapped = connection.execute(
            "SELECT key_id, kek_id, kek_version, wrapped FROM subject_keys WHERE subject_id = ?",
            (subject,),
        ).fetchone()
    return SubjectKeyMaterial(key_id, subject, WrappedKey(kek_id, kek_version, bytes(wrapped)))


def field_material(database: Path, subject: str) -> dict[str, bytes]:
    """The phone field's data key id, wrapped data key and ciphertexts, as stored."""
    with closing(read_only(database)) as connection:
        dek_id, value_ct, view_ct = connection.execute(
            "SELECT dek_id, value_ct, view_ct FROM fields WHERE subject_id = ? AND field = 'phone'",
            (subject,),
        ).fetchone()
        (wrapped,) = connection.execute(
            "SELECT wrapped FROM data_keys WHERE dek_id = ?", (dek_id,)
        ).fetchone()
    return {
        "dek_id": dek_id.encode(),
        "wrapped data key": bytes(wrapped),
        "value ciphertext": bytes(value_ct),
        "view ciphertext": bytes(view_ct),
    }


def database_files(data_dir: Path) -> dict[str, bytes]:
    """vault.db, vault.db-wal, vault.db-shm: whatever of them exists, raw."""
    return {path.name: path.read_bytes() for path in sorted(data_dir.glob("vault.db*"))}


def files_holding(data_dir: Path, secret: bytes) -> list[str]:
    return [name for name, data in database_files(data_dir).items() if secret in data]


def windows(blobs: Iterable[bytes], lengths: Iterable[int]) -> Iterator[bytes]:
    """Every slice of the files that starts with the format byte, in the given lengths."""
    marker = bytes((FORMAT_V1,))
    sizes = list(lengths)
    for data in blobs:
        offset = data.find(marker)
        while offset != -1:
            for size in sizes:
                if offset + size <= len(data):
                    yield data[offset : offset + size]
            offset = data.find(marker, offset + 1)


def offline_recovery(data_dir: Path, subject: str, dek_id: str) -> bytes | None:
    """The old phone value, recovered from the raw files with the keyring, or None."""
    keys = KeyHierarchy(LocalKeyProvider(data_dir / "keyring.json"))
    owner = subject_key(data_dir / "vault.db", subject)  # still alive: only the field changed
    blobs = list(database_files(data_dir).values())
    for candidate in windows(blobs, [WRAPPED_DATA_KEY_BYTES]):
        material = DataKeyMaterial(dek_id, subject, "phone", owner.key_id, candidate)
        try:
            cipher = keys.open_data_key(material, owner)
        except DataLoss:
            continue
        for ciphertext in windows(blobs, VALUE_CIPHERTEXT_BYTES):
            try:
                return cipher.open_value(ciphertext)
            except InvalidCiphertextError:
                continue
    return None


def test_an_overwritten_value_cannot_be_recovered_from_the_database_files(
    server: VaultServer,
) -> None:
    data_dir = server.data_dir
    database = data_dir / "vault.db"
    subject = f"wal-{uuid.uuid4()}"
    bystander = f"wal-{uuid.uuid4()}"
    put_phone(server, subject, PHONE)
    put_phone(server, bystander, "+372 5000 1234")
    old = field_material(database, subject)
    old_dek_id = old.pop("dek_id").decode()

    # Counter-checks: before the overwrite the scan finds every piece of the old
    # value's material, and the offline attack reads the value back.
    found = {what: files_holding(data_dir, data) for what, data in old.items()}
    assert all(found.values()), found
    recovered = offline_recovery(data_dir, subject, old_dek_id)
    assert recovered is not None and PHONE_E164 in recovered

    read_from_many_threads(server, subject)

    put_phone(server, subject, NEW_PHONE)

    # Right after the call, with the server running and nothing else checkpointing.
    left = {what: files_holding(data_dir, data) for what, data in old.items()}
    recovered_after = offline_recovery(data_dir, subject, old_dek_id)
    assert left == {what: [] for what in old}, "the old value's material is still in the files"
    assert recovered_after is None
    # The scan still sees live rows: the new value's and the bystander's keys.
    new = field_material(database, subject)
    assert files_holding(data_dir, new["wrapped data key"]) != []
    assert files_holding(data_dir, field_material(database, bystander)["wrapped data key"]) != []
