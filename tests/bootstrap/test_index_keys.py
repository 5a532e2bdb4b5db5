"""Start-up creates the blind-index keys once, races included, and never pretends it did."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.bootstrap.app import load_index_keys
from vault.crypto.envelope import index_key_context, new_key
from vault.domain.records import IndexKeyMaterial
from vault.fields import FieldType
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.storage.database import Store, WriteConflictError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def provider(tmp_path: Path) -> LocalKeyProvider:
    create_keyring(tmp_path / "keyring.json")
    return LocalKeyProvider(tmp_path / "keyring.json")


def stored_index_keys(store: Store) -> dict[str, str]:
    with store.read() as tx:
        return {m.field_type: m.key_id for m in tx.index_keys.index_keys()}


def test_index_keys_are_created_once_and_read_back_after(
    store: Store, provider: LocalKeyProvider
) -> None:
    load_index_keys(store, provider)
    created = stored_index_keys(store)
    assert set(created) == {t.value for t in FieldType}
    load_index_keys(store, provider)
    assert stored_index_keys(store) == created


def test_start_up_raises_when_creating_index_keys_conflicts_past_its_bound(
    store: Store, provider: LocalKeyProvider
) -> None:
    """A conflict that persists ends in an error, not in keys whose insert rolled back.

    One phone key exists; a unique index on the master key id makes every
    further insert collide with it, on every attempt, as a winner that never
    shows itself would. Going on would blind-index with keys nobody stored,
    and the next start would make different ones.
    """
    key_id = "ik-phone"
    wrapped = provider.wrap(new_key(), index_key_context(FieldType.PHONE, key_id))
    with store.write() as tx:
        tx.index_keys.insert_index_key(IndexKeyMaterial(FieldType.PHONE, key_id, wrapped), NOW)
        tx.keys.execute(text("CREATE UNIQUE INDEX ix_one_key_per_kek ON index_keys (kek_id)"))
    with pytest.raises(WriteConflictError, match="still conflicted after 3 attempts"):
        load_index_keys(store, provider)
    assert stored_index_keys(store) == {FieldType.PHONE.value: key_id}
