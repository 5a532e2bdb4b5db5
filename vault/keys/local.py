"""The ``local`` key provider: a keyring file of versioned AES-256 master keys.

The embedded default for development and single-host use. The file is
refused when group- or world-readable, since it holds the key to every
subject. For production, prefer an HSM (``pkcs11``): a master key in a file
sits next to the data it protects.

Rotation appends a version and makes it current; retirement deletes a
version's key material from the file, so that a database backup whose keys
are wrapped under that version can no longer be opened with this keyring.
The file is only ever replaced whole (temp file, fsync, rename), under a
lock file that serialises rotations across processes, and every process
re-reads it when it changes: a worker never wraps under a version another
worker retired, and one that meets an unknown version looks again before
giving up. (The old file's blocks may linger on the disk: a keyring file is
no substitute for an HSM that destroys keys, nor is retirement any use if a
copy of the keyring is kept with the database backups.)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable
from vault.keys.keyring_destroy import destroy_keyring
from vault.keys.provider import MasterKeyInfo, MasterKeyState, WrappedKey

KEYRING_FORMAT = 1
ADOPTABLE, CLOSED = "adoptable", "closed"  # the audit key's "unkeyed_chain" states

log = logging.getLogger("vault.keys")


class KeyringError(Exception):
    """The keyring file is missing, unsafe or malformed (message names which)."""


def create_keyring(
    path: Path, rng: RandomSource = os.urandom, *, now: datetime | None = None
) -> None:
    """Create a keyring with one master key version; refuses to overwrite.

    ``now`` dates that version (default: the wall clock); the rotation
    schedule counts its age from there.
    """
    document = {
        "format": KEYRING_FORMAT,
        "kek_id": "local-" + new_id(rng)[:16],
        "current": 1,
        "versions": [_new_version(1, rng, now or datetime.now(UTC))],
        # A new installation has never had an unkeyed audit chain to adopt.
        "audit_key": _new_audit_key(rng, now or datetime.now(UTC), adopt_unkeyed=False),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
        out.flush()
        os.fsync(out.fileno())


def _new_version(version: int, rng: RandomSource, now: datetime) -> dict[str, Any]:
    return {
        "version": version,
        "key": base64.b64encode(rng(KEY_BYTES)).decode(),
        "state": MasterKeyState.ACTIVE,
        "created_at": now.isoformat(),
    }


def _new_audit_key(rng: RandomSource, now: datetime, *, adopt_unkeyed: bool) -> dict[str, Any]:
    """The audit chain's HMAC key: its own random secret, not derived from a master key
    version, so that rotating and retiring master keys never touches the chain."""
    return {
        "key": base64.b64encode(rng(KEY_BYTES)).decode(),
        "created_at": now.isoformat(),
        "unkeyed_chain": ADOPTABLE if adopt_unkeyed else CLOSED,
    }


_Stamp = tuple[int, int, int, int]  # one state of the file: a rename or chmod changes it


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)


@dataclass(frozen=True)
class _Keyring:
    """One parsed state of the keyring file; replaced whole, never mutated."""

    kek_id: str
    current: int
    keys: dict[int, AESGCM]
    info: tuple[MasterKeyInfo, ...]
    stamp: _Stamp
    audit_key: bytes | None = None
    adopts_unkeyed_chain: bool = False

    def info_of(self, version: int) -> MasterKeyInfo:
        for info in self.info:
            if info.version == version:
                return info
        raise NotFound(f"master key version {version} does not exist")


def _read_document(path: Path) -> tuple[Any, _Stamp]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise KeyringError(f"keyring {path} cannot be read: {exc.strerror}") from None
    with handle:
        st = os.fstat(handle.fileno())
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(
                f"keyring {path} is group- or world-accessible "
                f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
            )
        if not st.st_mode & stat.S_IRUSR:
            # Root opens it anyway; a mode without owner-read says "do not use".
            raise KeyringError(
                f"keyring {path} is not readable by its owner "
                f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
            )
        try:
            raw = handle.read()
        except OSError as exc:
            raise KeyringError(f"keyring {path} cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise KeyringError(f"keyring {path} is malformed ({type(exc).__name__})") from None
    return document, _stamp(st)


def _parse(path: Path, document: Any, stamp: _Stamp) -> _Keyring:
    try:
        kek_id = str(document["kek_id"])
        current = int(document["current"])
        keys: dict[int, AESGCM] = {}
        info: list[MasterKeyInfo] = []
        for entry in document["versions"]:
            version = int(entry["version"])
            state = str(entry.get("state", MasterKeyState.ACTIVE))
            info.append(MasterKeyInfo(kek_id, version, state, str(entry.get("created_at", ""))))
            if state == MasterKeyState.RETIRED:
                continue
            raw = base64.b64decode(entry["key"], validate=True)
            if len(raw) != KEY_BYTES:
                raise ValueError("key length")
            keys[version] = AESGCM(raw)
        audit_key, adopts_unkeyed_chain = _parse_audit_key(document.get("audit_key"))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyringError(f"keyring {path} is malformed ({type(exc).__name__})") from None
    if current not in keys:
        raise KeyringError(f"keyring {path}: current version {current} is not usable")
    return _Keyring(kek_id, current, keys, tuple(info), stamp, audit_key, adopts_unkeyed_chain)


def _parse_audit_key(entry: Any) -> tuple[bytes | None, bool]:
    if entry is None:  # a keyring made before the chain was keyed; added on first use
        return None, False
    raw = base64.b64decode(entry["key"], validate=True)
    if len(raw) != KEY_BYTES:
        raise ValueError("audit key length")
    state = entry.get("unkeyed_chain", CLOSED)
    if state not in (ADOPTABLE, CLOSED):
        raise ValueError("audit key state")
    return raw, state == ADOPTABLE


class LocalKeyProvider:
    """Master keys from a keyring file; each wrap uses the current version."""

    def __init__(
        self,
        path: Path,
        rng: RandomSource = os.urandom,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._rng = rng
        self._clock = clock
        self._lock = threading.Lock()
        self._prefixes: dict[tuple[str, int], bytes] = {}
        self._state = self._load()

    def _load(self) -> _Keyring:
        document, stamp = _read_document(self._path)
        return _parse(self._path, document, stamp)

    # -- keeping up with the file ---------------------------------------------------
    def reload(self) -> None:
        """Re-read the keyring file now; raises ``KeyringError`` if it is unusable."""
        with self._lock:
            self._state = self._load()

    def _fresh(self) -> _Keyring:
        """The keyring as the file holds it now, re-read only when the file changed.

        One ``stat`` per wrap and per cold unwrap: that is what makes a
        rotation or retirement by another process take effect here at once.
        A keyring that vanished leaves the keys in memory (``check`` reports
        it); one that changed into something unusable seals the provider.
        """
        state = self._state
        try:
            st = os.stat(self._path)
        except OSError:
            return state
        if _stamp(st) == state.stamp:
            return state
        return self._reread(state)

    def _reread(self, seen: _Keyring) -> _Keyring:
        with self._lock:
            if self._state is not seen:  # another thread re-read it meanwhile
                return self._state
            try:
                self._state = self._load()
            except KeyringError as error:
                log.error("master keyring not usable: %s", error)
                raise Unavailable("the master keyring cannot be loaded") from None
            return self._state

    @property
    def kek_id(self) -> str:
        return self._fresh().kek_id

    def destroy(self) -> None:
        """Retire every version and drop the audit key: the file opens nothing ever again."""
        destroy_keyring(self._path, self._clock())

    # -- wrap and unwrap ----------------------------------------------------------
    def _context(self, kek_id: str, context: bytes, version: int) -> bytes:
        prefix = self._prefixes.get((kek_id, version))
        if prefix is None:
            prefix = encode_context(b"pii-vault/kek", kek_id, str(version))
            self._prefixes[(kek_id, version)] = prefix
        return prefix + context

    def wrap(self, key: bytes, context: bytes) -> WrappedKey:
        state = self._fresh()
        version = state.current
        return WrappedKey(
            state.kek_id,
            version,
            seal(
                state.keys[version], key, self._context(state.kek_id, context, version), self._rng
            ),
        )

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        state = self._fresh()
        if wrapped.kek_id != state.kek_id:
            raise Unavailable("the key was wrapped by another master key")
        version = wrapped.kek_version
        if version not in state.keys and version not in {i.version for i in state.info}:
            # Unknown here: another process may have rotated a moment ago.
            state = self._reread(state)
        aead = state.keys.get(version)
        if aead is None:
            known = {i.version: i.state for i in state.info}
            if known.get(version) == MasterKeyState.RETIRED:
                raise Unavailable(f"master key version {version} is retired")
            raise Unavailable(f"master key version {version} is unknown")
        try:
            return open_sealed(
                aead, wrapped.ciphertext, self._context(state.kek_id, context, version)
            )
        except InvalidCiphertextError:
            raise DataLoss("a wrapped subject key failed authentication") from None

    # -- versions -------------------------------------------------------------------
    def versions(self) -> list[MasterKeyInfo]:
        return list(self._fresh().info)

    def current_version(self) -> int:
        return self._fresh().current

    def rotate(self) -> MasterKeyInfo:
        """Append a fresh version and make it current; older versions keep unwrapping."""
        with self._rewriting() as document:
            versions = document["versions"]
            version = max(int(entry["version"]) for entry in versions) + 1
            versions.append(_new_version(version, self._rng, self._clock()))
            document["current"] = version
        return self._state.info_of(version)

    def retire(self, version: int) -> MasterKeyInfo:
        """Delete ``version``'s key material from the file; it never unwraps again."""
        with self._rewriting() as document:
            if version == int(document["current"]):
                raise FailedPrecondition(
                    f"master key version {version} is current; rotate before retiring it"
                )
            entries = [e for e in document["versions"] if int(e["version"]) == version]
            if not entries:
                raise NotFound(f"master key version {version} does not exist")
            for entry in entries:
                entry["state"] = MasterKeyState.RETIRED
                entry.setdefault("retired_at", self._clock().isoformat())
                entry.pop("key", None)
        return self._state.info_of(version)

    @contextlib.contextmanager
    def _rewriting(self) -> Iterator[dict[str, Any]]:
        """Read the file fresh under both locks, let the caller edit it, write it back.

        The edit starts from the file, not from memory, so a rotation made by
        another process is never overwritten. If the caller raises, nothing
        is written.
        """
        with self._lock, self._file_lock():
            try:
                document, stamp = _read_document(self._path)
                _parse(self._path, document, stamp)  # refuse to edit an unusable file
            except KeyringError as error:
                log.error("master keyring not usable: %s", error)
                raise Unavailable("the master keyring cannot be loaded") from None
            yield document
            new_stamp = self._replace_file(document, stat.S_IMODE(stamp[3]))
            self._state = _parse(self._path, document, new_stamp)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise Unavailable(f"the master keyring cannot be locked ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _replace_file(self, document: dict[str, Any], mode: int) -> _Stamp:
        """Write the whole file beside the old one, fsync it, rename it over, fsync the dir."""
        directory = self._path.parent
        try:
            fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.", suffix=".tmp")
        except OSError as exc:
            raise Unavailable(f"the master keyring cannot be written ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), mode & 0o700 or 0o600)
                json.dump(document, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
                stamp = _stamp(os.fstat(out.fileno()))
            os.replace(temp, self._path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(exc, OSError):
                raise Unavailable(
                    f"the master keyring cannot be written ({exc.strerror})"
                ) from None
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return stamp

    # -- the audit chain key ------------------------------------------------------------
    def audit_key(self) -> bytes:
        """The audit chain's key from the keyring file; added to a keyring that lacks one.

        A keyring made before the chain was keyed gets its key on first use
        (under the file lock, so concurrent processes agree on one), marked
        as adopting the database's unkeyed chain once.
        """
        key = self._fresh().audit_key
        if key is None:
            with self._rewriting() as document:
                if "audit_key" not in document:
                    document["audit_key"] = _new_audit_key(
                        self._rng, self._clock(), adopt_unkeyed=True
                    )
            key = self._state.audit_key
            if key is None:  # cannot happen: _rewriting parsed the entry just written
                raise Unavailable("the audit key cannot be added to the master keyring")
        return key

    def adopts_unkeyed_audit_chain(self) -> bool:
        self.audit_key()
        return self._fresh().adopts_unkeyed_chain

    def close_unkeyed_audit_chain(self) -> None:
        if not self.adopts_unkeyed_audit_chain():
            return
        with self._rewriting() as document:
            entry = document.get("audit_key")
            if isinstance(entry, dict):
                entry["unkeyed_chain"] = CLOSED

    def check(self) -> None:
        """Raise ``Unavailable`` naming why unless the keyring file is usable now.

        Stricter than ``wrap``/``unwrap``, which keep the keys in memory when
        the file vanishes: the seal watcher calls this to decide whether the
        vault is sealed. It re-reads the file only when it changed, and never
        logs, so polling it costs one ``stat`` and repeats no error lines. The
        reason names the path and the fault, never key material.
        """
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise Unavailable(
                f"the master keyring {self._path} is not reachable ({exc.strerror})"
            ) from None
        seen = self._state
        if _stamp(st) == seen.stamp:
            return
        with self._lock:
            if self._state is not seen:  # another thread re-read it meanwhile
                return
            try:
                self._state = self._load()
            except KeyringError as error:
                raise Unavailable(str(error)) from None
