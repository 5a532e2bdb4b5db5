"""The example deletion worker (clients/examples/deletion_worker.py) against the real server.

The worker runs as its own process (``python clients/examples/deletion_worker.py``),
as a deletion workflow would run it; its receipts are checked with
``pii-vault receipts verify``. Its retries are pii-vault-client's policy (the shred
carries a request id), seen through a proxy whose port refuses until it opens.
Runs once per store (SQLite, PostgreSQL).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from openbao import TcpProxy
from pii_vault_client.v1 import vault_pb2 as pb

from clients.examples import deletion_worker
from vault.crypto.signing import ReceiptSigner, new_signing_key_pem

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PHONE = "+372 5123 9090"
EMAIL = "Worker.Test@Example.COM"


def worker_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("VAULT_")}


def worker_command(data_dir: Path, target: str, receipts: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "clients" / "examples" / "deletion_worker.py"),
        "--data-dir",
        str(data_dir),
        "--target",
        target,
        "--receipts-dir",
        str(receipts),
        *args,
    ]


def run_worker(
    data_dir: Path, target: str, receipts: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        worker_command(data_dir, target, receipts, *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=worker_env(),
        timeout=120,
        check=False,
    )


def store_account(server: VaultServer, account: str) -> None:
    registration = server.client("registration")
    for field, value in (
        ("phone", pb.FieldValue(phone=pb.PhoneNumber(number=PHONE))),
        ("email", pb.FieldValue(email=EMAIL)),
    ):
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=account, field=field, value=value), timeout=10
        )


def read_code(server: VaultServer, account: str) -> grpc.StatusCode:
    try:
        server.client("registration").vault.GetField(
            pb.GetFieldRequest(subject_id=account, field="phone"), timeout=10
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def verify(run_vault: RunVault, data_dir: Path, receipt: Path) -> subprocess.CompletedProcess[str]:
    return run_vault("receipts", "verify", "--data-dir", str(data_dir), str(receipt))


def test_the_worker_files_receipts_leaves_a_held_account_pending_and_is_idempotent(
    vault_server: VaultServer, run_vault: RunVault, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    first, second, held = (f"acct-{run}-{n}" for n in ("a", "b", "held"))
    for account in (first, second, held):
        store_account(vault_server, account)
    vault_server.client("privacy-desk").vault.SetLegalHold(
        pb.SetLegalHoldRequest(subject_id=held, hold=True, reason="litigation LX-2291"),
        timeout=10,
    )
    receipts = tmp_path / "receipts"
    accounts_file = tmp_path / "accounts.txt"
    accounts_file.write_text(f"# to delete\n{second}\n\n{held}  # on hold\n")
    data_dir, target = vault_server.data_dir, vault_server.target

    done = run_worker(data_dir, target, receipts, first, "--accounts-file", str(accounts_file))

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("2 filed, 1 pending under legal hold, 0 failed")
    assert re.search(rf"^pending +{held} .*legal hold", done.stdout, re.MULTILINE)
    assert sorted(p.name for p in receipts.iterdir()) == sorted([f"{first}.json", f"{second}.json"])
    for account in (first, second):
        receipt_file = receipts / f"{account}.json"
        checked = verify(run_vault, data_dir, receipt_file)
        assert checked.returncode == 0, checked.stderr
        body = json.loads(receipt_file.read_text())["receipt"]
        assert (body["subject_id"], body["request_id"]) == (account, f"delete-{account}")
        assert body["fields_destroyed"] == 2
        assert read_code(vault_server, account) is grpc.StatusCode.FAILED_PRECONDITION
    assert read_code(vault_server, held) is grpc.StatusCode.OK  # nothing destroyed under hold
    filed = {p.name: p.read_bytes() for p in receipts.iterdir()}

    # Running again changes nothing: same receipts, byte for byte; still pending.
    again = run_worker(data_dir, target, receipts, first, "--accounts-file", str(accounts_file))
    assert again.returncode == 2, again.stdout + again.stderr
    assert {p.name: p.read_bytes() for p in receipts.iterdir()} == filed

    # Release: the vault carries out the queued shred; the next run files its receipt.
    released = run_vault(
        "hold",
        "--data-dir",
        str(data_dir),
        "--as",
        "privacy-desk",
        "--target",
        target,
        held,
        "--release",
    )
    assert released.returncode == 0, released.stderr
    assert read_code(vault_server, held) is grpc.StatusCode.FAILED_PRECONDITION

    last = run_worker(data_dir, target, receipts, first, "--accounts-file", str(accounts_file))
    assert last.returncode == 0, last.stdout + last.stderr
    assert last.stdout.rstrip().endswith("3 filed, 0 pending under legal hold, 0 failed")
    held_file = receipts / f"{held}.json"
    checked = verify(run_vault, data_dir, held_file)
    assert checked.returncode == 0, checked.stderr
    body = json.loads(held_file.read_text())["receipt"]
    assert (body["subject_id"], body["request_id"]) == (held, f"delete-{held}")
    assert body["fields_destroyed"] == 2
    assert {p.name: p.read_bytes() for p in receipts.iterdir() if p != held_file} == filed


def test_the_worker_never_files_a_receipt_that_does_not_verify(
    vault_server: VaultServer, run_vault: RunVault, tmp_path: Path
) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    store_account(vault_server, account)
    receipts = tmp_path / "receipts"
    stranger = ReceiptSigner.from_pem(new_signing_key_pem()).public_pem()
    client = vault_server.client("deletion")

    [outcome] = deletion_worker.erase_accounts(client, [account], receipts, stranger)

    assert outcome.status == deletion_worker.FAILED
    assert "does not verify" in outcome.detail
    assert not (receipts / f"{account}.json").exists()
    # With the vault's own key the same request is filed, and it verifies.
    public = (vault_server.data_dir / "receipt-signing.pub").read_bytes()
    [outcome] = deletion_worker.erase_accounts(client, [account], receipts, public)
    assert outcome.status == deletion_worker.FILED
    assert outcome.receipt_path == receipts / f"{account}.json"
    assert verify(run_vault, vault_server.data_dir, outcome.receipt_path).returncode == 0


def test_the_worker_refuses_account_ids_that_would_leave_the_receipts_dir(
    vault_server: VaultServer, tmp_path: Path
) -> None:
    receipts = tmp_path / "receipts"
    public = (vault_server.data_dir / "receipt-signing.pub").read_bytes()
    outcomes = deletion_worker.erase_accounts(
        vault_server.client("deletion"), ["../escape", "a/b"], receipts, public
    )
    assert [o.status for o in outcomes] == [deletion_worker.FAILED] * 2
    assert not (tmp_path / "escape.json").exists()
    assert not receipts.exists()


# -- retries -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_worker_retries_until_the_vault_answers(
    vault_server: VaultServer, run_vault: RunVault, tmp_path: Path
) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    store_account(vault_server, account)
    data_dir = vault_server.data_dir
    proxy = TcpProxy(f"tcp://127.0.0.1:{vault_server.port}")  # refuses until started
    receipts = tmp_path / "receipts"
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            worker_command(
                data_dir,
                f"localhost:{proxy.port}",
                receipts,
                account,
                "--attempts",
                "5",
                "--backoff",
                "1",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=worker_env(),
        )
    try:
        deadline = time.monotonic() + 30
        while "UNAVAILABLE, retrying" not in worker_log.read_text():
            assert worker.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.05)
        # Only now does the vault's port answer; the worker's next attempt gets through.
        proxy.start()
        code = worker.wait(timeout=90)
        output = worker_log.read_text()
        assert code == 0, output
        assert output.rstrip().endswith("1 filed, 0 pending under legal hold, 0 failed")
        assert proxy.accepted >= 1
        receipt_file = receipts / f"{account}.json"
        checked = verify(run_vault, data_dir, receipt_file)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(receipt_file.read_text())["receipt"]["fields_destroyed"] == 2
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        proxy.stop()


def test_the_worker_gives_up_after_its_attempts_and_reports_the_failure(
    vault_server: VaultServer, tmp_path: Path
) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    receipts = tmp_path / "receipts"
    done = run_worker(
        vault_server.data_dir,
        f"localhost:{free_port()}",
        receipts,
        account,
        "--attempts",
        "3",
        "--backoff",
        "0.2",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("UNAVAILABLE, retrying") == 2, done.stderr
    assert done.stdout.rstrip().endswith("0 filed, 0 pending under legal hold, 1 failed")
    assert f"failed   {account}  (UNAVAILABLE" in done.stdout
    assert not receipts.exists()
