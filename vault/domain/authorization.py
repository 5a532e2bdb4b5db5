"""The one policy gate every use case goes through.

Asks the (cheap) ``allows`` first; only a denial builds the reason, is written
to the audit log before the answer leaves, and raises ``PermissionDenied``.
"""

from __future__ import annotations

from vault.audit.log import AuditLog
from vault.errors import PermissionDenied
from vault.policy import Action, Policy, View


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
) -> None:
    named = field or None
    if policy.allows(
        caller, action, field_type=field_type, field=named, view=view, purpose=purpose
    ):
        return
    decision = policy.decide(
        caller, action, field_type=field_type, field=named, view=view, purpose=purpose
    )
    audit.record(
        caller,
        audit_action or str(action),
        subject_id=subject_id,
        field=field,
        view=str(view or ""),
        purpose=purpose,
        outcome="denied",
        status_code="PERMISSION_DENIED",
    )
    raise PermissionDenied(decision.reason)
