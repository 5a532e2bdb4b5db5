"""What the use cases return: views and values, free of proto and ORM types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from vault.errors import InvalidArgument
from vault.fields.base import Facts, FieldType, FieldValue


@dataclass(frozen=True)
class FieldView:
    subject_id: str
    field: str
    type: FieldType
    masked: str
    token: str
    version: int
    updated_at: datetime
    facts: Facts


@dataclass(frozen=True)
class FieldRead:
    """A view, and the value only when plaintext was asked for and granted."""

    view: FieldView
    value: FieldValue | None = None


@dataclass(frozen=True)
class GetRequest:
    subject_id: str
    field: str
    view: str = "masked"
    purpose: str = ""


@dataclass(frozen=True)
class SearchResult:
    """A search's answer: whether the value is held and, if the grant says so, by whom.

    ``subject_ids`` is empty unless the caller's find grant answers
    ``subject_ids``; ``found`` is all a dedupe needs.
    """

    found: bool
    subject_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Explicit bounds on everything a caller sends."""

    max_subject_id: int = 128
    max_field_name: int = 128
    max_idempotency_key: int = 128
    max_purpose: int = 64
    max_batch: int = 100


SUBJECT_ID_CHARS: Final = re.compile(r"[A-Za-z0-9._:@+=/-]+")
FIELD_NAME: Final = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*")
PURPOSE: Final = re.compile(r"[a-z][a-z0-9_-]*")
IDEMPOTENCY_KEY_CHARS: Final = re.compile(r"[\x21-\x7e]+")


def check_subject_id(subject_id: str, limits: Limits, name: str = "subject_id") -> None:
    if not subject_id:
        raise InvalidArgument(name, "is required")
    if len(subject_id) > limits.max_subject_id:
        raise InvalidArgument(name, f"is longer than {limits.max_subject_id} characters")
    if not SUBJECT_ID_CHARS.fullmatch(subject_id):
        raise InvalidArgument(name, "may hold only letters, digits and ._:@+=/-")


def check_field_name(field: str, limits: Limits, name: str = "field") -> None:
    if not field:
        raise InvalidArgument(name, "is required")
    if len(field) > limits.max_field_name:
        raise InvalidArgument(name, f"is longer than {limits.max_field_name} characters")
    if not FIELD_NAME.fullmatch(field):
        raise InvalidArgument(
            name, "must be dot-separated lower-case words, like 'phone' or 'card.primary'"
        )


def check_purpose(purpose: str, limits: Limits, name: str = "purpose") -> None:
    if not purpose:
        return
    if len(purpose) > limits.max_purpose or not PURPOSE.fullmatch(purpose):
        raise InvalidArgument(name, "must be a lower-case word like 'checkout'")


def check_idempotency_key(key: str, limits: Limits) -> None:
    if not key:
        return
    if len(key) > limits.max_idempotency_key:
        raise InvalidArgument(
            "idempotency_key", f"is longer than {limits.max_idempotency_key} characters"
        )
    if not IDEMPOTENCY_KEY_CHARS.fullmatch(key):
        raise InvalidArgument("idempotency_key", "must be printable ASCII without spaces")
