"""``encode_context`` is injective: two different tuples never give the same associated data.

The associated data binds a ciphertext to ``(subject_id, field, dek_id, part)``;
if two different tuples encoded alike (``("ab", "c")`` and ``("a", "bc")``), a
ciphertext copied between them would open. Proved here for every input by
decoding: a function with a left inverse is injective.
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import assume, given
from hypothesis import strategies as st

from vault.crypto.envelope import encode_context

LABEL = b"pii-vault/value"

parts = st.lists(st.text(max_size=40), max_size=6).map(tuple)


def decode_context(label: bytes, encoded: bytes) -> tuple[str, ...]:
    """The inverse of ``encode_context(label, *parts)``: each part by its length prefix."""
    assert encoded.startswith(label)
    position, found = len(label), []
    while position < len(encoded):
        (length,) = struct.unpack_from(">I", encoded, position)
        position += 4
        raw = encoded[position : position + length]
        assert len(raw) == length, "a part runs past the end"
        found.append(raw.decode())
        position += length
    return tuple(found)


@given(parts)
def test_the_parts_can_be_read_back_from_their_encoding(values: tuple[str, ...]) -> None:
    assert decode_context(LABEL, encode_context(LABEL, *values)) == values


@given(parts, parts)
def test_different_tuples_never_encode_alike(left: tuple[str, ...], right: tuple[str, ...]) -> None:
    assume(left != right)
    assert encode_context(LABEL, *left) != encode_context(LABEL, *right)


@st.composite
def same_text_cut_twice(draw: st.DrawFn) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Two tuples whose parts join to the same text: the case a plain join confuses."""
    text = draw(st.text(max_size=30))

    def cut() -> tuple[str, ...]:
        points = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
        bounds = [0, *points, len(text)]
        return tuple(text[a:b] for a, b in itertools.pairwise(bounds))

    return cut(), cut()


@given(same_text_cut_twice())
def test_the_same_text_cut_differently_encodes_differently(
    pair: tuple[tuple[str, ...], tuple[str, ...]],
) -> None:
    left, right = pair
    assume(left != right)
    assert "".join(left) == "".join(right)
    assert encode_context(LABEL, *left) != encode_context(LABEL, *right)


@given(parts)
def test_encoding_is_deterministic(values: tuple[str, ...]) -> None:
    assert encode_context(LABEL, *values) == encode_context(LABEL, *values)
