"""Which request a log line belongs to: the ``request_id`` field of JSON logs.

Layer: ``transport``. The ``rpc`` decorators put the call's gRPC context in a
context variable (one cheap ``set`` per call; nothing is generated on the
hot path). Only when a line is logged during the call does ``RequestIdFilter``
work out its id: the caller's ``x-request-id`` metadata when it sent a
well-formed one (so one id follows a request across services), else an id
made once for that call. Lines logged outside a call get ``"-"``. With
tracing on (``vault.bootstrap.tracing``) each line also names its trace.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from contextvars import ContextVar
from typing import Any

CURRENT_CALL: ContextVar[Any] = ContextVar("vault_current_call", default=None)
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_made: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def request_id(context: Any) -> str:
    """The call's request id (see the module)."""
    found = _made.get(context)
    if found is not None:
        return found
    sent = ""
    try:
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and isinstance(value, str):
                sent = value
    except Exception:  # a context that cannot say: make one
        sent = ""
    made = sent if _WELL_FORMED.fullmatch(sent) else os.urandom(8).hex()
    try:
        _made[context] = made
    except TypeError:  # not weakly referenceable: the id is made again next time
        pass
    return made


def trace_id() -> str:
    """The current OpenTelemetry trace id (hex), or ``-`` without tracing or outside a span."""
    try:
        from opentelemetry import trace
    except ImportError:  # the tracing extra is not installed
        return "-"
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else "-"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the call being served, or ``-``) and ``record.trace_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = CURRENT_CALL.get()
        record.request_id = "-" if context is None else request_id(context)
        record.trace_id = trace_id()
        return True
