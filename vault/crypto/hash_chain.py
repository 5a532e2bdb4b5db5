"""The audit log's hash chain: each event's hash covers the one before it.

Editing, deleting, reordering or inserting an event changes a hash that a
later event (or the chain head) recorded, so a verifier finds the first bad
position without trusting whoever holds the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import hashes

GENESIS: Final = bytes(32)
"""The ``prev_hash`` of the first event."""


def event_hash(prev_hash: bytes, event: Mapping[str, object]) -> bytes:
    """SHA-256 over the previous hash and the event's canonical JSON."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(prev_hash)
    digest.update(
        json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    )
    return digest.finalize()
