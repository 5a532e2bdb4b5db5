"""Wiring: build the domain service from settings, and ``init`` a data directory.

The only place where layers meet; nothing here is imported by the layers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.audit.log import AuditLog
from vault.bootstrap.pki import TlsPaths, create_dev_pki
from vault.config import Settings
from vault.crypto.blind_index import BlindIndexer
from vault.crypto.envelope import encode_context, new_key
from vault.crypto.signing import ReceiptSigner, new_signing_key_pem
from vault.crypto.tokens import new_id
from vault.domain.shredding import Shredder
from vault.domain.vault import Vault, utc_now
from vault.fields.base import FieldType
from vault.keys.cache import CacheLimits
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import create_keyring
from vault.keys.provider import KeyProvider
from vault.keys.uri import provider_from_uri
from vault.policy import DEFAULT_POLICY_TOML, Policy
from vault.storage import migrate
from vault.storage import repository as repo
from vault.storage.database import Store, WriteConflictError


class PolicyHolder:
    """The current policy; ``reload`` swaps it atomically or keeps the old one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._policy = Policy.load(path)

    def __call__(self) -> Policy:
        return self._policy

    def reload(self) -> None:
        policy = Policy.load(self._path)  # raises PolicyError: the old policy stays
        with self._lock:
            self._policy = policy


def _index_key_context(field_type: str, key_id: str) -> bytes:
    return encode_context(b"pii-vault/index-key", field_type, key_id)


def load_index_keys(store: Store, provider: KeyProvider) -> BlindIndexer:
    """Unwrap the blind-index keys, creating missing ones (any replica may race)."""
    for _attempt in range(3):
        try:
            with store.write() as tx:
                existing = {m.field_type: m for m in repo.index_keys(tx.keys)}
                for field_type in FieldType:
                    if field_type in existing:
                        continue
                    key_id = new_id()
                    wrapped = provider.wrap(new_key(), _index_key_context(field_type, key_id))
                    material = repo.IndexKeyMaterial(field_type, key_id, wrapped)
                    repo.insert_index_key(tx.keys, material, utc_now())
                    existing[field_type] = material
            break
        except WriteConflictError:
            continue
    keys = {
        m.field_type: provider.unwrap(m.wrapped, _index_key_context(m.field_type, m.key_id))
        for m in existing.values()
    }
    return BlindIndexer(keys)


def create_receipt_key(path: Path) -> None:
    """The Ed25519 key that signs shred receipts, and its public half beside it."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(new_signing_key_pem())
    signer = ReceiptSigner.from_pem(path.read_bytes())
    public = path.with_suffix(".pub")
    public.write_bytes(signer.public_pem())
    os.chmod(public, 0o644)


def load_receipt_signer(path: Path) -> ReceiptSigner:
    if not path.exists():
        # A data directory made before receipts existed: make the key once.
        create_receipt_key(path)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"receipt signing key {path} is group- or world-accessible")
    return ReceiptSigner.from_pem(path.read_bytes())


def backup_horizon_for(
    provider: KeyProvider, rotation: timedelta
) -> Callable[[datetime], datetime]:
    """When no backup taken now can open anything any more.

    A backup holds subject keys wrapped under the master key versions in use
    today. The newest of them is rotated out ``rotation`` after it was made;
    rewrapping and retiring it take at most ``RETIRE_GRACE`` more. After that
    the backup's wrapped keys have no master key left that opens them.
    """

    def horizon(now: datetime) -> datetime:
        created = [
            datetime.fromisoformat(v.created_at)
            for v in provider.versions()
            if v.state != "retired" and v.created_at
        ]
        newest = max(created, default=now)
        return max(newest + rotation, now) + RETIRE_GRACE

    return horizon


RETIRE_GRACE = timedelta(days=1)


@dataclass
class App:
    settings: Settings
    store: Store
    vault: Vault
    policy: PolicyHolder
    keys: KeyHierarchy
    shredder: Shredder


def build_app(
    settings: Settings,
    *,
    subject_cache: CacheLimits | None = None,
    data_cache: CacheLimits | None = None,
) -> App:
    store = Store(settings.effective_database_url, settings.effective_key_database_url)
    migrate.upgrade(store)
    provider = provider_from_uri(settings.effective_key_provider)
    keys = KeyHierarchy(provider, subject_limits=subject_cache, data_limits=data_cache)
    indexer = load_index_keys(store, provider)
    policy = PolicyHolder(settings.effective_policy_path)
    audit = AuditLog(store, utc_now)
    vault = Vault(store, keys, indexer, policy, audit)
    shredder = Shredder(
        store,
        keys,
        load_receipt_signer(settings.effective_receipt_key_path),
        policy,
        audit,
        backup_horizon=backup_horizon_for(provider, timedelta(days=settings.rotation_days)),
        clock=utc_now,
        after_shred=store.checkpoint,
    )
    return App(settings, store, vault, policy, keys, shredder)


def is_initialised(data_dir: Path) -> bool:
    return (data_dir / "keyring.json").exists() or (data_dir / "tls" / "ca.crt").exists()


def init_data_dir(data_dir: Path) -> list[Path]:
    """Create keyring, dev PKI, default policy and database, once. Returns what it made."""
    if is_initialised(data_dir):
        raise FileExistsError(f"{data_dir} is already initialised; refusing to overwrite keys")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    keyring = data_dir / "keyring.json"
    create_keyring(keyring)
    tls = TlsPaths.under(data_dir)
    create_dev_pki(tls)
    policy = data_dir / "policy.toml"
    if not policy.exists():
        policy.write_text(DEFAULT_POLICY_TOML)
    receipt_key = data_dir / "receipt-signing.key"
    create_receipt_key(receipt_key)
    settings = Settings(data_dir=data_dir)
    store = Store(settings.effective_database_url)
    try:
        migrate.upgrade(store)
        load_index_keys(store, provider_from_uri(settings.effective_key_provider))
    finally:
        store.dispose()
    return [
        keyring,
        tls.ca_cert,
        tls.server_cert,
        tls.clients_dir,
        policy,
        receipt_key,
        receipt_key.with_suffix(".pub"),
        data_dir / "vault.db",
    ]
