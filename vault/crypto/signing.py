"""The vault's Ed25519 key: it signs shred receipts and DSAR exports.

A deletion workflow or a data-subject request files them as evidence; anyone
holding the public key that ``pii-vault init`` writes can check that one is
the vault's, unedited, and of the kind it claims (``vault.crypto.documents``
holds the format and the one verifier).
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.crypto.documents import SignedDocument, SigningKey, key_id_of, sign_document

__all__ = ["ReceiptSigner", "key_id_of", "new_signing_key_pem"]


class ReceiptSigner:
    def __init__(self, private_key: SigningKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes) -> ReceiptSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the receipt signing key is not an Ed25519 key")
        return cls(key)

    def sign_document(self, doc_type: str, fields: Mapping[str, object]) -> SignedDocument:
        """Sign ``fields`` as a typed, versioned document (``documents.sign_document``)."""
        return sign_document(self._key, doc_type, fields)

    def sign(self, payload: bytes) -> bytes:
        """A raw signature over ``payload``: for tests that forge documents, not for issuing."""
        return self._key.sign(payload)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_signing_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
