"""The receipt and export signing key, kept by the key provider instead of in a file.

Layer: ``vault.keys`` (imports ``vault.crypto``, ``vault.errors``, ``vault.keys``).
With a ``pkcs11:`` or ``transit+…`` key provider, ``pii-vault init`` makes an
Ed25519 pair in the HSM token (the object label of the URI, ``CKM_EDDSA``)
or as the Transit key ``KEY-signing``, and writes only the public half to the
data directory. The private half never leaves the provider, so a copy of the
data directory (or of the whole host's disk) cannot forge a shred receipt or
an export.

``ProviderSigningKey`` is what ``vault.crypto.documents.sign_document`` signs
with. Its public key is the one ``init`` wrote, read from the data directory
without calling the provider, so the server starts (sealed) while the
provider is away; the provider is opened on the first signature, and every
signature it returns is checked against that public key before it is used,
so a swapped or misconfigured key is refused instead of issuing receipts
nobody can verify.
"""

from __future__ import annotations

import threading
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vault.errors import Unavailable
from vault.keys.uri import scheme_of


class RemoteSigner(Protocol):
    def sign(self, data: bytes) -> bytes: ...

    def public_key_bytes(self) -> bytes: ...


def open_remote_signer(uri: str) -> RemoteSigner:
    """The signer of the provider ``uri``; ``Unavailable`` when it cannot be reached."""
    if scheme_of(uri) == "pkcs11":
        from vault.keys.pkcs11 import Pkcs11Signer

        return Pkcs11Signer(uri)
    if scheme_of(uri) == "local":
        raise ValueError("a local keyring keeps no signing key: the key is a file")
    from vault.keys.transit import TransitSigner

    return TransitSigner(uri)


def create_signing_key(uri: str) -> bytes:
    """Make the provider's signing key unless it exists; returns its raw public key."""
    if scheme_of(uri) == "pkcs11":
        from vault.keys import pkcs11

        pkcs11.create_signing_key(uri)
    elif scheme_of(uri) != "local":
        from vault.keys import transit

        transit.create_signing_key(uri)
    return open_remote_signer(uri).public_key_bytes()


class ProviderSigningKey:
    """An Ed25519 key that signs inside the provider (see the module)."""

    def __init__(self, uri: str, public_key: Ed25519PublicKey) -> None:
        self._uri = uri
        self._public = public_key
        self._signer: RemoteSigner | None = None
        self._lock = threading.Lock()

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def _opened(self) -> RemoteSigner:
        with self._lock:
            if self._signer is None:
                self._signer = open_remote_signer(self._uri)
            return self._signer

    def sign(self, data: bytes) -> bytes:
        signer = self._opened()
        signature = signer.sign(data)
        try:
            self._public.verify(signature, data)
        except InvalidSignature:
            with self._lock:
                self._signer = None  # open it again next time: it may have been replaced
            raise Unavailable(
                "the provider's signing key does not match the public key in the data directory"
            ) from None
        return signature
