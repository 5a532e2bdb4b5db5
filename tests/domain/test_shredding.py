"""Crypto-shredding in-process, against SQLite and PostgreSQL.

The vault and the ``Shredder`` are wired as ``vault.bootstrap.app`` wires them
(keyring file, default policy, migrated store, blind-index keys from the key
store, the backup horizon of the keyring, a checkpoint after each shred), with
a fixed clock and a throwaway Ed25519 receipt key. What is checked is what a
deletion workflow and an auditor would check: the rows are gone (counted with
SQL, per table), every call about the subject answers as documented, the
receipt is signed and names every destroyed key, and no key of the subject
survives in a cache.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.bootstrap.app import PolicyHolder, backup_horizon_for, load_index_keys
from vault.crypto.signing import ReceiptSigner, new_signing_key_pem
from vault.domain.key_admin import RotationSchedule
from vault.domain.model import GetRequest
from vault.domain.shredding import (
    Shredder,
    ShredReceipt,
    receipt_document,
    verify_receipt_document,
)
from vault.domain.vault import Vault
from vault.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from vault.fields import Email, Name, PaymentCard, PaymentToken, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)

PHONE = PhoneNumber("+372 5123 4567")
OTHER_PHONE = PhoneNumber("+372 5876 5432")
EMAIL = Email("Jane.Doe@Example.COM")
NAME = Name("Jane Doe")
CARD = PaymentCard("4111 1111 1111 1111", 12, 2028, "Jane Doe")
PAY_TOKEN = PaymentToken("Stripe", "pm_1Q2w3E4r5T6y7U8iF3A9")

# Fragments of the values above that must never reach the audit log.
SECRETS = ("5123", "51234567", "jane", "doe", "4111111111111111", "pm_1q2w3e4r5t6y7u8i")

# Every table that holds something of a subject, and must hold nothing after a shred.
SUBJECT_TABLES = ("subject_keys", "data_keys", "fields", "blind_index", "idempotency_keys")


def fixed_clock() -> datetime:
    return NOW


@dataclass
class Harness:
    url: str
    store: Store
    keys: KeyHierarchy
    vault: Vault
    shredder: Shredder
    signer: ReceiptSigner
    audit: AuditLog


@pytest.fixture
def h(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(DEFAULT_POLICY_TOML)
    store = Store(database_url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    keys = KeyHierarchy(provider)
    indexer = load_index_keys(store, provider)
    policy = PolicyHolder(policy_path)
    audit = AuditLog(store, fixed_clock, chain_key=provider)
    vault = Vault(
        store, keys, indexer, policy, audit, clock=fixed_clock, hot_reads=HotReads(store.data_url)
    )
    signer = ReceiptSigner.from_pem(new_signing_key_pem())
    shredder = Shredder(
        store,
        keys,
        signer,
        policy,
        audit,
        backup_horizon=backup_horizon_for(provider, RotationSchedule(timedelta(days=30))),
        clock=fixed_clock,
        after_shred=store.checkpoint,
    )
    try:
        yield Harness(database_url, store, keys, vault, shredder, signer, audit)
    finally:
        vault.close()
        store.dispose()


# -- helpers ------------------------------------------------------------------------------
def populate(h: Harness, subject_id: str) -> dict[str, str]:
    """Five fields of every kind, two written with idempotency keys; returns the tokens."""
    tokens = {
        "phone": h.vault.put_field("registration", subject_id, "phone", PHONE, "reg-phone").token,
        "email": h.vault.put_field("registration", subject_id, "email", EMAIL, "reg-email").token,
        "name": h.vault.put_field("registration", subject_id, "name", NAME).token,
        "payment_token.stripe": h.vault.put_field(
            "checkout", subject_id, "payment_token.stripe", PAY_TOKEN
        ).token,
        "card.primary": h.vault.put_field("checkout", subject_id, "card.primary", CARD).token,
    }
    return tokens


def rows_of(h: Harness, subject_id: str) -> dict[str, int]:
    """How many rows each subject table holds for ``subject_id``, counted with SQL."""
    counts: dict[str, int] = {}
    with h.store.read() as tx:
        for table in SUBJECT_TABLES:
            counts[table] = tx.data.execute(
                text(f"SELECT count(*) FROM {table} WHERE subject_id = :s"),  # noqa: S608
                {"s": subject_id},
            ).scalar_one()
    return counts


def subject_row(h: Harness, subject_id: str) -> tuple[str, object] | None:
    with h.store.read() as tx:
        row = tx.data.execute(
            text("SELECT state, shredded_at FROM subjects WHERE subject_id = :s"),
            {"s": subject_id},
        ).first()
    return None if row is None else (row[0], row[1])


def subject_key_id(h: Harness, subject_id: str) -> str:
    with h.store.read() as tx:
        return str(
            tx.keys.execute(
                text("SELECT key_id FROM subject_keys WHERE subject_id = :s"), {"s": subject_id}
            ).scalar_one()
        )


def data_key_ids(h: Harness, subject_id: str) -> set[str]:
    with h.store.read() as tx:
        rows = tx.keys.execute(
            text("SELECT dek_id FROM data_keys WHERE subject_id = :s"), {"s": subject_id}
        )
        return {row[0] for row in rows}


def field_dek(h: Harness, subject_id: str, field: str) -> str:
    with h.store.read() as tx:
        return str(
            tx.data.execute(
                text("SELECT dek_id FROM fields WHERE subject_id = :s AND field = :f"),
                {"s": subject_id, "f": field},
            ).scalar_one()
        )


def receipt_count(h: Harness) -> int:
    with h.store.read() as tx:
        return int(tx.data.execute(text("SELECT count(*) FROM shred_receipts")).scalar_one())


def assert_no_values_in_audit(h: Harness) -> None:
    with h.store.read() as tx:
        rows = [tuple(row) for row in tx.data.execute(text("SELECT * FROM audit_events"))]
    assert rows, "the audit log is empty: nothing was checked"
    for row in rows:
        for column in row:
            cell = str(column).lower().replace(" ", "")
            for secret in SECRETS:
                assert secret not in cell, (secret, row)


def shred(h: Harness, subject_id: str, request_id: str = "req-1") -> ShredReceipt:
    return h.shredder.shred_subject("deletion", subject_id, "account deleted", request_id)


def document(receipt: ShredReceipt) -> dict[str, object]:
    return receipt_document(receipt.payload, receipt.signature)


# -- what a shred destroys ---------------------------------------------------------------
def test_shred_destroys_every_key_and_row_of_the_subject_and_leaves_a_tombstone(
    h: Harness,
) -> None:
    populate(h, "s-1")
    h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE, "reg-phone")
    before = rows_of(h, "s-1")
    assert before == {
        "subject_keys": 1,
        "data_keys": 5,
        "fields": 5,
        "blind_index": before["blind_index"],
        "idempotency_keys": 2,
    }
    assert before["blind_index"] >= 2  # phone and e-mail at least are searchable
    other_before = rows_of(h, "s-2")

    receipt = shred(h, "s-1")

    assert rows_of(h, "s-1") == dict.fromkeys(SUBJECT_TABLES, 0)
    assert subject_row(h, "s-1") is not None
    state, shredded_at = subject_row(h, "s-1")  # type: ignore[misc]
    assert state == "shredded"
    assert shredded_at is not None
    assert receipt.fields_destroyed == 5
    assert receipt.shredded_at == NOW
    # The other subject keeps every row and is still served.
    assert rows_of(h, "s-2") == other_before
    assert h.vault.get_field("registration", "s-2", "phone").view.masked == "+372 **** **32"


def test_every_call_about_a_shredded_subject_answers_as_documented(h: Harness) -> None:
    tokens = populate(h, "s-1")
    # Warm every cache first: a shredded subject must not be served from one.
    for field in tokens:
        h.vault.get_field("privacy-desk", "s-1", field, view="plaintext", purpose="dsar")
    h.vault.detokenize("checkout", tokens["payment_token.stripe"], "checkout")
    assert h.vault.find_subjects("registration", PHONE).found

    shred(h, "s-1")

    for caller, view, purpose in (
        ("registration", "masked", ""),
        ("registration", "token", ""),
        ("privacy-desk", "plaintext", "dsar"),
    ):
        for field in ("phone", "email", "never-stored"):
            with pytest.raises(FailedPrecondition, match=r"^subject is shredded$"):
                h.vault.get_field(caller, "s-1", field, view=view, purpose=purpose)
    answers = h.vault.batch_get(
        "privacy-desk",
        [
            GetRequest("s-1", "phone"),
            GetRequest("s-1", "email", "plaintext", "dsar"),
            GetRequest("s-1", "card.primary", "token"),
        ],
    )
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer, FailedPrecondition)
        assert answer.message == "subject is shredded"
    for caller in ("registration", "privacy-desk"):
        with pytest.raises(FailedPrecondition, match=r"^subject is shredded$"):
            h.vault.list_fields(caller, "s-1")
    with pytest.raises(NotFound):
        h.vault.detokenize("checkout", tokens["payment_token.stripe"], "checkout")
    assert not h.vault.find_subjects("registration", PHONE).found
    assert not h.vault.find_subjects("registration", EMAIL).found
    with pytest.raises(FailedPrecondition, match="subject is shredded"):
        h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(FailedPrecondition, match="subject is shredded"):
        h.vault.put_field("checkout", "s-1", "card.spare", CARD)
    assert rows_of(h, "s-1") == dict.fromkeys(SUBJECT_TABLES, 0)


# -- idempotency ----------------------------------------------------------------------------
def test_repeating_the_request_id_returns_the_same_receipt_bytes(h: Harness) -> None:
    populate(h, "s-1")
    first = shred(h, "s-1", "req-1")
    again = shred(h, "s-1", "req-1")
    assert (again.payload, again.signature) == (first.payload, first.signature)
    assert again.fields_destroyed == 5  # the first receipt, not a new one for an empty subject
    assert receipt_count(h) == 1


def test_a_second_shred_with_a_new_request_id_returns_the_first_receipt(h: Harness) -> None:
    populate(h, "s-1")
    first = shred(h, "s-1", "req-1")
    second = shred(h, "s-1", "req-2")
    assert (second.payload, second.signature) == (first.payload, first.signature)
    assert second.request_id == "req-1"
    assert second.fields_destroyed == 5


def test_a_request_id_used_for_another_subject_is_already_exists(h: Harness) -> None:
    populate(h, "s-1")
    h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE)
    shred(h, "s-1", "req-1")
    with pytest.raises(AlreadyExists):
        shred(h, "s-2", "req-1")
    # The other subject was not touched.
    assert rows_of(h, "s-2")["data_keys"] == 1
    assert subject_row(h, "s-2") == ("active", None)


def test_shredding_an_unknown_subject_leaves_a_tombstone_a_lagging_service_cannot_pass(
    h: Harness,
) -> None:
    receipt = shred(h, "never-seen")
    assert receipt.fields_destroyed == 0
    assert receipt.key_ids == ()
    assert receipt.subject_id == "never-seen"
    assert verify_receipt_document(document(receipt), h.signer.public_pem())
    assert subject_row(h, "never-seen") is not None
    assert subject_row(h, "never-seen")[0] == "shredded"  # type: ignore[index]
    # A service that has not heard of the deletion yet cannot create the person again.
    with pytest.raises(FailedPrecondition, match="subject is shredded"):
        h.vault.put_field("registration", "never-seen", "phone", PHONE)
    assert rows_of(h, "never-seen") == dict.fromkeys(SUBJECT_TABLES, 0)


def test_only_the_deletion_caller_may_shred(h: Harness) -> None:
    populate(h, "s-1")
    for caller in ("registration", "checkout", "privacy-desk", "admin", "intruder"):
        with pytest.raises(PermissionDenied):
            h.shredder.shred_subject(caller, "s-1", "account deleted", f"req-{caller}")
    assert rows_of(h, "s-1")["data_keys"] == 5
    assert receipt_count(h) == 0


# -- one field -------------------------------------------------------------------------------
def test_delete_field_destroys_that_fields_data_key_only(h: Harness) -> None:
    populate(h, "s-1")
    phone_dek = field_dek(h, "s-1", "phone")
    email_dek = field_dek(h, "s-1", "email")
    h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert phone_dek in h.keys.data_keys  # warm: the check below can fail

    h.vault.delete_field("deletion", "s-1", "phone")

    keys_left = data_key_ids(h, "s-1")
    assert phone_dek not in keys_left
    assert email_dek in keys_left
    assert len(keys_left) == 4
    assert phone_dek not in h.keys.data_keys
    with pytest.raises(NotFound):
        h.vault.get_field("registration", "s-1", "phone")
    assert not h.vault.find_subjects("registration", PHONE).found
    assert h.vault.get_field("registration", "s-1", "email").view.masked == "J***@example.com"


def test_replacing_a_value_destroys_the_old_data_key(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    old_dek = field_dek(h, "s-1", "phone")
    h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    new_dek = field_dek(h, "s-1", "phone")
    assert new_dek != old_dek
    assert data_key_ids(h, "s-1") == {new_dek}
    assert old_dek not in h.keys.data_keys


# -- legal holds -------------------------------------------------------------------------------
def test_a_legal_hold_refuses_and_queues_the_shred_which_runs_on_release(h: Harness) -> None:
    populate(h, "s-1")
    assert h.shredder.set_legal_hold("privacy-desk", "s-1", True, "litigation LX-2291") is True
    before = rows_of(h, "s-1")

    with pytest.raises(FailedPrecondition, match="legal hold") as refused:
        shred(h, "s-1", "req-held")
    assert "queued" in refused.value.message
    with pytest.raises(FailedPrecondition, match="legal hold"):
        h.vault.delete_field("deletion", "s-1", "email")
    # Repeating the refused request while held is refused again, not carried out.
    with pytest.raises(FailedPrecondition, match="legal hold"):
        shred(h, "s-1", "req-held")
    assert rows_of(h, "s-1") == before
    assert receipt_count(h) == 0
    assert h.vault.get_field("registration", "s-1", "email").view.masked == "J***@example.com"

    assert h.shredder.set_legal_hold("privacy-desk", "s-1", False, "case closed") is False

    # The queued shred ran on release: nothing of the subject is left.
    assert rows_of(h, "s-1") == dict.fromkeys(SUBJECT_TABLES, 0)
    with pytest.raises(FailedPrecondition, match="subject is shredded"):
        h.vault.get_field("registration", "s-1", "email")
    receipt = shred(h, "s-1", "req-held")
    assert receipt.request_id == "req-held"
    assert receipt.subject_id == "s-1"
    assert receipt.fields_destroyed == 5
    assert verify_receipt_document(document(receipt), h.signer.public_pem())
    assert receipt_count(h) == 1

    events = [(e.caller, e.action, e.outcome, e.status_code) for e in h.audit.events("s-1")]
    expected = [
        ("privacy-desk", "hold", "ok", "OK"),
        ("deletion", "shred", "refused", "FAILED_PRECONDITION"),
        ("deletion", "delete", "refused", "FAILED_PRECONDITION"),
        ("deletion", "shred", "refused", "FAILED_PRECONDITION"),
        ("privacy-desk", "release", "ok", "OK"),
        ("deletion", "shred", "ok", "OK"),
    ]
    assert [e for e in events if e in expected] == expected
    assert_no_values_in_audit(h)


def test_holding_and_releasing_without_a_queued_shred_destroys_nothing(h: Harness) -> None:
    populate(h, "s-1")
    before = rows_of(h, "s-1")
    h.shredder.set_legal_hold("admin", "s-1", True, "audit")
    h.shredder.set_legal_hold("admin", "s-1", False, "")
    assert rows_of(h, "s-1") == before
    assert subject_row(h, "s-1") == ("active", None)
    assert receipt_count(h) == 0


# -- receipts ---------------------------------------------------------------------------------
EDITS: dict[str, Callable[[dict[str, Any]], object]] = {
    "subject_id": lambda body: "s-2",
    "reason": lambda body: "retention",
    "fields_destroyed": lambda body: body["fields_destroyed"] - 1,
    "key_ids": lambda body: body["key_ids"][:-1],
    "backup_horizon": lambda body: (
        datetime.fromisoformat(body["backup_horizon"]) - timedelta(days=365)
    ).isoformat(),
    "shredded_at": lambda body: (
        datetime.fromisoformat(body["shredded_at"]) + timedelta(seconds=1)
    ).isoformat(),
}


def test_a_receipt_verifies_with_the_public_key_and_any_edit_breaks_it(h: Harness) -> None:
    populate(h, "s-1")
    receipt = shred(h, "s-1")
    public = h.signer.public_pem()
    original = document(receipt)
    assert verify_receipt_document(original, public)
    # The file round-trips through JSON text, as a deletion workflow files it.
    assert verify_receipt_document(json.loads(json.dumps(original, indent=2)), public)

    for name, edit in EDITS.items():
        edited = json.loads(json.dumps(original))
        body = edited["receipt"]
        body[name] = edit(body)
        assert body[name] != original["receipt"][name]  # type: ignore[index]
        assert not verify_receipt_document(edited, public), name
    added = json.loads(json.dumps(original))
    added["receipt"]["note"] = "reviewed"
    assert not verify_receipt_document(added, public)


def test_a_receipt_signed_by_another_key_is_refused(h: Harness) -> None:
    populate(h, "s-1")
    receipt = shred(h, "s-1")
    other = ReceiptSigner.from_pem(new_signing_key_pem())
    forged = receipt_document(receipt.payload, other.sign(receipt.payload))
    assert verify_receipt_document(forged, other.public_pem())  # a valid signature ...
    assert not verify_receipt_document(forged, h.signer.public_pem())  # ... but not the vault's
    assert not verify_receipt_document(document(receipt), other.public_pem())


def test_a_receipt_names_every_destroyed_key_and_a_later_backup_horizon(h: Harness) -> None:
    populate(h, "s-1")
    subject_key = subject_key_id(h, "s-1")
    deks = data_key_ids(h, "s-1")
    assert len(deks) == 5

    receipt = shred(h, "s-1")

    assert set(receipt.key_ids) == {subject_key, *deks}
    assert len(receipt.key_ids) == 6
    assert receipt.shredded_at == NOW
    assert receipt.backup_horizon > receipt.shredded_at
    assert receipt.reason == "account deleted"
    assert receipt.request_id == "req-1"
    assert receipt.signing_key_id == h.signer.key_id
    # The readable fields are exactly the signed ones.
    body = json.loads(receipt.payload)
    assert body["subject_id"] == "s-1"
    assert set(body["key_ids"]) == set(receipt.key_ids)
    assert datetime.fromisoformat(body["backup_horizon"]) == receipt.backup_horizon


def test_the_shredded_subjects_keys_leave_the_caches(h: Harness) -> None:
    tokens = populate(h, "s-1")
    h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE)
    for field in tokens:
        h.vault.get_field("privacy-desk", "s-1", field, view="plaintext", purpose="dsar")
    subject_key = subject_key_id(h, "s-1")
    deks = data_key_ids(h, "s-1")
    other_dek = field_dek(h, "s-2", "phone")
    # Warm before: otherwise the checks below could not fail.
    assert subject_key in h.keys.subject_keys
    assert all(dek in h.keys.data_keys for dek in deks)

    shred(h, "s-1")

    assert subject_key not in h.keys.subject_keys
    assert [dek for dek in deks if dek in h.keys.data_keys] == []
    assert other_dek in h.keys.data_keys  # other subjects stay warm


# -- concurrency ----------------------------------------------------------------------------
@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
def test_concurrent_shreds_of_one_subject_agree_on_one_receipt(h: Harness, known: bool) -> None:
    """A worker retrying after a deadline while its first call still runs, or two replicas:
    both calls answer with the one receipt, none fails."""
    rounds = 8
    subjects = [f"race-{n}" for n in range(rounds)]
    if known:
        for subject in subjects:
            h.vault.put_field("registration", subject, "phone", PHONE)
    for subject in subjects:
        barrier = threading.Barrier(2)

        def call(subject: str = subject, barrier: threading.Barrier = barrier) -> ShredReceipt:
            barrier.wait()
            return shred(h, subject, f"delete-{subject}")

        with ThreadPoolExecutor(max_workers=2) as pool:
            first, second = (f.result() for f in [pool.submit(call), pool.submit(call)])
        assert (first.payload, first.signature) == (second.payload, second.signature)
        assert first.fields_destroyed == (1 if known else 0)
    assert receipt_count(h) == rounds


def test_one_request_id_for_two_subjects_at_once_shreds_exactly_one(h: Harness) -> None:
    for subject in ("s-1", "s-2"):
        h.vault.put_field("registration", subject, "phone", PHONE)
    barrier = threading.Barrier(2)

    def call(subject: str) -> ShredReceipt | AlreadyExists:
        barrier.wait()
        try:
            return shred(h, subject, "req-shared")
        except AlreadyExists as error:
            return error

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(call, ["s-1", "s-2"]))
    receipts = [a for a in answers if isinstance(a, ShredReceipt)]
    assert len(receipts) == 1
    assert sum(isinstance(a, AlreadyExists) for a in answers) == 1
    shredded = receipts[0].subject_id
    kept = "s-2" if shredded == "s-1" else "s-1"
    assert rows_of(h, shredded)["data_keys"] == 0
    assert rows_of(h, kept)["data_keys"] == 1  # the refused call destroyed nothing
    assert subject_row(h, kept) == ("active", None)
