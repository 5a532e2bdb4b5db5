"""Retention rules and the sweep that applies them, against SQLite and PostgreSQL.

The vault, the shredder, the audit log and the sweeper share one movable
clock: values are written "now", then the clock is moved forward by days or
years and the sweep runs, so nothing here sleeps. The harness is wired as
``vault.bootstrap.app`` wires it; the database is migrated once per back end
for the module and emptied before each test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.bootstrap.app import PolicyHolder, backup_horizon_for, load_index_keys
from vault.crypto.signing import ReceiptSigner, new_signing_key_pem
from vault.domain import retention
from vault.domain.key_admin import RotationSchedule
from vault.domain.retention import (
    ExpiryRule,
    RetentionError,
    RetentionReport,
    RetentionRules,
    RetentionSweeper,
    retention_request_id,
)
from vault.domain.retention_rules import DEFAULT_RETENTION_TOML, EXPIRING_TYPES
from vault.domain.shredding import MAX_REQUEST_ID, Shredder, ShredReceipt
from vault.domain.vault import Vault
from vault.errors import FailedPrecondition, NotFound
from vault.fields import Email, FieldType, PaymentCard, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

START = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
CARD_DEC_2026 = PaymentCard("4111 1111 1111 1111", 12, 2026, "Jane Doe")  # last day 2026-12-31
CARD_JAN_2027 = PaymentCard("5555 5555 5555 4444", 1, 2027, "Jane Doe")  # last day 2027-01-31
CARD_2030 = PaymentCard("4012 8888 8888 1881", 12, 2030, "Jane Doe")
PHONE = PhoneNumber("+372 5123 4567")
EMAIL = Email("Jane.Doe@Example.COM")
SECRETS = ("5123", "jane", "doe", "4111111111111111", "5555555555554444", "4012888888881881")

CARD_RULE = RetentionRules(expiry=(ExpiryRule(FieldType.CARD, 90),))
SUBJECT_RULE = RetentionRules(untouched_days=1095)
BOTH_RULES = RetentionRules(expiry=(ExpiryRule(FieldType.CARD, 90),), untouched_days=1095)


class MovableClock:
    """``clock()`` answers the current fake time; tests move it forward."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


@dataclass
class Harness:
    url: str
    store: Store
    vault: Vault
    shredder: Shredder
    audit: AuditLog
    clock: MovableClock

    def sweeper(self, rules: RetentionRules, *, batch: int = 200) -> RetentionSweeper:
        return RetentionSweeper(
            self.store, self.shredder, self.vault, rules, self.clock, self.audit, batch=batch
        )


def build(url: str, keyring: Path, policy_path: Path, clock: MovableClock) -> Harness:
    """One replica: its own store, key caches, vault, shredder and audit log."""
    store = Store(url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    keys = KeyHierarchy(provider)
    indexer = load_index_keys(store, provider)
    policy = PolicyHolder(policy_path)
    audit = AuditLog(store, clock, chain_key=provider)
    vault = Vault(
        store, keys, indexer, policy, audit, clock=clock, hot_reads=HotReads(store.data_url)
    )
    shredder = Shredder(
        store,
        keys,
        ReceiptSigner.from_pem(new_signing_key_pem()),
        policy,
        audit,
        backup_horizon=backup_horizon_for(provider, RotationSchedule(timedelta(days=30))),
        clock=clock,
        after_shred=store.checkpoint,
    )
    return Harness(url, store, vault, shredder, audit, clock)


def close(h: Harness) -> None:
    h.audit.close()
    h.vault.close()
    h.store.dispose()


@pytest.fixture
def paths(database_url: str, tmp_path: Path) -> tuple[Path, Path]:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(DEFAULT_POLICY_TOML)
    return keyring, policy_path


@pytest.fixture
def h(database_url: str, paths: tuple[Path, Path]) -> Iterator[Harness]:
    harness = build(database_url, *paths, MovableClock(START))
    try:
        yield harness
    finally:
        close(harness)


@pytest.fixture
def replica(h: Harness, paths: tuple[Path, Path]) -> Iterator[Harness]:
    """A second server process on the same database and keyring, on the same clock."""
    other = build(h.url, *paths, h.clock)
    try:
        yield other
    finally:
        close(other)


# -- helpers ---------------------------------------------------------------------------------
def state_of(h: Harness, subject_id: str) -> str | None:
    with h.store.read() as tx:
        return tx.subjects.subject_state(subject_id)


def has_field(h: Harness, subject_id: str, field: str) -> bool:
    with h.store.read() as tx:
        return tx.fields.get_field(subject_id, field) is not None


def key_rows(h: Harness, subject_id: str) -> int:
    with h.store.read() as tx:
        data_keys = tx.keys.execute(
            text("SELECT count(*) FROM data_keys WHERE subject_id = :s"), {"s": subject_id}
        ).scalar_one()
        subject_keys = tx.keys.execute(
            text("SELECT count(*) FROM subject_keys WHERE subject_id = :s"), {"s": subject_id}
        ).scalar_one()
    return int(data_keys) + int(subject_keys)


def retention_events(h: Harness, subject_id: str) -> list[AuditRecord]:
    return [e for e in h.audit.events(subject_id) if e.caller == "retention"]


def put_subject(h: Harness, subject_id: str) -> None:
    h.vault.put_field("registration", subject_id, "phone", PHONE)
    h.vault.put_field("registration", subject_id, "email", EMAIL)


def counts(report: RetentionReport) -> tuple[int, int, int, int, int]:
    return (
        report.cards_deleted,
        report.subjects_shredded,
        report.held_skipped,
        report.already_done,
        report.errors,
    )


def hold(h: Harness, subject_id: str, reason: str = "litigation LX-2291") -> None:
    h.shredder.set_legal_hold("privacy-desk", subject_id, True, reason)


def release(h: Harness, subject_id: str) -> None:
    h.shredder.set_legal_hold("privacy-desk", subject_id, False, "case closed")


# -- cards: after_expiry_days ----------------------------------------------------------------------
@pytest.mark.parametrize(("days_after_expiry", "deleted"), [(89, False), (90, False), (91, True)])
def test_a_card_is_deleted_only_once_more_than_n_days_passed_since_its_last_valid_day(
    h: Harness, days_after_expiry: int, deleted: bool
) -> None:
    h.vault.put_field("checkout", "s-1", "card.old", CARD_DEC_2026)
    h.vault.put_field("checkout", "s-1", "card.newer", CARD_JAN_2027)
    view = h.vault.get_field("checkout", "s-1", "card.old").view  # readable while valid
    assert view.facts.card_last4 == "1111"

    h.clock.set(datetime(2026, 12, 31, 12, tzinfo=UTC) + timedelta(days=days_after_expiry))
    report = h.sweeper(CARD_RULE).run()

    assert counts(report) == (1 if deleted else 0, 0, 0, 0, 0)
    assert has_field(h, "s-1", "card.old") is not deleted
    assert has_field(h, "s-1", "card.newer")  # expired only 60 days or less before
    assert state_of(h, "s-1") == "active"  # a field went, not the subject
    if deleted:
        with pytest.raises(NotFound):
            h.vault.get_field("checkout", "s-1", "card.old")
        assert key_rows(h, "s-1") == 2  # the subject key and card.newer's data key
        (event,) = retention_events(h, "s-1")
        assert (event.action, event.field, event.outcome) == ("delete", "card.old", "ok")
        assert "expired" in event.detail


def test_a_card_is_deleted_with_its_data_key_and_the_subject_keeps_its_other_fields(
    h: Harness,
) -> None:
    put_subject(h, "s-1")
    h.vault.put_field("checkout", "s-1", "card.primary", CARD_DEC_2026)
    assert key_rows(h, "s-1") == 4  # subject key + three data keys
    h.clock.set(datetime(2027, 6, 1, tzinfo=UTC))

    assert h.sweeper(CARD_RULE).run().cards_deleted == 1

    assert key_rows(h, "s-1") == 3
    assert {v.field for v in h.vault.list_fields("privacy-desk", "s-1")} == {"phone", "email"}
    events = " ".join(f"{e.detail} {e.field}" for e in h.audit.events()).lower()
    assert not any(secret in events for secret in SECRETS)


def test_a_card_replaced_by_a_valid_one_after_the_sweep_listed_it_is_kept(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD_DEC_2026)
    h.clock.set(datetime(2027, 6, 1, tzinfo=UTC))

    class ReplacingFirst:
        """The shopper adds a new card between the sweep's listing and its delete."""

        def delete_field_for_retention(
            self, subject_id: str, field: str, *, expired_before: date, reason: str
        ) -> bool:
            h.vault.put_field("checkout", subject_id, field, CARD_2030)
            return h.vault.delete_field_for_retention(
                subject_id, field, expired_before=expired_before, reason=reason
            )

    sweeper = RetentionSweeper(h.store, h.shredder, ReplacingFirst(), CARD_RULE, h.clock, h.audit)
    report = sweeper.run()

    assert counts(report) == (0, 0, 0, 1, 0)
    view = h.vault.get_field("checkout", "s-1", "card.primary").view
    assert (view.facts.card_last4, view.version) == ("1881", 2)


# -- subjects: untouched_days ---------------------------------------------------------------------
def test_an_untouched_subject_is_shredded_and_a_recently_written_one_stays(h: Harness) -> None:
    put_subject(h, "s-old")
    h.clock.advance(1000)
    put_subject(h, "s-new")
    h.clock.set(START + timedelta(days=1096))

    report = h.sweeper(SUBJECT_RULE).run()

    assert counts(report) == (0, 1, 0, 0, 0)
    assert state_of(h, "s-old") == "shredded"  # the tombstone
    assert key_rows(h, "s-old") == 0
    for caller, field in (("registration", "phone"), ("privacy-desk", "email")):
        with pytest.raises(FailedPrecondition, match="shredded"):
            h.vault.get_field(caller, "s-old", field)
    with h.store.read() as tx:
        stored = tx.receipts.receipt_for_subject("s-old")
    assert stored is not None
    receipt = ShredReceipt.from_signed(stored.payload, stored.signature)
    assert receipt.request_id == "retention-s-old-2029-11-22"
    assert receipt.reason == "retention: untouched 1095 days"
    assert receipt.fields_destroyed == 2
    (event,) = retention_events(h, "s-old")
    assert (event.action, event.outcome) == ("shred", "ok")

    assert state_of(h, "s-new") == "active"
    assert h.vault.get_field("registration", "s-new", "phone").view.masked == "+372 **** **67"


def test_a_write_resets_the_idle_time(h: Harness) -> None:
    put_subject(h, "s-1")
    h.clock.advance(1000)
    h.vault.put_field("registration", "s-1", "email", EMAIL)  # a replace is a write
    h.clock.advance(200)

    assert counts(h.sweeper(SUBJECT_RULE).run()) == (0, 0, 0, 0, 0)
    assert state_of(h, "s-1") == "active"


def test_a_subject_written_after_the_sweep_listed_it_is_kept(h: Harness) -> None:
    put_subject(h, "s-1")
    h.clock.advance(1100)
    since = h.clock() - timedelta(days=1095)
    with h.store.read() as tx:
        assert tx.retention.idle_subjects(since, 10) == ["s-1"]
    h.vault.put_field("registration", "s-1", "phone", PHONE)  # lands between list and shred

    with pytest.raises(FailedPrecondition, match="written since"):
        h.shredder.shred("retention", "s-1", "retention: untouched", "r-1", untouched_since=since)
    assert state_of(h, "s-1") == "active"
    assert key_rows(h, "s-1") == 3


# -- legal holds -----------------------------------------------------------------------------------
def test_a_held_subject_is_skipped_and_audited_then_processed_after_release(h: Harness) -> None:
    put_subject(h, "s-held")
    h.vault.put_field("checkout", "s-held", "card.primary", CARD_DEC_2026)
    hold(h, "s-held")
    h.clock.set(START + timedelta(days=1200))

    report = h.sweeper(BOTH_RULES).run()

    assert counts(report) == (0, 0, 1, 0, 0)  # one subject, with a card and itself due
    assert state_of(h, "s-held") == "active"
    assert has_field(h, "s-held", "card.primary")
    refusals = retention_events(h, "s-held")
    assert [(e.action, e.field) for e in refusals] == [("delete", "card.primary"), ("shred", "")]
    for event in refusals:
        assert (event.outcome, event.status_code) == ("refused", "FAILED_PRECONDITION")
        assert event.detail == "legal hold: litigation LX-2291"

    release(h, "s-held")
    report = h.sweeper(BOTH_RULES).run()

    assert counts(report) == (1, 1, 0, 0, 0)
    assert state_of(h, "s-held") == "shredded"
    assert key_rows(h, "s-held") == 0


def test_held_subjects_do_not_stop_the_sweep_from_paging_past_them(h: Harness) -> None:
    for n in range(3):
        put_subject(h, f"s-held-{n}")  # the oldest: first in every listing
        hold(h, f"s-held-{n}")
    h.clock.advance(1)
    for n in range(4):
        put_subject(h, f"s-idle-{n}")
    h.clock.advance(1100)
    seen: list[tuple[int, int]] = []

    report = h.sweeper(SUBJECT_RULE, batch=2).run(lambda done, total: seen.append((done, total)))

    assert counts(report) == (0, 4, 3, 0, 0)
    assert [state_of(h, f"s-idle-{n}") for n in range(4)] == ["shredded"] * 4
    assert [state_of(h, f"s-held-{n}") for n in range(3)] == ["active"] * 3
    assert seen[0] == (0, 7)
    assert seen[-1] == (7, 7)
    assert [done for done, _ in seen] == list(range(8))


def test_a_hold_set_between_check_and_delete_still_wins(h: Harness) -> None:
    h.vault.put_field("checkout", "s-1", "card.primary", CARD_DEC_2026)
    h.clock.set(datetime(2027, 6, 1, tzinfo=UTC))

    class HoldingFirst:
        def delete_field_for_retention(
            self, subject_id: str, field: str, *, expired_before: date, reason: str
        ) -> bool:
            hold(h, subject_id)
            return h.vault.delete_field_for_retention(
                subject_id, field, expired_before=expired_before, reason=reason
            )

    report = RetentionSweeper(
        h.store, h.shredder, HoldingFirst(), CARD_RULE, h.clock, h.audit
    ).run()

    assert counts(report) == (0, 0, 1, 0, 0)
    assert has_field(h, "s-1", "card.primary")
    assert [e.outcome for e in retention_events(h, "s-1")] == ["refused"]


# -- idempotence, dry runs, replicas -----------------------------------------------------------
def test_the_sweep_is_idempotent(h: Harness) -> None:
    put_subject(h, "s-1")
    h.vault.put_field("checkout", "s-2", "card.primary", CARD_DEC_2026)
    h.clock.advance(400)
    h.vault.put_field("registration", "s-2", "phone", PHONE)  # s-2 stays active
    h.clock.advance(800)
    sweeper = h.sweeper(BOTH_RULES)

    assert counts(sweeper.run()) == (1, 1, 0, 0, 0)
    events = len(h.audit.events())
    assert counts(sweeper.run()) == (0, 0, 0, 0, 0)
    assert len(h.audit.events()) == events  # nothing written the second time
    assert state_of(h, "s-2") == "active"


def test_a_dry_run_counts_and_changes_nothing(h: Harness) -> None:
    put_subject(h, "s-1")
    h.vault.put_field("checkout", "s-1", "card.primary", CARD_DEC_2026)
    put_subject(h, "s-held")
    hold(h, "s-held")
    h.clock.advance(1200)
    events = len(h.audit.events())

    report = h.sweeper(BOTH_RULES).run(dry_run=True)

    assert report.dry_run
    assert counts(report) == (1, 1, 1, 0, 0)
    assert "nothing was changed" in report.summary()
    assert has_field(h, "s-1", "card.primary")
    assert state_of(h, "s-1") == "active"
    assert len(h.audit.events()) == events


def test_no_rules_destroy_nothing(h: Harness) -> None:
    put_subject(h, "s-1")
    h.vault.put_field("checkout", "s-1", "card.primary", CARD_DEC_2026)
    h.clock.advance(100 * 365)

    assert counts(h.sweeper(RetentionRules()).run()) == (0, 0, 0, 0, 0)
    assert has_field(h, "s-1", "card.primary")


def test_two_replicas_sweeping_at_once_shred_each_subject_once(
    h: Harness, replica: Harness
) -> None:
    subjects = [f"s-{n}" for n in range(12)]
    for subject_id in subjects:
        put_subject(h, subject_id)
        h.vault.put_field("checkout", subject_id, "card.primary", CARD_DEC_2026)
    h.clock.advance(1200)
    reports: list[RetentionReport] = []
    failures: list[BaseException] = []

    def sweep(harness: Harness) -> None:
        try:
            reports.append(harness.sweeper(BOTH_RULES, batch=5).run())
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=sweep, args=(r,)) for r in (h, replica)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not failures
    assert [r.errors for r in reports] == [0, 0]
    assert all(state_of(h, s) == "shredded" for s in subjects)
    assert all(key_rows(h, s) == 0 for s in subjects)
    with h.store.read() as tx:
        receipts = tx.data.execute(text("SELECT count(*) FROM shred_receipts")).scalar_one()
    assert receipts == len(subjects)  # one shred per subject, whichever replica did it


def test_a_long_subject_id_gets_a_request_id_that_fits(h: Harness) -> None:
    subject_id = "s" * 128
    put_subject(h, subject_id)
    h.clock.advance(1200)

    assert h.sweeper(SUBJECT_RULE).run().subjects_shredded == 1
    request_id = retention_request_id(subject_id, h.clock().date())
    assert len(request_id) <= MAX_REQUEST_ID
    assert request_id.startswith("retention-sha256:")
    assert retention_request_id("s-1", date(2030, 1, 2)) == "retention-s-1-2030-01-02"


# -- the rules file --------------------------------------------------------------------------
def test_the_default_file_keeps_cards_90_days_past_expiry_and_leaves_subjects_alone() -> None:
    rules = RetentionRules.from_toml(DEFAULT_RETENTION_TOML)
    assert rules == RetentionRules(expiry=(ExpiryRule(FieldType.CARD, 90),), untouched_days=None)
    assert rules.describe() == "card fields deleted 90 days after expiry; idle subjects kept"
    uncommented = DEFAULT_RETENTION_TOML.replace("# [subject]", "[subject]").replace(
        "# untouched_days", "untouched_days"
    )
    both = RetentionRules.from_toml(uncommented)
    assert both.untouched_days == 1095
    assert both.describe().endswith("; subjects shredded after 1095 days untouched")


def test_a_missing_file_is_no_rules(tmp_path: Path) -> None:
    rules = RetentionRules.load(tmp_path / "retention.toml")
    assert rules.empty
    assert rules == RetentionRules()


def test_both_rules_parse(tmp_path: Path) -> None:
    path = tmp_path / "retention.toml"
    path.write_text("[card]\nafter_expiry_days = 0\n[subject]\nuntouched_days = 30\n")
    assert RetentionRules.load(path) == RetentionRules(
        expiry=(ExpiryRule(FieldType.CARD, 0),), untouched_days=30
    )


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ('[card]\nafter_expiry_days = "90"\n', "card.after_expiry_days: expected a whole number"),
        ("[card]\nafter_expiry_days = 9.5\n", "card.after_expiry_days: expected a whole number"),
        ("[card]\nafter_expiry_days = -1\n", "card.after_expiry_days: must be between 0 and"),
        ("[card]\nafter_expiry_day = 90\n", "card.after_expiry_day: unknown key"),
        ("[card]\n", "card.after_expiry_days: missing"),
        ("card = 90\n", "card: expected a table"),
        ("[subject]\nuntouched_days = true\n", "subject.untouched_days: expected a whole number"),
        ("[subject]\nuntouched_days = 0\n", "subject.untouched_days: must be between 1 and"),
        ("[subject]\nuntouched_days = 99999\n", "subject.untouched_days: must be between 1"),
        ("[subject]\nafter_expiry_days = 9\n", "subject.after_expiry_days: unknown key"),
        ("[phone]\nafter_expiry_days = 9\n", "phone: phone values carry no expiry"),
        ("[cards]\nafter_expiry_days = 9\n", "cards: unknown key (expected one of subject, card)"),
        ("untouched_days = 9\n", "untouched_days: unknown key"),
        ("[card\n", "invalid TOML"),
    ],
)
def test_an_invalid_file_is_refused_naming_the_key(
    tmp_path: Path, document: str, named: str
) -> None:
    path = tmp_path / "retention.toml"
    path.write_text(document)
    with pytest.raises(RetentionError) as refused:
        RetentionRules.load(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert named in str(refused.value)
    assert "pydantic" not in str(refused.value)
    assert "\n" not in str(refused.value)  # one line, never a validation report


def test_every_type_the_rules_file_accepts_is_one_the_sweeper_can_find() -> None:
    assert frozenset(retention._EXPIRING) == EXPIRING_TYPES
    for field_type in EXPIRING_TYPES:
        days = RetentionRules.from_toml(f"[{field_type}]\nafter_expiry_days = 7\n")
        assert days.expiry == (ExpiryRule(field_type, 7),)
