"""The master-key provider interface.

A provider holds the master key (key-encryption key, KEK) and does nothing
but wrap and unwrap subject keys: a local keyring file, an HSM over PKCS#11
or a cloud KMS plug in the same way, chosen by a key URI. Providers never see
the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WrappedKey:
    """A key wrapped by master key ``kek_id`` at ``kek_version``."""

    kek_id: str
    kek_version: int
    ciphertext: bytes


@dataclass(frozen=True)
class MasterKeyInfo:
    kek_id: str
    version: int
    state: str
    created_at: str


class KeyProvider(Protocol):
    """Wraps and unwraps keys under a versioned master key.

    ``wrap`` always uses the current version; ``unwrap`` accepts any version
    that is not retired. Failures to reach the key raise
    ``vault.errors.Unavailable``; a wrapped key that fails authentication
    raises ``vault.errors.DataLoss``.
    """

    def wrap(self, key: bytes, context: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...

    def versions(self) -> list[MasterKeyInfo]: ...

    def check(self) -> None:
        """Raise ``Unavailable`` unless the master key can be used now."""
