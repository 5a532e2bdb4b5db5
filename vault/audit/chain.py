"""The keyed audit chain: appending, re-chaining and verifying, over stored rows.

Storage only stores and pages the rows (``AuditChainRows``); every hash is
computed here (``vault.crypto.hash_chain``). What must hold:

- an append reads the head under its lock, chains each event to the one
  before (HMAC-SHA256 under the audit key) and moves the head, in the
  caller's transaction, so the chain never forks;
- a chain whose head is unkeyed is never extended (``UnkeyedChainError``):
  it is re-chained under the key first, or refused;
- verification names the first position that breaks, and every anchor
  (sequence -> hash, recorded outside the database) must name an event the
  chain still holds with exactly that hash: an anchor past the end means
  events were removed from the tail, even if the head was rewound.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from vault.audit.records import AuditAnchor, AuditHead, AuditRecord, ChainedEvent
from vault.crypto.hash_chain import GENESIS, KEYED, chain_hash, unkeyed_hash

_DOCUMENT_FIELDS = (
    "caller",
    "action",
    "subject_id",
    "field",
    "view",
    "purpose",
    "outcome",
    "status_code",
    "detail",
)


class AuditChainRows(Protocol):
    """The stored chain, as the chain code needs it (``vault.storage.audit_events``)."""

    def head(self, *, lock: bool = False) -> AuditHead | None: ...

    def create_head(self, last_hash: bytes, scheme: str) -> None: ...

    def set_head(self, last_sequence: int, last_hash: bytes, scheme: str | None = None) -> None: ...

    def insert(self, events: Sequence[ChainedEvent]) -> None: ...

    def chain_from(self, first_sequence: int, limit: int) -> list[ChainedEvent]: ...

    def rehash(self, changes: Sequence[tuple[int, bytes, bytes]]) -> None: ...


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events_checked: int
    first_bad_position: int
    problem: str
    anchors_checked: int = 0


@dataclass(frozen=True)
class Rechained:
    """What re-chaining an unkeyed chain found and did."""

    events: int
    unkeyed_check: ChainCheck

    @property
    def detail(self) -> str:
        """The ``audit-rekey`` event's detail: what was re-chained, and what the check found."""
        found = self.unkeyed_check
        return (
            f"re-chained {self.events} events of the unkeyed SHA-256 chain under "
            "HMAC-SHA256 with the key provider's audit key; the unkeyed chain "
            + (
                "verified"
                if found.ok
                else f"was BROKEN at position {found.first_bad_position}: {found.problem}"
            )
        )


class UnkeyedChainError(Exception):
    """The chain head says the chain is unkeyed: it must be re-chained under the key first."""


def event_document(sequence: int, record: AuditRecord) -> dict[str, object]:
    """What an event's hash covers: every field of the record, its position and time."""
    document: dict[str, object] = {name: getattr(record, name) for name in _DOCUMENT_FIELDS}
    document["sequence"] = sequence
    time = record.time if record.time.tzinfo else record.time.replace(tzinfo=UTC)
    document["time"] = time.astimezone(UTC).isoformat()
    return document


def anchor(rows: AuditChainRows) -> AuditAnchor:
    """The chain head now: what a receipt or an export signs as its ``audit_anchor``."""
    head = rows.head()
    return (
        AuditAnchor(0, GENESIS) if head is None else AuditAnchor(head.last_sequence, head.last_hash)
    )


def append(rows: AuditChainRows, key: bytes, *records: AuditRecord) -> list[ChainedEvent]:
    """Append events to the keyed chain, holding the chain head's row lock until commit.

    One read of the head, one insert of all rows, one update of the head,
    whatever the number of events.
    """
    head = rows.head(lock=True)
    if head is None:
        rows.create_head(GENESIS, KEYED)
        sequence, prev = 0, GENESIS
    elif head.scheme != KEYED:
        raise UnkeyedChainError("the audit chain head is unkeyed")
    else:
        sequence, prev = head.last_sequence, head.last_hash
    chained = []
    for record in records:
        sequence += 1
        digest = chain_hash(key, prev, event_document(sequence, record))
        chained.append(ChainedEvent(sequence, record, prev, digest))
        prev = digest
    if chained:
        rows.insert(chained)
        rows.set_head(sequence, prev)
    return chained


def rechain_unkeyed(rows: AuditChainRows, key: bytes, batch: int = 5000) -> Rechained | None:
    """Recompute an unkeyed chain's hashes under ``key`` and mark the head keyed.

    Returns None when there is nothing to do (no head, or already keyed).
    The unkeyed chain is checked first and the result returned, so that the
    caller can record what it was; the rows are re-chained as they stand, in
    sequence order, so a gap stays a gap. Holds the head's row lock: one
    replica re-chains, the others then find the head keyed.
    """
    head = rows.head(lock=True)
    if head is None or head.scheme == KEYED:
        return None
    unkeyed_check = _walk(rows, lambda prev, doc: unkeyed_hash(prev, doc), {}, batch)
    prev, after, count = GENESIS, 0, 0
    while True:
        events = rows.chain_from(after + 1, batch)
        changes = []
        for event in events:
            digest = chain_hash(key, prev, event_document(event.sequence, event.record))
            changes.append((event.sequence, prev, digest))
            prev, after, count = digest, event.sequence, count + 1
        rows.rehash(changes)
        if len(events) < batch:
            break
    rows.set_head(after, prev, KEYED)
    return Rechained(count, unkeyed_check)


_CATCH_UP_ROUNDS = 100
"""How many times a verify walks on after events appended while it ran."""


def verify(
    rows: AuditChainRows,
    key: bytes,
    anchors: Mapping[int, bytes] | None = None,
    batch: int = 5000,
) -> ChainCheck:
    """Recompute the keyed chain from the first event; name the first position that breaks."""
    head = rows.head()
    if head is not None and head.scheme != KEYED:
        return ChainCheck(False, 0, 1, "the chain is not keyed under this vault's audit key")
    return _walk(rows, lambda prev, doc: chain_hash(key, prev, doc), anchors or {}, batch)


def _walk(
    rows: AuditChainRows,
    digest_of: Callable[[bytes, Mapping[str, object]], bytes],
    anchors: Mapping[int, bytes],
    batch: int,
) -> ChainCheck:
    expected, prev, checked, matched = 1, GENESIS, 0, 0
    empty = anchors.get(0)  # position 0 is the empty chain, anchored before any event
    if empty is not None:
        if empty != GENESIS:
            return ChainCheck(False, 0, 1, "an anchor of the empty chain has a hash")
        matched += 1
    # Appends may commit while the walk runs (each page is its own read): when the
    # head has moved past the last event walked, walk on to it. Only a head that
    # stays behind or ahead of the events once no more arrive is a finding.
    head, walked = None, -1
    for _round in range(_CATCH_UP_ROUNDS):
        if checked == walked:
            break  # no event arrived since the last round: the head is simply wrong
        walked = checked
        while True:
            events = rows.chain_from(expected, batch)
            for event in events:
                if event.sequence != expected:
                    return ChainCheck(
                        False, checked, expected, "an event is missing (sequence gap)", matched
                    )
                if event.prev_hash != prev:
                    return ChainCheck(
                        False,
                        checked,
                        expected,
                        "the event does not follow its predecessor",
                        matched,
                    )
                digest = digest_of(prev, event_document(event.sequence, event.record))
                if not hmac.compare_digest(digest, event.hash):
                    return ChainCheck(False, checked, expected, "the event was altered", matched)
                anchored = anchors.get(expected)
                if anchored is not None:
                    if not hmac.compare_digest(anchored, digest):
                        return ChainCheck(
                            False,
                            checked,
                            expected,
                            "the event is not the one an anchor recorded at this position",
                            matched,
                        )
                    matched += 1
                prev, expected, checked = digest, expected + 1, checked + 1
            if len(events) < batch:
                break
        head = rows.head()
        if head is None or head.last_sequence <= checked:
            break
    return _check_head(head, checked, prev, anchors, matched)


def _check_head(
    head: AuditHead | None,
    checked: int,
    prev: bytes,
    anchors: Mapping[int, bytes],
    matched: int,
) -> ChainCheck:
    """The head and the anchors must end the chain where the walk ended it."""
    if head is None and checked:
        return ChainCheck(False, checked, checked + 1, "the chain head is missing", matched)
    last_sequence, last_hash = (
        (0, GENESIS) if head is None else (head.last_sequence, head.last_hash)
    )
    if last_sequence != checked or last_hash != prev:
        return ChainCheck(
            False, checked, checked + 1, "events after this position were removed", matched
        )
    beyond = [sequence for sequence in anchors if sequence > checked]
    if beyond:
        return ChainCheck(
            False,
            checked,
            checked + 1,
            f"events after this position were removed (an anchor names position {max(beyond)})",
            matched,
        )
    return ChainCheck(True, checked, -1, "", matched)
