"""The chain hash is keyed: without the key nobody recomputes it."""

from __future__ import annotations

import pytest

from vault.crypto.hash_chain import GENESIS, chain_hash, check_chain_key, unkeyed_hash

EVENT: dict[str, object] = {"sequence": 1, "caller": "privacy-desk", "action": "reveal"}


def test_the_hash_depends_on_the_key_the_event_and_its_predecessor() -> None:
    key = bytes(range(32))
    first = chain_hash(key, GENESIS, EVENT)
    assert len(first) == 32
    assert chain_hash(key, GENESIS, EVENT) == first
    assert chain_hash(bytes(32), GENESIS, EVENT) != first
    assert chain_hash(key, first, EVENT) != first
    assert chain_hash(key, GENESIS, {**EVENT, "action": "get"}) != first
    assert unkeyed_hash(GENESIS, EVENT) != first


def test_a_chain_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        check_chain_key(b"short")
