"""``retention.toml`` declared: which data is destroyed on its own, and when.

Two kinds of rule exist (``RetentionSweeper`` in ``vault.domain.retention``
applies them):

- ``[card] after_expiry_days = N``: a card field is deleted once N whole days
  have passed since its last valid day. Only types whose rows carry an expiry
  (``EXPIRING_TYPES``) may have this rule; naming another type is an error
  that says so, not an unknown key.
- ``[subject] untouched_days = N``: a subject with no write for N days is
  shredded.

A rule destroys data, so the file is read strictly: unknown keys, a
``"90"`` or a ``true`` for a count, and counts beyond a hundred years are
refused with the place named (``card.after_expiry_days: ...``). No file
means no rules: retention destroys nothing unless told to.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AfterValidator, model_validator

from vault.fields.base import FieldType
from vault.toml_schema import TomlTable, expecting, refuse, validate

__all__ = [
    "DEFAULT_RETENTION_TOML",
    "EXPIRING_TYPES",
    "MAX_DAYS",
    "RETENTION_FILE",
    "ExpiryRule",
    "RetentionError",
    "RetentionRules",
]

RETENTION_FILE: Final = "retention.toml"
MAX_DAYS: Final = 36500  # a hundred years: anything longer is a typo
# Field types whose rows carry ``expires_on``; each is a table of the document
# below, and the sweeper knows how to find its expired rows.
EXPIRING_TYPES: Final = frozenset({FieldType.CARD})

DEFAULT_RETENTION_TOML: Final = (
    files("vault.domain").joinpath("default_retention.toml").read_text(encoding="utf-8")
)
"""The rules ``pii-vault init`` writes: ``default_retention.toml``, shipped in the package."""


class RetentionError(ValueError):
    """``retention.toml`` is malformed; the message names the offending key."""


@dataclass(frozen=True)
class ExpiryRule:
    """Delete fields of ``field_type`` once ``after_expiry_days`` have passed since expiry."""

    field_type: FieldType
    after_expiry_days: int


@dataclass(frozen=True)
class RetentionRules:
    """The parsed, checked rules; the empty default destroys nothing."""

    expiry: tuple[ExpiryRule, ...] = ()
    untouched_days: int | None = None

    @property
    def empty(self) -> bool:
        return not self.expiry and self.untouched_days is None

    def describe(self) -> str:
        """One line for operators: ``card fields deleted 90 days after expiry; ...``."""
        parts = [
            f"{r.field_type} fields deleted {r.after_expiry_days} days after expiry"
            for r in self.expiry
        ]
        if self.untouched_days is None:
            parts.append("idle subjects kept")
        else:
            parts.append(f"subjects shredded after {self.untouched_days} days untouched")
        return "; ".join(parts)

    @classmethod
    def from_toml(cls, text: str) -> RetentionRules:
        try:
            document: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise RetentionError(f"invalid TOML: {error}") from None
        return validate(RetentionDocument, document, RetentionError).rules()

    @classmethod
    def load(cls, path: Path) -> RetentionRules:
        """Rules from ``path``; a missing file is no rules. Errors name the file and key."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        try:
            return cls.from_toml(text)
        except RetentionError as error:
            raise RetentionError(f"{path}: {error}") from None


def _days_from(minimum: int) -> AfterValidator:
    def check(days: int) -> int:
        if not minimum <= days <= MAX_DAYS:
            raise refuse(f"must be between {minimum} and {MAX_DAYS} days")
        return days

    return AfterValidator(check)


_WHOLE_DAYS: Final = expecting("expected a whole number of days")


class SubjectTable(TomlTable):
    """``[subject]``: shred a subject with no write for ``untouched_days``."""

    untouched_days: Annotated[int, _WHOLE_DAYS, _days_from(1)]


class ExpiryTable(TomlTable):
    """``[card]``: delete a field ``after_expiry_days`` past its last valid day."""

    after_expiry_days: Annotated[int, _WHOLE_DAYS, _days_from(0)]


class RetentionDocument(TomlTable):
    """The whole of ``retention.toml``; every table optional."""

    subject: Annotated[SubjectTable, expecting("expected a table, like [subject]")] | None = None
    card: Annotated[ExpiryTable, expecting("expected a table, like [card]")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _expiry_only_for_expiring_types(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                if name in FieldType.__members__.values() and name not in EXPIRING_TYPES:
                    raise refuse(
                        f"{name} values carry no expiry; after_expiry_days applies to "
                        f"{', '.join(sorted(EXPIRING_TYPES))} only",
                        name,
                    )
        return data

    def rules(self) -> RetentionRules:
        expiry = tuple(
            ExpiryRule(field_type, table.after_expiry_days)
            for field_type in sorted(EXPIRING_TYPES)
            if (table := getattr(self, field_type.value)) is not None
        )
        untouched = None if self.subject is None else self.subject.untouched_days
        return RetentionRules(expiry, untouched)
