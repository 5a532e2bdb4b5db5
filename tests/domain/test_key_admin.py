"""Master-key rotation, rewrapping and retirement, in-process, on SQLite and PostgreSQL.

Wired as ``vault.bootstrap.app`` wires it. Reading back after a rewrap is
always done by a *fresh* replica (its own provider, empty key caches), so a
key that was rewrapped wrongly cannot hide behind a cached unwrapped copy.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.audit.records import AuditRecord
from vault.bootstrap.app import PolicyHolder, load_index_keys
from vault.crypto.envelope import subject_key_context
from vault.domain.carried_keys import CarriedChainKey, carry_audit_key
from vault.domain.key_admin import KeyAdmin
from vault.domain.vault import Vault
from vault.errors import DataLoss, InvalidArgument, PermissionDenied, Unavailable
from vault.fields import FieldType, PhoneNumber
from vault.keys.hierarchy import KeyHierarchy, SubjectKeyMaterial
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.policy import DEFAULT_POLICY_TOML
from vault.storage import migrate
from vault.storage.database import Store
from vault.storage.hot_reads import HotReads

NOW = datetime(2026, 11, 22, tzinfo=UTC)
INDEX_KEYS = len(FieldType)


def clock() -> datetime:
    return NOW


@dataclass
class Harness:
    url: str
    keyring: Path
    policy_path: Path
    store: Store
    provider: LocalKeyProvider
    vault: Vault
    audit: AuditLog
    admin: KeyAdmin

    def close(self) -> None:
        self.vault.close()
        self.store.dispose()


def build(url: str, keyring: Path, policy_path: Path) -> Harness:
    """One replica: its own pool, provider, key caches and policy."""
    store = Store(url)
    migrate.upgrade(store)
    provider = LocalKeyProvider(keyring)
    keys = KeyHierarchy(provider)
    indexer = load_index_keys(store, provider)
    audit = AuditLog(store, clock, chain_key=provider)
    policy = PolicyHolder(policy_path)
    vault = Vault(
        store, keys, indexer, policy, audit, clock=clock, hot_reads=HotReads(store.data_url)
    )
    admin = KeyAdmin(store, provider, policy, audit)
    return Harness(url, keyring, policy_path, store, provider, vault, audit, admin)


@pytest.fixture
def h(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    keyring = tmp_path / "keyring.json"
    create_keyring(keyring)
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(DEFAULT_POLICY_TOML)
    harness = build(database_url, keyring, policy_path)
    try:
        yield harness
    finally:
        harness.close()


Replica = Callable[[], Harness]


@pytest.fixture
def fresh(h: Harness) -> Iterator[Replica]:
    """Another replica over the same store and keyring, built when first asked for."""
    replicas: list[Harness] = []

    def make() -> Harness:
        replica = build(h.url, h.keyring, h.policy_path)
        replicas.append(replica)
        return replica

    yield make
    for replica in replicas:
        replica.close()


def phone(n: int) -> PhoneNumber:
    return PhoneNumber(f"+372 5{n:03d} 4567")


def put_subjects(h: Harness, count: int, prefix: str = "s") -> list[str]:
    subjects = [f"{prefix}-{n}" for n in range(count)]
    for n, subject in enumerate(subjects):
        h.vault.put_field("registration", subject, "phone", phone(n))
    return subjects


def status(h: Harness) -> list[tuple[int, str, int]]:
    return [(s.version, s.state, s.uses) for s in h.admin.status("admin")]


def subject_key_versions(h: Harness) -> list[int]:
    with h.store.read() as tx:
        rows = tx.keys.execute(text("SELECT kek_version FROM subject_keys")).all()
        rows += tx.keys.execute(text("SELECT kek_version FROM index_keys")).all()
    return sorted({row[0] for row in rows})


def events(h: Harness, action: str) -> list[AuditRecord]:
    return [e for e in h.audit.events() if e.action == action]


def test_status_counts_keys_per_version(h: Harness) -> None:
    put_subjects(h, 3)
    assert status(h) == [(1, "current", 3 + INDEX_KEYS)]
    [only] = h.admin.status("admin")
    assert only.kek_id.startswith("local-") and only.created_at is not None


def test_rotate_makes_new_keys_use_the_new_version(h: Harness) -> None:
    put_subjects(h, 2)
    info = h.admin.rotate("admin")
    assert info.version == 2
    assert status(h) == [(1, "active", 2 + INDEX_KEYS), (2, "current", 0)]
    h.vault.put_field("registration", "after-rotation", "phone", phone(99))
    assert status(h) == [(1, "active", 2 + INDEX_KEYS), (2, "current", 1)]
    [event] = events(h, "rotate")
    assert event.caller == "admin" and "version 2" in event.detail


def test_rewrap_moves_every_key_in_batches_then_retires(h: Harness, fresh: Replica) -> None:
    subjects = put_subjects(h, 5)
    h.admin.rotate("admin")
    total = 5 + INDEX_KEYS

    job = h.admin.rewrap("admin", batch_size=2)
    progress = list(job)

    # subject keys in batches of 2, 2, 1, then the index keys in 2, 2, 2, 1
    assert progress == [
        (0, total),
        (2, total),
        (4, total),
        (5, total),
        (7, total),
        (9, total),
        (11, total),
        (12, total),
    ]
    assert [(i.version, i.state) for i in job.retired] == [(1, "retired")]
    assert job.still_used == []
    assert subject_key_versions(h) == [2]
    assert status(h) == [(1, "retired", 0), (2, "current", total)]
    assert "key" not in json.loads(h.keyring.read_text())["versions"][0]

    # A replica with nothing cached opens every subject key and every index key.
    replica = fresh()
    for n, subject in enumerate(subjects):
        read = replica.vault.get_field("privacy-desk", subject, "phone", "plaintext", "dsar")
        assert read.value == PhoneNumber("+3725" + f"{n:03d}" + "4567")
    assert replica.vault.find_subjects("registration", phone(3)).found

    [rewrap] = events(h, "rewrap")
    assert rewrap.caller == "admin" and f"{total} keys" in rewrap.detail
    [retire] = events(h, "retire")
    assert "version 1 retired" in retire.detail


def test_rewrap_with_nothing_to_do(h: Harness) -> None:
    put_subjects(h, 1)
    job = h.admin.rewrap("admin")
    assert list(job) == [(0, 0)]
    assert job.retired == []
    assert status(h) == [(1, "current", 1 + INDEX_KEYS)]


def test_rewrap_retires_every_unused_old_version(h: Harness) -> None:
    put_subjects(h, 2, "a")
    h.admin.rotate("admin")
    put_subjects(h, 2, "b")
    h.admin.rotate("admin")
    job = h.admin.rewrap("admin", batch_size=500)
    assert list(job)[-1] == (4 + INDEX_KEYS, 4 + INDEX_KEYS)
    assert [i.version for i in job.retired] == [1, 2]
    assert status(h) == [(1, "retired", 0), (2, "retired", 0), (3, "current", 4 + INDEX_KEYS)]


def test_a_version_still_referenced_is_not_retired(h: Harness, fresh: Replica) -> None:
    put_subjects(h, 4)
    # A writer that wrapped a subject key before the rotation and commits it late:
    late = h.provider.wrap(b"K" * 32, subject_key_context("late", "0" * 32))
    h.admin.rotate("admin")

    job = h.admin.rewrap("admin", batch_size=2)
    assert next(job) == (0, 4 + INDEX_KEYS)
    assert next(job)[0] == 2  # the pass is past key_id "000..." now
    with h.store.write() as tx:
        tx.key_rows.insert_subject_key(SubjectKeyMaterial("0" * 32, "late", late), NOW)
    rest = list(job)
    assert rest[-1][0] == 4 + INDEX_KEYS

    assert job.retired == []
    assert job.still_used == [1]
    assert status(h) == [(1, "active", 1), (2, "current", 4 + INDEX_KEYS)]
    assert "key" in json.loads(h.keyring.read_text())["versions"][0]

    # The next rewrap picks it up, and only then is version 1 retired.
    again = h.admin.rewrap("admin")
    assert list(again) == [(0, 1), (1, 1)]
    assert [i.version for i in again.retired] == [1]
    replica = fresh()
    with replica.store.read() as tx:
        moved = tx.key_rows.subject_key_by_id("0" * 32)
    assert moved is not None and moved.wrapped.kek_version == 2
    key = replica.provider.unwrap(moved.wrapped, subject_key_context("late", "0" * 32))
    assert key == b"K" * 32


def test_a_key_that_fails_authentication_stops_the_rewrap_and_keeps_the_version(
    h: Harness,
) -> None:
    [subject] = put_subjects(h, 1)
    h.admin.rotate("admin")
    with h.store.write() as tx:
        key = tx.key_rows.subject_key_for(subject)
        assert key is not None
        body = bytearray(key.wrapped.ciphertext)
        body[-1] ^= 1
        tx.keys.execute(
            text("UPDATE subject_keys SET wrapped = :w WHERE key_id = :k"),
            {"w": bytes(body), "k": key.key_id},
        )
    job = h.admin.rewrap("admin")
    assert next(job) == (0, 1 + INDEX_KEYS)
    with pytest.raises(DataLoss):
        next(job)
    assert status(h)[0] == (1, "active", 1 + INDEX_KEYS)
    assert "key" in json.loads(h.keyring.read_text())["versions"][0]
    [failed] = events(h, "rewrap")
    assert (failed.outcome, failed.status_code) == ("failed", "DATA_LOSS")


@pytest.mark.parametrize("verb", ["rotate", "rewrap", "key-status"])
def test_callers_without_admin_are_denied_and_audited(h: Harness, verb: str) -> None:
    before = h.keyring.read_bytes()
    with pytest.raises(PermissionDenied):
        if verb == "rotate":
            h.admin.rotate("registration")
        elif verb == "rewrap":
            h.admin.rewrap("registration")
        else:
            h.admin.status("registration")
    assert h.keyring.read_bytes() == before
    [denied] = events(h, verb)
    assert (denied.caller, denied.outcome, denied.status_code) == (
        "registration",
        "denied",
        "PERMISSION_DENIED",
    )


@pytest.mark.parametrize("size", [-1, 10_001])
def test_batch_size_is_bounded(h: Harness, size: int) -> None:
    with pytest.raises(InvalidArgument, match="batch_size"):
        h.admin.rewrap("admin", size)


def test_a_retired_version_is_final_for_every_replica(h: Harness, fresh: Replica) -> None:
    [subject] = put_subjects(h, 1)
    with h.store.read() as tx:
        old = tx.key_rows.subject_key_for(subject)
    assert old is not None
    replica = fresh()
    h.admin.rotate("admin")
    list(h.admin.rewrap("admin"))
    with pytest.raises(Unavailable, match="retired"):
        replica.provider.unwrap(old.wrapped, subject_key_context(subject, old.key_id))


def test_writes_during_a_rewrap_never_end_up_under_a_retired_version(
    h: Harness, fresh: Replica
) -> None:
    put_subjects(h, 10, "before")
    writer = fresh()
    stop = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def write() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            subject = f"during-{n}"
            try:
                writer.vault.put_field("registration", subject, "phone", phone(n))
                written.append(subject)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)
                return
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        h.admin.rotate("admin")
        job = h.admin.rewrap("admin", batch_size=3)
        list(job)
    finally:
        stop.set()
        thread.join()
    assert not errors
    # Whatever was retired, nothing stored is left under it.
    retired = {i.version for i in job.retired}
    assert not retired & set(subject_key_versions(h))
    reader = fresh()
    for subject in ["before-0", "before-9", *written]:
        view = reader.vault.get_field("privacy-desk", subject, "phone", "plaintext", "dsar")
        assert view.value is not None


def test_the_carried_audit_key_is_counted_rewrapped_and_never_retired_from_under(
    h: Harness,
) -> None:
    put_subjects(h, 2)
    chain_key = h.audit.open_chain()
    assert carry_audit_key(h.store, chain_key, h.provider, NOW)
    assert not carry_audit_key(h.store, b"x" * 32, h.provider, NOW)  # carried once
    assert status(h) == [(1, "current", 2 + INDEX_KEYS + 1)]
    h.admin.rotate("admin")
    job = h.admin.rewrap("admin", batch_size=100)
    assert list(job)[-1] == (2 + INDEX_KEYS + 1, 2 + INDEX_KEYS + 1)
    assert [i.version for i in job.retired] == [1]
    assert status(h) == [(1, "retired", 0), (2, "current", 2 + INDEX_KEYS + 1)]
    # The chain key a fresh process opens is still the carried one.
    carried = CarriedChainKey(h.store, LocalKeyProvider(h.keyring))
    assert carried.audit_key() == chain_key
