"""Signed documents: the type is signed, and a file that could be read two ways is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault.crypto.documents import (
    DSAR_EXPORT,
    SHRED_RECEIPT,
    DocumentError,
    canonical_json,
    sign_document,
    strict_loads,
    verify_file,
    verify_payload,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
RECEIPT_FIELDS = {"subject_id": "s-1", "fields_destroyed": 3, "key_ids": ["k1", "k2"]}
EXPORT_FIELDS = {"subject_id": "s-1", "purpose": "dsar", "fields": []}


def test_a_signed_receipt_names_its_type_and_version_inside_the_signed_bytes() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    body = json.loads(signed.payload)
    assert (body["type"], body["version"]) == ("pii-vault.shred-receipt", 1)
    assert signed.payload == canonical_json(body)
    assert verify_payload(PUBLIC, signed.payload, signed.signature, SHRED_RECEIPT).body == body


def test_a_document_of_another_type_is_refused_even_with_a_good_signature() -> None:
    export = sign_document(KEY, DSAR_EXPORT, EXPORT_FIELDS)
    with pytest.raises(DocumentError, match=r"dsar-export, not a pii-vault\.shred-receipt"):
        verify_payload(PUBLIC, export.payload, export.signature, SHRED_RECEIPT)


def test_an_untyped_or_unknown_document_is_refused() -> None:
    for body in ({"subject_id": "s-1"}, {"type": "pii-vault.other", "version": 1}):
        payload = canonical_json(body)
        with pytest.raises(DocumentError, match="no known type"):
            verify_payload(PUBLIC, payload, KEY.sign(payload), SHRED_RECEIPT)


def test_an_unknown_version_is_refused() -> None:
    payload = canonical_json({"type": SHRED_RECEIPT, "version": 2, "signing_key_id": "x"})
    with pytest.raises(DocumentError, match="unknown version"):
        verify_payload(PUBLIC, payload, KEY.sign(payload), SHRED_RECEIPT)


def test_non_canonical_signed_bytes_are_refused() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    spaced = json.dumps(json.loads(signed.payload), indent=1).encode()
    with pytest.raises(DocumentError, match="not canonical"):
        verify_payload(PUBLIC, spaced, KEY.sign(spaced), SHRED_RECEIPT)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"outer": {"b": 1, "b": 1}}',
        '[{"c": true, "c": false}]',
    ],
)
def test_duplicate_keys_at_any_depth_are_refused(text: str) -> None:
    with pytest.raises(DocumentError, match="duplicate key"):
        strict_loads(text)


@pytest.mark.parametrize("text", ['{"a": 1.0}', '{"a": NaN}', '{"a": Infinity}', "{", "\xff"])
def test_floats_constants_and_broken_json_are_refused(text: str) -> None:
    with pytest.raises(DocumentError):
        strict_loads(text)


def test_a_kept_file_verifies_and_names_what_it_is() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    verified = verify_file(signed.file_text(), PUBLIC)
    assert (verified.type, verified.body["subject_id"]) == (SHRED_RECEIPT, "s-1")
    assert sorted(json.loads(signed.file_text())) == ["receipt", "signature"]


def test_a_file_with_a_duplicate_key_is_refused_though_either_reading_is_signed() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    text = signed.file_text().replace(
        '"subject_id": "s-1"', '"subject_id": "someone-else",\n    "subject_id": "s-1"'
    )
    assert json.loads(text)["receipt"]["subject_id"] == "s-1"  # Python keeps the last
    with pytest.raises(DocumentError, match="duplicate key"):
        verify_file(text, PUBLIC)


def test_an_export_relabelled_as_a_receipt_is_refused() -> None:
    export = sign_document(KEY, DSAR_EXPORT, EXPORT_FIELDS)
    relabelled = json.dumps({"receipt": export.body, "signature": export.file()["signature"]})
    with pytest.raises(DocumentError, match=r"labels a pii-vault\.dsar-export as .receipt."):
        verify_file(relabelled, PUBLIC)
    with pytest.raises(DocumentError, match=r"not a pii-vault\.shred-receipt"):
        verify_file(export.file_text(), PUBLIC, SHRED_RECEIPT)


def test_an_edited_file_or_another_key_is_refused() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    edited = signed.file()
    edited["receipt"] = {**signed.body, "fields_destroyed": 2}
    with pytest.raises(DocumentError, match="signature does not verify"):
        verify_file(json.dumps(edited), PUBLIC)
    other = Ed25519PrivateKey.generate().public_key()
    other_pem = other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(DocumentError, match="signature does not verify"):
        verify_file(signed.file_text(), other_pem)


def test_a_file_with_extra_parts_or_a_bad_signature_encoding_is_refused() -> None:
    signed = sign_document(KEY, SHRED_RECEIPT, RECEIPT_FIELDS)
    extra = {**signed.file(), "note": "reviewed"}
    with pytest.raises(DocumentError):
        verify_file(json.dumps(extra), PUBLIC)
    bad = {**signed.file(), "signature": "not base64!"}
    with pytest.raises(DocumentError, match="base64"):
        verify_file(json.dumps(bad), PUBLIC)
    short = {**signed.file(), "signature": base64.b64encode(b"x").decode()}
    with pytest.raises(DocumentError, match="signature"):
        verify_file(json.dumps(short), PUBLIC)


def test_signing_refuses_fields_that_would_set_the_type() -> None:
    with pytest.raises(ValueError, match="type"):
        sign_document(KEY, SHRED_RECEIPT, {"type": DSAR_EXPORT})
    with pytest.raises(ValueError, match="unknown document type"):
        sign_document(KEY, "pii-vault.other", {})


def test_signing_refuses_what_would_not_verify() -> None:
    with pytest.raises(ValueError, match="round-trip"):
        sign_document(KEY, SHRED_RECEIPT, {"ratio": 0.5})
