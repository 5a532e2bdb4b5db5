"""Where the audit chain's key comes from: the key provider, or a fixed key for tools and tests."""

from __future__ import annotations

from typing import Protocol

from vault.crypto.hash_chain import check_chain_key


class ChainKeySource(Protocol):
    """Where the chain key comes from: the key provider (``KeyProvider`` has these)."""

    def audit_key(self) -> bytes: ...

    def adopts_unkeyed_audit_chain(self) -> bool: ...

    def close_unkeyed_audit_chain(self) -> None: ...


class StaticChainKey:
    """A fixed chain key that never adopts an unkeyed chain: for tests and tools."""

    def __init__(self, key: bytes) -> None:
        self._key = check_chain_key(key)

    def audit_key(self) -> bytes:
        return self._key

    def adopts_unkeyed_audit_chain(self) -> bool:
        return False

    def close_unkeyed_audit_chain(self) -> None:
        return None
