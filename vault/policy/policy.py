"""Deny-by-default access policy: which caller may do what, to which fields, and why.

A caller (the CN of its client certificate) gets exactly what its grants in
``policy.toml`` say and nothing more; a caller the file does not name gets
nothing. The file is parsed and checked once, by the declared schema in
``vault.policy.schema``: any unknown key, action, view or field type is an
error that names its place, because a typo in an access policy must never
silently widen (or quietly narrow) access.

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

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Final

from vault.fields.base import FieldType
from vault.policy.grants import REVEALING_ACTIONS, Action, FindAnswers, Grant, PolicyError, View
from vault.policy.identity import CN_IDENTITY, IdentityRules
from vault.policy.limits import RateLimits
from vault.policy.schema import parse_policy

__all__ = [
    "DEFAULT_POLICY_TOML",
    "Action",
    "Decision",
    "FindAnswers",
    "Policy",
    "PolicyError",
    "View",
]

DEFAULT_POLICY_TOML: Final = (
    files("vault.policy").joinpath("default_policy.toml").read_text(encoding="utf-8")
)
"""The policy ``pii-vault init`` writes: ``default_policy.toml``, shipped in the package."""


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


# The hot path compares plain strings: reading an enum member off its class
# costs more than the whole rest of a check on CPython 3.11.
_GET: Final = Action.GET.value
_MASKED: Final = View.MASKED.value
_PLAINTEXT: Final = View.PLAINTEXT.value
_FIELD_TYPES: Final = frozenset(member.value for member in FieldType)
_MAX_DECISIONS: Final = 65_536
"""Compiled ``allows`` answers one policy keeps before it starts afresh."""


def _effective_view(action: str, view: str | None) -> str | None:
    """``get`` defaults to masked; other actions have no view at all."""
    if action != _GET:
        return None
    return _MASKED if view is None else view


def _is_reveal(action: str, effective_view: str | None) -> bool:
    return effective_view == _PLAINTEXT or action in REVEALING_ACTIONS


class Policy:
    """An immutable, validated policy. Build one with ``from_toml`` or ``load``."""

    __slots__ = ("_callers", "_consent_purposes", "_decisions", "_index", "identity", "limits")

    def __init__(
        self,
        index: Mapping[tuple[str, Action], tuple[Grant, ...]],
        callers: frozenset[str],
        consent_purposes: frozenset[str],
        limits: RateLimits | None = None,
        identity: IdentityRules = CN_IDENTITY,
    ) -> None:
        self._index: dict[tuple[str, Action], tuple[Grant, ...]] = dict(index)
        self._callers = callers
        self._consent_purposes = consent_purposes
        self.limits = limits or RateLimits()
        self._decisions: dict[
            tuple[str, Action, str | None, str | None, View | None, str], bool
        ] = {}
        # How a client certificate names its caller ([identity]).
        self.identity = identity

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """Parse and validate a policy document; raise ``PolicyError`` naming the place."""
        parts = parse_policy(text)
        return cls(parts.index, parts.callers, parts.consent_purposes, parts.limits, parts.identity)

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
        """The hot-path form of ``decide``: same answer, no reason built.

        Answers are compiled per caller x action x type x field x view x
        purpose on first use and kept for the life of this (immutable) policy,
        so a reload starts afresh. The table is bounded: field names and
        purposes come from callers, so it is emptied when it fills up.
        """
        key = (caller, action, field_type, field, view, purpose)
        known = self._decisions.get(key)
        if known is None:
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            known = self._find_grant(caller, action, field_type, field, view, purpose) is not None
            self._decisions[key] = known
        return known

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
    ) -> Grant | None:
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
