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

from vault.keys.provider import DelegatingKeyProvider, KeyProvider

Follow = Callable[[], KeyProvider | None]
"""Returns the provider to switch to, or None while the current one is still right."""


class SwitchableKeyProvider(DelegatingKeyProvider):
    """Delegates every call to the provider it holds now; ``switch`` replaces that one."""

    def __init__(self, inner: KeyProvider, follow: Follow | None = None) -> None:
        super().__init__(inner)
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
