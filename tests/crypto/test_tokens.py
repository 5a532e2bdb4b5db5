"""Tokens: opaque, random, recognisable, stored only as a digest."""

from __future__ import annotations

import re

import pytest

from vault.crypto.tokens import (
    TOKEN_LENGTH,
    looks_like_token,
    new_id,
    new_token,
    token_digest,
)

_FORMAT = re.compile(r"tok_[a-z2-7]{32}")


def test_token_format() -> None:
    token = new_token()
    assert _FORMAT.fullmatch(token), token
    assert len(token) == TOKEN_LENGTH == 36


def test_two_tokens_differ() -> None:
    assert len({new_token() for _ in range(100)}) == 100


def test_token_comes_from_the_rng() -> None:
    assert new_token(lambda n: bytes(n)) == "tok_" + "a" * 32
    assert new_token(lambda n: b"\xff" * n) == "tok_" + "7" * 32


@pytest.mark.parametrize(
    "token",
    [new_token(), "tok_" + "a" * 32, "tok_" + "234567ab" * 4],
    ids=["fresh", "all-a", "alphabet"],  # ids that do not change per process (pytest -n)
)
def test_looks_like_token_accepts(token: str) -> None:
    assert looks_like_token(token)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tok_",
        "tok_" + "a" * 31,
        "tok_" + "a" * 33,
        "TOK_" + "a" * 32,
        "tik_" + "a" * 32,
        "tok_" + "A" * 32,  # upper case is not what the vault hands out
        "tok_" + "a" * 31 + "1",  # 1 is not in the base32 alphabet
        "tok_" + "a" * 31 + "=",
        "tok_" + "a" * 31 + " ",
        "+37251234567",
    ],
)
def test_looks_like_token_refuses(text: str) -> None:
    assert not looks_like_token(text)


def test_token_digest_is_32_bytes_and_stable() -> None:
    token = new_token()
    assert len(token_digest(token)) == 32
    assert token_digest(token) == token_digest(token)
    assert token_digest(token) != token_digest(new_token())
    assert token.encode() not in token_digest(token)


def test_new_id_is_128_bit_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_id())
    assert new_id() != new_id()
