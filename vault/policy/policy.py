"""Deny-by-default access policy: which caller may do what, to which fields, and why.

A caller (the CN of its client certificate) gets exactly what its grants in
``policy.toml`` say and nothing more; a caller the file does not name gets
nothing. The file is parsed and checked once at start-up: any unknown key,
action, view or field type is an error that names its place, because a typo
in an access policy must never silently widen (or quietly narrow) access.

Invariants that hold for every decision:

* A *reveal* -- ``get`` with view ``plaintext``, ``detokenize`` and
  ``export`` -- needs a non-empty purpose that the grant lists by name. The
  wildcard purpose ``"*"`` never grants a reveal, so every plaintext leaving the
  vault is tied to a stated reason that the audit log can record.
* ``get`` without a view means ``masked``, the least revealing view.
* Checks are cheap: grants are indexed by ``(caller, action)`` at load time,
  and ``allows`` builds no strings.

Reasons in a ``Decision`` name callers, actions, field types, field names and
purposes -- never a value -- so they are safe to log and to send to a caller.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from vault.fields.base import FieldType
from vault.policy.limits import RateLimits

__all__ = [
    "DEFAULT_POLICY_TOML",
    "Action",
    "Decision",
    "Policy",
    "PolicyError",
    "View",
]


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


class PolicyError(ValueError):
    """The policy file is malformed; the message names the offending place."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy check.

    ``rule`` names the grant that allowed the call (``callers.checkout.grants[2]``,
    grants counted from 0 in file order) and is ``""`` when denied. ``reason``
    is a sentence for audit events and error messages; it carries no values.
    """

    allowed: bool
    rule: str
    reason: str


# Actions that touch fields of a given type: a grant listing any of them must
# say which field types it covers (no silent "all types" by omission).
_FIELD_SCOPED_ACTIONS: Final = frozenset(
    {Action.PUT, Action.GET, Action.DETOKENIZE, Action.FIND, Action.DELETE, Action.EXPORT}
)
# The hot path compares plain strings: reading an enum member off its class
# costs more than the whole rest of a check on CPython 3.11.
_GET: Final = Action.GET.value
_MASKED: Final = View.MASKED.value
_PLAINTEXT: Final = View.PLAINTEXT.value
# Actions that always hand out plaintext; ``get`` does so only with view plaintext.
_REVEALING_ACTIONS: Final = frozenset({Action.DETOKENIZE.value, Action.EXPORT.value})
_FIELD_TYPES: Final = frozenset(member.value for member in FieldType)
_WILDCARD: Final = "*"
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")

_GRANT_KEYS: Final = ("actions", "field_types", "fields", "views", "purposes")
_PURPOSE_KEYS: Final = ("requires_consent",)
_CALLER_KEYS: Final = ("grants",)
_TOP_KEYS: Final = ("purposes", "callers")


def _effective_view(action: str, view: str | None) -> str | None:
    """``get`` defaults to masked; other actions have no view at all."""
    if action != _GET:
        return None
    return _MASKED if view is None else view


def _is_reveal(action: str, effective_view: str | None) -> bool:
    return effective_view == _PLAINTEXT or action in _REVEALING_ACTIONS


@dataclass(frozen=True, slots=True)
class _Grant:
    """One compiled grant; ``None`` for a scope means the wildcard ``"*"``."""

    rule: str
    field_types: frozenset[str] | None
    exact_fields: frozenset[str] | None
    field_prefixes: tuple[str, ...]
    views: frozenset[str]
    any_purpose: bool
    named_purposes: frozenset[str]

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


class Policy:
    """An immutable, validated policy. Build one with ``from_toml`` or ``load``."""

    __slots__ = ("_callers", "_consent_purposes", "_index", "limits")

    def __init__(
        self,
        index: Mapping[tuple[str, Action], tuple[_Grant, ...]],
        callers: frozenset[str],
        consent_purposes: frozenset[str],
        limits: RateLimits | None = None,
    ) -> None:
        self._index: dict[tuple[str, Action], tuple[_Grant, ...]] = dict(index)
        self._callers = callers
        self._consent_purposes = consent_purposes
        self.limits = limits or RateLimits()

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """Parse and validate a policy document; raise ``PolicyError`` naming the place."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy: invalid TOML: {exc}") from exc
        return _parse_policy(document)

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read ``path`` (UTF-8 TOML). ``OSError`` propagates; bad content is ``PolicyError``."""
        text = path.read_text(encoding="utf-8")
        try:
            return cls.from_toml(text)
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc}") from exc

    def callers(self) -> frozenset[str]:
        """Every caller the policy names, including callers with no grants."""
        return self._callers

    def requires_consent(self, purpose: str) -> bool:
        """Whether ``purpose`` is refused for a subject until it has consented."""
        return purpose in self._consent_purposes

    def allows(
        self,
        caller: str,
        action: Action,
        *,
        field_type: str | None = None,
        field: str | None = None,
        view: View | None = None,
        purpose: str = "",
    ) -> bool:
        """The hot-path form of ``decide``: same answer, no reason built."""
        return self._find_grant(caller, action, field_type, field, view, purpose) is not None

    def decide(
        self,
        caller: str,
        action: Action,
        *,
        field_type: str | None = None,
        field: str | None = None,
        view: View | None = None,
        purpose: str = "",
    ) -> Decision:
        """Decide one check and say why.

        ``field_type=None`` (subject-wide actions such as ``shred`` or ``admin``)
        and ``field=None`` leave that scope unchecked. ``view`` matters only for
        ``get``, where ``None`` means masked.
        """
        if field_type is not None and field_type not in _FIELD_TYPES:
            return Decision(False, "", f"unknown field type {field_type!r}")
        effective_view = _effective_view(action, view)
        wanted = _describe(action, field_type, field, effective_view, purpose)
        if caller not in self._callers:
            return Decision(
                False, "", f"caller {caller!r} is not named in the policy, so it may not {wanted}"
            )
        grant = self._find_grant(caller, action, field_type, field, view, purpose)
        if grant is not None:
            return Decision(True, grant.rule, f"{grant.rule} allows caller {caller!r} {wanted}")
        reason = f"no grant of caller {caller!r} allows {wanted}"
        if _is_reveal(action, effective_view) and not purpose:
            reason += "; revealing a value needs a named purpose"
        return Decision(False, "", reason)

    def _find_grant(
        self,
        caller: str,
        action: Action,
        field_type: str | None,
        field: str | None,
        view: str | None,
        purpose: str,
    ) -> _Grant | None:
        grants = self._index.get((caller, action))
        if not grants:
            return None
        if field_type is not None and field_type not in _FIELD_TYPES:
            return None
        effective_view = _effective_view(action, view)
        reveal = _is_reveal(action, effective_view)
        for grant in grants:
            if grant.matches(field_type, field, effective_view, purpose, reveal):
                return grant
        return None

    def __repr__(self) -> str:
        return f"Policy(callers={sorted(self._callers)!r})"


def _describe(
    action: str, field_type: str | None, field: str | None, view: str | None, purpose: str
) -> str:
    parts = [str(action)]
    if field_type is not None:
        parts.append(f"of {field_type}")
    if field is not None:
        parts.append(f"{'field' if field_type is not None else 'of field'} {field!r}")
    if view is not None:
        parts.append(f"with view {view}")
    parts.append(f"for purpose {purpose!r}" if purpose else "with no purpose")
    return " ".join(parts)


# --- parsing ---------------------------------------------------------------------------------

_E = TypeVar("_E", bound=enum.StrEnum)


def _key(name: str) -> str:
    """Spell a TOML key the way the file would, so error places can be searched for."""
    if _BARE_KEY.fullmatch(name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _join(place: str, name: str) -> str:
    return f"{place}.{_key(name)}" if place else _key(name)


def _table(value: object, place: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{place}: expected a table")
    return value


def _check_keys(table: Mapping[str, object], place: str, known: tuple[str, ...]) -> None:
    for name in table:
        if name not in known:
            raise PolicyError(
                f"{_join(place, name)}: unknown key (expected one of {', '.join(known)})"
            )


def _string_list(table: Mapping[str, object], key: str, place: str) -> list[str] | None:
    """The list of strings at ``table[key]``, or ``None`` when the key is absent."""
    if key not in table:
        return None
    value = table[key]
    where = _join(place, key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where}: expected a list of strings")
    if not value:
        raise PolicyError(f"{where}: must not be empty")
    for item in value:
        if not item:
            raise PolicyError(f"{where}: empty string")
    return list(value)


def _enum_set(names: list[str], kind: type[_E], noun: str, place: str) -> frozenset[_E]:
    members: set[_E] = set()
    for name in names:
        try:
            members.add(kind(name))
        except ValueError:
            raise PolicyError(f"{place}: unknown {noun} {name!r}") from None
    return frozenset(members)


def _parse_fields(names: list[str], place: str) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    exact: set[str] = set()
    prefixes: list[str] = []
    for name in names:
        if name == _WILDCARD:
            return None, ()
        if name.endswith(".*") and len(name) > 2 and _WILDCARD not in name[:-2]:
            prefixes.append(name[:-1])  # keep the dot: "card.*" matches "card.x", not "cards"
        elif _WILDCARD in name:
            raise PolicyError(
                f"{place}: bad field pattern {name!r}: '*' may stand alone or end a name as '.*'"
            )
        else:
            exact.add(name)
    return frozenset(exact), tuple(prefixes)


def _parse_grant(raw: object, place: str) -> tuple[frozenset[Action], _Grant]:
    table = _table(raw, place)
    _check_keys(table, place, _GRANT_KEYS)

    action_names = _string_list(table, "actions", place)
    if action_names is None:
        raise PolicyError(f"{_join(place, 'actions')}: missing; a grant must list its actions")
    actions = _enum_set(action_names, Action, "action", _join(place, "actions"))

    type_names = _string_list(table, "field_types", place)
    if type_names is None:
        scoped = sorted(actions & _FIELD_SCOPED_ACTIONS)
        if scoped:
            raise PolicyError(
                f"{_join(place, 'field_types')}: missing; required for {', '.join(scoped)}"
                ' (use ["*"] for every type)'
            )
        type_names = [_WILDCARD]
    field_types: frozenset[str] | None = None
    if _WILDCARD not in type_names:
        members = _enum_set(type_names, FieldType, "field type", _join(place, "field_types"))
        field_types = frozenset(str(member) for member in members)

    field_names = _string_list(table, "fields", place) or [_WILDCARD]
    exact_fields, field_prefixes = _parse_fields(field_names, _join(place, "fields"))

    view_names = _string_list(table, "views", place) or [View.MASKED.value]
    views = _enum_set(view_names, View, "view", _join(place, "views"))

    purpose_names = _string_list(table, "purposes", place) or [_WILDCARD]
    named_purposes = frozenset(name for name in purpose_names if name != _WILDCARD)
    any_purpose = _WILDCARD in purpose_names

    if not named_purposes:
        # A grant whose reveal could never match is a policy bug: say so now.
        for action in sorted(actions):
            if action in _REVEALING_ACTIONS or (action == Action.GET and View.PLAINTEXT in views):
                what = "get with view plaintext" if action == Action.GET else str(action)
                raise PolicyError(
                    f"{_join(place, 'purposes')}: {what} needs a named purpose;"
                    " '*' does not grant a reveal"
                )

    grant = _Grant(
        rule=place,
        field_types=field_types,
        exact_fields=exact_fields,
        field_prefixes=field_prefixes,
        views=frozenset(str(v) for v in views),
        any_purpose=any_purpose,
        named_purposes=named_purposes,
    )
    return actions, grant


def _parse_policy(document: Mapping[str, object]) -> Policy:
    _check_keys(document, "", _TOP_KEYS)

    consent_purposes: set[str] = set()
    purposes = _table(document.get("purposes", {}), "purposes")
    for name, raw in purposes.items():
        place = _join("purposes", name)
        if not name or name == _WILDCARD:
            raise PolicyError(f"{place}: a purpose needs a name other than '' or '*'")
        spec = _table(raw, place)
        _check_keys(spec, place, _PURPOSE_KEYS)
        requires_consent = spec.get("requires_consent", False)
        if not isinstance(requires_consent, bool):
            raise PolicyError(f"{_join(place, 'requires_consent')}: expected true or false")
        if requires_consent:
            consent_purposes.add(name)

    index: dict[tuple[str, Action], list[_Grant]] = {}
    callers = _table(document.get("callers", {}), "callers")
    for caller, raw in callers.items():
        place = _join("callers", caller)
        if not caller:
            raise PolicyError(f"{place}: a caller needs a non-empty name")
        spec = _table(raw, place)
        _check_keys(spec, place, _CALLER_KEYS)
        grants = spec.get("grants", [])
        if not isinstance(grants, list):
            raise PolicyError(f"{_join(place, 'grants')}: expected an array of tables ([[...]])")
        for number, raw_grant in enumerate(grants):
            actions, grant = _parse_grant(raw_grant, f"{_join(place, 'grants')}[{number}]")
            for action in actions:
                index.setdefault((caller, action), []).append(grant)

    return Policy(
        {key: tuple(grants) for key, grants in index.items()},
        frozenset(callers),
        frozenset(consent_purposes),
    )


DEFAULT_POLICY_TOML: Final = """\
# pii-vault access policy.
#
# Deny by default: a caller (the CN of its client certificate) may do exactly
# what one of its grants below allows, and a caller not named here may do
# nothing. Grants are numbered from 0 in file order; audit events name the grant
# that allowed a call, e.g. "callers.checkout.grants[2]".
#
# A grant:
#   actions     put, get, detokenize, find, delete, shred, export, hold, consent, admin
#   field_types phone, email, address, card, payment_token, name, date_of_birth, or "*";
#               required when actions include put, get, detokenize, find, delete or export
#   fields      field names ("card.primary"), prefixes ("card.*") or "*" (default ["*"])
#   views       for get: masked, token, plaintext (default ["masked"])
#   purposes    purpose names or "*" (default ["*"])
#
# Revealing a value -- get with view plaintext, detokenize, export -- needs a
# purpose the grant names explicitly; "*" never grants a reveal.

# Purposes marked requires_consent are refused for a subject until it consents
# (SetConsent).
[purposes.marketing_sms]
requires_consent = true

# registration: stores a new account's contact data and asks whether a value
# is already registered. Masked and token views only, never plaintext.
[[callers.registration.grants]]
actions = ["put", "get", "find"]
field_types = ["phone", "email", "name", "address", "date_of_birth"]
views = ["masked", "token"]

# checkout: stores cards and payment tokens, reads the shipping address and the
# payment token for an order. Never a card number in plaintext.
[[callers.checkout.grants]]          # grants[0]
actions = ["put"]
field_types = ["card", "payment_token", "address"]

[[callers.checkout.grants]]          # grants[1]
actions = ["get"]
field_types = ["address", "card", "payment_token"]
views = ["masked", "token"]

[[callers.checkout.grants]]          # grants[2]
actions = ["get"]
field_types = ["payment_token"]
views = ["plaintext"]
purposes = ["checkout"]

[[callers.checkout.grants]]          # grants[3]
actions = ["detokenize"]
field_types = ["payment_token"]
purposes = ["checkout"]

# deletion: erases accounts. Deletes fields and shreds subjects; sees no value.
[[callers.deletion.grants]]
actions = ["delete", "shred"]
field_types = ["*"]

# privacy-desk: answers data-subject requests (DSAR). Plaintext and exports for
# purpose "dsar" only; sets legal holds and records consent.
[[callers.privacy-desk.grants]]      # grants[0]
actions = ["get"]
field_types = ["*"]
views = ["masked", "token"]

[[callers.privacy-desk.grants]]      # grants[1]
actions = ["get"]
field_types = ["*"]
views = ["plaintext"]
purposes = ["dsar"]

[[callers.privacy-desk.grants]]      # grants[2]
actions = ["export"]
field_types = ["*"]
purposes = ["dsar"]

[[callers.privacy-desk.grants]]      # grants[3]
actions = ["hold", "consent"]

# admin: operators. Key rotation, audit-chain checks, legal holds; no values.
[[callers.admin.grants]]
actions = ["admin", "hold"]
"""
