"""The provider of a vault mid-migration: wraps under the target, reads from every side.

Real providers: a keyring file as the source, SoftHSM2 (PKCS#11) and OpenBao
(Transit) as targets, each opened from its URI as the server opens it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault.errors import Unavailable
from vault.keys.hierarchy import subject_key_context
from vault.keys.local import KeyringError, LocalKeyProvider, create_keyring
from vault.keys.migrating import MigratingKeyProvider
from vault.keys.provider import WrappedKey
from vault.keys.uri import create_master_key, provider_from_uri, provider_from_uris

CONTEXT = subject_key_context("subject-1", "key-1")


@pytest.fixture(params=["pkcs11", "transit"])
def target_uri(request: pytest.FixtureRequest) -> str:
    uri = str(request.getfixturevalue(f"{request.param}_uri"))
    create_master_key(uri)
    return uri


@pytest.fixture
def source_uri(tmp_path: Path) -> str:
    uri = f"local://{tmp_path / 'keyring.json'}"
    create_master_key(uri)
    return uri


def test_several_uris_give_a_migrating_provider_that_wraps_under_the_first(
    target_uri: str, source_uri: str
) -> None:
    provider = provider_from_uris([target_uri, source_uri])
    assert isinstance(provider, MigratingKeyProvider)
    target = provider_from_uri(target_uri)
    assert provider.kek_id == target.kek_id
    wrapped = provider.wrap(os.urandom(32), CONTEXT)
    assert wrapped.kek_id == target.kek_id
    assert provider.current_version() == target.current_version()
    assert [v.kek_id for v in provider.versions()] == [v.kek_id for v in target.versions()]


def test_keys_wrapped_by_the_source_and_by_the_target_both_open(
    target_uri: str, source_uri: str
) -> None:
    source, target = provider_from_uri(source_uri), provider_from_uri(target_uri)
    old_key, new_key = os.urandom(32), os.urandom(32)
    old, new = source.wrap(old_key, CONTEXT), target.wrap(new_key, CONTEXT)
    provider = MigratingKeyProvider(target, [source])
    assert provider.unwrap(old, CONTEXT) == old_key
    assert provider.unwrap(new, CONTEXT) == new_key
    assert provider.source_kek_ids == {source.kek_id}


def test_a_key_wrapped_by_a_master_key_neither_side_has_is_unavailable(
    target_uri: str, source_uri: str
) -> None:
    provider = provider_from_uris([target_uri, source_uri])
    stranger = WrappedKey("local-somebodyelse", 1, b"\0" * 60)
    with pytest.raises(Unavailable, match="another master key"):
        provider.unwrap(stranger, CONTEXT)


def test_the_audit_key_and_rotation_are_the_targets(target_uri: str, source_uri: str) -> None:
    target = provider_from_uri(target_uri)
    provider = provider_from_uris([target_uri, source_uri])
    assert provider.audit_key() == target.audit_key()
    assert provider.audit_key() != provider_from_uri(source_uri).audit_key()
    assert provider.adopts_unkeyed_audit_chain() is False
    info = provider.rotate()
    assert info.kek_id == target.kek_id and target.current_version() == info.version


def test_a_source_that_goes_away_fails_the_check_so_the_vault_seals(
    target_uri: str, source_uri: str, tmp_path: Path
) -> None:
    provider = provider_from_uris([target_uri, source_uri])
    provider.check()
    (tmp_path / "keyring.json").rename(tmp_path / "elsewhere.json")
    with pytest.raises(Unavailable, match="not reachable"):
        provider.check()


def test_a_destroyed_keyring_opens_nothing_and_destroying_it_again_is_a_no_op(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyring.json"
    create_keyring(path)
    keyring = LocalKeyProvider(path)
    keyring.rotate()
    wrapped = keyring.wrap(os.urandom(32), CONTEXT)
    keyring.destroy()
    text = path.read_text()
    assert '"key"' not in text and "audit_key" not in text
    with pytest.raises(KeyringError, match="not usable"):
        LocalKeyProvider(path)
    with pytest.raises(Unavailable):
        keyring.unwrap(wrapped, CONTEXT)
    keyring.destroy()
    assert path.read_text() == text
