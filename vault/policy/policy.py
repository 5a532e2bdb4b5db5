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
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from vault.fields.base import FieldType
from vault.policy.identity import CN_IDENTITY, IdentityRules, IdentitySource
from vault.policy.limits import Budget, EnumerationAlarm, Rate, RateLimits

__all__ = [
    "DEFAULT_POLICY_TOML",
    "Action",
    "Decision",
    "FindAnswers",
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


class FindAnswers(enum.StrEnum):
    """What a ``find`` grant lets the caller learn about a searched value."""

    EXISTS = "exists"  # only whether some subject holds it: a dedupe's question
    SUBJECT_IDS = "subject_ids"  # which subjects hold it


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

_GRANT_KEYS: Final = ("actions", "field_types", "fields", "views", "purposes", "answers")
_PURPOSE_KEYS: Final = ("requires_consent",)
_CALLER_KEYS: Final = ("grants",)
_TOP_KEYS: Final = ("purposes", "callers", "limits", "identity")


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


class Policy:
    """An immutable, validated policy. Build one with ``from_toml`` or ``load``."""

    __slots__ = ("_callers", "_consent_purposes", "_index", "identity", "limits")

    def __init__(
        self,
        index: Mapping[tuple[str, Action], tuple[_Grant, ...]],
        callers: frozenset[str],
        consent_purposes: frozenset[str],
        limits: RateLimits | None = None,
        identity: IdentityRules = CN_IDENTITY,
    ) -> None:
        self._index: dict[tuple[str, Action], tuple[_Grant, ...]] = dict(index)
        self._callers = callers
        self._consent_purposes = consent_purposes
        self.limits = limits or RateLimits()
        # How a client certificate names its caller ([identity]).
        self.identity = identity

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

    def grants_any(
        self, caller: str, action: Action, *, field_type: str, field: str | None = None
    ) -> bool:
        """Whether some grant of ``caller`` covers ``action`` on this type and field, in any
        view and for any purpose.

        The vault asks this of a *stored* field before it refuses: a caller that
        could read the field in some view learns nothing new from a denial, while
        one that could not must get the answer a missing field gets.
        """
        for grant in self._index.get((caller, action), ()):
            if grant.covers(field_type, field):
                return True
        return False

    def find_answers(self, caller: str, field_type: str) -> FindAnswers:
        """What ``find`` may tell ``caller`` about a value of ``field_type``.

        ``subject_ids`` if any of its find grants for the type says so, else
        ``exists`` (was the value found at all). Callers without a find grant
        are refused before this is asked.
        """
        for grant in self._index.get((caller, Action.FIND), ()):
            if grant.covers(field_type, None) and grant.answers is FindAnswers.SUBJECT_IDS:
                return FindAnswers.SUBJECT_IDS
        return FindAnswers.EXISTS

    def refusal(
        self,
        caller: str,
        action: Action,
        *,
        field: str | None = None,
        view: View | None = None,
        purpose: str = "",
    ) -> str:
        """Why a request was refused, in the request's own terms.

        Names the caller, the action and the field name, view and purpose it
        sent, never a stored fact such as the stored field's type: a refusal
        decided after a lookup must not tell the caller what it looked up.
        """
        effective_view = _effective_view(action, view)
        wanted = _describe(action, None, field, effective_view, purpose)
        if caller not in self._callers:
            return f"caller {caller!r} is not named in the policy, so it may not {wanted}"
        reason = f"no grant of caller {caller!r} allows {wanted}"
        if _is_reveal(action, effective_view) and not purpose:
            reason += "; revealing a value needs a named purpose"
        return reason

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

    answers = _parse_answers(table, actions, place)

    grant = _Grant(
        rule=place,
        field_types=field_types,
        exact_fields=exact_fields,
        field_prefixes=field_prefixes,
        views=frozenset(str(v) for v in views),
        any_purpose=any_purpose,
        named_purposes=named_purposes,
        answers=answers,
    )
    return actions, grant


def _parse_answers(
    table: Mapping[str, object], actions: frozenset[Action], place: str
) -> FindAnswers:
    """A grant's ``answers``: what its ``find`` tells; only a grant of ``find`` may say."""
    if "answers" not in table:
        return FindAnswers.EXISTS
    where = _join(place, "answers")
    if Action.FIND not in actions:
        raise PolicyError(f"{where}: applies to find only, and this grant does not list find")
    value = table["answers"]
    if not isinstance(value, str):
        raise PolicyError(f"{where}: expected a string ({', '.join(FindAnswers)})")
    try:
        return FindAnswers(value)
    except ValueError:
        raise PolicyError(
            f"{where}: unknown answer {value!r} (expected one of {', '.join(FindAnswers)})"
        ) from None


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
        _parse_limits(document.get("limits", {}), frozenset(callers)),
        _parse_identity(document.get("identity", {}), frozenset(callers)),
    )


# --- [limits] ----------------------------------------------------------------------------

_LIMITS_KEYS: Final = ("default", "callers")
# Per budget: the key prefix in the file ("denials_per_second" counts denials).
_BUDGET_PREFIX: Final = {Budget.SEARCH: "search", Budget.PUT: "put", Budget.DENIAL: "denials"}
_ALARM_WINDOW: Final = "search_alarm_window_seconds"
_ALARM_MISSES: Final = "search_alarm_misses"
_ALARM_SAME_MASK: Final = "search_alarm_same_mask"
_LIMIT_KEYS: Final = (
    *(f"{prefix}_{part}" for prefix in _BUDGET_PREFIX.values() for part in ("per_second", "burst")),
    _ALARM_WINDOW,
    _ALARM_MISSES,
    _ALARM_SAME_MASK,
)


def _limit_number(value: object, where: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where}: expected {'an integer' if integer else 'a number'}")
    if integer and not isinstance(value, int):
        raise PolicyError(f"{where}: expected an integer")
    if not math.isfinite(value) or value <= 0:
        raise PolicyError(f"{where}: must be a positive, finite number")
    return float(value)


def _limit_table(raw: object, place: str) -> dict[str, tuple[float, str]]:
    """A ``[limits.*]`` table: each known key's checked number and the place it was set."""
    table = _table(raw, place)
    _check_keys(table, place, _LIMIT_KEYS)
    checked: dict[str, tuple[float, str]] = {}
    for name, value in table.items():
        where = _join(place, name)
        integer = name.endswith("_burst") or name in (_ALARM_MISSES, _ALARM_SAME_MASK)
        number = _limit_number(value, where, integer=integer)
        if name.endswith("_burst") and number < 1:
            raise PolicyError(f"{where}: must be at least 1")
        checked[name] = (number, where)
    return checked


def _rates(settings: Mapping[str, tuple[float, str]], place: str) -> dict[Budget, Rate]:
    rates: dict[Budget, Rate] = {}
    for budget, prefix in _BUDGET_PREFIX.items():
        per_second = settings.get(f"{prefix}_per_second")
        burst = settings.get(f"{prefix}_burst")
        if per_second is None and burst is None:
            continue
        if per_second is None or burst is None:
            given, missing = (
                (f"{prefix}_burst", f"{prefix}_per_second")
                if per_second is None
                else (f"{prefix}_per_second", f"{prefix}_burst")
            )
            raise PolicyError(f"{_join(place, missing)}: missing; {given} needs it")
        rates[budget] = Rate(per_second=per_second[0], burst=burst[0])
    return rates


def _alarm(settings: Mapping[str, tuple[float, str]], place: str) -> EnumerationAlarm | None:
    window = settings.get(_ALARM_WINDOW)
    misses = settings.get(_ALARM_MISSES)
    same_mask = settings.get(_ALARM_SAME_MASK)
    if window is None:
        if misses is not None or same_mask is not None:
            raise PolicyError(
                f"{_join(place, _ALARM_WINDOW)}: missing; the alarm thresholds need a window"
            )
        return None
    if misses is None and same_mask is None:
        raise PolicyError(
            f"{window[1]}: a window alone sounds no alarm;"
            f" set {_ALARM_MISSES} or {_ALARM_SAME_MASK}"
        )
    return EnumerationAlarm(
        window_seconds=window[0],
        misses=None if misses is None else int(misses[0]),
        same_mask=None if same_mask is None else int(same_mask[0]),
    )


def _parse_limits(raw: object, callers: frozenset[str]) -> RateLimits:
    """``[limits.default]`` and ``[limits.callers.NAME]``; a caller's keys override the default's.

    Every key is checked where it is written; a caller table must name a caller
    of ``[callers]``, so that a misspelt name cannot leave the real caller on
    the default limits unnoticed.
    """
    table = _table(raw, "limits")
    _check_keys(table, "limits", _LIMITS_KEYS)
    default = _limit_table(table.get("default", {}), "limits.default")
    per_caller: dict[str, Mapping[Budget, Rate]] = {}
    alarm_per_caller: dict[str, EnumerationAlarm] = {}
    for caller, raw_caller in _table(table.get("callers", {}), "limits.callers").items():
        place = _join("limits.callers", caller)
        if caller not in callers:
            raise PolicyError(f"{place}: no caller {caller!r} in [callers]")
        own = _limit_table(raw_caller, place)
        merged = {**default, **own}
        per_caller[caller] = _rates(merged, place)
        alarm = _alarm(merged, place)
        if alarm is not None:
            alarm_per_caller[caller] = alarm
    return RateLimits(
        default=_rates(default, "limits.default"),
        per_caller=per_caller,
        alarm=_alarm(default, "limits.default"),
        alarm_per_caller=alarm_per_caller,
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
#   answers     for find: "exists" (default: only whether some subject holds the
#               value) or "subject_ids" (which subjects hold it)
#
# Revealing a value -- get with view plaintext, detokenize, export -- needs a
# purpose the grant names explicitly; "*" never grants a reveal.

# Purposes marked requires_consent are refused for a subject until it consents
# (SetConsent).
[purposes.marketing_sms]
requires_consent = true

# registration: stores a new account's contact data and asks whether a value
# is already registered. Masked and token views only, never plaintext. Its
# dedupe needs "is it held?", not whose it is, so its find answers "exists"
# (the default; answers = "subject_ids" would name the holders).
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

# Rate limits, per caller and per server process (N replicas allow N times
# these). Each answer a caller could use to test a guess is budgeted: a search,
# a put (or idempotent replay), a denial (each costs an audit write). A bucket
# holds *_burst answers and refills at *_per_second; an empty one answers
# RESOURCE_EXHAUSTED with google.rpc.RetryInfo. [limits.callers.NAME] tables
# override single keys of [limits.default] for one caller of [callers].
#
# At 1 search a second, recovering a mobile number from its mask (about 10^5
# candidates) takes some 14 hours on average; the enumeration alarm below
# stops it far sooner: more than 20 missed values sharing one mask (or 300
# misses) within 10 minutes is logged CRITICAL, audited with severity=high,
# and refuses the caller's searches for the next 10 minutes.
[limits.default]
search_per_second = 1.0
search_burst = 30
put_per_second = 100.0
put_burst = 1000
denials_per_second = 1.0
denials_burst = 100
search_alarm_window_seconds = 600
search_alarm_misses = 300
search_alarm_same_mask = 20
"""


# --- [identity] --------------------------------------------------------------------------

_IDENTITY_KEYS: Final = ("source", "uris", "uri_prefix")


def _parse_identity(raw: object, callers: frozenset[str]) -> IdentityRules:
    """``[identity]``: where a certificate's one caller name comes from (default: its CN).

    A typo must not quietly hand an identity to the wrong caller, so a mapped
    URI must name a caller of ``[callers]``, and ``source = "uri_san"`` needs
    at least one way to map (``uris`` or ``uri_prefix``); the other keys are
    refused with ``source = "cn"``, where they would do nothing.
    """
    table = _table(raw, "identity")
    _check_keys(table, "identity", _IDENTITY_KEYS)
    name = table.get("source", IdentitySource.CN.value)
    try:
        source = IdentitySource(name)
    except ValueError:
        raise PolicyError(
            f"identity.source: unknown source {name!r} "
            f"(expected one of {', '.join(IdentitySource)})"
        ) from None
    uris: dict[str, str] = {}
    for uri, caller in _table(table.get("uris", {}), "identity.uris").items():
        where = _join("identity.uris", uri)
        if not _is_uri(uri):
            raise PolicyError(f"{where}: expected an absolute URI such as spiffe://domain/path")
        if not isinstance(caller, str) or caller not in callers:
            raise PolicyError(f"{where}: expected the name of a caller in [callers]")
        uris[uri] = caller
    prefix = table.get("uri_prefix", "")
    if not isinstance(prefix, str) or (prefix and not (_is_uri(prefix) and prefix.endswith("/"))):
        raise PolicyError(
            "identity.uri_prefix: expected an absolute URI ending in '/', "
            "such as spiffe://domain/ns/prod/sa/"
        )
    if source is IdentitySource.CN and (uris or prefix):
        raise PolicyError('identity: uris and uri_prefix need source = "uri_san"')
    if source is IdentitySource.URI_SAN and not (uris or prefix):
        raise PolicyError('identity: source = "uri_san" needs uris or uri_prefix')
    return IdentityRules(source, MappingProxyType(uris), prefix)


def _is_uri(text: str) -> bool:
    scheme, sep, rest = text.partition("://")
    return bool(
        sep and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) and rest and text.isprintable()
    ) and not any(c.isspace() for c in text)
