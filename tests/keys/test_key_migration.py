"""``pii-vault keys migrate``: a populated local vault moved to SoftHSM2 and to OpenBao Transit.

Driven through the command line in this process (``vault.cli.main``), then
checked from a fresh ``build_app`` as a restarted server would see it: every
value reads back, every key is under the new master key, the audit chain
verifies across the move, and the old keyring opens nothing, not even for a
copy of the database taken before the migration. Deleting the carried chain
key is caught by verification. The resumability test kills the command with
SIGKILL after its first progress line and runs it again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from vault.bootstrap.app import App, build_app, init_data_dir
from vault.bootstrap.provider_file import MIGRATION_FILE
from vault.cli import main
from vault.config import KEY_PROVIDER_FILE, Settings
from vault.fields import PhoneNumber
from vault.keys.local import KeyringError, LocalKeyProvider
from vault.keys.uri import provider_from_uri

SUBJECTS = 40


@pytest.fixture(params=["pkcs11", "transit"])
def target(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_uri"))


@pytest.fixture
def fast_seal_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command waits two seal-check intervals twice; no server runs here."""
    monkeypatch.setenv("PII_VAULT_SEAL_CHECK_INTERVAL", "0.05")
    monkeypatch.delenv("PII_VAULT_KEY_PROVIDER", raising=False)


def phone(n: int) -> PhoneNumber:
    return PhoneNumber(f"+372 5{n:03d} 4567")


def populate(data_dir: Path, count: int) -> None:
    init_data_dir(data_dir)
    with build_app(Settings(data_dir=data_dir)) as app:
        for n in range(count):
            app.vault.put_field("registration", f"s-{n}", "phone", phone(n))
        app.vault.get_field("registration", "s-0", "phone", "masked", "")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    populate(path, SUBJECTS)
    return path


def copy_db(data_dir: Path, to: Path) -> Path:
    source, copy = sqlite3.connect(data_dir / "vault.db"), sqlite3.connect(to)
    source.backup(copy)
    source.close()
    copy.close()
    return to


def kek_ids(app: App) -> set[str]:
    with app.store.read() as tx:
        rows = []
        for table in ("subject_keys", "index_keys", "carried_keys"):
            rows += tx.keys.execute(text(f"SELECT kek_id FROM {table}")).all()  # noqa: S608
    return {row[0] for row in rows}


@pytest.fixture
def reopened(data_dir: Path) -> Iterator[App]:
    with build_app(Settings(data_dir=data_dir)) as app:
        yield app


def assert_all_readable(app: App, count: int) -> None:
    """Every subject key opens (a masked read unwraps it); every 10th value is revealed."""
    for n in range(count):
        masked = app.vault.get_field("registration", f"s-{n}", "phone", "masked", "")
        assert masked.view.masked == "+372 **** **67"
    for n in range(0, count, 10):
        read = app.vault.get_field("privacy-desk", f"s-{n}", "phone", "plaintext", "dsar")
        assert read.value == PhoneNumber(f"+3725{n:03d}4567")
    assert app.vault.find_subjects("registration", phone(3)).found


@pytest.mark.usefixtures("fast_seal_checks")
def test_a_local_vault_migrates_and_the_old_keyring_opens_nothing(
    data_dir: Path, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = data_dir / "keyring.json"
    old_kek = LocalKeyProvider(keyring).kek_id
    before = copy_db(data_dir, tmp_path / "before.db")

    started = time.monotonic()
    assert main(["keys", "migrate", "--to", target, "--data-dir", str(data_dir)]) == 0
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert "audit chain key carried" in err and "keys moved" in err
    assert f"migrated to {target}" in out and "destroyed the keyring" in out
    print(f"migrated {SUBJECTS + 8} keys to {target.split(':')[0]} in {took:.2f}s")

    assert (data_dir / KEY_PROVIDER_FILE).read_text() == target + "\n"
    assert not (data_dir / MIGRATION_FILE).exists()
    with build_app(Settings(data_dir=data_dir)) as app:
        assert_all_readable(app, SUBJECTS)
        assert kek_ids(app) == {provider_from_uri(target).kek_id}
        assert app.audit.verify().ok
        app.vault.put_field("registration", "after", "phone", phone(999))
        assert old_kek not in kek_ids(app)

    # The keyring holds no key any more: it opens nothing, not even the old database.
    assert '"key"' not in keyring.read_text()
    with pytest.raises(KeyringError):
        LocalKeyProvider(keyring)
    with pytest.raises(KeyringError):
        build_app(
            Settings(
                data_dir=data_dir,
                database_url=f"sqlite:///{before}",
                key_provider=f"local://{keyring}",
            )
        )

    # Running it again has nothing to do.
    assert main(["keys", "migrate", "--to", target, "--data-dir", str(data_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.usefixtures("fast_seal_checks")
def test_deleting_the_carried_chain_key_is_detected_not_silently_accepted(
    data_dir: Path, target: str
) -> None:
    assert main(["keys", "migrate", "--to", target, "--data-dir", str(data_dir)]) == 0
    db = sqlite3.connect(data_dir / "vault.db")
    with db:
        assert db.execute("DELETE FROM carried_keys").rowcount == 1
    db.close()
    with build_app(Settings(data_dir=data_dir)) as app:
        check = app.audit.verify()
    assert not check.ok and check.first_bad_position == 1


@pytest.mark.usefixtures("fast_seal_checks")
def test_the_command_refuses_a_provider_set_by_the_variable(
    data_dir: Path,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PII_VAULT_KEY_PROVIDER", f"local://{data_dir / 'keyring.json'}")
    assert main(["keys", "migrate", "--to", target, "--data-dir", str(data_dir)]) == 2
    assert "DIR/key-provider" in capsys.readouterr().err
    assert not (data_dir / KEY_PROVIDER_FILE).exists()


def test_a_migration_killed_with_sigkill_finishes_when_run_again(
    tmp_path: Path, target: str
) -> None:
    count = 200
    data_dir = tmp_path / "vault"
    populate(data_dir, count)
    env = dict(os.environ, PII_VAULT_SEAL_CHECK_INTERVAL="0.05")
    env.pop("PII_VAULT_KEY_PROVIDER", None)
    command = [sys.executable, "-m", "vault", "keys", "migrate", "--to", target,
               "--data-dir", str(data_dir), "--batch", "2"]  # fmt: skip
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert first.stderr is not None
    progress = 0
    for line in first.stderr:
        progress += line.startswith("[")
        if progress == 2:  # the bar after 0/N: a tenth of the keys moved, the rest not
            break
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert (data_dir / MIGRATION_FILE).exists()
    assert len(Settings(data_dir=data_dir).effective_key_providers) == 2
    with build_app(Settings(data_dir=data_dir)) as app:
        assert len(kek_ids(app)) == 2  # partly moved: both master keys in use
        assert_all_readable(app, count)  # and every value reads meanwhile

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    with build_app(Settings(data_dir=data_dir)) as app:
        assert_all_readable(app, count)
        assert kek_ids(app) == {provider_from_uri(target).kek_id}
        assert app.audit.verify().ok
    assert not (data_dir / MIGRATION_FILE).exists()


@pytest.mark.usefixtures("fast_seal_checks")
def test_a_second_migration_moves_the_carried_key_on_and_retires_the_old_versions(
    data_dir: Path, transit_uri: str, pkcs11_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "migrate", "--to", transit_uri, "--data-dir", str(data_dir)]) == 0
    transit = provider_from_uri(transit_uri)
    transit.rotate()  # a second version, so that there is an old one to retire
    with build_app(Settings(data_dir=data_dir)) as app:
        chain_key = app.audit.open_chain()
        app.vault.put_field("registration", "under-v2", "phone", phone(500))

    assert main(["keys", "migrate", "--to", pkcs11_uri, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"retired 1 old versions of {transit_uri}" in out
    assert "NOTE: its current version 2 still exists" in out
    assert [v.state for v in transit.versions()] == ["retired", "active"]
    with build_app(Settings(data_dir=data_dir)) as app:
        assert app.audit.open_chain() == chain_key  # the same chain key, carried twice
        assert app.audit.verify().ok
        assert kek_ids(app) == {provider_from_uri(pkcs11_uri).kek_id}
        assert_all_readable(app, SUBJECTS)
