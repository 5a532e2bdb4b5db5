"""One contract, three custodians: the same assertions against every key provider.

Each provider is opened the way the server opens it, from its URI
(``provider_from_uri``) after ``create_master_key`` made its key, and runs
against the real thing: a keyring file, a SoftHSM2 token over PKCS#11, and
the Transit engine of a real OpenBao server. What the vault relies on, and
so what every provider must do alike:

- a wrapped key opens only with the context it was wrapped with, and any
  change to the wrapped bytes is ``DataLoss``, never a wrong key;
- rotation keeps every earlier wrap readable and wraps new keys under the
  new version, in every process that shares the key;
- retirement really destroys: a wrap under a retired version never opens
  again (the backup horizon on shred receipts rests on it);
- the audit-chain key is 32 bytes and survives rotation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vault.errors import DataLoss, FailedPrecondition, NotFound, Unavailable
from vault.keys.hierarchy import subject_key_context
from vault.keys.provider import KeyProvider, MasterKeyState, WrappedKey
from vault.keys.uri import create_master_key, provider_from_uri

PROVIDERS = ["local", "pkcs11", "transit"]

OpenProvider = Callable[[], KeyProvider]


@pytest.fixture(params=PROVIDERS)
def open_provider(request: pytest.FixtureRequest, tmp_path: Path) -> OpenProvider:
    """Opens (again) the provider of a master key made for this test alone."""
    if request.param == "local":
        uri = f"local://{tmp_path / 'keyring.json'}"
    elif request.param == "pkcs11":
        uri = request.getfixturevalue("pkcs11_uri")
    else:
        uri = request.getfixturevalue("transit_uri")
    create_master_key(uri)
    return lambda: provider_from_uri(uri)


CONTEXT = subject_key_context("subject-1", "key-1")
OTHER_CONTEXT = subject_key_context("subject-2", "key-1")


def test_a_wrapped_key_opens_with_its_context_and_holds_no_plaintext(
    open_provider: OpenProvider,
) -> None:
    provider = open_provider()
    key = os.urandom(32)
    wrapped = provider.wrap(key, CONTEXT)
    assert key not in wrapped.ciphertext
    assert len(wrapped.kek_id) <= 64  # the column it is stored in
    assert wrapped.kek_version == provider.current_version()
    assert provider.unwrap(wrapped, CONTEXT) == key


def test_wrapping_the_same_key_twice_gives_two_different_ciphertexts(
    open_provider: OpenProvider,
) -> None:
    provider = open_provider()
    key = os.urandom(32)
    assert provider.wrap(key, CONTEXT).ciphertext != provider.wrap(key, CONTEXT).ciphertext


def test_a_key_moved_to_another_subject_does_not_open(open_provider: OpenProvider) -> None:
    provider = open_provider()
    wrapped = provider.wrap(os.urandom(32), CONTEXT)
    with pytest.raises(DataLoss):
        provider.unwrap(wrapped, OTHER_CONTEXT)


@pytest.mark.parametrize("position", [0, -1], ids=["first byte", "last byte"])
def test_any_changed_byte_of_a_wrapped_key_is_data_loss(
    open_provider: OpenProvider, position: int
) -> None:
    provider = open_provider()
    wrapped = provider.wrap(os.urandom(32), CONTEXT)
    for flip in (0x01, 0x80):
        changed = bytearray(wrapped.ciphertext)
        changed[position] ^= flip
        with pytest.raises(DataLoss):
            provider.unwrap(
                WrappedKey(wrapped.kek_id, wrapped.kek_version, bytes(changed)), CONTEXT
            )


def test_a_key_wrapped_by_another_master_key_is_unavailable(open_provider: OpenProvider) -> None:
    provider = open_provider()
    wrapped = provider.wrap(os.urandom(32), CONTEXT)
    foreign = WrappedKey("another-master-key", wrapped.kek_version, wrapped.ciphertext)
    with pytest.raises((Unavailable, DataLoss)):
        provider.unwrap(foreign, CONTEXT)


def test_rotation_keeps_old_wraps_readable_and_wraps_new_keys_under_the_new_version(
    open_provider: OpenProvider,
) -> None:
    provider = open_provider()
    old_key = os.urandom(32)
    old = provider.wrap(old_key, CONTEXT)
    rotated = provider.rotate()
    assert rotated.version == old.kek_version + 1
    assert provider.current_version() == rotated.version
    new = provider.wrap(os.urandom(32), CONTEXT)
    assert new.kek_version == rotated.version
    assert provider.unwrap(old, CONTEXT) == old_key


def test_another_process_sees_a_rotation_without_a_restart(open_provider: OpenProvider) -> None:
    first, second = open_provider(), open_provider()
    before = second.current_version()
    rotated = first.rotate()
    assert second.current_version() == rotated.version > before
    key = os.urandom(32)
    assert second.wrap(key, CONTEXT).kek_version == rotated.version
    assert first.unwrap(second.wrap(key, CONTEXT), CONTEXT) == key


def test_a_retired_version_never_opens_again_in_any_process(open_provider: OpenProvider) -> None:
    provider, other = open_provider(), open_provider()
    old = provider.wrap(os.urandom(32), CONTEXT)
    assert other.unwrap(old, CONTEXT)  # warm in the other process too
    provider.rotate()
    retired = provider.retire(old.kek_version)
    assert retired.state == MasterKeyState.RETIRED
    for process in (provider, other, open_provider()):
        with pytest.raises(Unavailable):
            process.unwrap(old, CONTEXT)
    states = {info.version: info.state for info in open_provider().versions()}
    assert states[old.kek_version] == MasterKeyState.RETIRED
    # Retiring it again changes nothing.
    assert provider.retire(old.kek_version).state == MasterKeyState.RETIRED


def test_the_current_version_cannot_be_retired_nor_an_unknown_one(
    open_provider: OpenProvider,
) -> None:
    provider = open_provider()
    with pytest.raises(FailedPrecondition):
        provider.retire(provider.current_version())
    with pytest.raises(NotFound):
        provider.retire(provider.current_version() + 5)
    provider.check()  # still usable


def test_the_audit_key_is_32_bytes_and_survives_rotation_and_retirement(
    open_provider: OpenProvider,
) -> None:
    provider = open_provider()
    key = provider.audit_key()
    assert len(key) == 32
    provider.rotate()
    provider.retire(1)
    assert provider.audit_key() == key
    assert open_provider().audit_key() == key
    assert not open_provider().adopts_unkeyed_audit_chain()
