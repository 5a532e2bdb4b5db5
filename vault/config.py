"""Settings: every flag and ``PII_VAULT_*`` variable, declared once, built once at start-up.

Precedence, for each setting: a command-line flag, then ``PII_VAULT_<NAME>``,
then the deprecated ``VAULT_<NAME>`` (``vault.environment``), then the
default. A ``Settings`` built in code reads no environment at all: only
``from_env`` does, so a test or ``init`` gets exactly what it asked for.

Secrets never come from the command line: the keyring, TLS keys and database
passwords live in files or the environment. ``--plaintext`` is a flag only,
never a variable, so that no inherited environment can turn TLS off.

The README's settings table is generated from these declarations
(``scripts/settings_table.py``), and a test fails when it is stale.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vault.client import DEFAULT_TARGET
from vault.environment import (
    DEFAULT_DATA_DIR,
    DEFAULT_LISTEN,
    DEFAULT_LOG_LEVEL,
    SettingsError,
    read_variable,
    variable_name,
)

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_LISTEN", "Settings", "SettingsError", "from_env"]

# Values of PII_VAULT_ROTATION_DAYS that turn scheduled rotation off, besides 0.
ROTATION_OFF_WORDS = frozenset({"off", "false", "no", "never"})

# Marks a setting that no variable sets (a flag only, or fixed).
NO_VARIABLE = ""


def _setting(
    default: Any, meaning: str, *, flags: tuple[str, ...] = (), variable: str | None = None
) -> Any:
    """A declared setting: its default, what it means, its flags and its variable's suffix.

    ``variable`` defaults to the field name in capitals; ``NO_VARIABLE`` for none.
    """
    extra: dict[str, Any] = {"flags": list(flags)}
    if variable is not None:
        extra["variable"] = variable
    return Field(default, description=meaning, json_schema_extra=extra)


# Where ``pii-vault init --key-provider URI`` records the URI, so that ``serve``
# and the operator commands find the master key without being told again. One URI
# a line: the first wraps new keys; any further ones are still read from while
# ``pii-vault keys migrate`` moves keys off them (``vault.keys.migrating``).
KEY_PROVIDER_FILE = "key-provider"


def read_key_provider_file(data_dir: Path) -> list[str]:
    """The URIs in ``DIR/key-provider``, first the one that wraps; [] without the file."""
    try:
        text = (data_dir / KEY_PROVIDER_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


class Settings(BaseSettings):
    """The vault's settings; immutable, validated, built once and passed in."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    data_dir: Path = _setting(
        Path(DEFAULT_DATA_DIR),
        "data directory: keyring, dev TLS, policy, retention rules, receipt key, SQLite",
        flags=("--data-dir",),
    )
    listen: str = _setting(
        DEFAULT_LISTEN,
        "HOST:PORT the server listens on (port 0: any free one)",
        flags=("--listen",),
    )
    target: str = _setting(
        DEFAULT_TARGET, "HOST:PORT of the server the caller commands call", flags=("--target",)
    )
    client_cert: str = _setting(
        "",
        "the caller commands' client certificate (PEM file), instead of --as NAME's from DIR/tls",
        flags=("--cert",),
    )
    client_key: str = _setting("", "the private key (PEM file) of --cert", flags=("--key",))
    ca_cert: str = _setting(
        "",
        "CA certificate (PEM file) the caller commands trust the server by (default"
        " DIR/tls/ca.crt); not VAULT_CACERT, which is HashiCorp Vault's",
        flags=("--cacert",),
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL of the data store (default: SQLite at DIR/vault.db)",
        flags=("--database-url",),
    )
    key_database_url: str = _setting(
        "",
        "separate database for wrapped keys (default: the data store)",
        flags=("--key-database-url",),
    )
    key_provider: str = _setting(
        "",
        "master key URI: local://, pkcs11: or transit+https:// (default: the one"
        " init wrote to DIR/key-provider, else local://DIR/keyring.json)",
        flags=("--key-provider",),
    )
    policy_path: Path | None = _setting(
        None, "access policy file (default DIR/policy.toml)", flags=("--policy",), variable="POLICY"
    )
    workers: int = _setting(
        1, "server processes sharing the port (SO_REUSEPORT)", flags=("--workers",)
    )
    threads: int = _setting(16, "RPC threads per server process", flags=("--threads",))
    max_concurrent_rpcs: int = _setting(
        256,
        "calls a process admits at once (running and queued); more are refused"
        " RESOURCE_EXHAUSTED at once instead of queueing",
    )
    max_message_bytes: int = _setting(256 * 1024, "largest gRPC message the server accepts")
    plaintext: bool = _setting(
        False,
        "serve without TLS (loopback only; caller from x-vault-caller metadata); flag only",
        flags=("--plaintext",),
        variable=NO_VARIABLE,
    )
    drain_delay: float = _setting(
        0.0,
        "seconds the server keeps serving after SIGTERM, NOT_SERVING, before it refuses new"
        " calls UNAVAILABLE (time for load balancers to move away; 5 behind most)",
    )
    grace_seconds: float = _setting(
        10.0,
        "seconds calls in flight get to finish once the port closes on SIGTERM, and on a"
        " connection past its maximum age",
    )
    max_connection_age: float = _setting(
        300.0,
        "seconds after which a client connection is closed (GOAWAY) so clients reconnect"
        " and load balancing spreads them again; 0: never",
    )
    tracing: bool = _setting(
        False,
        "OpenTelemetry spans for RPCs, database statements and key provider calls (needs the"
        " tracing extra; exported by the process's tracer provider, e.g. opentelemetry-instrument)",
    )
    metrics_listen: str = _setting(
        "",
        "HOST:PORT of a plain-HTTP Prometheus /metrics endpoint (e.g. 127.0.0.1:9464); empty: none",
    )
    keepalive: float = _setting(
        60.0, "seconds between pings on an idle connection, to find peers that are gone"
    )
    receipt_key_path: Path | None = _setting(
        None,
        "Ed25519 key that signs receipts and exports (default DIR/receipt-signing.key)",
        variable="RECEIPT_KEY",
    )
    # The maintenance loop rotates, rewraps and retires on this schedule; with it
    # off, shred receipts promise no backup horizon.
    rotation_days: int = _setting(
        30, "days between scheduled master-key rotations; 0 or off: no schedule"
    )
    retention_path: Path | None = _setting(
        None,
        "retention rules (default DIR/retention.toml)",
        flags=("--retention",),
        variable="RETENTION",
    )
    retention_interval: float = _setting(
        3600.0,
        "seconds between maintenance runs (retention, rotation, checkpoint); 0: none",
        flags=("--retention-interval",),
    )
    seal_check_interval: float = _setting(
        1.0, "seconds between checks of the key provider; a failed check seals the vault"
    )
    idempotency_ttl_hours: float = _setting(
        24.0, "hours an idempotency key answers a caller's retry"
    )
    audit_jsonl: str = _setting(
        "", "also write audit events as JSON lines: - for stdout, or a file to append to"
    )
    log_level: str = _setting(DEFAULT_LOG_LEVEL, "log level: DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting(
        "text", "process log format: text, or json (one object a line, with request_id)"
    )
    reuse_port: bool = _setting(
        False, "set by the --workers supervisor for its worker processes; not for operators"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: the environment is read by ``from_env``, never implicitly."""
        return (init_settings,)

    @field_validator("policy_path", "receipt_key_path", "retention_path", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("rotation_days", mode="before")
    @classmethod
    def _rotation_off_words(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ROTATION_OFF_WORDS:
            return 0
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vault.db').resolve()}"

    @property
    def effective_key_database_url(self) -> str:
        return self.key_database_url or self.effective_database_url

    @property
    def effective_key_provider(self) -> str:
        """The setting; else the URI ``init --key-provider`` wrote; else the local keyring."""
        return self.effective_key_providers[0]

    @property
    def effective_key_providers(self) -> list[str]:
        """The setting alone; else ``DIR/key-provider``'s lines; else the local keyring.

        More than one while a key migration is under way: the first wraps new
        keys, the others are still read from (``provider_from_uris``).
        """
        if self.key_provider:
            return [self.key_provider]
        written = read_key_provider_file(self.data_dir)
        return written or [f"local://{(self.data_dir / 'keyring.json').resolve()}"]

    @property
    def effective_policy_path(self) -> Path:
        return self.policy_path or self.data_dir / "policy.toml"

    @property
    def effective_receipt_key_path(self) -> Path:
        return self.receipt_key_path or self.data_dir / "receipt-signing.key"

    @property
    def effective_retention_path(self) -> Path:
        return self.retention_path or self.data_dir / "retention.toml"


@dataclass(frozen=True)
class Declared:
    """One row of the settings table: how a setting is set, its default, what it means."""

    name: str
    flags: tuple[str, ...]
    variable: str | None  # the full PII_VAULT_ name; None when no variable sets it
    default: object
    meaning: str


def _declared(name: str, field: FieldInfo) -> Declared:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    suffix = extra.get("variable", name.upper())
    flags = extra.get("flags", [])
    return Declared(
        name=name,
        flags=tuple(str(flag) for flag in flags) if isinstance(flags, list) else (),
        variable=variable_name(str(suffix)) if suffix != NO_VARIABLE else None,
        default=field.default,
        meaning=field.description or "",
    )


def declared_settings() -> list[Declared]:
    """Every setting, in declaration order."""
    return [_declared(name, field) for name, field in Settings.model_fields.items()]


class _Variables(PydanticBaseSettingsSource):
    """Values from ``PII_VAULT_*`` (or deprecated ``VAULT_*``) variables of one mapping."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        declared = _declared(field_name, field)
        if declared.variable is None:
            return None, field_name, False
        suffix = declared.variable.removeprefix(variable_name(""))
        return read_variable(suffix, self._environ), field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


def from_env(overrides: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    """Flags (``overrides``, ``None`` meaning unset) win over variables, which win over defaults.

    Raises ``SettingsError`` naming the flag and variable of a value that does not fit.
    """
    from_variables = _Variables(Settings, os.environ if env is None else env)()
    flags = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**{**from_variables, **flags})
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    by_name = {declared.name: declared for declared in declared_settings()}
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        declared = by_name.get(name)
        where = [*declared.flags, declared.variable or ""] if declared else [name]
        problems.append(f"{' / '.join(w for w in where if w)}: {problem['msg']}")
    return "; ".join(problems)
