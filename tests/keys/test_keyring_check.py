"""``LocalKeyProvider.check``: what the seal watcher polls to decide "sealed".

The tests run as root, which opens a mode-000 file anyway: the check goes by
the mode bits, as the loader does, not by whether ``open`` happens to work.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from vault.errors import Unavailable
from vault.keys.local import KeyringError, LocalKeyProvider, create_keyring


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "keyring.json"
    create_keyring(path)
    return path


def test_a_missing_keyring_is_unavailable_and_its_return_is_usable(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    aside = keyring.with_name("moved.json")
    keyring.rename(aside)
    with pytest.raises(Unavailable, match="not reachable"):
        provider.check()
    aside.rename(keyring)
    provider.check()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (0o644, "group- or world-accessible"),
        (0o640, "group- or world-accessible"),
        (0o000, "not readable by its owner"),
        (0o200, "not readable by its owner"),
    ],
)
def test_an_unsafe_or_unreadable_mode_is_unavailable(keyring: Path, mode: int, reason: str) -> None:
    provider = LocalKeyProvider(keyring)
    os.chmod(keyring, mode)
    with pytest.raises(Unavailable, match=reason):
        provider.check()
    os.chmod(keyring, 0o600)
    provider.check()


def test_a_keyring_that_no_longer_parses_is_unavailable(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    good = keyring.read_bytes()
    keyring.write_bytes(b'{"format": 1, "kek_id": "x", "versi')
    with pytest.raises(Unavailable, match="malformed"):
        provider.check()
    keyring.write_bytes(good)
    provider.check()


def test_check_logs_nothing_and_never_shows_key_material(
    keyring: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = LocalKeyProvider(keyring)
    document = keyring.read_text()
    os.chmod(keyring, 0o644)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            with pytest.raises(Unavailable) as raised:
                provider.check()
            assert document not in str(raised.value)
    assert caplog.records == []  # the watcher logs the transition, once


def test_an_owner_unreadable_keyring_is_refused_at_load(keyring: Path) -> None:
    os.chmod(keyring, 0o000)
    with pytest.raises(KeyringError, match="not readable by its owner"):
        LocalKeyProvider(keyring)
