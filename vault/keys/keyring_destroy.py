"""Destroying a local keyring for good: the last step of a migration away from it.

``destroy_keyring`` marks every master key version retired, deletes each
one's key material and the audit-chain key, and writes the file back whole
(temp file, fsync, rename, fsync of the directory) under the same lock file
that serialises the keyring's rotations. What stays is a record of which
versions existed and when they were destroyed; ``LocalKeyProvider`` refuses
such a file ("current version is not usable"), so it unwraps nothing, and
the operator may delete it. Idempotent: a destroyed keyring, or a missing
one, is left as it is, so a migration killed after this step repeats it
harmlessly. (As with retirement, the old file's blocks may linger on the
disk; an HSM or Transit is what destroys keys for certain.)

Kept out of ``vault.keys.local`` so that it works on a file that no longer
parses as a usable keyring.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from vault.errors import Unavailable
from vault.keys.private_files import write_atomically

RETIRED = "retired"  # MasterKeyState.RETIRED, as the file stores it


def _destroyed(document: dict[str, Any], when: str) -> bool:
    """Edit ``document`` in place; True when anything was left to destroy."""
    changed = document.pop("audit_key", None) is not None
    for entry in document.get("versions", []):
        if "key" in entry or entry.get("state") != RETIRED:
            entry.pop("key", None)
            entry["state"] = RETIRED
            entry.setdefault("retired_at", when)
            changed = True
    if changed:
        document["destroyed_at"] = when
    return changed


def destroy_keyring(path: Path, now: datetime) -> bool:
    """Remove every key from the keyring at ``path``; returns whether anything was removed."""
    if not path.exists():
        return False
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise Unavailable(f"the master keyring cannot be locked ({exc.strerror})") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise Unavailable(f"the keyring {path} cannot be read ({type(exc).__name__})") from None
        if not isinstance(document, dict) or not _destroyed(document, now.isoformat()):
            return False
        write_atomically(path, json.dumps(document, indent=2))
        return True
    finally:
        os.close(lock_fd)
