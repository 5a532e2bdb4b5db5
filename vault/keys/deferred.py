"""A key provider that could not be opened at start-up, opened when it can be.

A server whose keyring is missing or unusable when it starts comes up
*sealed* rather than crashing: an orchestrator then sees a live process whose
health says NOT_SERVING, and the vault unseals by itself once the keyring is
back, the same as when it vanishes while serving. Until the real provider
opens, every method raises ``Unavailable``; ``check`` is what tries to open
it, so the seal watcher's polling is what brings it up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vault.keys.provider import KeyProvider, MasterKeyInfo, WrappedKey


class DeferredKeyProvider:
    """Delegates to the provider ``open_provider`` makes, once it makes one.

    ``open_provider`` raises ``Unavailable`` (naming why, without key
    material) while the provider cannot be opened; it is retried on each use.
    """

    def __init__(self, open_provider: Callable[[], KeyProvider]) -> None:
        self._open = open_provider
        self._lock = threading.Lock()
        self._opened: KeyProvider | None = None

    @property
    def opened(self) -> bool:
        return self._opened is not None

    def _provider(self) -> KeyProvider:
        provider = self._opened
        if provider is None:
            with self._lock:
                if self._opened is None:
                    self._opened = self._open()
                provider = self._opened
        return provider

    def reload(self) -> None:
        provider = self._provider()
        reload = getattr(provider, "reload", None)
        if callable(reload):
            reload()

    @property
    def kek_id(self) -> str:
        return self._provider().kek_id

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        return self._provider().wrap(key, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        return self._provider().unwrap(wrapped, context)

    def versions(self) -> list[MasterKeyInfo]:
        return self._provider().versions()

    def current_version(self) -> int:
        return self._provider().current_version()

    def rotate(self) -> MasterKeyInfo:
        return self._provider().rotate()

    def retire(self, version: int) -> MasterKeyInfo:
        return self._provider().retire(version)

    def check(self) -> None:
        self._provider().check()

    def audit_key(self) -> bytes:
        return self._provider().audit_key()

    def adopts_unkeyed_audit_chain(self) -> bool:
        return self._provider().adopts_unkeyed_audit_chain()

    def close_unkeyed_audit_chain(self) -> None:
        self._provider().close_unkeyed_audit_chain()
