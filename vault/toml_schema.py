"""Declared schemas for the operator's TOML files, and their errors in the file's own words.

``policy.toml`` and ``retention.toml`` decide who sees what and what gets
destroyed, so a typo in either must stop the server, never widen or narrow
what it does in silence. Each file is declared as pydantic models built on
``TomlTable``: strict types (a TOML ``true`` is no number, a ``"90"`` no
count), unknown keys refused, and every error reported as
``<place>: <what is wrong>`` where the place is spelt the way the file spells
it (``callers.checkout.grants[2].views``), so an operator can search for it.
A pydantic traceback or message never reaches the operator.

Rules the types cannot state are raised with ``refuse``: the message is the
file's own, and ``at`` names the keys below the table being checked.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "Names",
    "TomlTable",
    "expected_one_of",
    "expecting",
    "member_of",
    "members_of",
    "place_of",
    "refuse",
    "validate",
]

_CUSTOM: Final = "toml_schema"
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
# pydantic's own error types, said the way the files' documentation says them.
_MESSAGES: Final = {
    "missing": "missing",
    "extra_forbidden": "unknown key",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "list_type": "expected a list",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "finite_number": "must be a finite number",
}
# A value of the wrong kind altogether, as opposed to a bad value of the right kind.
_TYPE_ERRORS: Final = frozenset(
    name for name in _MESSAGES if name not in ("missing", "extra_forbidden")
)

_Table = TypeVar("_Table", bound="TomlTable")
_Member = TypeVar("_Member", bound=enum.StrEnum)


def refuse(message: str, *at: str | int) -> PydanticCustomError:
    """An error for a rule the types cannot state, ``at`` keys below the table checked."""
    return PydanticCustomError(_CUSTOM, "{message}", {"message": message, "at": at})


def expected_one_of(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"expected {names[0]}"
    return f"expected one of {', '.join(names)}"


def expecting(message: str) -> WrapValidator:
    """Say ``message`` when the value is of the wrong kind (``expected a list of strings``).

    Errors further down (one bad item of a list) keep their own place and words.
    """

    def check(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            if any(not item["loc"] and item["type"] in _TYPE_ERRORS for item in error.errors()):
                raise refuse(message) from None
            raise

    return WrapValidator(check)


def _not_empty(text: str) -> str:
    if not text:
        raise refuse("empty string")
    return text


def _at_least_one(names: list[str]) -> list[str]:
    if not names:
        raise refuse("must not be empty")
    return names


_NAMES: Final = TypeAdapter(
    Annotated[
        list[Annotated[str, expecting("expected a string"), AfterValidator(_not_empty)]],
        expecting("expected a list of strings"),
        AfterValidator(_at_least_one),
    ],
    config=ConfigDict(strict=True),
)


def _names(value: Any) -> tuple[str, ...]:
    return tuple(_NAMES.validate_python(value))


Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
"""A non-empty list of non-empty strings: every list the files hold."""


def members_of(kind: type[_Member], noun: str) -> BeforeValidator:
    """``Names`` read as members of ``kind``; an unknown one is ``unknown <noun> 'x'``."""

    def convert(value: Any) -> frozenset[_Member]:
        members: set[_Member] = set()
        for name in _NAMES.validate_python(value):
            try:
                members.add(kind(name))
            except ValueError:
                raise refuse(f"unknown {noun} {name!r}") from None
        return frozenset(members)

    return BeforeValidator(convert)


def member_of(kind: type[_Member], noun: str) -> BeforeValidator:
    """One string read as a member of ``kind``; the error lists the members."""
    choices = ", ".join(kind)

    def convert(value: Any) -> _Member:
        if not isinstance(value, str):
            raise refuse(f"expected a string ({choices})")
        try:
            return kind(value)
        except ValueError:
            raise refuse(f"unknown {noun} {value!r} (expected one of {choices})") from None

    return BeforeValidator(convert)


class TomlTable(BaseModel):
    """A table of a TOML file: strict, immutable, and closed to keys it does not declare."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _only_declared_keys(cls, data: Any) -> Any:
        # extra="forbid" refuses the key too; this says which keys would do.
        if isinstance(data, dict):
            known = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in known:
                    raise refuse(f"unknown key ({expected_one_of(known)})", key)
        return data


def key(name: str) -> str:
    """Spell a TOML key the way the file would, so error places can be searched for."""
    if _BARE_KEY.fullmatch(name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def place_of(loc: Sequence[str | int]) -> str:
    """``("callers", "checkout", "grants", 2, "views")`` -> ``callers.checkout.grants[2].views``."""
    place = ""
    for part in loc:
        if isinstance(part, int):
            place += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for an error in a table's key itself
            place = f"{place}.{key(part)}" if place else key(part)
    return place


def _describe(error: ErrorDetails) -> str:
    loc: list[str | int] = list(error["loc"])
    context = error.get("ctx") or {}
    if error["type"] == _CUSTOM:
        loc.extend(context["at"])
        message = str(context["message"])
    else:
        message = _MESSAGES.get(error["type"], error["msg"])
    place = place_of(loc)
    return f"{place}: {message}" if place else message


def validate(
    schema: type[_Table],
    document: dict[str, Any],
    error: Callable[[str], Exception],
    *,
    context: dict[str, Any] | None = None,
) -> _Table:
    """``document`` checked against ``schema``; the first error, placed, raised as ``error``.

    One error, on one line: the first one found (tables in the order the
    schema declares their keys, lists and tables of names in file order), as
    the hand-written checks this replaced reported it.
    """
    try:
        return schema.model_validate(document, context=context)
    except ValidationError as invalid:
        raise error(_describe(invalid.errors()[0])) from None
