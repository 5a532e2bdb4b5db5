"""Envelope encryption: round trips, tamper detection and context binding."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.crypto.envelope import (
    FINGERPRINT_BYTES,
    FORMAT_V1,
    KEY_BYTES,
    NONCE_BYTES,
    FieldCipher,
    InvalidCiphertextError,
    data_key_aad,
    encode_context,
    new_key,
    open_sealed,
    seal,
    subject_key_context,
    unwrap_data_key,
    wrap_data_key,
)

KEY = bytes(range(32))
PLAINTEXT = b"+37251234567"
TAG_BYTES = 16


def counting_rng() -> Callable[[int], bytes]:
    """A deterministic RNG: each call returns the next bytes of a counter stream."""
    counter = itertools.count()

    def rng(n: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(n))

    return rng


def cipher(
    subject: str = "subject-a", field: str = "phone", dek: str = "dek-1", key: bytes = KEY
) -> FieldCipher:
    return FieldCipher(key, subject, field, dek)


def flip(blob: bytes, position: int, bit: int = 0) -> bytes:
    out = bytearray(blob)
    out[position] ^= 1 << bit
    return bytes(out)


# -- FieldCipher ------------------------------------------------------------------------
def test_value_round_trip() -> None:
    c = cipher()
    blob = c.seal_value(PLAINTEXT)
    assert PLAINTEXT not in blob
    assert c.open_value(blob) == PLAINTEXT


def test_view_round_trip() -> None:
    c = cipher()
    assert c.open_view(c.seal_view(b'{"m":"+372 **** **67"}')) == b'{"m":"+372 **** **67"}'


def test_empty_plaintext_round_trips() -> None:
    c = cipher()
    assert c.open_value(c.seal_value(b"")) == b""


def test_blob_layout_is_version_nonce_body_tag() -> None:
    blob = cipher().seal_value(PLAINTEXT)
    assert blob[0] == FORMAT_V1
    assert len(blob) == 1 + NONCE_BYTES + len(PLAINTEXT) + TAG_BYTES


_BLOB_LEN = 1 + NONCE_BYTES + len(PLAINTEXT) + TAG_BYTES
_POSITIONS = {
    "version": 0,
    "nonce-first": 1,
    "nonce-last": NONCE_BYTES,
    "body-first": 1 + NONCE_BYTES,
    "body-last": NONCE_BYTES + len(PLAINTEXT),
    "tag-first": _BLOB_LEN - TAG_BYTES,
    "tag-last": _BLOB_LEN - 1,
}


@pytest.mark.parametrize("bit", [0, 7])
@pytest.mark.parametrize("position", list(_POSITIONS.values()), ids=list(_POSITIONS))
def test_flipped_bit_anywhere_fails(position: int, bit: int) -> None:
    c = cipher()
    blob = c.seal_value(PLAINTEXT)
    assert len(blob) == _BLOB_LEN
    with pytest.raises(InvalidCiphertextError):
        c.open_value(flip(blob, position, bit))


def test_every_single_bit_flip_fails() -> None:
    c = cipher()
    blob = c.seal_view(b"view")
    for position in range(len(blob)):
        for bit in range(8):
            with pytest.raises(InvalidCiphertextError):
                c.open_view(flip(blob, position, bit))


@pytest.mark.parametrize("length", [0, 1, 1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES - 1])
def test_truncated_blob_fails(length: int) -> None:
    c = cipher()
    blob = c.seal_value(PLAINTEXT)
    with pytest.raises(InvalidCiphertextError):
        c.open_value(blob[:length])


def test_appended_bytes_fail() -> None:
    c = cipher()
    with pytest.raises(InvalidCiphertextError):
        c.open_value(c.seal_value(PLAINTEXT) + b"\x00")


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_byte_fails(version: int) -> None:
    c = cipher()
    blob = c.seal_value(PLAINTEXT)
    with pytest.raises(InvalidCiphertextError):
        c.open_value(bytes((version,)) + blob[1:])


def test_value_cannot_be_opened_as_view() -> None:
    c = cipher()
    with pytest.raises(InvalidCiphertextError):
        c.open_view(c.seal_value(PLAINTEXT))


def test_view_cannot_be_opened_as_value() -> None:
    c = cipher()
    with pytest.raises(InvalidCiphertextError):
        c.open_value(c.seal_view(PLAINTEXT))


@pytest.mark.parametrize(
    ("subject", "field", "dek"),
    [
        ("subject-b", "phone", "dek-1"),
        ("subject-a", "email", "dek-1"),
        ("subject-a", "phone", "dek-2"),
        # Same concatenation, different split: the context is length-prefixed.
        ("subject-", "aphone", "dek-1"),
    ],
    ids=["other-subject", "other-field", "other-dek", "shifted-boundary"],
)
def test_ciphertext_bound_to_subject_field_and_dek(subject: str, field: str, dek: str) -> None:
    blob = cipher("subject-a", "phone", "dek-1").seal_value(PLAINTEXT)
    moved = cipher(subject, field, dek)  # the same key, another place
    with pytest.raises(InvalidCiphertextError):
        moved.open_value(blob)
    with pytest.raises(InvalidCiphertextError):
        moved.open_view(cipher("subject-a", "phone", "dek-1").seal_view(PLAINTEXT))


def test_other_key_fails() -> None:
    blob = cipher().seal_value(PLAINTEXT)
    with pytest.raises(InvalidCiphertextError):
        cipher(key=bytes(32)).open_value(blob)


def test_same_place_new_instance_opens() -> None:
    """Binding is to the place, not the object: a fresh cipher for the same row opens it."""
    blob = cipher().seal_value(PLAINTEXT)
    assert cipher().open_value(blob) == PLAINTEXT


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_field_cipher_refuses_wrong_key_length(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(bytes(length), "s", "f", "d")


def test_owner_names_subject_and_field() -> None:
    assert cipher("s-1", "card.primary").owner == ("s-1", "card.primary")


# -- idempotency fingerprints -------------------------------------------------------------
def test_a_fingerprint_is_32_bytes_and_the_same_for_the_same_write_on_any_replica() -> None:
    first = cipher().fingerprint("registration", "phone", PLAINTEXT)
    assert len(first) == FINGERPRINT_BYTES == 32
    # A fresh cipher for the same key and place (another replica, a cold cache) agrees.
    assert cipher().fingerprint("registration", "phone", PLAINTEXT) == first


@pytest.mark.parametrize(
    ("place", "caller", "field_type", "canonical"),
    [
        (("subject-b", "phone", "dek-1", KEY), "registration", "phone", PLAINTEXT),
        (("subject-a", "phone.work", "dek-1", KEY), "registration", "phone", PLAINTEXT),
        (("subject-a", "phone", "dek-1", bytes(32)), "registration", "phone", PLAINTEXT),
        (("subject-a", "phone", "dek-1", KEY), "checkout", "phone", PLAINTEXT),
        (("subject-a", "phone", "dek-1", KEY), "registration", "name", PLAINTEXT),
        (("subject-a", "phone", "dek-1", KEY), "registration", "phone", b"+37251234568"),
        (("subject-a", "phone", "dek-1", KEY), "registrationphone", "", PLAINTEXT),
    ],
)
def test_a_fingerprint_binds_subject_field_key_caller_type_and_value(
    place: tuple[str, str, str, bytes], caller: str, field_type: str, canonical: bytes
) -> None:
    reference = cipher().fingerprint("registration", "phone", PLAINTEXT)
    subject, field, dek, key = place
    assert cipher(subject, field, dek, key).fingerprint(caller, field_type, canonical) != reference


def test_a_fingerprint_is_not_a_plain_mac_under_the_data_key() -> None:
    """It is keyed under a derived subkey: knowing one HMAC under the DEK gives nothing."""
    mac = hmac.HMAC(KEY, hashes.SHA256())
    mac.update(PLAINTEXT)
    assert cipher().fingerprint("registration", "phone", PLAINTEXT) != mac.finalize()


def test_a_fingerprint_leaves_seal_and_open_unchanged() -> None:
    c = FieldCipher(KEY, "s", "f", "d", rng=counting_rng())
    reference = FieldCipher(KEY, "s", "f", "d", rng=counting_rng())
    c.fingerprint("registration", "phone", PLAINTEXT)
    blob = c.seal_value(PLAINTEXT)
    assert blob == reference.seal_value(PLAINTEXT)
    assert c.open_value(blob) == PLAINTEXT


def test_nonces_are_fresh_for_each_seal() -> None:
    c = cipher()
    blobs = [c.seal_value(PLAINTEXT) for _ in range(50)]
    nonces = {blob[1 : 1 + NONCE_BYTES] for blob in blobs}
    assert len(nonces) == 50
    assert len(set(blobs)) == 50
    assert all(c.open_value(blob) == PLAINTEXT for blob in blobs)


def test_injected_rng_makes_output_deterministic() -> None:
    first = FieldCipher(KEY, "s", "f", "d", rng=counting_rng())
    second = FieldCipher(KEY, "s", "f", "d", rng=counting_rng())
    assert first.seal_value(PLAINTEXT) == second.seal_value(PLAINTEXT)
    assert first.seal_view(PLAINTEXT) == second.seal_view(PLAINTEXT)
    blob = first.seal_value(PLAINTEXT)
    assert blob[1 : 1 + NONCE_BYTES] != bytes(NONCE_BYTES)


def test_nonce_comes_from_the_rng() -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return b"\xaa" * n

    blob = FieldCipher(KEY, "s", "f", "d", rng=rng).seal_value(PLAINTEXT)
    assert calls == [NONCE_BYTES]
    assert blob[1 : 1 + NONCE_BYTES] == b"\xaa" * NONCE_BYTES


# -- seal / open_sealed -----------------------------------------------------------------
def test_seal_binds_aad() -> None:
    aead = AESGCM(KEY)
    blob = seal(aead, PLAINTEXT, b"aad-1")
    assert open_sealed(aead, blob, b"aad-1") == PLAINTEXT
    with pytest.raises(InvalidCiphertextError):
        open_sealed(aead, blob, b"aad-2")


def test_new_key_is_32_random_bytes() -> None:
    assert len(new_key()) == KEY_BYTES
    assert new_key() != new_key()
    assert new_key(lambda n: b"\x01" * n) == b"\x01" * KEY_BYTES


# -- data keys ------------------------------------------------------------------------
def test_data_key_wrap_unwrap_round_trip() -> None:
    subject_key = AESGCM(os.urandom(32))
    dek = os.urandom(32)
    aad = data_key_aad("subject-a", "phone", "dek-1")
    wrapped = wrap_data_key(subject_key, dek, aad)
    assert dek not in wrapped
    assert unwrap_data_key(subject_key, wrapped, aad) == dek


@pytest.mark.parametrize(
    ("subject", "field", "dek_id"),
    [("subject-b", "phone", "dek-1"), ("subject-a", "email", "dek-1"), ("subject-a", "phone", "x")],
    ids=["other-subject", "other-field", "other-dek-id"],
)
def test_unwrap_with_other_context_fails(subject: str, field: str, dek_id: str) -> None:
    subject_key = AESGCM(os.urandom(32))
    wrapped = wrap_data_key(
        subject_key, os.urandom(32), data_key_aad("subject-a", "phone", "dek-1")
    )
    with pytest.raises(InvalidCiphertextError):
        unwrap_data_key(subject_key, wrapped, data_key_aad(subject, field, dek_id))


def test_unwrap_under_other_subject_key_fails() -> None:
    aad = data_key_aad("s", "f", "d")
    wrapped = wrap_data_key(AESGCM(os.urandom(32)), os.urandom(32), aad)
    with pytest.raises(InvalidCiphertextError):
        unwrap_data_key(AESGCM(os.urandom(32)), wrapped, aad)


def test_unwrap_refuses_a_wrapped_key_of_the_wrong_length() -> None:
    """Authentic but not a data key (e.g. a value sealed under the same context)."""
    subject_key = AESGCM(KEY)
    aad = data_key_aad("s", "f", "d")
    with pytest.raises(InvalidCiphertextError):
        unwrap_data_key(subject_key, seal(subject_key, b"short", aad), aad)


def test_wrapped_data_key_tamper_fails() -> None:
    subject_key = AESGCM(KEY)
    aad = data_key_aad("s", "f", "d")
    wrapped = wrap_data_key(subject_key, os.urandom(32), aad)
    with pytest.raises(InvalidCiphertextError):
        unwrap_data_key(subject_key, flip(wrapped, len(wrapped) // 2), aad)


def test_data_key_and_subject_key_contexts_differ() -> None:
    assert data_key_aad("s", "k", "") != subject_key_context("s", "k")
    assert data_key_aad("s", "f", "d")[-1] == FORMAT_V1
    assert subject_key_context("s", "k")[-1] == FORMAT_V1


# -- encode_context ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("ab", "c"), ("a", "bc")),
        (("a", ""), ("", "a")),
        (("a",), ("a", "")),
        (("",), ()),
        (("a\x00", "b"), ("a", "\x00b")),
        (("é",), ("e\u0301",)),
    ],
)
def test_encode_context_is_injective(left: tuple[str, ...], right: tuple[str, ...]) -> None:
    assert encode_context(b"label", *left) != encode_context(b"label", *right)


def test_encode_context_is_deterministic_and_length_prefixed() -> None:
    assert encode_context(b"L", "ab", "c") == encode_context(b"L", "ab", "c")
    assert encode_context(b"L", "ab") == b"L\x00\x00\x00\x02ab"


def test_encode_context_labels_separate_domains() -> None:
    assert encode_context(b"pii-vault/value", "x") != encode_context(b"pii-vault/data-key", "x")
