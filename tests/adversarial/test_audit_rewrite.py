"""The audit chain cannot be rewritten by whoever holds only the database (issue item 6).

The attacker here has the database and nothing else: the SQLite file opened
with ``sqlite3``, or the PostgreSQL database with ``psycopg``; no vault code,
no keyring. Against the old unkeyed SHA-256 chain they deleted a reveal,
renumbered the events after it, recomputed every hash, updated the head, and
``pii-vault audit verify`` said "intact". The chain is now an HMAC under the
key provider's audit key, so no hash they can compute (plain SHA-256, or an
HMAC under any key they can guess) makes it verify.

What the key cannot stop, cutting events off the end and rewinding the head
to an earlier (genuine) event, is caught by anchors kept outside the
database: a shred receipt signs the chain head at its signing time, and
``audit verify --anchor receipt.json`` finds the chain shorter than the
receipt says it was.

Each test puts the rows back afterwards, so that the module's server (shared
by the tests) starts every test with an intact chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from pii_vault_client.v1 import vault_pb2 as pb

if TYPE_CHECKING:
    from vault_server import VaultServer

RunVault = Callable[..., subprocess.CompletedProcess[str]]
Digest = Callable[[bytes, bytes], bytes]

TIMEOUT = 30
COLUMNS = (
    "sequence",
    "time",
    "caller",
    "action",
    "subject_id",
    "field",
    "view",
    "purpose",
    "outcome",
    "status_code",
    "detail",
)

SELECT_ROWS = (
    "SELECT sequence, time, caller, action, subject_id, field, view, purpose, outcome,"
    " status_code, detail, prev_hash, hash FROM audit_events ORDER BY sequence"
)
INSERT_ROW = (
    "INSERT INTO audit_events (sequence, time, caller, action, subject_id, field, view,"
    " purpose, outcome, status_code, detail, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# The head row as schema 0003 (id, last_hash, last_sequence) and 0006 (+ scheme) have it,
# columns in sorted order.
HEAD_INSERTS = {
    3: "INSERT INTO audit_head (id, last_hash, last_sequence) VALUES (?, ?, ?)",
    4: "INSERT INTO audit_head (id, last_hash, last_sequence, scheme) VALUES (?, ?, ?, ?)",
}


class DatabaseHolder:
    """Raw access to the vault's data database, as a DBA or a stolen backup has it."""

    def __init__(self, server: VaultServer) -> None:
        if server.database_url:
            url = server.database_url.replace("postgresql+psycopg://", "postgresql://")
            self._connect: Callable[[], Any] = lambda: psycopg.connect(url)
            self._mark = "%s"
        else:
            path = server.data_dir / "vault.db"
            self._connect = lambda: sqlite3.connect(path, timeout=30)
            self._mark = "?"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            yield conn.cursor()
            conn.commit()
        finally:
            conn.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._mark)

    def rows(self) -> list[tuple[Any, ...]]:
        with self._transaction() as cur:
            cur.execute(SELECT_ROWS)
            return [tuple(row) for row in cur.fetchall()]

    def head(self) -> dict[str, Any]:
        """The head row, whatever columns this schema gives it."""
        with self._transaction() as cur:
            cur.execute("SELECT * FROM audit_head")
            names = [column[0] for column in cur.description]
            return dict(zip(names, cur.fetchone(), strict=True))

    @contextlib.contextmanager
    def put_back_afterwards(self) -> Iterator[None]:
        """Save the chain and its head; restore both exactly when the block ends."""
        rows, head = self.rows(), self.head()
        try:
            yield
        finally:
            with self._transaction() as cur:
                cur.execute("DELETE FROM audit_events")
                cur.executemany(self._sql(INSERT_ROW), rows)
                cur.execute("DELETE FROM audit_head")
                cur.execute(
                    self._sql(HEAD_INSERTS[len(head)]), tuple(head[name] for name in sorted(head))
                )

    def delete_and_renumber(self, sequence: int) -> None:
        with self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM audit_events WHERE sequence = ?"), (sequence,))
            cur.execute(
                self._sql("SELECT sequence FROM audit_events WHERE sequence > ? ORDER BY sequence"),
                (sequence,),
            )
            for (later,) in cur.fetchall():
                cur.execute(
                    self._sql("UPDATE audit_events SET sequence = ? WHERE sequence = ?"),
                    (later - 1, later),
                )

    def rehash(self, digest: Digest) -> None:
        """Recompute every prev_hash and hash, and the head, exactly as the old vault did."""
        prev = bytes(32)
        rows = self.rows()
        with self._transaction() as cur:
            for row in rows:
                event = dict(zip(COLUMNS, row, strict=False))
                moment = event["time"]
                if isinstance(moment, str):  # SQLite keeps UTC times as naive text
                    moment = datetime.fromisoformat(moment)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                event["time"] = moment.astimezone(UTC).isoformat()
                canonical = json.dumps(
                    event, sort_keys=True, separators=(",", ":"), ensure_ascii=True
                ).encode()
                digest_now = digest(prev, canonical)
                cur.execute(
                    self._sql("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE sequence = ?"),
                    (prev, digest_now, event["sequence"]),
                )
                prev = digest_now
            cur.execute(
                self._sql("UPDATE audit_head SET last_sequence = ?, last_hash = ?"),
                (rows[-1][0] if rows else 0, prev),
            )

    def cut_tail(self, first_removed: int) -> None:
        """Delete every event from ``first_removed`` on; rewind the head to the one before."""
        with self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM audit_events WHERE sequence >= ?"), (first_removed,))
            cur.execute(
                self._sql("SELECT sequence, hash FROM audit_events WHERE sequence = ?"),
                (first_removed - 1,),
            )
            sequence, last = cur.fetchone()
            cur.execute(
                self._sql("UPDATE audit_head SET last_sequence = ?, last_hash = ?"),
                (sequence, last),
            )


def plain_sha256(prev: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev + canonical).digest()


def hmac_under(key: bytes) -> Digest:
    return lambda prev, canonical: hmac.new(key, prev + canonical, hashlib.sha256).digest()


def audit_verify(
    server: VaultServer, run_vault: RunVault, *options: str
) -> subprocess.CompletedProcess[str]:
    common = ("--data-dir", str(server.data_dir), "--as", "admin", "--target", server.target)
    return run_vault("audit", "verify", *common, *options)


def reveal(server: VaultServer, subject: str) -> None:
    """Phone and e-mail stored, then revealed in plaintext by the privacy desk."""
    registration = server.client("registration")
    desk = server.client("privacy-desk")
    values = {
        "phone": pb.FieldValue(phone=pb.PhoneNumber(number="+372 5301 9907")),
        "email": pb.FieldValue(email="rewrite.target@example.org"),
    }
    for field, value in values.items():
        registration.vault.PutField(
            pb.PutFieldRequest(subject_id=subject, field=field, value=value), timeout=TIMEOUT
        )
    for field in values:
        desk.vault.GetField(
            pb.GetFieldRequest(
                subject_id=subject, field=field, view=pb.VIEW_PLAINTEXT, purpose="dsar"
            ),
            timeout=TIMEOUT,
        )


def reveal_of(server: VaultServer, subject: str, field: str) -> int:
    admin = server.client("admin")
    events = admin.audit.ListEvents(
        pb.ListEventsRequest(subject_id=subject, action=pb.AUDIT_ACTION_REVEAL, page_size=100),
        timeout=TIMEOUT,
    ).events
    [event] = [e for e in events if e.field == field]
    return event.sequence


GUESSES = {
    "plain SHA-256 (the old chain)": plain_sha256,
    "HMAC under an all-zero key": hmac_under(bytes(32)),
    "HMAC under the product's name": hmac_under(b"pii-vault"),
    "HMAC under the receipt public key": None,  # filled in per server below
}


@pytest.mark.parametrize("guess", sorted(GUESSES))
def test_a_chain_rewritten_without_the_key_after_deleting_a_reveal_is_reported_broken(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, guess: str
) -> None:
    reveal(vault_server, subject_id)
    target = reveal_of(vault_server, subject_id, "email")
    intact = audit_verify(vault_server, run_vault)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("audit chain intact: ")

    digest = GUESSES[guess] or hmac_under(
        (vault_server.data_dir / "receipt-signing.pub").read_bytes()
    )
    attacker = DatabaseHolder(vault_server)
    with attacker.put_back_afterwards():
        before = len(attacker.rows())
        attacker.delete_and_renumber(target)
        attacker.rehash(digest)
        assert len(attacker.rows()) == before - 1  # the reveal is gone, no gap is left

        broken = audit_verify(vault_server, run_vault)
        assert broken.returncode == 1, broken.stdout
        assert "audit chain BROKEN at position 1: the event was altered" in broken.stderr
        check = vault_server.client("admin").audit.VerifyChain(
            pb.VerifyChainRequest(), timeout=TIMEOUT
        )
        assert (check.ok, check.first_bad_position) == (False, 1)
    assert audit_verify(vault_server, run_vault).returncode == 0  # the rows are back


def shred_with_receipt(
    server: VaultServer, run_vault: RunVault, subject: str, out: Path
) -> dict[str, Any]:
    common = ("--data-dir", str(server.data_dir), "--as", "deletion", "--target", server.target)
    done = run_vault(
        "shred",
        *common,
        subject,
        "--reason",
        "account closed",
        "--request-id",
        f"rewrite-{subject}",
        "--receipt-out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    receipt: dict[str, Any] = json.loads(out.read_text())["receipt"]
    return receipt


def test_a_truncated_tail_is_caught_by_a_receipts_anchor(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    reveal(vault_server, subject_id)
    receipt_path = tmp_path / "receipt.json"
    receipt = shred_with_receipt(vault_server, run_vault, subject_id, receipt_path)
    anchor = receipt["audit_anchor"]
    revealed = reveal_of(vault_server, subject_id, "email")
    assert revealed <= anchor["sequence"]  # the reveal happened before the receipt was signed
    agreed = audit_verify(vault_server, run_vault, "--anchor", str(receipt_path))
    assert agreed.returncode == 0, agreed.stderr
    assert "1 anchors agree" in agreed.stdout

    attacker = DatabaseHolder(vault_server)
    with attacker.put_back_afterwards():
        # Cut the chain just before the reveal, and everything after it: what is
        # left is a genuine prefix of the keyed chain, with its head rewound.
        attacker.cut_tail(revealed)
        alone = audit_verify(vault_server, run_vault)
        assert alone.returncode == 0, alone.stderr  # the key alone cannot see a clean cut

        caught = audit_verify(vault_server, run_vault, "--anchor", str(receipt_path))
        assert caught.returncode == 1, caught.stdout
        assert (
            f"audit chain BROKEN at position {revealed}: events after this position were removed"
            f" (an anchor names position {anchor['sequence']})"
        ) in caught.stderr
        check = vault_server.client("admin").audit.VerifyChain(
            pb.VerifyChainRequest(
                anchors=[
                    pb.AuditAnchor(sequence=anchor["sequence"], hash=bytes.fromhex(anchor["hash"]))
                ]
            ),
            timeout=TIMEOUT,
        )
        assert (check.ok, check.first_bad_position) == (False, revealed)
    assert audit_verify(vault_server, run_vault, "--anchor", str(receipt_path)).returncode == 0


def test_an_anchor_file_that_is_not_the_vaults_is_refused_not_trusted(
    vault_server: VaultServer, run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    receipt_path = tmp_path / "receipt.json"
    receipt = shred_with_receipt(vault_server, run_vault, subject_id, receipt_path)
    document = json.loads(receipt_path.read_text())
    document["receipt"]["audit_anchor"]["sequence"] = receipt["audit_anchor"]["sequence"] + 1000
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document, indent=2))
    refused = audit_verify(vault_server, run_vault, "--anchor", str(edited))
    assert refused.returncode == 2, refused.stdout
    assert "is not a document this vault signed" in refused.stderr


def test_a_truncated_tail_is_caught_by_the_audit_sinks_lines(
    start_vault_server: type[VaultServer], run_vault: RunVault, subject_id: str, tmp_path: Path
) -> None:
    """The JSON-lines sink, kept where the database holder cannot reach it, anchors
    every event: cutting even the newest one off the chain is found."""
    sink = tmp_path / "audit.jsonl"
    server = start_vault_server(tmp_path / "vault", env={"VAULT_AUDIT_JSONL": str(sink)})
    try:
        reveal(server, subject_id)
        revealed = reveal_of(server, subject_id, "email")
        lines = [json.loads(line) for line in sink.read_text().splitlines()]
        assert [line["sequence"] for line in lines] == list(range(1, len(lines) + 1))
        agreed = audit_verify(server, run_vault, "--anchor", str(sink))
        assert agreed.returncode == 0, agreed.stderr
        assert f"{len(lines)} anchors agree" in agreed.stdout

        DatabaseHolder(server).cut_tail(revealed)
        assert audit_verify(server, run_vault).returncode == 0  # the key alone: a clean cut
        caught = audit_verify(server, run_vault, "--anchor", str(sink))
        assert caught.returncode == 1, caught.stdout
        assert f"BROKEN at position {revealed}: events after this position were removed" in (
            caught.stderr
        )
    finally:
        assert server.stop() == 0, server.output
