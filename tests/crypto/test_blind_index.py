"""Blind index: keyed, per-type, truncated digests of a normal form."""

from __future__ import annotations

import pytest

from vault.crypto.blind_index import INDEX_BYTES, BlindIndexer

PHONE_KEY = b"p" * 32
EMAIL_KEY = b"e" * 32


def indexer() -> BlindIndexer:
    return BlindIndexer({"phone": PHONE_KEY, "email": EMAIL_KEY})


def test_digest_is_16_bytes() -> None:
    assert INDEX_BYTES == 16
    assert len(indexer().digest("phone", b"+37251234567")) == 16


def test_same_input_same_digest_across_instances() -> None:
    assert indexer().digest("phone", b"+37251234567") == indexer().digest("phone", b"+37251234567")


def test_different_values_differ() -> None:
    ix = indexer()
    assert ix.digest("phone", b"+37251234567") != ix.digest("phone", b"+37251234568")


def test_different_field_types_differ_even_with_the_same_key() -> None:
    ix = BlindIndexer({"phone": PHONE_KEY, "email": PHONE_KEY})
    assert ix.digest("phone", b"same") != ix.digest("email", b"same")


def test_different_keys_differ() -> None:
    other = BlindIndexer({"phone": b"q" * 32})
    assert indexer().digest("phone", b"+37251234567") != other.digest("phone", b"+37251234567")


def test_digest_does_not_contain_the_value() -> None:
    value = b"+37251234567"
    assert value[:8] not in indexer().digest("phone", value)


@pytest.mark.parametrize("length", [0, 16, 31])
def test_refuses_short_keys(length: int) -> None:
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        BlindIndexer({"phone": PHONE_KEY, "email": b"k" * length})


def test_accepts_longer_keys() -> None:
    assert len(BlindIndexer({"phone": b"k" * 64}).digest("phone", b"x")) == 16


def test_unknown_field_type_is_refused() -> None:
    with pytest.raises(ValueError, match="no index key"):
        indexer().digest("card", b"4242")


def test_request_mac_is_full_length_and_separate_from_the_index() -> None:
    ix = indexer()
    mac = ix.mac("phone", b"+37251234567")
    assert len(mac) == 32
    assert mac == ix.mac("phone", b"+37251234567")
    assert mac[:INDEX_BYTES] != ix.digest("phone", b"+37251234567")
    assert mac != ix.mac("phone", b"+37251234568")
