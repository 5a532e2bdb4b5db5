"""Wiring: build the domain service from settings, and ``init`` a data directory.

The only place where layers meet; nothing here is imported by the layers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.audit.log import AuditLog
from vault.bootstrap.pki import TlsPaths, create_dev_pki
from vault.bootstrap.provider_file import follower_for
from vault.bootstrap.seal import open_keys
from vault.config import KEY_PROVIDER_FILE, Settings
from vault.crypto.blind_index import BlindIndexer
from vault.crypto.documents import load_public_key
from vault.crypto.envelope import index_key_context, new_key
from vault.crypto.signing import ReceiptSigner, new_signing_key_pem
from vault.crypto.tokens import new_id
from vault.domain.audit_reader import AuditReader
from vault.domain.carried_keys import CarriedChainKey
from vault.domain.key_admin import (
    ROTATION_OFF,
    KeyAdmin,
    RotationSchedule,
    last_rotation_of,
)
from vault.domain.records import IndexKeyMaterial
from vault.domain.retention_rules import DEFAULT_RETENTION_TOML, RETENTION_FILE
from vault.domain.shredding import Shredder
from vault.domain.vault import Vault, utc_now
from vault.errors import Unavailable
from vault.fields.base import FieldType
from vault.keys.cache import CacheLimits
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.provider import KeyProvider, MasterKeyState
from vault.keys.signing import ProviderSigningKey, create_signing_key
from vault.keys.switchable import SwitchableKeyProvider
from vault.keys.uri import (
    create_master_key,
    local_keyring_path,
    provider_from_uri,
    provider_from_uris,
    scheme_of,
)
from vault.policy import DEFAULT_POLICY_TOML, Policy
from vault.storage import migrate
from vault.storage.database import Store, retry_on_write_conflict
from vault.storage.hot_reads import HotReads

log = logging.getLogger("vault.bootstrap")


class PolicyHolder:
    """The current policy; ``reload`` swaps it atomically or keeps the old one.

    A ``Policy`` is immutable, and ``reload`` builds and checks the whole new
    one before one reference assignment publishes it: a reader sees the old
    policy or the new one, never a mix, and takes no lock. A file that does
    not load (``OSError``, ``PolicyError`` naming the bad place) raises and
    leaves the old policy in force. The lock only orders concurrent reloads,
    so the file read last is the one that wins.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._policy = Policy.load(path)

    @property
    def path(self) -> Path:
        return self._path

    def __call__(self) -> Policy:
        return self._policy

    def reload(self) -> Policy:
        with self._lock:
            policy = Policy.load(self._path)  # raises: the old policy stays
            self._policy = policy
        return policy


class _PartlySealedIndexer(BlindIndexer):
    """Blind indexes, except for field types whose index key is under a retired master key.

    Only a database older than a retirement holds such keys (a restored
    backup): its subject keys are just as unopenable, so those types answer
    UNAVAILABLE rather than keeping the whole vault from starting.
    """

    __slots__ = ("_sealed",)

    def __init__(self, keys: dict[str, bytes], sealed: frozenset[str]) -> None:
        super().__init__(keys)
        self._sealed = sealed

    def digest(self, field_type: str, normal_form: bytes) -> bytes:
        if field_type in self._sealed:
            raise Unavailable(f"the {field_type} index key is under a retired master key")
        return super().digest(field_type, normal_form)

    def mac(self, field_type: str, message: bytes) -> bytes:
        if field_type in self._sealed:
            raise Unavailable(f"the {field_type} index key is under a retired master key")
        return super().mac(field_type, message)


def load_index_keys(store: Store, provider: KeyProvider) -> BlindIndexer:
    """Unwrap the blind-index keys, creating missing ones (any replica may race)."""

    def create_missing() -> dict[str, IndexKeyMaterial]:
        with store.write() as tx:
            existing = {m.field_type: m for m in tx.index_keys.index_keys()}
            for field_type in FieldType:
                if field_type in existing:
                    continue
                key_id = new_id()
                wrapped = provider.wrap(new_key(), index_key_context(field_type, key_id))
                material = IndexKeyMaterial(field_type, key_id, wrapped)
                tx.index_keys.insert_index_key(material, utc_now())
                existing[field_type] = material
        return existing

    # A replica that loses the race reads the winner's keys on its retry; past the
    # bound it raises rather than go on with keys whose insert was rolled back.
    existing = retry_on_write_conflict(create_missing, attempts=3, what="creating index keys")
    keys: dict[str, bytes] = {}
    sealed: set[str] = set()
    for m in existing.values():
        try:
            keys[m.field_type] = provider.unwrap(
                m.wrapped, index_key_context(m.field_type, m.key_id)
            )
        except Unavailable:
            retired = {
                (v.kek_id, v.version)
                for v in provider.versions()
                if v.state == MasterKeyState.RETIRED
            }
            if (m.wrapped.kek_id, m.wrapped.kek_version) not in retired:
                raise
            sealed.add(m.field_type)
    if sealed:
        log.warning(
            "index keys of %s are wrapped under a retired master key version "
            "(a database from before the retirement?): those types answer UNAVAILABLE",
            ", ".join(sorted(sealed)),
        )
        return _PartlySealedIndexer(keys, frozenset(sealed))
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


def load_receipt_signer(settings: Settings) -> ReceiptSigner:
    """The key that signs receipts and exports: a key file, or the key provider's own.

    A key file (``--receipt-key`` or ``DIR/receipt-signing.key``) is used when
    there is one. Otherwise, with an HSM or Transit provider, the provider's
    signing key signs, checked against ``DIR/receipt-signing.pub``; with the
    local keyring, a data directory from before receipts gets its key file now.
    """
    path = settings.effective_receipt_key_path
    uri = settings.effective_key_provider
    if not path.exists() and scheme_of(uri) != "local":
        public = load_public_key(path.with_suffix(".pub").read_bytes())
        return ReceiptSigner(ProviderSigningKey(uri, public))
    return _receipt_key_file(path)


def _receipt_key_file(path: Path) -> ReceiptSigner:
    if not path.exists():
        # A data directory made before receipts existed: make the key once.
        create_receipt_key(path)
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"receipt signing key {path} is group- or world-accessible")
    return ReceiptSigner.from_pem(path.read_bytes())


def rotation_schedule_for(settings: Settings) -> RotationSchedule:
    """The master-key rotation schedule the maintenance loop runs with these settings.

    Off when ``rotation_days`` is 0 (``PII_VAULT_ROTATION_DAYS=0`` or ``off``) or
    when the maintenance loop itself is off (``retention_interval`` 0): a
    schedule nothing acts on would let receipts promise a date nobody keeps.
    The loop acts every ``retention_interval`` seconds.
    """
    if settings.rotation_days < 0:
        raise ValueError("rotation days (PII_VAULT_ROTATION_DAYS): must not be negative")
    if settings.rotation_days == 0 or settings.retention_interval <= 0:
        return ROTATION_OFF
    return RotationSchedule(
        timedelta(days=settings.rotation_days),
        tick=timedelta(seconds=settings.retention_interval),
    )


def backup_horizon_for(
    provider: KeyProvider, schedule: RotationSchedule
) -> Callable[[datetime], datetime | None]:
    """When no backup taken now can open anything any more; None if nothing promises it.

    A backup holds subject keys wrapped under the master key versions in use
    today, the newest of them the current one. The schedule rotates that one
    out when it is ``period`` old (at once if it is overdue), at the loop's
    next tick, and rewraps and retires within ``allowance``; older versions
    go sooner. After that the backup's wrapped keys have no master key left
    that opens them. With the schedule off nothing retires them on its own,
    so no date is promised.
    """

    def horizon(now: datetime) -> datetime | None:
        if not schedule.enabled:
            return None
        return schedule.retirement_bound(last_rotation_of(provider), now)

    return horizon


@dataclass
class App:
    """Everything ``build_app`` made; ``with build_app(...) as app:`` closes it on the way out.

    Closing flushes the audit log first (buffered masked-read events land
    before exit), then stops the vault's background work, then releases the
    database connections.
    """

    settings: Settings
    store: Store
    vault: Vault
    policy: PolicyHolder
    keys: KeyHierarchy
    shredder: Shredder
    audit: AuditLog
    key_admin: KeyAdmin
    audit_reader: AuditReader

    def close(self) -> None:
        self.audit.close()
        self.vault.close()
        self.store.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _audit_sink(target: str) -> TextIO | None:
    """``PII_VAULT_AUDIT_JSONL``: ``-`` for stdout or a file to append JSON lines to (a SIEM)."""
    if not target:
        return None
    if target == "-":
        return sys.stdout
    return open(target, "a", encoding="utf-8")


def build_app(
    settings: Settings,
    *,
    subject_cache: CacheLimits | None = None,
    data_cache: CacheLimits | None = None,
    start_sealed: bool = False,
) -> App:
    """The app; with ``start_sealed`` an unusable keyring does not fail it (``seal.open_keys``)."""
    store = Store(
        settings.effective_database_url,
        settings.effective_key_database_url,
        threads=settings.threads,
    )
    migrate.upgrade(store)
    # One switchable provider for everything, following DIR/key-provider (keys migrate).
    follow = follower_for(settings)
    uris = follow.uris if follow else settings.effective_key_providers
    provider: SwitchableKeyProvider | None = None
    if start_sealed:
        opened, indexer = open_keys(uris, lambda p: load_index_keys(store, provider or p))
    else:
        opened = provider_from_uris(uris)
        indexer = load_index_keys(store, opened)
    provider = SwitchableKeyProvider(opened, follow)
    keys = KeyHierarchy(provider, subject_limits=subject_cache, data_limits=data_cache)
    schedule = rotation_schedule_for(settings)
    policy = PolicyHolder(settings.effective_policy_path)
    chain_key = CarriedChainKey(store, provider)  # carried across a migration, else the provider's
    audit = AuditLog(store, utc_now, chain_key=chain_key, sink=_audit_sink(settings.audit_jsonl))
    with contextlib.suppress(Unavailable):  # sealed: the first append after unsealing does it
        audit.open_chain()  # an unkeyed chain from before schema 0006 is re-chained now
    # Every RPC thread may be in a hot read at once: the pool is sized for all of them.
    hot_reads = HotReads(store.data_url, threads=settings.threads, holds_keys=not store.split)
    vault = Vault(
        store,
        keys,
        indexer,
        policy,
        audit,
        hot_reads=hot_reads,
        idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
    )
    shredder = Shredder(
        store,
        keys,
        load_receipt_signer(settings),
        policy,
        audit,
        backup_horizon=backup_horizon_for(provider, schedule),
        clock=utc_now,
        after_shred=store.checkpoint,
        limiter=vault.limiter,
    )
    key_admin = KeyAdmin(
        store, provider, policy, audit, schedule=schedule, clock=utc_now, limiter=vault.limiter
    )
    return App(
        settings,
        store,
        vault,
        policy,
        keys,
        shredder,
        audit,
        key_admin=key_admin,
        audit_reader=AuditReader(audit, policy, limiter=vault.limiter),
    )


def is_initialised(data_dir: Path) -> bool:
    return any(
        (data_dir / name).exists() for name in ("keyring.json", KEY_PROVIDER_FILE, "tls/ca.crt")
    )


def init_data_dir(data_dir: Path, key_provider: str = "") -> list[Path]:
    """Create the master key, dev PKI, default policy and database, once. Returns what it made.

    With no ``key_provider`` the master key is a keyring file in the data
    directory. With a ``pkcs11:`` or ``transit+…`` URI it is made inside the
    HSM token or as the Transit key (kept if it exists already), no keyring
    file is written, and the URI is recorded in ``DIR/key-provider`` for
    ``serve`` and the operator commands.
    """
    if is_initialised(data_dir):
        raise FileExistsError(f"{data_dir} is already initialised; refusing to overwrite keys")
    uri = key_provider or f"local://{(data_dir / 'keyring.json').resolve()}"
    scheme_of(uri)  # an unknown scheme fails before anything is written
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    create_master_key(uri)
    if scheme_of(uri) == "local":
        made = [local_keyring_path(uri)]
    else:
        written = data_dir / KEY_PROVIDER_FILE
        written.write_text(uri + "\n", encoding="utf-8")
        made = [written]
    tls = TlsPaths.under(data_dir)
    create_dev_pki(tls)
    policy = data_dir / "policy.toml"
    if not policy.exists():
        policy.write_text(DEFAULT_POLICY_TOML)
    retention = data_dir / RETENTION_FILE
    if not retention.exists():
        retention.write_text(DEFAULT_RETENTION_TOML)
    receipt_key = data_dir / "receipt-signing.key"
    public_key = receipt_key.with_suffix(".pub")
    if scheme_of(uri) == "local":
        create_receipt_key(receipt_key)
        made.append(receipt_key)
    else:  # the private half stays in the HSM or Transit; only the public half is here
        raw = create_signing_key(uri)
        public_key.write_bytes(
            Ed25519PublicKey.from_public_bytes(raw).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        os.chmod(public_key, 0o644)
    settings = Settings(data_dir=data_dir, key_provider=uri)
    store = Store(settings.effective_database_url)
    try:
        migrate.upgrade(store)
        load_index_keys(store, provider_from_uri(settings.effective_key_provider))
    finally:
        store.dispose()
    return [
        *made,
        tls.ca_cert,
        tls.server_cert,
        tls.clients_dir,
        policy,
        retention,
        public_key,
        data_dir / "vault.db",
    ]
