"""The master-key provider interface.

A provider holds the master key (key-encryption key, KEK) and does nothing
but wrap and unwrap subject keys: a local keyring file, an HSM over PKCS#11
or a cloud KMS plug in the same way, chosen by a key URI. Providers never see
the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class WrappedKey:
    """A key wrapped by master key ``kek_id`` at ``kek_version``."""

    kek_id: str
    kek_version: int
    ciphertext: bytes


class MasterKeyState(StrEnum):
    """A master key version's state; the values are what keyrings and GetKeyStatus say."""

    ACTIVE = "active"
    RETIRED = "retired"
    CURRENT = "current"
    """Reported for the version that wraps new keys (an active one)."""


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

    Rotation and retirement bound how long a backup stays openable: a backup
    taken before a shred holds the subject key wrapped under the master key
    version of that day, and once that version is retired nothing opens it.
    A provider shared by several processes (replicas, workers) must let each
    of them see another's rotation or retirement without a restart.
    """

    @property
    def kek_id(self) -> str:
        """The master key's id, as ``wrap`` stamps it on every ``WrappedKey``."""
        ...

    def wrap(self, key: bytes, context: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...

    def versions(self) -> list[MasterKeyInfo]: ...

    def current_version(self) -> int:
        """The version ``wrap`` uses now (after any rotation made elsewhere)."""
        ...

    def rotate(self) -> MasterKeyInfo:
        """Make a new master key version and make it current; returns it.

        Older versions stay usable for ``unwrap`` until retired, so nothing
        wrapped before the rotation becomes unreadable by rotating.
        """
        ...

    def retire(self, version: int) -> MasterKeyInfo:
        """Destroy the key material of ``version``; it never unwraps again.

        The caller must first make sure no stored key is wrapped under it
        (``vault.domain.key_admin`` counts them). Refuses the current version
        with ``vault.errors.FailedPrecondition`` and an unknown one with
        ``vault.errors.NotFound``; retiring a retired version is a no-op.
        """
        ...

    def check(self) -> None:
        """Raise ``Unavailable`` unless the master key can be used now."""
        ...

    def audit_key(self) -> bytes:
        """The 32-byte secret that keys the audit chain (HMAC-SHA256).

        Kept with the master key and never in the data database, so that
        whoever holds only the database cannot recompute the chain. Stable
        for the life of the installation; an HSM or Transit provider keeps
        (or derives) its own. Raises ``Unavailable`` like ``wrap``.
        """
        ...

    def adopts_unkeyed_audit_chain(self) -> bool:
        """Whether an unkeyed chain (schema 0003-0005) may still be re-chained under the key.

        True only for an installation that had a chain before the key
        existed, until ``close_unkeyed_audit_chain``: the answer lives outside
        the database, so a database holder who rewrites the chain in the old,
        recomputable form cannot have the server adopt it later. A provider
        with no such past answers False.
        """
        ...

    def close_unkeyed_audit_chain(self) -> None:
        """From now on an unkeyed chain is tampering, never adopted (idempotent)."""


class DelegatingKeyProvider:
    """Passes every call to the provider in ``_inner``: the base of wrappers that change
    one thing (``SwitchableKeyProvider`` which provider, ``MeteredProvider`` the timing).

    Each call reads ``_inner`` once, so a wrapper that replaces it never mixes two
    providers within one call.
    """

    def __init__(self, inner: KeyProvider) -> None:
        self._inner = inner

    @property
    def kek_id(self) -> str:
        return self._inner.kek_id

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        return self._inner.wrap(key, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        return self._inner.unwrap(wrapped, context)

    def versions(self) -> list[MasterKeyInfo]:
        return self._inner.versions()

    def current_version(self) -> int:
        return self._inner.current_version()

    def rotate(self) -> MasterKeyInfo:
        return self._inner.rotate()

    def retire(self, version: int) -> MasterKeyInfo:
        return self._inner.retire(version)

    def check(self) -> None:
        self._inner.check()

    def audit_key(self) -> bytes:
        return self._inner.audit_key()

    def adopts_unkeyed_audit_chain(self) -> bool:
        return self._inner.adopts_unkeyed_audit_chain()

    def close_unkeyed_audit_chain(self) -> None:
        self._inner.close_unkeyed_audit_chain()
