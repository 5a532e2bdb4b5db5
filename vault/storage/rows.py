"""Rows to records, in one place.

Every record a repository returns is a frozen dataclass whose field names are
the table's column names; ``record_mapper`` builds, once per record type, the
function that turns a row into one. Two things must hold on the way up, on
every back end: datetimes are timezone-aware UTC (SQLite hands back naive
ones) and binary columns are ``bytes`` (psycopg hands back ``memoryview``).

Two rows are built by hand, each for a stated reason: a field row
(``fields.checked_field``) is checked column by column on the hot path, so a
corrupt row is ``DataLoss`` rather than a half-typed value, and a subject key
row (``keys.subject_key_material``) nests its three wrapped-key columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

R = TypeVar("R")


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time the vault stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _converter(annotation: object) -> Callable[[Any], Any] | None:
    text = str(annotation)
    if "datetime" in text:
        return _optional(aware)
    if "bytes" in text:
        return _optional(bytes)
    if text == "bool":
        return bool
    return None


def record_mapper(
    record: type[R], *, convert: Mapping[str, Callable[[Any], Any]] | None = None
) -> Callable[[Any], R]:
    """A function from a result row to ``record``.

    Each field is read from the column of the same name; datetime, bytes and
    bool fields are converted as the module says, and ``convert`` replaces the
    conversion of the fields it names (a column kept nullable for old rows,
    say).
    """
    overrides = convert or {}
    plan = [
        (f.name, overrides.get(f.name) or _converter(f.type))
        for f in dataclasses.fields(record)  # type: ignore[arg-type]
    ]

    def build(row: Any) -> R:
        r: Mapping[str, Any] = row._mapping
        return record(*(r[name] if conv is None else conv(r[name]) for name, conv in plan))

    return build
