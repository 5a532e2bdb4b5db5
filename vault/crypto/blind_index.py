"""Blind indexes: keyed HMAC-SHA256 over a value's normal form, truncated.

Phone numbers and the like are low-entropy: anyone holding an index key can
enumerate them. So each field type has its own index key, separate from every
data key, held only inside the vault; index rows die with their subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import hashes, hmac

INDEX_BYTES: Final = 16


class BlindIndexer:
    """Computes ``HMAC-SHA256(index_key[type], type || 0 || normal form)[:16]``."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        for field_type, key in keys.items():
            if len(key) < 32:
                raise ValueError(f"index key for {field_type} is shorter than 32 bytes")
        self._keys = dict(keys)

    def digest(self, field_type: str, normal_form: bytes) -> bytes:
        try:
            key = self._keys[field_type]
        except KeyError:
            raise ValueError(f"no index key for field type {field_type}") from None
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(field_type.encode() + b"\x00" + normal_form)
        return mac.finalize()[:INDEX_BYTES]

    def mac(self, field_type: str, message: bytes) -> bytes:
        """Full-length keyed MAC, for idempotency fingerprints of requests."""
        mac = hmac.HMAC(self._keys[field_type], hashes.SHA256())
        mac.update(b"pii-vault/request\x00" + message)
        return mac.finalize()
