"""The one policy gate every use case goes through.

Asks the (cheap) ``allows`` first; only a denial builds the reason, is written
to the audit log before the answer leaves, and raises.

What must hold for every denial:

- Its message names the caller's request (caller, action, the field name it
  sent, view, purpose), never a stored fact: ``require`` is given only what the
  request carries, and ``require_stored`` -- the check against a stored field's
  type -- words its refusal without that type.
- A caller with no grant that could read a stored field gets exactly the answer
  a missing field gets (``hidden``), so a denial does not tell it what exists;
  the audit log still records the denial.
- Denials are budgeted per caller (``Budget.DENIAL``): each costs an audit
  write, so a caller that spends its budget gets ``RESOURCE_EXHAUSTED`` (or,
  for a hidden denial, the missing-field answer) without a write, and the
  suppressed denials are counted in one buffered event.
"""

from __future__ import annotations

from vault.audit.log import AuditLog
from vault.audit.records import AuditOutcome
from vault.domain.rate_limit import Budget, RateLimiter
from vault.errors import PermissionDenied, Reason, ResourceExhausted, VaultError
from vault.policy import Action, Policy, View
from vault.policy.grants import REVEALING_ACTIONS

SUPPRESSED_DENIALS = "denials-suppressed"
"""Audit action of the buffered event counting denials refused without an audit write each."""


def require(
    policy: Policy,
    audit: AuditLog,
    caller: str,
    action: Action,
    *,
    audit_action: str = "",
    subject_id: str = "",
    field: str = "",
    field_type: str | None = None,
    view: View | None = None,
    purpose: str = "",
    limiter: RateLimiter | None = None,
) -> None:
    """Refuse (audited) unless a grant allows the request; every argument is the request's own."""
    named = field or None
    if policy.allows(
        caller, action, field_type=field_type, field=named, view=view, purpose=purpose
    ):
        return
    decision = policy.decide(
        caller, action, field_type=field_type, field=named, view=view, purpose=purpose
    )
    _deny(
        audit,
        limiter,
        caller,
        audit_action or str(action),
        PermissionDenied(decision.reason, reason=_denial_reason(action, view, purpose)),
        subject_id=subject_id,
        field=field,
        view=str(view or ""),
        purpose=purpose,
        status_code="PERMISSION_DENIED",
        detail="",
    )


def require_stored(
    policy: Policy,
    audit: AuditLog,
    caller: str,
    action: Action,
    *,
    stored_type: str,
    subject_id: str,
    field: str,
    sent_field: str | None,
    view: View | None = None,
    purpose: str = "",
    hidden: VaultError | None,
    limiter: RateLimiter | None = None,
) -> None:
    """Refuse (audited) unless a grant allows ``action`` on a stored field of ``stored_type``.

    ``hidden`` is what the caller is answered when it may not learn that the
    field exists: exactly the answer a missing field gets. With ``None`` the
    caller may know (it could read the field some other way) and gets a
    ``PermissionDenied`` worded in the request's terms: ``sent_field`` is the
    field name the request carried (``None`` for a token or a whole subject),
    and the stored type is never named.
    """
    if policy.allows(
        caller, action, field_type=stored_type, field=field, view=view, purpose=purpose
    ):
        return
    decision = policy.decide(
        caller, action, field_type=stored_type, field=field, view=view, purpose=purpose
    )
    if hidden is None:
        answer: VaultError = PermissionDenied(
            policy.refusal(caller, action, field=sent_field, view=view, purpose=purpose),
            reason=_denial_reason(action, view, purpose),
        )
        status_code, detail = "PERMISSION_DENIED", ""
    else:
        # The audit log is for operators: it may say what the caller was not told.
        answer, status_code = hidden, "NOT_FOUND"
        detail = f"answered as missing: {decision.reason}"
    _deny(
        audit,
        limiter,
        caller,
        str(action),
        answer,
        subject_id=subject_id,
        field=field,
        view=str(view or ""),
        purpose=purpose,
        status_code=status_code,
        detail=detail,
    )


def _denial_reason(action: Action, view: View | None, purpose: str) -> Reason:
    """``PURPOSE_REQUIRED`` for a reveal that named no purpose, else ``POLICY_DENIED``.

    Decided from the request alone, like the message: never from a stored fact.
    """
    reveals = (action == Action.GET and view == View.PLAINTEXT) or action in REVEALING_ACTIONS
    if reveals and not purpose:  # no grant allows a reveal without a named purpose
        return Reason.PURPOSE_REQUIRED
    return Reason.POLICY_DENIED


def _deny(
    audit: AuditLog,
    limiter: RateLimiter | None,
    caller: str,
    action: str,
    answer: VaultError,
    *,
    subject_id: str,
    field: str,
    view: str,
    purpose: str,
    status_code: str,
    detail: str,
) -> None:
    """Audit the denial (within the caller's denial budget) and raise ``answer``."""
    if limiter is not None:
        try:
            limiter.take(caller, Budget.DENIAL)
        except ResourceExhausted as exhausted:
            audit.count_later(caller, SUPPRESSED_DENIALS, detail="over the denial rate limit")
            if status_code == "NOT_FOUND":
                # A hidden denial must still answer exactly as a missing field.
                raise answer from None
            raise exhausted from None
    audit.record(
        caller,
        action,
        subject_id=subject_id,
        field=field,
        view=view,
        purpose=purpose,
        outcome=AuditOutcome.DENIED,
        status_code=status_code,
        detail=detail,
    )
    raise answer
