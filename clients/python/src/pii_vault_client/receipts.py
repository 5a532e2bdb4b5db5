"""Check a shred receipt before filing it: needs the extra ``receipts`` (``cryptography``).

    pip install 'pii-vault-client[receipts]'

A receipt's ``payload`` is the canonical JSON of ``{"type": "pii-vault.shred-receipt",
"version": 1, "subject_id": ..., ...}`` and ``signature`` its Ed25519 signature by the
vault's receipt key (``DIR/receipt-signing.pub``). The rules are the server's
(``vault/crypto/documents.py``), so a file written here is one that
``pii-vault receipts verify`` accepts:

- the JSON has no duplicate key at any depth, no float, no NaN;
- the payload is canonical (sorted keys, no spaces, ASCII) and the signature verifies;
- the type is a shred receipt (not an export signed by the same key), at version 1;
- it is about the subject that was shredded.
"""

from __future__ import annotations

import base64
import json
from typing import Any

SHRED_RECEIPT = "pii-vault.shred-receipt"
KNOWN_VERSIONS = {SHRED_RECEIPT: 1, "pii-vault.dsar-export": 1}


class ReceiptError(ValueError):
    """Why a receipt must not be filed; the message never quotes the document."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ReceiptError("the document has a duplicate key")
        document[key] = value
    return document


def _refuse_float(_text: str) -> Any:
    raise ReceiptError("the document holds a number that is not an integer")


def _refuse_constant(_text: str) -> Any:
    raise ReceiptError("the document holds NaN or Infinity")


def _strict_loads(data: bytes) -> Any:
    try:
        return json.loads(
            data,
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
        )
    except ReceiptError:
        raise
    except (ValueError, RecursionError):
        raise ReceiptError("the document is not valid JSON") from None


def _canonical(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def verified_receipt(
    payload: bytes, signature: bytes, public_pem: bytes, subject_id: str
) -> dict[str, Any]:
    """The receipt's signed body, if it is the vault's receipt about ``subject_id``."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("receipt checks need: pip install 'pii-vault-client[receipts]'") from None
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        raise ReceiptError("the public key cannot be read") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptError("the public key is not an Ed25519 key")
    body = _strict_loads(payload)
    if not isinstance(body, dict):
        raise ReceiptError("the document is not a JSON object")
    if _canonical(body) != payload:
        raise ReceiptError("the signed bytes are not canonical JSON")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise ReceiptError("the signature does not verify with this public key") from None
    doc_type = body.get("type")
    if not isinstance(doc_type, str) or doc_type not in KNOWN_VERSIONS:
        raise ReceiptError("the document is of no known type")
    if doc_type != SHRED_RECEIPT:
        raise ReceiptError(f"the document is a {doc_type}, not a {SHRED_RECEIPT}")
    version = body.get("version")
    if type(version) is not int or version != KNOWN_VERSIONS[doc_type]:
        raise ReceiptError(f"the {doc_type} is of an unknown version")
    if body.get("subject_id") != subject_id:
        raise ReceiptError("the receipt is about another subject")
    return body


def receipt_file_text(payload: bytes, signature: bytes, public_pem: bytes, subject_id: str) -> str:
    """The file to keep (``{"receipt": ..., "signature": base64}``), once the receipt checks."""
    body = verified_receipt(payload, signature, public_pem, subject_id)
    kept = {"receipt": body, "signature": base64.b64encode(signature).decode()}
    return json.dumps(kept, indent=2, sort_keys=True) + "\n"
