"""The three-level key tree: master key -> subject key -> field data key.

One subject key per subject, wrapped by the master key; one data key per
(subject, field, value version), wrapped by the subject key. Destroying a
subject key kills every data key under it even if a wrapped data key lingers
in a backup; rotating the master key rewraps subject keys only, so its cost
grows with subjects, not with fields.

This module holds no storage: callers pass the wrapped key material they
read and store what it returns. Unwrapped keys are cached in bounded caches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.crypto.envelope import (
    FieldCipher,
    InvalidCiphertextError,
    RandomSource,
    data_key_aad,
    new_key,
    subject_key_context,
    unwrap_data_key,
    wrap_data_key,
)
from vault.crypto.tokens import new_id
from vault.errors import DataLoss
from vault.keys.cache import CacheLimits, KeyCache
from vault.keys.provider import KeyProvider, WrappedKey


@dataclass(frozen=True)
class SubjectKeyMaterial:
    """A subject key as stored: only ever wrapped."""

    key_id: str
    subject_id: str
    wrapped: WrappedKey


@dataclass(frozen=True)
class DataKeyMaterial:
    """A field data key as stored: wrapped by its subject key."""

    dek_id: str
    subject_id: str
    field: str
    subject_key_id: str
    wrapped: bytes


class KeyHierarchy:
    """Creates and opens subject and data keys, caching unwrapped ones."""

    def __init__(
        self,
        provider: KeyProvider,
        *,
        subject_limits: CacheLimits | None = None,
        data_limits: CacheLimits | None = None,
        rng: RandomSource = os.urandom,
    ) -> None:
        self.provider = provider
        self.subject_keys: KeyCache[AESGCM] = KeyCache(subject_limits or CacheLimits())
        self.data_keys: KeyCache[FieldCipher] = KeyCache(data_limits or CacheLimits())
        self._rng = rng
        self.cached_cipher = self.data_keys.get
        """The warm path: a cipher for a ``dek_id`` if one is cached and in bounds."""

    # -- subject keys ---------------------------------------------------
    def new_subject_key(self, subject_id: str) -> SubjectKeyMaterial:
        key_id = new_id(self._rng)
        key = new_key(self._rng)
        wrapped = self.provider.wrap(key, subject_key_context(subject_id, key_id))
        self.subject_keys.put(key_id, AESGCM(key))
        return SubjectKeyMaterial(key_id, subject_id, wrapped)

    def subject_key(self, material: SubjectKeyMaterial) -> AESGCM:
        aead = self.subject_keys.get(material.key_id)
        if aead is None:
            key = self.provider.unwrap(
                material.wrapped, subject_key_context(material.subject_id, material.key_id)
            )
            aead = AESGCM(key)
            self.subject_keys.put(material.key_id, aead)
        return aead

    # -- data keys -------------------------------------------------------
    def new_data_key(
        self, subject: SubjectKeyMaterial, field: str
    ) -> tuple[DataKeyMaterial, FieldCipher]:
        dek_id = new_id(self._rng)
        dek = new_key(self._rng)
        wrapped = wrap_data_key(
            self.subject_key(subject),
            dek,
            data_key_aad(subject.subject_id, field, dek_id),
            self._rng,
        )
        cipher = FieldCipher(dek, subject.subject_id, field, dek_id, self._rng)
        self.data_keys.put(dek_id, cipher)
        return DataKeyMaterial(dek_id, subject.subject_id, field, subject.key_id, wrapped), cipher

    def open_data_key(self, material: DataKeyMaterial, subject: SubjectKeyMaterial) -> FieldCipher:
        """The cold path: unwrap the subject key (if needed) and the data key."""
        if material.subject_key_id != subject.key_id or material.subject_id != subject.subject_id:
            raise DataLoss("a data key does not belong to its subject key")
        try:
            dek = unwrap_data_key(
                self.subject_key(subject),
                material.wrapped,
                data_key_aad(material.subject_id, material.field, material.dek_id),
            )
        except InvalidCiphertextError:
            raise DataLoss("a wrapped data key failed authentication") from None
        cipher = FieldCipher(dek, material.subject_id, material.field, material.dek_id, self._rng)
        self.data_keys.put(material.dek_id, cipher)
        return cipher

    # -- shredding -------------------------------------------------------
    def forget_subject(self, subject_key_id: str, dek_ids: list[str]) -> None:
        self.subject_keys.discard(subject_key_id)
        for dek_id in dek_ids:
            self.data_keys.discard(dek_id)

    def forget_data_key(self, dek_id: str) -> None:
        self.data_keys.discard(dek_id)
