"""Master-key rotation over the real server: the CLI, the gRPC API, and the backup it defeats.

The point of rotating, rewrapping and retiring: a database backup taken
before a shred still holds the shredded subject's wrapped keys. Once the
master key version that wrapped them is retired, the current keyring opens
nothing in that backup. ``test_a_backup_from_before_a_shred_dies_with_the_retired_version``
shows both halves: the same backup and keyring *do* open the subject before
the rotation, and do not after it.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pii_vault_client.v1 import vault_pb2 as pb

from vault.crypto.envelope import (
    FieldCipher,
    data_key_aad,
    subject_key_context,
    unwrap_data_key,
)
from vault.errors import Unavailable
from vault.keys.local import LocalKeyProvider
from vault.keys.provider import WrappedKey
from vault.transport.servicer import RETIRED_VERSIONS_METADATA

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

PHONE = "+372 5123 4567"
PHONE_E164 = "+37251234567"
SECRETS = ("51234567", "5123 4567")


def put_phone(server: VaultServer, subject_id: str, number: str = PHONE) -> None:
    server.client("registration").vault.PutField(
        pb.PutFieldRequest(
            subject_id=subject_id,
            field="phone",
            value=pb.FieldValue(phone=pb.PhoneNumber(number=number)),
        )
    )


def read_plaintext(server: VaultServer, subject_id: str) -> pb.GetFieldResponse:
    return server.client("privacy-desk").vault.GetField(
        pb.GetFieldRequest(
            subject_id=subject_id, field="phone", view=pb.VIEW_PLAINTEXT, purpose="dsar"
        )
    )


def key_status(server: VaultServer) -> dict[int, tuple[str, int]]:
    answer = server.client("admin").keys.GetKeyStatus(pb.GetKeyStatusRequest())
    return {v.version: (v.state, v.uses) for v in answer.versions}


def cli(run_vault: RunVault, server: VaultServer, *args: str) -> str:
    done = run_vault(*args, "--data-dir", str(server.data_dir), "--target", server.target)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- through the CLI and the API, on SQLite and PostgreSQL ------------------------------------


def test_rotate_and_rewrap_through_the_cli_keep_every_value_readable(
    vault_server: VaultServer, run_vault: RunVault
) -> None:
    subjects = [f"e2e-rot-{uuid.uuid4()}" for _ in range(5)]
    for n, subject in enumerate(subjects):
        put_phone(vault_server, subject, f"+372 5{n:03d} 4567")
    before = key_status(vault_server)
    current = max(before)
    assert before[current][0] == pb.MASTER_KEY_STATE_CURRENT
    keys_before = sum(uses for _, uses in before.values())

    status = cli(run_vault, vault_server, "keys", "status", "--as", "admin")
    assert re.search(
        rf"^local-\S+ v{current} current +uses={keys_before} created=\S+Z$", status, re.M
    )

    rotated = cli(run_vault, vault_server, "keys", "rotate", "--as", "admin")
    assert re.fullmatch(
        rf"rotated: master key local-\S+ version {current + 1} is current\n", rotated
    )

    rewrapped = cli(run_vault, vault_server, "keys", "rewrap", "--as", "admin", "--batch-size", "2")
    lines = rewrapped.splitlines()
    assert all(re.fullmatch(r"rewrapped \d+/\d+", line) for line in lines[:-1]), rewrapped
    progress = [
        (int(done), int(total))
        for done, total in (line.removeprefix("rewrapped ").split("/") for line in lines[:-1])
    ]
    assert progress[0] == (0, keys_before)
    assert progress[-1] == (keys_before, keys_before)
    assert len(progress) > 3  # batches of 2: progress really streamed
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    retired = ", ".join(
        str(v) for v in sorted(before) if before[v][0] != pb.MASTER_KEY_STATE_RETIRED
    )
    assert lines[-1] == f"retired master key versions: {retired}"

    after = key_status(vault_server)
    assert after[current + 1] == (pb.MASTER_KEY_STATE_CURRENT, keys_before)
    assert all(after[v] == (pb.MASTER_KEY_STATE_RETIRED, 0) for v in before)

    for n, subject in enumerate(subjects):
        answer = read_plaintext(vault_server, subject)
        assert answer.value.phone.number == f"+3725{n:03d}4567"


def test_the_key_admin_api(vault_server: VaultServer) -> None:
    subject = f"e2e-rot-{uuid.uuid4()}"
    put_phone(vault_server, subject)
    admin = vault_server.client("admin").keys

    rotated = admin.RotateMasterKey(pb.RotateMasterKeyRequest())
    assert rotated.key_id.startswith("local-") and rotated.version >= 2
    status = admin.GetKeyStatus(pb.GetKeyStatusRequest())
    [current] = [v for v in status.versions if v.state == pb.MASTER_KEY_STATE_CURRENT]
    assert (current.key_id, current.version) == (rotated.key_id, rotated.version)
    assert current.created_at.seconds > 0

    call = admin.RewrapKeys(pb.RewrapKeysRequest(batch_size=1))
    replies = list(call)
    assert replies[0].done == 0 and replies[-1].done == replies[-1].total > 0
    assert [r.done for r in replies] == list(range(replies[-1].total + 1))  # one key per batch
    retired = dict(call.trailing_metadata())[RETIRED_VERSIONS_METADATA]
    assert str(rotated.version - 1) in retired.split(",")
    status = admin.GetKeyStatus(pb.GetKeyStatusRequest())
    assert {(v.state, v.uses) for v in status.versions if v.version < rotated.version} == {
        (pb.MASTER_KEY_STATE_RETIRED, 0)
    }
    assert read_plaintext(vault_server, subject).value.phone.number == PHONE_E164


@pytest.mark.parametrize("caller", ["registration", "privacy-desk", "deletion"])
def test_key_admin_needs_the_admin_grant(vault_server: VaultServer, caller: str) -> None:
    keys = vault_server.client(caller).keys
    before = key_status(vault_server)
    for call in (
        lambda: keys.RotateMasterKey(pb.RotateMasterKeyRequest()),
        lambda: list(keys.RewrapKeys(pb.RewrapKeysRequest())),
        lambda: keys.GetKeyStatus(pb.GetKeyStatusRequest()),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert key_status(vault_server) == before


def test_rewrap_batch_size_is_checked(vault_server: VaultServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(vault_server.client("admin").keys.RewrapKeys(pb.RewrapKeysRequest(batch_size=-1)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- the backup ------------------------------------------------------------------------------


def copy_database(source_dir: Path, target_dir: Path) -> None:
    """The SQLite files of a stopped server: the database and any WAL beside it."""
    target_dir.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name in ("vault.db", "vault.db-wal", "vault.db-shm"):
        if (source_dir / name).exists():
            shutil.copy2(source_dir / name, target_dir / name)
            copied += 1
    assert (target_dir / "vault.db").exists() and copied


def open_subject_from_backup(backup_dir: Path, keyring: Path, subject_id: str, work: Path) -> bytes:
    """What an attacker holding the backup and the keyring does: unwrap, unwrap, decrypt."""
    scratch = work / uuid.uuid4().hex
    copy_database(backup_dir, scratch)  # leave the backup itself untouched
    db = sqlite3.connect(scratch / "vault.db")
    try:
        key_id, kek_id, kek_version, wrapped = db.execute(
            "SELECT key_id, kek_id, kek_version, wrapped FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        ).fetchone()
        dek_id, field, wrapped_dek = db.execute(
            "SELECT dek_id, field, wrapped FROM data_keys WHERE subject_id = ?", (subject_id,)
        ).fetchone()
        (value_ct,) = db.execute(
            "SELECT value_ct FROM fields WHERE subject_id = ? AND field = ?", (subject_id, field)
        ).fetchone()
    finally:
        db.close()
    subject_key = LocalKeyProvider(keyring).unwrap(
        WrappedKey(kek_id, kek_version, wrapped), subject_key_context(subject_id, key_id)
    )
    dek = unwrap_data_key(AESGCM(subject_key), wrapped_dek, data_key_aad(subject_id, field, dek_id))
    return FieldCipher(dek, subject_id, field, dek_id).open_value(value_ct)


@pytest.mark.slow
def test_a_backup_from_before_a_shred_dies_with_the_retired_version(
    tmp_path: Path, start_vault_server: type[VaultServer]
) -> None:
    data_dir = tmp_path / "vault"
    keyring = data_dir / "keyring.json"
    backup = tmp_path / "backup"
    subject = f"e2e-backup-{uuid.uuid4()}"
    survivor = f"e2e-backup-{uuid.uuid4()}"

    server = start_vault_server(data_dir)
    try:
        put_phone(server, subject)
        put_phone(server, survivor, "+372 5876 5432")
        assert read_plaintext(server, subject).value.phone.number == PHONE_E164
    finally:
        assert server.stop() == 0, server.output
    copy_database(data_dir, backup)  # "the backup": the database files of the stopped server
    old_keyring = json.loads(keyring.read_text())
    [v1] = old_keyring["versions"]

    # The counter-case: today, the backup and the keyring open the subject.
    assert PHONE_E164.encode() in open_subject_from_backup(backup, keyring, subject, tmp_path)

    server = start_vault_server(data_dir, init=False)
    try:
        receipt = (
            server.client("deletion")
            .vault.ShredSubject(
                pb.ShredSubjectRequest(subject_id=subject, reason="account closed", request_id="r1")
            )
            .receipt
        )
        assert receipt.subject_id == subject
        with pytest.raises(grpc.RpcError) as caught:
            read_plaintext(server, subject)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # The shred alone does not help against the backup: the old version still opens it.
        assert PHONE_E164.encode() in open_subject_from_backup(backup, keyring, subject, tmp_path)

        admin = server.client("admin").keys
        assert admin.RotateMasterKey(pb.RotateMasterKeyRequest()).version == 2
        call = admin.RewrapKeys(pb.RewrapKeysRequest(batch_size=2))
        assert list(call)[-1].done > 0
        assert dict(call.trailing_metadata())[RETIRED_VERSIONS_METADATA] == "1"
        assert key_status(server)[1] == (pb.MASTER_KEY_STATE_RETIRED, 0)
        assert read_plaintext(server, survivor).value.phone.number == "+37258765432"
    finally:
        assert server.stop() == 0, server.output

    # The retired key is gone from the keyring file, not merely marked.
    assert v1["key"] not in keyring.read_text()
    # With the current keyring, the backup's subject key opens no more.
    with pytest.raises(Unavailable, match="version 1 is retired"):
        open_subject_from_backup(backup, keyring, subject, tmp_path)

    # Nor does a vault restored from the backup with the current keyring serve it.
    restored = tmp_path / "restored"
    shutil.copytree(data_dir, restored, ignore=shutil.ignore_patterns("vault.db*", "server.log"))
    copy_database(backup, restored)
    server = start_vault_server(restored, init=False)
    try:
        for view, purpose in ((pb.VIEW_PLAINTEXT, "dsar"), (pb.VIEW_MASKED, "")):
            with pytest.raises(grpc.RpcError) as caught:
                server.client("privacy-desk").vault.GetField(
                    pb.GetFieldRequest(
                        subject_id=subject, field="phone", view=view, purpose=purpose
                    )
                )
            assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS)
            assert not any(secret in (caught.value.details() or "") for secret in SECRETS)
    finally:
        assert server.stop() == 0, server.output
    assert not any(secret in server.output for secret in SECRETS)
