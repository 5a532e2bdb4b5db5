"""Choose a key provider by URI.

- ``local:///path/keyring.json``: a keyring file (``vault.keys.local``), the
  embedded default for development.
- ``pkcs11:token=T;object=O?module-path=/path/module.so&pin-source=file:/path``:
  an HSM over PKCS#11, in RFC 7512 syntax (``vault.keys.pkcs11``).
- ``transit+https://HOST:PORT/MOUNT/KEY?token-file=/path`` (or ``transit+http``):
  the Transit engine of OpenBao or HashiCorp Vault (``vault.keys.transit``).

A URI names where the master key is and where its secret (PIN, token) can be
read; it never carries the secret itself, so it may stand in a settings file
or a process list. The PKCS#11 and Transit modules are imported only when
their scheme is asked for: a local vault never loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from vault.keys.provider import KeyProvider

SCHEMES = ("local", "pkcs11", "transit+http", "transit+https")


def scheme_of(uri: str) -> str:
    """The provider scheme of ``uri``; ``ValueError`` naming the known ones otherwise."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown key provider scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    return scheme


def local_keyring_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(parsed.netloc + parsed.path)


def provider_from_uri(uri: str) -> KeyProvider:
    """Open the provider ``uri`` names; ``Unavailable`` when it cannot be reached now."""
    scheme = scheme_of(uri)
    if scheme == "local":
        from vault.keys.local import LocalKeyProvider

        return LocalKeyProvider(local_keyring_path(uri))
    if scheme == "pkcs11":
        from vault.keys.pkcs11 import Pkcs11KeyProvider

        return Pkcs11KeyProvider(uri)
    from vault.keys.transit import TransitKeyProvider

    return TransitKeyProvider(uri)


def provider_from_uris(uris: Sequence[str]) -> KeyProvider:
    """The provider of ``DIR/key-provider``'s lines: one URI opens that provider; several
    (a key migration under way) a ``MigratingKeyProvider`` wrapping under the first and
    still reading from the others."""
    if not uris:
        raise ValueError("no key provider URI")
    if len(uris) == 1:
        return provider_from_uri(uris[0])
    from vault.keys.migrating import MigratingKeyProvider

    return MigratingKeyProvider(
        provider_from_uri(uris[0]), [provider_from_uri(uri) for uri in uris[1:]]
    )


def create_master_key(uri: str) -> None:
    """Make the master key ``uri`` names where it does not exist yet (``pii-vault init``).

    A local keyring file is created and must not exist; an HSM key or a
    Transit key that already exists is kept, so that several data
    directories (replicas) can be initialised against one provider.
    """
    scheme = scheme_of(uri)
    if scheme == "local":
        from vault.keys.local import create_keyring

        create_keyring(local_keyring_path(uri))
    elif scheme == "pkcs11":
        from vault.keys import pkcs11

        pkcs11.create_master_key(uri)
    else:
        from vault.keys import transit

        transit.create_master_key(uri)
