"""Signed documents cannot be swapped or read two ways (issue item 9).

The vault signs shred receipts and DSAR exports with one Ed25519 key. An
attacker holding real files from the real server tries to make them say
something else while still verifying:

- an export relabelled as a receipt (the type used to sit outside the signed
  bytes, so it verified, and a deletion worker filed it as proof of erasure);
- a duplicate JSON key placed before the signed one: Python's parser keeps
  the last value (so the signature checked out) while a first-wins reader
  (many are) shows the forged one.

Every file here comes from the running server (callers ``deletion`` and
``privacy-desk``), and is checked with ``pii-vault receipts verify`` and with
the deletion worker's own check, as an auditor and a client would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pii_vault_client.v1 import vault_pb2 as pb

from clients.examples.deletion_worker import ReceiptRejectedError, receipt_text

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

TIMEOUT = 30
PHONE = "+372 5410 2277"


def store_contact(server: VaultServer, subject: str) -> None:
    registration = server.client("registration")
    for field, value in (
        ("phone", pb.FieldValue(phone=pb.PhoneNumber(number=PHONE))),
        ("email", pb.FieldValue(email="swap.target@example.org")),
    ):
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=TIMEOUT
        )


def cli(server: VaultServer, run_vault: RunVault, caller: str, *args: str) -> str:
    command, *rest = args
    common = ("--data-dir", str(server.data_dir), "--as", caller, "--target", server.target)
    done = run_vault(command, *common, *rest)
    assert done.returncode == 0, done.stderr
    return done.stdout


def verify(
    server: VaultServer, run_vault: RunVault, path: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return run_vault("receipts", "verify", "--data-dir", str(server.data_dir), *options, str(path))


def export_file(server: VaultServer, run_vault: RunVault, subject: str, out: Path) -> Path:
    store_contact(server, subject)
    cli(server, run_vault, "privacy-desk", "export", subject, "--out", str(out))
    return out


def receipt_file(server: VaultServer, run_vault: RunVault, subject: str, out: Path) -> Path:
    store_contact(server, subject)
    cli(
        server,
        run_vault,
        "deletion",
        "shred",
        subject,
        "--reason",
        "account closed",
        "--request-id",
        f"swap-{subject}",
        "--receipt-out",
        str(out),
    )
    return out


def assert_refused(done: subprocess.CompletedProcess[str], why: str) -> None:
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("INVALID: "), done.stderr
    assert why in done.stderr
    assert "Traceback" not in done.stderr


def test_an_export_relabelled_as_a_receipt_no_longer_verifies(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    real = export_file(vault_server, run_vault, subject_id, tmp_path / "export.json")
    assert verify(vault_server, run_vault, real).returncode == 0
    document = json.loads(real.read_text())
    assert document["export"]["type"] == "pii-vault.dsar-export"

    relabelled = tmp_path / "receipt.json"
    relabelled.write_text(
        json.dumps({"receipt": document["export"], "signature": document["signature"]}, indent=2)
    )
    assert_refused(verify(vault_server, run_vault, relabelled), "labels a pii-vault.dsar-export")
    # Labelled honestly, it is still no receipt to whoever asks for one.
    assert_refused(
        verify(vault_server, run_vault, real, "--type", "receipt"), "not a pii-vault.shred-receipt"
    )

    # The deletion worker, handed the export's signed bytes as if they were a receipt
    # about this account, refuses to file them as proof of erasure.
    exported = vault_server.client("privacy-desk").vault.ExportSubject(
        pb.ExportSubjectRequest(subject_id=subject_id, purpose="dsar"), timeout=TIMEOUT
    )
    swapped = pb.ShredReceipt(
        subject_id=subject_id, payload=exported.payload, signature=exported.signature
    )
    public_pem = (vault_server.data_dir / "receipt-signing.pub").read_bytes()
    with pytest.raises(ReceiptRejectedError, match=r"not a pii-vault\.shred-receipt"):
        receipt_text(swapped, subject_id, public_pem)


def with_duplicate(text: str, key: str, forged: str) -> str:
    """Insert ``"key": forged`` just before the signed body's own ``"key": ...`` line
    (the least indented one: nested objects may use the same key)."""
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.lstrip().startswith(f'"{key}": ')]
    index = min(found, key=lambda i: len(lines[i]) - len(lines[i].lstrip()))
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines.insert(index, f'{indent}"{key}": {json.dumps(forged)},\n')
    return "".join(lines)


def test_a_receipt_with_a_duplicate_key_no_longer_verifies(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    real = receipt_file(vault_server, run_vault, subject_id, tmp_path / "receipt.json")
    assert verify(vault_server, run_vault, real).returncode == 0

    forged = tmp_path / "forged.json"
    forged.write_text(with_duplicate(real.read_text(), "subject_id", "someone-else"))
    # Python reads the signed value (the last one); a first-wins reader sees the other.
    assert json.loads(forged.read_text())["receipt"]["subject_id"] == subject_id
    assert '"subject_id": "someone-else"' in forged.read_text()
    assert_refused(verify(vault_server, run_vault, forged), "duplicate key")


def test_an_export_with_a_duplicate_key_no_longer_verifies(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    real = export_file(vault_server, run_vault, subject_id, tmp_path / "export.json")
    forged = tmp_path / "forged.json"
    forged.write_text(with_duplicate(real.read_text(), "purpose", "legal-hold"))
    assert json.loads(forged.read_text())["export"]["purpose"] == "dsar"
    assert_refused(verify(vault_server, run_vault, forged), "duplicate key")
