"""Moving keys to another master key next to live writers, on SQLite and PostgreSQL.

Two real keyring files stand for the source and the target (the command-line
tests run the same moves to SoftHSM2 and OpenBao). What a concurrent writer
does between a batch's read and its write is done by ``Interfering``, which
wraps the real source and acts on the store the moment a key is unwrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.audit.log import AuditLog
from vault.crypto.envelope import subject_key_context
from vault.domain.carried_keys import CarriedChainKey
from vault.domain.key_migration import KeyMigration
from vault.errors import Unavailable
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.keys.migrating import MigratingKeyProvider
from vault.keys.provider import KeyProvider, WrappedKey
from vault.storage.database import Store

NOW = datetime(2026, 11, 30, tzinfo=UTC)


class Interfering:
    """The source provider; ``on_unwrap`` runs once, at the first unwrap."""

    def __init__(self, inner: KeyProvider, on_unwrap: Callable[[], None]) -> None:
        self.inner = inner
        self._on_unwrap: Callable[[], None] | None = on_unwrap

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if self._on_unwrap is not None:
            action, self._on_unwrap = self._on_unwrap, None
            action()
        return self.inner.unwrap(wrapped, context)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def keyring(path: Path) -> LocalKeyProvider:
    create_keyring(path)
    return LocalKeyProvider(path)


def add_subjects(store: Store, provider: KeyProvider, count: int) -> KeyHierarchy:
    keys = KeyHierarchy(provider)
    for n in range(count):
        with store.write() as tx:
            tx.subjects.insert_subject(f"s-{n}", NOW)
            tx.key_rows.insert_subject_key(keys.new_subject_key(f"s-{n}"), NOW)
    return keys


def subject_keks(store: Store) -> dict[str, str]:
    with store.read() as tx:
        rows = tx.keys.execute(text("SELECT subject_id, kek_id FROM subject_keys")).all()
    return {row[0]: row[1] for row in rows}


def test_a_shred_or_a_rewrite_between_a_batchs_read_and_write_wins_over_the_move(
    store: Store, tmp_path: Path
) -> None:
    source, target = keyring(tmp_path / "source.json"), keyring(tmp_path / "target.json")
    add_subjects(store, source, 9)
    audit = AuditLog(store, lambda: NOW, chain_key=CarriedChainKey(store, source))
    rewritten = target.wrap(b"k" * 32, subject_key_context("s-5", "other"))

    def concurrent_writer() -> None:
        with store.write() as tx:  # a shred deletes s-2's key; a writer rewraps s-5's
            tx.keys.execute(text("DELETE FROM subject_keys WHERE subject_id = 's-2'"))
            tx.keys.execute(
                text("UPDATE subject_keys SET kek_id = :k, wrapped = :w WHERE subject_id = 's-5'"),
                {"k": rewritten.kek_id, "w": rewritten.ciphertext},
            )

    reader = MigratingKeyProvider(target, [Interfering(source, concurrent_writer)])  # type: ignore[list-item]
    migration = KeyMigration(store, target, reader, audit, clock=lambda: NOW)
    assert migration.carry_audit_key()
    progress: list[tuple[int, int]] = []
    # One batch holds them all, so both changes land between its read and its write.
    report = migration.move(batch=20, progress=lambda done, total: progress.append((done, total)))

    assert report.left == 0 and migration.remaining() == 0
    assert report.skipped == 2  # the shredded key and the rewritten one: left alone
    assert report.moved == 7  # the other subject keys (the chain key is carried by the target)
    keks = subject_keks(store)
    assert "s-2" not in keks  # never resurrected
    assert set(keks.values()) == {target.kek_id}
    with store.read() as tx:
        row = tx.keys.execute(
            text("SELECT wrapped FROM subject_keys WHERE subject_id = 's-5'")
        ).one()
    assert row[0] == rewritten.ciphertext  # the concurrent write was not clobbered
    assert progress[0] == (0, 9) and progress[-1][0] == progress[-1][1]
    assert migration.uses_of([source.kek_id]) == 0

    # A fresh process with the target alone opens the carried chain key and verifies.
    fresh = AuditLog(store, lambda: NOW, chain_key=CarriedChainKey(store, target))
    assert fresh.open_chain() == audit.open_chain()


def test_a_key_under_a_master_key_neither_side_holds_stops_the_move(
    store: Store, tmp_path: Path
) -> None:
    stranger, target = keyring(tmp_path / "other.json"), keyring(tmp_path / "target.json")
    add_subjects(store, stranger, 2)
    audit = AuditLog(store, lambda: NOW, chain_key=CarriedChainKey(store, target))
    migration = KeyMigration(store, target, MigratingKeyProvider(target, []), audit)
    with pytest.raises(Unavailable, match="another master key"):
        migration.move(batch=10)
    assert set(subject_keks(store).values()) == {stranger.kek_id}


def test_keys_move_batch_by_batch_and_a_second_run_has_nothing_to_do(
    store: Store, tmp_path: Path
) -> None:
    source, target = keyring(tmp_path / "source.json"), keyring(tmp_path / "target.json")
    add_subjects(store, source, 10)
    audit = AuditLog(store, lambda: NOW, chain_key=CarriedChainKey(store, source))
    migration = KeyMigration(store, target, MigratingKeyProvider(target, [source]), audit)
    progress: list[tuple[int, int]] = []
    report = migration.move(batch=3, progress=lambda done, total: progress.append((done, total)))
    assert [done for done, _ in progress] == [0, 3, 6, 9, 10, 10, 10]
    assert report.moved == 10 and report.passes == 1
    assert set(subject_keks(store).values()) == {target.kek_id}
    assert migration.move(batch=3).moved == 0
