"""Example caller: the deletion workflow's worker, on pii-vault-client alone.

Erases accounts: for each account id it asks the vault to crypto-shred the
subject, checks the signed receipt with the vault's public receipt key and
files it as ``RECEIPTS_DIR/<account>.json`` (the ``pii-vault receipts verify``
format). It never sees a value. Needs ``pip install 'pii-vault-client[receipts]'``.

    python clients/examples/deletion_worker.py --data-dir var/vault \\
        --receipts-dir var/vault/receipts acct-1 acct-2
    python clients/examples/deletion_worker.py --data-dir var/vault \\
        --receipts-dir var/vault/receipts --accounts-file to-delete.txt

Safe to run again and again, e.g. from cron:

- the request id is derived from the account (``delete-<account>``), so a
  repeated or retried call returns the first receipt, byte for byte, and the
  filed receipt does not change; because the call carries it, the client's own
  retry policy repeats it on UNAVAILABLE (``--attempts``, ``--backoff``);
- an account under a legal hold is refused with ``LEGAL_HOLD``: the vault has
  queued the shred and carries it out when the hold is released, so the
  account is reported *pending* and the next run files its receipt;
- a receipt that does not verify is never filed.

Exit status: 0 when every receipt is filed, 2 when some accounts are pending
under a legal hold (and none failed), 1 when any account failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pii_vault_client import (
    DEFAULT_TARGET,
    Credentials,
    LegalHold,
    RetryPolicy,
    VaultClient,
    VaultError,
)
from pii_vault_client.receipts import ReceiptError, receipt_file_text
from pii_vault_client.v1 import vault_pb2 as pb

CALLER = "deletion"
DEFAULT_REASON = "account deletion requested"
DEFAULT_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=8.0)
# Reconnect quickly, so that a retry meets a vault that has just come back.
RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

FILED = "filed"
PENDING = "pending"
FAILED = "failed"

#: Receipts that must not be filed raise this (the client distribution's ReceiptError).
ReceiptRejectedError = ReceiptError


@dataclass(frozen=True)
class Outcome:
    """What happened to one account: ``filed``, ``pending`` or ``failed``."""

    account: str
    status: str
    detail: str = ""
    receipt_path: Path | None = None


def request_id_for(account: str) -> str:
    """Deterministic, so every run and every retry asks for the same shred."""
    return f"delete-{account}"


def receipt_path_for(receipts_dir: Path, account: str) -> Path:
    """``receipts_dir/<account>.json``, refusing ids that would leave the directory."""
    if not account or "/" in account or "\\" in account or account.startswith("."):
        raise ValueError("the account id cannot name a receipt file")
    return receipts_dir / f"{account}.json"


def shred_account(
    client: VaultClient, account: str, reason: str = DEFAULT_REASON
) -> pb.ShredReceipt:
    """ShredSubject with its request id: the client retries it on UNAVAILABLE."""
    request = pb.ShredSubjectRequest(
        subject_id=account, reason=reason, request_id=request_id_for(account)
    )
    return client.shred_subject(request).receipt


def receipt_text(receipt: pb.ShredReceipt, account: str, public_pem: bytes) -> str:
    """The receipt file's content, once it is checked to be the vault's and about ``account``."""
    return receipt_file_text(receipt.payload, receipt.signature, public_pem, account)


def file_receipt(path: Path, text: str) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def erase_account(
    client: VaultClient,
    account: str,
    receipts_dir: Path,
    public_pem: bytes,
    reason: str = DEFAULT_REASON,
) -> Outcome:
    try:
        path = receipt_path_for(receipts_dir, account)
    except ValueError as error:
        return Outcome(account, FAILED, str(error))
    try:
        receipt = shred_account(client, account, reason)
    except LegalHold as error:
        # The vault queued the shred; a run after the hold is released files the receipt.
        return Outcome(account, PENDING, error.message or "legal hold")
    except VaultError as error:
        return Outcome(account, FAILED, f"{error.reason or error.code.name}: {error.message}")
    try:
        text = receipt_text(receipt, account, public_pem)
    except ReceiptError as error:
        return Outcome(account, FAILED, f"the receipt does not verify: {error}")
    file_receipt(path, text)
    return Outcome(account, FILED, f"{receipt.fields_destroyed} fields", path)


def erase_accounts(
    client: VaultClient,
    accounts: Iterable[str],
    receipts_dir: Path,
    public_pem: bytes,
    reason: str = DEFAULT_REASON,
) -> list[Outcome]:
    return [erase_account(client, a, receipts_dir, public_pem, reason) for a in accounts]


def read_accounts(names: Sequence[str], accounts_file: Path | None) -> list[str]:
    """Account ids from arguments and a file (one a line, ``#`` comments), each once."""
    found: list[str] = list(names)
    if accounts_file is not None:
        for line in accounts_file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line)
    return list(dict.fromkeys(found))


def summary(outcomes: Sequence[Outcome]) -> str:
    lines = [
        f"{o.status:8} {o.account}"
        + (f"  {o.receipt_path}" if o.receipt_path else "")
        + (f"  ({o.detail})" if o.detail else "")
        for o in outcomes
    ]
    counts = {
        status: sum(o.status == status for o in outcomes) for status in (FILED, PENDING, FAILED)
    }
    lines.append(
        f"{counts[FILED]} filed, {counts[PENDING]} pending under legal hold, "
        f"{counts[FAILED]} failed"
    )
    return "\n".join(lines)


def exit_status(outcomes: Sequence[Outcome]) -> int:
    if any(o.status == FAILED for o in outcomes):
        return 1
    if any(o.status == PENDING for o in outcomes):
        return 2
    return 0


def connect(
    credentials: Credentials,
    target: str,
    retry: RetryPolicy = DEFAULT_RETRY,
    log: Callable[[str], None] = lambda _line: None,
) -> VaultClient:
    """The deletion caller's client: the retry policy, and a line logged per retry."""

    def on_retry(method: str, error: VaultError, attempt: int, pause: float) -> None:
        log(
            f"{method}: {error.code.name}, retrying in {pause:.2f}s "
            f"({attempt}/{retry.max_attempts})"
        )

    return VaultClient(target, credentials, retry=retry, options=RECONNECT, on_retry=on_retry)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("accounts", nargs="*", help="account ids to erase")
    parser.add_argument("--accounts-file", type=Path, help="more account ids, one a line")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="host:port or dns:///host:port")
    parser.add_argument("--data-dir", type=Path, default=Path("var/vault"))
    parser.add_argument("--ca", help="CA certificate (PEM) instead of the dev PKI")
    parser.add_argument("--cert", help="the deletion caller's certificate (PEM)")
    parser.add_argument("--key", help="the deletion caller's private key (PEM)")
    parser.add_argument("--receipts-dir", type=Path, required=True)
    parser.add_argument(
        "--public-key", type=Path, help="receipt public key (default DIR/receipt-signing.pub)"
    )
    parser.add_argument("--reason", default=DEFAULT_REASON)
    parser.add_argument(
        "--attempts", type=int, default=DEFAULT_RETRY.max_attempts, help="calls per shred, 2-5"
    )
    parser.add_argument(
        "--backoff", type=float, default=DEFAULT_RETRY.initial_backoff, help="first backoff (s)"
    )
    args = parser.parse_args(argv)

    accounts = read_accounts(args.accounts, args.accounts_file)
    if not accounts:
        parser.error("no account ids given")
    if args.cert and not (args.ca and args.key):
        parser.error("--cert needs --ca and --key")
    if not 2 <= args.attempts <= 5:
        parser.error("--attempts must be 2 to 5")
    credentials = (
        Credentials.from_files(ca=args.ca, cert=args.cert, key=args.key)
        if args.cert
        else Credentials.from_data_dir(args.data_dir, CALLER)
    )
    public_pem = (args.public_key or args.data_dir / "receipt-signing.pub").read_bytes()
    retry = RetryPolicy(
        max_attempts=args.attempts,
        initial_backoff=args.backoff,
        max_backoff=max(args.backoff, DEFAULT_RETRY.max_backoff),
    )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with connect(credentials, args.target, retry, log) as client:
        outcomes = erase_accounts(client, accounts, args.receipts_dir, public_pem, args.reason)
    print(summary(outcomes))
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
