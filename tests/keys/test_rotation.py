"""Master-key rotation and retirement in the local keyring.

Rotation appends a version and makes it current; retirement removes a
version's key material from the file for good. Every process using the file
must follow: one that has not seen a rotation still unwraps what was wrapped
under it, and one that has not seen a retirement stops unwrapping at once.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from vault.errors import FailedPrecondition, NotFound, Unavailable
from vault.keys import local
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.keys.provider import KeyProvider, WrappedKey

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "keyring.json"
    create_keyring(path)
    return path


def _document(path: Path) -> Any:
    return json.loads(path.read_text())


def _entry(path: Path, version: int) -> Any:
    [entry] = [e for e in _document(path)["versions"] if e["version"] == version]
    return entry


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_makes_a_new_current_version_that_wraps(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    old = provider.wrap(KEY, b"ctx")
    info = provider.rotate()

    assert (info.version, info.state) == (2, "active")
    assert info.kek_id == old.kek_id and info.created_at
    assert provider.current_version() == 2
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "active"), (2, "active")]
    new = provider.wrap(KEY, b"ctx")
    assert new.kek_version == 2
    # The old version still unwraps until it is retired; both open under the same context.
    assert provider.unwrap(old, b"ctx") == KEY
    assert provider.unwrap(new, b"ctx") == KEY
    assert _document(keyring)["current"] == 2
    assert _entry(keyring, 1)["key"] != _entry(keyring, 2)["key"]


def test_rotate_and_retire_keep_the_file_owner_only(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    provider.rotate()
    assert _mode(keyring) == 0o600
    provider.retire(1)
    assert _mode(keyring) == 0o600
    # No temp file is left beside the keyring (only the lock file).
    assert sorted(p.name for p in keyring.parent.iterdir()) == ["keyring.json", "keyring.json.lock"]
    assert _mode(keyring.parent / "keyring.json.lock") == 0o600
    LocalKeyProvider(keyring).check()  # and the file still passes the safety check


def test_retire_of_the_current_version_is_refused(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    before = keyring.read_bytes()
    with pytest.raises(FailedPrecondition, match="current"):
        provider.retire(1)
    assert keyring.read_bytes() == before
    provider.rotate()
    with pytest.raises(FailedPrecondition):
        provider.retire(2)
    assert provider.current_version() == 2


def test_retire_of_an_unknown_version_is_not_found(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    provider.rotate()
    with pytest.raises(NotFound):
        provider.retire(7)


def test_retire_removes_the_key_material_from_the_file(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"ctx")
    v1_key = str(_entry(keyring, 1)["key"])
    provider.rotate()

    info = provider.retire(1)

    assert (info.version, info.state) == (1, "retired")
    text = keyring.read_text()
    assert v1_key not in text
    entry = _entry(keyring, 1)
    assert "key" not in entry
    assert entry["state"] == "retired" and entry["retired_at"]
    with pytest.raises(Unavailable, match="version 1 is retired"):
        provider.unwrap(wrapped, b"ctx")
    # A fresh provider (a restart) cannot open it either: the key is gone, not hidden.
    with pytest.raises(Unavailable, match="version 1 is retired"):
        LocalKeyProvider(keyring).unwrap(wrapped, b"ctx")
    assert [(v.version, v.state) for v in provider.versions()] == [(1, "retired"), (2, "active")]
    # Retiring again is a no-op.
    assert provider.retire(1).state == "retired"
    assert v1_key not in keyring.read_text()


def test_a_second_provider_unwraps_under_a_version_it_has_not_seen(keyring: Path) -> None:
    rotator = LocalKeyProvider(keyring)
    other = LocalKeyProvider(keyring)  # another process, loaded before the rotation
    rotator.rotate()
    wrapped = rotator.wrap(KEY, b"ctx")
    assert wrapped.kek_version == 2

    assert other.unwrap(wrapped, b"ctx") == KEY
    # and from now on it wraps under the new version too
    assert other.wrap(OTHER_KEY, b"ctx").kek_version == 2
    assert other.current_version() == 2


def test_an_unknown_version_reloads_the_file_even_if_it_looks_unchanged(
    keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file system whose timestamps are too coarse to notice the rotation:
    # only the unknown version in the wrapped key tells the provider to look again.
    monkeypatch.setattr(local, "_stamp", lambda _st: (0, 0, 0, 0))
    other = LocalKeyProvider(keyring)
    rotator = LocalKeyProvider(keyring)
    rotator.rotate()
    wrapped = rotator.wrap(KEY, b"ctx")
    assert other.current_version() == 1  # it has not noticed
    assert other.unwrap(wrapped, b"ctx") == KEY
    assert other.current_version() == 2


def test_a_retirement_elsewhere_stops_unwrapping_here(keyring: Path) -> None:
    other = LocalKeyProvider(keyring)
    old = other.wrap(KEY, b"ctx")
    assert other.unwrap(old, b"ctx") == KEY  # loaded and used before the retirement

    admin = LocalKeyProvider(keyring)
    admin.rotate()
    admin.retire(1)

    with pytest.raises(Unavailable, match="retired"):
        other.unwrap(old, b"ctx")
    assert other.wrap(KEY, b"ctx").kek_version == 2


def test_rotation_by_another_os_process(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    script = (
        "import sys; from pathlib import Path; from vault.keys.local import LocalKeyProvider; "
        "p = LocalKeyProvider(Path(sys.argv[1])); p.rotate(); "
        "sys.stdout.write(p.wrap(bytes(range(32)), b'ctx').ciphertext.hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(keyring)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    wrapped = provider.wrap(KEY, b"x")  # noticed the rotation
    assert wrapped.kek_version == 2
    theirs = WrappedKey(wrapped.kek_id, 2, bytes.fromhex(done.stdout))
    assert provider.unwrap(theirs, b"ctx") == KEY


def test_concurrent_rotations_lose_no_version(keyring: Path) -> None:
    providers = [LocalKeyProvider(keyring) for _ in range(4)]
    wrapped = []
    lock = threading.Lock()

    def rotate_and_wrap(provider: LocalKeyProvider) -> None:
        for _ in range(5):
            info = provider.rotate()
            item = provider.wrap(KEY, b"ctx")
            with lock:
                wrapped.append((info.version, item))

    threads = [threading.Thread(target=rotate_and_wrap, args=(p,)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    document = _document(keyring)
    assert [e["version"] for e in document["versions"]] == list(range(1, 22))
    assert document["current"] == 21
    assert sorted(version for version, _ in wrapped) == list(range(2, 22))
    fresh = LocalKeyProvider(keyring)
    for _, item in wrapped:  # whatever anyone wrapped, the file can open
        assert fresh.unwrap(item, b"ctx") == KEY


def test_a_failed_write_leaves_the_keyring_as_it_was(
    keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = LocalKeyProvider(keyring)
    before = keyring.read_bytes()

    def broken_dump(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.json, "dump", broken_dump)
    with pytest.raises(Unavailable, match="cannot be written"):
        provider.rotate()
    monkeypatch.undo()
    assert keyring.read_bytes() == before
    assert provider.current_version() == 1
    assert not [p for p in keyring.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_keyring_made_group_readable_seals_the_provider(keyring: Path) -> None:
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(KEY, b"ctx")
    keyring.chmod(0o640)
    with pytest.raises(Unavailable):
        provider.unwrap(wrapped, b"ctx")
    with pytest.raises(Unavailable):
        provider.rotate()
    keyring.chmod(0o600)
    assert provider.unwrap(wrapped, b"ctx") == KEY


def test_local_provider_implements_the_protocol(keyring: Path) -> None:
    provider: KeyProvider = LocalKeyProvider(keyring)
    assert provider.rotate().version == provider.current_version() == 2
    assert provider.retire(1).state == "retired"
