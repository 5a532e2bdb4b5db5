"""Signed documents: shred receipts and DSAR exports, signed and verified in one place.

The signed bytes (the *payload*) are the canonical JSON of one object that
names its own kind: ``{"type": "pii-vault.shred-receipt", "version": 1, ...}``.
Canonical means sorted keys, no whitespace, ASCII only, and only strings,
integers, booleans, null, lists and objects (no floats, no NaN). Because the
type and version are inside the signature, an export cannot be passed off as
a receipt, nor a receipt of one version read as another.

The file that people keep is ``{"<label>": <the signed object>, "signature":
"<base64>"}``, readable and pretty-printed; the label (``receipt``,
``export``) must agree with the signed type. Verifying a file re-creates the
canonical bytes from the object it holds; verifying a payload requires the
bytes to be canonical already.

What must hold for a document to verify, wherever it is checked (server,
``pii-vault receipts verify``, ``pii-vault audit verify --anchor``, clients):

- the JSON has no duplicate key at any depth: parsers disagree on which of
  two values wins, so a file that says two things is refused, not read;
- the type is one this module knows, at the version it knows, and is the
  type the caller expected;
- the payload is canonical, and the Ed25519 signature over it verifies under
  the given public key.

Imports nothing of ours, so that clients can verify with this file alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SHRED_RECEIPT: Final = "pii-vault.shred-receipt"
DSAR_EXPORT: Final = "pii-vault.dsar-export"

VERSIONS: Final[Mapping[str, int]] = {SHRED_RECEIPT: 1, DSAR_EXPORT: 1}
"""Every document type this module signs or accepts, with its one current version."""

FILE_LABELS: Final[Mapping[str, str]] = {SHRED_RECEIPT: "receipt", DSAR_EXPORT: "export"}
"""The readable key under which a file holds the signed object of each type."""

ANY_TYPE: Final = frozenset(VERSIONS)


class DocumentError(ValueError):
    """Why a document does not verify; the message never quotes the document."""


@dataclass(frozen=True)
class SignedDocument:
    """A verified (or freshly signed) document: its canonical bytes, signature and body."""

    type: str
    version: int
    body: dict[str, Any]
    payload: bytes
    signature: bytes

    @property
    def label(self) -> str:
        return FILE_LABELS[self.type]

    def file(self) -> dict[str, object]:
        """The object to keep: the signed body under its label, and the signature."""
        return {self.label: self.body, "signature": base64.b64encode(self.signature).decode()}

    def file_text(self) -> str:
        """The file to keep, pretty-printed; ``verify_file`` accepts exactly this."""
        return json.dumps(self.file(), indent=2, sort_keys=True) + "\n"


# -- the byte form -------------------------------------------------------------------------
def canonical_json(value: object) -> bytes:
    """The one byte form that is signed and chained: sorted keys, no spaces, ASCII."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DocumentError("the document has a duplicate key")
        document[key] = value
    return document


def _refuse_float(_text: str) -> Any:
    raise DocumentError("the document holds a number that is not an integer")


def _refuse_constant(_text: str) -> Any:
    raise DocumentError("the document holds NaN or Infinity")


def strict_loads(data: str | bytes) -> Any:
    """Parse JSON refusing duplicate keys (at any depth), floats, NaN and Infinity."""
    try:
        return json.loads(
            data,
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
        )
    except DocumentError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        raise DocumentError("the document is not valid JSON") from None


# -- keys ---------------------------------------------------------------------------------
def key_id_of(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: SHA-256 of its raw bytes, 16 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    return "ed25519-" + digest.finalize()[:8].hex()


def load_public_key(public_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        raise DocumentError("the public key cannot be read") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DocumentError("the public key is not an Ed25519 key")
    return key


# -- signing ------------------------------------------------------------------------------
class SigningKey(Protocol):
    """An Ed25519 private key, in this process (``Ed25519PrivateKey``) or kept in an HSM
    or Transit that signs on request (``vault.keys.signing``)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


def sign_document(
    private_key: SigningKey, doc_type: str, fields: Mapping[str, object]
) -> SignedDocument:
    """Sign ``fields`` as a document of ``doc_type``; ``type``, ``version`` and
    ``signing_key_id`` are set here, never taken from ``fields``."""
    if doc_type not in VERSIONS:
        raise ValueError(f"unknown document type {doc_type!r}")
    reserved = {"type", "version", "signing_key_id"} & set(fields)
    if reserved:
        raise ValueError(f"fields may not set {sorted(reserved)}")
    body = {
        **fields,
        "type": doc_type,
        "version": VERSIONS[doc_type],
        "signing_key_id": key_id_of(private_key.public_key()),
    }
    payload = canonical_json(body)
    # What we sign must verify: refuse a body that does not survive the round trip
    # (a float, a duplicate key made by a non-str key), rather than sign it.
    try:
        parsed = strict_loads(payload)
    except DocumentError as error:
        raise ValueError(
            f"the document does not round-trip through canonical JSON: {error}"
        ) from None
    if canonical_json(parsed) != payload:
        raise ValueError("the document does not round-trip through canonical JSON")
    return SignedDocument(doc_type, VERSIONS[doc_type], parsed, payload, private_key.sign(payload))


# -- verifying ----------------------------------------------------------------------------
def _expected_set(expected: str | Collection[str]) -> frozenset[str]:
    return frozenset([expected]) if isinstance(expected, str) else frozenset(expected)


def _describe(types: frozenset[str]) -> str:
    return " or ".join(sorted(types))


def verify_payload(
    public_pem: bytes, payload: bytes, signature: bytes, expected: str | Collection[str]
) -> SignedDocument:
    """The document ``payload`` is, if it is one of ``expected`` signed by ``public_pem``.

    Raises ``DocumentError`` naming the first rule broken (see the module).
    """
    wanted = _expected_set(expected)
    key = load_public_key(public_pem)
    body = strict_loads(payload)
    if not isinstance(body, dict):
        raise DocumentError("the document is not a JSON object")
    if canonical_json(body) != payload:
        raise DocumentError("the signed bytes are not canonical JSON")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise DocumentError("the signature does not verify with this public key") from None
    doc_type = body.get("type")
    if not isinstance(doc_type, str) or doc_type not in VERSIONS:
        raise DocumentError("the document is of no known type")
    if doc_type not in wanted:
        raise DocumentError(f"the document is a {doc_type}, not a {_describe(wanted)}")
    version = body.get("version")
    if type(version) is not int or version != VERSIONS[doc_type]:
        raise DocumentError(f"the {doc_type} is of an unknown version")
    return SignedDocument(doc_type, version, body, payload, signature)


def verify_file(
    data: str | bytes, public_pem: bytes, expected: str | Collection[str] = ANY_TYPE
) -> SignedDocument:
    """The document a kept file holds (``SignedDocument.file_text``), if it verifies.

    Pass the file's text, not a parsed object: duplicate keys are refused
    while parsing. The label must be the signed type's label.
    """
    document = strict_loads(data)
    if not isinstance(document, dict) or len(document) != 2 or "signature" not in document:
        raise DocumentError("the file is not a signed document (a body and a signature)")
    label = next(key for key in document if key != "signature")
    if label not in FILE_LABELS.values():
        raise DocumentError("the file holds no receipt or export")
    body = document[label]
    encoded = document["signature"]
    if not isinstance(body, dict) or not isinstance(encoded, str):
        raise DocumentError("the file is not a signed document (a body and a signature)")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise DocumentError("the signature is not base64") from None
    verified = verify_payload(public_pem, canonical_json(body), signature, expected)
    if verified.label != label:
        raise DocumentError(f"the file labels a {verified.type} as {label!r}")
    return verified


def verify_object(
    document: object, public_pem: bytes, expected: str | Collection[str] = ANY_TYPE
) -> SignedDocument:
    """``verify_file`` for an object already parsed (so duplicates are already gone)."""
    return verify_file(json.dumps(document), public_pem, expected)


# -- files as the vault sent them, and the audit anchor they carry --------------------------
def document_file(label: str, payload: bytes, signature: bytes) -> dict[str, object]:
    """The file to keep for a payload and signature as the server sent them (not verified here).

    ``label`` is only a label; the signed ``type`` inside decides what the
    document is, and a verifier refuses a label that disagrees with it.
    """
    return {label: json.loads(payload), "signature": base64.b64encode(signature).decode()}


def anchor_position(fields: object) -> tuple[int, bytes] | None:
    """The audit chain position ``{"sequence", "hash"}`` a document or sink line carries.

    None when it carries none, or a malformed one (a hash that is not 32 bytes of hex).
    """
    if not isinstance(fields, dict):
        return None
    sequence, digest = fields.get("sequence"), fields.get("hash")
    if type(sequence) is not int or sequence < 0 or not isinstance(digest, str):
        return None
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        return None
    return (sequence, raw) if len(raw) == 32 else None
