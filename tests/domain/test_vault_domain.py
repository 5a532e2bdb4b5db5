"""The domain use cases, in-process, against SQLite and PostgreSQL.

The vault is wired as ``vault.bootstrap.app`` wires it (keyring file, default
policy, migrated store, blind-index keys from the key store), with a fixed
clock so that views and audit times are exact. Each test gets a fresh keyring
and an empty database; the database itself is created and migrated once per
back end for the module, which keeps the PostgreSQL runs fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clocks import ManualTime
from sqlalchemy import text

from vault import fields
from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.bootstrap.app import PolicyHolder, load_index_keys
from vault.crypto.envelope import InvalidCiphertextError
from vault.crypto.tokens import looks_like_token, new_token, token_digest
from vault.domain.model import FieldRead, GetRequest
from vault.domain.rate_limit import Budget, Rate, RateLimiter, RateLimits
from vault.domain.records import StoredField
from vault.domain.vault import Vault
from vault.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    VaultError,
)
from vault.fields import Email, FieldType, PaymentCard, PaymentToken, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

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


def build(
    url: str,
    keyring: Path,
    policy_path: Path,
    *,
    clock: Callable[[], datetime] = fixed_clock,
    rate_limiter: RateLimiter | None = None,
) -> Harness:
    """One replica: its own store connection pool, provider, caches and policy."""
    store = Store(url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    keys = KeyHierarchy(provider)
    indexer = load_index_keys(store, provider)
    audit = AuditLog(store, clock, chain_key=provider)
    vault = Vault(
        store,
        keys,
        indexer,
        PolicyHolder(policy_path),
        audit,
        clock=clock,
        rate_limiter=rate_limiter,
        hot_reads=HotReads(store.data_url, holds_keys=True),
    )
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


@pytest.fixture
def another(h: Harness, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Another replica on the same database and keyring: ``another(policy=..., clock=...)``."""
    built: list[Harness] = []

    def make(policy: str = DEFAULT_POLICY_TOML, **options: Any) -> Harness:
        policy_path = tmp_path / f"policy-{len(built)}.toml"
        policy_path.write_text(policy)
        harness = build(h.url, h.keyring, policy_path, **options)
        built.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in built:
            harness.audit.close()
            harness.vault.close()
            harness.store.dispose()


def stored(h: Harness, subject_id: str, field: str) -> StoredField | None:
    with h.store.read() as tx:
        return tx.fields.get_field(subject_id, field)


def data_key_ids(h: Harness, subject_id: str) -> set[str]:
    with h.store.read() as tx:
        rows = tx.keys.execute(
            text("SELECT dek_id FROM data_keys WHERE subject_id = :s"), {"s": subject_id}
        )
        return {row[0] for row in rows}


def audit_rows(h: Harness) -> list[tuple[object, ...]]:
    with h.store.read() as tx:
        return [tuple(row) for row in tx.data.execute(text("SELECT * FROM audit_events"))]


def audited(h: Harness, subject_id: str | None = None) -> list[AuditRecord]:
    """Every audit event but the puts': the reads, denials and deletes a test looks at.

    Every put is audited too (batched), which the put tests check on their own.
    """
    return [e for e in h.audit.events(subject_id) if e.action != "put"]


def assert_no_values_in_audit(h: Harness, *extra: str) -> None:
    for row in audit_rows(h):
        for column in row:
            # A hash column is raw bytes: scanned as bytes, not through its repr,
            # whose escapes ("\x9doe") can spell a secret by chance.
            cell = column.lower() if isinstance(column, bytes) else str(column).lower()
            for secret in (*SECRETS, *(e.lower() for e in extra)):
                if isinstance(cell, bytes):
                    assert secret.encode() not in cell, (secret, row)
                else:
                    assert secret not in cell.replace(" ", ""), (secret, row)


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
    [event] = audited(h, "s-1")
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
    [event] = audited(h, "s-1")
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
    assert [e.outcome for e in audited(h, "s-1")] == ["denied"]


def test_masked_reads_are_not_reveals(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.get_field("registration", "s-1", "phone")
    h.vault.get_field("registration", "s-1", "phone", view="token")
    # Traced as routine reads (appended in a batch), never as reveals.
    assert [(e.action, e.view, e.outcome) for e in audited(h)] == [
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
    assert [(e.action, e.view, e.outcome) for e in audited(h, "s-1")] == [
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
        assert tx.subjects.subject_state("s-1") is None
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
        assert tx.subjects.subject_state("s-1") is None


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


def test_batch_get_answers_each_item_as_a_single_get_would(h: Harness) -> None:
    """One row read serves the batch; each answer still equals its own GetField's."""
    for n in range(30):
        h.vault.put_field("registration", f"s-{n}", "phone", PhoneNumber(f"+372 5{n:03d} 4567"))
    h.vault.put_field("registration", "s-0", "phone", OTHER_PHONE)  # version 2
    with h.store.write() as tx:
        tx.data.execute(text("UPDATE subjects SET state = 'shredded' WHERE subject_id = 's-29'"))
    items = [GetRequest(f"s-{n}", "phone", view="token") for n in range(29, -1, -1)]
    items += [GetRequest("s-3", "phone"), GetRequest("s-3", "phone"), GetRequest("s-3", "fax")]
    items += [GetRequest("nobody", "phone"), GetRequest("s-4", "phone", view="plaintext")]
    items += [GetRequest("bad id!", "phone")]

    def answer(item: GetRequest) -> object:
        try:
            read = h.vault.get_field("registration", item.subject_id, item.field, item.view)
        except VaultError as error:
            return (type(error).__name__, error.message)
        return read

    singles = [answer(item) for item in items]
    batch = [
        r if isinstance(r, FieldRead) else (type(r).__name__, r.message)
        for r in h.vault.batch_get("registration", items)
    ]
    assert batch == singles
    assert batch[0] == ("FailedPrecondition", "subject is shredded")
    assert isinstance(batch[29], FieldRead) and batch[29].view.version == 2
    assert [r if isinstance(r, tuple) else "read" for r in batch[30:]] == [
        "read",
        "read",
        ("NotFound", "field not found"),
        ("NotFound", "field not found"),
        ("PermissionDenied", batch[34][1]),  # type: ignore[index]
        ("InvalidArgument", batch[35][1]),  # type: ignore[index]
    ]


def test_a_cold_batch_opens_its_keys_from_one_statement(h: Harness) -> None:
    for n in range(12):
        h.vault.put_field("registration", f"c-{n}", "phone", PhoneNumber(f"+372 5{n:03d} 4567"))
    h.vault.put_field("checkout", "c-0", "card.primary", CARD)  # registration may not read it
    first, second = stored(h, "c-1", "phone"), stored(h, "c-2", "phone")
    assert first is not None and second is not None
    with h.store.write() as tx:  # c-2's row names c-1's data key: that item alone fails
        tx.data.execute(
            text("UPDATE fields SET dek_id = :dek WHERE subject_id = 'c-2'"), {"dek": first.dek_id}
        )
    h.keys.data_keys.clear()
    hot = h.vault._hot
    single, many = hot.data_key, hot.data_keys
    calls: list[str] = []
    hot.data_key = lambda dek_id: calls.append("one") or single(dek_id)  # type: ignore[method-assign]
    hot.data_keys = lambda ids: calls.append(f"{len(ids)}") or many(ids)  # type: ignore[method-assign]
    items = [GetRequest(f"c-{n}", "phone") for n in range(12)] + [GetRequest("c-0", "card.primary")]
    results = h.vault.batch_get("registration", items)
    # The granted rows' keys in one read (c-1's once, though two rows name it); the
    # key c-2 borrowed is refused on its own read, the card is not opened at all.
    assert calls == ["11", "one"]
    assert [type(r).__name__ for r in results] == (
        ["FieldRead", "FieldRead", "DataLoss"] + ["FieldRead"] * 9 + ["NotFound"]
    )
    assert h.keys.cached_cipher(stored(h, "c-0", "card.primary").dek_id) is None  # type: ignore[union-attr]


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
        assert tx.key_rows.data_key(old_dek) is None
        assert tx.key_rows.data_key(new.dek_id) is not None
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


@pytest.mark.parametrize("holds_keys", [True, False], ids=["one-statement", "key-store-tx"])
def test_the_cold_path_refuses_a_data_key_that_is_not_the_fields(
    h: Harness, holds_keys: bool
) -> None:
    """A cache miss opens the data key from the database, whichever way it reads it:
    one joined statement (key tables beside the data) or a unit of work on the key store.
    Both refuse a data key row of another field, and a data key whose subject key is gone."""
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-2", "phone", OTHER_PHONE)
    first, second = stored(h, "s-1", "phone"), stored(h, "s-2", "phone")
    assert first is not None and second is not None
    vault = Vault(
        h.store,
        KeyHierarchy(LocalKeyProvider(h.keyring)),  # a replica with cold caches
        load_index_keys(h.store, LocalKeyProvider(h.keyring)),
        PolicyHolder(h.policy_path),
        h.audit,
        clock=fixed_clock,
        hot_reads=HotReads(h.store.data_url, holds_keys=holds_keys),
    )
    try:
        assert vault.get_field("registration", "s-1", "phone").view.masked == "+372 **** **67"
        vault._keys.data_keys.clear()
        with h.store.write() as tx:  # s-2's row now names s-1's data key
            tx.data.execute(
                text("UPDATE fields SET dek_id = :dek WHERE subject_id = 's-2'"),
                {"dek": first.dek_id},
            )
        with pytest.raises(DataLoss, match="belongs to another field"):
            vault.get_field("registration", "s-2", "phone")
        with h.store.write() as tx:
            tx.data.execute(
                text("UPDATE fields SET dek_id = :dek WHERE subject_id = 's-2'"),
                {"dek": second.dek_id},
            )
            tx.data.execute(text("DELETE FROM subject_keys WHERE subject_id = 's-2'"))
        vault._keys.subject_keys.clear()
        with pytest.raises(DataLoss, match="subject key is missing"):
            vault.get_field("registration", "s-2", "phone")
        assert vault.get_field("registration", "s-1", "phone").view.masked == "+372 **** **67"
    finally:
        vault.close()


def test_a_warm_view_is_reused_only_for_the_very_ciphertext_it_came_from(h: Harness) -> None:
    """Masked reads reuse the decoded view kept with the cached data key; a view
    ciphertext changed in the database (by a byte) is opened again, and fails."""
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    first = h.vault.get_field("registration", "s-1", "phone", view="token")
    row = stored(h, "s-1", "phone")
    assert row is not None
    cipher = h.keys.cached_cipher(row.dek_id)
    assert cipher is not None and cipher.view_memo is not None
    assert cipher.view_memo[0] == row.view_ct
    memo = cipher.view_memo
    again = h.vault.get_field("registration", "s-1", "phone", view="token")
    masked = h.vault.get_field("registration", "s-1", "phone")
    assert again == first and masked.view.token == "" and masked.view.masked == first.view.masked
    assert cipher.view_memo is memo  # both answered from the memo, nothing opened again
    tampered = bytearray(row.view_ct)
    tampered[-1] ^= 1
    with h.store.write() as tx:
        tx.data.execute(
            text("UPDATE fields SET view_ct = :ct WHERE subject_id = 's-1'"),
            {"ct": bytes(tampered)},
        )
    with pytest.raises(DataLoss, match="view failed authentication"):
        h.vault.get_field("registration", "s-1", "phone")
    assert cipher.view_memo is memo  # a view that fails authentication is never kept


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
        assert h.vault.find_subjects("registration", spelling).found
    assert h.vault.find_subjects("registration", OTHER_PHONE).found
    assert not h.vault.find_subjects("registration", PhoneNumber("+372 5555 5555")).found
    # registration's grant answers "exists": it never learns whose the value is.
    assert h.vault.find_subjects("registration", OTHER_PHONE).subject_ids == ()


def test_find_subjects_by_email_ignores_domain_case(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "email", EMAIL)
    assert h.vault.find_subjects("registration", Email("Jane.Doe@example.com")).found
    assert not h.vault.find_subjects("registration", Email("jane.doe@example.com")).found


def test_find_follows_replacement(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    assert not h.vault.find_subjects("registration", PHONE).found
    assert h.vault.find_subjects("registration", OTHER_PHONE).found


def test_find_is_policy_gated(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.find_subjects("checkout", PHONE)
    [event] = audited(h)
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
    assert not h.vault.find_subjects("registration", PHONE).found
    with h.store.read() as tx:
        assert tx.key_rows.data_key(row.dek_id) is None
        index_rows = tx.data.execute(
            text("SELECT count(*) FROM blind_index WHERE field = 'phone'")
        ).scalar_one()
    assert index_rows == 0
    assert h.keys.cached_cipher(row.dek_id) is None
    with h.store.read() as tx:  # the token resolves to nothing any more
        assert tx.fields.field_by_token(token_digest(put.token)) is None
    # The other field of the subject is untouched.
    assert h.vault.get_field("registration", "s-1", "email").view.masked == "J***@example.com"
    assert [(e.caller, e.action, e.field) for e in audited(h, "s-1")] == [
        ("deletion", "delete", "phone"),
        ("registration", "get", "email"),  # the masked read, appended in its batch
    ]
    # The search after the delete is audited too (batched, no subject, no value).
    assert [(e.caller, e.detail) for e in audited(h) if e.action == "find"] == [
        ("registration", "field_type=phone result=miss")
    ]


def test_delete_is_policy_gated_and_keeps_the_field(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(PermissionDenied):
        h.vault.delete_field("registration", "s-1", "phone")
    assert stored(h, "s-1", "phone") is not None
    [event] = audited(h, "s-1")
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
    [event] = audited(h, "s-1")
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
    with pytest.raises(PermissionDenied) as caught:
        h.vault.detokenize(caller, put.token, purpose)
    # Decided before the token is looked up: the denial names no subject, field or type.
    [event] = audited(h)
    assert (event.caller, event.action, event.outcome) == (caller, "detokenize", "denied")
    assert (event.subject_id, event.field) == ("", "")
    assert "payment_token" not in caught.value.message
    assert_no_values_in_audit(h, put.token)


def test_checkout_may_not_detokenize_a_phone_and_is_answered_as_for_an_unknown_token(
    h: Harness,
) -> None:
    put = h.vault.put_field("registration", "s-1", "phone", PHONE)
    with pytest.raises(NotFound) as caught:
        h.vault.detokenize("checkout", put.token, "checkout")
    with pytest.raises(NotFound) as unknown:
        h.vault.detokenize("checkout", new_token(), "checkout")
    assert caught.value.message == unknown.value.message
    # The operator's audit log still says what happened.
    [event] = audited(h, "s-1")
    assert (event.caller, event.action, event.outcome, event.status_code) == (
        "checkout",
        "detokenize",
        "denied",
        "NOT_FOUND",
    )


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


def put_events(h: Harness, subject_id: str) -> list[tuple[str, str, str, str, str]]:
    """(caller, field, outcome, status, detail) of every ``put`` event of a subject, sorted.

    Sorted: a routine put is appended in a batch, a refused one at once, so the
    chain's order is not the order of the calls.
    """
    return sorted(
        (e.caller, e.field, e.outcome, e.status_code, e.detail)
        for e in h.audit.events(subject_id)
        if e.action == "put"
    )


def idempotency_rows(h: Harness, subject_id: str) -> list[tuple[object, ...]]:
    with h.store.read() as tx:
        return [
            tuple(row)
            for row in tx.data.execute(
                text(
                    "SELECT caller, idempotency_key, field, dek_id, fingerprint "
                    "FROM idempotency_keys WHERE subject_id = :s ORDER BY caller"
                ),
                {"s": subject_id},
            )
        ]


# Checkout may also store phones, so two callers share a type.
SHARED_PHONE_POLICY = DEFAULT_POLICY_TOML.replace(
    'field_types = ["card", "payment_token", "address"]',
    'field_types = ["card", "payment_token", "address", "phone"]',
    1,
)
# Registration may also delete cards, so it may replace one with a phone.
REGISTRATION_DELETES_CARDS = (
    DEFAULT_POLICY_TOML
    + """
[[callers.registration.grants]]
actions = ["delete"]
field_types = ["card"]
"""
)


def test_an_idempotency_record_answers_only_the_caller_that_made_it(
    h: Harness, another: Callable[..., Harness]
) -> None:
    shared = another(SHARED_PHONE_POLICY)
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    # Checkout's key "req-1" is its own: right or wrong guess, both are plain new writes.
    right = shared.vault.put_field("checkout", "s-1", "phone", PHONE, idempotency_key="req-1")
    wrong = shared.vault.put_field("checkout", "s-1", "phone", OTHER_PHONE, idempotency_key="req-2")
    assert (right.version, wrong.version) == (2, 3)
    # Checkout's own retry is a replay of its own write.
    again = shared.vault.put_field("checkout", "s-1", "phone", OTHER_PHONE, idempotency_key="req-2")
    assert again == wrong


@pytest.mark.parametrize("guess", [PHONE, OTHER_PHONE], ids=["right", "wrong"])
def test_a_replay_after_an_overwrite_cannot_confirm_the_old_value(
    h: Harness, guess: PhoneNumber
) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    h.vault.put_field("registration", "s-1", "phone", PhoneNumber("+372 5839 2714"))
    with pytest.raises(FailedPrecondition) as refused:
        h.vault.put_field("registration", "s-1", "phone", guess, idempotency_key="req-1")
    assert refused.value.message == (
        "the field written under this idempotency_key was replaced or deleted"
    )
    # Nothing was written: a late retry never puts the old value back.
    assert h.vault.get_field("registration", "s-1", "phone").view.version == 2
    # The record kept no fingerprint of the destroyed value.
    [(_caller, _key, _field, _dek, fingerprint)] = idempotency_rows(h, "s-1")
    assert fingerprint is None


@pytest.mark.parametrize("guess", [PHONE, OTHER_PHONE], ids=["right", "wrong"])
def test_a_replay_after_delete_field_cannot_confirm_the_old_value(
    h: Harness, guess: PhoneNumber
) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    h.vault.delete_field("deletion", "s-1", "phone")
    with pytest.raises(FailedPrecondition, match="replaced or deleted"):
        h.vault.put_field("registration", "s-1", "phone", guess, idempotency_key="req-1")
    with pytest.raises(NotFound):
        h.vault.get_field("registration", "s-1", "phone")


@pytest.mark.parametrize(
    "guess", [CARD, replace(CARD, pan="4111 1111 1111 1129")], ids=["right", "wrong"]
)
def test_a_replay_after_a_retention_delete_cannot_confirm_the_old_value(
    h: Harness, guess: PaymentCard
) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD, idempotency_key="add-card")
    assert h.vault.delete_field_for_retention(
        "s-1", "card.primary", expired_before=date(2029, 1, 1), reason="card expired"
    )
    with pytest.raises(FailedPrecondition, match="replaced or deleted"):
        h.vault.put_field("checkout", "s-1", "card.primary", guess, idempotency_key="add-card")
    [(_caller, _key, _field, _dek, fingerprint)] = idempotency_rows(h, "s-1")
    assert fingerprint is None


def test_a_shred_deletes_the_subjects_idempotency_records(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    assert len(idempotency_rows(h, "s-1")) == 1
    with h.store.write() as tx:
        tx.subjects.delete_subject_data("s-1")
    assert idempotency_rows(h, "s-1") == []


def test_an_idempotency_record_expires_and_is_purged(
    h: Harness, another: Callable[..., Harness]
) -> None:
    clock = ManualTime(NOW)
    replica = another(clock=clock)
    first = replica.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="k")
    clock.now = NOW + timedelta(hours=23, minutes=59)
    assert replica.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="k") == (
        first
    )
    assert replica.vault.purge_expired_idempotency() == 0
    clock.now = NOW + timedelta(hours=24)
    # Expired: the same key is a new write, whatever it carries.
    later = replica.vault.put_field(
        "registration", "s-1", "phone", OTHER_PHONE, idempotency_key="k"
    )
    assert later.version == 2
    clock.now = NOW + timedelta(hours=48)
    assert replica.vault.purge_expired_idempotency() == 1
    assert idempotency_rows(h, "s-1") == []


def test_the_idempotency_lifetime_is_configurable(h: Harness) -> None:
    vault = Vault(
        h.store,
        h.keys,
        load_index_keys(h.store, LocalKeyProvider(h.keyring)),
        PolicyHolder(h.policy_path),
        h.audit,
        clock=fixed_clock,
        idempotency_ttl=timedelta(minutes=5),
        hot_reads=HotReads(h.store.data_url),
    )
    try:
        vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="k")
        with h.store.read() as tx:
            record = tx.idempotency.idempotency_record("registration", "s-1", "k", NOW)
        assert record is not None
        assert record.expires_at == NOW + timedelta(minutes=5)
    finally:
        vault.close()
    with pytest.raises(ValueError, match="positive"):
        Vault(
            h.store,
            h.keys,
            load_index_keys(h.store, LocalKeyProvider(h.keyring)),
            PolicyHolder(h.policy_path),
            h.audit,
            idempotency_ttl=timedelta(0),
            hot_reads=HotReads(h.store.data_url),
        )


def test_the_fingerprint_is_keyed_under_the_fields_data_key(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    row = stored(h, "s-1", "phone")
    assert row is not None
    [(_caller, _key, _field, dek_id, fingerprint)] = idempotency_rows(h, "s-1")
    assert dek_id == row.dek_id
    cipher = h.keys.cached_cipher(row.dek_id)
    assert cipher is not None
    canonical = fields.normalize(PHONE, today=NOW.date()).canonical
    assert bytes(fingerprint) == cipher.fingerprint("registration", "phone", canonical)


def test_replays_spend_the_put_budget(h: Harness, another: Callable[..., Harness]) -> None:
    ticks = [0.0]
    limiter = RateLimiter(
        lambda: RateLimits(default={Budget.PUT: Rate(per_second=1.0, burst=3.0)}),
        monotonic=lambda: ticks[0],
    )
    limited = another(rate_limiter=limiter)
    for _ in range(3):
        limited.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="k")
    with pytest.raises(ResourceExhausted) as exhausted:
        limited.vault.put_field("registration", "s-1", "phone", OTHER_PHONE, idempotency_key="k")
    assert exhausted.value.retry_after == pytest.approx(1.0)
    # Another caller's budget is its own.
    limited.vault.put_field("checkout", "s-1", "card.primary", CARD)
    ticks[0] = 1.0
    with pytest.raises(AlreadyExists):
        limited.vault.put_field("registration", "s-1", "phone", OTHER_PHONE, idempotency_key="k")


def test_every_put_is_audited_without_its_value(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    with pytest.raises(AlreadyExists):
        h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE, idempotency_key="req-1")
    h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    with pytest.raises(FailedPrecondition):
        h.vault.put_field("registration", "s-1", "phone", PHONE, idempotency_key="req-1")
    assert put_events(h, "s-1") == [
        ("registration", "phone", "ok", "OK", "created"),
        ("registration", "phone", "ok", "OK", "replaced"),
        ("registration", "phone", "ok", "OK", "replay"),
        ("registration", "phone", "refused", "ALREADY_EXISTS", "replay with other content"),
        (
            "registration",
            "phone",
            "refused",
            "FAILED_PRECONDITION",
            "replay of a replaced or deleted write",
        ),
    ]
    assert_no_values_in_audit(h, "58765432")


# -- overwrites: holds and types ----------------------------------------------------------
def _hold(h: Harness, subject_id: str) -> None:
    with h.store.write() as tx:
        tx.subjects.set_legal_hold(subject_id, True, "litigation", NOW)


def test_a_hold_blocks_an_overwrite_and_the_held_value_survives(h: Harness) -> None:
    h.vault.put_field("registration", "s-1", "phone", PHONE)
    _hold(h, "s-1")
    with pytest.raises(FailedPrecondition, match="legal hold"):
        h.vault.put_field("registration", "s-1", "phone", OTHER_PHONE)
    read = h.vault.get_field("privacy-desk", "s-1", "phone", view="plaintext", purpose="dsar")
    assert (read.value, read.view.version) == (PHONE_E164, 1)
    # A new field destroys nothing: it may still be added under a hold.
    h.vault.put_field("registration", "s-1", "email", EMAIL)
    assert put_events(h, "s-1") == [
        ("registration", "email", "ok", "OK", "created"),
        ("registration", "phone", "ok", "OK", "created"),
        ("registration", "phone", "refused", "FAILED_PRECONDITION", "legal hold"),
    ]


def test_a_caller_may_not_change_a_fields_type_without_the_delete_grant(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD)
    with pytest.raises(PermissionDenied) as denied:
        h.vault.put_field("registration", "s-1", "card.primary", PHONE)
    # The message names the request, never the stored type.
    assert denied.value.message == (
        "no grant allows caller 'registration' to replace field 'card.primary' "
        "with a value of another type"
    )
    read = h.vault.get_field("checkout", "s-1", "card.primary")
    assert (read.view.type, read.view.version) == (FieldType.CARD, 1)
    assert put_events(h, "s-1") == [
        ("checkout", "card.primary", "ok", "OK", "created"),
        (
            "registration",
            "card.primary",
            "denied",
            "PERMISSION_DENIED",
            "type change without the delete grant",
        ),
    ]


def test_a_caller_with_the_delete_grant_may_change_a_fields_type(
    h: Harness, another: Callable[..., Harness]
) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD)
    allowed = another(REGISTRATION_DELETES_CARDS)
    view = allowed.vault.put_field("registration", "s-1", "card.primary", PHONE)
    assert (view.type, view.version) == (FieldType.PHONE, 2)
    allowed.audit.flush()
    assert put_events(h, "s-1") == [
        ("checkout", "card.primary", "ok", "OK", "created"),
        ("registration", "card.primary", "ok", "OK", "replaced"),
    ]


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
    assert replica.vault.find_subjects("registration", PhoneNumber("0037251234567")).found


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
        assert tx.subjects.subject_state("s-1") == "shredded"
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
        row = tx.fields.get_field("tamper-1", "phone")
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
