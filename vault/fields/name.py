"""Personal names: cleaned free text, masked to initials.

Names are not parsed into given and family parts (no rule for that holds
across cultures); the normal form is the NFC, whitespace-collapsed string.
The blind index takes the case-folded form so ``Jane Doe`` and ``JANE DOE``
find each other, while the stored value keeps the caller's spelling.
"""

from __future__ import annotations

import datetime

from vault.errors import InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import clean_text, text_problem
from vault.fields.base import FieldType, Name, Normalized

MAX_LENGTH = 200
_FIELD = "value.name"


def normalize_name(value: Name, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    full_name = clean_text(value.full_name)
    if not full_name:
        raise InvalidArgument(_FIELD, "is required")
    if len(full_name) > MAX_LENGTH:
        raise InvalidArgument(_FIELD, f"longer than {MAX_LENGTH} characters")
    problem = text_problem(full_name)
    if problem is not None:
        raise InvalidArgument(_FIELD, problem)

    normal = Name(full_name=full_name)
    return Normalized(
        type=FieldType.NAME,
        value=normal,
        canonical=encode_canonical(normal),
        masked=mask_name(full_name),
        index_input=full_name.casefold().encode(),
    )


def decode_name(canonical: bytes) -> Name:
    return Name(full_name=CanonicalReader(FieldType.NAME, canonical).text("full_name"))


def mask_name(full_name: str) -> str:
    """Initials: ``Jane van Doe`` becomes ``J. V. D.``.

    The initial of a word is its first letter (``O'Brien`` gives ``O.``,
    ``(Jim)`` gives ``J.``); words without a letter are left out, and a name
    with no letter at all masks to ``***``.
    """
    initials = []
    for word in full_name.split(" "):
        letter = next((char for char in word if char.isalpha()), None)
        if letter is not None:
            initials.append(f"{letter.upper()}.")
    return " ".join(initials) or "***"
