"""The envelope, for any key, place and plaintext: what is sealed opens, and nothing else does.

``FieldCipher`` (field values and views) and ``seal``/``open_sealed`` (wrapped
keys) must open exactly what they sealed, and refuse every blob that differs
from it: any byte changed by any amount (version, nonce, body or tag), any
truncation, any extension, or the same blob under another place.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import assume, given
from hypothesis import strategies as st

from vault.crypto.envelope import (
    KEY_BYTES,
    FieldCipher,
    InvalidCiphertextError,
    data_key_aad,
    open_sealed,
    seal,
)

keys = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)
plaintexts = st.binary(max_size=512)
names = st.text(max_size=20)
parts = st.sampled_from(["value", "view"])


def sealed_by(cipher: FieldCipher, part: str, plaintext: bytes) -> bytes:
    return cipher.seal_value(plaintext) if part == "value" else cipher.seal_view(plaintext)


def opened_by(cipher: FieldCipher, part: str, blob: bytes) -> bytes:
    return cipher.open_value(blob) if part == "value" else cipher.open_view(blob)


@given(keys, names, names, names, parts, plaintexts)
def test_a_sealed_field_opens_to_its_plaintext(
    key: bytes, subject: str, field: str, dek: str, part: str, plaintext: bytes
) -> None:
    cipher = FieldCipher(key, subject, field, dek)
    blob = sealed_by(cipher, part, plaintext)
    assert opened_by(cipher, part, blob) == plaintext
    # Another instance for the same place opens it too: nothing lives in the instance.
    assert opened_by(FieldCipher(key, subject, field, dek), part, blob) == plaintext


@given(keys, parts, plaintexts, st.data())
def test_any_changed_byte_of_a_field_fails_to_open(
    key: bytes, part: str, plaintext: bytes, data: st.DataObject
) -> None:
    cipher = FieldCipher(key, "subject-a", "phone", "dek-1")
    blob = sealed_by(cipher, part, plaintext)
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    change = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(blob)
    tampered[position] ^= change
    with pytest.raises(InvalidCiphertextError):
        opened_by(cipher, part, bytes(tampered))


@given(keys, parts, plaintexts, st.data())
def test_any_truncation_of_a_field_fails_to_open(
    key: bytes, part: str, plaintext: bytes, data: st.DataObject
) -> None:
    cipher = FieldCipher(key, "subject-a", "phone", "dek-1")
    blob = sealed_by(cipher, part, plaintext)
    length = data.draw(st.integers(0, len(blob) - 1), label="length")
    with pytest.raises(InvalidCiphertextError):
        opened_by(cipher, part, blob[:length])


@given(keys, parts, plaintexts, st.binary(min_size=1, max_size=32))
def test_any_extension_of_a_field_fails_to_open(
    key: bytes, part: str, plaintext: bytes, extra: bytes
) -> None:
    cipher = FieldCipher(key, "subject-a", "phone", "dek-1")
    with pytest.raises(InvalidCiphertextError):
        opened_by(cipher, part, sealed_by(cipher, part, plaintext) + extra)


@given(
    keys, plaintexts, st.tuples(names, names, names, parts), st.tuples(names, names, names, parts)
)
def test_a_field_sealed_for_one_place_fails_to_open_in_another(
    key: bytes,
    plaintext: bytes,
    here: tuple[str, str, str, str],
    there: tuple[str, str, str, str],
) -> None:
    assume(here != there)
    blob = sealed_by(FieldCipher(key, *here[:3]), here[3], plaintext)
    with pytest.raises(InvalidCiphertextError):
        opened_by(FieldCipher(key, *there[:3]), there[3], blob)


@given(keys, keys, parts, plaintexts)
def test_a_field_fails_to_open_under_another_key(
    key: bytes, other: bytes, part: str, plaintext: bytes
) -> None:
    assume(key != other)
    blob = sealed_by(FieldCipher(key, "s", "f", "d"), part, plaintext)
    with pytest.raises(InvalidCiphertextError):
        opened_by(FieldCipher(other, "s", "f", "d"), part, blob)


# -- seal / open_sealed (wrapped keys) ------------------------------------------------------
@given(keys, plaintexts, names, names, names)
def test_a_sealed_key_opens_under_its_associated_data(
    key: bytes, plaintext: bytes, subject: str, field: str, dek: str
) -> None:
    aead, aad = AESGCM(key), data_key_aad(subject, field, dek)
    assert open_sealed(aead, seal(aead, plaintext, aad), aad) == plaintext


@given(keys, plaintexts, st.data())
def test_any_changed_byte_or_truncation_of_a_sealed_key_fails_to_open(
    key: bytes, plaintext: bytes, data: st.DataObject
) -> None:
    aead, aad = AESGCM(key), data_key_aad("subject-a", "phone", "dek-1")
    blob = seal(aead, plaintext, aad)
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    tampered = bytearray(blob)
    tampered[position] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(InvalidCiphertextError):
        open_sealed(aead, bytes(tampered), aad)
    with pytest.raises(InvalidCiphertextError):
        open_sealed(aead, blob[: data.draw(st.integers(0, len(blob) - 1), label="length")], aad)
