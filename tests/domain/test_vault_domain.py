"""The domain use cases, in-process, against SQLite and PostgreSQL.

The vault is wired as ``vault.bootstrap.app`` wires it (keyring file, default
policy, migrated store, blind-index keys from the key store), with a fixed
clock so that views and audit times are exact. Each test gets a fresh keyring
and an empty database; the database itself is created and migrated once per
back end for the module, which keeps the PostgreSQL runs fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.bootstrap.app import PolicyHolder, load_index_keys
from vault.crypto.envelope import InvalidCiphertextError
from vault.crypto.tokens import looks_like_token, new_token
from vault.domain.model import GetRequest
from vault.domain.vault import Vault
from vault.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from vault.fields import Email, FieldType, PaymentCard, PaymentToken, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage import repository as repo
from vault.storage.database import Store

NOW = datetime(2026, 11, 22, tzinfo=UTC)

PHONE = PhoneNumber("+372 5123 4567")
PHONE_E164 = PhoneNumber("+37251234567")
OTHER_PHONE = PhoneNumber("+372 5876 5432")
EMAIL = Email("Jane.Doe@Example.COM")
CARD = PaymentCard("4111 1111 1111 1111", 12, 2028, "Jane Doe")
PAY_TOKEN = PaymentToken("Stripe", "pm_1Q2w3E4r5T6y7U8iF3A9")

# Fragments of the values above that must never reach the audit log.
SECRETS = ("5123", "51234567", "jane", "doe", "4111111111111111", "pm_1q2w3e4r5t6y7u8i")


@dataclass
class Harness:
    url: str
    keyring: Path
    policy_path: Path
    store: Store
    keys: KeyHierarchy
    vault: Vault
    audit: AuditLog


def fixed_clock() -> datetime:
    return NOW


def build(url: str, keyring: Path, policy_path: Path) -> Harness:
    """One replica: its own store connection pool, provider, caches and policy."""
    store = Store(url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    keys = KeyHierarchy(provider)
    indexer = load_index_keys(store, provider)
    audit = AuditLog(store, fixed_clock)
    vault = Vault(store, keys, indexer, PolicyHolder(policy_path), audit, clock=fixed_clock)
    return Harness(url, keyring, policy_path, store, keys, vault, audit)


@pytest.fixture
def h(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    assert keyring.stat().st_mode & 0o777 == 0o600
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(DEFAULT_POLICY_TOML)
    harness = build(database_url, keyring, policy_path)
    try:
        yield harness
    finally:
        harness.audit.close()  # buffered events land before the next test empties the tables
        harness.vault.close()
        harness.store.dispose()


@pytest.fixture
def replica(h: Harness) -> Iterator[Harness]:
    other = build(h.url, h.keyring, h.policy_path)
    try:
        yield other
    finally:
        other.audit.close()
        other.vault.close()
        other.store.dispose()


def stored(h: Harness, subject_id: str, field: str) -> repo.StoredField | None:
    with h.store.read() as tx:
        return repo.get_field(tx.data, subject_id, field)


def data_key_ids(h: Harness, subject_id: str) -> set[str]:
    with h.store.read() as tx:
        rows = tx.keys.execute(
            text("SELECT dek_id FROM data_keys WHERE subject_id = :s"), {"s": subject_id}
        )
        return {row[0] for row in rows}


def audit_rows(h: Harness) -> list[tuple[object, ...]]:
    with h.store.read() as tx:
        return [tuple(row) for row in tx.data.execute(text("SELECT * FROM audit_events"))]


def assert_no_values_in_audit(h: Harness, *extra: str) -> None:
    for row in audit_rows(h):
        for column in row:
            cell = str(column).lower().replace(" ", "")
            for secret in (*SECRETS, *(e.lower() for e in extra)):
                assert secret not in cell, (secret, row)


# -- put and get ------------------------------------------------------------------------
def test_put_returns_a_masked_view_with_a_token(h: Harness) -> None:
    view = h.vault.put_field("registration", "s-1", "phone", PHONE)
    assert view.subject_id == "s-1"
    assert view.field == "phone"
    assert view.type is FieldType.PHONE
    assert view.masked == "+372 **** **67"
    assert looks_like_token(view.token)
    assert view.version == 1
    assert view.updated_at == NOW
    assert view.facts.phone_country_code == 372


def test_stored_row_holds_no_plaintext(h: Harness) -> None:
    view = h.vault.put_field("registration", "s-1", "phone", PHONE)
    row = stored(h, "s-1", "phone")
    assert row is not None
    for blob in (row.value_ct, row.view_ct):
        assert b"51234567" not in blob
        assert b"**67" not in blob
        assert view.token.encode() not in blob


def test_get_masked_is_the_default_and_hides_the_token(h: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    read = h.vault.get_field("registration", "s-1", "phone")
    assert read.value is None
    assert read.view.masked == "+372 **** **67"
    assert read.view.token == ""
    assert read.view.version == put.version
    assert read.view.updated_at == NOW
    assert read.view.facts == put.facts


def test_get_token_view(h: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    read = h.vault.get_field("registration", "s-1", "phone", view="token")
    assert read.view.token == put.token
    assert read.value is None


def test_registration_is_denied_plaintext_and_the_denial_is_audited(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.get_field("registration", "s-1", "phone", view="plaintext", purpose="dsar")
    [event] = h.audit.events("s-1")
    assert (event.caller, event.action, event.field, event.view) == (
        "registration",
        "get",
        "phone",
        "plaintext",
    )
    assert (event.outcome, event.status_code, event.purpose) == (
        "denied",
        "PERMISSION_DENIED",
        "dsar",
    )
    assert event.time == NOW
    assert_no_values_in_audit(h)


def test_privacy_desk_reads_plaintext_for_dsar_and_the_reveal_is_audited(h: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    read = h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert read.value == PHONE_E164
    assert read.view.masked == "+372 **** **67"
    assert read.view.token == put.token
    [event] = h.audit.events("s-1")
    assert (event.caller, event.action, event.view, event.purpose, event.outcome) == (
        "privacy-desk",
        "reveal",
        "plaintext",
        "dsar",
        "ok",
    )
    assert_no_values_in_audit(h, put.token)


@pytest.mark.parametrize("purpose", ["", "marketing", "checkout"])
def test_privacy_desk_needs_the_dsar_purpose(h: Harness, purpose: str) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose=purpose)
    assert [e.outcome for e in h.audit.events("s-1")] == ["denied"]


def test_masked_reads_are_not_reveals(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.get_field("registration", "s-1", "phone")
    h.vault.get_field("registration", "s-1", "phone", view="token")
    # Traced as routine reads (appended in a batch), never as reveals.
    assert [(e.action, e.view, e.outcome) for e in h.audit.events()] == [
        ("get", "masked", "ok"),
        ("get", "token", "ok"),
    ]


def test_checkout_reads_payment_token_but_never_a_card_number(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "payment_token.stripe", PAY_TOKEN)
    h.vault.put_field("checkout", "s-1", "card.primary", CARD)
    read = h.vault.get_field(
        "checkout", "s-1", "payment_token.stripe", view="plaintext", purpose="checkout"
    )
    assert read.value == PaymentToken("stripe", PAY_TOKEN.token)
    card = h.vault.get_field("checkout", "s-1", "card.primary")
    assert card.view.facts.card_last4 == "1111"
    assert "4111 1111" not in card.view.masked
    with pytest.raises(PermissionDenied):
        h.vault.get_field("checkout", "s-1", "card.primary", view="plaintext", purpose="checkout")
    # The masked card read is buffered, so it is appended after the synchronous events.
    assert [(e.action, e.view, e.outcome) for e in h.audit.events("s-1")] == [
        ("reveal", "plaintext", "ok"),
        ("get", "plaintext", "denied"),
        ("get", "masked", "ok"),
    ]
    assert_no_values_in_audit(h)


def test_registration_may_not_store_a_card_and_nothing_is_written(h: Harness) -> None:
    with pytest.raises(PermissionDenied):
        h.vault.put_field("registration", "s-1", "card.primary", CARD)
    assert stored(h, "s-1", "card.primary") is None
    with h.store.read() as tx:
        assert repo.subject_state(tx.data, "s-1") is None
    [event] = h.audit.events("s-1")
    assert (event.action, event.outcome) == ("put", "denied")
    assert_no_values_in_audit(h)


def test_unknown_caller_gets_nothing(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.get_field("intruder", "s-1", "phone")


def test_missing_field_and_subject_are_not_found(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(NotFound):
        h.vault.get_field("registration", "s-1", "email")
    with pytest.raises(NotFound):
        h.vault.get_field("registration", "s-2", "phone")


def test_invalid_values_are_refused_before_anything_is_written(h: Harness) -> None:
    with pytest.raises(InvalidArgument) as caught:
        h.vault.put_field("registration", "s-1", "phone", PhoneNumber("+372 12"))
    assert "+372 12" not in str(caught.value)
    with h.store.read() as tx:
        assert repo.subject_state(tx.data, "s-1") is None


def test_list_fields_shows_only_what_the_caller_may_see(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-1", "email", EMAIL)
    h.vault.put_field("checkout", "s-1", "card.primary", CARD)
    views = h.vault.list_fields("registration", "s-1")
    assert [(v.field, v.masked) for v in views] == [
        ("email", "J***@example.com"),
        ("phone", "+372 **** **67"),
    ]
    assert all(v.token == "" for v in views)


def test_batch_get_reports_each_item(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    results = h.vault.batch_get(
        "registration",
        [
            GetRequest("s-1", "phone"),
            GetRequest("s-1", "fax"),
            GetRequest("s-1", "phone", view="plaintext", purpose="dsar"),
        ],
    )
    assert [type(r).__name__ for r in results] == ["FieldRead", "NotFound", "PermissionDenied"]


# -- replacing a value ------------------------------------------------------------------
def test_replacing_a_value_makes_a_new_key_and_destroys_the_old_one(h: Harness) -> None:
    first = h.vault.put_field("registration", "s-1", "phone", PHONE)
    old = stored(h, "s-1", "phone")
    assert old is not None
    old_ciphertext, old_dek = old.value_ct, old.dek_id
    assert data_key_ids(h, "s-1") == {old_dek}

    second = h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    assert second.version == first.version + 1 == 2
    assert second.masked == "+372 **** **32"
    assert second.token != first.token

    new = stored(h, "s-1", "phone")
    assert new is not None
    assert new.dek_id != old_dek
    # The old data key row is gone: nothing in the vault can open the old ciphertext.
    assert data_key_ids(h, "s-1") == {new.dek_id}
    with h.store.read() as tx:
        assert repo.data_key(tx.keys, old_dek) is None
        assert repo.data_key(tx.keys, new.dek_id) is not None
    assert h.keys.cached_cipher(old_dek) is None
    # The surviving key is bound to the new dek id and does not open the old copy.
    cipher = h.keys.cached_cipher(new.dek_id)
    assert cipher is not None
    with pytest.raises(InvalidCiphertextError):
        cipher.open_value(old_ciphertext)
    # Putting the old ciphertext back into the row is detected, never decrypted.
    with h.store.write() as tx:
        tx.data.execute(
            text("UPDATE fields SET value_ct = :ct, dek_id = :dek WHERE subject_id = 's-1'"),
            {"ct": old_ciphertext, "dek": old_dek},
        )
    with pytest.raises(DataLoss):
        h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")


def test_replaced_value_reads_back_and_old_token_is_dead(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "payment_token.stripe", PAY_TOKEN)
    old_token = h.vault.get_field("checkout", "s-1", "payment_token.stripe", view="token")
    h.vault.put_field(
        "checkout", "s-1", "payment_token.stripe", PaymentToken("stripe", "tok_9z8y7x6w")
    )
    read = h.vault.get_field(
        "privacy-desk", "s-1", "payment_token.stripe", view="plaintext", purpose="dsar"
    )
    assert read.value == PaymentToken("stripe", "tok_9z8y7x6w")
    assert read.view.version == 2
    with pytest.raises(NotFound):
        h.vault.detokenize("checkout", old_token.view.token, "checkout")


def test_a_moved_ciphertext_fails_authentication(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE)
    source = stored(h, "s-1", "phone")
    assert source is not None
    with h.store.write() as tx:
        tx.data.execute(
            text("UPDATE fields SET value_ct = :ct WHERE subject_id = 's-2'"),
            {"ct": source.value_ct},
        )
    with pytest.raises(DataLoss):
        h.vault.get_field("privacy-desk", "s-2", "phone", view="plaintext", purpose="dsar")


# -- blind index ------------------------------------------------------------------------
def test_find_subjects_matches_differently_written_numbers(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PhoneNumber("+372 5123 4567"))
    h.vault.put_field("registration", "s-2", "phone.work", PhoneNumber("0037251234567"))
    h.vault.put_field("registration", "s-3", "phone", PhoneNumber("5123 4567", "EE"))
    h.vault.put_field("registration", "s-4", "phone", OTHER_PHONE)
    for spelling in (
        PhoneNumber("+37251234567"),
        PhoneNumber("00372 5123-4567"),
        PhoneNumber("51234567", "ee"),
    ):
        assert h.vault.find_subjects("registration", spelling) == ["s-1", "s-2", "s-3"]
    assert h.vault.find_subjects("registration", OTHER_PHONE) == ["s-4"]
    assert h.vault.find_subjects("registration", PhoneNumber("+372 5555 5555")) == []


def test_find_subjects_by_email_ignores_domain_case(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "email", EMAIL)
    assert h.vault.find_subjects("registration", Email("Jane.Doe@example.com")) == ["s-1"]
    assert h.vault.find_subjects("registration", Email("jane.doe@example.com")) == []


def test_find_follows_replacement(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    assert h.vault.find_subjects("registration", PHONE) == []
    assert h.vault.find_subjects("registration", OTHER_PHONE) == ["s-1"]


def test_find_is_policy_gated(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.find_subjects("checkout", PHONE)
    [event] = h.audit.events()
    assert (event.caller, event.action, event.outcome) == ("checkout", "find", "denied")
    assert_no_values_in_audit(h)


# -- delete -----------------------------------------------------------------------------
def test_delete_field_removes_field_index_row_and_data_key(h: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-1", "email", EMAIL)
    row = stored(h, "s-1", "phone")
    assert row is not None
    h.vault.delete_field("deletion", "s-1", "phone")

    assert stored(h, "s-1", "phone") is None
    with pytest.raises(NotFound):
        h.vault.get_field("registration", "s-1", "phone")
    assert h.vault.find_subjects("registration", PHONE) == []
    with h.store.read() as tx:
        assert repo.data_key(tx.keys, row.dek_id) is None
        index_rows = tx.data.execute(
            text("SELECT count(*) FROM blind_index WHERE field = 'phone'")
        ).scalar_one()
    assert index_rows == 0
    assert h.keys.cached_cipher(row.dek_id) is None
    with pytest.raises(NotFound):
        h.vault.detokenize("privacy-desk", put.token, "dsar")
    # The other field of the subject is untouched.
    assert h.vault.get_field("registration", "s-1", "email").view.masked == "J***@example.com"
    assert [(e.caller, e.action, e.field) for e in h.audit.events("s-1")] == [
        ("deletion", "delete", "phone"),
        ("registration", "get", "email"),  # the masked read, appended in its batch
    ]


def test_delete_is_policy_gated_and_keeps_the_field(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.delete_field("registration", "s-1", "phone")
    assert stored(h, "s-1", "phone") is not None
    [event] = h.audit.events("s-1")
    assert (event.action, event.outcome) == ("delete", "denied")


def test_delete_of_a_missing_field_is_not_found(h: Harness) -> None:
    with pytest.raises(NotFound):
        h.vault.delete_field("deletion", "s-1", "phone")


# -- detokenize -------------------------------------------------------------------------
def test_detokenize_for_checkout(h: Harness) -> None:
    put = h.vault.put_field("checkout", "s-1", "payment_token.stripe", PAY_TOKEN)
    read = h.vault.detokenize("checkout", put.token, "checkout")
    assert read.value == PaymentToken("stripe", PAY_TOKEN.token)
    assert (read.view.subject_id, read.view.field) == ("s-1", "payment_token.stripe")
    [event] = h.audit.events("s-1")
    assert (event.caller, event.action, event.purpose, event.outcome) == (
        "checkout",
        "detokenize",
        "checkout",
        "ok",
    )
    assert_no_values_in_audit(h, put.token)


@pytest.mark.parametrize(
    ("caller", "purpose"),
    [("checkout", ""), ("checkout", "marketing"), ("registration", "checkout")],
)
def test_detokenize_is_denied_and_audited(h: Harness, caller: str, purpose: str) -> None:
    put = h.vault.put_field("checkout", "s-1", "payment_token.stripe", PAY_TOKEN)
    with pytest.raises(PermissionDenied):
        h.vault.detokenize(caller, put.token, purpose)
    [event] = h.audit.events("s-1")
    assert (event.caller, event.action, event.outcome) == (caller, "detokenize", "denied")
    assert_no_values_in_audit(h, put.token)


def test_checkout_may_not_detokenize_a_phone(h: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.detokenize("checkout", put.token, "checkout")


def test_detokenize_unknown_and_malformed_tokens(h: Harness) -> None:
    with pytest.raises(NotFound):
        h.vault.detokenize("checkout", new_token(), "checkout")
    with pytest.raises(InvalidArgument):
        h.vault.detokenize("checkout", "not-a-token", "checkout")


# -- idempotency ------------------------------------------------------------------------
def test_same_idempotency_key_same_content_gives_the_same_view(h: Harness) -> None:
    first = h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    keys_before = data_key_ids(h, "s-1")
    # Written differently but the same value: the same request.
    again = h.vault.put_field(
        "registration", "s-1", "phone", PhoneNumber("0037251234567"), idempotency_key="req-1"
    )
    assert again == first
    assert data_key_ids(h, "s-1") == keys_before
    assert h.vault.get_field("registration", "s-1", "phone").view.version == 1


def test_same_idempotency_key_other_content_is_already_exists(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    with pytest.raises(AlreadyExists):
        h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE, idempotency_key="req-1")
    with pytest.raises(AlreadyExists):
        h.vault.put_field("registration", "s-1", "phone.work", PHONE, idempotency_key="req-1")
    read = h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert read.value == PHONE_E164
    assert read.view.version == 1


def test_idempotency_keys_are_per_subject(h: Harness) -> None:
    a = h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    b = h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE, idempotency_key="req-1")
    assert (a.subject_id, b.subject_id) == ("s-1", "s-2")
    assert b.masked == "+372 **** **32"


# -- replicas ---------------------------------------------------------------------------
def test_another_replica_reads_what_the_first_wrote(h: Harness, replica: Harness) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    row = stored(h, "s-1", "phone")
    assert row is not None
    assert h.keys.cached_cipher(row.dek_id) is not None
    assert replica.keys.cached_cipher(row.dek_id) is None  # cold: nothing shared in memory
    read = replica.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert read.value == PHONE_E164
    assert read.view.token == put.token
    assert replica.keys.cached_cipher(row.dek_id) is not None
    assert replica.vault.find_subjects("registration", PhoneNumber("0037251234567")) == ["s-1"]


def test_a_replace_on_one_replica_is_seen_by_the_other(h: Harness, replica: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    # Warm the first replica's caches with the old key.
    h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    replica.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    read = h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert read.value == PhoneNumber("+37258765432")
    assert read.view.version == 2


# -- shredded subjects ------------------------------------------------------------------
def _mark_shredded(h: Harness, subject_id: str) -> None:
    with h.store.write() as tx:
        tx.data.execute(
            text("UPDATE subjects SET state = 'shredded' WHERE subject_id = :s"),
            {"s": subject_id},
        )


def test_a_shredded_subject_cannot_be_written(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    _mark_shredded(h, "s-1")
    with pytest.raises(FailedPrecondition):
        h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    with pytest.raises(FailedPrecondition):
        h.vault.put_field("registration", "s-1", "email", EMAIL)
    with h.store.read() as tx:
        assert repo.subject_state(tx.data, "s-1") == "shredded"
    assert stored(h, "s-1", "email") is None


@pytest.mark.parametrize(
    ("caller", "view", "purpose"),
    [("registration", "masked", ""), ("privacy-desk", "plaintext", "dsar")],
)
def test_a_shredded_subject_cannot_be_read(
    h: Harness, caller: str, view: str, purpose: str
) -> None:
    """Even with the row and a warm cache still in place, the tombstone wins."""
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.get_field(caller, "s-1", "phone", view=view, purpose=purpose)  # warm the cache
    _mark_shredded(h, "s-1")
    with pytest.raises(FailedPrecondition):
        h.vault.get_field(caller, "s-1", "phone", view=view, purpose=purpose)
    with pytest.raises(FailedPrecondition):
        h.vault.get_field(caller, "s-1", "email", view=view, purpose=purpose)
    with pytest.raises(FailedPrecondition):
        h.vault.list_fields(caller, "s-1")


# -- authorisation comes before lookup and validation ----------------------------------
def test_a_caller_without_any_get_grant_cannot_probe_which_fields_exist(h: Harness) -> None:
    h.vault.put_field("registration", "probe-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.get_field("deletion", "probe-1", "phone")
    with pytest.raises(PermissionDenied):
        h.vault.get_field("deletion", "probe-1", "no-such-field")
    with pytest.raises(PermissionDenied):
        h.vault.get_field("deletion", "no-such-subject", "phone")


def test_a_caller_that_may_not_store_a_type_learns_nothing_about_its_validation(
    h: Harness,
) -> None:
    bad_card = PaymentCard("4111 1111 1111 1112", 12, 2028)  # fails Luhn
    with pytest.raises(PermissionDenied):
        h.vault.put_field("registration", "probe-2", "card.primary", bad_card)
    with pytest.raises(InvalidArgument):
        h.vault.put_field("checkout", "probe-2", "card.primary", bad_card)


def test_put_returns_the_token_only_to_callers_granted_the_token_view(h: Harness) -> None:
    h.policy_path.write_text(
        DEFAULT_POLICY_TOML
        + '\n[[callers.writer.grants]]\nactions = ["put", "get"]\nfield_types = ["phone"]\n'
    )
    h.vault._policy.reload()  # type: ignore[attr-defined]
    masked_only = h.vault.put_field("writer", "tok-1", "phone", PHONE)
    assert masked_only.token == ""
    assert masked_only.masked == "+372 **** **67"
    with_token = h.vault.put_field("registration", "tok-2", "phone", PHONE)
    assert looks_like_token(with_token.token)


def test_a_reveal_that_fails_authentication_is_not_audited_as_a_reveal(h: Harness) -> None:
    h.vault.put_field("registration", "tamper-1", "phone", PHONE)
    with h.store.write() as tx:
        row = repo.get_field(tx.data, "tamper-1", "phone")
        assert row is not None
        flipped = row.value_ct[:-1] + bytes([row.value_ct[-1] ^ 1])
        tx.data.execute(
            text("UPDATE fields SET value_ct = :ct WHERE subject_id = 'tamper-1'"),
            {"ct": flipped},
        )
    with pytest.raises(DataLoss):
        h.vault.get_field("privacy-desk", "tamper-1", "phone", "plaintext", "dsar")
    reveals = [e for e in h.audit.events("tamper-1") if e.action == "reveal"]
    assert reveals == []


# -- canaries -------------------------------------------------------------------------------
def test_a_canary_is_never_planted_over_a_real_value(h: Harness) -> None:
    h.vault.put_field("registration", "c-1", "phone", PHONE)
    with pytest.raises(AlreadyExists):
        h.vault.plant_canary("admin", "c-1", "phone", OTHER_PHONE)
    assert h.vault.get_field("registration", "c-1", "phone").view.masked == "+372 **** **67"
    with pytest.raises(PermissionDenied):
        h.vault.plant_canary("registration", "c-1", "decoy", OTHER_PHONE)


def test_a_planted_canary_refuses_every_read(h: Harness) -> None:
    h.vault.plant_canary("admin", "c-2", "phone", OTHER_PHONE)
    with pytest.raises(PermissionDenied, match="access refused"):
        h.vault.get_field("registration", "c-2", "phone")
    with pytest.raises(PermissionDenied):
        h.vault.list_fields("registration", "c-2")
    assert h.vault.guards.canary_hits == 2


# -- fail closed -----------------------------------------------------------------------------
def test_no_reveal_leaves_when_the_audit_log_rejects_writes(h: Harness) -> None:
    h.vault.put_field("registration", "fc-1", "phone", PHONE)
    h.vault.put_field("checkout", "fc-1", "payment_token.stripe", PAY_TOKEN)
    token = h.vault.get_field("checkout", "fc-1", "payment_token.stripe", "token").view.token
    h.audit.flush()
    with h.store.write() as tx:
        # The audit store refuses every write from now on.
        tx.data.execute(text("ALTER TABLE audit_head RENAME TO audit_head_gone"))
    try:
        with pytest.raises(Unavailable):
            h.vault.get_field("privacy-desk", "fc-1", "phone", "plaintext", "dsar")
        with pytest.raises(Unavailable):
            h.vault.detokenize("checkout", token, "checkout")
        with pytest.raises(Unavailable):
            h.vault.export_subject("privacy-desk", "fc-1", "dsar")
    finally:
        with h.store.write() as tx:
            tx.data.execute(text("ALTER TABLE audit_head_gone RENAME TO audit_head"))
