"""What a policy speaks of -- actions, views, find answers -- and one compiled grant.

A ``Grant`` is a grant of ``policy.toml`` after checking, in the form the hot
path reads: plain strings and frozensets, ``None`` for the wildcard ``"*"``,
so that a check is a few set lookups and builds no strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["Action", "FindAnswers", "Grant", "PolicyError", "View"]


class Action(enum.StrEnum):
    """What a caller asks the vault to do; one per guarded use case."""

    PUT = "put"
    GET = "get"
    DETOKENIZE = "detokenize"
    FIND = "find"
    DELETE = "delete"
    SHRED = "shred"
    EXPORT = "export"
    HOLD = "hold"
    CONSENT = "consent"
    ADMIN = "admin"


class View(enum.StrEnum):
    """How much of a value a ``get`` shows, from least to most revealing."""

    MASKED = "masked"
    TOKEN = "token"  # noqa: S105 -- a view name, not a secret
    PLAINTEXT = "plaintext"


class FindAnswers(enum.StrEnum):
    """What a ``find`` grant lets the caller learn about a searched value."""

    EXISTS = "exists"  # only whether some subject holds it: a dedupe's question
    SUBJECT_IDS = "subject_ids"  # which subjects hold it


class PolicyError(ValueError):
    """The policy file is malformed; the message names the offending place."""


# Actions that touch fields of a given type: a grant listing any of them must
# say which field types it covers (no silent "all types" by omission).
FIELD_SCOPED_ACTIONS: Final = frozenset(
    {Action.PUT, Action.GET, Action.DETOKENIZE, Action.FIND, Action.DELETE, Action.EXPORT}
)
# Actions that always hand out plaintext; ``get`` does so only with view plaintext.
REVEALING_ACTIONS: Final = frozenset({Action.DETOKENIZE.value, Action.EXPORT.value})
WILDCARD: Final = "*"


@dataclass(frozen=True, slots=True)
class Grant:
    """One compiled grant; ``None`` for a scope means the wildcard ``"*"``."""

    rule: str
    field_types: frozenset[str] | None
    exact_fields: frozenset[str] | None
    field_prefixes: tuple[str, ...]
    views: frozenset[str]
    any_purpose: bool
    named_purposes: frozenset[str]
    answers: FindAnswers = FindAnswers.EXISTS

    def covers(self, field_type: str, field: str | None) -> bool:
        """The type and field scope alone: no view, no purpose."""
        if self.field_types is not None and field_type not in self.field_types:
            return False
        if field is not None and self.exact_fields is not None:
            if field not in self.exact_fields and not field.startswith(self.field_prefixes):
                return False
        return True

    def matches(
        self,
        field_type: str | None,
        field: str | None,
        effective_view: str | None,
        purpose: str,
        reveal: bool,
    ) -> bool:
        # The action already matched: grants are indexed by (caller, action).
        # ``effective_view`` is None for every action but get.
        if field_type is not None and self.field_types is not None:
            if field_type not in self.field_types:
                return False
        if field is not None and self.exact_fields is not None:
            if field not in self.exact_fields and not field.startswith(self.field_prefixes):
                return False
        if effective_view is not None and effective_view not in self.views:
            return False
        if reveal:
            # named_purposes never holds "" or "*": a reveal needs a real name.
            return purpose in self.named_purposes
        return self.any_purpose or purpose in self.named_purposes
