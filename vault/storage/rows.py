"""Rows to records, in one place.

Every record a repository returns is a frozen dataclass whose field names are
the table's column names; ``record_mapper`` builds, once per record type, the
function that turns a row into one. Two things must hold on the way up, on
every back end: datetimes are timezone-aware UTC (SQLite hands back naive
ones) and binary columns are ``bytes`` (psycopg hands back ``memoryview``).
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


def record_mapper(record: type[R], **columns: str) -> Callable[[Mapping[str, Any]], R]:
    """A function from a row's mapping (``row._mapping``) to ``record``.

    Fields are read from the column of the same name unless ``columns`` names
    another; datetime, bytes and bool fields are converted as the module says.
    """
    plan = [
        (columns.get(f.name, f.name), _converter(f.type))
        for f in dataclasses.fields(record)  # type: ignore[arg-type]
    ]

    def build(row: Mapping[str, Any]) -> R:
        return record(
            *(row[name] if convert is None else convert(row[name]) for name, convert in plan)
        )

    return build
