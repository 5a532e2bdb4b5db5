"""The audit chain's key, carried across a key-provider migration.

The chain is keyed by ``KeyProvider.audit_key()``, and every provider has a
different one (a keyring's random secret, an HMAC made inside the HSM or in
Transit). Moving to another provider would leave the existing chain
unverifiable, so ``pii-vault keys migrate`` *carries* the key in use: before
anything else it stores that key in the key store, wrapped by the new
provider's master key, as the carried key ``audit-chain``
(``carry_audit_key``). From then on the chain key is that row's key whenever
the row exists, and the provider's own audit key only when it does not
(``CarriedChainKey``, the ``AuditLog``'s key source).

What follows:

- The carried key is as safe as any subject key: unwrapping it takes the
  master key, which a database holder does not have. Rewrapping and
  retirement (``key_admin``) count and move it like a blind-index key, so
  no master-key version it is wrapped under is ever retired from under it.
- Deleting the row does not let anyone rewrite the chain: the chain key then
  falls back to the provider's own, under which the existing chain does not
  verify, and ``audit verify`` reports it as altered (tamper detected).
- A process caches the chain key once (``AuditLog.open_chain``); the carried
  key equals the key every process was already using, so running servers
  keep appending under the same key throughout a migration.
- A process that starts between the carry and the switch of
  ``DIR/key-provider`` cannot open the carried key with the old provider
  alone; its first append waits (``Unavailable``) until the switch.
"""

from __future__ import annotations

from datetime import datetime

from vault.crypto.envelope import encode_context
from vault.crypto.tokens import new_id
from vault.domain.ports import Store
from vault.domain.records import CarriedKeyMaterial
from vault.keys.provider import KeyProvider

AUDIT_CHAIN = "audit-chain"


def carried_key_context(name: str, key_id: str) -> bytes:
    """The associated data a carried key is wrapped under (name and id bound in)."""
    return encode_context(b"pii-vault/carried-audit-key", name, key_id)


class CarriedChainKey:
    """The chain key: the carried ``audit-chain`` key if there is one, else the provider's."""

    def __init__(self, store: Store, provider: KeyProvider) -> None:
        self._store = store
        self._provider = provider

    def _carried(self) -> CarriedKeyMaterial | None:
        with self._store.read() as tx:
            return tx.carried_keys.carried_key(AUDIT_CHAIN)

    def audit_key(self) -> bytes:
        carried = self._carried()
        if carried is None:
            return self._provider.audit_key()
        context = carried_key_context(carried.name, carried.key_id)
        return self._provider.unwrap(carried.wrapped, context)

    def adopts_unkeyed_audit_chain(self) -> bool:
        # A carried key exists only after a migration, long past any unkeyed chain.
        return self._carried() is None and self._provider.adopts_unkeyed_audit_chain()

    def close_unkeyed_audit_chain(self) -> None:
        self._provider.close_unkeyed_audit_chain()


def carry_audit_key(store: Store, chain_key: bytes, target: KeyProvider, now: datetime) -> bool:
    """Store ``chain_key`` wrapped by ``target`` unless a key is carried already.

    Returns whether it stored it. Idempotent: a carried key that exists
    (an earlier, interrupted migration, or one to another provider before
    this) is the chain key already, and the rewrap moves it to ``target``.
    """
    with store.read() as tx:
        if tx.carried_keys.carried_key(AUDIT_CHAIN) is not None:
            return False
    key_id = new_id()
    wrapped = target.wrap(chain_key, carried_key_context(AUDIT_CHAIN, key_id))
    with store.write() as tx:
        return tx.carried_keys.insert_carried_key(
            CarriedKeyMaterial(AUDIT_CHAIN, key_id, wrapped), now
        )
