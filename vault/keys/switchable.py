"""A key provider that can be replaced under a running server.

``build_app`` hands one ``SwitchableKeyProvider`` to everything that uses the
master key (the key hierarchy, the blind-index loading, key administration,
the audit chain's key source). When ``DIR/key-provider`` changes (a key
migration starts or ends), the seal watcher calls ``refresh``, which asks
``follow`` for a new provider and, if there is one, ``switch``es to it: every
later call goes to the new provider, with no restart.

No lock on the path of a call: each call reads the ``_inner`` attribute once
(an atomic reference read) and runs entirely on that provider, so a call
racing a switch finishes on the old provider or runs on the new one, never a
mix. Warm reads never come here at all (the key caches answer them).
``refresh`` runs on the seal watcher's thread only; a ``follow`` that raises
(the new provider cannot be opened yet) leaves the old one in place and lets
the error reach the watcher, which seals until a later refresh succeeds.
"""

from __future__ import annotations

from collections.abc import Callable

from vault.keys.provider import KeyProvider, MasterKeyInfo, WrappedKey

Follow = Callable[[], KeyProvider | None]
"""Returns the provider to switch to, or None while the current one is still right."""


class SwitchableKeyProvider:
    """Delegates every call to the provider it holds now; ``switch`` replaces that one."""

    def __init__(self, inner: KeyProvider, follow: Follow | None = None) -> None:
        self._inner = inner
        self._follow = follow
        self.switches = 0

    @property
    def inner(self) -> KeyProvider:
        return self._inner

    def switch(self, new: KeyProvider) -> None:
        self._inner = new
        self.switches += 1

    def refresh(self) -> bool:
        """Switch if ``follow`` names a new provider; returns whether it switched."""
        if self._follow is None:
            return False
        new = self._follow()
        if new is None:
            return False
        self.switch(new)
        return True

    def reload(self) -> None:
        reload = getattr(self._inner, "reload", None)
        if callable(reload):
            reload()

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
