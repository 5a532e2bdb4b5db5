"""The whole vault on each key custodian: init, reads and writes, warm reads, the backup horizon.

A data directory initialised with ``--key-provider pkcs11:…`` or
``transit+http://…`` holds no master key: the URI is recorded instead and
every later start finds it. The vault on top works as it does on a keyring
file, a warm read asks the provider nothing, and a copy of the database
taken before a shred stops opening once the master key version it was
wrapped under is retired, in the HSM or in Transit as in the keyring.
Receipts are signed inside the provider: the data directory holds only the
public half, so a copy of it cannot forge one.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault.bootstrap.app import App, build_app, init_data_dir
from vault.config import KEY_PROVIDER_FILE, Settings
from vault.crypto.documents import SHRED_RECEIPT, verify_payload
from vault.crypto.envelope import subject_key_context
from vault.errors import Unavailable
from vault.fields import PhoneNumber
from vault.keys.provider import KeyProvider, MasterKeyInfo, WrappedKey
from vault.keys.uri import provider_from_uri

PHONE = PhoneNumber("+372 5123 4567")


@pytest.fixture(params=["local", "pkcs11", "transit"])
def custody(request: pytest.FixtureRequest) -> str:
    """The key provider URI for ``init`` ('' for the default local keyring)."""
    if request.param == "local":
        return ""
    return str(request.getfixturevalue(f"{request.param}_uri"))


@pytest.fixture
def app(custody: str, tmp_path: Path) -> Iterator[App]:
    data_dir = tmp_path / "vault"
    init_data_dir(data_dir, custody)
    # Started as `serve` starts it: no --key-provider, the data directory says.
    opened = build_app(Settings(data_dir=data_dir))
    yield opened
    opened.audit.close()
    opened.vault.close()
    opened.store.dispose()


class CountingProvider:
    """The real provider, counting the calls that reach it."""

    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner
        self.calls = 0

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        self.calls += 1
        return self.inner.wrap(key, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        self.calls += 1
        return self.inner.unwrap(wrapped, context)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_init_with_an_hsm_or_transit_writes_no_master_key_beside_the_data(
    custody: str, app: App
) -> None:
    data_dir = app.settings.data_dir
    if not custody:
        assert (data_dir / "keyring.json").exists()
        return
    assert not (data_dir / "keyring.json").exists()
    assert (data_dir / KEY_PROVIDER_FILE).read_text().strip() == custody
    assert app.settings.effective_key_provider == custody


def test_the_vault_stores_and_reveals_through_the_provider(app: App) -> None:
    subject = f"custody-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)
    masked = app.vault.get_field("registration", subject, "phone", "masked", "")
    assert masked.value is None and masked.view.masked == "+372 **** **67"
    revealed = app.vault.get_field("privacy-desk", subject, "phone", "plaintext", "dsar")
    assert revealed.value == PhoneNumber("+37251234567")


def test_a_warm_read_makes_no_provider_call_and_a_cold_one_unwraps_once(app: App) -> None:
    subject = f"custody-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)
    counting = CountingProvider(app.keys.provider)
    app.keys.provider = counting
    app.keys.subject_keys.clear()
    app.keys.data_keys.clear()

    app.vault.get_field("registration", subject, "phone", "masked", "")
    assert counting.calls == 1  # the subject key, unwrapped once, then cached
    app.vault.get_field("registration", subject, "phone", "masked", "")
    app.vault.get_field("privacy-desk", subject, "phone", "plaintext", "dsar")
    assert counting.calls == 1


def _subject_key_in(copy: Path, subject_id: str) -> tuple[WrappedKey, bytes]:
    db = sqlite3.connect(copy)
    try:
        key_id, kek_id, kek_version, wrapped = db.execute(
            "SELECT key_id, kek_id, kek_version, wrapped FROM subject_keys WHERE subject_id = ?",
            (subject_id,),
        ).fetchone()
    finally:
        db.close()
    return WrappedKey(kek_id, kek_version, wrapped), subject_key_context(subject_id, key_id)


def _opens(provider: KeyProvider, copy: Path, subject_id: str) -> bool:
    wrapped, context = _subject_key_in(copy, subject_id)
    try:
        provider.unwrap(wrapped, context)
    except Unavailable:
        return False
    return True


def test_a_copy_from_before_a_shred_opens_until_its_master_key_version_is_retired(
    app: App, tmp_path: Path
) -> None:
    subject, survivor = f"custody-{uuid.uuid4()}", f"custody-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)
    app.vault.put_field("registration", survivor, "phone", PHONE)
    app.store.checkpoint()
    copy = tmp_path / "backup.db"
    shutil.copy2(app.settings.data_dir / "vault.db", copy)
    app.shredder.shred_subject("deletion", subject, "account closed", uuid.uuid4().hex)
    # The attacker's provider: the live one, as it is on the day it tries.
    provider = provider_from_uri(app.settings.effective_key_provider)
    assert _opens(provider, copy, subject)  # the shred alone does not reach the copy

    rotated: MasterKeyInfo = app.key_admin.rotate("admin")
    for _ in app.key_admin.rewrap("admin"):  # rewraps every kept key, then retires the old
        pass

    assert not _opens(provider, copy, subject)
    assert not _opens(provider_from_uri(app.settings.effective_key_provider), copy, subject)
    assert rotated.version == provider.current_version()
    kept = app.vault.get_field("privacy-desk", survivor, "phone", "plaintext", "dsar")
    assert kept.value == PhoneNumber("+37251234567")


def test_receipts_are_signed_inside_the_provider_and_no_signing_key_is_on_disk(
    custody: str, app: App
) -> None:
    data_dir = app.settings.data_dir
    public_pem = (data_dir / "receipt-signing.pub").read_bytes()
    subject = f"custody-{uuid.uuid4()}"
    app.vault.put_field("registration", subject, "phone", PHONE)

    receipt = app.shredder.shred_subject("deletion", subject, "account closed", uuid.uuid4().hex)

    signed = verify_payload(public_pem, receipt.payload, receipt.signature, SHRED_RECEIPT)
    assert signed.body["subject_id"] == subject
    private_files = [p.name for p in data_dir.rglob("*") if b"PRIVATE KEY" in _bytes(p)]
    if custody:
        # Only the dev TLS keys: no Ed25519 key that could sign a receipt.
        assert not (data_dir / "receipt-signing.key").exists()
        assert "receipt-signing.key" not in private_files
    else:
        assert "receipt-signing.key" in private_files


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""
