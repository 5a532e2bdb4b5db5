"""Dates of birth: a real calendar date, 1900 or later, not in the future.

``today`` is injected so the future check is deterministic in tests. There is
no blind index, as the small value space would make an equality index easy to
enumerate.

The most a mask reveals: the year of birth, four digits (``1987``); month and
day, 365 or 366 candidates, stay hidden.
"""

from __future__ import annotations

import datetime

from vault.errors import InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields.base import DateOfBirth, FieldType, Normalized

MIN_YEAR = 1900
_FIELD = "value.date_of_birth"


def normalize_date_of_birth(value: DateOfBirth, *, today: datetime.date) -> Normalized:
    try:
        born = datetime.date(value.year, value.month, value.day)
    except (ValueError, OverflowError):
        raise InvalidArgument(_FIELD, "not a calendar date") from None
    if born.year < MIN_YEAR:
        raise InvalidArgument(_FIELD, f"year must be {MIN_YEAR} or later")
    if born > today:
        raise InvalidArgument(_FIELD, "is in the future")

    normal = DateOfBirth(year=born.year, month=born.month, day=born.day)
    return Normalized(
        type=FieldType.DATE_OF_BIRTH,
        value=normal,
        canonical=encode_canonical(normal),
        masked=f"{born.year:04d}",
        index_input=None,
    )


def decode_date_of_birth(canonical: bytes) -> DateOfBirth:
    reader = CanonicalReader(FieldType.DATE_OF_BIRTH, canonical)
    return DateOfBirth(
        year=reader.integer("year"), month=reader.integer("month"), day=reader.integer("day")
    )
