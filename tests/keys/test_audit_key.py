"""The audit chain's key lives in the keyring, beside the master key, never in the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vault.keys.local import KeyringError, LocalKeyProvider, create_keyring


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keyring.json"
    create_keyring(path)
    return path


def without_audit_key(path: Path) -> None:
    """The keyring as versions before the keyed chain wrote it."""
    document = json.loads(path.read_text())
    del document["audit_key"]
    path.write_text(json.dumps(document))


def test_a_new_keyring_has_its_own_audit_key_and_never_adopts_an_unkeyed_chain(
    keyring: Path,
) -> None:
    provider = LocalKeyProvider(keyring)
    key = provider.audit_key()
    assert len(key) == 32
    assert key not in keyring.read_text().encode()  # stored base64, like the master keys
    assert not provider.adopts_unkeyed_audit_chain()
    assert LocalKeyProvider(keyring).audit_key() == key


def test_the_audit_key_survives_rotation_and_retirement(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    key = provider.audit_key()
    provider.rotate()
    provider.retire(1)
    assert LocalKeyProvider(keyring).audit_key() == key


def test_an_old_keyring_gets_an_audit_key_on_first_use_and_adopts_once(keyring: Path) -> None:
    without_audit_key(keyring)
    first = LocalKeyProvider(keyring)
    other = LocalKeyProvider(keyring)  # another process that read the file before
    key = first.audit_key()
    assert other.audit_key() == key  # it sees the one that was added, not a second one
    assert first.adopts_unkeyed_audit_chain()
    other.close_unkeyed_audit_chain()
    assert not first.adopts_unkeyed_audit_chain()
    assert not LocalKeyProvider(keyring).adopts_unkeyed_audit_chain()
    first.rotate()
    assert not LocalKeyProvider(keyring).adopts_unkeyed_audit_chain()
    assert LocalKeyProvider(keyring).audit_key() == key


@pytest.mark.parametrize(
    "entry",
    [
        {"key": "c2hvcnQ=", "unkeyed_chain": "closed"},
        {"key": "!!", "unkeyed_chain": "closed"},
        {"unkeyed_chain": "closed"},
        {"key": "A" * 43 + "=", "unkeyed_chain": "maybe"},
    ],
)
def test_a_malformed_audit_key_makes_the_keyring_unusable(
    keyring: Path, entry: dict[str, str]
) -> None:
    document = json.loads(keyring.read_text())
    document["audit_key"] = entry
    keyring.write_text(json.dumps(document))
    with pytest.raises(KeyringError, match="malformed"):
        LocalKeyProvider(keyring)
