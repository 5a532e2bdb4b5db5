"""Personal names: cleaned free text, masked to initials.

Names are not parsed into given and family parts (no rule for that holds
across cultures); the normal form is the NFC, whitespace-collapsed string.
The blind index takes the case-folded form so ``Jane Doe`` and ``JANE DOE``
find each other, while the stored value keeps the caller's spelling.

The most a mask reveals: one initial (a single letter, without its marks)
per space-separated part that has at least ``MIN_LETTERS_FOR_INITIAL``
(three) letters, counted as user-perceived characters (a letter with its
combining marks is one), and only when that letter is not a wide East Asian
one. Never a whole part, nor more than one letter of a short one:

* a part of one or two letters (``Li``, ``J.``, the surname ``王``) shows
  nothing, because its initial would be half or all of it;
* a wide letter (Han ideographs, Hangul syllables, kana, full-width forms) is
  a syllable or a word, not a letter: ``王小明`` would show its whole surname
  ``王``, and ``김민준`` the surname ``김`` that a fifth of Koreans share, so
  such parts show nothing;
* a name with nothing left to show masks to ``***``.

So ``Jane van Doe`` masks to ``J. V. D.``, ``Li Na`` and ``王小明`` to ``***``,
``Jane Li`` to ``J.``. Hidden parts leave no placeholder, so the mask does not
tell how many parts a name has.
"""

from __future__ import annotations

import datetime
import unicodedata

from vault.errors import InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import JOINERS, clean_text, hidden_character_problem, text_problem
from vault.fields.base import FieldType, Name, Normalized

MAX_LENGTH = 200
MIN_LETTERS_FOR_INITIAL = 3
NO_INITIALS = "***"
_WIDE = frozenset({"W", "F", "H"})
"""East Asian width classes of syllabic and ideographic letters (and full-width forms)."""
_ZWJ = "\u200d"
_FIELD = "value.name"


def normalize_name(value: Name, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    problem = hidden_character_problem(value.full_name)
    if problem is not None:
        raise InvalidArgument(_FIELD, problem)
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
    """Initials of the parts long enough to keep most of them hidden: ``J. V. D.``.

    The initial of a part is its first letter (``O'Brien`` gives ``O.``,
    ``(Jim)`` gives ``J.``), upper-cased when that stays one character.
    """
    initials = []
    for part in full_name.split(" "):
        initial = _initial(part)
        if initial is not None:
            initials.append(f"{initial}.")
    return " ".join(initials) or NO_INITIALS


def perceived_letters(part: str) -> list[str]:
    """The letters of ``part`` as a reader counts them: each with its marks and joiners.

    A combining mark, a joiner and whatever a zero-width joiner glues on belong
    to the character before them (an approximation of Unicode grapheme
    clusters that is exact for names). Clusters whose base is not a letter
    (digits, punctuation, symbols) are left out.
    """
    clusters: list[str] = []
    glue_next = False
    for char in part:
        attaches = unicodedata.category(char)[0] == "M" or char in JOINERS or glue_next
        if attaches and clusters:
            clusters[-1] += char
        else:
            clusters.append(char)
        glue_next = char == _ZWJ
    return [cluster for cluster in clusters if cluster[0].isalpha()]


def _initial(part: str) -> str | None:
    letters = perceived_letters(part)
    if len(letters) < MIN_LETTERS_FOR_INITIAL:
        return None
    letter = letters[0][0]
    if unicodedata.east_asian_width(letter) in _WIDE:
        return None
    upper = letter.upper()
    return upper if len(upper) == 1 else letter
