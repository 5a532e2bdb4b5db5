"""The audit trail: who did what to which field, for which purpose.

Reveals, detokenizations and denials are written *before* the answer leaves:
if the write fails, the call fails (fail closed). An event never holds a
value, only names and outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vault.errors import Unavailable, VaultError
from vault.storage.database import Store
from vault.storage.repository import AuditRecord, append_audit, audit_events


class AuditLog:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def record(
        self,
        caller: str,
        action: str,
        *,
        subject_id: str = "",
        field: str = "",
        view: str = "",
        purpose: str = "",
        outcome: str = "ok",
        status_code: str = "OK",
        detail: str = "",
    ) -> None:
        event = AuditRecord(
            self._clock(),
            caller,
            action,
            subject_id,
            field,
            view,
            purpose,
            outcome,
            status_code,
            detail,
        )
        try:
            with self._store.write() as tx:
                append_audit(tx.data, event)
        except VaultError:
            raise
        except Exception:
            raise Unavailable("the audit log cannot be written") from None

    def events(self, subject_id: str | None = None) -> list[AuditRecord]:
        with self._store.read() as tx:
            return audit_events(tx.data, subject_id)
