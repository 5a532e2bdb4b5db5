"""Owner-only files: reading a secret from one, replacing one atomically.

Layer: ``vault.keys`` (imports only ``vault.errors``), so that the key
providers and ``vault.bootstrap`` share one implementation.

- ``read_owner_only`` reads a PIN or token file, refusing one that its group
  or the world may access; an ``Unavailable`` names the file, never its
  content.
- ``write_atomically`` replaces a file whole (temp file beside it, mode 600,
  fsync, rename, fsync of the directory): a reader sees the old content or
  the new, never half of it, and the rename always changes the inode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from vault.errors import Unavailable


def read_owner_only(path: str, what: str) -> bytes:
    """The bytes of ``path``; ``Unavailable`` ("{what} {path} ...") if shared or unreadable."""
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                why = f"group- or world-accessible (mode {stat.S_IMODE(mode):o}); chmod 600 it"
                raise Unavailable(f"{what} {path} is {why}")
            return handle.read()
    except OSError as exc:
        raise Unavailable(f"{what} {path} cannot be read ({exc.strerror})") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, owner-only), durable once it returns."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
