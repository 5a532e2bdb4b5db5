"""Free-text normal form shared by names, addresses and card holder names.

NFC first, so visually equal strings compare and index equal; then every run
of Unicode whitespace becomes one space and the ends are stripped. Control
characters (and lone surrogates, which cannot be encoded as UTF-8) are refused
rather than silently dropped: they end up in masks and logs, where they could
rewrite a terminal or a log line.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(raw: str) -> str:
    """NFC-normalise, collapse whitespace runs to one space, strip."""
    return " ".join(unicodedata.normalize("NFC", raw).split())


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None``; the reason never quotes it."""
    if _SURROGATE.search(text):
        return "is not valid Unicode text"
    if _CONTROL.search(text):
        return "contains control characters"
    return None
