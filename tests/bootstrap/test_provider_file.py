"""A running server follows DIR/key-provider: the seal watcher switches its provider.

Real keyring files and a real ``build_app``; the watcher is driven with
``check_once`` as the server's thread drives it every interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault.bootstrap.app import build_app, init_data_dir
from vault.bootstrap.provider_file import (
    ProviderFileFollower,
    follower_for,
    write_key_provider_file,
)
from vault.bootstrap.seal import Seal, SealWatcher
from vault.config import KEY_PROVIDER_FILE, Settings
from vault.fields import PhoneNumber
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.keys.migrating import MigratingKeyProvider
from vault.keys.switchable import SwitchableKeyProvider

PHONE = PhoneNumber("+372 5123 4567")


def test_several_lines_are_read_in_order_and_the_first_is_the_provider(tmp_path: Path) -> None:
    (tmp_path / KEY_PROVIDER_FILE).write_text("local:///a.json\n\nlocal:///b.json\n")
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_key_providers == ["local:///a.json", "local:///b.json"]
    assert settings.effective_key_provider == "local:///a.json"
    pinned = Settings(data_dir=tmp_path, key_provider="local:///c.json")
    assert pinned.effective_key_providers == ["local:///c.json"]
    assert follower_for(pinned) is None  # a provider set by the setting is never followed


def test_the_follower_answers_a_new_provider_only_when_the_file_names_other_uris(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "keyring.json", tmp_path / "second.json"
    create_keyring(first)
    create_keyring(second)
    follow = ProviderFileFollower(Settings(data_dir=tmp_path))
    assert follow.uris == [f"local://{first.resolve()}"]
    assert follow() is None
    write_key_provider_file(tmp_path, [f"local://{first.resolve()}"])  # same URI, new file
    assert follow() is None
    write_key_provider_file(tmp_path, [f"local://{second}", f"local://{first}"])
    switched = follow()
    assert isinstance(switched, MigratingKeyProvider)
    assert switched.kek_id == LocalKeyProvider(second).kek_id
    assert follow() is None
    assert (os.stat(tmp_path / KEY_PROVIDER_FILE).st_mode & 0o777) == 0o600


def test_a_file_naming_an_unusable_provider_seals_until_it_is_fixed(tmp_path: Path) -> None:
    data_dir = tmp_path / "vault"
    init_data_dir(data_dir)
    with build_app(Settings(data_dir=data_dir), start_sealed=True) as app:
        provider = app.keys.provider
        assert isinstance(provider, SwitchableKeyProvider)
        watcher = SealWatcher(app.keys, Seal())
        assert watcher.check_once() is False
        app.vault.put_field("registration", "before", "phone", PHONE)

        write_key_provider_file(data_dir, [f"local://{tmp_path / 'missing.json'}"])
        assert watcher.check_once() is True  # cannot open it: sealed, the old one kept
        assert provider.switches == 0

        new = tmp_path / "new.json"
        create_keyring(new)
        write_key_provider_file(
            data_dir, [f"local://{new}", f"local://{data_dir / 'keyring.json'}"]
        )
        assert watcher.check_once() is False
        assert provider.switches == 1
        assert provider.kek_id == LocalKeyProvider(new).kek_id
        app.keys.subject_keys.clear()
        app.keys.data_keys.clear()
        read = app.vault.get_field("privacy-desk", "before", "phone", "plaintext", "dsar")
        assert read.value == PhoneNumber("+37251234567")  # the old key, read via the source
        app.vault.put_field("registration", "after", "phone", PHONE)
        with app.store.read() as tx:
            material = tx.key_rows.subject_key_for("after")
        assert material is not None and material.wrapped.kek_id == provider.kek_id


@pytest.mark.parametrize("lines", [[], ["  "]])
def test_an_empty_or_missing_file_means_the_local_keyring(tmp_path: Path, lines: list[str]) -> None:
    if lines:
        (tmp_path / KEY_PROVIDER_FILE).write_text("\n".join(lines))
    expected = f"local://{(tmp_path / 'keyring.json').resolve()}"
    assert Settings(data_dir=tmp_path).effective_key_providers == [expected]
