"""``policy.toml`` declared: the tables it may hold, and their conversion to a compiled policy.

The file is parsed and checked once, at start-up or reload: any unknown key,
action, view or field type is an error that names its place
(``callers.checkout.grants[2].views: unknown view 'plain'``), because a typo
in an access policy must never silently widen (or quietly narrow) access.
Rules that hold across keys are checked here too, where the place is known:

* a grant of a field-scoped action says which field types it covers;
* a grant that could reveal a value (``get`` with view ``plaintext``,
  ``detokenize``, ``export``) names a purpose: ``"*"`` never grants a reveal;
* ``answers`` belongs to ``find`` grants only;
* ``[limits.callers.NAME]`` and ``[identity] uris`` name callers of ``[callers]``.

``compile_policy`` turns the checked document into what ``Policy`` reads on
the hot path: grants indexed by ``(caller, action)``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, model_validator

from vault.fields.base import FieldType
from vault.policy.grants import (
    FIELD_SCOPED_ACTIONS,
    REVEALING_ACTIONS,
    WILDCARD,
    Action,
    FindAnswers,
    Grant,
    PolicyError,
    View,
)
from vault.policy.identity import IdentityRules
from vault.policy.identity_schema import NOT_A_CALLER, IdentityTable
from vault.policy.limits import RateLimits
from vault.policy.limits_schema import LimitsTable
from vault.toml_schema import (
    Names,
    TomlTable,
    expecting,
    member_of,
    members_of,
    place_of,
    refuse,
    validate,
)

__all__ = ["CompiledPolicy", "PolicyDocument", "compile_policy", "parse_policy"]

_FIELD_TYPES: Final = frozenset(member.value for member in FieldType)


def _purpose_name(name: str) -> str:
    if not name or name == WILDCARD:
        raise refuse("a purpose needs a name other than '' or '*'")
    return name


def _caller_name(name: str) -> str:
    if not name:
        raise refuse("a caller needs a non-empty name")
    return name


def _field_types(names: tuple[str, ...]) -> tuple[str, ...]:
    # A "*" makes the other names moot, so they go unchecked (as they always have).
    if WILDCARD not in names:
        for name in names:
            if name not in _FIELD_TYPES:
                raise refuse(f"unknown field type {name!r}")
    return names


def _field_patterns(names: tuple[str, ...]) -> tuple[str, ...]:
    # Checked up to a "*", which makes the rest moot (as it always has).
    for name in names:
        if name == WILDCARD:
            break
        if WILDCARD in name and not _is_prefix(name):
            raise refuse(f"bad field pattern {name!r}: '*' may stand alone or end a name as '.*'")
    return names


def _is_prefix(name: str) -> bool:
    """``card.*``: every field whose name starts with ``card.``."""
    return name.endswith(".*") and len(name) > 2 and WILDCARD not in name[:-2]


class PurposeTable(TomlTable):
    """``[purposes.NAME]``: a purpose refused for a subject until it consents."""

    requires_consent: Annotated[bool, expecting("expected true or false")] = False


class GrantTable(TomlTable):
    """One ``[[callers.NAME.grants]]``; see ``default_policy.toml`` for each key's meaning."""

    # Empty only when absent: a written list must hold at least one action.
    actions: Annotated[frozenset[Action], members_of(Action, "action")] = frozenset()
    field_types: Annotated[Names, AfterValidator(_field_types)] | None = None
    fields: Annotated[Names, AfterValidator(_field_patterns)] = (WILDCARD,)
    views: Annotated[frozenset[View], members_of(View, "view")] = frozenset({View.MASKED})
    purposes: Names = (WILDCARD,)
    answers: Annotated[FindAnswers, member_of(FindAnswers, "answer")] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GrantTable:
        if not self.actions:
            raise refuse("missing; a grant must list its actions", "actions")
        if self.field_types is None:
            scoped = sorted(self.actions & FIELD_SCOPED_ACTIONS)
            if scoped:
                raise refuse(
                    f'missing; required for {", ".join(scoped)} (use ["*"] for every type)',
                    "field_types",
                )
        if not self.named_purposes:
            # A grant whose reveal could never match is a policy bug: say so now.
            for action in sorted(self.actions):
                if action in REVEALING_ACTIONS or (
                    action == Action.GET and View.PLAINTEXT in self.views
                ):
                    what = "get with view plaintext" if action == Action.GET else str(action)
                    raise refuse(
                        f"{what} needs a named purpose; '*' does not grant a reveal", "purposes"
                    )
        if self.answers is not None and Action.FIND not in self.actions:
            raise refuse("applies to find only, and this grant does not list find", "answers")
        return self

    @property
    def named_purposes(self) -> frozenset[str]:
        return frozenset(name for name in self.purposes if name != WILDCARD)

    def compile(self, rule: str) -> Grant:
        """The hot path's form of this grant; ``rule`` is its place in the file."""
        field_types: frozenset[str] | None = None
        if self.field_types is not None and WILDCARD not in self.field_types:
            field_types = frozenset(self.field_types)
        exact_fields: frozenset[str] | None = None
        prefixes: tuple[str, ...] = ()
        if WILDCARD not in self.fields:
            exact_fields = frozenset(name for name in self.fields if not _is_prefix(name))
            # Keep the dot: "card.*" matches "card.x", not "cards".
            prefixes = tuple(name[:-1] for name in self.fields if _is_prefix(name))
        return Grant(
            rule=rule,
            field_types=field_types,
            exact_fields=exact_fields,
            field_prefixes=prefixes,
            views=frozenset(view.value for view in self.views),
            any_purpose=WILDCARD in self.purposes,
            named_purposes=self.named_purposes,
            answers=self.answers or FindAnswers.EXISTS,
        )


class CallerTable(TomlTable):
    """``[callers.NAME]``: its grants, in file order; a caller without grants may do nothing."""

    grants: Annotated[list[GrantTable], expecting("expected an array of tables ([[...]])")] = Field(
        default_factory=list
    )


class PolicyDocument(TomlTable):
    """The whole of ``policy.toml``."""

    purposes: dict[Annotated[str, AfterValidator(_purpose_name)], PurposeTable] = Field(
        default_factory=dict
    )
    callers: dict[Annotated[str, AfterValidator(_caller_name)], CallerTable] = Field(
        default_factory=dict
    )
    limits: LimitsTable = LimitsTable()
    identity: IdentityTable = IdentityTable()

    @model_validator(mode="after")
    def _names_known_callers(self) -> PolicyDocument:
        # A misspelt name would leave the real caller on the default limits, or
        # hand an identity to nobody, without a word.
        for caller in self.limits.callers:
            if caller not in self.callers:
                raise refuse(f"no caller {caller!r} in [callers]", "limits", "callers", caller)
        for uri, caller in self.identity.uris.items():
            if caller not in self.callers:
                raise refuse(NOT_A_CALLER, "identity", "uris", uri)
        return self


@dataclass(frozen=True)
class CompiledPolicy:
    """What ``Policy`` is built from: the grant index and the checked sections."""

    index: dict[tuple[str, Action], tuple[Grant, ...]]
    callers: frozenset[str]
    consent_purposes: frozenset[str]
    limits: RateLimits
    identity: IdentityRules


def compile_policy(document: PolicyDocument) -> CompiledPolicy:
    index: dict[tuple[str, Action], list[Grant]] = {}
    for caller, table in document.callers.items():
        for number, grant_table in enumerate(table.grants):
            grant = grant_table.compile(place_of(("callers", caller, "grants", number)))
            for action in grant_table.actions:
                index.setdefault((caller, action), []).append(grant)
    return CompiledPolicy(
        index={key: tuple(grants) for key, grants in index.items()},
        callers=frozenset(document.callers),
        consent_purposes=frozenset(
            name for name, purpose in document.purposes.items() if purpose.requires_consent
        ),
        limits=document.limits.rate_limits(),
        identity=document.identity.rules(),
    )


def parse_policy(text: str) -> CompiledPolicy:
    """Parse and check a policy document; raise ``PolicyError`` naming the place."""
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy: invalid TOML: {exc}") from exc
    return compile_policy(validate(PolicyDocument, document, PolicyError))
