"""The local keyring provider: file safety, malformed files and wrap/unwrap."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from vault.errors import DataLoss, Unavailable
from vault.keys.local import KeyringError, LocalKeyProvider, create_keyring
from vault.keys.provider import WrappedKey
from vault.keys.uri import provider_from_uri

KEY = bytes(range(32))


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "keyring.json"
    create_keyring(path)
    return path


def test_create_keyring_makes_an_owner_only_file(keyring: Path) -> None:
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    document = json.loads(keyring.read_text())
    assert document["current"] == 1
    assert [v["version"] for v in document["versions"]] == [1]
    assert len(base64.b64decode(document["versions"][0]["key"])) == 32


def test_create_keyring_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_keyring(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_create_keyring_refuses_to_overwrite(keyring: Path) -> None:
    before = keyring.read_bytes()
    with pytest.raises(FileExistsError):
        create_keyring(keyring)
    assert keyring.read_bytes() == before


def test_two_keyrings_hold_different_keys(tmp_path: Path) -> None:
    create_keyring(tmp_path / "a.json")
    create_keyring(tmp_path / "b.json")
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["kek_id"] != b["kek_id"]
    assert a["versions"][0]["key"] != b["versions"][0]["key"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610, 0o601])
def test_refuses_group_or_world_accessible_keyring(keyring: Path, mode: int) -> None:
    keyring.chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600"):
        LocalKeyProvider(keyring)


def test_accepts_owner_read_only(keyring: Path) -> None:
    keyring.chmod(0o400)
    LocalKeyProvider(keyring).check()


def test_missing_keyring(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot be read"):
        LocalKeyProvider(tmp_path / "absent.json")


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


_SECRET_KEY_B64 = base64.b64encode(b"S" * 32).decode()
_SHORT_KEY_B64 = base64.b64encode(b"S" * 16).decode()


@pytest.mark.parametrize(
    "document",
    [
        "not json " + _SECRET_KEY_B64,
        json.dumps([_SECRET_KEY_B64]),
        json.dumps({"kek_id": "x", "current": 1}),
        json.dumps({"kek_id": "x", "current": 1, "versions": [{"key": _SECRET_KEY_B64}]}),
        json.dumps(
            {"kek_id": "x", "current": 1, "versions": [{"version": 1, "key": _SHORT_KEY_B64}]}
        ),
        json.dumps(
            {
                "kek_id": "x",
                "current": 1,
                "versions": [{"version": 1, "key": _SECRET_KEY_B64[:-4] + "!!!!"}],
            }
        ),
        json.dumps(
            {"kek_id": "x", "current": "one", "versions": [{"version": 1, "key": _SECRET_KEY_B64}]}
        ),
    ],
    ids=[
        "not-json",
        "a-list",
        "no-versions",
        "no-version-number",
        "short-key",
        "bad-base64",
        "bad-current",
    ],
)
def test_malformed_keyring_does_not_echo_key_material(tmp_path: Path, document: str) -> None:
    path = tmp_path / "keyring.json"
    _write_private(path, document)
    with pytest.raises(KeyringError, match="malformed") as caught:
        LocalKeyProvider(path)
    message = str(caught.value)
    for secret in (_SECRET_KEY_B64, _SHORT_KEY_B64, _SECRET_KEY_B64[:12]):
        assert secret not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_current_version_must_be_usable(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    document = {
        "kek_id": "x",
        "current": 2,
        "versions": [{"version": 1, "key": _SECRET_KEY_B64}],
    }
    _write_private(path, json.dumps(document))
    with pytest.raises(KeyringError, match="current version 2"):
        LocalKeyProvider(path)


def test_wrap_unwrap_round_trip(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"context-1")
    assert wrapped.kek_version == 1
    assert wrapped.kek_id == json.loads(keyring.read_text())["kek_id"]
    assert KEY not in wrapped.ciphertext
    assert provider.unwrap(wrapped, b"context-1") == KEY


def test_a_second_provider_over_the_same_file_unwraps(keyring: Path) -> None:
    wrapped = LocalKeyProvider(keyring).wrap(KEY, b"ctx")
    assert LocalKeyProvider(keyring).unwrap(wrapped, b"ctx") == KEY


def test_provider_from_uri(keyring: Path) -> None:
    provider = provider_from_uri(f"local://{keyring}")
    assert provider.unwrap(LocalKeyProvider(keyring).wrap(KEY, b"c"), b"c") == KEY


def test_unwrap_with_wrong_context_is_data_loss(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"subject-a")
    with pytest.raises(DataLoss):
        provider.unwrap(wrapped, b"subject-b")


def test_tampered_wrapped_key_is_data_loss(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"ctx")
    body = bytearray(wrapped.ciphertext)
    body[-1] ^= 1
    with pytest.raises(DataLoss):
        provider.unwrap(WrappedKey(wrapped.kek_id, wrapped.kek_version, bytes(body)), b"ctx")


def test_key_wrapped_by_another_keyring_is_unavailable(tmp_path: Path) -> None:
    create_keyring(tmp_path / "a.json")
    create_keyring(tmp_path / "b.json")
    wrapped = LocalKeyProvider(tmp_path / "a.json").wrap(KEY, b"ctx")
    with pytest.raises(Unavailable):
        LocalKeyProvider(tmp_path / "b.json").unwrap(wrapped, b"ctx")


def test_unknown_master_key_version_is_unavailable(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"ctx")
    with pytest.raises(Unavailable, match="version 7"):
        provider.unwrap(WrappedKey(wrapped.kek_id, 7, wrapped.ciphertext), b"ctx")


def test_versions_and_check(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    [info] = provider.versions()
    assert (info.version, info.state) == (1, "active")
    provider.check()
    keyring.unlink()
    with pytest.raises(Unavailable):
        provider.check()
