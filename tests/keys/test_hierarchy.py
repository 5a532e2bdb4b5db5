"""The key hierarchy: subject keys under the master key, data keys under subject keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vault.crypto.envelope import InvalidCiphertextError
from vault.errors import DataLoss
from vault.keys.hierarchy import KeyHierarchy
from vault.keys.local import LocalKeyProvider, create_keyring
from vault.keys.provider import MasterKeyInfo, WrappedKey


@pytest.fixture
def provider(tmp_path: Path) -> LocalKeyProvider:
    path = tmp_path / "keyring.json"
    create_keyring(path)
    return LocalKeyProvider(path)


def test_cold_round_trip_through_a_fresh_hierarchy(provider: LocalKeyProvider) -> None:
    writer = KeyHierarchy(provider)
    subject = writer.new_subject_key("subject-a")
    material, cipher = writer.new_data_key(subject, "phone")
    blob = cipher.seal_value(b"+37251234567")

    reader = KeyHierarchy(provider)  # nothing cached: another process
    assert reader.cached_cipher(material.dek_id) is None
    opened = reader.open_data_key(material, subject)
    assert opened.open_value(blob) == b"+37251234567"
    assert opened.owner == ("subject-a", "phone")


def test_cold_round_trip_through_a_fresh_provider(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    create_keyring(path)
    writer = KeyHierarchy(LocalKeyProvider(path))
    subject = writer.new_subject_key("subject-a")
    material, cipher = writer.new_data_key(subject, "email")
    blob = cipher.seal_view(b"view")
    reader = KeyHierarchy(LocalKeyProvider(path))
    assert reader.open_data_key(material, subject).open_view(blob) == b"view"


def test_materials_describe_where_they_belong(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, _ = keys.new_data_key(subject, "phone")
    assert subject.subject_id == "subject-a"
    assert (material.subject_id, material.field, material.subject_key_id) == (
        "subject-a",
        "phone",
        subject.key_id,
    )
    assert subject.key_id != material.dek_id
    assert len(subject.key_id) == len(material.dek_id) == 32


def test_each_data_key_is_new(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    first, first_cipher = keys.new_data_key(subject, "phone")
    second, second_cipher = keys.new_data_key(subject, "phone")
    assert first.dek_id != second.dek_id
    assert first.wrapped != second.wrapped
    with pytest.raises(InvalidCiphertextError):
        first_cipher.open_value(second_cipher.seal_value(b"+37251234567"))
    # The first key cannot open what the second sealed.
    moved = replace(first, dek_id=second.dek_id)
    with pytest.raises(DataLoss):
        KeyHierarchy(provider).open_data_key(moved, subject)


def test_data_key_of_another_subject_key_is_data_loss(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject_a = keys.new_subject_key("subject-a")
    subject_b = keys.new_subject_key("subject-b")
    material, _ = keys.new_data_key(subject_a, "phone")
    with pytest.raises(DataLoss, match="does not belong"):
        KeyHierarchy(provider).open_data_key(material, subject_b)


def test_data_key_with_mismatched_subject_key_id_is_data_loss(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, _ = keys.new_data_key(subject, "phone")
    with pytest.raises(DataLoss):
        keys.open_data_key(replace(material, subject_key_id="0" * 32), subject)


def test_data_key_moved_to_another_field_is_data_loss(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, _ = keys.new_data_key(subject, "phone")
    with pytest.raises(DataLoss, match="failed authentication"):
        KeyHierarchy(provider).open_data_key(replace(material, field="email"), subject)


def test_tampered_wrapped_data_key_is_data_loss(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, _ = keys.new_data_key(subject, "phone")
    wrapped = bytearray(material.wrapped)
    wrapped[20] ^= 0x80
    with pytest.raises(DataLoss):
        KeyHierarchy(provider).open_data_key(replace(material, wrapped=bytes(wrapped)), subject)


def test_subject_key_moved_to_another_subject_is_data_loss(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    with pytest.raises(DataLoss):
        KeyHierarchy(provider).subject_key(replace(subject, subject_id="subject-b"))


def test_open_fills_the_cache_and_the_warm_path_hits(provider: LocalKeyProvider) -> None:
    writer = KeyHierarchy(provider)
    subject = writer.new_subject_key("subject-a")
    material, _ = writer.new_data_key(subject, "phone")

    reader = KeyHierarchy(provider)
    assert reader.cached_cipher(material.dek_id) is None
    opened = reader.open_data_key(material, subject)
    assert reader.cached_cipher(material.dek_id) is opened
    assert subject.key_id in reader.subject_keys


def test_new_keys_are_cached_by_their_creator(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, cipher = keys.new_data_key(subject, "phone")
    assert keys.cached_cipher(material.dek_id) is cipher
    assert subject.key_id in keys.subject_keys


def test_subject_key_is_unwrapped_once_then_cached(provider: LocalKeyProvider) -> None:
    calls: list[bytes] = []

    class CountingProvider:
        def wrap(self, key: bytes, context: bytes) -> WrappedKey:
            return provider.wrap(key, context)

        def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
            calls.append(context)
            return provider.unwrap(wrapped, context)

        def versions(self) -> list[MasterKeyInfo]:
            return provider.versions()

        def check(self) -> None:
            provider.check()

    writer = KeyHierarchy(provider)
    subject = writer.new_subject_key("subject-a")
    materials = [writer.new_data_key(subject, f"f{i}")[0] for i in range(3)]
    reader = KeyHierarchy(CountingProvider())
    for material in materials:
        reader.open_data_key(material, subject)
    assert len(calls) == 1


def test_forget_data_key_removes_it_from_the_cache(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    material, _ = keys.new_data_key(subject, "phone")
    other, _ = keys.new_data_key(subject, "email")
    keys.forget_data_key(material.dek_id)
    assert keys.cached_cipher(material.dek_id) is None
    assert keys.cached_cipher(other.dek_id) is not None


def test_forget_subject_purges_subject_and_data_keys(provider: LocalKeyProvider) -> None:
    keys = KeyHierarchy(provider)
    subject = keys.new_subject_key("subject-a")
    materials = [keys.new_data_key(subject, f)[0] for f in ("phone", "email")]
    keys.forget_subject(subject.key_id, [m.dek_id for m in materials])
    assert subject.key_id not in keys.subject_keys
    assert all(keys.cached_cipher(m.dek_id) is None for m in materials)
