"""The backup horizon on a signed shred receipt is a promise: a backup holder tests it.

The attacker holds a copy of the database taken before a subject was
shredded, and the keyring as it is on the day it tries (the worst case the
receipt covers: a keyring backup kept apart is not needed, the live one is
used). The receipt says after which time that copy opens nothing. The test
runs the server's own maintenance loop with an injected clock, tick by tick
(no sleeping), from the shred past that time, and checks that the copy's
subject key stops unwrapping no later than the receipt said.

Against the old code this fails twice over: on an installation 45 days old
the receipt promised "tomorrow", and nothing ever rotated the master key, so
the copy opened with the keyring forever. With the schedule off, a receipt
must promise no date at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vault.bootstrap.app import App, build_app, init_data_dir
from vault.bootstrap.maintenance import Maintenance, build_maintenance, load_retention
from vault.config import Settings
from vault.crypto.envelope import subject_key_context
from vault.domain.shredding import ShredReceipt, receipt_document
from vault.errors import Unavailable
from vault.fields import PhoneNumber
from vault.keys.local import LocalKeyProvider
from vault.keys.provider import WrappedKey
from vault.transport.convert import receipt_to_proto

PHONE = PhoneNumber("+372 5123 4567")
SURVIVOR_PHONE = PhoneNumber("+372 5876 5432")
# The maintenance interval of these installations (the default is an hour; a
# coarser one keeps the month of ticks short, and the horizon accounts for it).
TICK = timedelta(hours=6)


# -- the installation -------------------------------------------------------------------------
def backdate_keyring(keyring: Path, age: timedelta) -> None:
    """Make the keyring's only version ``age`` old, as on an installation that old."""
    document = json.loads(keyring.read_text())
    [version] = document["versions"]
    version["created_at"] = (datetime.now(UTC) - age).isoformat()
    keyring.write_text(json.dumps(document))  # same inode and mode (0600)


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``installation(age, **settings)``: an initialised data dir of that age, and its app."""
    apps: list[App] = []

    def make(age: timedelta, **settings: object) -> App:
        data_dir = tmp_path / "vault"
        init_data_dir(data_dir)
        backdate_keyring(data_dir / "keyring.json", age)
        app = build_app(Settings(data_dir=data_dir, **settings))  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.audit.close()
        app.vault.close()
        app.store.dispose()


def maintenance_of(app: App) -> Maintenance:
    """The loop ``pii-vault serve`` runs with these settings, not started: ticks are ours."""
    settings = app.settings
    loop = build_maintenance(app, load_retention(settings), settings.retention_interval)
    assert loop is not None
    return loop


# -- the attacker -----------------------------------------------------------------------------
def copy_database(data_dir: Path, target: Path) -> Path:
    """A backup: the SQLite database file after a checkpoint (nothing left in the WAL)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(data_dir / "vault.db", target / "vault.db")
    return target / "vault.db"


def unwrap_from_copy(copy: Path, keyring: Path, subject_id: str) -> bytes:
    """Unwrap the subject key held in the copy with the keyring as it is now."""
    db = sqlite3.connect(copy)
    try:
        key_id, kek_id, kek_version, wrapped = db.execute(
            "SELECT key_id, kek_id, kek_version, wrapped FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        ).fetchone()
    finally:
        db.close()
    return LocalKeyProvider(keyring).unwrap(
        WrappedKey(kek_id, kek_version, wrapped), subject_key_context(subject_id, key_id)
    )


def copy_opens(copy: Path, keyring: Path, subject_id: str) -> bool:
    try:
        unwrap_from_copy(copy, keyring, subject_id)
    except Unavailable:
        return False
    return True


def signed_horizon(receipt: ShredReceipt) -> object:
    """The ``backup_horizon`` in the signed bytes, wherever the document format nests it."""
    tables = [json.loads(receipt.payload)]
    while tables:
        table = tables.pop()
        if "backup_horizon" in table:
            return table["backup_horizon"]
        tables += [child for child in table.values() if isinstance(child, dict)]
    raise AssertionError("the signed receipt must state its backup horizon")


def shred(app: App, subject_id: str) -> ShredReceipt:
    return app.shredder.shred_subject("deletion", subject_id, "account closed", uuid.uuid4().hex)


# -- the promise is kept ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "age", [timedelta(days=45), timedelta(0)], ids=["installation-45-days-old", "new-installation"]
)
def test_past_the_horizon_on_its_receipt_a_pre_shred_copy_opens_nothing_with_the_keyring(
    installation: Callable[..., App], tmp_path: Path, age: timedelta
) -> None:
    app = installation(age, retention_interval=TICK.total_seconds())
    data_dir = app.settings.data_dir
    keyring = data_dir / "keyring.json"
    subject, survivor = f"bh-{uuid.uuid4()}", f"bh-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)
    app.vault.put_field("registration", survivor, "phone", SURVIVOR_PHONE)
    app.store.checkpoint()
    copy = copy_database(data_dir, tmp_path / "backup")
    # The counter-case: on the day of the shred the copy and the keyring open the subject.
    assert copy_opens(copy, keyring, subject)

    receipt = shred(app, subject)
    horizon = receipt.backup_horizon
    assert horizon is not None
    assert signed_horizon(receipt) == horizon.isoformat()
    assert receipt.shredded_at < horizon <= receipt.shredded_at + timedelta(days=32)
    assert copy_opens(copy, keyring, subject)  # the shred alone does not reach the copy

    # The server's loop, tick by tick on an injected clock, from the shred to past the horizon.
    loop = maintenance_of(app)
    tick = app.key_admin.schedule.tick
    assert tick == TICK
    now = receipt.shredded_at
    unreadable_since: datetime | None = None
    while now <= horizon + tick:
        now += tick
        loop.run_once(now)
        if unreadable_since is None and not copy_opens(copy, keyring, subject):
            unreadable_since = now
    assert unreadable_since is not None, "past the receipt's horizon the copy still opens"
    assert unreadable_since <= horizon, "the receipt promised an earlier date than was kept"

    with pytest.raises(Unavailable, match="retired"):
        unwrap_from_copy(copy, keyring, subject)
    # Every key of the live store was rewrapped first: nothing that is kept was lost.
    survivor_phone = app.vault.get_field("privacy-desk", survivor, "phone", "plaintext", "dsar")
    assert survivor_phone.value == PhoneNumber("+37258765432")
    status = app.key_admin.rotation_status("admin", now)
    assert status.keys_to_rewrap == 0 and status.versions_pending_retirement == ()


# -- no schedule, no promise ------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [{"rotation_days": 0}, {"retention_interval": 0.0}],
    ids=["rotation-days-0", "maintenance-off"],
)
def test_with_the_schedule_off_the_receipt_promises_no_backup_horizon(
    installation: Callable[..., App], tmp_path: Path, settings: dict[str, object]
) -> None:
    app = installation(timedelta(days=45), **settings)
    subject = f"bh-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)

    receipt = shred(app, subject)

    assert receipt.backup_horizon is None
    assert signed_horizon(receipt) is None  # JSON null, inside the signed bytes
    assert not receipt_to_proto(receipt).HasField("backup_horizon")
    status = app.key_admin.rotation_status("admin")
    assert not status.enabled and status.backup_horizon is None
    assert status.next_rotation_due is None

    # And indeed nothing rotates on its own: the date would have been a lie.
    loop = build_maintenance(app, load_retention(app.settings), app.settings.retention_interval)
    if loop is not None:
        loop.run_once(datetime.now(UTC) + timedelta(days=400))
    assert [
        v.version for v in LocalKeyProvider(app.settings.data_dir / "keyring.json").versions()
    ] == [1]

    # The CLI that verifies a receipt says so in words.
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt_document(receipt.payload, receipt.signature)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vault",
            "receipts",
            "verify",
            str(path),
            "--data-dir",
            str(app.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no backup horizon promised" in done.stdout
