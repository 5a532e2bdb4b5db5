"""The audit sink's line format: one JSON object per chained event, an anchor each.

Every line carries the event's ``sequence`` and keyed ``hash``, so a copy of
the sink kept outside the database's control lets ``pii-vault audit verify
--anchor`` find a rewritten or truncated chain. Never a value: an event holds
none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import TextIO

from vault.audit.records import ChainedEvent


def sink_lines(chained: Iterable[ChainedEvent]) -> str:
    """The sink's text for ``chained``: one line each, keys sorted."""
    return "".join(
        json.dumps(
            {
                "sequence": c.sequence,
                "hash": c.hash.hex(),
                "time": c.record.time.isoformat(),
                "caller": c.record.caller,
                "action": c.record.action,
                "subject_id": c.record.subject_id,
                "field": c.record.field,
                "view": c.record.view,
                "purpose": c.record.purpose,
                "outcome": c.record.outcome,
                "status_code": c.record.status_code,
                "detail": c.record.detail,
            },
            sort_keys=True,
        )
        + "\n"
        for c in chained
    )


def write_lines(sink: TextIO, lock: threading.Lock, chained: Iterable[ChainedEvent]) -> None:
    """Append ``chained`` to ``sink`` as whole lines, flushed, one writer at a time."""
    lines = sink_lines(chained)
    with lock:
        sink.write(lines)
        sink.flush()
