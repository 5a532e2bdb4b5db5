"""``DIR/key-provider`` as a running server follows it, and as ``keys migrate`` writes it.

Where the master key is, when no ``--key-provider`` / ``PII_VAULT_KEY_PROVIDER``
setting says so, is the data directory's to say: ``DIR/key-provider`` (one
URI a line, the first wrapping, the others still read from), else the local
keyring. A key migration rewrites that file; servers must follow it without
a restart:

- ``ProviderFileFollower`` is the ``follow`` of the server's
  ``SwitchableKeyProvider``. The seal watcher calls it every check (one
  ``stat``); when the file's inode, mtime or size changed and it names other
  URIs than before, it opens the provider they name and returns it to be
  switched to. If that provider cannot be opened it raises, the watcher
  seals, and the next check tries again (the stamp is only taken on
  success). A provider set by the setting is never followed.
- ``write_key_provider_file`` replaces the file atomically (temp file,
  fsync, rename, fsync of the directory), so a reader sees the old list or
  the new one, never half a file, and a rename always changes the inode.
- ``DIR/key-migration`` (``MIGRATION_FILE``) holds the target and sources of
  a migration under way, from its first step to its last: after the sources
  are dropped from ``DIR/key-provider`` it is what tells a rerun (after a
  kill) which master key is still to be destroyed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from vault.config import KEY_PROVIDER_FILE, Settings
from vault.keys.private_files import write_atomically
from vault.keys.provider import KeyProvider
from vault.keys.uri import provider_from_uris

MIGRATION_FILE = "key-migration"

log = logging.getLogger("vault.keys")

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ProviderFileFollower:
    """Returns a new provider when ``DIR/key-provider`` names other URIs than before."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = settings.data_dir / KEY_PROVIDER_FILE
        self._stamp = _stamp(self._path)  # before reading, so no change slips between
        self.uris = settings.effective_key_providers

    def __call__(self) -> KeyProvider | None:
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return None
        uris = self._settings.effective_key_providers
        if uris == self.uris:
            self._stamp = stamp
            return None
        provider = provider_from_uris(uris)  # raises: the old one stays, retried next check
        log.warning(
            "key provider switched to %s (DIR/key-provider changed)%s",
            uris[0],
            f", still reading from {', '.join(uris[1:])}" if len(uris) > 1 else "",
        )
        self._stamp, self.uris = stamp, uris
        return provider


def follower_for(settings: Settings) -> ProviderFileFollower | None:
    """A follower unless the provider is set by ``--key-provider`` or the variable."""
    return None if settings.key_provider else ProviderFileFollower(settings)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Replace ``path`` atomically with ``lines`` (owner-only), durable once it returns."""
    write_atomically(path, "".join(f"{line}\n" for line in lines))


def write_key_provider_file(data_dir: Path, uris: Sequence[str]) -> None:
    write_lines(data_dir / KEY_PROVIDER_FILE, uris)
