"""A key provider in the middle of a migration: wraps under the new one, reads from all.

``pii-vault keys migrate --to URI`` moves every wrapped key from the provider
a vault has (the *source*) to another one (the *target*) while servers keep
serving. Meanwhile ``DIR/key-provider`` names both (target first), and what
reads it builds a ``MigratingKeyProvider``:

- ``wrap`` uses the target, so every key made from now on is already moved;
- ``unwrap`` goes to the provider whose ``kek_id`` stamped the wrapped key
  (target or a source); a ``kek_id`` none of them has is ``Unavailable``,
  just as a single provider answers a key wrapped by another master key;
- versions, rotation, retirement and the audit-chain key are the target's:
  the key administration of a migrating vault is the target's, and the
  migration itself moves and destroys what the sources hold;
- ``check`` checks the target and every source: while keys are still
  wrapped under a source, a source that is down means some keys cannot be
  read, and the vault seals (fail closed) rather than answer some calls.

The sources' ``kek_id`` values are read once, when the provider is built
(each is fixed for the life of a master key); nothing here takes a lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from vault.errors import Unavailable
from vault.keys.provider import DelegatingKeyProvider, KeyProvider, WrappedKey


class MigratingKeyProvider(DelegatingKeyProvider):
    """Wraps under ``target``; unwraps under whichever of ``target`` and ``sources`` wrapped.

    Everything else (versions, rotation, the audit key) is the target's.
    """

    def __init__(self, target: KeyProvider, sources: Sequence[KeyProvider]) -> None:
        super().__init__(target)
        self.sources = tuple(sources)
        self._by_kek: dict[str, KeyProvider] = {}
        for provider in (*self.sources[::-1], target):  # the target wins a (bogus) tie
            self._by_kek[provider.kek_id] = provider

    @property
    def target(self) -> KeyProvider:
        return self._inner  # never replaced: a migrating provider keeps its target

    @property
    def source_kek_ids(self) -> frozenset[str]:
        return frozenset(s.kek_id for s in self.sources) - {self.target.kek_id}

    def reload(self) -> None:
        for provider in (self.target, *self.sources):
            reload = getattr(provider, "reload", None)
            if callable(reload):
                reload()

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        provider = self._by_kek.get(wrapped.kek_id)
        if provider is None:
            raise Unavailable("the key was wrapped by another master key")
        return provider.unwrap(wrapped, context)

    def check(self) -> None:
        self.target.check()
        for source in self.sources:
            source.check()
