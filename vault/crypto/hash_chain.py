"""The audit log's chain: each event's hash covers the one before it, under a key.

``chain_hash`` is HMAC-SHA256, under the audit key that the key provider
holds (never the data database), over the previous hash and the event's
canonical JSON. Editing, deleting, reordering or inserting an event changes a
hash that a later event (or the chain head) recorded, and whoever holds only
the database cannot compute the hashes that would hide it: a verifier holding
the key finds the first bad position.

``unkeyed_hash`` is the SHA-256 form of schema 0003 to 0005. It is only used
to check an existing unkeyed chain once, before the server re-chains it under
the key (``vault.audit.log``); anyone can recompute it, so it proves nothing
against a database holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import hashes, hmac

from vault.crypto.documents import canonical_json

GENESIS: Final = bytes(32)
"""The ``prev_hash`` of the first event."""

KEY_BYTES: Final = 32
KEYED: Final = "hmac-sha256"
"""The scheme name the chain head records for a keyed chain."""
UNKEYED: Final = "sha256"
"""The scheme name of a chain made before the chain was keyed."""


def check_chain_key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"the audit chain key must be {KEY_BYTES} bytes")
    return key


def chain_hash(key: bytes, prev_hash: bytes, event: Mapping[str, object]) -> bytes:
    """HMAC-SHA256 under ``key`` over the previous hash and the event's canonical JSON."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(prev_hash)
    mac.update(canonical_json(event))
    return mac.finalize()


def unkeyed_hash(prev_hash: bytes, event: Mapping[str, object]) -> bytes:
    """SHA-256 over the previous hash and the event's canonical JSON (the old form)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(prev_hash)
    digest.update(canonical_json(event))
    return digest.finalize()
