"""Example caller: the deletion workflow's worker.

Erases accounts: for each account id it asks the vault to crypto-shred the
subject, checks the signed receipt with the vault's public receipt key and
files it as ``RECEIPTS_DIR/<account>.json`` (the ``pii-vault receipts verify``
format). It never sees a value.

    python -m clients.deletion_worker --data-dir var/vault --receipts-dir receipts acct-1 acct-2
    python -m clients.deletion_worker --data-dir var/vault --receipts-dir receipts \\
        --accounts-file to-delete.txt

Safe to run again and again, e.g. from cron:

- the request id is derived from the account (``delete-<account>``), so a
  repeated or retried call returns the first receipt, byte for byte, and the
  filed receipt does not change;
- UNAVAILABLE and DEADLINE_EXCEEDED are retried with exponential backoff;
- an account under a legal hold is refused with FAILED_PRECONDITION: the vault
  has queued the shred and carries it out when the hold is released, so the
  account is reported *pending* and the next run files its receipt;
- a receipt that does not verify is never filed.

Exit status: 0 when every receipt is filed, 2 when some accounts are pending
under a legal hold (and none failed), 1 when any account failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import DEFAULT_TARGET, VaultClient
from vault.crypto.documents import SHRED_RECEIPT, DocumentError, verify_payload

CALLER = "deletion"
DEFAULT_REASON = "account deletion requested"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

FILED = "filed"
PENDING = "pending"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What happened to one account: ``filed``, ``pending`` or ``failed``."""

    account: str
    status: str
    detail: str = ""
    receipt_path: Path | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``first_delay`` doubling up to ``max_delay``, ``attempts`` calls."""

    attempts: int = 6
    first_delay: float = 0.5
    max_delay: float = 8.0
    call_timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (counted from 1)."""
        return float(min(self.max_delay, self.first_delay * 2.0 ** (attempt - 1)))


class ReceiptRejectedError(Exception):
    """The vault's answer is not a receipt this worker may file as evidence."""


def request_id_for(account: str) -> str:
    """Deterministic, so every run and every retry asks for the same shred."""
    return f"delete-{account}"


def receipt_path_for(receipts_dir: Path, account: str) -> Path:
    """``receipts_dir/<account>.json``, refusing ids that would leave the directory."""
    if not account or "/" in account or "\\" in account or account.startswith("."):
        raise ValueError("the account id cannot name a receipt file")
    return receipts_dir / f"{account}.json"


def shred_account(
    client: VaultClient,
    account: str,
    reason: str = DEFAULT_REASON,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _line: None,
) -> pb.ShredReceipt:
    """ShredSubject with retries of transient failures; other errors propagate."""
    retry = retry or RetryPolicy()
    request = pb.ShredSubjectRequest(
        subject_id=account, reason=reason, request_id=request_id_for(account)
    )
    for attempt in range(1, retry.attempts + 1):
        try:
            response = client.vault.ShredSubject(request, timeout=retry.call_timeout)
            return response.receipt
        except grpc.RpcError as error:
            code = error.code()
            if code not in RETRYABLE or attempt == retry.attempts:
                raise
            pause = retry.delay(attempt)
            log(f"{account}: {code.name}, retrying in {pause:.2f}s ({attempt}/{retry.attempts})")
            sleep(pause)
    raise AssertionError("unreachable")


def receipt_text(receipt: pb.ShredReceipt, account: str, public_pem: bytes) -> str:
    """The receipt file's content, once it is checked to be the vault's and about ``account``.

    The signed bytes must be a shred receipt (not an export or any other
    document the same key signs), canonical, without duplicate keys.
    """
    try:
        document = verify_payload(public_pem, receipt.payload, receipt.signature, SHRED_RECEIPT)
    except DocumentError as error:
        raise ReceiptRejectedError(f"the receipt does not verify: {error}") from None
    if document.body.get("subject_id") != account:
        raise ReceiptRejectedError("the receipt is about another subject")
    return document.file_text()


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
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _line: None,
) -> Outcome:
    try:
        path = receipt_path_for(receipts_dir, account)
    except ValueError as error:
        return Outcome(account, FAILED, str(error))
    try:
        receipt = shred_account(client, account, reason, retry=retry, sleep=sleep, log=log)
    except grpc.RpcError as error:
        code = error.code()
        if code is grpc.StatusCode.FAILED_PRECONDITION:
            # A legal hold: the vault queued the shred; a later run files the receipt.
            return Outcome(account, PENDING, error.details() or "legal hold")
        return Outcome(account, FAILED, f"{code.name}: {error.details()}")
    try:
        text = receipt_text(receipt, account, public_pem)
    except ReceiptRejectedError as error:
        return Outcome(account, FAILED, str(error))
    file_receipt(path, text)
    return Outcome(account, FILED, f"{receipt.fields_destroyed} fields", path)


def erase_accounts(
    client: VaultClient,
    accounts: Iterable[str],
    receipts_dir: Path,
    public_pem: bytes,
    reason: str = DEFAULT_REASON,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _line: None,
) -> list[Outcome]:
    return [
        erase_account(
            client, account, receipts_dir, public_pem, reason, retry=retry, sleep=sleep, log=log
        )
        for account in accounts
    ]


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


def connect(data_dir: Path, target: str) -> VaultClient:
    """The deletion caller's mTLS channel; reconnects quickly so retries meet a restarted vault."""
    tls = data_dir / "tls"
    return VaultClient(
        target,
        ca_cert=(tls / "ca.crt").read_bytes(),
        client_cert=(tls / "clients" / f"{CALLER}.crt").read_bytes(),
        client_key=(tls / "clients" / f"{CALLER}.key").read_bytes(),
        options=[
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("accounts", nargs="*", help="account ids to erase")
    parser.add_argument("--accounts-file", type=Path, help="more account ids, one a line")
    parser.add_argument("--data-dir", type=Path, default=Path("var/vault"))
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--receipts-dir", type=Path, required=True)
    parser.add_argument(
        "--public-key", type=Path, help="receipt public key (default DIR/receipt-signing.pub)"
    )
    parser.add_argument("--reason", default=DEFAULT_REASON)
    parser.add_argument("--attempts", type=int, default=RetryPolicy.attempts)
    parser.add_argument("--backoff", type=float, default=RetryPolicy.first_delay)
    args = parser.parse_args(argv)

    accounts = read_accounts(args.accounts, args.accounts_file)
    if not accounts:
        parser.error("no account ids given")
    public_pem = (args.public_key or args.data_dir / "receipt-signing.pub").read_bytes()
    retry = RetryPolicy(attempts=max(1, args.attempts), first_delay=args.backoff)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with connect(args.data_dir, args.target) as client:
        outcomes = erase_accounts(
            client, accounts, args.receipts_dir, public_pem, args.reason, retry=retry, log=log
        )
    print(summary(outcomes))
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
