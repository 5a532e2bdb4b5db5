"""Settings, built once at start-up from flags and ``VAULT_*`` variables.

Secrets never come from the command line: the keyring, TLS keys and database
passwords live in files or the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "var/vault"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    database_url: str = ""
    key_database_url: str = ""
    key_provider: str = ""
    policy_path: Path | None = None
    workers: int = 1
    threads: int = 16
    max_message_bytes: int = 256 * 1024
    plaintext: bool = False
    grace_seconds: float = 10.0
    receipt_key_path: Path | None = None
    # Days between scheduled master-key rotations (the maintenance loop rotates,
    # rewraps and retires); 0 (or VAULT_ROTATION_DAYS=off) turns the schedule off,
    # and shred receipts then promise no backup horizon.
    rotation_days: int = 30
    retention_path: Path | None = None
    # Seconds between maintenance runs in the server (retention, checkpoint,
    # VACUUM); 0 turns the maintenance thread off.
    retention_interval: float = 3600.0
    # Seconds between checks of the key provider; a failed check seals the vault.
    seal_check_interval: float = 1.0
    # Hours an idempotency key answers a caller's retry; expired records are purged.
    idempotency_ttl_hours: float = 24.0

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vault.db').resolve()}"

    @property
    def effective_key_database_url(self) -> str:
        return self.key_database_url or self.effective_database_url

    @property
    def effective_key_provider(self) -> str:
        return self.key_provider or f"local://{(self.data_dir / 'keyring.json').resolve()}"

    @property
    def effective_policy_path(self) -> Path:
        return self.policy_path or self.data_dir / "policy.toml"

    @property
    def effective_receipt_key_path(self) -> Path:
        return self.receipt_key_path or self.data_dir / "receipt-signing.key"

    @property
    def effective_retention_path(self) -> Path:
        return self.retention_path or self.data_dir / "retention.toml"


ENV_NAMES = {
    "data_dir": "VAULT_DATA_DIR",
    "listen": "VAULT_LISTEN",
    "database_url": "VAULT_DATABASE_URL",
    "key_database_url": "VAULT_KEY_DATABASE_URL",
    "key_provider": "VAULT_KEY_PROVIDER",
    "policy_path": "VAULT_POLICY",
    "workers": "VAULT_WORKERS",
    "threads": "VAULT_THREADS",
    "max_message_bytes": "VAULT_MAX_MESSAGE_BYTES",
    "receipt_key_path": "VAULT_RECEIPT_KEY",
    "rotation_days": "VAULT_ROTATION_DAYS",
    "retention_path": "VAULT_RETENTION",
    "retention_interval": "VAULT_RETENTION_INTERVAL",
    "seal_check_interval": "VAULT_SEAL_CHECK_INTERVAL",
    "idempotency_ttl_hours": "VAULT_IDEMPOTENCY_TTL_HOURS",
}


# Values of VAULT_ROTATION_DAYS that turn scheduled rotation off, besides 0.
ROTATION_OFF_WORDS = frozenset({"off", "false", "no", "never"})


def from_env(overrides: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    """Flags (``overrides``, ``None`` meaning unset) win over ``VAULT_*`` variables."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, variable in ENV_NAMES.items():
        flag = overrides.get(name)
        if flag is not None:
            values[name] = flag
        elif variable in env:
            values[name] = env[variable]
    for key in ("plaintext",):
        if overrides.get(key) is not None:
            values[key] = overrides[key]
    data_dir = Path(str(values.pop("data_dir", DEFAULT_DATA_DIR)))
    policy = values.pop("policy_path", None)
    receipt_key = values.pop("receipt_key_path", None)
    retention = values.pop("retention_path", None)
    for name in ("retention_interval", "seal_check_interval", "idempotency_ttl_hours"):
        if name in values:
            values[name] = float(str(values[name]))
    if str(values.get("rotation_days", "")).strip().lower() in ROTATION_OFF_WORDS:
        values["rotation_days"] = 0
    for name in ("workers", "threads", "max_message_bytes", "rotation_days"):
        if name in values:
            values[name] = int(str(values[name]))
    return Settings(
        data_dir=data_dir,
        policy_path=Path(str(policy)) if policy else None,
        receipt_key_path=Path(str(receipt_key)) if receipt_key else None,
        retention_path=Path(str(retention)) if retention else None,
        **values,  # type: ignore[arg-type]
    )
