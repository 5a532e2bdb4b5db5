"""The ``local`` key provider: a keyring file of versioned AES-256 master keys.

The embedded default for development and single-host use. The file is
refused when group- or world-readable, since it holds the key to every
subject. For production, prefer an HSM (``pkcs11``): a master key in a file
sits next to the data it protects.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.crypto.envelope import (
    KEY_BYTES,
    InvalidCiphertextError,
    RandomSource,
    encode_context,
    open_sealed,
    seal,
)
from vault.crypto.tokens import new_id
from vault.errors import DataLoss, Unavailable
from vault.keys.provider import MasterKeyInfo, WrappedKey

KEYRING_FORMAT = 1


class KeyringError(Exception):
    """The keyring file is missing, unsafe or malformed (message names which)."""


def create_keyring(path: Path, rng: RandomSource = os.urandom) -> None:
    """Create a keyring with one master key version; refuses to overwrite."""
    document = {
        "format": KEYRING_FORMAT,
        "kek_id": "local-" + new_id(rng)[:16],
        "current": 1,
        "versions": [_new_version(1, rng)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
        out.flush()
        os.fsync(out.fileno())


def _new_version(version: int, rng: RandomSource) -> dict[str, Any]:
    return {
        "version": version,
        "key": base64.b64encode(rng(KEY_BYTES)).decode(),
        "state": "active",
        "created_at": datetime.now(UTC).isoformat(),
    }


class LocalKeyProvider:
    """Master keys from a keyring file; each wrap uses the current version."""

    def __init__(self, path: Path, rng: RandomSource = os.urandom) -> None:
        self._path = path
        self._rng = rng
        self._lock = threading.Lock()
        self._kek_id, self._current, self._keys, self._info = self._load()
        self._prefixes: dict[int, bytes] = {}

    def _load(self) -> tuple[str, int, dict[int, AESGCM], list[MasterKeyInfo]]:
        try:
            mode = self._path.stat().st_mode
        except OSError as exc:
            raise KeyringError(f"keyring {self._path} cannot be read: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(
                f"keyring {self._path} is group- or world-accessible "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        try:
            document = json.loads(self._path.read_text())
            kek_id = str(document["kek_id"])
            current = int(document["current"])
            keys: dict[int, AESGCM] = {}
            info: list[MasterKeyInfo] = []
            for entry in document["versions"]:
                version = int(entry["version"])
                state = str(entry.get("state", "active"))
                info.append(MasterKeyInfo(kek_id, version, state, str(entry.get("created_at", ""))))
                if state == "retired":
                    continue
                raw = base64.b64decode(entry["key"], validate=True)
                if len(raw) != KEY_BYTES:
                    raise ValueError("key length")
                keys[version] = AESGCM(raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(
                f"keyring {self._path} is malformed ({type(exc).__name__})"
            ) from None
        if current not in keys:
            raise KeyringError(f"keyring {self._path}: current version {current} is not usable")
        return kek_id, current, keys, info

    def _context(self, context: bytes, version: int) -> bytes:
        prefix = self._prefixes.get(version)
        if prefix is None:
            prefix = encode_context(b"pii-vault/kek", self._kek_id, str(version))
            self._prefixes[version] = prefix
        return prefix + context

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        version = self._current
        aead = self._keys[version]
        return WrappedKey(
            self._kek_id, version, seal(aead, key, self._context(context, version), self._rng)
        )

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        if wrapped.kek_id != self._kek_id:
            raise Unavailable("the key was wrapped by another master key")
        aead = self._keys.get(wrapped.kek_version)
        if aead is None:
            raise Unavailable(f"master key version {wrapped.kek_version} is retired or unknown")
        try:
            return open_sealed(
                aead, wrapped.ciphertext, self._context(context, wrapped.kek_version)
            )
        except InvalidCiphertextError:
            raise DataLoss("a wrapped subject key failed authentication") from None

    def versions(self) -> list[MasterKeyInfo]:
        return list(self._info)

    def check(self) -> None:
        if not self._path.exists():
            raise Unavailable("the master keyring is not reachable")
