"""Text checks shared by every field type, and the free-text normal form.

Every text a caller sends (a name, an address line, a phone number, a card
number, a token) passes ``hidden_character_problem`` on the raw input, before
any normalisation, so nothing invisible can reach a stored value, an index or
a mask. Refused, because they make what a person reads differ from what is
stored:

* bidirectional and isolate controls (U+202A-U+202E, U+2066-U+2069, U+200E,
  U+200F, U+061C): they reorder the text around them, so a mask or log line
  echoing a value could be made to show something else ("Trojan Source");
* every other Unicode format character (category Cf: zero-width space,
  soft hyphen, word joiner, BOM, invisible operators, tag characters that
  smuggle hidden ASCII, interlinear annotations), which render as nothing and
  let two values that look the same differ (dedupe and search evasion);
* the Hangul filler letters (U+115F, U+1160, U+3164, U+FFA0), letters that
  render as blank space;
* lone surrogates, which cannot be encoded as UTF-8.

The one exception is a zero-width (non-)joiner between two letters or marks:
Persian, Arabic and Indic spelling needs it, and there it only shapes the
letters either side. At a word edge or next to anything else it is refused.

The free-text normal form (``clean_text``): NFC first, so visually equal
strings compare and index equal; then every run of Unicode whitespace becomes
one space and the ends are stripped. Control characters left after that are
refused rather than silently dropped: they end up in masks and logs, where
they could rewrite a terminal or a log line.
"""

from __future__ import annotations

import re
import unicodedata

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Characters that change the display order of the text around them."""

INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Letters by category that render as nothing (the Hangul fillers)."""

JOINERS = frozenset("\u200c\u200d")
"""Zero-width non-joiner and joiner: allowed only between two letters or marks."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def hidden_character_problem(raw: str) -> str | None:
    """Why ``raw`` carries a character that must never be stored, or ``None``.

    Checked on the caller's input as given, before normalisation; the reason
    never quotes the text.
    """
    if raw.isascii():  # no format character is ASCII: the common case is one call
        return None
    if _SURROGATE.search(raw):
        return "is not valid Unicode text"
    if any(char in BIDI_CONTROLS for char in raw):
        return "contains bidirectional control characters"
    for position, char in enumerate(raw):
        if char in JOINERS:
            if _between_letters(raw, position):
                continue
            return "contains invisible format characters"
        if char in INVISIBLE_LETTERS or unicodedata.category(char) == "Cf":
            return "contains invisible format characters"
    return None


def clean_text(raw: str) -> str:
    """NFC-normalise, collapse whitespace runs to one space, strip."""
    return " ".join(unicodedata.normalize("NFC", raw).split())


def text_problem(text: str) -> str | None:
    """Why cleaned ``text`` cannot be stored, or ``None``; the reason never quotes it."""
    if _SURROGATE.search(text):
        return "is not valid Unicode text"
    if _CONTROL.search(text):
        return "contains control characters"
    return None


def _between_letters(raw: str, position: int) -> bool:
    if not 0 < position < len(raw) - 1:
        return False
    return all(
        unicodedata.category(char)[0] in ("L", "M") and char not in INVISIBLE_LETTERS
        for char in (raw[position - 1], raw[position + 1])
    )
