"""Envelope encryption: AES-256-GCM for values and for wrapping keys.

Every ciphertext is ``version byte || 96-bit nonce || ciphertext+tag``. The
version byte is also part of the associated data, so a ciphertext cannot be
re-labelled as another format. The associated data binds a value to
``(subject_id, field, dek_id, part)``: copied to another row, field, subject or
part (value vs. view), it fails authentication instead of decrypting.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
FORMAT_V1: Final = 1
_HEADER: Final = 1 + NONCE_BYTES

RandomSource = Callable[[int], bytes]
"""Returns n cryptographically secure random bytes (``os.urandom`` by default)."""


class InvalidCiphertextError(Exception):
    """A ciphertext or wrapped key failed authentication or has an unknown format.

    Deliberately carries no detail: the caller decides how to report it.
    """


_LENGTH = struct.Struct(">I").pack


def encode_context(label: bytes, *parts: str) -> bytes:
    """Length-prefix each part so that no two different tuples encode alike."""
    out = [label]
    for part in parts:
        raw = part.encode()
        out += (_LENGTH(len(raw)), raw)
    return b"".join(out)


def new_key(rng: RandomSource = os.urandom) -> bytes:
    """A fresh AES-256 key."""
    return rng(KEY_BYTES)


def seal(aead: AESGCM, plaintext: bytes, aad: bytes, rng: RandomSource = os.urandom) -> bytes:
    """Encrypt under a fresh random nonce; ``aad`` must already end with the version."""
    nonce = rng(NONCE_BYTES)
    return bytes((FORMAT_V1,)) + nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    """Decrypt what ``seal`` made; any tampering raises ``InvalidCiphertextError``."""
    if len(blob) < _HEADER + 16 or blob[0] != FORMAT_V1:
        raise InvalidCiphertextError
    try:
        return aead.decrypt(blob[1:_HEADER], blob[_HEADER:], aad)
    except InvalidTag:
        raise InvalidCiphertextError from None


_VERSION_SUFFIX: Final = bytes((FORMAT_V1,))
VALUE_PART: Final = "value"
VIEW_PART: Final = "view"


def data_key_aad(subject_id: str, field: str, dek_id: str) -> bytes:
    """Associated data under which a subject key wraps a field's data key."""
    return encode_context(b"pii-vault/data-key", subject_id, field, dek_id) + _VERSION_SUFFIX


def subject_key_context(subject_id: str, key_id: str) -> bytes:
    """Context under which the master key wraps a subject key."""
    return encode_context(b"pii-vault/subject-key", subject_id, key_id) + _VERSION_SUFFIX


def index_key_context(field_type: str, key_id: str) -> bytes:
    """Context under which the master key wraps a field type's blind-index key.

    Unlike the other contexts it carries no format byte: index keys were
    wrapped this way from the start, and rewrapping must reproduce it exactly.
    """
    return encode_context(b"pii-vault/index-key", field_type, key_id)


_VALUE_SUFFIX: Final = _LENGTH(len(VALUE_PART)) + VALUE_PART.encode() + _VERSION_SUFFIX
_VIEW_SUFFIX: Final = _LENGTH(len(VIEW_PART)) + VIEW_PART.encode() + _VERSION_SUFFIX
_V1_BYTE: Final = bytes((FORMAT_V1,))
FINGERPRINT_BYTES: Final = 32
_FINGERPRINT_INFO: Final = b"pii-vault/idempotency-fingerprint" + _VERSION_SUFFIX


class FieldCipher:
    """AES-256-GCM under one field's data key, bound to where the value lives.

    The associated data for both parts is computed once, and the open and
    seal methods call ``AESGCM`` directly: the warm path of a read is one
    cache lookup and one ``AESGCM.decrypt``.
    """

    __slots__ = (
        "_aad_value",
        "_aad_view",
        "_aead",
        "_fingerprint_key",
        "_key",
        "_rng",
        "owner",
        "view_memo",
    )

    def __init__(
        self,
        key: bytes,
        subject_id: str,
        field: str,
        dek_id: str,
        rng: RandomSource = os.urandom,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        self._aead = AESGCM(key)
        # Kept only to derive the fingerprint subkey on first use: seal and open
        # never pay for it.
        self._key = key
        self._fingerprint_key: bytes | None = None
        prefix = encode_context(b"pii-vault/value", subject_id, field, dek_id)
        self._aad_value = prefix + _VALUE_SUFFIX
        self._aad_view = prefix + _VIEW_SUFFIX
        self._rng = rng
        self.owner = (subject_id, field)
        """The (subject, field) this key belongs to; checked against the row read."""
        self.view_memo: tuple[bytes, object] | None = None
        """The last view ciphertext opened under this key and what the caller made of it.

        The caller may keep the decoded view here and reuse it while the row's
        view ciphertext is byte for byte the one it came from (any other
        ciphertext, a tampered one included, is opened and authenticated). It
        lives and dies with this key: a key dropped from the cache (shred,
        overwrite, delete, eviction) takes its memo with it.
        """

    def fingerprint(self, caller: str, field_type: str, canonical: bytes) -> bytes:
        """A keyed fingerprint of a write's content, to recognise its replay.

        HMAC-SHA256 under a subkey derived (HKDF) from this data key, over the
        owner (subject, field), the caller, the type and the canonical value.
        What must hold: the fingerprint says nothing without the data key, so
        it cannot be checked once the key is destroyed (overwrite, delete,
        shred), and it is unrelated to the blind index, whose key never dies.
        """
        subkey = self._fingerprint_key
        if subkey is None:
            subkey = self._fingerprint_key = HKDF(
                algorithm=hashes.SHA256(),
                length=FINGERPRINT_BYTES,
                salt=None,
                info=_FINGERPRINT_INFO,
            ).derive(self._key)
        mac = hmac.HMAC(subkey, hashes.SHA256())
        mac.update(encode_context(b"pii-vault/idempotency", *self.owner, caller, field_type))
        mac.update(canonical)
        return mac.finalize()

    def seal_value(self, plaintext: bytes) -> bytes:
        nonce = self._rng(NONCE_BYTES)
        return _V1_BYTE + nonce + self._aead.encrypt(nonce, plaintext, self._aad_value)

    def seal_view(self, plaintext: bytes) -> bytes:
        nonce = self._rng(NONCE_BYTES)
        return _V1_BYTE + nonce + self._aead.encrypt(nonce, plaintext, self._aad_view)

    # open_value and open_view repeat their few lines instead of sharing a helper:
    # one Python call is a tenth of an AES-GCM open on the warm read path.
    def open_value(self, blob: bytes) -> bytes:
        # A short or malformed blob makes AESGCM raise too (a 0-byte nonce is a
        # ValueError, a missing tag an InvalidTag): no separate length checks.
        try:
            if blob[0] == FORMAT_V1:
                return self._aead.decrypt(blob[1:_HEADER], blob[_HEADER:], self._aad_value)
        except (InvalidTag, ValueError, IndexError):
            pass
        raise InvalidCiphertextError

    def open_view(self, blob: bytes) -> bytes:
        try:
            if blob[0] == FORMAT_V1:
                return self._aead.decrypt(blob[1:_HEADER], blob[_HEADER:], self._aad_view)
        except (InvalidTag, ValueError, IndexError):
            pass
        raise InvalidCiphertextError


def wrap_data_key(
    subject_key: AESGCM, dek: bytes, aad: bytes, rng: RandomSource = os.urandom
) -> bytes:
    """Wrap a data key under its subject key."""
    return seal(subject_key, dek, aad, rng)


def unwrap_data_key(subject_key: AESGCM, wrapped: bytes, aad: bytes) -> bytes:
    """Unwrap a data key; a wrong subject, field or id raises ``InvalidCiphertextError``."""
    key = open_sealed(subject_key, wrapped, aad)
    if len(key) != KEY_BYTES:
        raise InvalidCiphertextError
    return key
