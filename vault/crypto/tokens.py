"""Opaque tokens: random, unguessable, never derived from the value.

The vault stores only a SHA-256 digest of each token, so a copy of the
database does not hand out working tokens.
"""

from __future__ import annotations

import base64
import os
from typing import Final

from cryptography.hazmat.primitives import hashes

from vault.crypto.envelope import RandomSource

TOKEN_PREFIX: Final = "tok_"  # noqa: S105 (a prefix, not a secret)
_TOKEN_BYTES: Final = 20
TOKEN_LENGTH: Final = len(TOKEN_PREFIX) + 32


def new_token(rng: RandomSource = os.urandom) -> str:
    """``tok_`` + 160 random bits in lower-case base32 (32 characters)."""
    return TOKEN_PREFIX + base64.b32encode(rng(_TOKEN_BYTES)).decode().lower()


def token_digest(token: str) -> bytes:
    """The lookup key under which a token is stored."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(token.encode())
    return digest.finalize()


def looks_like_token(text: str) -> bool:
    if len(text) != TOKEN_LENGTH or not text.startswith(TOKEN_PREFIX):
        return False
    return all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in text[len(TOKEN_PREFIX) :])


def new_id(rng: RandomSource = os.urandom) -> str:
    """A random 128-bit identifier for keys, in hex."""
    return rng(16).hex()
