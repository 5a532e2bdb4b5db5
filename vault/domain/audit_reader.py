"""Reading and verifying the audit log: operators only (``admin``)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime

from vault.audit.chain import ChainCheck
from vault.audit.log import AuditLog
from vault.audit.records import AuditAction, AuditRecord, ChainedEvent
from vault.domain.authorization import require
from vault.domain.rate_limit import RateLimiter
from vault.errors import InvalidArgument
from vault.policy import Action, Policy

__all__ = ["AuditReader", "AuditRecord", "ChainedEvent"]

MAX_PAGE = 1000
MAX_ANCHORS = 100_000
HASH_BYTES = 32
DEFAULT_PAGE = 100


def _page_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"after:{sequence}".encode()).decode()


def _after(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "after":
            raise ValueError(prefix)
        return int(number)
    except ValueError:
        raise InvalidArgument("page_token", "is not a token this service issued") from None


class AuditReader:
    def __init__(
        self,
        audit: AuditLog,
        policy: Callable[[], Policy],
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._audit = audit
        self._policy = policy
        self._limiter = limiter

    def _require(self, caller: str, action: str) -> None:
        require(
            self._policy(),
            self._audit,
            caller,
            Action.ADMIN,
            audit_action=action,
            limiter=self._limiter,
        )

    def list_events(
        self,
        caller: str,
        *,
        subject_id: str = "",
        event_caller: str = "",
        action: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[ChainedEvent], str]:
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        after = _after(page_token)
        self._require(caller, AuditAction.AUDIT_LIST)
        self._audit.flush()
        limit = page_size or DEFAULT_PAGE
        events = self._audit.page(
            after_sequence=after,
            limit=limit + 1,
            subject_id=subject_id,
            caller=event_caller,
            action=action,
            start=start,
            end=end,
        )
        more = len(events) > limit
        events = events[:limit]
        return events, (_page_token(events[-1].sequence) if more and events else "")

    def verify(self, caller: str, anchors: Sequence[tuple[int, bytes]] = ()) -> ChainCheck:
        """Recompute the keyed chain and hold it against ``anchors`` (sequence, hash).

        Two anchors for one position that disagree cannot both be true: the
        check fails there.
        """
        if len(anchors) > MAX_ANCHORS:
            raise InvalidArgument("anchors", f"may hold at most {MAX_ANCHORS} anchors")
        by_sequence: dict[int, bytes] = {}
        disagreeing: list[int] = []
        for index, (sequence, digest) in enumerate(anchors):
            if sequence < 0:
                raise InvalidArgument(f"anchors[{index}].sequence", "must not be negative")
            if len(digest) != HASH_BYTES:
                raise InvalidArgument(f"anchors[{index}].hash", f"must be {HASH_BYTES} bytes")
            if by_sequence.setdefault(sequence, digest) != digest:
                disagreeing.append(sequence)
        self._require(caller, AuditAction.AUDIT_VERIFY)
        if disagreeing:
            return ChainCheck(
                False, 0, min(disagreeing), "two anchors disagree about this position"
            )
        self._audit.flush()
        return self._audit.verify(by_sequence)
