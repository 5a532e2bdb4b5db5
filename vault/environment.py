"""Our settings in the environment: ``PII_VAULT_*``, and the old ``VAULT_*`` names, deprecated.

The ``VAULT_`` prefix is shared with the HashiCorp Vault and OpenBao clients
that run beside this service (``VAULT_ADDR``, ``VAULT_TOKEN``,
``VAULT_CACERT``): under it only the names of our own settings are read,
never anything else, and each use logs, once per process, a deprecation
warning naming the new variable. ``PII_VAULT_X`` wins over ``VAULT_X``; a
command-line flag wins over both (``vault.config.from_env``).

Kept free of heavy imports: the caller commands read their few settings
here without loading pydantic, so that they start fast.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

PREFIX = "PII_VAULT_"
DEPRECATED_PREFIX = "VAULT_"

DEFAULT_DATA_DIR = "var/vault"
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_LOG_LEVEL = "INFO"

log = logging.getLogger("vault.settings")

# Variables of the HashiCorp Vault and OpenBao clients: never one of our settings.
NOT_OURS = frozenset(
    {"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_NAMESPACE"}
)

# Old names already warned about in this process: the warning is given once.
_warned: set[str] = set()


class SettingsError(ValueError):
    """A flag or variable whose value does not fit its setting (names both, not the value)."""


def variable_name(suffix: str) -> str:
    """``DATA_DIR`` -> ``PII_VAULT_DATA_DIR``."""
    return PREFIX + suffix


def read_variable(suffix: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``PII_VAULT_<suffix>``, else of ``VAULT_<suffix>`` (deprecated), else None."""
    environ = os.environ if environ is None else environ
    new, old = PREFIX + suffix, DEPRECATED_PREFIX + suffix
    if old in NOT_OURS:
        raise ValueError(f"{old} is not ours: it belongs to HashiCorp Vault and OpenBao clients")
    if new in environ:
        if old in environ:
            _warn_once(old, f"{old} is ignored: {new} is set (and {old} is deprecated)")
        return environ[new]
    if old in environ:
        _warn_once(old, f"{old} is deprecated; set {new} instead")
        return environ[old]
    return None


def _warn_once(old: str, message: str) -> None:
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    log.warning("%s", message)
