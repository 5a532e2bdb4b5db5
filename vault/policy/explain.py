"""``policy explain``: what the policy would decide for one call, and which grant decides it.

An operator asks before a deploy ("may checkout read ``card.primary`` in
plaintext?") and gets the same answer the server would give, because the
same ``Policy.decide`` answers it: ALLOW with the grant that allows the
call, or DENY with the reason. Nothing here talks to a server or reads a
value, so the text is safe to paste into a ticket.

The check is built the way the server builds it for the matching RPC: a
field-scoped action names a field type (and, except for ``find``, a field
name); subject-wide actions (``shred``, ``hold``, ``consent``, ``admin``)
name neither; ``view`` exists only for ``get``, and a purpose only for the
calls that carry one (``get``, ``detokenize``, ``export``, ``consent``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from vault.fields.base import FieldType
from vault.policy.policy import Action, Decision, Policy, View

__all__ = ["ExplainError", "Explanation", "explain", "infer_field_type"]

_FIELD_TYPES: Final = frozenset(str(member) for member in FieldType)
# The server checks these with the stored (or stored-to-be) field's name and type.
_NAMED_FIELD_ACTIONS: Final = frozenset({Action.PUT, Action.GET, Action.DETOKENIZE, Action.DELETE})
# The server checks these on a whole subject: no field, no field type.
_SUBJECT_ACTIONS: Final = frozenset({Action.SHRED, Action.HOLD, Action.CONSENT, Action.ADMIN})
# Only these RPCs carry a purpose; the server checks every other action with none.
_PURPOSE_ACTIONS: Final = frozenset({Action.GET, Action.DETOKENIZE, Action.EXPORT, Action.CONSENT})
# Purposes marked requires_consent are checked against the subject by these.
_CONSENT_CHECKED_ACTIONS: Final = frozenset({Action.GET, Action.DETOKENIZE, Action.EXPORT})


class ExplainError(ValueError):
    """The question cannot be asked as given; the message says what to add or drop."""


@dataclass(frozen=True)
class Explanation:
    """A decision and the request it answers; ``str()`` is the text ``policy explain`` prints."""

    decision: Decision
    caller: str
    action: Action
    field: str | None
    field_type: str | None
    field_type_from: str  # the name the type was read from; "" when given outright
    view: View | None
    purpose: str
    requires_consent: bool

    def __str__(self) -> str:
        lines = ["ALLOW" if self.decision.allowed else "DENY"]
        lines.append(f"caller:  {self.caller}")
        lines.append(f"action:  {self.action}")
        if self.field is not None:
            lines.append(f"field:   {self.field}")
        if self.field_type is not None:
            source = f" (from the name {self.field_type_from!r})" if self.field_type_from else ""
            lines.append(f"type:    {self.field_type}{source}")
        if self.action == Action.GET:
            lines.append(f"view:    {self.view or View.MASKED}")
        lines.append(f"purpose: {self.purpose!r}" if self.purpose else "purpose: (none)")
        if self.decision.allowed:
            lines.append(f"rule:    {self.decision.rule}")
        lines.append(f"reason:  {self.decision.reason}")
        if self.decision.allowed and self.requires_consent:
            lines.append(
                f"note:    purpose {self.purpose!r} requires consent: the call is still refused"
                " for a subject that has not consented (SetConsent)"
            )
        return "\n".join(lines)


def infer_field_type(field: str) -> str | None:
    """The type a field name announces by its first dotted part (``card.primary`` → card)."""
    head = field.split(".", 1)[0]
    return head if head in _FIELD_TYPES else None


def explain(
    policy: Policy,
    caller: str,
    action: Action | str,
    field: str | None = None,
    field_type: str | None = None,
    view: View | str | None = None,
    purpose: str = "",
) -> Explanation:
    """Decide one call as the server would and say why.

    ``field_type`` defaults to what the field name announces. Raises
    ``ExplainError`` when the call is not one the server could be asked:
    an unknown action, type or view, a field-scoped action without a type
    (or without a field name where the server always has one), or a field,
    type or view given to an action that takes none.
    """
    try:
        wanted = Action(action)
    except ValueError:
        known = ", ".join(str(member) for member in Action)
        raise ExplainError(f"unknown action {action!r} (expected one of {known})") from None
    try:
        wanted_view = None if view is None else View(view)
    except ValueError:
        known = ", ".join(str(member) for member in View)
        raise ExplainError(f"unknown view {view!r} (expected one of {known})") from None
    if wanted_view is not None and wanted != Action.GET:
        raise ExplainError(f"a view applies to get only, not to {wanted}")
    if purpose and wanted not in _PURPOSE_ACTIONS:
        raise ExplainError(f"a {wanted} call carries no purpose: the server checks it with none")
    if field == "":
        field = None

    if wanted in _SUBJECT_ACTIONS:
        if field is not None or field_type is not None:
            raise ExplainError(f"{wanted} acts on a whole subject: give no field and no --type")
        decision = policy.decide(caller, wanted, purpose=purpose)
        return Explanation(
            decision,
            caller,
            wanted,
            None,
            None,
            "",
            None,
            purpose,
            False,
        )

    field_type_from = ""
    if field_type is None and field is not None:
        field_type = infer_field_type(field)
        field_type_from = field
        if field_type is None:
            types = ", ".join(sorted(_FIELD_TYPES))
            raise ExplainError(
                f"cannot tell the type of field {field!r} from its name; give --type ({types})"
            )
    if field_type is not None and field_type not in _FIELD_TYPES:
        types = ", ".join(sorted(_FIELD_TYPES))
        raise ExplainError(f"unknown field type {field_type!r} (expected one of {types})")
    if wanted in _NAMED_FIELD_ACTIONS and field is None:
        raise ExplainError(f"{wanted} acts on one field: name it (e.g. card.primary)")
    if wanted == Action.FIND and field_type is None:
        raise ExplainError("find searches one field type: give --type or a field name")
    if wanted == Action.FIND:
        # FindSubjects sends a value, not a field name: the server checks the type alone.
        field = None

    decision = policy.decide(
        caller,
        wanted,
        field_type=field_type,
        field=field,
        view=wanted_view,
        purpose=purpose,
    )
    return Explanation(
        decision,
        caller,
        wanted,
        field,
        field_type,
        field_type_from,
        wanted_view,
        purpose,
        wanted in _CONSENT_CHECKED_ACTIONS and policy.requires_consent(purpose),
    )
