"""Choose a key provider by URI: ``local:///path/keyring.json``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from vault.keys.local import LocalKeyProvider
from vault.keys.provider import KeyProvider


def provider_from_uri(uri: str) -> KeyProvider:
    parsed = urlparse(uri)
    if parsed.scheme == "local":
        return LocalKeyProvider(Path(parsed.netloc + parsed.path))
    raise ValueError(f"unknown key provider scheme {parsed.scheme!r} (known: local)")
